"""The shaper's rtnetlink reader against what `tc -s -j` reports, and against bad bytes."""

from __future__ import annotations

import json
import re
import struct

import pytest
from lab import SERVER_V4

from anabranch.daemon import tcread
from anabranch.daemon.tcread import TcReader

TREE = [
    ("qdisc", "add", "dev", "wan0", "root", "handle", "1:", "htb", "default", "30"),
    ("class", "add", "dev", "wan0", "parent", "1:", "classid", "1:1", "htb", "rate", "40gbit", "ceil", "40gbit"),
    ("class", "add", "dev", "wan0", "parent", "1:1", "classid", "1:10", "htb", "rate", "3mbit", "ceil",
     "50mbit", "prio", "2"),
    ("class", "add", "dev", "wan0", "parent", "1:1", "classid", "1:30", "htb", "rate", "1mbit", "ceil",
     "35gbit", "prio", "5"),
    ("qdisc", "add", "dev", "wan0", "parent", "1:10", "handle", "10:", "pfifo", "limit", "77"),
]


@pytest.mark.root
@pytest.mark.lab
def test_the_reader_sees_what_tc_sees(lab):
    for command in TREE:
        lab.run("gw", "tc", *command)
    # Some packets through the default class, so the counters are not all zero.
    lab.run("cli", "ping", "-c", "5", "-i", "0.05", "-q", SERVER_V4[0], check=True)
    # The counters are read by tc, by the reader, then by tc again: a stray
    # packet meanwhile (IPv6 neighbour discovery or an MLD report of a new
    # port) moves them, so the reader's must lie between tc's two readings.
    tc_before = tc_class_show(lab, "wan0")
    reader = TcReader(lab.ns("gw"))
    try:
        ifindex = reader.ifindex("wan0")
        assert reader.ifindex("no-such-port") is None
        classes = {c.handle: c for c in reader.classes(ifindex)}
        qdiscs = {q.handle: q for q in reader.qdiscs(ifindex)}
    finally:
        reader.close()
    shown = json.loads(lab.run("gw", "ip", "-j", "link", "show", "wan0").stdout)
    assert ifindex == shown[0]["ifindex"]

    tc_classes = tc_class_show(lab, "wan0")
    assert {tcread_handle(h) for h in classes} == set(tc_classes) == set(tc_before)
    for handle, c in classes.items():
        theirs, earlier = tc_classes[tcread_handle(handle)], tc_before[tcread_handle(handle)]
        assert c.kind == "htb"
        assert (c.options["rate_Bps"] * 8, c.options["ceil_Bps"] * 8, c.options["prio"]) == theirs["rate_prio"]
        for key in ("sent_bytes", "sent_packets", "dropped", "overlimits"):
            assert earlier["counters"][key] <= c.counters[key] <= theirs["counters"][key], (handle, key)
    assert classes[0x1_0030].options["ceil_Bps"] == 35_000_000_000 // 8  # past 32 bits: the 64-bit attribute
    assert classes[0x1_0030].counters["sent_packets"] >= 5

    tc_qdiscs = {q["handle"]: q for q in json.loads(lab.run("gw", "tc", "-s", "-j", "qdisc", "show", "dev",
                                                            "wan0").stdout)}
    assert qdiscs[0x1_0000].kind == "htb" and qdiscs[0x1_0000].options["defcls"] == 0x30
    assert qdiscs[0x10_0000].kind == "pfifo" and qdiscs[0x10_0000].options == {"limit": 77}
    assert qdiscs[0x10_0000].parent == 0x1_0010
    assert {tcread_handle(h) for h in qdiscs} == set(tc_qdiscs)


UNITS = {"bit": 1, "Kbit": 10**3, "Mbit": 10**6, "Gbit": 10**9}


def tc_class_show(lab, ifname: str) -> dict[str, dict]:
    """classid -> rates and counters parsed from `tc -s class show` (Debian 12's tc prints no JSON for HTB)."""
    text = lab.run("gw", "tc", "-s", "class", "show", "dev", ifname).stdout
    found = {}
    for m in re.finditer(r"class htb (\S+) .*?(?:prio (\d+) )?rate (\d+)(\w+) ceil (\d+)(\w+).*?\n"
                         r"\s*Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)", text):
        found[m[1]] = {"rate_prio": (int(m[3]) * UNITS[m[4]], int(m[5]) * UNITS[m[6]], int(m[2] or 0)),
                       "counters": {"sent_bytes": int(m[7]), "sent_packets": int(m[8]), "dropped": int(m[9]),
                                    "overlimits": int(m[10])}}
    return found


def tcread_handle(handle: int) -> str:
    """A handle as `tc -j` prints it ("1:10", "10:")."""
    major, minor = handle >> 16, handle & 0xFFFF
    return f"{major:x}:{minor:x}" if minor else f"{major:x}:"


def test_a_truncated_or_overlong_attribute_ends_the_parse_without_an_exception():
    good = struct.pack("=HH", 8, tcread.TCA_KIND) + b"htb\0"
    overlong = struct.pack("=HH", 200, tcread.TCA_STATS2) + b"\0" * 8
    buf = memoryview(good + overlong)
    assert set(tcread._attrs(buf, 0, len(buf))) == {tcread.TCA_KIND}
    # Options and counters shorter than their structs are left out, not misread.
    assert tcread._options("htb", memoryview(struct.pack("=HH", 8, tcread.TCA_HTB_PARMS) + b"\0" * 4)) == {}
    assert tcread._options("pfifo", memoryview(b"\1\0")) == {}
    assert tcread._counters(memoryview(struct.pack("=HH", 8, tcread.TCA_STATS_QUEUE) + b"\0" * 4)) == {}
