"""Parsing of netlink link messages, from bytes built here (no root)."""

import struct

from anabranch.daemon.links import IF_OPER_UP, RTM_DELLINK, RTM_NEWLINK, parse


def message(kind: int, ifindex: int, name: str, oper: int | None = None) -> bytes:
    attrs = b""
    raw_name = name.encode() + b"\0"
    attrs += struct.pack("=HH", 4 + len(raw_name), 3) + raw_name + b"\0" * (-len(raw_name) % 4)
    if oper is not None:
        attrs += struct.pack("=HHB3x", 5, 16, oper)
    body = struct.pack("=BxHiII", 0, 1, ifindex, 0, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_new_and_deleted_links_with_name_and_state():
    events = parse(message(RTM_NEWLINK, 7, "wan0", IF_OPER_UP) + message(RTM_DELLINK, 8, "lan1", 2))
    assert [(e.kind, e.ifindex, e.name, e.oper_up) for e in events] == [
        ("new", 7, "wan0", True), ("del", 8, "lan1", False)]


def test_other_messages_and_truncated_buffers_are_ignored():
    other = message(RTM_NEWLINK, 1, "x")[:4] + struct.pack("=H", 20) + message(RTM_NEWLINK, 1, "x")[6:]
    assert parse(other) == []
    assert parse(message(RTM_NEWLINK, 3, "wan1")[:10]) == []
