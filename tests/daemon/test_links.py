"""Parsing of netlink link and address messages, from bytes built here (no root), and the
watcher on a real namespace (root)."""

import struct
import sys

import pytest

from anabranch.daemon.links import IF_OPER_UP, RTM_DELADDR, RTM_DELLINK, RTM_NEWADDR, RTM_NEWLINK, parse


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
    other = message(RTM_NEWLINK, 1, "x")[:4] + struct.pack("=H", 24) + message(RTM_NEWLINK, 1, "x")[6:]
    assert parse(other) == []
    assert parse(message(RTM_NEWLINK, 3, "wan1")[:10]) == []


def address_message(kind: int, ifindex: int) -> bytes:
    body = struct.pack("=BBBBI", 2, 24, 0, 0, ifindex) + struct.pack("=HH4s", 8, 1, bytes([10, 0, 0, 1]))
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_address_changes_are_reported_with_their_interface():
    events = parse(address_message(RTM_NEWADDR, 4) + address_message(RTM_DELADDR, 5))
    assert [(e.kind, e.ifindex) for e in events] == [("addr", 4), ("addr", 5)]


@pytest.mark.root
@pytest.mark.lab
def test_the_watcher_reports_an_address_added_in_its_namespace(lab):
    script = """
import subprocess, time
from anabranch.daemon.links import LinkWatcher
watcher = LinkWatcher()
subprocess.run(["ip", "addr", "add", "10.72.1.9/24", "dev", "wan0"], check=True)
time.sleep(0.3)
print(" ".join(sorted({e.kind for e in watcher.read()})))
"""
    # The address's event; a link event may come with it (the lab's ports settling under load).
    assert "addr" in lab.run("gw", sys.executable, "-c", script).stdout.split()
