"""The gateway's own address translation, read from conntrack over netlink.

tc egress runs after netfilter's source NAT and tc ingress before its reverse,
so the datapath keys a masqueraded flow by the gateway's WAN address and the
port NAT chose, not by the LAN host behind it (and a port-forwarded one by the
address the remote end dialled).  This module follows conntrack, NEW and
DESTROY events plus a dump at start and after lost events, and maps each
translated connection's tuple as the WAN port sees it back to the LAN host's
own address and port.  `Translator.apply` rewrites a swept flow table with
them; the datapath's own keys stay in `FlowTable.wire_keys` for the kernel.

Only TCP and UDP (and UDP-Lite, SCTP, DCCP: port-based) connections are
mapped; ICMP keeps the wire address.  A plain non-blocking netlink socket,
parsed here, for the reason daemon/links.py gives.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import socket
import struct
import sys
from typing import NamedTuple

import numpy as np

from anabranch.controller.flows import FlowTable, flow_ids, locate

from . import kstructs

log = logging.getLogger(__name__)

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 0, 1, 2
# Multicast groups, as bind() bits: 1 << (group - 1).
NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY = 1, 3
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLA_TYPE_MASK = 0x3FFF   # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS = 1, 2, 3
IPS_SRC_NAT, IPS_DST_NAT = 1 << 4, 1 << 5
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
PORT_PROTOCOLS = frozenset({socket.IPPROTO_TCP, socket.IPPROTO_UDP, 33, 132, 136})  # DCCP, SCTP, UDP-Lite

_NLMSGHDR = struct.Struct("=IHHII")     # len, type, flags, seq, pid
_NFGENMSG = struct.Struct("=BBH")       # family, version, res_id (big-endian)
_NLATTR = struct.Struct("=HH")          # len, type
_PORT = struct.Struct(">H")
_FAMILY = {socket.AF_INET: 4, socket.AF_INET6: 6}


# Named tuples, not dataclasses: one event builds four of them, and a named
# tuple is made in C (a third of the parse's time with frozen dataclasses).
class Tuple(NamedTuple):
    src: bytes      # 4 or 16 bytes
    dst: bytes
    sport: int
    dport: int


class Connection(NamedTuple):
    family: int     # 4 or 6
    proto: int
    orig: Tuple     # as the opener sent it
    reply: Tuple    # as the answer comes back: NAT shows as the difference


class Event(NamedTuple):
    kind: str                   # "new", "destroy", or "resync" (events were lost)
    connection: Connection | None = None


def _attrs(buffer: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """Attribute type -> (start, end) of its payload in `buffer`, between start and end."""
    out = {}
    while start + 4 <= end:
        length, kind = _NLATTR.unpack_from(buffer, start)
        if length < 4 or start + length > end:
            break
        out[kind & NLA_TYPE_MASK] = (start + 4, start + length)
        start += (length + 3) & ~3
    return out


def _tuple(buffer: bytes, span: tuple[int, int] | None) -> tuple[int, Tuple] | None:
    if span is None:
        return None
    parts = _attrs(buffer, *span)
    ip = _attrs(buffer, *parts[CTA_TUPLE_IP]) if CTA_TUPLE_IP in parts else {}
    proto = _attrs(buffer, *parts[CTA_TUPLE_PROTO]) if CTA_TUPLE_PROTO in parts else {}
    number, sport, dport = proto.get(CTA_PROTO_NUM), proto.get(CTA_PROTO_SRC_PORT), proto.get(CTA_PROTO_DST_PORT)
    if number is None or sport is None or dport is None or sport[1] - sport[0] < 2 or dport[1] - dport[0] < 2:
        return None
    src, dst = ip.get(CTA_IP_V4_SRC), ip.get(CTA_IP_V4_DST)
    if src is None or dst is None:
        src, dst = ip.get(CTA_IP_V6_SRC), ip.get(CTA_IP_V6_DST)
        if src is None or dst is None:
            return None
    return buffer[number[0]], Tuple(buffer[src[0]:src[1]], buffer[dst[0]:dst[1]],
                                    _PORT.unpack_from(buffer, sport[0])[0], _PORT.unpack_from(buffer, dport[0])[0])


# The usual tuple, as ctnetlink writes it (ctnetlink_dump_tuples): the addresses,
# then protocol, source and destination port.  Its attribute headers are read in
# one unpack and looked up among the layouts expected (the nests with or without
# NLA_F_NESTED), its values in another; anything else takes _tuple's walk.
# Ports are big-endian in the message and unpacked natively here (swapped below).
_NESTED = 0x8000


def _fast_layout(width: int, src: int, dst: int) -> tuple:
    headers = struct.Struct(f"=4xHHHH{width}xHH{width}xHHHH4xHH4xHH4x")
    values = struct.Struct(f"=12x{width}s4x{width}s8xB7xH6xH2x")
    plain = (12 + 2 * width, CTA_TUPLE_IP, 4 + width, src, 4 + width, dst, 28, CTA_TUPLE_PROTO,
             5, CTA_PROTO_NUM, 6, CTA_PROTO_SRC_PORT, 6, CTA_PROTO_DST_PORT)
    nested = plain[:1] + (CTA_TUPLE_IP | _NESTED,) + plain[2:7] + (CTA_TUPLE_PROTO | _NESTED,) + plain[8:]
    return headers, values, frozenset({plain, nested})


_FAST_TUPLES = {52: _fast_layout(4, CTA_IP_V4_SRC, CTA_IP_V4_DST), 76: _fast_layout(16, CTA_IP_V6_SRC, CTA_IP_V6_DST)}
_SWAP = sys.byteorder == "little"


def _fast_tuple(buffer: bytes, start: int, length: int) -> tuple[int, Tuple] | None:
    """The tuple attribute of `length` bytes at `start` (its header included), or None
    where it is not laid out as usual."""
    layout = _FAST_TUPLES.get(length)
    if layout is None or start + length > len(buffer) or layout[0].unpack_from(buffer, start) not in layout[2]:
        return None
    src, dst, proto, sport, dport = layout[1].unpack_from(buffer, start)
    if _SWAP:
        sport, dport = ((sport & 0xFF) << 8) | (sport >> 8), ((dport & 0xFF) << 8) | (dport >> 8)
    return proto, Tuple(src, dst, sport, dport)


def _tuples(buffer: bytes, start: int, end: int) -> tuple:
    """(orig, reply) of one conntrack message's attributes between start and end; each
    (protocol, Tuple) or None.  ctnetlink writes the two tuples first: read in place."""
    if start + 4 <= end:
        first, kind = _NLATTR.unpack_from(buffer, start)
        second_at = start + ((first + 3) & ~3)
        if kind & NLA_TYPE_MASK == CTA_TUPLE_ORIG and second_at + 4 <= end:
            second, kind = _NLATTR.unpack_from(buffer, second_at)
            if kind & NLA_TYPE_MASK == CTA_TUPLE_REPLY and second_at + second <= end:
                orig, reply = _fast_tuple(buffer, start, first), _fast_tuple(buffer, second_at, second)
                if orig is not None and reply is not None:
                    return orig, reply
    attrs = _attrs(buffer, start, end)
    return _tuple(buffer, attrs.get(CTA_TUPLE_ORIG)), _tuple(buffer, attrs.get(CTA_TUPLE_REPLY))


def parse(buffer: bytes) -> tuple[list[Event], bool]:
    """The conntrack messages in one netlink read, and whether a dump ended in it.
    Messages of other kinds, protocols without ports and malformed ones are skipped."""
    events: list[Event] = []
    done = False
    offset = 0
    while offset + _NLMSGHDR.size <= len(buffer):
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(buffer, offset)
        if length < _NLMSGHDR.size or offset + length > len(buffer):
            break
        if kind == NLMSG_DONE:
            done = True
        elif kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", buffer, offset + _NLMSGHDR.size)
            if code:
                raise OSError(-code, f"conntrack netlink: {errno.errorcode.get(-code, code)}")
        elif kind >> 8 == NFNL_SUBSYS_CTNETLINK and kind & 0xFF in (IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_DELETE):
            body = offset + _NLMSGHDR.size
            family = _FAMILY.get(_NFGENMSG.unpack_from(buffer, body)[0]) if body + 4 <= offset + length else None
            orig, reply = _tuples(buffer, body + _NFGENMSG.size, offset + length)
            if family and orig and reply and orig[0] == reply[0] and orig[0] in PORT_PROTOCOLS:
                events.append(Event("new" if kind & 0xFF == IPCTNL_MSG_CT_NEW else "destroy",
                                    Connection(family, orig[0], orig[1], reply[1])))
        offset += (length + 3) & ~3
    return events, done


def wire_mappings(c: Connection) -> list[tuple[bytes, bytes, int]]:
    """(wire key, LAN host address, LAN host port) for a translated connection.

    Source NAT (a LAN host opened it): the WAN port sees the reply's destination
    as the LAN side and its source as the remote end.  Destination NAT (a port
    forward): the WAN port sees the original destination and source."""
    out = []
    o, r = c.orig, c.reply
    if (o.src, o.sport) != (r.dst, r.dport):
        out.append((wire_key(c.family, c.proto, r.dst, r.dport, r.src, r.sport), o.src, o.sport))
    if (o.dst, o.dport) != (r.src, r.sport):
        out.append((wire_key(c.family, c.proto, o.dst, o.dport, o.src, o.sport), r.src, r.sport))
    return out


# The datapath's flow key without its port (kstructs.FLOW_KEY from byte 4 on).
_WIRE = struct.Struct("<BBHHH16s16s")
_LAN_ADDR = slice(kstructs.FLOW_KEY.fields["lan_addr"][1], kstructs.FLOW_KEY.fields["lan_addr"][1] + 16)
_LAN_PORT = slice(kstructs.FLOW_KEY.fields["lan_port"][1], kstructs.FLOW_KEY.fields["lan_port"][1] + 2)


def wire_key(family: int, proto: int, lan: bytes, lan_port: int, remote: bytes, remote_port: int) -> bytes:
    return _WIRE.pack(family, proto, lan_port, remote_port, 0, lan, remote)


# A classic BPF socket filter that passes only events of translated connections:
# the gateway's own connections, routed IPv6 and anything else conntrack sees
# without NAT are dropped in the kernel, before they cost a wake-up, a copy and
# a parse here (~12 µs each in Python).  The kernel's netlink-attribute search
# (SKF_AD_NLATTR) finds CTA_STATUS after the netlink and nfnetlink headers; an
# event without it, or of another subsystem, is passed on to the parser.
SO_ATTACH_FILTER = 26
_SKF_AD_NLATTR = 0xFFFFF000 + 12        # SKF_AD_OFF + SKF_AD_NLATTR
_LD_B_ABS, _LD_W_ABS, _LD_W_IND, _LD_IMM, _LDX_IMM = 0x30, 0x20, 0x40, 0x00, 0x01
_JEQ_K, _JSET_K, _RET_K, _TAX = 0x15, 0x45, 0x06, 0x07
_NLMSG_TYPE_HIGH = 5 if sys.byteorder == "little" else 4    # the subsystem's byte of nlmsg_type
_ATTRS_START = _NLMSGHDR.size + _NFGENMSG.size


def nat_only_filter() -> list[tuple[int, int, int, int]]:
    """The filter's instructions (code, jump if true, jump if false, k); jumps skip that many."""
    return [
        (_LD_B_ABS, 0, 0, _NLMSG_TYPE_HIGH),
        (_JEQ_K, 0, 8, NFNL_SUBSYS_CTNETLINK),         # not conntrack: pass
        (_LD_IMM, 0, 0, _ATTRS_START),
        (_LDX_IMM, 0, 0, CTA_STATUS),
        (_LD_W_ABS, 0, 0, _SKF_AD_NLATTR),             # A = offset of CTA_STATUS, or 0
        (_JEQ_K, 4, 0, 0),                             # no status: pass
        (_TAX, 0, 0, 0),
        (_LD_W_IND, 0, 0, 4),                          # the status (big-endian, as loads read)
        (_JSET_K, 1, 0, IPS_SRC_NAT | IPS_DST_NAT),
        (_RET_K, 0, 0, 0),                             # drop
        (_RET_K, 0, 0, 0xFFFFFFFF),                    # pass, whole
    ]


def _attach(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    import ctypes

    code = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *i) for i in program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                    struct.pack("@HP", len(program), ctypes.addressof(code)))


class Conntrack:
    """conntrack's NEW and DESTROY events, and dumps of every connection."""

    def __init__(self, receive_buffer: int = 8 << 20, nat_only: bool = True) -> None:
        """receive_buffer: bytes of events the socket holds (room for a burst between two ticks).
        nat_only: let the kernel drop events of connections without NAT (see nat_only_filter)."""
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                                   | socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, 33, receive_buffer)     # SO_RCVBUFFORCE
        except OSError:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.filtered = False
        if nat_only:
            try:
                _attach(self._sock, nat_only_filter())
                self.filtered = True
            except OSError as exc:      # every event then comes up, and is parsed here
                log.warning("conntrack: cannot filter events in the kernel (%s); reading them all", exc.strerror)
        self._sock.bind((0, (1 << (NFNLGRP_CONNTRACK_NEW - 1)) | (1 << (NFNLGRP_CONNTRACK_DESTROY - 1))))
        # Read into one buffer: recv(64 KiB) would allocate and shrink that much per event.
        self._buffer = memoryview(bytearray(1 << 16))

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self) -> list[Event]:
        """Every event pending on the socket; a "resync" event where the kernel dropped some."""
        events: list[Event] = []
        while True:
            try:
                events += parse(self._buffer[:self._sock.recv_into(self._buffer)].tobytes())[0]
            except BlockingIOError:
                return events
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                events.append(Event("resync"))

    @staticmethod
    def dump(timeout_s: float = 5.0) -> list[Connection]:
        """Every connection conntrack has now (IPv4 and IPv6), on a socket of its own."""
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER) as sock:
            sock.settimeout(timeout_s)
            sock.bind((0, 0))
            body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, 0)
            sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
                                     NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
            connections: list[Connection] = []
            while True:
                events, done = parse(sock.recv(1 << 20))
                connections += [e.connection for e in events if e.connection is not None]
                if done:
                    return connections

    def close(self) -> None:
        self._sock.close()


class Translator:
    """Maps the datapath's flow keys of translated connections to their LAN hosts."""

    def __init__(self, source: Conntrack | None = None) -> None:
        self.source = source
        self.hosts: dict[bytes, tuple[bytes, int]] = {}    # wire key -> (LAN address, port)
        self.resyncs = 0
        self.translated = 0     # flows of the last table under their LAN host
        # Every flow id already looked up (sorted: the last table's), whether it was
        # translated, and, where any was, that table's keys as translated (bytes).
        self._seen = np.zeros(0, dtype=np.uint64)
        self._valid = np.zeros(0, dtype=bool)       # False: look this one up again
        self._found = np.zeros(0, dtype=bool)
        self._keys = np.zeros((0, kstructs.FLOW_KEY.itemsize), dtype=np.uint8)
        # Wire keys of connections new since the last apply: a flow the datapath
        # still has under one of them (NAT reused a port) is looked up again.
        self._renewed: list[bytes] = []
        # Flows of the last apply that were looked up again for that reason (their records change).
        self.relooked = np.zeros(0, dtype=np.uint64)
        self._stale = True

    def learn(self, events: list[Event]) -> None:
        for event in events:
            if event.kind == "resync":
                self._stale = True
                continue
            for key, addr, port in wire_mappings(event.connection):
                if event.kind == "new":
                    self.hosts[key] = (addr, port)
                    self._renewed.append(key)
                else:
                    self.hosts.pop(key, None)

    def refresh(self) -> None:
        """Take the pending events; at the start and after lost ones, the whole table."""
        if self.source is None:
            return
        try:
            events = self.source.read()
        except OSError:
            self._stale = True
            raise
        if not self._stale and not any(e.kind == "resync" for e in events):
            self.learn(events)
            return
        if self.resyncs:
            log.warning("conntrack events were lost; reading the whole table again")
        self.resyncs += 1
        connections = self.source.dump()
        self.hosts = {}
        self.learn([Event("new", c) for c in connections])
        self._stale = False
        # A flow not found while events were missing may have missed its own: look again.
        self._valid &= self._found
        self._renewed = []

    def apply(self, table: FlowTable) -> FlowTable:
        """The table with each translated flow's LAN side replaced by its LAN host.

        A flow is looked up once, at the first sweep that has it (call `refresh`
        after the sweep): conntrack reports a connection before its first packet
        leaves the gateway, so its mapping is known by then."""
        self.relooked = self.relooked[:0]
        if self._renewed:
            self._forget(self._renewed, np.unique(table.keys["ifindex"]))
            self._renewed = []
        n = len(table)
        translated = bool(self._found.any())
        if not self.hosts and not translated:          # nothing to look up, nothing looked up
            self._seen, self._valid, self._found = table.ids, np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
            self.translated = 0
            return table
        wire = np.ascontiguousarray(table.keys).view(np.uint8).reshape(n, -1)
        pos, known = locate(self._seen, table.ids)
        if len(self._seen):
            known &= self._valid[pos]
        fresh = np.flatnonzero(~known)
        if translated:   # whole rows: far cheaper than assigning into the key's fields
            keys = np.take(self._keys, pos, axis=0)
            keys[fresh] = wire[fresh]
            found = self._found[pos] & known
        else:
            keys, found = wire.copy(), np.zeros(n, dtype=bool)
        if len(fresh) and self.hosts:
            blob, width, get = wire[fresh][:, 4:].tobytes(), wire.shape[1] - 4, self.hosts.get
            hits = [(i, host) for i in range(len(fresh))
                    if (host := get(blob[i * width:(i + 1) * width])) is not None]
            if hits:
                rows = fresh[[i for i, _ in hits]]
                found[rows] = True
                keys[rows, _LAN_ADDR] = np.frombuffer(b"".join(a.ljust(16, b"\0") for _, (a, _) in hits),
                                                      dtype=np.uint8).reshape(-1, 16)
                keys[rows, _LAN_PORT] = np.array([p for _, (_, p) in hits], dtype="<u2").view(np.uint8).reshape(-1, 2)
        self._seen, self._valid, self._found, self._keys = table.ids, np.ones(n, dtype=bool), found, keys
        self.translated = int(found.sum())
        if not self.translated:
            return table
        return dataclasses.replace(table, keys=keys.view(table.keys.dtype).reshape(n), wire_keys=table.keys)

    def _forget(self, wire: list[bytes], ports: np.ndarray) -> None:
        """Look again at the flows these wire keys name on any of these ports."""
        if not len(self._seen):
            return
        raw = np.frombuffer(b"".join(wire), dtype=np.uint8).reshape(len(wire), -1)
        keys = np.zeros((len(ports), len(wire)), dtype=kstructs.FLOW_KEY)
        keys.view(np.uint8).reshape(len(ports), len(wire), -1)[:, :, 4:] = raw
        keys["ifindex"] = ports[:, None]
        ids = flow_ids(keys.ravel())
        pos, found = locate(self._seen, ids)
        pos = pos[found]
        self._valid[pos] = False
        self.relooked = self._seen[pos]

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
