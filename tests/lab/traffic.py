#!/usr/bin/env python3
"""Traffic for the lab: sinks on the server, paced senders on the client.

    traffic.py serve                          TCP 9000, MPTCP 9001, UDP 16384 and 5004 sinks
    traffic.py tcp HOST --bytes N [--rate-mbit R] [--port 9000]
    traffic.py mptcp HOST --bytes N [--rate-mbit R]
    traffic.py udp HOST --packets N [--size 160] [--pps 50] [--port 16384]
    traffic.py mix HOST [--seconds S]         what `make demo` runs: bulk TCP, voice-like
                                              UDP, video-like UDP and one MPTCP connection
Run inside the namespaces (`ip netns exec`); stdlib only.  Senders are paced so a
demo never burns the machine's CPUs on a 20 Gbit/s veth transfer.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time

IPPROTO_MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)
TCP_PORT, MPTCP_PORT = 9000, 9001
UDP_PORTS = (16384, 5004)
CHUNK = 64 * 1024


def _drain(conn: socket.socket) -> None:
    with conn:
        while conn.recv(CHUNK):
            pass


def _tcp_sink(port: int, proto: int) -> None:
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, proto)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind(("::", port))
    srv.listen(64)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_drain, args=(conn,), daemon=True).start()


def _udp_sink(port: int) -> None:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    while True:
        sock.recv(65535)


def serve() -> None:
    threads = [threading.Thread(target=_tcp_sink, args=(TCP_PORT, 0), daemon=True),
               threading.Thread(target=_tcp_sink, args=(MPTCP_PORT, IPPROTO_MPTCP), daemon=True)]
    threads += [threading.Thread(target=_udp_sink, args=(p,), daemon=True) for p in UDP_PORTS]
    for t in threads:
        t.start()
    print("serving", flush=True)
    while True:
        time.sleep(3600)


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def send_stream(host: str, port: int, total: int, rate_mbit: float | None, proto: int = 0,
                source: str | None = None) -> int:
    """Send `total` bytes (0: until killed), paced to `rate_mbit`; returns bytes sent."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM, proto)
    if source:
        sock.bind((source, 0))
    sock.connect((host, port))
    block = b"\xab" * CHUNK
    sent = 0
    started = time.monotonic()
    while total == 0 or sent < total:
        n = CHUNK if total == 0 else min(CHUNK, total - sent)
        sock.sendall(block[:n])
        sent += n
        if rate_mbit:
            ahead = sent * 8 / (rate_mbit * 1e6) - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(10)
    while sock.recv(CHUNK):
        pass
    sock.close()
    return sent


def send_datagrams(host: str, port: int, packets: int, size: int, pps: float,
                   source_port: int = 0) -> int:
    """Send `packets` UDP datagrams (0: until killed) of `size` payload bytes at `pps`."""
    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
    if source_port:
        sock.bind(("::" if ":" in host else "0.0.0.0", source_port))
    payload = b"\x80" * size
    started = time.monotonic()
    sent = 0
    while packets == 0 or sent < packets:
        sock.sendto(payload, (host, port))
        sent += 1
        delay = started + sent / pps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    sock.close()
    return sent


def mix(host: str, seconds: float) -> None:
    """The demo's mix; each part restarts when it ends, until `seconds` pass (0: forever)."""
    parts = [
        ("bulk tcp 1", lambda: send_stream(host, TCP_PORT, 40_000_000, 20)),
        ("bulk tcp 2", lambda: send_stream(host, TCP_PORT, 15_000_000, 5)),
        ("voice udp", lambda: send_datagrams(host, 16384, 500, 160, 50, source_port=16390)),
        ("video udp", lambda: send_datagrams(host, 5004, 3000, 1200, 300)),
        ("mptcp", lambda: send_stream(host, MPTCP_PORT, 30_000_000, 8, proto=IPPROTO_MPTCP)),
        ("ipv6 tcp", lambda: send_stream("fd72:1::2", TCP_PORT, 5_000_000, 2)),
    ]
    deadline = time.monotonic() + seconds if seconds else None

    def loop(name, action):
        while deadline is None or time.monotonic() < deadline:
            try:
                action()
            except OSError as exc:
                print(f"{name}: {exc}; retrying", file=sys.stderr, flush=True)
                time.sleep(1)

    threads = [threading.Thread(target=loop, args=p, daemon=True) for p in parts]
    for t in threads:
        t.start()
    print(f"traffic mix running ({len(parts)} generators)", flush=True)
    for t in threads:
        t.join()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("serve")
    for mode in ("tcp", "mptcp"):
        p = sub.add_parser(mode)
        p.add_argument("host")
        p.add_argument("--bytes", type=int, required=True)
        p.add_argument("--rate-mbit", type=float)
        p.add_argument("--port", type=int, default=TCP_PORT if mode == "tcp" else MPTCP_PORT)
        p.add_argument("--source")
    p = sub.add_parser("udp")
    p.add_argument("host")
    p.add_argument("--packets", type=int, required=True)
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--pps", type=float, default=50)
    p.add_argument("--port", type=int, default=16384)
    p.add_argument("--source-port", type=int, default=0)
    p = sub.add_parser("mix")
    p.add_argument("host")
    p.add_argument("--seconds", type=float, default=0)
    args = parser.parse_args(argv)

    if args.mode == "serve":
        serve()
    elif args.mode in ("tcp", "mptcp"):
        proto = IPPROTO_MPTCP if args.mode == "mptcp" else 0
        sent = send_stream(args.host, args.port, args.bytes, args.rate_mbit, proto, args.source)
        print(sent)
    elif args.mode == "udp":
        print(send_datagrams(args.host, args.port, args.packets, args.size, args.pps, args.source_port))
    elif args.mode == "mix":
        mix(args.host, args.seconds)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
