#!/usr/bin/env python3
"""Put crafted Ethernet frames on a lab wire and catch what arrives: raw AF_PACKET, stdlib only.

    rawframes.py send IFACE < frames.json         frames: ["<hex>", ...]; the Ethernet
                                                   destination is rewritten to IFACE's
                                                   neighbour (--dst-mac) and the source to IFACE
    rawframes.py capture IFACE --seconds S --marker HEX
                                                   prints, as JSON, every frame received on
                                                   IFACE that contains the marker bytes
Run inside a namespace (`ip netns exec`).  The capture prints "ready" once its socket is
bound, so a sender started after that line is never early.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def mac_of(iface: str) -> bytes:
    with open(f"/sys/class/net/{iface}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def send(iface: str, dst_mac: str, frames: list[str]) -> int:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    header = bytes.fromhex(dst_mac.replace(":", "")) + mac_of(iface)
    for frame in frames:
        raw = bytes.fromhex(frame)
        sock.send(header + raw[12:])
    sock.close()
    return len(frames)


def capture(iface: str, seconds: float, marker: bytes) -> list[str]:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    print("ready", flush=True)
    caught = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        frame, address = sock.recvfrom(65535)
        if address[2] != PACKET_OUTGOING and marker in frame:
            caught.append(frame.hex())
    sock.close()
    return caught


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("send")
    p.add_argument("iface")
    p.add_argument("--dst-mac", required=True)
    p = sub.add_parser("capture")
    p.add_argument("iface")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--marker", required=True, help="hex bytes every wanted frame contains")
    args = parser.parse_args(argv)
    if args.mode == "send":
        print(send(args.iface, args.dst_mac, json.load(sys.stdin)))
    else:
        print(json.dumps(capture(args.iface, args.seconds, bytes.fromhex(args.marker))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
