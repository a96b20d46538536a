"""The gateway's own mitmproxy master: the firewall with only the addons it needs.

mitmdump loads 35 addons (playback, maps, cookies, HAR export, ...) and mitmproxy calls every one
of them on every hook; profiled at 32 concurrent connections that dispatch was 29 % of the event
loop's time, and importing them (pyparsing's filter grammar above all) half of the start-up. The
firewall needs six: Core (options), Proxyserver (the transparent and DNS listeners), the FirewallAddon,
DnsResolver (answers queries), NextLayer (HTTP and DNS layers) and ErrorCheck (a bad option stops
start-up), in mitmdump's relative order: the FirewallAddon's hooks run before the resolver's (a denied
name is never asked upstream) and its `next_layer` before NextLayer's, which then leaves a layer
the FirewallAddon chose alone. TermLog prints the log, as mitmdump does. With a FirewallAddon, the
transparent listener accepts through harness.gateway.fastpath, which relays an allowed TLS
pass-through itself and hands every other connection to mitmproxy unread (`egress_fast_path`).

    python -m harness.gateway.master --mode transparent@127.0.0.1:15001 --mode dns@... \
        -s /opt/egress/addons/firewall.py --set egress_policy=/egress/policy.yaml ...

`--mode`, `--set` and `-s` (a file whose `addons` list is added after the lean set; without
one, the FirewallAddon) mean what they mean to mitmdump. SIGTERM and SIGINT shut down cleanly.
SIGHUP re-reads `EGRESS_CONTROL_FILE` (JSON `{"option": value}`) and applies it as one option
update: a shared gateway (harness.sandbox.session) switches policy, mode and recording folder
between runs without a restart; the FirewallAddon writes a `ready` event into the new recording once
the switch is done.
"""

from __future__ import annotations

__all__ = ["LEAN_ADDONS", "main", "make_master"]

import asyncio
import json
import logging
import os
import runpy
import signal
import sys
import time
import types
from collections.abc import Sequence
from pathlib import Path

CONTROL_FILE_ENV = "EGRESS_CONTROL_FILE"
# The entrypoint loads the netfilter rules while this process imports, and writes "ok" or
# "failed" to this descriptor when done (docker/gateway-run/entrypoint.sh).
RULES_FD_ENV = "EGRESS_RULES_FD"
RULES_TIMEOUT = 30.0
RULES_FAILED_EXIT = 70  # what the entrypoint exits with when a rule cannot be installed
logger = logging.getLogger(__name__)
LEAN_ADDONS = ("core", "proxyserver", "firewall", "dnsresolver", "nextlayer", "errorcheck")


def _skip_the_addons_package_init() -> None:
    """`mitmproxy.addons/__init__.py` imports all 35 addons (0.6 s of pyparsing alone, measured in
    the gateway image). Registering the package without running it lets the six modules we use
    import on their own; nothing of the skipped ones is touched."""
    if "mitmproxy.addons" in sys.modules:
        return
    import mitmproxy

    package = types.ModuleType("mitmproxy.addons")
    package.__path__ = [str(Path(mitmproxy.__file__).parent / "addons")]
    package.__package__ = "mitmproxy.addons"
    sys.modules["mitmproxy.addons"] = package


def _defer_the_command_grammar() -> None:
    """mitmproxy.master imports mitmproxy.command, which imports pyparsing (with unittest, for
    pyparsing.testing) and builds the grammar of interactive command lines at import: ~0.1 CPU-s
    of a ~0.6 CPU-s start in the gateway image, for a grammar the gateway never uses (it parses
    no command line). Both modules are registered as stand-ins that import the real module on
    first use of any of their names; what runs is unchanged, only when it loads."""
    if "pyparsing" not in sys.modules:
        _stand_in("pyparsing")
    if "mitmproxy.command_lexer" not in sys.modules:
        # mitmproxy.command takes `unquote` by name at import: a forwarder until first called.
        _stand_in("mitmproxy.command_lexer", forwarded=("quote", "unquote"))


def _stand_in(name: str, forwarded: Sequence[str] = ()) -> None:
    """Register a module as `name` whose names import the real `name` on first use. The real
    module then takes its place in sys.modules, and its names are copied into the stand-in for
    whoever holds it. (importlib's LazyLoader does not do here: an `import` statement of a
    module already in sys.modules reads its `__spec__`, which makes LazyLoader load it.) A
    package's stand-in has its `__path__`, so importing a submodule first loads that submodule
    once, and the real package reuses it."""
    import importlib
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    stand_in = types.ModuleType(name)
    if spec.submodule_search_locations is not None:
        stand_in.__path__ = list(spec.submodule_search_locations)
    loaded: list[types.ModuleType] = []

    def real() -> types.ModuleType:
        if not loaded:
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]
            module = importlib.import_module(name)
            for key, value in vars(module).items():
                if not key.startswith("__"):
                    setattr(stand_in, key, value)  # the forwarders too
            loaded.append(module)
        return loaded[0]

    def __getattr__(attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return getattr(real(), attribute)

    def forwarder(function: str):
        return lambda *args, **kwargs: getattr(real(), function)(*args, **kwargs)

    stand_in.__getattr__ = __getattr__  # type: ignore[method-assign]
    for function in forwarded:
        setattr(stand_in, function, forwarder(function))
    sys.modules[name] = stand_in


def _hook_table_class():
    """mitmproxy's AddonManager, dispatching a hook to the addons that have it.

    mitmproxy walks every addon of the chain for every hook (`getattr` on each, a generator and
    a `safecall` context per addon, the hook's dataclass fields read again per call): at
    hundreds of connections a second, six hooks each, that walk cost more than the hooks' own
    bodies. Here each hook name's handlers are looked up once (again after an addon is added or
    removed) and called in chain order with the arguments read once; an exception is logged as
    mitmproxy's `safecall` logs it and the next addon still runs; AddonHalt stops the hook."""
    import inspect

    from mitmproxy import addonmanager, exceptions, flow, hooks

    class HookTable(addonmanager.AddonManager):
        def __init__(self, master) -> None:
            super().__init__(master)
            self._handlers: dict[str, list[list]] = {}

        def add(self, *addons) -> None:
            self._handlers.clear()
            super().add(*addons)

        def remove(self, addon) -> None:
            self._handlers.clear()
            super().remove(addon)

        def clear(self) -> None:
            self._handlers.clear()
            super().clear()

        def _handlers_for(self, event: hooks.Hook) -> list[list]:
            found = self._handlers.get(event.name)
            if found is None:
                found = [
                    [func for _, func in self._iter_hooks(addon, event)] for addon in self.chain
                ]
                found = self._handlers[event.name] = [funcs for funcs in found if funcs]
            return found

        async def handle_lifecycle(self, event: hooks.Hook) -> None:
            args = event.args()
            await self._dispatch(event, args)
            if isinstance(args[0], flow.Flow):
                update = hooks.UpdateHook([args[0]])
                await self._dispatch(update, update.args())

        async def trigger_event(self, event: hooks.Hook) -> None:
            await self._dispatch(event, event.args())

        async def _dispatch(self, event: hooks.Hook, args: list) -> None:
            for funcs in self._handlers_for(event):
                try:
                    for func in funcs:
                        result = func(*args)
                        if result is not None and inspect.isawaitable(result):
                            await result
                except exceptions.AddonHalt:
                    return
                except exceptions.OptionsError:
                    raise
                except Exception:  # logged as mitmproxy logs it; the next addon still runs
                    with addonmanager.safecall():
                        raise

    return HookTable


def make_master(
    modes: Sequence[str], settings: Sequence[str], scripts: Sequence[str] = (), loop=None
):
    """A master with the lean addon set, the scripts' `addons` after it (default: the FirewallAddon)
    and the options applied (OptionsError when bad)."""
    _skip_the_addons_package_init()
    from mitmproxy import master, options
    from mitmproxy.addons import core, dns_resolver, errorcheck, next_layer, proxyserver, termlog

    own: list[object] = []
    for script in scripts:
        # Loaded once, as mitmdump's -s does at start (no reloading: the gateway lives one run).
        own.extend(runpy.run_path(script, run_name="__egress_addon__").get("addons", []))
    if not scripts:
        from harness.gateway.addon import FirewallAddon

        own.append(FirewallAddon())
    opts = options.Options()
    gateway = master.Master(opts, event_loop=loop)
    # mitmproxy turns every log record into the deprecated `add_log` hook: formatted once more,
    # a wake-up of the event loop (call_soon_threadsafe writes its self-pipe) and a walk of every
    # addon, for each connection's Azure line. No addon here has that hook.
    legacy_log_events = getattr(gateway, "_legacy_log_events", None)
    if legacy_log_events is not None:
        legacy_log_events.uninstall()
    gateway.addons = _hook_table_class()(gateway)
    # What Master(with_termlog=True) does, on the table above.
    gateway._termlog_addon = termlog.TermLog()
    gateway.addons.add(gateway._termlog_addon)
    # mitmdump's order: script addons come after the proxy server and before the resolver and
    # NextLayer, so a denied name is never asked upstream and the FirewallAddon's layer stands.
    gateway.addons.add(
        core.Core(),
        proxyserver.Proxyserver(),
        *own,
        dns_resolver.DnsResolver(),
        next_layer.NextLayer(),
        errorcheck.ErrorCheck(),
    )
    _install_fast_path(gateway, own)
    opts.set(*settings)
    if modes:
        opts.update(mode=list(modes))
    return gateway


def _install_fast_path(gateway, own: Sequence[object]) -> None:
    """Transparent connections are accepted by harness.gateway.fastpath first, which relays an
    allowed TLS pass-through itself and hands everything else to mitmproxy (`egress_fast_path`)."""
    firewall_module = sys.modules.get("harness.gateway.addon")
    if firewall_module is None:
        return  # no FirewallAddon among them (and no import of it for a gateway without one)
    firewalls = [addon for addon in own if isinstance(addon, firewall_module.FirewallAddon)]
    if len(firewalls) == 1:
        from harness.gateway.fastpath import install

        install(gateway, firewalls[0])


def _parse(argv: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"--mode": [], "--set": [], "-s": []}
    words = list(argv)
    while words:
        flag = words.pop(0)
        if flag not in found or not words:
            raise SystemExit(f"egress gateway: unknown or incomplete argument {flag!r}; "
                             "use --mode SPEC, --set OPTION=VALUE and -s ADDON_FILE")  # fmt: skip
        found[flag].append(words.pop(0))
    return found


def rules_installed(fd: int, timeout: float = RULES_TIMEOUT) -> bool:
    """Whether the entrypoint's rules job reported "ok" on `fd` within `timeout` s. Anything
    else (failed, a closed pipe, silence) is False: the gateway must not listen (fail closed)."""
    import select

    answer = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\n" not in answer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return False
            chunk = os.read(fd, 64)
            if not chunk:
                return False
            answer += chunk
    except OSError:
        return False
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    return answer.split(b"\n", 1)[0].strip() == b"ok"


def _reap_the_rules_job() -> None:
    """The rules job is this process's child since the entrypoint's exec: reap it if it has
    exited (it has written its answer), so no zombie stays; never waits."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        pass


def _apply_control_file(gateway) -> None:
    path = os.environ.get(CONTROL_FILE_ENV, "")
    try:
        values = json.loads(Path(path).read_text())
        gateway.options.update(**values)
    except Exception as error:  # noqa: BLE001 - a bad switch stops the gateway (fail closed)
        logger.error(f"egress: cannot apply {path}: {error}; stopping the gateway")
        gateway.shutdown()


async def _run(argv: Sequence[str]) -> int:
    from mitmproxy import exceptions

    # INFO, not mitmdump's DEBUG: TermLog shows INFO anyway, and a DEBUG record made and dropped
    # for every connection event was measurable at hundreds of connections a second.
    logging.getLogger().setLevel(logging.INFO)
    for noisy in ("asyncio", "hpack", "quic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # mitmproxy's four lines per connection (client/server connect/disconnect) cost a log record
    # and a write each; every connection's outcome is in the Azure line the addon logs.
    logging.getLogger("mitmproxy.proxy.server").setLevel(logging.WARNING)
    parsed = _parse(argv)
    _defer_the_command_grammar()  # the gateway's process only: it never parses a command line
    loop = asyncio.get_running_loop()
    try:
        gateway = make_master(parsed["--mode"], parsed["--set"], parsed["-s"], loop)
    except exceptions.OptionsError as error:
        print(f"egress gateway: {error}", file=sys.stderr)
        return 1
    loop.add_signal_handler(signal.SIGTERM, gateway.shutdown)
    loop.add_signal_handler(signal.SIGINT, gateway.shutdown)
    loop.add_signal_handler(signal.SIGHUP, _apply_control_file, gateway)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    rules_fd = os.environ.pop(RULES_FD_ENV, "")
    if rules_fd:
        if not rules_installed(int(rules_fd)):
            print("egress gateway: the firewall rules are not installed; refusing to start "
                  "(fail closed)", file=sys.stderr)  # fmt: skip
            return RULES_FAILED_EXIT
        _reap_the_rules_job()
    await gateway.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(_run(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
