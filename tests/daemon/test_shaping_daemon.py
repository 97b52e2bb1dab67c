"""anabranchd shaping in the lab's gateway: the tree matches the published plan, restarts never
duplicate it, and `on_stop` decides whether it outlives the daemon."""

from __future__ import annotations

import signal

import pytest
from daemon_harness import VENV_BIN, daemon_config, start_daemon

pytestmark = [pytest.mark.root, pytest.mark.lab]


def shaping_config(tmp_path, on_stop="remove"):
    extra = ("[interfaces.wan0]\nrole = \"wan\"\nup_mbit = 20\ndown_mbit = 40\n\n"
             "[interfaces.lan0]\nrole = \"lan\"\n\n"
             f"[shaping]\non_stop = \"{on_stop}\"\n")
    return daemon_config(tmp_path, {}, extra)


def qdiscs(lab, ifname):
    return [line for line in lab.run("gw", "tc", "qdisc", "show", "dev", ifname).stdout.splitlines() if line]


def filters(lab, ifname):
    return lab.run("gw", "tc", "filter", "show", "dev", ifname, "egress").stdout


def test_classes_command_publishes_the_plan_the_kernel_has(lab, tmp_path):
    daemon = start_daemon(lab, shaping_config(tmp_path), tmp_path / "d.log")
    try:
        status = daemon.wait_ready()
        assert status["shaping"]["leaf_qdisc"] == "pfifo"
        with daemon.client() as client:
            reply = client.call("classes")
        links = {(link["iface"], link["direction"]): link for link in reply["shaping"]["links"]}
        # upload on the WAN port, download on the (single) LAN port at the WAN's down_mbit
        assert set(links) == {("wan0", "up"), ("lan0", "down")}
        up, down = links["wan0", "up"], links["lan0", "down"]
        assert up["shaped"] and down["shaped"] and down["link_mbit"] == 40 and down["link"] == "wan0"
        for row in up["classes"]:
            assert row["rate_bps"] == round(row["plan_rate_mbit"] * 1e6 / 8) * 8
            assert row["ceil_bps"] == round(row["plan_ceil_mbit"] * 1e6 / 8) * 8
        shown = lab.run("gw", "tc", "class", "show", "dev", "wan0").stdout
        assert "class htb 1:11 parent 1:1 leaf 11: prio 0 rate 100Kbit ceil 10Mbit" in shown
    finally:
        assert daemon.stop() == 0
    assert [line.split()[1] for line in qdiscs(lab, "wan0")] == ["noqueue"]  # on_stop = "remove"


def test_restart_after_kill_9_leaves_exactly_one_tree_and_one_set_of_filters(lab, tmp_path):
    config = shaping_config(tmp_path)
    first = start_daemon(lab, config, tmp_path / "first.log")
    first.wait_ready()
    before = qdiscs(lab, "wan0")
    first.stop(signal.SIGKILL)
    second = start_daemon(lab, config, tmp_path / "second.log")
    second.wait_ready()
    try:
        after = qdiscs(lab, "wan0")
        assert after == before
        assert sum(line.startswith("qdisc htb 1: root") for line in after) == 1
        assert sum(line.startswith("qdisc pfifo") for line in after) == 5
        assert sum(line.startswith("qdisc clsact") for line in after) == 1
        assert filters(lab, "wan0").count("anabranch_egress") == 1
        assert "change(s)" not in (tmp_path / "second.log").read_text()  # adopted, not rebuilt
    finally:
        assert second.stop() == 0


def test_on_stop_keep_leaves_shaping_in_place_for_the_next_start(lab, tmp_path):
    daemon = start_daemon(lab, shaping_config(tmp_path, on_stop="keep"), tmp_path / "d.log")
    daemon.wait_ready()
    before = qdiscs(lab, "wan0")
    assert daemon.stop() == 0
    after = qdiscs(lab, "wan0")
    assert [q for q in after if "clsact" not in q] == [q for q in before if "clsact" not in q]
    assert any(q.startswith("qdisc htb 1: root") for q in after)


def test_cleanup_after_kill_9_removes_the_tree(lab, tmp_path):
    config = shaping_config(tmp_path)
    daemon = start_daemon(lab, config, tmp_path / "d.log")
    daemon.wait_ready()
    daemon.stop(signal.SIGKILL)
    assert any(q.startswith("qdisc htb 1: root") for q in qdiscs(lab, "wan0"))
    result = lab.run("gw", str(VENV_BIN / "anabranchd"), "--cleanup", "--config", str(config), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for port in ("wan0", "lan0"):
        assert [line.split()[1] for line in qdiscs(lab, port)] == ["noqueue"]
