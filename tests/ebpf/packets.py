"""Crafted frames for datapath tests: Ethernet (+VLAN), IPv4 (+options), IPv6 (+ext), TCP/UDP."""

from __future__ import annotations

import ipaddress
import struct


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ethernet(payload: bytes, ethertype: int, vlans: tuple[tuple[int, int], ...] = ()) -> bytes:
    """vlans: ((tpid, vid), ...) outermost first."""
    header = b"\x02\0\0\0\0\x01" + b"\x02\0\0\0\0\x02"
    for tpid, vid in vlans:
        header += struct.pack("!HH", tpid, vid)
    return header + struct.pack("!H", ethertype) + payload


def ipv4(src: str, dst: str, proto: int, payload: bytes, tos: int = 0, options: bytes = b"",
         frag: int = 0) -> bytes:
    ihl = 5 + len(options) // 4
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, ihl * 4 + len(payload), 1, frag, 64, proto, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed) + options
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def ipv6(src: str, dst: str, proto: int, payload: bytes, tclass: int = 0, ext: bytes = b"",
         ext_proto: int | None = None) -> bytes:
    """ext: extension headers already chained, the first one's type given as ext_proto."""
    first = ext_proto if ext else proto
    word = (6 << 28) | (tclass << 20) | 0x12345
    return struct.pack("!IHBB16s16s", word, len(ext) + len(payload), first, 64,
                       ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed) + ext + payload


def tcp(sport: int, dport: int, flags: int = 0x10, seq: int = 1000, ack: int = 0, options: bytes = b"",
        payload: bytes = b"") -> bytes:
    options += b"\x01" * (-len(options) % 4)
    doff = 5 + len(options) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 65535, 0, 0) + options + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ts_option(tsval: int, tsecr: int) -> bytes:
    return b"\x01\x01" + struct.pack("!BBII", 8, 10, tsval, tsecr)


def mptcp_option(subtype: int, body: bytes, low: int = 0) -> bytes:
    return struct.pack("!BBB", 30, 3 + len(body), (subtype << 4) | low) + body


SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08
