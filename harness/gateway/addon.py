"""The firewall as a mitmproxy addon (transparent mode + DNS mode).

Hooks translate traffic into `Request`s for the pure `Decider` and decisions into actions:

- `next_layer`: the first bytes of a transparent connection. A TLS ClientHello is decided on its
  SNI (HTTPS); plain HTTP is left to mitmproxy's HTTP layer and decided per request in
  `requestheaders` on the Host header; anything else is decided by network rules (TCP). TLS and
  raw TCP continue in a pass-through layer that only counts bytes: TLS is never terminated.
- An allowed HTTPS connection's upstream is pinned to the SNI name (the gateway resolves it
  itself), so a client cannot name an allowed host and reach another address.
- `server_connect` is the choke point: an upstream connection that no decision approved is
  refused. A denied HTTPS connection then ends as `https_deny` says: `close` (EOF right after the
  ClientHello, as Azure does), `alert` (a local responder answers a fatal access_denied alert)
  or `drop` (nothing comes back until the client gives up).
- DNS queries are answered normally (Azure DNS answers everything) and recorded; the answers
  map addresses to names for network rules with destination FQDNs.

mitmproxy logs and swallows exceptions raised in hooks, and would then carry on with the
connection: every hook body therefore denies (kills) on an unexpected exception and records
reason "internal error". A recording that cannot be written stops the gateway.
"""

from __future__ import annotations

__all__ = ["Firewall"]

import asyncio
import ipaddress
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from mitmproxy import ctx, dns, exceptions, http
from mitmproxy.connection import Client, Server
from mitmproxy.proxy import events, layer
from mitmproxy.proxy.layers import tcp
from mitmproxy.proxy.layers.tls import parse_client_hello
from mitmproxy.proxy.mode_specs import TransparentMode
from mitmproxy.proxy.server_hooks import ServerConnectionHookData
from mitmproxy.proxy.utils import expect

from harness.events import Event, dns_line, event_for_decision, lifecycle_event, now_iso
from harness.gateway.options import GatewayConfig, parse_options
from harness.policy.decide import Decider
from harness.policy.model import DENY, Decision, Reason, Request
from harness.recording import Recorder, RecorderError

logger = logging.getLogger(__name__)

READY_BANNER = "egress-harness gateway ready"
DENY_BODY = b"Action: Deny. Reason: No rule matched. Proceeding with default action."
TLS_ACCESS_DENIED_ALERT = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31])
_HTTP_REQUEST_START = re.compile(rb"^[A-Z]{3,10} ")
_HOST_WITH_PORT = re.compile(r"^(\[[^\]]+\]|[^:]+)(?::(\d+))?$")


@dataclass
class Verdict:
    """What was decided for one client connection, and what moved through it since."""

    event: Event
    approved: set[tuple[str, int]] = field(default_factory=set)
    deny_style: str | None = None  # set when a denied HTTPS connection must end a certain way
    started: float = field(default_factory=time.monotonic)
    bytes_up: int = 0
    bytes_down: int = 0
    written: bool = False


class CountingPassthrough(tcp.TCPLayer):
    """mitmproxy's TCP relay without flows (nothing is stored or intercepted), counting bytes."""

    def __init__(self, context, verdict: Verdict) -> None:
        super().__init__(context, ignore=True)
        self.verdict = verdict

    @expect(events.DataReceived, events.ConnectionClosed, tcp.TcpMessageInjected)
    def relay_messages(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.DataReceived):
            if event.connection == self.context.client:
                self.verdict.bytes_up += len(event.data)
            else:
                self.verdict.bytes_down += len(event.data)
        yield from super().relay_messages(event)

    @expect(events.DataReceived, events.ConnectionClosed, tcp.TcpMessageInjected)
    def done(self, event: events.Event) -> layer.CommandGenerator[None]:
        # A refused upstream: what the client sent (its ClientHello) still counts as sent.
        if isinstance(event, events.DataReceived) and event.connection == self.context.client:
            self.verdict.bytes_up += len(event.data)
        yield from ()


def _split_host(host_header: str) -> tuple[str, int | None]:
    match = _HOST_WITH_PORT.match(host_header.strip())
    if not match:
        return host_header.strip(), None
    return match.group(1).strip("[]"), int(match.group(2)) if match.group(2) else None


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


class Firewall:
    def __init__(self) -> None:
        self.config: GatewayConfig | None = None
        self.decider: Decider | None = None
        self.recorder: Recorder | None = None
        self.verdicts: dict[str, Verdict] = {}
        self.names_by_ip: dict[str, set[str]] = {}
        self.dns_started: dict[str, float] = {}
        self.alert_address: tuple[str, int] | None = None
        self._alert_server: asyncio.Server | None = None

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
        )
        loader.add_option(
            "egress_https_deny",
            str,
            "close",
            "How a denied HTTPS connection ends: close (Azure's EOF) | alert | drop",
        )
        loader.add_option(
            "egress_record_dir", str, "", "Folder for events.jsonl and azure.log. Empty: log only."
        )
        loader.add_option("egress_run_id", str, "", "Run id written into every event.")
        loader.add_option("egress_drop_seconds", int, 600, "With https_deny=drop: how long a denied connection is held silent at most.")  # fmt: skip

    def configure(self, updated: set[str]) -> None:
        if ctx.options.connection_strategy != "lazy":
            # Eager would connect to the original destination before the ClientHello is read.
            ctx.options.update(connection_strategy="lazy")
        if self.config is not None and not any(name.startswith("egress_") for name in updated):
            return
        try:
            config = parse_options(
                ctx.options.egress_policy, ctx.options.egress_mode, ctx.options.egress_https_deny,
                ctx.options.egress_record_dir, ctx.options.egress_run_id, ctx.options.egress_drop_seconds,
            )  # fmt: skip
            recorder = Recorder(config.record_dir) if config.record_dir else None
        except (ValueError, RecorderError) as error:
            raise exceptions.OptionsError(str(error)) from None
        if self.recorder is not None:
            self.recorder.close()
        self.config, self.recorder = config, recorder
        self.decider = Decider(config.policy, config.mode)  # type: ignore[arg-type]

    # --- lifecycle ----------------------------------------------------------------------

    async def running(self) -> None:
        self._alert_server = await asyncio.start_server(self._answer_alert, "127.0.0.1", 0)
        self.alert_address = self._alert_server.sockets[0].getsockname()[:2]
        self._write(lifecycle_event(self._run_id, "ready"))
        print(READY_BANNER, flush=True)

    def done(self) -> None:
        for verdict in list(self.verdicts.values()):
            self._finish(verdict)
        if self.recorder is not None:
            try:
                self.recorder.write(lifecycle_event(self._run_id, "stopped"))
            except RecorderError:
                pass
            self.recorder.close()

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
            ctx.master.shutdown()
            raise

    def _finish(self, verdict: Verdict) -> None:
        if verdict.written:
            return
        verdict.written = True
        verdict.event.bytes_up = verdict.bytes_up
        verdict.event.bytes_down = verdict.bytes_down
        verdict.event.duration_ms = int((time.monotonic() - verdict.started) * 1000)
        self._write(verdict.event)

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
            verdict = Verdict(
                self._internal_error("tcp", context.client, context.server.address, None)
            )
            verdict.written = reason is None  # a recorder failure has already stopped the gateway
            self.verdicts[context.client.id] = verdict
            nextlayer.layer = CountingPassthrough(context, verdict)

        with self._deny_on_error(deny):
            data = nextlayer.data_client()
            if not data:
                return  # wait for the client's first bytes
            if data[0] == 0x16:
                try:
                    hello = parse_client_hello(data)
                except ValueError:  # not TLS after all: a network-rule decision
                    self._decide_raw_tcp(nextlayer)
                    return
                if hello is None:
                    nextlayer.layer = None  # the ClientHello is not complete yet
                    return
                self._decide_tls(nextlayer, hello.sni)
            elif _HTTP_REQUEST_START.match(data):
                return  # mitmproxy's HTTP layer; decided per request in requestheaders
            else:
                self._decide_raw_tcp(nextlayer)

    def _request_base(self, client: Client, server: Server) -> tuple[str, int, str, int]:
        src_ip, src_port = client.peername[:2]
        dst_ip, dst_port = server.address[:2] if server.address else ("", 0)
        return src_ip, src_port, dst_ip, dst_port

    def _is_the_gateway(self, dst_ip: str, dst_port: int) -> bool:
        return _is_loopback(dst_ip)

    def _decide_tls(self, nextlayer: layer.NextLayer, sni: str | None) -> None:
        self._decide_connection(nextlayer, "HTTPS", sni or None)

    def _decide_raw_tcp(self, nextlayer: layer.NextLayer) -> None:
        self._decide_connection(nextlayer, "TCP", None)

    def _decide_connection(
        self, nextlayer: layer.NextLayer, protocol: str, sni: str | None
    ) -> None:
        """HTTPS (on its SNI) or raw TCP: decide, record, and hand the connection to the
        counting pass-through; only an approved address gets past server_connect."""
        context = nextlayer.context
        src_ip, src_port, dst_ip, dst_port = self._request_base(context.client, context.server)
        request = Request(
            protocol, src_ip, src_port, dst_port, dst_ip=dst_ip, host=sni,
            dst_names=frozenset(self.names_by_ip.get(dst_ip, ())),
        )  # fmt: skip
        decision = self._decide(request)
        if decision.allowed and self._is_the_gateway(dst_ip, dst_port):
            decision = Decision(DENY, DENY, "destination is the gateway itself")
        event = event_for_decision(
            request, decision, policy_name=self._policy_name, run=self._run_id
        )
        verdict = Verdict(event)
        self.verdicts[context.client.id] = verdict
        if decision.allowed:
            # Pin the upstream to the name that was allowed; a network-rule allow without SNI
            # keeps the address the client chose, which is what the rule allowed.
            target = (sni, dst_port) if sni else (dst_ip, dst_port)
            context.server.address = target
            verdict.approved.add(target)
        elif protocol == "HTTPS":
            verdict.deny_style = self.config.https_deny if self.config else "close"
            if verdict.deny_style == "alert" and self.alert_address is not None:
                context.server.address = self.alert_address
                verdict.approved.add(self.alert_address)
        nextlayer.layer = CountingPassthrough(context, verdict)

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
            dst_names=frozenset(self.names_by_ip.get(dst_ip, ())),
        )  # fmt: skip
        if header_port is not None and header_port != dst_port:
            # Azure drops a request whose Host port differs from the connection's port.
            decision = Decision(DENY, DENY, Reason.HOST_PORT_MISMATCH)
            event = event_for_decision(
                request, decision, policy_name=self._policy_name, run=self._run_id, url=url
            )
            self._write(event)
            flow.kill()
            return
        decision = self._decide(request)
        if decision.allowed and self._is_the_gateway(dst_ip, dst_port):
            decision = Decision(DENY, DENY, "destination is the gateway itself")
        event = event_for_decision(
            request, decision, policy_name=self._policy_name, run=self._run_id, url=url
        )
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
        verdict = self.verdicts.setdefault(client.id, Verdict(event, written=True))
        verdict.approved.add((target_host, dst_port))
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
            event.status = flow.response.status_code if flow.response else None
            event.bytes_up = len(flow.request.raw_content or b"")
            event.bytes_down = len(flow.response.raw_content or b"") if flow.response else 0
            event.duration_ms = int(
                (time.monotonic() - flow.metadata.pop("egress_started", time.monotonic())) * 1000
            )
        finally:
            try:
                self._write(event)
            except RecorderError:
                flow.kill()

    # --- the choke point ------------------------------------------------------------------

    async def server_connect(self, data: ServerConnectionHookData) -> None:
        try:
            verdict = self.verdicts.get(data.client.id)
            address = data.server.address
            if (
                verdict is not None
                and address is not None
                and (address[0], address[1]) in verdict.approved
            ):
                return
            if verdict is not None and verdict.deny_style == "drop" and self.config is not None:
                # Hold the client's ClientHello unanswered: its own timeout decides when it stops.
                await asyncio.sleep(self.config.drop_seconds)
            data.server.error = "denied by the egress firewall"
        except BaseException:
            data.server.error = "denied by the egress firewall (internal error)"
            raise

    def client_disconnected(self, client: Client) -> None:
        verdict = self.verdicts.pop(client.id, None)
        if verdict is not None:
            try:
                self._finish(verdict)
            except RecorderError:
                pass

    # --- DNS ------------------------------------------------------------------------------

    def dns_request(self, flow: dns.DNSFlow) -> None:
        self.dns_started[flow.id] = time.monotonic()

    def dns_response(self, flow: dns.DNSFlow) -> None:
        def deny(_: str | None) -> None:
            flow.response = flow.request.fail(dns.response_codes.SERVFAIL)

        with self._deny_on_error(deny):
            self._record_dns(flow)

    def dns_error(self, flow: dns.DNSFlow) -> None:
        with self._deny_on_error(lambda _: None):
            self._record_dns(flow)

    def _record_dns(self, flow: dns.DNSFlow) -> None:
        started = self.dns_started.pop(flow.id, time.monotonic())
        question = flow.request.questions[0] if flow.request.questions else None
        name = question.name if question else ""
        qtype = dns.types.to_str(question.type) if question else "?"
        response = flow.response
        if response is not None:
            for answer in response.answers:
                if answer.type in (dns.types.A, dns.types.AAAA):
                    address = str(
                        answer.ipv4_address if answer.type == dns.types.A else answer.ipv6_address
                    )
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
            duration_ms=int(seconds * 1000), azure=line,
        ))  # fmt: skip
