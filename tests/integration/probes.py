"""Attempts to get around the gateway, run inside a workload container. Each probe prints one JSON
line: {"probe", "outcome": "blocked" | "answered" | "sent", "detail"}. Every probe is bounded: a
few packets, 2-3 s timeouts. Targets are the project's own canary containers only.

usage: probes.py CANARY_IPV4 CANARY_IPV6 GATEWAY_PORT...
"""

import errno
import json
import socket
import ssl
import struct
import subprocess
import sys

CANARY, CANARY6 = sys.argv[1], sys.argv[2]
GATEWAY_PORTS = [int(port) for port in sys.argv[3:] if port.isdigit()]
TIMEOUT = 2.5


def report(probe, outcome, detail=""):
    print(json.dumps({"probe": probe, "outcome": outcome, "detail": str(detail)[:300]}), flush=True)


def tcp_exchange(probe, family, address, payload=b"hello canary\n"):
    """`answered` only when the peer sent bytes back; a transparent proxy accepting the
    connection and then closing it is `blocked`."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(address)
        sock.sendall(payload)
        data = sock.recv(1024)
        report(probe, "answered" if data else "blocked", data[:80] or "closed without data")
    except OSError as error:
        report(probe, "blocked", f"{type(error).__name__}: {error}")
    finally:
        sock.close()


def udp_send(probe, family, address, payload=b"hello canary\n"):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.sendto(payload, address)
        report(probe, "sent", "sendto succeeded")
    except OSError as error:
        report(probe, "blocked", f"{errno.errorcode.get(error.errno, error.errno)}: {error}")
    finally:
        sock.close()


def ping(probe):
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    except OSError as error:
        report(probe, "blocked", f"no ICMP socket: {error}")
        return
    sock.settimeout(TIMEOUT)
    header = struct.pack("!BBHHH", 8, 0, 0, 0, 1) + b"egress-probe"
    try:
        sock.sendto(header, (CANARY, 0))
        reply = sock.recv(1024)
        report(probe, "answered", reply[:20].hex())
    except OSError as error:
        report(probe, "blocked", f"{errno.errorcode.get(error.errno, error.errno)}: {error}")
    finally:
        sock.close()


def dns_query(name):
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return struct.pack("!HHHHHH", 0x4567, 0x0100, 1, 0, 0, 0) + labels + b"\0" + b"\0\1\0\1"


def dns_to_other_resolver(probe):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.sendto(dns_query("allowed.test"), (CANARY, 53))
        reply = sock.recv(1024)
        rcode = reply[3] & 0x0F
        # An answer can only come from the gateway's DNS (the canary never answers UDP).
        report(probe, "answered", f"rcode {rcode} from the firewall's DNS")
    except OSError as error:
        report(probe, "blocked", f"{type(error).__name__}: {error}")
    finally:
        sock.close()


def gateway_listener(probe, port):
    """TLS with an allowed name, straight to the gateway's own listener port."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        with context.wrap_socket(sock, server_hostname="allowed.test") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
            data = tls.recv(1024)
            report(probe, "answered" if data else "blocked", data[:80])
    except OSError as error:
        report(probe, "blocked", f"{type(error).__name__}: {error}")
    finally:
        sock.close()


def command(probe, argv):
    completed = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    outcome = "blocked" if completed.returncode != 0 else "answered"
    report(probe, outcome, f"exit {completed.returncode}: {completed.stderr.strip()}")


def main():
    tcp_exchange("tcp_direct", socket.AF_INET, (CANARY, 8080))
    udp_send("udp", socket.AF_INET, (CANARY, 9999))
    ping("icmp")
    tcp_exchange("ipv6_tcp", socket.AF_INET6, (CANARY6, 8080))
    udp_send("ipv6_udp", socket.AF_INET6, (CANARY6, 9999))
    dns_to_other_resolver("dns_other_resolver")
    tcp_exchange("dns_tcp_other_resolver", socket.AF_INET, (CANARY, 53), dns_query("x.test"))
    for port in GATEWAY_PORTS:
        gateway_listener(f"gateway_listener_{port}", port)
        tcp_exchange(
            f"gateway_listener_raw_{port}",
            socket.AF_INET,
            ("127.0.0.1", port),
            f"GET / HTTP/1.1\r\nHost: {CANARY}\r\n\r\n".encode(),
        )
    command("iptables_flush", ["iptables", "-w", "-F"])
    command("iptables_nat_flush", ["iptables", "-w", "-t", "nat", "-F"])
    command(
        "setpriv_gateway_uid",
        [
            "setpriv",
            "--reuid=64666",
            "--regid=64666",
            "--clear-groups",
            "python3",
            "-c",
            "print('became 64666')",
        ],
    )
    tcp_exchange("tcp_direct_after_attempts", socket.AF_INET, (CANARY, 8080))


main()
