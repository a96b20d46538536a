"""The relay of a decided pass-through connection, without mitmproxy's layers for its bytes.

mitmproxy relays a pass-through connection chunk by chunk: a task reads at most 64 KiB, wraps it
in a `DataReceived` event, runs it through the layer stack, turns the `SendData` command back
into a write and drains every writer. Once the firewall has decided a connection and the
upstream has answered, none of that changes what happens to the bytes. `take_over` then swaps
the asyncio protocol of both sockets for one of ours and moves the bytes itself, one of two ways:

- **zero-copy** (Linux, `os.splice`): per direction a pipe, filled from the source socket and
  emptied into the other socket by non-blocking `splice` calls that the event loop's readiness
  callbacks drive, so the bytes never enter Python (the kernel moves page references; a bulk
  transfer cost the gateway 0.36 CPU-s per GiB against 0.56 copying, docs/performance.md). The
  counts are what each splice from the source returns. A source whose pipe cannot empty (its
  peer's socket is full) stops being read until the peer is writable again: back-pressure.
- **copying** (`RelaySide`, the fallback wherever a pipe cannot be had): each chunk the kernel
  hands over (up to asyncio's 256 KiB read) is counted and written to the other socket's
  transport, with back-pressure (a side whose peer's write buffer is full stops reading until
  it drains).

mitmproxy keeps owning the connection's life: its read tasks stay parked on their (now silent)
StreamReaders, and a side's EOF or loss is handed to mitmproxy's own protocol object, so the
half-close, the final close, the hooks (`server_disconnected`, `client_disconnected`: the
firewall's event is written there) and the layer's own close logic run exactly as before. Its
inactivity watchdog is told about every chunk. With zero-copy, an EOF or a read error of a source
is handed over only once every byte read before it has left its pipe (mitmproxy half-closes the
peer on it); a socket that fails while being written to fails at once, and what its two pipes
still held is dropped, as a copying write to a dead socket is.

The swap is made only when it cannot reorder or lose a byte: both sides plain asyncio TCP
streams, open, reading, with nothing buffered that mitmproxy's tasks have not yet read, and no
task of the connection waiting to hand mitmproxy bytes it has already read. Zero-copy also needs
both transports' write buffers empty (it writes past them); otherwise the relay copies.
Otherwise `take_over` returns False and mitmproxy's relay simply continues (the caller asks
again with the next chunk). `relay_transports` is the same relay for a caller that holds the two
transports itself.
"""

from __future__ import annotations

__all__ = ["ZERO_COPY", "RelaySide", "relay_transports", "splice_transports", "take_over"]

import asyncio
import fcntl
import functools
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from mitmproxy.connection import Connection, ConnectionState

logger = logging.getLogger(__name__)

ZERO_COPY = hasattr(os, "splice") and hasattr(fcntl, "F_SETPIPE_SZ")
# A pipe starts at the kernel's default (64 KiB, 16 pages) and grows to PIPE_SIZE once a splice
# fills it (a bulk transfer): 1 MiB moved a bulk transfer with 0.15 CPU-s per GiB on loopback,
# 256 KiB with 0.19. A user's pipes share a soft limit of pipe pages (fs.pipe-user-pages-soft,
# 64 MiB by default) that every gateway on the machine (one uid) draws on, so only the pipes
# that need it grow; one refused growth keeps the pipe as it is.
PIPE_SIZE = 1 << 20
# Below this the kernel refused the default size (the soft limit is reached): copy instead.
_PIPE_MINIMUM = 64 << 10
_SPLICE_FLAGS = getattr(os, "SPLICE_F_NONBLOCK", 0) | getattr(os, "SPLICE_F_MOVE", 0)
_DISCARD_READ = 256 << 10
_ROUNDS = 4
# The congestion control of a relayed socket whose peer is on this machine (the workload shares
# the gateway's network namespace: its side of the connection is loopback). The default, BBR,
# paces every send with a timer, which on loopback buys nothing and cost the relay twice the
# kernel time of Reno (0.18-0.21 against 0.10-0.11 CPU-s per GiB on loopback).
LOCAL_CONGESTION_CONTROL = b"reno"


class RelaySide(asyncio.Protocol):
    """One socket of a relayed connection: what it receives is counted and goes to its peer."""

    def __init__(
        self,
        transport: asyncio.Transport,
        original: asyncio.StreamReaderProtocol,
        count: Callable[[int], None],
        activity: Callable[[], None],
    ) -> None:
        self.transport = transport
        self.original = original  # mitmproxy's: its reader learns of EOF and errors
        self.count = count
        self.activity = activity
        self.peer: RelaySide | None = None
        self.ended = False  # EOF received or connection lost: never resume reading

    def data_received(self, data: bytes) -> None:
        self.count(len(data))
        self.activity()
        assert self.peer is not None
        target = self.peer.transport
        if target.is_closing():
            return  # as mitmproxy does: data for a closed socket is dropped
        try:
            target.write(data)
        except RuntimeError:  # written after write_eof(): the peer's side is half-closed
            pass

    def eof_received(self) -> bool | None:
        self.ended = True
        return self.original.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        if self.peer is not None and not self.peer.ended:
            # Let the peer's bytes drain into nothing (as mitmproxy drops writes to a closed
            # socket) rather than park it until mitmproxy closes it.
            self.peer.transport.resume_reading()
        self.original.connection_lost(exc)

    def pause_writing(self) -> None:
        assert self.peer is not None
        self.peer.transport.pause_reading()
        self.original.pause_writing()

    def resume_writing(self) -> None:
        self.original.resume_writing()
        assert self.peer is not None
        if not self.peer.ended:
            self.peer.transport.resume_reading()


class _SpliceSide(asyncio.Protocol):
    """One socket of a zero-copy relay. The transport stays paused (asyncio reads nothing);
    the pumps watch a duplicate of its descriptor, closed here just before asyncio closes the
    socket, so the socket's life is still the transport's."""

    def __init__(self, transport: asyncio.Transport, original: asyncio.StreamReaderProtocol):
        self.transport = transport
        self.original = original
        self.fd = -1
        self.reading: _Pump | None = None  # the pump this socket is the source of
        self.writing: _Pump | None = None  # the pump this socket is the sink of
        self.lost = False

    def data_received(self, data: bytes) -> None:
        # Only if something resumed the paused transport: keep the bytes flowing, in order
        # behind what the pipe already holds is not guaranteed, so say so.
        logger.warning("egress: a zero-copy relayed socket was read by asyncio; closing it")
        self.transport.abort()

    def eof_received(self) -> bool | None:
        return self.original.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.reading is not None:
            self.reading.source_lost()
        if self.writing is not None:
            self.writing.sink_lost()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.original.connection_lost(exc)

    def pause_writing(self) -> None:
        self.original.pause_writing()

    def resume_writing(self) -> None:
        self.original.resume_writing()


_END_OF_FILE = object()


class _Pump:
    """One direction of a zero-copy relay: source socket -> pipe -> sink socket."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        source: _SpliceSide,
        sink: _SpliceSide,
        pipe: tuple[int, int],
        count: Callable[[int], None],
        activity: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.source = source
        self.sink = sink
        self.pipe_out, self.pipe_in = pipe
        self.capacity = fcntl.fcntl(self.pipe_in, fcntl.F_GETPIPE_SZ)
        self.count = count
        self.activity = activity
        self.held = 0  # bytes in the pipe, read from the source, not yet in the sink
        self.grown = False
        self.reading = False
        self.waiting_to_write = False
        self.end: object | None = None  # _END_OF_FILE or the read's OSError, not yet handed on
        self.discarding = False  # the sink is gone: what the source still sends is dropped
        self.finished = False  # the source's end was handed on, or the source is gone

    def start(self) -> None:
        self._read(True)

    def _read(self, on: bool) -> None:
        if on and not self.reading and not self.finished and not self.source.lost:
            self.loop.add_reader(self.source.fd, self._guarded, self._on_readable)
            self.reading = True
        elif not on and self.reading:
            self.loop.remove_reader(self.source.fd)
            self.reading = False

    def _wait_to_write(self, on: bool) -> None:
        if on and not self.waiting_to_write:
            self.loop.add_writer(self.sink.fd, self._guarded, self._flush)
            self.waiting_to_write = True
        elif not on and self.waiting_to_write:
            self.loop.remove_writer(self.sink.fd)
            self.waiting_to_write = False

    def _guarded(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # fail closed: a relay that lost track ends the connection
            logger.exception("egress: internal error in the zero-copy relay; closing")
            self._read(False)
            self._wait_to_write(False)
            self.source.transport.abort()
            self.sink.transport.abort()

    def _on_readable(self) -> None:
        if self.source.transport.is_closing():
            self._read(False)  # mitmproxy is closing it: its connection_lost follows
            return
        if self.discarding:
            self._discard()
            return
        # A few rounds per wake-up while the pipe fills and empties whole: each round saved is
        # an epoll wait and a callback; bounded, so other connections get their turn.
        for _ in range(_ROUNDS):
            wanted = self.capacity - self.held
            try:
                moved = os.splice(self.source.fd, self.pipe_in, wanted, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                return
            except OSError as exc:
                moved, self.end = 0, exc
            else:
                if moved == 0:
                    self.end = _END_OF_FILE
            if moved:
                self.held += moved
                self.count(moved)
                self.activity()
                if moved == wanted and not self.grown:
                    self._grow()
            self._flush()
            if moved < wanted or not self.reading:
                return

    def _grow(self) -> None:
        self.grown = True  # asked once
        try:
            fcntl.fcntl(self.pipe_in, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # over the user's soft limit: this pipe stays as it is
        self.capacity = fcntl.fcntl(self.pipe_in, fcntl.F_GETPIPE_SZ)

    def _discard(self) -> None:
        try:
            data = os.read(self.source.fd, _DISCARD_READ)
        except BlockingIOError:
            return
        except OSError as exc:
            self._finish(exc)
            return
        if data:
            self.count(len(data))
            self.activity()
        else:
            self._finish(_END_OF_FILE)

    def _flush(self) -> None:
        if self.sink.transport.is_closing():
            self._read(False)
            self._wait_to_write(False)
            return  # mitmproxy is closing it: sink_lost follows
        while self.held:
            try:
                moved = os.splice(self.pipe_out, self.sink.fd, self.held, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                break
            except OSError as exc:
                # As asyncio's write does: the sink fails now; its connection_lost calls
                # sink_lost, which drops the pipe and discards from then on.
                self._read(False)
                self._wait_to_write(False)
                _fail(self.sink.transport, exc, "Fatal write error on socket transport")
                return
            self.held -= moved
        if self.held:  # the sink is full: stop reading until it drains (back-pressure)
            self._read(False)
            self._wait_to_write(True)
            return
        self._wait_to_write(False)
        if self.end is not None:
            self._finish(self.end)
        else:
            self._read(True)

    def _finish(self, end: object) -> None:
        """Hand the source's EOF or error to mitmproxy: nothing read before it is pending."""
        self._read(False)
        self.finished = True
        self.end = None
        self._close_pipe()
        if self.source.lost:
            return
        if end is _END_OF_FILE:
            if not self.source.original.eof_received():
                self.source.transport.close()
        else:
            assert isinstance(end, OSError)
            _fail(self.source.transport, end, "Fatal read error on socket transport")

    def sink_lost(self) -> None:
        self._wait_to_write(False)
        self._close_pipe()
        self.held = 0
        self.discarding = True
        if self.finished or self.source.lost:
            return
        if self.end is not None:
            self._finish(self.end)
        else:
            self._read(True)

    def source_lost(self) -> None:
        self._read(False)  # before its descriptor is closed
        self._wait_to_write(False)
        self.finished = True
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.pipe_in >= 0:
            os.close(self.pipe_in)
            os.close(self.pipe_out)
            self.pipe_in = self.pipe_out = -1


def _fail(transport: asyncio.Transport, exc: OSError, message: str) -> None:
    """What asyncio does with a socket error: the transport is closed with it, so mitmproxy's
    reader raises it (a reset stays a reset)."""
    fatal = getattr(transport, "_fatal_error", None)
    if callable(fatal):
        fatal(exc, message)
    else:
        transport.abort()


def _stream_transport(io: Any, connection: Connection) -> tuple[asyncio.Transport, Any] | None:
    """The transport and mitmproxy's protocol of one side, if it can be taken over now."""
    if io is None or connection.state is not ConnectionState.OPEN:
        return None
    reader, writer = io.reader, io.writer
    if not isinstance(reader, asyncio.StreamReader) or not isinstance(writer, asyncio.StreamWriter):
        return None
    # Bytes mitmproxy's task has not read yet would be relayed after newer ones.
    buffered = getattr(reader, "_buffer", None)
    if not isinstance(buffered, bytearray) or buffered or reader.at_eof() or reader.exception():
        return None
    transport = writer.transport
    protocol = transport.get_protocol()
    if (
        not isinstance(transport, asyncio.Transport)
        or not isinstance(protocol, asyncio.StreamReaderProtocol)
        or transport.is_closing()
        or not transport.is_reading()
    ):
        return None
    return transport, protocol


def _no_event_waiting(handler: Any) -> bool:
    """True when none of the handler's tasks waits to hand mitmproxy an event. Under mitmproxy's
    eager task factory a read task can hold bytes it has already taken from its reader while it
    waits for `server_event`'s lock; taking over then would relay newer bytes first."""
    lock = getattr(handler, "_server_event_lock", None)
    if not isinstance(lock, asyncio.Lock):
        return False  # not the mitmproxy this was written for: leave the relay to it
    waiters = getattr(lock, "_waiters", ())
    # A waiter already woken (done, not cancelled) has not run yet: it still holds its bytes.
    return not any(not waiter.cancelled() for waiter in waiters or ())


def take_over(
    handler: Any,
    client: Connection,
    server: Connection,
    tracked: Any,
    *,
    zero_copy: bool | None = None,
) -> bool:
    """Relay `client` <-> `server` of mitmproxy's connection `handler` directly from now on,
    adding the bytes to `tracked.bytes_up` / `tracked.bytes_down`. False (nothing changed) when
    the connection is not in a state where that is safe. `zero_copy` None: where it can be had."""
    transports = getattr(handler, "transports", None)
    if transports is None or not _no_event_waiting(handler):
        return False
    client_side = _stream_transport(transports.get(client), client)
    server_side = _stream_transport(transports.get(server), server)
    if client_side is None or server_side is None:
        return False

    def count_up(size: int) -> None:
        tracked.bytes_up += size

    def count_down(size: int) -> None:
        tracked.bytes_down += size

    relay_transports(
        client_side, server_side, count_up, count_down,
        handler.timeout_watchdog.register_activity, zero_copy=zero_copy,
    )  # fmt: skip
    return True


def relay_transports(
    client_side: tuple[asyncio.Transport, asyncio.StreamReaderProtocol],
    server_side: tuple[asyncio.Transport, asyncio.StreamReaderProtocol],
    count_up: Callable[[int], None],
    count_down: Callable[[int], None],
    activity: Callable[[], None],
    *,
    zero_copy: bool | None = None,
) -> str:
    """Relay two open, reading TCP transports (each with the StreamReaderProtocol that keeps
    receiving their EOF and loss) from now on; the caller has made sure nothing is buffered
    unread. Returns "zero-copy" or "copy", the way it took."""
    if zero_copy is None:
        zero_copy = ZERO_COPY
    if zero_copy and _relay_spliced(client_side, server_side, count_up, count_down, activity):
        return "zero-copy"
    up = RelaySide(client_side[0], client_side[1], count_up, activity)
    down = RelaySide(server_side[0], server_side[1], count_down, activity)
    up.peer, down.peer = down, up
    client_side[0].set_protocol(up)
    server_side[0].set_protocol(down)
    return "copy"


def splice_transports(
    client_side: tuple[asyncio.Transport, asyncio.BaseProtocol],
    server_side: tuple[asyncio.Transport, asyncio.BaseProtocol],
    count_up: Callable[[int], None],
    count_down: Callable[[int], None],
    activity: Callable[[], None],
) -> bool:
    """The zero-copy relay of `relay_transports` alone, for a caller with its own copying relay
    to fall back to (the fast path): each protocol keeps receiving its transport's EOF and
    loss, once what was read before them has left the pipe, and is never handed a byte again;
    False, with nothing changed, where it cannot be had."""
    return _relay_spliced(client_side, server_side, count_up, count_down, activity)


def _relay_spliced(client_side, server_side, count_up, count_down, activity) -> bool:
    """Start the zero-copy relay; False (nothing changed) where it cannot be had."""
    if not ZERO_COPY:
        return False
    sockets = [transport.get_extra_info("socket") for transport, _ in (client_side, server_side)]
    if any(
        sock is None
        or sock.type != socket.SOCK_STREAM
        or transport.get_write_buffer_size()  # splicing past queued bytes would reorder them
        for sock, (transport, _) in zip(sockets, (client_side, server_side), strict=True)
    ):
        return False
    opened: list[int] = []
    try:
        pipes = [_open_pipe(opened), _open_pipe(opened)]
        if None in pipes:
            raise OSError("the kernel gave a pipe smaller than the relay needs")
        descriptors = [os.dup(sock.fileno()) for sock in sockets]
        opened.extend(descriptors)
    except OSError:
        for descriptor in opened:
            os.close(descriptor)
        return False
    _tune_local(sockets[0])
    loop = asyncio.get_running_loop()
    client = _SpliceSide(*client_side)
    server = _SpliceSide(*server_side)
    client.fd, server.fd = descriptors
    up = _Pump(loop, client, server, pipes[0], count_up, activity)
    down = _Pump(loop, server, client, pipes[1], count_down, activity)
    client.reading = server.writing = up
    server.reading = client.writing = down
    for side in (client, server):
        side.transport.pause_reading()
        side.transport.set_protocol(side)
    up.start()
    down.start()
    return True


def _tune_local(sock: Any) -> None:
    """Loopback's congestion control for a socket whose peer is on this machine."""
    try:
        peer = sock.getpeername()[0]
        if _is_local_address(sock.family, peer):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, LOCAL_CONGESTION_CONTROL)
    except OSError:
        pass  # not allowed here (net.ipv4.tcp_allowed_congestion_control): keep the default


@functools.lru_cache(maxsize=256)
def _is_local_address(family: int, address: str) -> bool:
    """True if `address` is one of this network namespace's own (it can be bound to)."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def _open_pipe(opened: list[int]) -> tuple[int, int] | None:
    """A pipe (its read end, its write end), or None if the kernel allows this user no more
    than a small one."""
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    opened.extend((read_end, write_end))
    if fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ) < _PIPE_MINIMUM:
        return None
    return read_end, write_end
