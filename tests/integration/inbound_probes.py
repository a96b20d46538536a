"""Both ends of the inbound-reply bypass test (test_bypass.py), as JSON lines on stdout.

    inbound_probes.py workload CANARY_IPV4 PORT   in a workload behind the gateway
    inbound_probes.py peer GATEWAY_IPV4 PORT      in a container outside, on the canary network

The peer opens a TCP connection to the workload (as a deploy client does) from a fixed port,
then sends a datagram from that port and listens on it (TCP and UDP) for anything the workload
sends back outside that one connection. The workload answers on the accepted connection (the
reply path the gateway's rules allow), then tries to use that opening to get out on its own:
a UDP reply, a new connection from the same local port to the peer's port (the reverse tuple of
the finished connection), a new connection to the peer, TCP and UDP to the canary. Every step is
bounded (a few seconds); targets are the project's own containers only.
"""

import errno
import json
import os
import select
import socket
import sys
import time

TIMEOUT = 2.5
PEER_PORT = 40404  # the peer's fixed source port, then its listening port
STOP_FILE = "/tmp/inbound-stop"  # the test creates it in the peer once the workload is done


def report(probe, outcome, detail=""):
    print(json.dumps({"probe": probe, "outcome": outcome, "detail": str(detail)[:300]}), flush=True)


def error_text(error):
    return f"{errno.errorcode.get(error.errno, error.errno)}: {error}"


def tcp_exchange(probe, address, local_port=None):
    """`answered` only when the peer sent bytes back (the gateway's proxy accepting and then
    closing a denied connection is `blocked`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.settimeout(TIMEOUT)
    try:
        if local_port is not None:
            sock.bind(("0.0.0.0", local_port))
        sock.connect(address)
        sock.sendall(b"hello from the workload\n")
        data = sock.recv(1024)
        report(probe, "answered" if data else "blocked", data[:80] or "closed without data")
    except OSError as error:
        report(probe, "blocked", f"{type(error).__name__}: {error}")
    finally:
        sock.close()


def udp_send(probe, address, local_port=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if local_port is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", local_port))
        sock.sendto(b"hello from the workload\n", address)
        report(probe, "sent", "sendto succeeded")
    except OSError as error:
        report(probe, "blocked", error_text(error))
    finally:
        sock.close()


def workload(canary, port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(4)
    datagrams = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    datagrams.bind(("0.0.0.0", port))
    report("listening", "ready", port)
    listener.settimeout(30)
    try:
        connection, peer = listener.accept()
    except OSError as error:
        report("inbound", "none", error)
        return
    listener.close()
    connection.settimeout(5)
    try:
        data = connection.recv(1024)
        connection.sendall(b"reply from the workload\n")
        while connection.recv(1024):
            pass  # until the peer closes: the workload closes second (no TIME_WAIT here)
        report("inbound", "answered", f"{data!r} from {peer[0]}:{peer[1]}")
    except OSError as error:
        report("inbound", "blocked", error_text(error))
    finally:
        connection.close()
    # The peer's datagram from the same port: a reply to it is not a TCP reply.
    datagrams.settimeout(10)
    try:
        _, sender = datagrams.recvfrom(1024)
        datagrams.sendto(b"udp reply from the workload\n", sender)
        report("udp_reply_to_peer", "sent", f"to {sender}")
    except OSError as error:
        report("udp_reply_to_peer", "blocked", error_text(error))
    finally:
        datagrams.close()
    time.sleep(0.5)
    # The reverse of the finished connection's tuple: conntrack sees a SYN in its REPLY direction.
    tcp_exchange("tcp_reopen_reverse_tuple", (peer[0], peer[1]), local_port=port)
    tcp_exchange("tcp_new_to_peer", (peer[0], peer[1]))
    udp_send("udp_new_to_peer", (peer[0], peer[1]))
    tcp_exchange("tcp_to_canary", (canary, 8080))
    udp_send("udp_to_canary", (canary, 9999))
    tcp_exchange("tcp_to_canary_from_the_port", (canary, 8080), local_port=port)
    report("done", "done")


def peer(gateway, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", PEER_PORT))
    sock.settimeout(5)
    try:
        sock.connect((gateway, port))
        sock.sendall(b"hello from outside\n")
        report("peer_got_reply", "answered", sock.recv(1024))
    except OSError as error:
        report("peer_got_reply", "blocked", f"{type(error).__name__}: {error}")
    finally:
        sock.close()  # the peer closes first
    # From now on anything arriving on the peer's port came from the workload on its own.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", PEER_PORT))
    listener.listen(4)
    datagrams = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    datagrams.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    datagrams.bind(("0.0.0.0", PEER_PORT))
    datagrams.sendto(b"datagram from outside\n", (gateway, port))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not os.path.exists(STOP_FILE):
        ready, _, _ = select.select([listener, datagrams], [], [], 0.2)
        for source in ready:
            if source is listener:
                connection, address = listener.accept()
                report("peer_heard", "tcp", f"from {address[0]}:{address[1]}")
                connection.close()
            else:
                data, address = datagrams.recvfrom(1024)
                report("peer_heard", "udp", f"{data!r} from {address[0]}:{address[1]}")
    report("done", "done")


if __name__ == "__main__":
    role, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    (workload if role == "workload" else peer)(address, port)
