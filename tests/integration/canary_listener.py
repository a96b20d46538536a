"""A listener that logs, as JSON lines on stdout, every connection, datagram and packet addressed
to it. Runs in the project's own canary containers only; it sends nothing but answers to whoever
connects (a short HTTP reply on port 80, so an allowed request through the gateway succeeds).
"""

import json
import select
import socket
import struct
import sys
import threading

TCP_PORTS = (53, 80, 443, 8080, 15001, 15053)
UDP_PORTS = (53, 9999)
ROLE = sys.argv[1] if len(sys.argv) > 1 else "canary"
lock = threading.Lock()


def log(**event):
    with lock:
        print(json.dumps({"role": ROLE, **event}), flush=True)


def own_addresses():
    addresses = {socket.gethostbyname(socket.gethostname())}
    with open("/proc/net/if_inet6") as table:
        for line in table:
            raw, scope = line.split()[0], line.split()[3]
            if scope == "00":  # global scope
                addresses.add(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(raw)))
    return addresses


def serve_tcp(listener, port):
    while True:
        connection, peer = listener.accept()
        connection.settimeout(1.0)
        try:
            data = connection.recv(4096)
        except OSError:
            data = b""
        log(
            event="tcp",
            port=port,
            peer=peer[0].removeprefix("::ffff:"),
            bytes=len(data),
            head=data[:60].hex(),
        )
        if port == 80 and data:
            body = f"hello from {ROLE}\n".encode()
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                + body
            )
        connection.close()


def serve_udp(server, port):
    while True:
        data, peer = server.recvfrom(4096)
        log(event="udp", port=port, peer=peer[0].removeprefix("::ffff:"), bytes=len(data))


def sniff(mine):
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
    while True:
        select.select([sniffer], [], [])
        frame, address = sniffer.recvfrom(65535)
        if address[2] == socket.PACKET_OUTGOING:
            continue
        ethertype = struct.unpack("!H", frame[12:14])[0]
        if ethertype == 0x0800:
            proto, source, target = frame[23], frame[26:30], frame[30:34]
            source, target = socket.inet_ntoa(source), socket.inet_ntoa(target)
        elif ethertype == 0x86DD:
            proto = frame[20]
            source = socket.inet_ntop(socket.AF_INET6, frame[22:38])
            target = socket.inet_ntop(socket.AF_INET6, frame[38:54])
            if proto == 58 and frame[54] in (133, 134, 135, 136, 137):
                continue  # neighbour discovery: the bridge's own housekeeping
        else:
            continue
        if target in mine:
            log(event="packet", proto=proto, peer=source, to=target)


def main():
    mine = own_addresses()
    for port in TCP_PORTS:
        listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("::", port))
        listener.listen(16)
        threading.Thread(target=serve_tcp, args=(listener, port), daemon=True).start()
    for port in UDP_PORTS:
        server = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server.bind(("::", port))
        threading.Thread(target=serve_udp, args=(server, port), daemon=True).start()
    threading.Thread(target=sniff, args=(mine,), daemon=True).start()
    log(event="listening", addresses=sorted(mine))
    threading.Event().wait()


main()
