"""The fast path on real loopback sockets, in a real lean master: an allowed TLS pass-through is
relayed by harness.gateway.fastpath and recorded exactly as mitmproxy's relay records it (the
same run with `egress_fast_path=false` is the reference); a denied name, a hello without SNI and
plain HTTP reach mitmproxy with their bytes unread; an exception in the fast path closes the
client's connection, dials nothing and records an internal error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest
from mitmproxy import platform
from tls_hello import client_hello

from harness.events import Event
from harness.gateway import fastpath, relay
from harness.gateway.addon import FirewallAddon
from harness.gateway.master import make_master
from harness.policy.model import Reason
from harness.runfolder import read_events

# A `first` listed here is sent in these pieces, each its own read on the gateway's side.
PIECES: dict[bytes, list[bytes]] = {}
ANSWER = b"server says hello " * 1000  # more than one read's worth, in both directions' counts
CLIENT_REST = b"the client's next records " * 500




def policy(port: int) -> str:
    return f"""
name: fast
rule_collection_groups:
  - name: apps
    priority: 300
    rule_collections:
      - name: allow-web
        priority: 200
        action: Allow
        rules:
          - rule_type: ApplicationRule
            name: web
            source_addresses: ["*"]
            protocols: ["Https:{port}", "Http:{port}"]
            target_fqdns: ["allowed.test"]
"""


@dataclass
class Upstream:
    """A loopback server that answers ANSWER once it has `expect` bytes (the hello), reads the
    rest up to the client's EOF, then closes its side."""

    expect: int
    accepted: int = 0
    received: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        got = b""
        try:
            while len(got) < self.expect:
                chunk = await asyncio.wait_for(reader.read(65536), 5)
                if not chunk:
                    break
                got += chunk
            writer.write(ANSWER)
            await writer.drain()
            while chunk := await asyncio.wait_for(reader.read(65536), 5):
                got += chunk
            writer.write_eof()  # after the client's EOF: both half-closes are relayed
        except (OSError, TimeoutError):
            pass
        finally:
            self.received.append(got)
            writer.close()


async def exchange(port: int, first: bytes, rest: bytes = b"") -> tuple[bytes, str]:
    """Send `first` (and `rest` once something came back), read to EOF: (bytes, how it ended)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for piece in PIECES.get(first, [first]):
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.05)  # one read each on the gateway's side
    got = b""
    ended = "eof"
    try:
        if rest:
            got += await asyncio.wait_for(reader.read(1), 5)
            writer.write(rest)
        writer.write_eof()
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            got += chunk
    except ConnectionResetError:
        ended = "reset"
    finally:
        writer.close()
    return got, ended


@dataclass
class Outcome:
    events: list[Event]
    answers: list[tuple[bytes, str]]
    upstream: Upstream
    fast: fastpath.FastPath


def through_gateway(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sends: list[tuple[bytes, bytes]],
    fast_path: bool = True,
    prepare: Callable[[FirewallAddon, fastpath.FastPath], None] | None = None,
) -> Outcome:
    """Each (first, rest) sent on its own connection through a lean master in transparent mode
    whose "original destination" is a loopback upstream; the connections' events and answers."""
    record = tmp_path / ("fast" if fast_path else "mitmproxy")
    record.mkdir()

    async def scenario() -> Outcome:
        upstream = Upstream(expect=len(sends[0][0]))
        upstream_port = await upstream.start()
        monkeypatch.setattr(platform, "original_addr", lambda sock: ("127.0.0.1", upstream_port))
        (tmp_path / "policy.yaml").write_text(policy(upstream_port))
        settings = [f"egress_policy={tmp_path / 'policy.yaml'}", f"egress_record_dir={record}",
                    "egress_run_id=unit", f"egress_fast_path={str(fast_path).lower()}"]  # fmt: skip
        gateway = make_master(
            ["transparent@127.0.0.1:0"], settings, loop=asyncio.get_running_loop()
        )
        addon = gateway.addons.get("firewalladdon")
        fast = gateway.egress_fast_path
        # The upstream is on loopback, which the gateway refuses as itself: not in this test.
        addon.hosts_file = {"allowed.test": ["127.0.0.1"], "denied.test": ["127.0.0.1"]}
        monkeypatch.setattr(addon, "_is_own", lambda host: False)
        if prepare is not None:
            prepare(addon, fast)
        running = asyncio.create_task(gateway.run())
        for _ in range(500):
            if addon.is_running:
                break
            await asyncio.sleep(0.01)
        port = gateway.addons.get("proxyserver").listen_addrs()[0][1]
        answers = [await exchange(port, first, rest) for first, rest in sends]
        for _ in range(500):
            written = [e for e in read_events(record) if e.kind != "lifecycle"]
            if len(written) >= len(sends) and not addon.connections:
                break
            await asyncio.sleep(0.01)
        gateway.shutdown()
        await asyncio.wait_for(running, 10)
        assert upstream.server is not None
        upstream.server.close()
        events = [e for e in read_events(record) if e.kind != "lifecycle"]
        return Outcome(events, answers, upstream, fast)

    return asyncio.run(scenario())


def comparable(event: Event) -> dict:
    """An event without what differs between two runs: time, duration, the source port and the
    upstream's (each run has its own)."""
    fields = asdict(event)
    for varying in ("ts", "duration_ms"):
        fields.pop(varying)
    src_ip = event.src.rsplit(":", 1)[0]
    fields["src"] = src_ip
    azure = event.azure.replace(event.src, src_ip)
    if event.port:
        fields["port"] = "PORT"
        fields["dst"] = (event.dst or "").replace(f":{event.port}", ":PORT")
        azure = azure.replace(f":{event.port}", ":PORT")
    fields["azure"] = azure
    return fields


def test_an_allowed_pass_through_is_relayed_by_the_fast_path_and_recorded_as_mitmproxy_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sends = [(client_hello("allowed.test"), CLIENT_REST)]
    fast = through_gateway(tmp_path, monkeypatch, sends)
    reference = through_gateway(tmp_path, monkeypatch, sends, fast_path=False)

    assert (fast.fast.relayed, fast.fast.handed_over) == (1, 0)
    assert (reference.fast.relayed, reference.fast.handed_over) == (0, 1)
    assert fast.answers == reference.answers == [(ANSWER, "eof")]
    assert fast.upstream.received == reference.upstream.received == [sends[0][0] + CLIENT_REST]
    assert [comparable(e) for e in fast.events] == [comparable(e) for e in reference.events]
    (event,) = fast.events
    assert (event.action, event.host, event.upstream) == ("Allow", "allowed.test", None)
    assert (event.bytes_up, event.bytes_down) == (len(sends[0][0]) + len(CLIENT_REST), len(ANSWER))


@pytest.mark.skipif(not relay.ZERO_COPY, reason="no os.splice on this platform")
def test_a_connection_that_brought_enough_back_is_relayed_by_the_kernel_and_recorded_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sends = [(client_hello("allowed.test"), CLIENT_REST)]
    reference = through_gateway(tmp_path, monkeypatch, sends, fast_path=False)
    monkeypatch.setattr(fastpath, "SPLICE_AFTER", 1)  # from the upstream's first chunk on
    spliced = through_gateway(tmp_path, monkeypatch, sends)

    assert (spliced.fast.relayed, spliced.fast.spliced) == (1, 1)
    assert spliced.answers == reference.answers == [(ANSWER, "eof")]
    assert spliced.upstream.received == reference.upstream.received
    assert [comparable(e) for e in spliced.events] == [comparable(e) for e in reference.events]
    (event,) = spliced.events
    assert (event.bytes_up, event.bytes_down) == (len(sends[0][0]) + len(CLIENT_REST), len(ANSWER))


def test_a_short_connection_is_not_handed_to_the_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = through_gateway(tmp_path, monkeypatch, [(client_hello("allowed.test"), CLIENT_REST)])
    assert len(ANSWER) < fastpath.SPLICE_AFTER
    assert (fast.fast.relayed, fast.fast.spliced) == (1, 0)


@pytest.mark.parametrize(
    ("first", "action"),
    [
        pytest.param(client_hello("denied.test"), "Deny", id="denied-sni"),
        pytest.param(client_hello(None), "Deny", id="no-sni"),
        pytest.param(b"GET /x HTTP/1.1\r\nHost: allowed.test\r\n\r\n", "Allow", id="http"),
        pytest.param(b"\x00\x01 not a protocol", "Deny", id="raw-tcp"),
    ],
)
def test_everything_else_reaches_mitmproxy_unread_and_ends_as_without_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: bytes, action: str
) -> None:
    fast = through_gateway(tmp_path, monkeypatch, [(first, b"")])
    reference = through_gateway(tmp_path, monkeypatch, [(first, b"")], fast_path=False)

    assert (fast.fast.relayed, fast.fast.handed_over) == (0, 1)
    assert fast.answers == reference.answers
    assert fast.upstream.accepted == reference.upstream.accepted
    assert [comparable(e) for e in fast.events] == [comparable(e) for e in reference.events]
    assert [e.action for e in fast.events] == [action]


def test_a_hello_in_pieces_is_buffered_until_complete_and_relayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hello = client_hello("allowed.test")
    monkeypatch.setitem(PIECES, hello, [hello[:1], hello[1:40], hello[40:]])
    outcome = through_gateway(tmp_path, monkeypatch, [(hello, b"")])
    assert (outcome.fast.relayed, outcome.fast.handed_over) == (1, 0)
    assert outcome.answers == [(ANSWER, "eof")]
    assert outcome.upstream.received == [hello]
    assert [(e.action, e.bytes_up, e.bytes_down) for e in outcome.events] == [
        ("Allow", len(hello), len(ANSWER))
    ]


def test_a_name_that_needs_a_lookup_goes_to_mitmproxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hello = client_hello("allowed.test")

    def no_known_address(addon: FirewallAddon, fast: fastpath.FastPath) -> None:
        addon.hosts_file = {}

        async def resolve(host: str, port: int) -> list[str]:
            return ["127.0.0.1"]

        addon.resolve = resolve

    outcome = through_gateway(tmp_path, monkeypatch, [(hello, b"")], prepare=no_known_address)
    assert (outcome.fast.relayed, outcome.fast.handed_over) == (0, 1)
    assert outcome.answers == [(ANSWER, "eof")]
    assert outcome.upstream.received == [hello]
    assert [(e.action, e.bytes_up, e.bytes_down) for e in outcome.events] == [
        ("Allow", len(hello), len(ANSWER))
    ]


def test_an_allowed_upstream_that_refuses_is_recorded_as_mitmproxy_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Point the original destination at a port nobody listens on: both paths dial it.
    sends = [(client_hello("allowed.test"), b"")]

    def closed_port(addon: FirewallAddon, fast: fastpath.FastPath) -> None:
        import socket

        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        monkeypatch.setattr(platform, "original_addr", lambda sock: ("127.0.0.1", port))
        (tmp_path / "policy.yaml").write_text(policy(port))
        addon.configure({"egress_policy"})

    fast = through_gateway(tmp_path, monkeypatch, sends, prepare=closed_port)
    reference = through_gateway(tmp_path, monkeypatch, sends, fast_path=False, prepare=closed_port)
    assert fast.fast.relayed == 1
    assert fast.answers == reference.answers == [(b"", "eof")]
    assert [comparable(e) for e in fast.events] == [comparable(e) for e in reference.events]
    assert [(e.action, e.upstream, e.bytes_up) for e in fast.events] == [
        ("Allow", "refused", len(sends[0][0]))
    ]


def test_an_exception_in_the_decision_closes_the_client_and_records_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_decider(addon: FirewallAddon, fast: fastpath.FastPath) -> None:
        def decide(request: object) -> None:
            raise RuntimeError("broken")

        monkeypatch.setattr(addon, "_decide", decide)

    sends = [(client_hello("allowed.test"), b"")]
    outcome = through_gateway(tmp_path, monkeypatch, sends, prepare=broken_decider)
    assert (outcome.fast.relayed, outcome.fast.handed_over) == (0, 0)
    assert outcome.answers[0][0] == b""
    assert outcome.upstream.accepted == 0
    assert [(e.action, e.reason) for e in outcome.events] == [("Deny", Reason.INTERNAL_ERROR)]


def test_an_exception_in_the_relay_aborts_both_sides_and_records_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_relay(addon: FirewallAddon, fast: fastpath.FastPath) -> None:
        def connected(self: fastpath.Relay) -> None:
            raise RuntimeError("broken")

        monkeypatch.setattr(fastpath.Relay, "_connected", connected)

    sends = [(client_hello("allowed.test"), b"")]
    outcome = through_gateway(tmp_path, monkeypatch, sends, prepare=broken_relay)
    assert outcome.fast.relayed == 1
    assert outcome.answers[0][0] == b""  # nothing of the upstream's answer passed
    assert outcome.upstream.received == [b""]  # nor the hello: aborted before it was sent
    assert [(e.action, e.reason) for e in outcome.events] == [("Deny", Reason.INTERNAL_ERROR)]


def test_a_name_the_sinkhole_answered_goes_to_mitmproxy_and_is_recorded_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def sinkholed(addon: FirewallAddon, fast: fastpath.FastPath) -> None:
        addon.sinkhole.address_for("allowed.test")

    hello = client_hello("allowed.test")
    outcome = through_gateway(tmp_path, monkeypatch, [(hello, b"")], prepare=sinkholed)
    assert (outcome.fast.relayed, outcome.fast.handed_over) == (0, 1)
    assert outcome.upstream.accepted == 0
    assert [(e.action, e.upstream) for e in outcome.events] == [("Allow", "unreachable")]


def test_a_connection_open_across_a_run_switch_is_recorded_in_the_run_it_began_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared gateway's next run (one option update) closes the previous recording with what is
    still open, as for a connection mitmproxy relays; nothing of it lands in the next run."""
    hello = client_hello("allowed.test")
    first_run, next_run = tmp_path / "first", tmp_path / "next"
    first_run.mkdir()
    next_run.mkdir()

    async def scenario() -> fastpath.FastPath:
        upstream = Upstream(expect=len(hello))
        upstream_port = await upstream.start()
        monkeypatch.setattr(platform, "original_addr", lambda sock: ("127.0.0.1", upstream_port))
        (tmp_path / "policy.yaml").write_text(policy(upstream_port))
        settings = [f"egress_policy={tmp_path / 'policy.yaml'}", f"egress_record_dir={first_run}",
                    "egress_run_id=first"]  # fmt: skip
        gateway = make_master(
            ["transparent@127.0.0.1:0"], settings, loop=asyncio.get_running_loop()
        )
        addon = gateway.addons.get("firewalladdon")
        addon.hosts_file = {"allowed.test": ["127.0.0.1"]}
        monkeypatch.setattr(addon, "_is_own", lambda host: False)
        running = asyncio.create_task(gateway.run())
        while not addon.is_running:
            await asyncio.sleep(0.01)
        port = gateway.addons.get("proxyserver").listen_addrs()[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(hello)
        assert await asyncio.wait_for(reader.readexactly(len(ANSWER)), 5) == ANSWER
        gateway.options.update(egress_record_dir=str(next_run), egress_run_id="next")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        for _ in range(100):
            if not addon.connections:
                break
            await asyncio.sleep(0.01)
        gateway.shutdown()
        await asyncio.wait_for(running, 10)
        assert upstream.server is not None
        upstream.server.close()
        return gateway.egress_fast_path

    fast = asyncio.run(scenario())
    assert fast.relayed == 1
    first = [(e.kind, e.reason, e.run) for e in read_events(first_run)]
    assert first[0][:2] == ("lifecycle", "ready") and first[-1][:2] == ("lifecycle", "stopped")
    assert [(kind, run) for kind, _, run in first if kind == "tls"] == [("tls", "first")]
    assert [e.kind for e in read_events(next_run)] == ["lifecycle", "lifecycle"]  # ready, stopped
