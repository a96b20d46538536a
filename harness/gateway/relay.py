"""The relay of a decided pass-through connection, without mitmproxy's layers for its bytes.

mitmproxy relays a pass-through connection chunk by chunk: a task reads at most 64 KiB, wraps it
in a `DataReceived` event, runs it through the layer stack, turns the `SendData` command back
into a write and drains every writer. Once the firewall has decided a connection and the
upstream has answered, none of that changes what happens to the bytes. `take_over` then swaps
the asyncio protocol of both sockets for a `RelaySide`: each chunk the kernel hands over (up to
asyncio's 256 KiB read) is counted and written straight to the other socket, with back-pressure
(a side whose peer's write buffer is full stops reading until it drains).

mitmproxy keeps owning the connection's life: its read tasks stay parked on their (now silent)
StreamReaders, and a side's EOF or loss is handed to mitmproxy's own protocol object, so the
half-close, the final close, the hooks (`server_disconnected`, `client_disconnected`: the
firewall's event is written there) and the layer's own close logic run exactly as before. Its
inactivity watchdog is told about every chunk.

The swap is made only when it cannot reorder or lose a byte: both sides plain asyncio TCP
streams, open, reading, with nothing buffered that mitmproxy's tasks have not yet read, and no
task of the connection waiting to hand mitmproxy bytes it has already read.
Otherwise `take_over` returns False and mitmproxy's relay simply continues (the caller asks
again with the next chunk).
"""

from __future__ import annotations

__all__ = ["RelaySide", "take_over"]

import asyncio
from collections.abc import Callable
from typing import Any

from mitmproxy.connection import Connection, ConnectionState


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


def take_over(handler: Any, client: Connection, server: Connection, tracked: Any) -> bool:
    """Relay `client` <-> `server` of mitmproxy's connection `handler` directly from now on,
    adding the bytes to `tracked.bytes_up` / `tracked.bytes_down`. False (nothing changed) when
    the connection is not in a state where that is safe."""
    transports = getattr(handler, "transports", None)
    if transports is None or not _no_event_waiting(handler):
        return False
    client_side = _stream_transport(transports.get(client), client)
    server_side = _stream_transport(transports.get(server), server)
    if client_side is None or server_side is None:
        return False
    activity = handler.timeout_watchdog.register_activity

    def count_up(size: int) -> None:
        tracked.bytes_up += size

    def count_down(size: int) -> None:
        tracked.bytes_down += size

    up = RelaySide(client_side[0], client_side[1], count_up, activity)
    down = RelaySide(server_side[0], server_side[1], count_down, activity)
    up.peer, down.peer = down, up
    client_side[0].set_protocol(up)
    server_side[0].set_protocol(down)
    return True
