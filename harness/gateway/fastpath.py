"""The gateway's fast path: an allowed TLS pass-through connection relayed without mitmproxy.

mitmproxy builds, for every connection, a Client, a Context, a layer stack, a timeout watchdog,
three tasks and a hook task per hook, and moves every event and command through Python
generators: profiled at 32 concurrent connections that set-up and tear-down was most of the
gateway's CPU per connection, and nothing in it changes what happens to a connection the
firewall passes through. So the transparent listener accepts here first (`install` makes
mitmproxy's TransparentInstance listen with `Accepted` as the protocol), and:

- the first bytes are buffered (nothing is consumed that mitmproxy could not be given back);
- a complete TLS ClientHello whose SNI the FirewallAddon's Decider allows, with the same Request
  the addon builds (`FirewallAddon.connection_request`), to a name the addon would dial without
  a lookup (its hosts file, or the address its DNS answered this client) and that is not the
  gateway itself, is relayed here: the upstream is dialled at that address and port, the hello
  is sent, and `Relay` moves the bytes both ways with callbacks (back-pressure, half-close,
  mitmproxy's idle timeout), counting them into a TrackedConnection registered in the addon's
  `connections`; the addon writes its event when the connection is over, exactly as for one
  mitmproxy relayed (the same fields, byte counts, `upstream` failures and Azure line);
- anything else (no SNI, a denial, plain HTTP, other TCP, an unusual or incomplete hello, a
  name that needs a lookup, the fast path turned off with `egress_fast_path=false`) goes to
  mitmproxy: the buffered bytes are fed into a fresh StreamReader and the socket is handed to
  the TransparentInstance's own `handle_stream`, exactly as `asyncio.start_server` hands it an
  accepted connection, so mitmproxy sees the same stream and behaves as it always did.

Fail closed: an exception anywhere here aborts the client's connection (and the upstream's) and
records the connection as denied with reason "internal error"; nothing is relayed undecided.
Hooks of other addons (client_connected, server_connect, ...) are not called for a connection
relayed here; the lean master has none that act on a pass-through connection.
"""

from __future__ import annotations

__all__ = ["Accepted", "FastPath", "Relay", "install"]

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from mitmproxy import ctx, platform
from mitmproxy.net.free_port import get_free_port

from harness.events import UPSTREAM_UNREACHABLE, event_for_decision
from harness.gateway.addon import (
    INCOMPLETE,
    INTERNAL_ERROR,
    FirewallAddon,
    TrackedConnection,
    client_hello_sni,
    take_decision,
    upstream_failure,
)
from harness.gateway.relay import splice_transports
from harness.runfolder import RecorderError

logger = logging.getLogger(__name__)

TLS_HANDSHAKE = 0x16
# A ClientHello still incomplete past this many bytes is left to mitmproxy (which waits for it).
HELLO_LIMIT = 16384
STREAM_LIMIT = 2**16  # asyncio.start_server's StreamReader limit, as mitmproxy gets it
# A connection that has brought this much back is relayed by the kernel from then on
# (relay.splice_transports): a bulk download's bytes never enter Python, and a short
# connection does not pay for the pipes.
SPLICE_AFTER = 1 << 20


@dataclass
class _Peer:
    """What FirewallAddon._internal_error reads of a mitmproxy Client."""

    peername: tuple[str, int] | None


class FastPath:
    """The fast path of one gateway: its FirewallAddon and what it counted."""

    def __init__(self, addon: FirewallAddon) -> None:
        self.addon = addon
        # The original destination of an accepted socket (tests replace it; mitmproxy's own
        # transparent mode reads SO_ORIGINAL_DST the same way).
        self.original_destination: Callable[[Any], tuple[str, int]] | None = None
        self.relayed = 0  # connections relayed here
        self.spliced = 0  # of them, relayed by the kernel once SPLICE_AFTER bytes came back
        self.handed_over = 0  # connections given to mitmproxy
        self._ids = itertools.count()

    # --- the decision ----------------------------------------------------------------------

    def consider(self, accepted: Accepted) -> None:
        """With the bytes buffered so far: relay, hand over, or wait for more (never raises)."""
        try:
            route = self._route(accepted)
            if route is None:
                self.hand_over(accepted)
            elif route is not INCOMPLETE:
                tracked, target = route
                self._relay(accepted, tracked, target)
        except Exception:  # noqa: BLE001 - fail closed: nothing passes undecided
            if accepted.relay is not None:
                accepted.relay.fail()
            else:
                self.fail_closed(accepted, None)

    def _route(
        self, accepted: Accepted
    ) -> tuple[TrackedConnection, tuple[str, int]] | object | None:
        """(the connection's record, the address to dial) when the fast path relays it, INCOMPLETE
        to wait for more of the hello, None for mitmproxy."""
        hello = accepted.hello
        addon = self.addon
        if hello[0] != TLS_HANDSHAKE or not self._enabled():
            return None
        try:
            sni = client_hello_sni(bytes(hello))
        except ValueError:
            return None
        if sni is INCOMPLETE:
            return INCOMPLETE if len(hello) < HELLO_LIMIT else None
        if not isinstance(sni, str) or not sni:
            return None
        transport = accepted.transport
        original = self.original_destination or platform.original_addr
        dst_ip, dst_port = original(transport.get_extra_info("socket"))[:2]
        src_ip, src_port = transport.get_extra_info("peername")[:2]
        request = addon.connection_request("HTTPS", src_ip, src_port, dst_ip, dst_port, sni)
        decision = addon._decide(request)
        # (sinkhole.unreachable: an address of its range, never a name that is not an IP, or a
        # name it answered; the IP test first spares the range test's ValueError per name.)
        if not decision.allowed or addon._is_ip(sni) or addon.sinkhole.holds_name(sni):
            return None  # a denial's close/alert/drop, the sinkhole's failure: mitmproxy's
        event = event_for_decision(
            request, decision, policy_name=addon._policy_name, run=addon._run_id
        )
        tracked = TrackedConnection(event, client_dst=dst_ip)
        addresses = addon._known_addresses(sni, tracked)
        if not addresses or addon._is_the_gateway(sni, *addresses):
            return None  # a lookup in the thread pool, or the Decider's second look: mitmproxy's
        tracked.approved[(sni, dst_port)] = request
        return tracked, (addresses[0], dst_port)

    def _enabled(self) -> bool:
        addon = self.addon
        options = ctx.options
        return bool(
            options.egress_fast_path
            and addon.is_running
            and addon.decider is not None
            and addon.recording_failed is None
            and not options.connect_addr  # mitmproxy binds its dials there; so would we have to
        )

    # --- the two ways on -------------------------------------------------------------------

    def _relay(
        self, accepted: Accepted, tracked: TrackedConnection, target: tuple[str, int]
    ) -> None:
        key = f"fast-{next(self._ids)}"
        self.addon.connections[key] = tracked
        relay = Relay(self, key, tracked, accepted.transport, bytes(accepted.hello))
        accepted.relay = relay
        accepted.hello = bytearray()
        self.relayed += 1
        relay.start(target, ctx.options.tcp_timeout)

    def hand_over(
        self, accepted: Accepted, eof: bool = False, lost: BaseException | None | bool = False
    ) -> None:
        """Give the connection to mitmproxy's transparent server, with the bytes read so far
        unread: what asyncio.start_server does for a connection it accepts."""
        accepted.handed_over = True
        self.handed_over += 1
        transport = accepted.transport
        reader = asyncio.StreamReader(limit=STREAM_LIMIT)
        if accepted.hello:
            reader.feed_data(bytes(accepted.hello))
        accepted.hello = bytearray()
        protocol = asyncio.StreamReaderProtocol(reader, accepted.instance.handle_stream)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if eof and not protocol.eof_received():
            transport.close()
        if lost is not False:
            protocol.connection_lost(lost)  # type: ignore[arg-type]

    # --- when it goes wrong ----------------------------------------------------------------

    def fail_closed(self, accepted: Accepted, tracked: TrackedConnection | None) -> None:
        """An exception in the fast path: abort the connection and record an internal error."""
        logger.exception("egress: internal error in the fast path; the connection is closed")
        accepted.failed = True
        with suppress(Exception):
            accepted.transport.abort()
        try:
            if tracked is None:
                peer = accepted.transport.get_extra_info("peername")
                self.addon._write(
                    self.addon._internal_error("tls", _Peer(peer[:2] if peer else None), None, None)
                )
            elif not tracked.written:
                take_decision(tracked.event, INTERNAL_ERROR)
        except RecorderError:
            pass  # the recorder's failure has stopped the gateway
        except Exception:  # the connection is closed anyway; the record is best effort
            logger.exception("egress: cannot record the fast path's internal error")

    def finish(self, key: str, tracked: TrackedConnection) -> None:
        """The connection is over: the addon writes its event (as at client_disconnected)."""
        if self.addon.connections.get(key) is tracked:
            del self.addon.connections[key]
        try:
            self.addon._finish(tracked)
        except RecorderError:
            pass
        except Exception:  # the connection is over; keep the gateway up
            logger.exception("egress: internal error while recording a closed connection")


class Accepted(asyncio.Protocol):
    """A connection accepted on the transparent listener, until it is relayed or handed over."""

    def __init__(self, fast: FastPath, instance: Any) -> None:
        self.fast = fast
        self.instance = instance  # mitmproxy's TransparentInstance
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.hello = bytearray()
        self.relay: Relay | None = None
        self.handed_over = False
        self.failed = False  # aborted by fail_closed: nothing more to do

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        relay = self.relay
        if relay is not None:
            relay.client_data(data)
            return
        self.hello += data
        self.fast.consider(self)

    def eof_received(self) -> bool:
        if self.relay is not None:
            self.relay.client_eof()
        elif not self.failed:
            self._hand_over_guarded(eof=True)
        return True  # half-closed: the other way may still carry bytes

    def connection_lost(self, exc: Exception | None) -> None:
        if self.relay is not None:
            self.relay.client_lost()
        elif self.hello and not self.failed:
            self._hand_over_guarded(lost=exc)
        # else: gone before a byte came; mitmproxy would record nothing for it either

    def pause_writing(self) -> None:
        if self.relay is not None:
            self.relay.pause(self.relay.server_transport)

    def resume_writing(self) -> None:
        if self.relay is not None:
            self.relay.resume(self.relay.server_transport, self.relay.server_reading)

    def _hand_over_guarded(self, **how: Any) -> None:
        try:
            self.fast.hand_over(self, **how)
        except Exception:  # noqa: BLE001 - fail closed
            self.fast.fail_closed(self, None)


class Upstream(asyncio.Protocol):
    """The dialled upstream's socket of a relayed connection."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.relay.upstream_made(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.relay.server_data(data)

    def eof_received(self) -> bool:
        self.relay.server_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.server_lost()

    def pause_writing(self) -> None:
        self.relay.pause(self.relay.client_transport)

    def resume_writing(self) -> None:
        self.relay.resume(self.relay.client_transport, self.relay.client_reading)


class Relay:
    """Both sockets of one relayed connection, with mitmproxy's TCP semantics: an EOF from one
    side half-closes the other; once neither side reads any more both are closed; a side that
    is lost counts as having sent its EOF; an upstream that hangs up before a byte came back,
    while the client still sends, is recorded as `upstream: reset`. The record is written when
    both sockets are gone."""

    def __init__(
        self, fast: FastPath, key: str, tracked: TrackedConnection,
        client: asyncio.Transport, hello: bytes,
    ) -> None:  # fmt: skip
        self.fast = fast
        self.key = key
        self.tracked = tracked
        self.client_transport = client
        self.server_transport: asyncio.Transport | None = None
        self.hello = hello
        self.client_reading = True
        self.server_reading = True
        self.client_gone = False
        self.server_gone = False
        self.connecting = False  # the upstream's dial is under way
        self.dialling: asyncio.Task | None = None  # asyncio's dial (to cancel it)
        self.pending_socket: socket.socket | None = None  # our own dial's, until it connects
        self.last_activity = time.monotonic()
        self.idle_seconds = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.finished = False
        self.spliced = False  # the kernel relays the bytes: neither side is read here again

    def start(self, target: tuple[str, int], idle_seconds: float) -> None:
        self.client_transport.pause_reading()  # until the upstream has the hello
        loop = asyncio.get_running_loop()
        self.idle_seconds = idle_seconds
        self.idle_timer = loop.call_later(idle_seconds, self._check_idle)
        self.connecting = True
        make_transport = getattr(loop, "_make_socket_transport", None)
        if make_transport is None:  # not a selector loop: asyncio's own dial, in a task
            task = loop.create_task(self._dial(target))
            if not task.done():  # (an eager task may have finished already)
                self.dialling = task
            return
        self._connect(loop, make_transport, target)

    def _connect(self, loop: Any, make_transport: Callable, target: tuple[str, int]) -> None:
        """The dial without a task: a non-blocking connect, and the transport made when the
        socket turns writable. What `loop.create_connection` does for an address (TCP_NODELAY
        included, set by the transport), without its task, coroutines and two futures, a
        measurable part of a connection's cost here."""
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            try:
                sock.connect(target)
            except (BlockingIOError, InterruptedError):
                pass
        except OSError as error:
            sock.close()
            self._dial_error(error, target)
            return
        self.pending_socket = sock

        def writable() -> None:
            try:
                loop.remove_writer(sock.fileno())
                self.pending_socket = None
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    sock.close()
                    # asyncio's words for it, as mitmproxy's dial would fail
                    self._dial_error(OSError(error, f"Connect call failed {target}"), target)
                    return
                make_transport(sock, Upstream(self))  # connection_made follows: _connected
            except Exception:  # noqa: BLE001 - fail closed
                sock.close()
                self.connecting = False
                self.fail()

        loop.add_writer(sock.fileno(), writable)

    async def _dial(self, target: tuple[str, int]) -> None:
        try:
            await asyncio.get_running_loop().create_connection(lambda: Upstream(self), *target)
        except OSError as error:
            self.dialling = None
            self._dial_error(error, target)
        except asyncio.CancelledError:
            self.connecting, self.dialling = False, None
            self._dial_ended_without_upstream()
            raise
        except Exception:  # noqa: BLE001 - fail closed
            self.connecting, self.dialling = False, None
            self.fail()
        else:
            self.dialling = None

    def _dial_error(self, error: OSError, target: tuple[str, int]) -> None:
        """As mitmproxy's layer does: the hello counts as sent, the client is closed, and the
        event says why the upstream failed."""
        self.connecting = False
        self.tracked.unreachable.add(target)
        self.tracked.upstream_failure = upstream_failure(str(error), UPSTREAM_UNREACHABLE)
        self.tracked.bytes_up += len(self.hello)
        self._dial_ended_without_upstream()

    def _dial_ended_without_upstream(self) -> None:
        self.server_gone = True
        self.server_reading = False
        self._close(self.client_transport)
        self._maybe_finish()

    def upstream_made(self, transport: asyncio.Transport) -> None:
        """Upstream.connection_made: the dial succeeded."""
        self.server_transport = transport
        self.connecting = False
        try:
            self._connected()
        except Exception:  # noqa: BLE001 - fail closed
            self.fail()

    def _connected(self) -> None:
        server = self.server_transport
        assert server is not None
        if self.finished or server.is_closing():
            return
        self.tracked.bytes_up += len(self.hello)
        server.write(self.hello)
        self.hello = b""
        if self.client_gone:
            self._client_done_reading()
        elif self.client_reading:
            self.client_transport.resume_reading()
        else:  # the client's EOF came while dialling
            self._client_done_reading()

    # --- bytes -------------------------------------------------------------------------------

    def client_data(self, data: bytes) -> None:
        try:
            self.tracked.bytes_up += len(data)
            self.last_activity = time.monotonic()
            server = self.server_transport
            if server is not None and not server.is_closing() and self.server_gone is False:
                server.write(data)
        except Exception:  # noqa: BLE001 - fail closed
            self.fail()

    def server_data(self, data: bytes) -> None:
        try:
            self.tracked.bytes_down += len(data)
            self.last_activity = time.monotonic()
            client = self.client_transport
            if not client.is_closing():
                client.write(data)
            if self.tracked.bytes_down >= SPLICE_AFTER:
                self._splice()
        except Exception:  # noqa: BLE001 - fail closed
            self.fail()

    def _splice(self) -> None:
        """From now on the kernel relays both ways, where it can (else this keeps copying, and
        asks again with the next chunk): both sides open and reading, nothing queued."""
        client, server = self.client_transport, self.server_transport
        if (
            self.spliced or server is None or self.client_gone or self.server_gone
            or not (self.client_reading and self.server_reading)
            or client.is_closing() or server.is_closing()
        ):  # fmt: skip
            return
        if splice_transports((client, client.get_protocol()), (server, server.get_protocol()),
                             self._count_up, self._count_down, self._touch):  # fmt: skip
            self.spliced = True
            self.fast.spliced += 1

    def _count_up(self, size: int) -> None:
        self.tracked.bytes_up += size

    def _count_down(self, size: int) -> None:
        self.tracked.bytes_down += size

    def _touch(self) -> None:
        self.last_activity = time.monotonic()

    def pause(self, reader: asyncio.Transport | None) -> None:
        """The other side's write buffer is full: stop reading this one."""
        if reader is not None and not reader.is_closing() and not self.spliced:
            reader.pause_reading()

    def resume(self, reader: asyncio.Transport | None, reading: bool) -> None:
        # Never resume a side that sent its EOF: its transport would read the EOF again. Never
        # one the kernel relays: asyncio would read its bytes past the pipe.
        if reader is not None and reading and not reader.is_closing() and not self.spliced:
            reader.resume_reading()

    # --- closes ------------------------------------------------------------------------------

    def client_eof(self) -> None:
        try:
            self.client_reading = False
            if self.server_transport is not None:
                self._client_done_reading()
        except Exception:  # noqa: BLE001 - fail closed
            self.fail()

    def client_lost(self) -> None:
        try:
            self.client_gone = True
            was_reading, self.client_reading = self.client_reading, False
            if self.server_transport is not None and (was_reading or self.server_gone):
                self._client_done_reading()
            self._maybe_finish()
        except Exception:  # noqa: BLE001 - fail closed
            self.fail()

    def _client_done_reading(self) -> None:
        server = self.server_transport
        assert server is not None
        if not self.server_reading:
            self._close(server)
            self._close(self.client_transport)
        else:
            self._half_close(server)

    def server_eof(self) -> None:
        try:
            self._server_done_reading()
        except Exception:  # noqa: BLE001 - fail closed
            self.fail()

    def server_lost(self) -> None:
        try:
            self.server_gone = True
            if self.server_reading:
                self._server_done_reading()
            self._maybe_finish()
        except Exception:  # noqa: BLE001 - fail closed
            self.fail()

    def _server_done_reading(self) -> None:
        self.server_reading = False
        tracked = self.tracked
        if tracked.bytes_down == 0 and tracked.upstream_failure is None and self.client_reading:
            tracked.upstream_failure = "reset"  # hung up before a byte came back
        if not self.client_reading:
            self._close(self.client_transport)
            if self.server_transport is not None:
                self._close(self.server_transport)
        else:
            self._half_close(self.client_transport)

    @staticmethod
    def _half_close(transport: asyncio.Transport) -> None:
        if transport.is_closing():
            return
        try:
            transport.write_eof()
        except (OSError, RuntimeError):
            transport.close()

    @staticmethod
    def _close(transport: asyncio.Transport) -> None:
        if not transport.is_closing():
            transport.close()

    def _check_idle(self) -> None:
        try:
            idle = time.monotonic() - self.last_activity
            if idle >= self.idle_seconds:
                # mitmproxy's watchdog: the client is closed, and with it the upstream.
                self._close(self.client_transport)
                if self.server_transport is not None:
                    self._close(self.server_transport)
                self.idle_timer = None
            else:
                loop = asyncio.get_running_loop()
                self.idle_timer = loop.call_later(self.idle_seconds - idle, self._check_idle)
        except Exception:  # noqa: BLE001 - fail closed
            self.fail()

    def _maybe_finish(self) -> None:
        if self.finished or not self.client_gone:
            return
        if self.connecting or (self.server_transport is not None and not self.server_gone):
            if self.server_transport is not None and not self.server_reading:
                self._close(self.server_transport)
            return
        self.finished = True
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.fast.finish(self.key, self.tracked)

    def fail(self) -> None:
        """Fail closed: abort both sockets; the record says internal error."""
        logger.exception(
            "egress: internal error in the fast path's relay; the connection is closed"
        )
        try:
            if not self.tracked.written:
                take_decision(self.tracked.event, INTERNAL_ERROR)
        except Exception:  # the aborts below stand; the record is best effort
            logger.exception("egress: cannot mark the connection's event")
        for transport in (self.client_transport, self.server_transport):
            if transport is not None:
                with suppress(Exception):
                    transport.abort()
        if self.dialling is not None:
            self.dialling.cancel()
        pending, self.pending_socket = self.pending_socket, None
        if pending is not None:
            with suppress(Exception):
                asyncio.get_running_loop().remove_writer(pending.fileno())
                pending.close()
            self.connecting = False
            self.server_gone = True
            self._maybe_finish()


def install(master: Any, addon: FirewallAddon) -> FastPath:
    """Accept the master's transparent connections through a FastPath for `addon`.

    mitmproxy's TransparentInstance.listen is wrapped (once per process) to listen with
    `Accepted` for a master that has a fast path (`master.egress_fast_path`); any other master,
    and every other mode, listens as mitmproxy does."""
    from mitmproxy.proxy import mode_servers

    fast = FastPath(addon)
    master.egress_fast_path = fast
    instance_class = mode_servers.TransparentInstance
    if getattr(instance_class, "_egress_fast_path_installed", False):
        return fast
    listen_as_mitmproxy = instance_class.listen

    async def listen(self, host: str, port: int) -> list:
        found = getattr(ctx.master, "egress_fast_path", None)
        if not isinstance(found, FastPath) or self.mode.transport_protocol != "tcp":
            return await listen_as_mitmproxy(self, host, port)
        if port == 0:  # as mitmproxy does: one port for IPv4 and IPv6 where it can
            with suppress(Exception):
                return await listen(self, host, get_free_port())
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Accepted(found, self), host or None, port)
        return [server]

    instance_class.listen = listen
    instance_class._egress_fast_path_installed = True
    return fast
