"""The lean master's hook table: each hook reaches the addons that have it, in chain order, as
mitmproxy's own AddonManager would call them (errors logged, the rest still called; AddonHalt
stops the hook; an addon added later is seen)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from mitmproxy import exceptions
from mitmproxy.connection import Client
from mitmproxy.proxy import server_hooks

from harness.gateway.addon import FirewallAddon
from harness.gateway.master import make_master


class Recording:
    def __init__(self, name: str, calls: list[str], fail: Exception | None = None) -> None:
        self.name = name
        self.calls = calls
        self.fail = fail

    def client_connected(self, client: Client) -> None:
        self.calls.append(f"{self.name}:{client.peername[1]}")
        if self.fail is not None:
            raise self.fail


class AsyncRecording(Recording):
    async def client_connected(self, client: Client) -> None:
        await asyncio.sleep(0)
        self.calls.append(f"{self.name}:{client.peername[1]}")


def client() -> Client:
    return Client(peername=("10.0.0.2", 7), sockname=("10.0.0.1", 443), timestamp_start=0)


def test_the_lean_master_dispatches_hooks_in_chain_order(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    async def scenario() -> None:
        gateway = make_master([], [], scripts=(), loop=asyncio.get_running_loop())
        assert isinstance(gateway.addons.get("firewalladdon"), FirewallAddon)
        assert type(gateway.addons).__name__ == "HookTable"  # not mitmproxy's walk of every addon
        assert gateway.addons.get("termlog") is not None
        # No deprecated add_log hook per log record (each one woke the loop and walked all addons).
        assert not any(type(handler).__name__ == "LegacyLogEvents"
                       for handler in logging.getLogger().handlers)  # fmt: skip
        gateway.addons.add(Recording("first", calls, fail=ValueError("broken addon")))
        gateway.addons.add(AsyncRecording("second", calls))
        await gateway.addons.handle_lifecycle(server_hooks.ClientConnectedHook(client()))
        gateway.addons.add(Recording("third", calls, fail=exceptions.AddonHalt()))
        gateway.addons.add(Recording("never", calls))
        await gateway.addons.handle_lifecycle(server_hooks.ClientConnectedHook(client()))

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert calls == ["first:7", "second:7", "first:7", "second:7", "third:7"]
    assert caplog.text.count("Addon error: broken addon") == 2


DEFERRED_GRAMMAR = """
import asyncio, sys
from harness.gateway.master import _defer_the_command_grammar, make_master

async def scenario():
    _defer_the_command_grammar()  # as the gateway's _run does
    gateway = make_master([], [], loop=asyncio.get_running_loop())
    print("started-without-pyparsing", "pyparsing.core" not in sys.modules)
    # A command line still parses: the grammar loads on first use.
    gateway.commands.execute("set termlog_verbosity=error")
    print("option", gateway.options.termlog_verbosity)
    from mitmproxy import command_lexer
    print("quote", command_lexer.quote("a b"), command_lexer.unquote("'c'"))
    print("loaded", "pyparsing.core" in sys.modules)

asyncio.run(scenario())

# A submodule imported before any name is used loads once, and the package reuses it.
for name in [name for name in sys.modules if name.split(".")[0] == "pyparsing"]:
    del sys.modules[name]
_defer_the_command_grammar()
import pyparsing.core
import pyparsing
print("submodule", pyparsing.core.Word is pyparsing.Word, sys.modules["pyparsing.core"] is pyparsing.core)
"""


def test_the_command_grammar_loads_only_when_a_command_line_is_parsed() -> None:
    """pyparsing and mitmproxy's command grammar (~0.1 CPU-s of the gateway's start) wait
    until a command line is parsed, which the gateway never does; then they work as before."""
    import subprocess
    import sys

    answer = subprocess.run([sys.executable, "-c", DEFERRED_GRAMMAR],
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert answer.splitlines() == [
        "started-without-pyparsing True",
        "option error",
        'quote "a b" c',
        "loaded True",
        "submodule True True",
    ]


@pytest.mark.parametrize(
    ("written", "close_writer", "installed"),
    [
        (b"ok\n", False, True),
        (b"o", False, False),  # half an answer, then silence: the timeout
        (b"failed\n", False, False),
        (b"", True, False),  # the job died without an answer
        (b"", False, False),  # silence
    ],
)
def test_the_master_listens_only_once_the_rules_job_said_ok(
    written: bytes, close_writer: bool, installed: bool
) -> None:
    import os

    from harness.gateway.master import rules_installed

    reader, writer = os.pipe()
    try:
        os.write(writer, written)
        if close_writer:
            os.close(writer)
        assert rules_installed(reader, timeout=0.2) is installed
    finally:
        if not close_writer:
            os.close(writer)
    with pytest.raises(OSError):
        os.fstat(reader)  # closed either way: the descriptor does not leak into the gateway
