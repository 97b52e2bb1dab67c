"""Watch the kernel's link and address events (netlink) instead of polling interfaces.

The daemon polls this watcher's socket together with its ZeroMQ sockets, so an
interface that is created, deleted, renamed or set up/down is handled within
one poll.  A plain non-blocking netlink socket, parsed here: a library that
reads ahead into its own buffer would leave the descriptor quiet while events
wait, and the poll would never wake for them.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
from dataclasses import dataclass

log = logging.getLogger(__name__)

RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x1, 0x10, 0x100
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR = 16, 17, 20, 21
IFLA_IFNAME = 3
IFLA_OPERSTATE = 16
IF_OPER_UNKNOWN, IF_OPER_UP = 0, 6

_NLMSGHDR = struct.Struct("=IHHII")     # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")   # family, type, index, flags, change
_RTATTR = struct.Struct("=HH")          # len, type


@dataclass(frozen=True)
class LinkEvent:
    kind: str        # "new" (created, renamed or changed state), "del", "addr" (an address
                     # added or removed on ifindex), or "resync"
    ifindex: int
    name: str
    oper_up: bool


def parse(buffer: bytes) -> list[LinkEvent]:
    events = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(buffer):
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(buffer, offset)
        if length < _NLMSGHDR.size or offset + length > len(buffer):
            break
        if kind in (RTM_NEWADDR, RTM_DELADDR) and offset + _NLMSGHDR.size + 8 <= offset + length:
            # struct ifaddrmsg: family, prefixlen, flags, scope, index.
            (ifindex,) = struct.unpack_from("=I", buffer, offset + _NLMSGHDR.size + 4)
            events.append(LinkEvent("addr", ifindex, "", True))
        elif kind in (RTM_NEWLINK, RTM_DELLINK):
            body = offset + _NLMSGHDR.size
            _, _, ifindex, _, _ = _IFINFOMSG.unpack_from(buffer, body)
            name, oper = "", IF_OPER_UNKNOWN
            attr = body + _IFINFOMSG.size
            while attr + _RTATTR.size <= offset + length:
                alen, atype = _RTATTR.unpack_from(buffer, attr)
                if alen < _RTATTR.size:
                    break
                value = buffer[attr + _RTATTR.size: attr + alen]
                if atype == IFLA_IFNAME:
                    name = value.split(b"\0", 1)[0].decode(errors="replace")
                elif atype == IFLA_OPERSTATE and value:
                    oper = value[0]
                attr += (alen + 3) & ~3
            events.append(LinkEvent("new" if kind == RTM_NEWLINK else "del", ifindex, name,
                                    oper in (IF_OPER_UP, IF_OPER_UNKNOWN)))
        offset += (length + 3) & ~3
    return events


class LinkWatcher:
    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                                   | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self) -> list[LinkEvent]:
        """Every event pending on the socket (call when fileno() is readable)."""
        events: list[LinkEvent] = []
        while True:
            try:
                events += parse(self._sock.recv(1 << 16))
            except BlockingIOError:
                return events
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    # The kernel dropped events: the caller must look at every link again.
                    log.warning("link events overran the socket buffer; rescanning interfaces")
                    events.append(LinkEvent("resync", 0, "", False))
                    continue
                raise

    def close(self) -> None:
        self._sock.close()
