"""The daemon's lifecycle: clean stop, restart without duplicates, late interfaces, bad config."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from daemon_harness import VENV_BIN, daemon_config, start_daemon

pytestmark = [pytest.mark.root, pytest.mark.lab]

PORTS = ("wan0", "wan1", "lan0", "lan1")


def tc_state(lab, ifname: str) -> tuple[str, str, str]:
    qdiscs = lab.run("gw", "tc", "qdisc", "show", "dev", ifname).stdout
    ingress = lab.run("gw", "tc", "filter", "show", "dev", ifname, "ingress").stdout
    egress = lab.run("gw", "tc", "filter", "show", "dev", ifname, "egress").stdout
    return qdiscs, ingress, egress


def test_sigterm_removes_every_filter_and_the_clsact_it_created(lab, gateway_daemon):
    for port in PORTS:
        qdiscs, ingress, egress = tc_state(lab, port)
        assert "clsact" in qdiscs and "anabranch_ingress" in ingress and "anabranch_egress" in egress
    assert gateway_daemon.stop(signal.SIGTERM) == 0
    for port in PORTS:
        qdiscs, ingress, egress = tc_state(lab, port)
        assert "clsact" not in qdiscs and not ingress.strip() and not egress.strip()


def test_a_clsact_someone_else_created_is_left_in_place(lab, tmp_path):
    lab.run("gw", "tc", "qdisc", "add", "dev", "wan0", "clsact")
    daemon = start_daemon(lab, daemon_config(tmp_path, {"wan0": "wan"}), tmp_path / "d.log")
    daemon.wait_ready()
    assert daemon.stop() == 0
    qdiscs, ingress, egress = tc_state(lab, "wan0")
    assert "clsact" in qdiscs and "anabranch" not in ingress + egress


def test_restart_after_kill_9_leaves_exactly_one_filter_per_hook(lab, tmp_path):
    config = daemon_config(tmp_path, {"wan0": "wan", "lan0": "lan"})
    first = start_daemon(lab, config, tmp_path / "first.log")
    first.wait_ready()
    first.stop(signal.SIGKILL)
    second = start_daemon(lab, config, tmp_path / "second.log")
    second.wait_ready()
    try:
        for port in ("wan0", "lan0"):
            qdiscs, ingress, egress = tc_state(lab, port)
            assert qdiscs.count("clsact") == 1
            assert ingress.count("anabranch_ingress") == 1 and egress.count("anabranch_egress") == 1
    finally:
        assert second.stop() == 0
    # The second instance inherited the first one's clsact through the ledger.
    assert "clsact" not in tc_state(lab, "wan0")[0]


def test_cleanup_removes_what_a_killed_daemon_left(lab, tmp_path):
    config = daemon_config(tmp_path, {"wan0": "wan"})
    daemon = start_daemon(lab, config, tmp_path / "d.log")
    daemon.wait_ready()
    daemon.stop(signal.SIGKILL)
    assert "anabranch" in tc_state(lab, "wan0")[1]
    lab.run("gw", str(VENV_BIN / "anabranchd"), "--config", str(config), "--cleanup")
    qdiscs, ingress, egress = tc_state(lab, "wan0")
    assert "clsact" not in qdiscs and not ingress.strip()


def test_an_interface_missing_at_start_is_attached_when_it_appears(lab, tmp_path):
    config = daemon_config(tmp_path, {"wan0": "wan", "wan9": "wan"})
    daemon = start_daemon(lab, config, tmp_path / "d.log")
    try:
        status = daemon.wait_ready()
        attached = {i["name"]: i["attached"] for i in status["interfaces"]}
        assert attached == {"wan0": True, "wan9": False}
        lab.run("gw", "ip", "link", "add", "wan9", "type", "veth", "peer", "name", "wan9p")
        deadline = time.monotonic() + 10
        with daemon.client() as client:
            while time.monotonic() < deadline:
                status = client.call("status")
                if all(i["attached"] for i in status["interfaces"]):
                    break
                time.sleep(0.3)
        assert all(i["attached"] for i in status["interfaces"])
        assert "anabranch_egress" in tc_state(lab, "wan9")[2]
    finally:
        assert daemon.stop() == 0


def test_check_config_names_the_key_and_exits_non_zero(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[interfaces.wan0]\nrole = "wan"\nup_mbit = "fast"\n')
    result = subprocess.run([str(VENV_BIN / "anabranchd"), "--config", str(bad), "--check-config"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert 'interfaces.wan0.up_mbit: must be a positive number, got "fast"' in result.stderr
    good = daemon_config(tmp_path, {"wan0": "wan"})
    result = subprocess.run([str(VENV_BIN / "anabranchd"), "--config", str(good), "--check-config"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_dump_ebpf_shows_source_cflags_and_header(tmp_path):
    config = daemon_config(tmp_path, {"wan0": "wan"})
    out = subprocess.run([str(VENV_BIN / "anabranchd"), "--config", str(config), "--dump-ebpf"],
                         capture_output=True, text=True, check=True).stdout
    assert "// cflags: -I" in out and "-DAB_FLOW_MAP_SIZE=65536" in out
    assert "struct ab_flow_key" in out and "int ab_egress" in out


def test_the_cli_says_when_the_daemon_is_not_running(tmp_path):
    result = subprocess.run([str(VENV_BIN / "anabranch"), "--timeout", "0.3",
                             "--control", f"ipc://{tmp_path}/none.sock", "status"],
                            capture_output=True, text=True)
    assert result.returncode == 3
    assert "is anabranchd running?" in result.stderr


def wait_for(daemon, predicate, timeout_s: float = 2.0) -> dict:
    """The first status satisfying `predicate` within `timeout_s`, else fail with the last."""
    deadline = time.monotonic() + timeout_s
    with daemon.client() as client:
        while True:
            status = client.call("status")
            if predicate(status) or time.monotonic() > deadline:
                return status
            time.sleep(0.05)


def iface(status: dict, name: str) -> dict:
    return next(i for i in status["interfaces"] if i["name"] == name)


def test_a_wan_link_deleted_recreated_renamed_and_flapped_is_followed_within_2_s(lab, tmp_path):
    lab.run("gw", "ip", "link", "add", "wan7", "type", "veth", "peer", "name", "wan7p")
    lab.run("gw", "ip", "link", "set", "wan7", "up")
    lab.run("gw", "ip", "link", "set", "wan7p", "up")
    daemon = start_daemon(lab, daemon_config(tmp_path, {"wan7": "wan"}), tmp_path / "d.log")
    try:
        assert iface(daemon.wait_ready(), "wan7")["attached"]

        lab.run("gw", "ip", "link", "del", "wan7")
        status = wait_for(daemon, lambda s: not iface(s, "wan7")["attached"])
        assert not iface(status, "wan7")["attached"]
        assert status["link_changes"][-1]["change"] == "deleted"

        lab.run("gw", "ip", "link", "add", "wan7", "type", "veth", "peer", "name", "wan7p")
        status = wait_for(daemon, lambda s: iface(s, "wan7")["attached"])
        assert iface(status, "wan7")["attached"]
        assert "anabranch_egress" in tc_state(lab, "wan7")[2]

        lab.run("gw", "ip", "link", "set", "wan7", "name", "old7")
        status = wait_for(daemon, lambda s: not iface(s, "wan7")["attached"])
        assert status["link_changes"][-1]["change"] == "renamed to old7"
        assert "anabranch" not in tc_state(lab, "old7")[2]  # our filters left with the name

        lab.run("gw", "ip", "link", "set", "old7", "name", "wan7")
        lab.run("gw", "ip", "link", "set", "wan7", "up")
        lab.run("gw", "ip", "link", "set", "wan7p", "up")
        status = wait_for(daemon, lambda s: iface(s, "wan7")["attached"] and iface(s, "wan7")["oper_up"])
        assert iface(status, "wan7")["oper_up"] is True

        lab.run("gw", "ip", "link", "set", "wan7p", "down")
        status = wait_for(daemon, lambda s: iface(s, "wan7")["oper_up"] is False)
        assert iface(status, "wan7")["oper_up"] is False and iface(status, "wan7")["attached"]
    finally:
        assert daemon.stop() == 0
    assert "clsact" not in tc_state(lab, "wan7")[0]
