"""`anabranch classes` renders the daemon's `classes` reply."""

from __future__ import annotations

from anabranch.client.cli import show_shaping

REPLY = {
    "leaf_qdisc": "pfifo", "hysteresis": 0.05,
    "links": [
        {"iface": "wan0", "link": "wan0", "direction": "up", "link_mbit": 20, "shaped": True, "error": None,
         "classes": [{"name": "voice", "classid": "1:11", "priority": 3, "htb_prio": 0,
                      "plan_rate_mbit": 1.2, "plan_ceil_mbit": 10.0, "rate_bps": 1_200_000,
                      "ceil_bps": 10_000_000, "measured_bps": 950_000.0, "offered_bps": 1e6,
                      "sent_bytes": 2_500_000, "sent_packets": 100, "dropped": 3, "overlimits": 7,
                      "backlog_bytes": 0, "backlog_packets": 0}]},
        {"iface": "lan0", "link": "wan0", "direction": "down", "link_mbit": 40, "shaped": False,
         "error": "interface lan0: root qdisc tbf 8001: was not created by anabranch", "classes": []},
    ],
}


def test_classes_shows_each_link_and_each_class_with_its_counters():
    text = show_shaping(REPLY)
    assert "leaf qdisc: pfifo" in text
    assert "wan0 (wan0 up, 20 Mbit/s): shaped" in text
    voice = next(line for line in text.splitlines() if line.strip().startswith("voice"))
    assert "1:11" in voice and "1.2 Mbit/s" in voice and "10.0 Mbit/s" in voice and "2.5 MB" in voice
    assert voice.split()[-2:] == ["3", "7"]
    assert "lan0 (wan0 down, 40 Mbit/s): NOT shaped: interface lan0: root qdisc tbf 8001:" in text
