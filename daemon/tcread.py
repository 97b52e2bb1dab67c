"""Read qdiscs and classes, with their counters, straight from rtnetlink.

The shaper reads its HTB trees back every tick.  pyroute2 decodes every
attribute of every message into Python objects, which cost about 3 ms per
interface and tick; here a dump is parsed with `struct` for the few
attributes the shaper uses (kind, HTB rates and prio, pfifo limit, byte,
packet, drop, overlimit and backlog counters), well under a tenth of that.
Changes to the kernel stay with pyroute2: they are rare.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from dataclasses import dataclass, field

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWQDISC, RTM_GETQDISC = 36, 38
RTM_NEWTCLASS, RTM_GETTCLASS = 40, 42
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
IFLA_IFNAME = 3
TCA_KIND, TCA_OPTIONS, TCA_STATS2 = 1, 2, 7
TCA_STATS_BASIC, TCA_STATS_QUEUE, TCA_STATS_PKT64 = 1, 3, 8
TCA_HTB_PARMS, TCA_HTB_INIT, TCA_HTB_RATE64, TCA_HTB_CEIL64 = 1, 2, 6, 7
NLA_TYPE_MASK = 0x3FFF
CLONE_NEWNET = 0x4000_0000

NLMSGHDR = struct.Struct("=IHHII")     # len, type, flags, seq, pid
TCMSG = struct.Struct("=BxxxiIII")     # family, ifindex, handle, parent, info
IFINFOMSG = struct.Struct("=BxHiII")   # family, type, index, flags, change
RTATTR = struct.Struct("=HH")          # len, type
# struct tc_htb_opt: rate and ceil (struct tc_ratespec, rate in bytes/s at +8),
# buffer, cbuffer, quantum, level, prio.
HTB_OPT = struct.Struct("=8xI8xI16xI")
HTB_GLOB = struct.Struct("=III")       # version, rate2quantum, defcls
STATS_BASIC = struct.Struct("=QI")     # bytes, packets
STATS_QUEUE = struct.Struct("=IIIII")  # qlen, backlog, drops, requeues, overlimits
U32 = struct.Struct("=I")
U64 = struct.Struct("=Q")


@dataclass(frozen=True)
class TcObject:
    """One qdisc or class as the kernel dumps it: what the shaper reads back."""

    ifindex: int
    handle: int
    parent: int
    kind: str
    options: dict[str, int] = field(default_factory=dict)   # rate_Bps, ceil_Bps, prio, defcls, limit
    counters: dict[str, int] = field(default_factory=dict)  # sent_bytes, sent_packets, dropped, ...


def _attrs(buf: memoryview, start: int, end: int) -> dict[int, memoryview]:
    found = {}
    while start + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(buf, start)
        if length < RTATTR.size or start + length > end:
            break  # a malformed attribute: keep what was read before it
        found[kind & NLA_TYPE_MASK] = buf[start + RTATTR.size:start + length]
        start += (length + 3) & ~3
    return found


def _options(kind: str, raw: memoryview | None) -> dict[str, int]:
    if raw is None:
        return {}
    if kind == "pfifo" and len(raw) >= U32.size:
        return {"limit": U32.unpack_from(raw)[0]}
    if kind != "htb":
        return {}
    nested = _attrs(raw, 0, len(raw))
    options = {}
    parms = nested.get(TCA_HTB_PARMS)
    if parms is not None and len(parms) >= HTB_OPT.size:
        options["rate_Bps"], options["ceil_Bps"], options["prio"] = HTB_OPT.unpack_from(parms)
    for key, name in ((TCA_HTB_RATE64, "rate_Bps"), (TCA_HTB_CEIL64, "ceil_Bps")):
        wide = nested.get(key)
        if wide is not None and len(wide) >= U64.size:  # rates past 32 bits of bytes/s
            options[name] = U64.unpack_from(wide)[0]
    init = nested.get(TCA_HTB_INIT)
    if init is not None and len(init) >= HTB_GLOB.size:
        options["defcls"] = HTB_GLOB.unpack_from(init)[2]
    return options


def _counters(raw: memoryview | None) -> dict[str, int]:
    if raw is None:
        return {}
    stats = _attrs(raw, 0, len(raw))
    counters = {}
    basic = stats.get(TCA_STATS_BASIC)
    if basic is not None and len(basic) >= STATS_BASIC.size:
        counters["sent_bytes"], counters["sent_packets"] = STATS_BASIC.unpack_from(basic)
    wide = stats.get(TCA_STATS_PKT64)
    if wide is not None and len(wide) >= U64.size:
        counters["sent_packets"] = U64.unpack_from(wide)[0]
    queue = stats.get(TCA_STATS_QUEUE)
    if queue is not None and len(queue) >= STATS_QUEUE.size:
        qlen, backlog, drops, _requeues, overlimits = STATS_QUEUE.unpack_from(queue)
        counters.update(dropped=drops, overlimits=overlimits, backlog_bytes=backlog, backlog_packets=qlen)
    return counters


def _socket_in(netns: str | None) -> socket.socket:
    """A route netlink socket in network namespace `netns` (None: ours).

    A socket stays in the namespace it was made in, so the thread enters the
    namespace only for the socket() call."""
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    libc = ctypes.CDLL(None, use_errno=True)
    ours = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        theirs = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(theirs, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"entering network namespace {netns}: {os.strerror(code)}")
            try:
                return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
            finally:
                if libc.setns(ours, CLONE_NEWNET) != 0:  # pragma: no cover - the kernel let us in
                    code = ctypes.get_errno()
                    raise OSError(code, f"leaving network namespace {netns}: {os.strerror(code)}")
        finally:
            os.close(theirs)
    finally:
        os.close(ours)


class TcReader:
    """Dumps of one network namespace's links, qdiscs and classes over one netlink socket."""

    def __init__(self, netns: str | None = None):
        self._sock = _socket_in(netns)
        self._sock.bind((0, 0))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def _request(self, kind: int, flags: int, body: bytes) -> list[tuple[int, memoryview]]:
        """Send one request; return every (type, payload) of its answer up to DONE or the reply."""
        self._seq += 1
        seq = self._seq
        self._sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body)
        messages = []
        while True:
            buf = memoryview(self._sock.recv(1 << 20))
            at = 0
            while at + NLMSGHDR.size <= len(buf):
                length, mtype, _flags, mseq, _pid = NLMSGHDR.unpack_from(buf, at)
                if length < NLMSGHDR.size:
                    raise OSError(errno.EPROTO, "rtnetlink: malformed message")
                payload = buf[at + NLMSGHDR.size:at + length]
                at += (length + 3) & ~3
                if mseq != seq:
                    continue  # the tail of an earlier, abandoned request
                if mtype == NLMSG_DONE:
                    return messages
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return messages  # an acknowledgement
                messages.append((mtype, payload))
                if not flags & NLM_F_DUMP:
                    return messages

    def ifindex(self, name: str) -> int | None:
        """The index of interface `name`, or None when there is none."""
        encoded = name.encode() + b"\0"
        attr = RTATTR.pack(RTATTR.size + len(encoded), IFLA_IFNAME) + encoded
        attr += b"\0" * (-len(attr) % 4)
        try:
            replies = self._request(RTM_GETLINK, 0, IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr)
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        for mtype, payload in replies:
            if mtype == RTM_NEWLINK and len(payload) >= IFINFOMSG.size:
                return IFINFOMSG.unpack_from(payload)[2]
        return None

    def _dump(self, kind: int, answer: int, ifindex: int) -> list[TcObject]:
        found = []
        for mtype, payload in self._request(kind, NLM_F_DUMP, TCMSG.pack(socket.AF_UNSPEC, ifindex, 0, 0, 0)):
            if mtype != answer or len(payload) < TCMSG.size:
                continue
            _family, index, handle, parent, _info = TCMSG.unpack_from(payload)
            if index != ifindex:
                continue  # a qdisc dump may hold every interface's
            attrs = _attrs(payload, TCMSG.size, len(payload))
            raw_kind = attrs.get(TCA_KIND)
            name = bytes(raw_kind).rstrip(b"\0").decode("ascii", "replace") if raw_kind is not None else ""
            found.append(TcObject(index, handle, parent, name, _options(name, attrs.get(TCA_OPTIONS)),
                                  _counters(attrs.get(TCA_STATS2))))
        return found

    def qdiscs(self, ifindex: int) -> list[TcObject]:
        return self._dump(RTM_GETQDISC, RTM_NEWQDISC, ifindex)

    def classes(self, ifindex: int) -> list[TcObject]:
        return self._dump(RTM_GETTCLASS, RTM_NEWTCLASS, ifindex)
