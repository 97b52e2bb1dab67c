"""The controller in the real daemon on the lab gateway: MPTCP connections with both
subflows, the controller's classes reaching the kernel, NATed flows under their LAN
hosts, link alerts, the history database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_harness import daemon_config, start_daemon
from lab import CLIENT_V4, GATEWAY_WAN_V4, SERVER_V4

pytestmark = [pytest.mark.root, pytest.mark.lab]

TRAFFIC = Path(__file__).resolve().parents[1] / "lab" / "traffic.py"
INTERFACES = {"lan0": "lan", "lan1": "lan", "wan0": "wan", "wan1": "wan"}


def wait_for(predicate, timeout_s: float = 20.0, every_s: float = 0.3):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every_s)


def sink_flow(client):
    """The flow to the lab server's sink port 9000 once it has carried some packets, else None."""
    for f in client.call("flows", limit=1000)["flows"]:
        if f["dport"] == 9000 and f["packets_up"] > 10:
            return f
    return None


@pytest.fixture
def running(lab, tmp_path):
    daemon = start_daemon(lab, daemon_config(tmp_path, INTERFACES), tmp_path / "d.log")
    server = lab.popen("srv", sys.executable, str(TRAFFIC), "serve")
    try:
        daemon.wait_ready()
        yield lab, daemon, tmp_path
    finally:
        server.terminate()
        server.wait(10)
        assert daemon.stop() == 0


def test_the_tick_runs_under_sched_rr_and_nothing_else_does(running):
    _, daemon, _ = running
    pid = daemon.process.pid
    with daemon.client() as client:
        assert wait_for(lambda: client.call("status")["daemon"]["tick_realtime"])
    # Between ticks (most of each second), where the API is served: the normal scheduler.
    samples = []
    for _ in range(50):
        samples.append(os.sched_getscheduler(pid) & ~os.SCHED_RESET_ON_FORK)
        time.sleep(0.02)
    assert samples.count(os.SCHED_OTHER) >= 40 and set(samples) <= {os.SCHED_OTHER, os.SCHED_RR}
    others = [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir() if int(task.name) != pid]
    # ZeroMQ's, SQLite's checkpointer, onnxruntime's: the normal scheduler.
    assert others and {os.sched_getscheduler(tid) for tid in others} == {os.SCHED_OTHER}


def test_an_mptcp_connection_is_listed_with_a_subflow_on_each_path(running):
    lab, daemon, _ = running
    sender = lab.popen("cli", sys.executable, str(TRAFFIC), "mptcp", SERVER_V4[0], "--bytes", "40000000",
                       "--rate-mbit", "40")
    try:
        with daemon.client() as client:
            def connection():
                for conn in client.call("mptcp")["connections"]:
                    if conn["known"] and {s["iface"] for s in conn["subflows"]} == {"wan0", "wan1"}:
                        return conn
                return None
            conn = wait_for(connection)
            assert conn is not None, client.call("mptcp")
            assert len(conn["tokens"]) == 2 and conn["version"] == 1
            roles = sorted(s["role"] for s in conn["subflows"])
            assert roles == ["initial", "join"]
            assert all(s["remote_port"] == 9001 for s in conn["subflows"])
            # Both subflows carry the connection's class (the join by token).
            flows = client.call("flows", limit=1000)["flows"]
            ids = {s["flow_id"] for s in conn["subflows"]}
            classes = {f["class"] for f in flows if f["id"] in ids}
            assert classes == {conn["class"]}
    finally:
        sender.wait(60)


def test_an_api_rule_classifies_new_flows_in_the_kernel(running):
    lab, daemon, _ = running
    with daemon.client() as client:
        client.call("rules.add", rule={"id": "sink", "class": "video", "match": {"proto": "tcp", "ports": [9000]}})
        time.sleep(2.5)        # the next tick compiles it into the kernel's port map
        lab.run("cli", sys.executable, str(TRAFFIC), "tcp", SERVER_V4[0], "--bytes", "2000000", timeout=30)

        found = wait_for(lambda: sink_flow(client))
        assert found is not None
        assert found["class"] == "video" and found["reason"] == "api:sink"
        assert found["kernel_class"] == "video"          # the rule reached the datapath's port map


def test_the_kernel_marks_the_first_matching_rule_of_a_port_and_a_prefix_rule(running):
    """A port rule listed before a prefix rule that also matches: the controller takes
    the port rule, and so does the kernel from the flow's first packet (each rule's
    place in the list is its rank in the kernel's maps)."""
    lab, daemon, _ = running
    with daemon.client() as client:
        client.call("rules.add", rule={"id": "sink", "class": "video", "match": {"proto": "tcp", "ports": [9000]}})
        client.call("rules.add", rule={"id": "server", "class": "file", "match": {"cidrs": [f"{SERVER_V4[0]}/32"]}})
        time.sleep(2.5)        # the next tick compiles both into the kernel's maps
        sender = lab.popen("cli", sys.executable, str(TRAFFIC), "tcp", SERVER_V4[0], "--bytes", "30000000",
                           "--rate-mbit", "20")
        try:
            found = wait_for(lambda: sink_flow(client))
            assert found is not None
            assert found["class"] == "video" and found["reason"] == "api:sink"
            assert found["kernel_class"] == "video"          # at first sight: no correction needed
            time.sleep(2.5)
            assert sink_flow(client)["kernel_class"] == "video"
        finally:
            sender.wait(60)


@pytest.fixture
def nat(running):
    """nftables address translation on the lab gateway: what a home or office gateway does."""
    lab = running[0]
    lab.run("gw", "nft", "add table ip ab_test_nat")
    try:
        yield lambda rules: lab.run("gw", "nft", rules)
    finally:
        lab.run("gw", "nft", "delete table ip ab_test_nat")


def test_a_masqueraded_flow_counts_under_the_lan_host_behind_the_gateway(running, nat):
    """tc egress runs after source NAT: the datapath sees the gateway's WAN address, and
    the daemon maps the flow back to the client from conntrack."""
    lab, daemon, _ = running
    nat('add chain ip ab_test_nat post { type nat hook postrouting priority srcnat; }; '
        'add rule ip ab_test_nat post oifname { "wan0", "wan1" } masquerade')
    with daemon.client() as client:
        lab.run("cli", sys.executable, str(TRAFFIC), "tcp", SERVER_V4[0], "--bytes", "3000000", timeout=30)
        found = wait_for(lambda: sink_flow(client))
        assert found is not None
        assert (found["src"], found["dst"], found["iface"]) == (CLIENT_V4[0], SERVER_V4[0], "wan0")
        assert found["nat"]["src"] == GATEWAY_WAN_V4[0]         # what the server and the datapath saw
        assert found["bytes_up"] > 3_000_000
        hosts = wait_for(lambda: {h["host"]: h for h in client.call("usage")["hosts"]
                                  if h["host"] == CLIENT_V4[0] and h["day_up"] > 3_000_000})
        assert hosts, client.call("usage")
        assert GATEWAY_WAN_V4[0] not in {h["host"] for h in client.call("usage")["hosts"]}
        nat_state = client.call("status")["daemon"]["nat"]
        assert nat_state["following"] and nat_state["connections"] >= 1 and nat_state["resyncs"] == 1
        assert nat_state["error"] is None


def test_a_port_forwarded_flow_counts_under_the_lan_host_it_reaches(running, nat):
    """Destination NAT: the server dials the gateway's WAN address, which forwards to the client."""
    lab, daemon, _ = running
    nat('add chain ip ab_test_nat pre { type nat hook prerouting priority dstnat; }; '
        f'add rule ip ab_test_nat pre iifname "wan0" tcp dport 9300 dnat to {CLIENT_V4[0]}:9000')
    sink = lab.popen("cli", sys.executable, str(TRAFFIC), "serve", stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout.readline().strip() == "serving"
        with daemon.client() as client:
            lab.run("srv", sys.executable, str(TRAFFIC), "tcp", GATEWAY_WAN_V4[0], "--port", "9300",
                    "--bytes", "2000000", timeout=30)

            def forwarded():
                return next((f for f in client.call("flows", limit=1000)["flows"]
                             if f["sport"] == 9000 and f["packets_down"] > 10), None)
            found = wait_for(forwarded)
            assert found is not None, client.call("flows", limit=1000)
            assert (found["src"], found["dst"], found["iface"]) == (CLIENT_V4[0], SERVER_V4[0], "wan0")
            assert found["nat"] == {"src": GATEWAY_WAN_V4[0], "sport": 9300}
            assert found["bytes_down"] > 2_000_000
    finally:
        sink.terminate()
        sink.wait(10)
        sink.stdout.close()


def test_the_gateways_own_traffic_is_marked_as_the_gateways_in_usage(running):
    lab, daemon, _ = running
    with daemon.client() as client:
        lab.run("gw", sys.executable, str(TRAFFIC), "tcp", SERVER_V4[0], "--bytes", "1000000", timeout=30)
        lab.run("cli", sys.executable, str(TRAFFIC), "tcp", SERVER_V4[0], "--bytes", "1000000", timeout=30)

        def hosts():
            found = {h["host"]: h for h in client.call("usage")["hosts"]}
            return found if {GATEWAY_WAN_V4[0], CLIENT_V4[0]} <= set(found) else None
        found = wait_for(hosts)
        assert found is not None, client.call("usage")
        assert found[GATEWAY_WAN_V4[0]]["gateway"] is True
        assert found[CLIENT_V4[0]]["gateway"] is False


def test_a_link_going_down_raises_an_alert_that_resolves_when_it_is_back(running):
    lab, daemon, _ = running
    with daemon.client() as client:
        lab.run("gw", "ip", "link", "set", "wan1", "down")

        def active():
            return [a for a in client.call("alerts.list")["alerts"] if a["rule"] == "link_down"]
        raised = wait_for(active, timeout_s=10)
        assert raised and raised[0]["subject"] == "wan1" and raised[0]["severity"] == "critical"
        lab.run("gw", "ip", "link", "set", "wan1", "up")
        assert wait_for(lambda: not active(), timeout_s=10)
        resolved = [a for a in client.call("alerts.list", state="all")["alerts"]
                    if a["rule"] == "link_down" and a["state"] == "resolved"]
        assert resolved and resolved[0]["id"] == raised[0]["id"]


def test_history_is_written_each_tick(running):
    _, daemon, tmp_path = running
    time.sleep(3)
    db = sqlite3.connect(tmp_path / "state" / "history.db")
    try:
        kinds = {row[0] for row in db.execute("SELECT DISTINCT kind FROM series")}
        ticks = db.execute("SELECT COUNT(DISTINCT t) FROM series WHERE level = 0").fetchone()[0]
    finally:
        db.close()
    assert {"total", "class", "link"} <= kinds and ticks >= 2


def test_predictions_are_published_per_class_and_link_from_the_model(running):
    lab, daemon, _ = running
    from anabranch.client import Subscriber

    sender = lab.popen("cli", sys.executable, str(TRAFFIC), "tcp", SERVER_V4[0], "--bytes", "75000000",
                       "--rate-mbit", "20")
    subscriber = Subscriber(daemon.events, topics=("predictions",))
    try:
        body = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = subscriber.receive(timeout_s=2)
            if got and got[1]["available"]:
                body = got[1]
                up = next(link for link in body["links"] if link["name"] == "wan0")["up"]
                # Past the cold start (the model answers) while the transfer runs.
                if not up["fallback"] and up["now_mbit"] > 5:
                    break
        assert body is not None
        assert body["method"] == "onnx"
        assert {c["name"] for c in body["classes"]} == {"voice", "video", "interactive", "file", "background"}
        wan0 = next(link for link in body["links"] if link["name"] == "wan0")
        assert wan0["next_1s_mbit"] > 0 and 0 <= wan0["confidence"] <= 100
        assert wan0["up"]["h5"]["p10"] <= wan0["up"]["h5"]["p50"] <= wan0["up"]["h5"]["p90"]
    finally:
        subscriber.close()
        sender.wait(60)
