"""The direct relay on real loopback sockets: mitmproxy's two streams of one connection (the
client's accepted socket, the upstream's dialled one) are taken over, and the bytes, their
order, the counts, back-pressure and the closes that mitmproxy's own tasks must still see."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
from mitmproxy.connection import Client, ConnectionState, Server
from mitmproxy.proxy import events
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.server import ConnectionIO
from mitmproxy.test import taddons

from harness.gateway import relay
from harness.gateway.addon import CountingPassthrough, TrackedConnection
from harness.gateway.relay import take_over

MODES = ["zero-copy", "copy"] if relay.ZERO_COPY else ["copy"]


@dataclass
class Counted:
    bytes_up: int = 0
    bytes_down: int = 0


class Watchdog:
    def __init__(self) -> None:
        self.activity = 0

    def register_activity(self) -> None:
        self.activity += 1


class Handler:
    """What take_over reads of mitmproxy's ConnectionHandler."""

    def __init__(self) -> None:
        self.transports: dict = {}
        self.timeout_watchdog = Watchdog()
        self._server_event_lock = asyncio.Lock()


@dataclass
class Lab:
    handler: Handler
    client: Client
    server: Server
    # The outside ends: the real client, and the upstream's accepted socket.
    outside: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    # mitmproxy's ends of the same two sockets.
    gateway_client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    gateway_server: tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def accepted_pair() -> tuple[tuple, tuple]:
    """(the dialling end, the accepting end) of one loopback TCP connection, as streams."""
    accepted: asyncio.Future = asyncio.get_running_loop().create_future()

    async def on_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result((reader, writer))

    server = await asyncio.start_server(on_accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    dialled = await asyncio.open_connection("127.0.0.1", port)
    accepting = await accepted
    server.close()
    return dialled, accepting


async def make_lab() -> Lab:
    outside, gateway_client = await accepted_pair()
    gateway_server, upstream = await accepted_pair()
    client = Client(peername=("127.0.0.1", 1), sockname=("127.0.0.1", 2), timestamp_start=0,
                    state=ConnectionState.OPEN)  # fmt: skip
    server = Server(address=("127.0.0.1", 3))
    server.state = ConnectionState.OPEN
    handler = Handler()
    handler.transports[client] = ConnectionIO(None, *gateway_client)
    handler.transports[server] = ConnectionIO(None, *gateway_server)
    return Lab(handler, client, server, outside, upstream, gateway_client, gateway_server)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 20))


@pytest.fixture(params=MODES)
def mode(request, monkeypatch) -> str:
    """Each test runs with the zero-copy relay (where the kernel has splice) and the copying one;
    take_over is checked to have taken the way asked for."""
    wanted = request.param
    original = relay.relay_transports

    def checked(*args, **kwargs):
        kwargs["zero_copy"] = wanted == "zero-copy"
        taken = original(*args, **kwargs)
        assert taken == wanted
        return taken

    monkeypatch.setattr(relay, "relay_transports", checked)
    return wanted


def close_all(lab: Lab) -> None:
    for _, writer in (lab.outside, lab.upstream, lab.gateway_client, lab.gateway_server):
        writer.close()


async def read_all(reader: asyncio.StreamReader, size: int, slowly: bool = False) -> bytes:
    received = bytearray()
    while len(received) < size:
        chunk = await reader.read(1 << 16)
        assert chunk, f"EOF after {len(received)} of {size} bytes"
        received += chunk
        if slowly:
            await asyncio.sleep(0.001)
    return bytes(received)


def test_bytes_go_both_ways_in_order_and_are_counted(mode: str) -> None:
    async def scenario() -> None:
        lab = await make_lab()
        counted = Counted()
        assert take_over(lab.handler, lab.client, lab.server, counted)
        for number in range(50):
            lab.outside[1].write(b"up-%03d;" % number)
        assert await lab.upstream[0].readexactly(7 * 50) == b"".join(
            b"up-%03d;" % number for number in range(50)
        )
        lab.upstream[1].write(b"down" * 1000)
        assert await lab.outside[0].readexactly(4000) == b"down" * 1000
        assert (counted.bytes_up, counted.bytes_down) == (350, 4000)
        assert lab.handler.timeout_watchdog.activity >= 2
        for _, writer in (lab.outside, lab.upstream, lab.gateway_client, lab.gateway_server):
            writer.close()

    run(scenario())


def test_a_large_transfer_to_a_slow_reader_arrives_whole_under_back_pressure(mode: str) -> None:
    payload = os.urandom(24 << 20)

    async def scenario() -> None:
        lab = await make_lab()
        counted = Counted()
        assert take_over(lab.handler, lab.client, lab.server, counted)
        lab.upstream[1].write(payload)
        await asyncio.sleep(0.3)  # the client reads nothing yet: the relay must stop reading
        assert counted.bytes_down < len(payload)
        received = hashlib.sha256()
        size = 0
        while size < len(payload):
            chunk = await lab.outside[0].read(1 << 16)
            assert chunk
            received.update(chunk)
            size += len(chunk)
        assert received.digest() == hashlib.sha256(payload).digest()
        assert counted.bytes_down == len(payload)
        for _, writer in (lab.outside, lab.upstream, lab.gateway_client, lab.gateway_server):
            writer.close()

    run(scenario())


def test_eof_and_closes_reach_mitmproxys_own_readers(mode: str) -> None:
    """mitmproxy's tasks stay parked on their readers: the client's half-close must reach them
    (mitmproxy then half-closes the upstream), and so must the upstream's close."""

    async def scenario() -> None:
        lab = await make_lab()
        assert take_over(lab.handler, lab.client, lab.server, Counted())
        mitmproxy_reads_client = asyncio.ensure_future(lab.gateway_client[0].read(65535))
        lab.outside[1].write(b"last words")
        lab.outside[1].write_eof()
        assert await lab.upstream[0].readexactly(10) == b"last words"
        assert await mitmproxy_reads_client == b""  # EOF, as mitmproxy's loop sees it
        lab.gateway_server[1].write_eof()  # what mitmproxy does on the client's half-close
        assert await lab.upstream[0].read() == b""
        lab.upstream[1].write(b"answer after the half-close")
        assert await lab.outside[0].readexactly(27) == b"answer after the half-close"
        lab.upstream[1].close()
        assert await lab.gateway_server[0].read(65535) == b""
        lab.gateway_client[1].close()  # mitmproxy's final close
        assert await lab.outside[0].read() == b""
        lab.outside[1].close()

    run(scenario())


def test_a_reset_upstream_reaches_mitmproxys_reader_as_an_error_or_eof(mode: str) -> None:
    async def scenario() -> None:
        lab = await make_lab()
        assert take_over(lab.handler, lab.client, lab.server, Counted())
        lab.upstream[1].transport.abort()
        try:
            assert await lab.gateway_server[0].read(65535) == b""
        except ConnectionError:
            pass
        for _, writer in (lab.outside, lab.gateway_client, lab.gateway_server):
            writer.close()

    run(scenario())


def test_no_take_over_while_mitmproxy_has_unread_bytes(mode: str) -> None:
    """Bytes already in a reader's buffer would be relayed after newer ones: mitmproxy keeps
    relaying (the layer asks again with the next chunk)."""

    async def scenario() -> None:
        lab = await make_lab()
        lab.outside[1].write(b"not yet read by mitmproxy")
        await asyncio.sleep(0.05)
        assert not take_over(lab.handler, lab.client, lab.server, Counted())
        assert await lab.gateway_client[0].read(65535) == b"not yet read by mitmproxy"
        assert take_over(lab.handler, lab.client, lab.server, Counted())
        for _, writer in (lab.outside, lab.upstream, lab.gateway_client, lab.gateway_server):
            writer.close()

    run(scenario())


def test_no_take_over_while_a_task_waits_to_hand_mitmproxy_an_event(mode: str) -> None:
    """A read task waiting for server_event's lock holds bytes it took from its reader."""

    async def scenario() -> None:
        lab = await make_lab()
        lock = lab.handler._server_event_lock
        await lock.acquire()  # the event being handled now (take_over runs inside one)
        waiting = asyncio.ensure_future(lock.acquire())
        await asyncio.sleep(0)
        assert not take_over(lab.handler, lab.client, lab.server, Counted())
        lock.release()
        await waiting
        lock.release()
        await lock.acquire()
        assert take_over(lab.handler, lab.client, lab.server, Counted())
        for _, writer in (lab.outside, lab.upstream, lab.gateway_client, lab.gateway_server):
            writer.close()

    run(scenario())


@pytest.mark.parametrize("state", [ConnectionState.CAN_WRITE, ConnectionState.CLOSED])
def test_no_take_over_of_a_connection_that_is_closing(state: ConnectionState, mode: str) -> None:
    async def scenario() -> None:
        lab = await make_lab()
        lab.client.state = state
        assert not take_over(lab.handler, lab.client, lab.server, Counted())
        lab.client.state = ConnectionState.OPEN
        del lab.handler.transports[lab.server]
        assert not take_over(lab.handler, lab.client, lab.server, Counted())
        for _, writer in (lab.outside, lab.upstream, lab.gateway_client, lab.gateway_server):
            writer.close()

    run(scenario())


def test_the_layer_hands_over_after_relaying_the_upstreams_first_bytes() -> None:
    with taddons.context() as tctx:
        client = Client(peername=("10.0.0.2", 5), sockname=("10.0.0.1", 443), timestamp_start=0,
                        state=ConnectionState.OPEN)  # fmt: skip
        context = Context(client, tctx.options)
        context.server.address = ("allowed.test", 443)
        context.server.timestamp_start = 1.0  # already connected: the layer relays at once
        context.server.state = ConnectionState.OPEN
        asked: list[int] = []

        def direct_relay(_: Context, tracked: TrackedConnection) -> bool:
            asked.append(tracked.bytes_down)
            return len(asked) == 2  # refuse once (bytes still buffered), then take over

        tracked = TrackedConnection(event=None)  # type: ignore[arg-type]
        passthrough = CountingPassthrough(context, tracked, direct_relay)
        list(passthrough.handle_event(events.Start()))
        list(passthrough.handle_event(events.DataReceived(client, b"hello")))
        assert asked == []  # the client's bytes: the upstream has not answered yet
        list(passthrough.handle_event(events.DataReceived(context.server, b"answer")))
        list(passthrough.handle_event(events.DataReceived(context.server, b"more")))
        list(passthrough.handle_event(events.DataReceived(context.server, b"after")))
        assert asked == [6, 10]  # asked after each answer was relayed, until it took over
        assert (tracked.bytes_up, tracked.bytes_down) == (5, 15)


def test_both_directions_at_once_arrive_whole_and_are_counted_exactly(mode: str) -> None:
    up_payload, down_payload = os.urandom(6 << 20), os.urandom(9 << 20)

    async def scenario() -> None:
        lab = await make_lab()
        counted = Counted()
        assert take_over(lab.handler, lab.client, lab.server, counted)
        lab.outside[1].write(up_payload)
        lab.upstream[1].write(down_payload)
        received_up, received_down = await asyncio.gather(
            read_all(lab.upstream[0], len(up_payload)),
            read_all(lab.outside[0], len(down_payload), slowly=True),
        )
        assert received_up == up_payload and received_down == down_payload
        assert (counted.bytes_up, counted.bytes_down) == (len(up_payload), len(down_payload))
        close_all(lab)

    run(scenario())


def test_an_eof_behind_bytes_a_slow_reader_has_not_taken_arrives_after_them(mode: str) -> None:
    """The upstream sends its last bytes and closes while the client reads nothing: mitmproxy
    (which half-closes the client on the upstream's EOF) must not see the EOF before the bytes
    are on their way, or the client would lose the end of the download."""
    payload = os.urandom(12 << 20)

    async def scenario() -> None:
        lab = await make_lab()
        counted = Counted()
        assert take_over(lab.handler, lab.client, lab.server, counted)
        client_socket = lab.outside[1].get_extra_info("socket")
        client_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)  # no autotuning
        mitmproxy_reads_server = asyncio.ensure_future(lab.gateway_server[0].read(65535))
        lab.upstream[1].write(payload)
        lab.upstream[1].write_eof()
        await asyncio.sleep(0.3)
        if mode == "zero-copy":  # the pipe still holds bytes: the EOF waits behind them
            assert not mitmproxy_reads_server.done()
        reading = asyncio.ensure_future(read_all(lab.outside[0], len(payload), slowly=True))
        assert await mitmproxy_reads_server == b""
        lab.gateway_client[1].write_eof()  # what mitmproxy does on the upstream's EOF
        assert await reading == payload
        assert await lab.outside[0].read() == b""
        assert counted.bytes_down == len(payload)
        close_all(lab)

    run(scenario())


def test_a_client_that_resets_mid_download_fails_and_the_rest_is_dropped(mode: str) -> None:
    """Writing to the client fails: mitmproxy's reader of the client gets the error (as asyncio
    would hand it), and what the upstream still sends is read, counted and dropped, so the
    upstream is not stalled until mitmproxy closes it."""
    payload = os.urandom(16 << 20)

    async def scenario() -> None:
        lab = await make_lab()
        counted = Counted()
        assert take_over(lab.handler, lab.client, lab.server, counted)
        mitmproxy_reads_client = asyncio.ensure_future(lab.gateway_client[0].read(65535))
        lab.upstream[1].write(payload[: 1 << 20])
        await lab.outside[0].readexactly(1 << 16)
        client_socket = lab.outside[1].get_extra_info("socket")
        client_socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        lab.outside[1].transport.abort()  # unread bytes and a zero linger: a reset
        lab.upstream[1].write(payload[1 << 20 :])
        try:
            assert await mitmproxy_reads_client == b""
        except ConnectionError:
            pass
        await asyncio.wait_for(lab.upstream[1].drain(), 10)  # all of it was taken off its hands
        lab.upstream[1].write_eof()
        assert await lab.gateway_server[0].read(65535) == b""
        assert counted.bytes_down == len(payload)
        close_all(lab)

    run(scenario())


def test_an_upstream_reset_after_its_bytes_reaches_mitmproxy_after_them(mode: str) -> None:
    async def scenario() -> None:
        lab = await make_lab()
        counted = Counted()
        assert take_over(lab.handler, lab.client, lab.server, counted)
        lab.upstream[1].write(b"last bytes")
        await asyncio.sleep(0.05)
        upstream_socket = lab.upstream[1].get_extra_info("socket")
        upstream_socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        lab.outside[1].write(b"unread by the upstream")  # so its close is a reset
        await asyncio.sleep(0.05)
        lab.upstream[1].transport.abort()
        assert await lab.outside[0].readexactly(10) == b"last bytes"
        with pytest.raises(ConnectionResetError):
            await lab.gateway_server[0].read(65535)
        close_all(lab)

    run(scenario())


def test_the_zero_copy_relay_leaves_no_descriptor_open() -> None:
    if not relay.ZERO_COPY:
        pytest.skip("no os.splice on this platform")

    def descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def scenario() -> None:
        before = descriptors()
        lab = await make_lab()
        assert take_over(lab.handler, lab.client, lab.server, Counted(), zero_copy=True)
        assert type(lab.gateway_client[1].transport.get_protocol()).__name__ == "_SpliceSide"
        lab.outside[1].write(b"x" * 100_000)
        await lab.upstream[0].readexactly(100_000)
        close_all(lab)
        await asyncio.sleep(0.05)
        assert descriptors() == before

    run(scenario())


def test_without_a_pipe_of_the_size_needed_the_relay_copies(monkeypatch) -> None:
    """Over the user's soft limit of pipe pages the kernel hands out tiny pipes: copy instead."""
    monkeypatch.setattr(relay, "_open_pipe", lambda opened: None)

    async def scenario() -> None:
        lab = await make_lab()
        counted = Counted()
        assert take_over(lab.handler, lab.client, lab.server, counted, zero_copy=True)
        assert isinstance(lab.gateway_client[1].transport.get_protocol(), relay.RelaySide)
        lab.upstream[1].write(b"copied")
        assert await lab.outside[0].readexactly(6) == b"copied"
        assert counted.bytes_down == 6
        close_all(lab)

    run(scenario())


def test_a_bulk_transfers_pipe_grows_and_a_loopback_peer_gets_renos_congestion_control() -> None:
    if not relay.ZERO_COPY:
        pytest.skip("no os.splice on this platform")
    allowed = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control").read_text().split()

    async def scenario() -> None:
        lab = await make_lab()
        client_socket = lab.gateway_client[1].get_extra_info("socket")
        default = client_socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
        assert take_over(lab.handler, lab.client, lab.server, Counted(), zero_copy=True)
        chosen = client_socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
        if "reno" in allowed:
            assert chosen.rstrip(b"\0") == relay.LOCAL_CONGESTION_CONTROL
        else:
            assert chosen == default
        down = lab.gateway_server[1].transport.get_protocol().reading
        assert down.capacity == 64 << 10  # the kernel's default until a splice fills it
        lab.upstream[1].write(b"x" * (8 << 20))
        await read_all(lab.outside[0], 8 << 20, slowly=True)
        assert down.capacity == relay.PIPE_SIZE
        close_all(lab)

    run(scenario())
