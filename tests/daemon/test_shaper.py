"""HTB trees in the lab's gateway: read back equals plan, restarts adopt, failures keep the tree,
and guaranteed classes get their rate on a saturated uplink."""

from __future__ import annotations

import errno
import logging
import re
import threading
import time

import pytest
from lab import SERVER_V4
from pyroute2.netlink.exceptions import NetlinkError
from steering import (FILE_PORT, VIDEO_PORT, VOICE_PORT, iperf3_client, iperf3_received_mbit, iperf3_server,
                      steer_by_port, wire_sized_packets)

from anabranch.controller.allocate import allocate
from anabranch.controller.shaping import desired_tree
from anabranch.daemon.shaper import Shaper, ShapedLink, ShapingLedger

pytestmark = [pytest.mark.root, pytest.mark.lab]

UNITS = {"bit": 1, "Kbit": 1e3, "Mbit": 1e6, "Gbit": 1e9}


def tc_classes(lab, ifname: str) -> dict[str, tuple[int, int, int]]:
    """classid -> (rate, ceil, prio) parsed from `tc class show`: a reading independent of pyroute2."""
    out = lab.run("gw", "tc", "class", "show", "dev", ifname).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"class htb (\S+) .*?(?:prio (\d+) )?rate (\d+)(\w+) ceil (\d+)(\w+)", line)
        if m:
            found[m[1]] = (int(m[3]) * UNITS[m[4]], int(m[5]) * UNITS[m[6]], int(m[2] or 0))
    return found


def tc_qdiscs(lab, ifname: str) -> list[str]:
    return [line for line in lab.run("gw", "tc", "qdisc", "show", "dev", ifname).stdout.splitlines() if line]


@pytest.fixture
def shaper_for(lab, tmp_path):
    made = []

    def make(link_mbit=20.0, ledger="shaping.json"):
        shaper = Shaper([ShapedLink("wan0", "wan0", "up", link_mbit)], ShapingLedger.load(tmp_path / ledger),
                        netns=lab.ns("gw"))
        made.append(shaper)
        return shaper
    yield make
    for shaper in made:
        shaper.close()


def test_the_kernel_tree_after_start_equals_the_plan(lab, shaper_for):
    shaper = shaper_for()
    shaper.tick(0.0)
    plan = shaper.plans["wan0"]
    assert plan == allocate(20.0, {})
    want = desired_tree(plan, shaper.leaf_kind)
    assert shaper.read("wan0").tree == want
    # The same, as tc prints it.
    shown = tc_classes(lab, "wan0")
    assert set(shown) == {"1:1", "1:11", "1:12", "1:13", "1:14", "1:15"}
    for node in want.classes:
        handle = f"{node.classid >> 16:x}:{node.classid & 0xFFFF:x}"
        assert shown[handle][:2] == (node.rate_bps, node.ceil_bps)
    assert shaper.snapshot()["leaf_qdisc"] == "pfifo"  # this kernel has no cake, fq_codel or sfq


def test_a_restart_adopts_the_tree_and_never_duplicates_it(lab, shaper_for, caplog):
    first = shaper_for()
    first.tick(0.0)
    before = tc_qdiscs(lab, "wan0")
    first.stop("keep")
    second = shaper_for()  # same ledger
    with caplog.at_level(logging.INFO, logger="anabranch.daemon.shaper"):
        second.tick(0.0)
    assert tc_qdiscs(lab, "wan0") == before
    assert sum("htb 1: root" in line for line in before) == 1 and len(before) == 1 + 5
    assert not [r for r in caplog.records if "change(s)" in r.getMessage()]  # adopted as is
    # A lost ledger (runtime directory cleared): the tree is still recognised as ours.
    third = shaper_for(ledger="lost.json")
    third.tick(0.0)
    assert tc_qdiscs(lab, "wan0") == before
    assert third.stop("remove") == []
    assert [line.split()[1] for line in tc_qdiscs(lab, "wan0")] == ["noqueue"]


def test_a_changed_need_changes_classes_in_place(lab, shaper_for):
    shaper = shaper_for()
    shaper.tick(0.0)
    root_before = tc_qdiscs(lab, "wan0")
    shaper.tick(1.0, {"wan0": {"voice": 2.0, "file": 6.0}})
    assert shaper.read("wan0").tree == desired_tree(allocate(20.0, {"voice": 2.0, "file": 6.0}), "pfifo")
    assert tc_qdiscs(lab, "wan0") == root_before  # same qdiscs: nothing was rebuilt
    assert tc_classes(lab, "wan0")["1:11"][0] == 2_400_000


def test_a_foreign_root_qdisc_is_left_alone(lab, shaper_for):
    lab.run("gw", "tc", "qdisc", "add", "dev", "wan0", "root", "handle", "8001:", "tbf",
            "rate", "10mbit", "burst", "10kb", "latency", "50ms")
    shaper = shaper_for()
    shaper.tick(0.0)
    assert "tbf 8001:" in shaper.errors["wan0"] and "not created by anabranch" in shaper.errors["wan0"]
    assert "tbf" in tc_qdiscs(lab, "wan0")[0]
    assert shaper.stop("remove") == []
    assert "tbf" in tc_qdiscs(lab, "wan0")[0]


def test_a_failed_netlink_call_is_logged_with_the_class_and_the_tree_stays(lab, shaper_for, caplog,
                                                                           monkeypatch):
    shaper = shaper_for()
    shaper.tick(0.0)
    applied = shaper.plans["wan0"]
    real = shaper._do

    def refuse_voice(ifindex, change):
        if change.op == "change-class" and change.node.name == "voice":
            raise NetlinkError(errno.EINVAL, "refused")
        real(ifindex, change)
    monkeypatch.setattr(shaper, "_do", refuse_voice)
    with caplog.at_level(logging.ERROR, logger="anabranch.daemon.shaper"):
        shaper.tick(1.0, {"wan0": {"voice": 3.0}})
    assert any("interface wan0: change-class voice 1:11" in r.getMessage() for r in caplog.records)
    assert shaper.plans["wan0"] == applied
    assert shaper.read("wan0").tree == desired_tree(applied, "pfifo")  # rolled back, background included
    assert "wan0" in shaper.errors


def test_voice_and_video_keep_their_rate_on_an_uplink_saturated_by_file(lab, shaper_for):
    wire_sized_packets(lab)
    shaper = shaper_for(20.0)
    shaper.tick(time.monotonic())
    steer_by_port(lab, "wan0", {VOICE_PORT: "voice", VIDEO_PORT: "video", FILE_PORT: "file"})
    servers = [iperf3_server(lab, port) for port in (FILE_PORT, VOICE_PORT, VIDEO_PORT)]
    stop = threading.Event()

    peak: dict[str, float] = {}

    def ticks():  # what the daemon's tick loop does, once a second
        while not stop.wait(1.0):
            shaper.tick(time.monotonic())
            for c in shaper.plans["wan0"].classes:
                peak[c.name] = max(peak.get(c.name, 0.0), c.rate_mbit)
    ticker = threading.Thread(target=ticks, daemon=True)
    ticker.start()
    try:
        bulk = iperf3_client(lab, SERVER_V4[0], FILE_PORT, 12)
        time.sleep(3)  # let the bulk flow fill the uplink first
        # Measured after the first 2 s: until its first tick a new flow only borrows.
        voice = iperf3_client(lab, SERVER_V4[0], VOICE_PORT, 6, udp_mbit=1.0, length=200, omit_s=2)
        video = iperf3_client(lab, SERVER_V4[0], VIDEO_PORT, 6, udp_mbit=6.0, length=1200, omit_s=2)
        voice_mbit = iperf3_received_mbit(voice)
        video_mbit = iperf3_received_mbit(video)
        bulk_mbit = iperf3_received_mbit(bulk)
    finally:
        stop.set()
        ticker.join()
        for server in servers:
            server.kill()
            server.wait()
    plan = shaper.plans["wan0"].by_name()
    drops = {c["name"]: c["dropped"] for c in shaper.snapshot()["links"][0]["classes"]}
    detail = (f"voice {voice_mbit:.2f}, video {video_mbit:.2f}, bulk {bulk_mbit:.2f} Mbit/s; "
              f"drops {drops}; peak plan {peak}")
    print(detail)
    # Guaranteed: priority 3 gets its need plus headroom, never below its minimum.
    assert voice_mbit >= 0.9 * 1.0, detail
    assert video_mbit >= 0.9 * 6.0, detail
    assert peak["video"] >= 5.0 and peak["voice"] >= 1.0, detail  # need 1 Mbit/s + 20 % headroom
    # The uplink was saturated: bulk filled what the others left (the shaper is the bottleneck).
    assert bulk_mbit <= 20.0 and bulk_mbit >= 8.0, detail
