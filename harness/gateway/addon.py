"""The firewall as a mitmproxy addon (transparent mode + DNS mode).

Hooks translate traffic into `Request`s for the pure `Decider` and decisions into actions. The
facts only the gateway knows (a Host header's port, a destination that is the gateway itself)
are Request fields too, so every decision comes out of the Decider, also the one made when
`server_connect` learns that an allowed name resolves to the gateway itself (the same Request
with `to_gateway` set, decided again: `Reason.GATEWAY_ITSELF`). One denial is made here alone:
a hook that fails denies closed (`Reason.INTERNAL_ERROR`).

- `next_layer`: the first bytes of a transparent connection. A TLS ClientHello is decided on its
  SNI (HTTPS); plain HTTP is left to mitmproxy's HTTP layer and decided per request in
  `requestheaders` on the Host header; anything else is decided by network rules (TCP). TLS and
  raw TCP continue in a pass-through layer that only counts bytes: TLS is never terminated.
  (`tls_clienthello` decides the same way for a ClientHello that reaches mitmproxy's TLS layer
  without that, e.g. after CONNECT in an explicit-proxy mode, and never intercepts.)
  A server-speaks-first protocol (SMTP, MySQL, FTP) is never decided: nothing comes from the
  client, so the connection waits until the client gives up, even where a network rule allows it.
- An allowed HTTPS connection's upstream is pinned to the SNI name (the gateway resolves it
  itself), so a client cannot name an allowed host and reach another address.
- `server_connect` is the choke point: an upstream connection that no decision approved is
  refused, and so is one the Decider refuses once the name turns out to resolve to the gateway
  itself (loopback or one of its own addresses); an approved name is resolved there and the
  connection pinned to the address checked. A denied HTTPS connection ends as `https_deny`
  says: `close` (EOF right after the ClientHello, as Azure does), `alert` (a local responder
  answers a fatal access_denied alert) or `drop` (nothing comes back, no close, until the
  client closes or `egress_drop_seconds`).
- Recording: one event per connection, written when the client disconnects (with the bytes
  relayed each way and the duration); one per plain HTTP request, written with its response
  or error; one per DNS query, written with its answer.
- Upstream failures: an allowed connection whose upstream refused it, did not answer in time,
  was unreachable, or hung up (closed or reset) before sending a byte back keeps its Allow
  decision and carries `upstream: refused | timeout | unreachable | reset` in its event
  (`upstream_failure`), so no report shows a failed connection as a plain Allow.
- DNS queries are answered as Azure's DNS answers them (`egress_dns=azure`,
  `harness.gateway.sinkhole`): a name that does not resolve here gets a sinkhole address, so the
  client connects and the firewall decides it by name; an allowed connection to it ends as an
  unreachable upstream does and is recorded with `upstream: unreachable` (so is an allowed one
  whose upstream cannot be resolved or connected to). `egress_dns=resolve` gives the real
  answers only. Every answer is recorded (`answers`, `sinkholed`); the answers map addresses
  to names for network rules with destination FQDNs.

mitmproxy logs and swallows exceptions raised in hooks, and would then carry on with the
connection: every hook body therefore denies (kills) on an unexpected exception and records
reason "internal error". A recording that cannot be written stops the gateway.
"""

from __future__ import annotations

__all__ = ["FirewallAddon"]

import asyncio
import atexit
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from mitmproxy import ctx, dns, exceptions, http, tls
from mitmproxy.connection import Client, ConnectionState, Server
from mitmproxy.net.check import is_valid_host
from mitmproxy.proxy import context as proxy_context
from mitmproxy.proxy import events, layer
from mitmproxy.proxy.layers import tcp
from mitmproxy.proxy.layers.tls import get_client_hello, parse_client_hello
from mitmproxy.proxy.mode_specs import TransparentMode
from mitmproxy.proxy.server_hooks import ServerConnectionHookData
from mitmproxy.proxy.utils import expect

from harness.events import (
    UPSTREAM_UNREACHABLE,
    Event,
    azure_line,
    dns_line,
    event_for_decision,
    lifecycle_event,
    now_iso,
)
from harness.firewall_settings import HTTPS_DENY_STYLES, MODES
from harness.gateway.clienthello import Unusual, server_name
from harness.gateway.local import IpAddress, is_own_address, own_addresses
from harness.gateway.options import GatewayConfig, parse_options
from harness.gateway.relay import take_over
from harness.gateway.sinkhole import Sinkhole, answer_as_azure, needs_deadline, resolve_in_time
from harness.policy.decide import Decider
from harness.policy.model import DENY, Decision, Reason, Request
from harness.runfolder import Recorder, RecorderError

logger = logging.getLogger(__name__)

READY_BANNER = "egress-harness gateway ready"
DENY_BODY = b"Action: Deny. Reason: No rule matched. Proceeding with default action."
# A TLS record (alert, TLS 1.2 record version, length 2) holding a fatal (2) access_denied (49).
TLS_ACCESS_DENIED_ALERT = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31])
UNREACHABLE = "unreachable from this machine"
DROP_POLL_SECONDS = 0.2
_HTTP_REQUEST_START = re.compile(rb"^[A-Z]{3,10} ")
_HOST_WITH_PORT = re.compile(r"^(\[[^\]]+\]|[^:]+)(?::(\d+))?$")


@dataclass
class TrackedConnection:
    """What was decided for one client connection, and what moved through it since."""

    event: Event
    # The upstreams a decision approved, each with the Request that was allowed (None for the
    # local alert responder), to decide again on what dialling it reveals.
    approved: dict[tuple[str, int], Request | None] = field(default_factory=dict)
    deny_style: str | None = None  # set when a denied HTTPS connection must end a certain way
    # Approved upstreams the Decider refused at connect time (the name resolved to the gateway).
    refused: dict[tuple[str, int], Decision] = field(default_factory=dict)
    # Approved upstreams this machine cannot reach, and the address each approved one was
    # dialled at (to recognise it when the dial fails).
    unreachable: set[tuple[str, int]] = field(default_factory=set)
    dialled: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    # The address the client connected to, before the upstream was pinned to the SNI name.
    client_dst: str | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    written: bool = False
    upstream_failure: str | None = None  # refused | timeout | unreachable | reset


def upstream_failure(error: str | None, otherwise: str = "reset") -> str:
    """mitmproxy's text for a failed upstream connect (an OSError's str) as the event's word;
    `otherwise` when the text names no cause (a failed dial: unreachable; a hang-up: reset)."""
    text = (error or "").lower()
    if "refused" in text or "errno 111" in text:
        return "refused"
    if "timed out" in text or "timeout" in text or "errno 110" in text:
        return "timeout"
    if "unreachable" in text or "no route" in text or "errno 113" in text or "errno 101" in text:
        return "unreachable"
    return otherwise


class CountingPassthrough(tcp.TCPLayer):
    """mitmproxy's TCP relay without flows (nothing is stored or intercepted), counting bytes.

    With `direct_relay` (the FirewallAddon's: it finds the connection's handler in mitmproxy's
    Proxyserver), the bytes move past the layers once the upstream has answered:
    `harness.gateway.relay` counts them into the same TrackedConnection, and the closes still
    come through here."""

    def __init__(
        self,
        context,
        tracked: TrackedConnection,
        direct_relay: Callable[[proxy_context.Context, TrackedConnection], bool] | None = None,
    ) -> None:
        super().__init__(context, ignore=True)
        self.tracked = tracked
        self.direct_relay = direct_relay

    @expect(events.DataReceived, events.ConnectionClosed, tcp.TcpMessageInjected)
    def relay_messages(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.DataReceived):
            if event.connection == self.context.client:
                self.tracked.bytes_up += len(event.data)
            else:
                self.tracked.bytes_down += len(event.data)
        elif (
            isinstance(event, events.ConnectionClosed)
            and event.connection == self.context.server
            and self.tracked.bytes_down == 0
            and self.tracked.upstream_failure is None
            and self.context.client.state & ConnectionState.CAN_READ
        ):
            # The upstream hung up before a single byte came back (a reset, or a full accept
            # queue's close) while the client still waited: its Allow carried nothing.
            self.tracked.upstream_failure = "reset"
        yield from super().relay_messages(event)
        if (
            self.direct_relay is not None
            and isinstance(event, events.DataReceived)
            and event.connection == self.context.server
            and self.direct_relay(self.context, self.tracked)
        ):
            self.direct_relay = None  # from now on the bytes do not pass through here

    @expect(events.DataReceived, events.ConnectionClosed, tcp.TcpMessageInjected)
    def done(self, event: events.Event) -> layer.CommandGenerator[None]:
        # A refused upstream: what the client sent (its ClientHello) still counts as sent.
        if isinstance(event, events.DataReceived) and event.connection == self.context.client:
            self.tracked.bytes_up += len(event.data)
        yield from ()


def _split_host(host_header: str) -> tuple[str, int | None]:
    match = _HOST_WITH_PORT.match(host_header.strip())
    if not match:
        return host_header.strip(), None
    return match.group(1).strip("[]"), int(match.group(2)) if match.group(2) else None


async def resolve(host: str, port: int) -> list[str]:
    """The addresses the gateway's resolver (its /etc/hosts, then DNS) gives for `host`, IPv4
    first: the same lookup mitmproxy would make when it dials the name."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [str(info[4][0]) for info in infos]
    return sorted(dict.fromkeys(addresses), key=lambda address: ":" in address)


INCOMPLETE = object()  # client_hello_sni: more bytes are needed


def client_hello_sni(data: bytes) -> str | None | object:
    """The SNI of the ClientHello in `data` exactly as mitmproxy's `ClientHello.sni` gives it,
    None without one, or INCOMPLETE; ValueError when `data` is not a ClientHello. The common
    shape is read by `clienthello.server_name` (no Kaitai objects); the rest by mitmproxy."""
    handshake = get_client_hello(data)
    if handshake is None:
        return INCOMPLETE
    try:
        raw = server_name(handshake)
        if raw is None:
            return None
        if is_valid_host(raw):
            return raw.decode("ascii")
    except Unusual:
        pass
    hello = parse_client_hello(data)
    return INCOMPLETE if hello is None else hello.sni


def hosts_file_addresses(text: str) -> dict[str, list[str]]:
    """name -> addresses in /etc/hosts order, as the resolver reads that file (`files` first)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 2:
            continue
        for name in words[1:]:
            found.setdefault(name.lower().rstrip("."), []).append(words[0])
    return found


# Read for each connection, not a run's settings: updating one of them switches no run.
PER_CONNECTION_OPTIONS = frozenset({"egress_direct_relay", "egress_fast_path"})
INTERNAL_ERROR = Decision(DENY, DENY, Reason.INTERNAL_ERROR)  # a hook failed: denied closed


def take_decision(event: Event, decision: Decision) -> None:
    """An event not yet written takes a later decision (the Decider's, when dialling taught it
    that the name is the gateway itself; or the addon's own when a hook failed)."""
    event.action, event.would, event.reason = decision.action, decision.would, decision.reason
    event.rule = decision.rule.as_dict() if decision.rule else None
    event.azure = azure_line(event)


class FirewallAddon:
    def __init__(self) -> None:
        self.config: GatewayConfig | None = None
        self.decider: Decider | None = None
        self.recorder: Recorder | None = None
        self.connections: dict[str, TrackedConnection] = {}
        self.names_by_ip: dict[str, set[str]] = {}
        self.sinkhole = Sinkhole()
        self.dns_started: dict[str, float] = {}
        self.alert_address: tuple[str, int] | None = None
        self._alert_server: asyncio.Server | None = None
        # Read once at configure time; tests set their own.
        self.own_addresses: frozenset[IpAddress] | None = None
        self.resolve: Callable[[str, int], Awaitable[list[str]]] = resolve
        self.recording_failed: str | None = None
        self.is_running = False  # set by running(): option updates after it switch runs
        self._own_cache: dict[str, bool] = {}  # host -> is_own_address, for own_addresses
        # The gateway's /etc/hosts, read once (as mitmproxy's resolver does): names in it are
        # pinned without a lookup in the thread pool.
        self.hosts_file: dict[str, list[str]] | None = None
        # mitmproxy's connection handlers by client id (its Proxyserver's), for the direct relay.
        self._handlers: dict | None = None

    # --- options ------------------------------------------------------------------------

    def load(self, loader) -> None:
        loader.add_option(
            "egress_policy",
            str,
            "",
            "Policy file: YAML, the allow shorthand, or ARM JSON. Empty: deny all.",
        )
        loader.add_option(
            "egress_mode",
            str,
            "enforce",
            "enforce | audit (allow all, record what enforce would do)",
            choices=MODES,
        )
        loader.add_option(
            "egress_https_deny",
            str,
            "close",
            "How a denied HTTPS connection ends: close (Azure's EOF) | alert | drop",
            choices=HTTPS_DENY_STYLES,
        )
        loader.add_option(
            "egress_record_dir", str, "", "Folder for events.jsonl and azure.log. Empty: log only."
        )
        loader.add_option("egress_run_id", str, "", "Run id written into every event.")
        loader.add_option(
            "egress_drop_seconds",
            int,
            600,
            "With egress_https_deny=drop: the most seconds a denied connection is held silent "
            "(it ends earlier when the client closes).",
        )
        loader.add_option(
            "egress_dns",
            str,
            "azure",
            "azure (a name that does not resolve here gets a sinkhole address, as Azure's DNS "
            "would answer it) | resolve (real answers only)",
        )
        loader.add_option(
            "egress_direct_relay",
            bool,
            True,
            "Relay a decided pass-through connection's bytes past mitmproxy's layers once its "
            "upstream has answered (harness.gateway.relay); off: mitmproxy relays every chunk.",
        )
        loader.add_option(
            "egress_fast_path",
            bool,
            True,
            "Relay a transparent TLS connection whose SNI the policy allows past mitmproxy "
            "altogether, on the gateway's own accept loop (harness.gateway.fastpath); off, or "
            "for anything else: mitmproxy handles the connection.",
        )
        loader.add_option(
            "egress_dns_ms",
            int,
            3000,
            "With egress_dns=azure: the milliseconds a name may take to resolve before it gets "
            "a sinkhole address.",
        )

    def configure(self, updated: set[str]) -> None:
        if ctx.options.connection_strategy != "lazy":
            # Eager would connect to the original destination before the ClientHello is read.
            ctx.options.update(connection_strategy="lazy")
        if self.own_addresses is None:
            self.own_addresses = own_addresses()
            self._own_cache.clear()
        if self.hosts_file is None:
            try:
                self.hosts_file = hosts_file_addresses(Path("/etc/hosts").read_text())
            except OSError:
                self.hosts_file = {}
        if self.config is not None and not any(
            name.startswith("egress_") and name not in PER_CONNECTION_OPTIONS for name in updated
        ):
            return  # (options read per connection switch no run)
        try:
            config = parse_options(
                ctx.options.egress_policy, ctx.options.egress_mode, ctx.options.egress_https_deny,
                ctx.options.egress_record_dir, ctx.options.egress_run_id, ctx.options.egress_drop_seconds,
                ctx.options.egress_dns, ctx.options.egress_dns_ms / 1000,
            )  # fmt: skip
            recorder = Recorder(config.record_dir) if config.record_dir else None
        except (ValueError, RecorderError) as error:
            raise exceptions.OptionsError(str(error)) from None
        if self.is_running:
            self._end_run()  # a shared gateway's next run (harness.sandbox.session)
        if self.recorder is not None:
            self.recorder.close()
        self.config, self.recorder = config, recorder
        self.decider = Decider(config.policy, config.mode)  # type: ignore[arg-type]
        if self.is_running:
            self._write(lifecycle_event(self._run_id, "ready"))

    def _end_run(self) -> None:
        """Close the previous run's recording before the options of the next one apply: what
        is still open is written to it, and nothing learned in it (DNS answers, connection state)
        carries over, so each run sees the gateway as a fresh one would."""
        try:
            for tracked in list(self.connections.values()):
                self._finish(tracked)
            if self.recorder is not None:
                self.recorder.write(lifecycle_event(self._run_id, "stopped"))
        except RecorderError as error:
            raise exceptions.OptionsError(f"the previous run's recording failed: {error}") from None
        self.connections.clear()
        self.names_by_ip.clear()
        self.dns_started.clear()

    # --- lifecycle ----------------------------------------------------------------------

    async def running(self) -> None:
        proxyserver = ctx.master.addons.get("proxyserver")
        self._handlers = getattr(proxyserver, "connections", None)
        self._alert_server = await asyncio.start_server(self._answer_alert, "127.0.0.1", 0)
        self.alert_address = self._alert_server.sockets[0].getsockname()[:2]
        self._write(lifecycle_event(self._run_id, "ready"))
        self.is_running = True
        print(READY_BANNER, flush=True)

    def done(self) -> None:
        try:
            if self.recording_failed is None:
                for tracked in list(self.connections.values()):
                    self._finish(tracked)
                if self.recorder is not None:
                    self.recorder.write(lifecycle_event(self._run_id, "stopped"))
        except RecorderError:
            pass  # recording_failed says why
        finally:
            if self.recorder is not None:
                self.recorder.close()
        if self.recording_failed is not None:
            print(f"egress: {self.recording_failed}; the gateway stopped", file=sys.stderr)
            self.exit_nonzero()

    @staticmethod
    def exit_nonzero() -> None:
        """mitmdump exits 0 after shutdown(); a run whose recording is incomplete must not.
        Exit 1 once mitmdump has finished cleaning up (raising SystemExit from this hook
        instead skips that and crashed mitmproxy's Rust servers: exit 139)."""
        atexit.register(os._exit, 1)

    async def _answer_alert(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            await asyncio.wait_for(reader.read(16384), timeout=5)
            writer.write(TLS_ACCESS_DENIED_ALERT)
            await writer.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()

    def _direct_relay(self, context: proxy_context.Context, tracked: TrackedConnection) -> bool:
        """Move a decided connection's bytes past mitmproxy's layers (CountingPassthrough)."""
        if self._handlers is None or not ctx.options.egress_direct_relay:
            return False
        handler = self._handlers.get(context.client.id)
        if handler is None:
            return False
        try:
            return take_over(handler, context.client, context.server, tracked)
        except Exception:  # mitmproxy's own relay carries on: nothing was swapped
            logger.exception("egress: internal error in the direct relay; mitmproxy relays")
            return False

    @property
    def _run_id(self) -> str:
        return self.config.run_id if self.config else ""

    # --- recording ----------------------------------------------------------------------

    def _write(self, event: Event) -> None:
        if event.azure:
            logger.info(event.azure)
        if self.recorder is None:
            return
        try:
            self.recorder.write(event)
        except RecorderError as error:
            # Traffic the recording cannot see must not flow: stop the gateway.
            logger.error(f"egress: {error}; stopping the gateway")
            self.recording_failed = str(error)
            ctx.master.shutdown()
            raise

    def _finish(self, tracked: TrackedConnection) -> None:
        if tracked.written:
            return
        tracked.written = True
        tracked.event.bytes_up = tracked.bytes_up
        tracked.event.bytes_down = tracked.bytes_down
        if tracked.upstream_failure and tracked.event.action != DENY:
            tracked.event.upstream = tracked.upstream_failure
        tracked.event.duration_ms = int((time.monotonic() - tracked.started) * 1000)
        self._write(tracked.event)

    def _decide(self, request: Request) -> Decision:
        assert self.decider is not None
        return self.decider.decide(request)

    def _internal_error(
        self, kind: str, client: Client, dst: tuple[str, int] | None, host: str | None
    ) -> Event:
        logger.exception("egress: internal error; the connection is denied")
        src_ip, src_port = client.peername[:2] if client.peername else ("?", 0)
        event = Event(
            ts=now_iso(), run=self._run_id, kind=kind, src=f"{src_ip}:{src_port}",
            dst=f"{dst[0]}:{dst[1]}" if dst else None, host=host, port=dst[1] if dst else None,
            protocol={"tls": "HTTPS", "http": "HTTP"}.get(kind, kind.upper()), action=DENY,
            would=DENY, reason=Reason.INTERNAL_ERROR,
        )  # fmt: skip
        event.azure = azure_line(event)
        return event

    @contextmanager
    def _deny_on_error(self, on_error) -> Iterator[None]:
        try:
            yield
        except RecorderError:
            on_error(None)
        except Exception:  # noqa: BLE001 - fail closed: mitmproxy would swallow it and go on
            on_error(Reason.INTERNAL_ERROR)

    # --- transparent connections ----------------------------------------------------------

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        context = nextlayer.context
        if not isinstance(context.client.proxy_mode, TransparentMode):
            return

        def deny(reason: str | None) -> None:
            # No approval: server_connect refuses the upstream and the client is closed.
            tracked = self._internal_error_connection(context, "tcp", written=reason is None)
            nextlayer.layer = CountingPassthrough(context, tracked)

        with self._deny_on_error(deny):
            data = nextlayer.data_client()
            if not data:
                return  # wait for the client's first bytes
            if data[0] == 0x16:
                try:
                    sni = client_hello_sni(data)
                except ValueError:  # not TLS after all: a network-rule decision
                    tracked = self._decide_connection(context, "TCP", None)
                    nextlayer.layer = CountingPassthrough(context, tracked, self._direct_relay)
                    return
                if sni is INCOMPLETE:
                    nextlayer.layer = None  # the ClientHello is not complete yet
                    return
                tracked = self._decide_connection(context, "HTTPS", sni or None)  # type: ignore[arg-type]
            elif _HTTP_REQUEST_START.match(data):
                return  # mitmproxy's HTTP layer; decided per request in requestheaders
            else:
                tracked = self._decide_connection(context, "TCP", None)
            nextlayer.layer = CountingPassthrough(context, tracked, self._direct_relay)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        """A ClientHello that reached mitmproxy's own TLS layer (not the transparent path above):
        decided on its SNI like any other, and never intercepted."""
        context = data.context
        data.ignore_connection = True

        def deny(reason: str | None) -> None:
            self._internal_error_connection(context, "tls", written=reason is None)

        with self._deny_on_error(deny):
            self._decide_connection(context, "HTTPS", data.client_hello.sni or None)

    def _internal_error_connection(
        self, context: proxy_context.Context, kind: str, written: bool
    ) -> TrackedConnection:
        tracked = TrackedConnection(self._internal_error(kind, context.client, context.server.address, None))
        tracked.written = written  # a recorder failure has already stopped the gateway
        self.connections[context.client.id] = tracked
        return tracked

    def _request_base(self, client: Client, server: Server) -> tuple[str, int, str, int]:
        src_ip, src_port = client.peername[:2]
        dst_ip, dst_port = server.address[:2] if server.address else ("", 0)
        return src_ip, src_port, dst_ip, dst_port

    def _is_the_gateway(self, *hosts: str | None) -> bool:
        return any(host and self._is_own(host) for host in hosts)

    def _is_own(self, host: str) -> bool:
        known = self._own_cache.get(host)
        if known is None:
            if len(self._own_cache) > 65536:
                self._own_cache.clear()
            known = self._own_cache[host] = is_own_address(host, self.own_addresses or frozenset())
        return known

    def connection_request(
        self, protocol: str, src_ip: str, src_port: int, dst_ip: str, dst_port: int, sni: str | None
    ) -> Request:
        """The Request of a transparent connection (also the fast path's: the same inputs)."""
        return Request(
            protocol, src_ip, src_port, dst_port, dst_ip=dst_ip, host=sni,
            dst_names=frozenset(self.names_by_ip.get(dst_ip, ())),
            to_gateway=self._is_the_gateway(dst_ip, sni),
        )  # fmt: skip

    def _decide_connection(
        self, context: proxy_context.Context, protocol: str, sni: str | None
    ) -> TrackedConnection:
        """HTTPS (on its SNI) or raw TCP: decide, pin the upstream and approve it, or leave it
        unapproved (server_connect then refuses it); the event waits for the close."""
        src_ip, src_port, dst_ip, dst_port = self._request_base(context.client, context.server)
        request = self.connection_request(protocol, src_ip, src_port, dst_ip, dst_port, sni)
        decision = self._decide(request)
        event = event_for_decision(
            request, decision, policy_name=self._policy_name, run=self._run_id
        )
        tracked = TrackedConnection(event, client_dst=dst_ip)
        self.connections[context.client.id] = tracked
        if decision.allowed:
            # Pin the upstream to the name that was allowed; a network-rule allow without SNI
            # keeps the address the client chose, which is what the rule allowed.
            target = (sni, dst_port) if sni else (dst_ip, dst_port)
            context.server.address = target
            tracked.approved[target] = request
        elif protocol == "HTTPS":
            tracked.deny_style = self.config.https_deny if self.config else "close"
            if tracked.deny_style == "alert" and self.alert_address is not None:
                context.server.address = self.alert_address
                tracked.approved[self.alert_address] = None
        return tracked

    @property
    def _policy_name(self) -> str:
        return self.config.policy.name if self.config else ""

    # --- plain HTTP -----------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        def deny(reason: str | None) -> None:
            flow.kill()
            if reason is not None:
                try:
                    self._write(
                        self._internal_error(
                            "http", flow.client_conn, flow.server_conn.address, None
                        )
                    )
                except RecorderError:
                    pass

        with self._deny_on_error(deny):
            self._decide_http(flow)

    def _decide_http(self, flow: http.HTTPFlow) -> None:
        client, server = flow.client_conn, flow.server_conn
        src_ip, src_port, dst_ip, dst_port = self._request_base(client, server)
        if not dst_port:
            dst_port = flow.request.port
        host_header = flow.request.host_header or ""
        host, header_port = _split_host(host_header)
        url = f"{host}{flow.request.path}" if host else flow.request.path
        request = Request(
            "HTTP", src_ip, src_port, dst_port, dst_ip=dst_ip or None, host=host.lower() or None,
            dst_names=frozenset(self.names_by_ip.get(dst_ip, ())), host_port=header_port,
            to_gateway=self._is_the_gateway(dst_ip, host or None),
        )  # fmt: skip
        decision = self._decide(request)
        event = event_for_decision(
            request, decision, policy_name=self._policy_name, run=self._run_id, url=url
        )
        if decision.reason == Reason.HOST_PORT_MISMATCH:
            self._write(event)
            flow.kill()  # Azure drops such a request: no answer, not its 470
            return
        if not decision.allowed:
            response = http.Response.make(
                470, DENY_BODY, {"Content-Type": "text/plain; charset=utf-8"}
            )
            response.reason = "status code 470"
            flow.response = response
            event.status = 470
            event.bytes_down = len(DENY_BODY)
            event.duration_ms = 0
            self._write(event)
            return
        target_host = host or dst_ip
        flow.request.host = target_host
        flow.request.port = dst_port
        flow.request.host_header = host_header or None
        tracked = self.connections.setdefault(client.id, TrackedConnection(event, written=True))
        tracked.approved[(target_host, dst_port)] = request
        flow.metadata["egress_event"] = event
        flow.metadata["egress_started"] = time.monotonic()

    def response(self, flow: http.HTTPFlow) -> None:
        self._finish_http(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._finish_http(flow)

    def _finish_http(self, flow: http.HTTPFlow) -> None:
        event: Event | None = flow.metadata.pop("egress_event", None)
        if event is None:
            return
        try:
            tracked = self.connections.get(flow.client_conn.id)
            refusal = (
                tracked.refused.get((flow.request.host, flow.request.port)) if tracked else None
            )
            if refusal is not None and flow.response is None:
                take_decision(event, refusal)
            elif (
                tracked is not None and flow.response is None
                and (flow.request.host, flow.request.port) in tracked.unreachable
            ):  # fmt: skip
                event.upstream = UPSTREAM_UNREACHABLE
            elif (
                flow.response is None and flow.error is not None and event.action != DENY
                and flow.server_conn.timestamp_start is not None
            ):  # fmt: skip
                event.upstream = upstream_failure(flow.error.msg)
            event.status = flow.response.status_code if flow.response else None
            event.bytes_up = len(flow.request.raw_content or b"")
            event.bytes_down = len(flow.response.raw_content or b"") if flow.response else 0
            event.duration_ms = int(
                (time.monotonic() - flow.metadata.pop("egress_started", time.monotonic())) * 1000
            )
        except Exception:  # fail closed: the answer is not passed on
            logger.exception("egress: internal error; the flow is killed")
            event.reason = Reason.INTERNAL_ERROR
            flow.kill()
        finally:
            try:
                self._write(event)
            except RecorderError:
                flow.kill()

    # --- the choke point ------------------------------------------------------------------

    async def server_connect(self, data: ServerConnectionHookData) -> None:
        try:
            await self._check_upstream(data)
        except asyncio.CancelledError:
            data.server.error = Reason.REFUSED
            raise
        except Exception:  # fail closed: mitmproxy would log it and dial
            logger.exception("egress: internal error; the upstream connection is refused")
            data.server.error = f"{Reason.REFUSED} ({Reason.INTERNAL_ERROR})"
            try:
                tracked = self.connections.get(data.client.id)
                if tracked is not None and not tracked.written:
                    take_decision(tracked.event, INTERNAL_ERROR)
            except Exception:  # the refusal above stands; the record is best effort
                logger.exception("egress: cannot mark the connection's event")

    async def _check_upstream(self, data: ServerConnectionHookData) -> None:
        tracked = self.connections.get(data.client.id)
        address = data.server.address
        target = (address[0], address[1]) if address else None
        if tracked is None or target is None or target not in tracked.approved:
            if tracked is not None and tracked.deny_style == "drop":
                await self._hold_silent(data.client)
            data.server.error = Reason.REFUSED
            return
        if target == self.alert_address:
            return
        host, port = target
        if self.sinkhole.unreachable(host):
            self._unreachable(data, tracked, target, f"{host}: {UNREACHABLE} (no DNS answer)")
            return
        if self._is_ip(host):
            addresses = [host]
        else:
            known = self._known_addresses(host, tracked)
            addresses = known if known else await self._resolve_or_refuse(data, host)
        if not addresses:
            self._unreachable(data, tracked, target, data.server.error or UNREACHABLE)
            return
        refusal = self._refusal_at_dial(tracked.approved[target], host, addresses)
        if refusal is not None:
            data.server.error = f"{Reason.REFUSED}: {refusal.reason}"
            tracked.refused[target] = refusal
            if not tracked.written:
                take_decision(tracked.event, refusal)
            return
        # Dial the address just checked, not the name again: a second lookup could answer
        # differently (DNS rebinding).
        data.server.address = (addresses[0], port)
        tracked.dialled[data.server.address] = target

    def _refusal_at_dial(
        self, request: Request | None, host: str, addresses: list[str]
    ) -> Decision | None:
        """The Decider's denial of dialling `host` at `addresses` for the Request it allowed,
        or None when the approval stands. It is asked again only when dialling reveals a fact
        the Request lacked (the name resolves to the gateway itself): the Decider is pure, so
        the same Request would get the same Allow."""
        if request is None:  # an approval without a decided Request: fail closed
            return INTERNAL_ERROR
        if not self._is_the_gateway(host, *addresses):
            return None
        decision = self._decide(replace(request, to_gateway=True))
        return None if decision.allowed else decision

    @staticmethod
    def _unreachable(
        data: ServerConnectionHookData, tracked: TrackedConnection, target: tuple[str, int], why: str
    ) -> None:
        """An approved upstream this machine cannot reach: the connection ends as a failed
        dial ends, and is recorded as allowed with `upstream: unreachable`, not as a deny."""
        data.server.error = why
        tracked.unreachable.add(target)
        if not tracked.written:
            tracked.event.upstream = UPSTREAM_UNREACHABLE

    def server_connect_error(self, data: ServerConnectionHookData) -> None:
        """A dial approved by server_connect failed: the event says why (`refused`, `timeout`,
        `unreachable`), and the destination counts as unreachable from this machine, so learn
        marks it needed but not verified."""
        try:
            tracked = self.connections.get(data.client.id)
            address = data.server.address
            dialled = (address[0], address[1]) if address else None
            if tracked is None or dialled not in tracked.dialled:
                return  # refused by server_connect: its own record says why
            tracked.unreachable.add(tracked.dialled[dialled])
            tracked.upstream_failure = upstream_failure(data.server.error, UPSTREAM_UNREACHABLE)
            if not tracked.written:
                tracked.event.upstream = tracked.upstream_failure
        except Exception:  # the connection has failed anyway; the record is best effort
            logger.exception("egress: internal error while recording an upstream failure")

    def _known_addresses(self, host: str, tracked: TrackedConnection) -> list[str]:
        """Addresses for `host` that need no lookup in the thread pool: the gateway's hosts
        file, or the address the client dialled when the firewall's own DNS answered this
        client that address for this name (the lookup would ask the same resolver)."""
        name = host.lower().rstrip(".")
        listed = (self.hosts_file or {}).get(name)
        if listed:
            return sorted(dict.fromkeys(listed), key=lambda address: ":" in address)
        if tracked.client_dst and name in self.names_by_ip.get(tracked.client_dst, ()):
            return [tracked.client_dst]
        return []

    @staticmethod
    def _is_ip(host: str) -> bool:
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        except OSError:
            return False
        return True

    async def _resolve_or_refuse(self, data: ServerConnectionHookData, host: str) -> list[str]:
        try:
            addresses = await self.resolve(host, data.server.address[1])
        except OSError as error:
            addresses, reason = [], str(error)
        else:
            reason = "no address"
        if not addresses:
            data.server.error = f"cannot resolve {host}: {reason}"
        return addresses

    async def _hold_silent(self, client: Client) -> None:
        """`drop`: answer nothing and close nothing until the client closes its side (its own
        timeout), or egress_drop_seconds pass."""
        assert self.config is not None
        deadline = time.monotonic() + self.config.drop_seconds
        while client.state & ConnectionState.CAN_READ:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(DROP_POLL_SECONDS, remaining))

    def client_disconnected(self, client: Client) -> None:
        tracked = self.connections.pop(client.id, None)
        if tracked is not None:
            try:
                self._finish(tracked)
            except RecorderError:
                pass
            except Exception:  # the connection is over; keep the gateway up
                logger.exception("egress: internal error while recording a closed connection")

    # --- DNS ------------------------------------------------------------------------------

    def dns_request(self, flow: dns.DNSFlow) -> Awaitable[None] | None:
        self.dns_started[flow.id] = time.monotonic()
        if self.config is None or self.config.dns != "azure" or not needs_deadline(flow):
            return None
        # Awaited by mitmproxy before its own resolver runs: an answer within the deadline or
        # SERVFAIL, which dns_response turns into the sinkhole address.
        return resolve_in_time(flow, self.config.dns_seconds)

    def dns_response(self, flow: dns.DNSFlow) -> None:
        def deny(_: str | None) -> None:
            flow.response = flow.request.fail(dns.response_codes.SERVFAIL)

        with self._deny_on_error(deny):
            sinkholed = self._answer_as_azure(flow)
            self._record_dns(flow, sinkholed)

    def _answer_as_azure(self, flow: dns.DNSFlow) -> bool:
        """In `azure` DNS mode, a name that does not resolve here gets a sinkhole answer."""
        if self.config is None or self.config.dns != "azure":
            return False
        flow.response, sinkholed = answer_as_azure(flow.request, flow.response, self.sinkhole)
        return sinkholed

    def dns_error(self, flow: dns.DNSFlow) -> None:
        with self._deny_on_error(lambda _: None):
            self._record_dns(flow)

    def _record_dns(self, flow: dns.DNSFlow, sinkholed: bool = False) -> None:
        started = self.dns_started.pop(flow.id, time.monotonic())
        question = flow.request.questions[0] if flow.request.questions else None
        name = question.name if question else ""
        qtype = dns.types.to_str(question.type) if question else "?"
        response = flow.response
        answers: list[str] = []
        if response is not None:
            for answer in response.answers:
                if answer.type in (dns.types.A, dns.types.AAAA):
                    address = str(
                        answer.ipv4_address if answer.type == dns.types.A else answer.ipv6_address
                    )
                    answers.append(address)
                    self.names_by_ip.setdefault(address, set()).update(
                        {name.lower().rstrip("."), answer.name.lower().rstrip(".")}
                    )
        src_ip, src_port = flow.client_conn.peername[:2]
        rcode = dns.response_codes.to_str(response.response_code) if response else "SERVFAIL"
        seconds = time.monotonic() - started
        line = dns_line(
            f"{src_ip}:{src_port}", flow.request.id, qtype, name,
            "tcp" if flow.client_conn.transport_protocol == "tcp" else "udp",
            len(flow.request.packed), rcode, "qr,rd,ra", len(response.packed) if response else 0, seconds,
        )  # fmt: skip
        self._write(Event(
            ts=now_iso(), run=self._run_id, kind="dns", src=f"{src_ip}:{src_port}", host=name,
            port=53, protocol="DNS", action="Allow", would="Allow", reason=rcode,
            bytes_up=len(flow.request.packed), bytes_down=len(response.packed) if response else 0,
            duration_ms=int(seconds * 1000), azure=line, answers=answers, sinkholed=sinkholed,
        ))  # fmt: skip
