"""The datapath counts exactly: real traffic through the lab gateway, read via the daemon."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from lab import CLIENT_V4, SERVER_V4

pytestmark = [pytest.mark.root, pytest.mark.lab]

TRAFFIC = str(Path(__file__).resolve().parent.parent / "lab" / "traffic.py")


def settled_flows(daemon, match, want: int = 1, timeout_s: float = 15.0) -> list[dict]:
    """Flows matching `match` once their counters stopped changing for two ticks."""
    deadline = time.monotonic() + timeout_s
    previous = None
    stable = 0
    with daemon.client() as client:
        while time.monotonic() < deadline:
            flows = [f for f in client.call("flows", limit=1000)["flows"] if match(f)]
            snapshot = sorted((f["id"], f["packets_up"], f["packets_down"]) for f in flows)
            if len(flows) >= want and snapshot == previous:
                stable += 1
                if stable >= 2:
                    return flows
            else:
                stable = 0
            previous = snapshot
            time.sleep(0.6)
    raise AssertionError(f"no settled flows matching after {timeout_s} s: {previous}")


@pytest.fixture
def sinks(lab):
    server = lab.popen("srv", sys.executable, TRAFFIC, "serve")
    time.sleep(0.5)
    yield
    server.kill()
    server.wait(5)


def test_tcp_bytes_agree_with_the_senders_interface_counters(lab, gateway_daemon, sinks):
    before = lab.link_stats("cli", "up0")["tx_bytes"]
    lab.run("cli", sys.executable, TRAFFIC, "tcp", SERVER_V4[0], "--bytes", "30000000")
    sent = lab.link_stats("cli", "up0")["tx_bytes"] - before

    flows = settled_flows(gateway_daemon, lambda f: f["proto"] == "tcp" and f["dport"] == 9000)
    assert len(flows) == 1
    flow = flows[0]
    assert (flow["src"], flow["dst"], flow["iface"]) == (CLIENT_V4[0], SERVER_V4[0], "wan0")
    assert flow["bytes_up"] == pytest.approx(sent, rel=0.01)
    assert flow["bytes_up"] > 30_000_000
    assert flow["packets_down"] > 0  # the server's ACKs, counted at wan0 ingress


def test_udp_packets_are_counted_exactly(lab, gateway_daemon, sinks):
    lab.run("cli", sys.executable, TRAFFIC, "udp", SERVER_V4[0], "--packets", "500",
            "--pps", "2000", "--size", "160", "--source-port", "16390")
    flows = settled_flows(gateway_daemon, lambda f: f["proto"] == "udp" and f["sport"] == 16390)
    assert len(flows) == 1
    assert flows[0]["packets_up"] == 500
    # 160 payload + 8 UDP + 20 IPv4 + 14 Ethernet, as the kernel sees each skb
    assert flows[0]["bytes_up"] == 500 * (160 + 8 + 20 + 14)
    assert flows[0]["packets_down"] == 0


def test_ipv6_flows_are_counted(lab, gateway_daemon, sinks):
    lab.run("cli", "ping", "-6", "-c3", "-i0.2", "-W2", "fd72:1::2", check=False)  # neighbours
    lab.run("cli", sys.executable, TRAFFIC, "udp", "fd72:1::2", "--packets", "100",
            "--pps", "1000", "--size", "100", "--source-port", "16391")
    flows = settled_flows(gateway_daemon, lambda f: f["family"] == 6 and f["sport"] == 16391)
    assert flows[0]["src"] == "fd71:1::2" and flows[0]["dst"] == "fd72:1::2"
    assert flows[0]["packets_up"] == 100
    assert flows[0]["bytes_up"] == 100 * (100 + 8 + 40 + 14)


def test_both_subflows_of_an_mptcp_connection_appear_as_flows(lab, gateway_daemon, sinks):
    lab.run("cli", sys.executable, TRAFFIC, "mptcp", SERVER_V4[0], "--bytes", "40000000",
            "--rate-mbit", "200", timeout=60)
    flows = settled_flows(gateway_daemon, lambda f: f["proto"] == "tcp" and f["dport"] == 9001, want=2)
    by_iface = {f["iface"]: f for f in flows}
    assert set(by_iface) == {"wan0", "wan1"}
    assert by_iface["wan0"]["src"] == CLIENT_V4[0]
    assert by_iface["wan1"]["src"] == CLIENT_V4[1]
    assert all(f["bytes_up"] > 0 and f["packets_down"] > 0 for f in flows)
