"""Resource limits with a real anabranchd in the lab: a full flow map, an overrun ring buffer, a full disk.

A gateway meets all three sooner or later (a port scan through it, a burst of new
flows, logs filling /var); each must cost counting precision at worst, never the
daemon.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from daemon_harness import daemon_config, running_daemon, start_daemon
from lab import SERVER_V4

from anabranch.client import messages

pytestmark = [pytest.mark.root, pytest.mark.lab]

REPO = Path(__file__).resolve().parents[2]
TRAFFIC = REPO / "tests" / "lab" / "traffic.py"
PORTS = {"wan0": "wan", "wan1": "wan", "lan0": "lan", "lan1": "lan"}
MAP_SIZE = 4096
FLOOD = 20_000  # short UDP flows per flood: five times the map
# New flows per second.  A new flow in a full table takes the slot of a flow never
# answered among its two sets (the flood's own: its datagrams get no reply), else of
# the flow idle longest, so the established stream keeps its entry however slowly
# it sends (before, a burst delayed longer than a table's worth of inserts lost it).
FLOOD_RATE = 10_000


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def flood(lab, first_port: int, count: int = FLOOD, per_s: int = FLOOD_RATE) -> None:
    """`count` one-datagram UDP flows from the client, each to its own server port, at `per_s`."""
    lab.run("cli", sys.executable, "-c", textwrap.dedent(f"""
        import socket, time
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        started = time.monotonic()
        for n, port in enumerate(range({first_port}, {first_port + count})):
            s.sendto(b"flood", ("{SERVER_V4[0]}", port % 65536 or 1))
            if n % 100 == 99:
                time.sleep(max(0.0, started + n / {per_s} - time.monotonic()))
    """), timeout=120)


def wait_ticks(client, ticks: int = 2) -> dict:
    start = client.call("status")["daemon"]["ticks"]
    deadline = time.monotonic() + ticks * 3 + 5
    while time.monotonic() < deadline:
        status = client.call("status")
        if status["daemon"]["ticks"] >= start + ticks:
            return status
        time.sleep(0.2)
    raise AssertionError(f"the daemon did not tick {ticks} times")


def alerted(client, wanted: set[str], timeout_s: float = 20.0) -> set[str]:
    """Rules with an alert (active or resolved since) once all of `wanted` have one, or at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        rules = {a["rule"] for a in client.call("alerts.list", state="all")["alerts"]}
        if wanted <= rules or time.monotonic() > deadline:
            return rules
        time.sleep(0.5)


@pytest.fixture
def small_map_daemon(lab, tmp_path):
    config = daemon_config(tmp_path, PORTS)
    config.write_text(config.read_text().replace("[daemon]\n", f"[daemon]\nflow_map_size = {MAP_SIZE}\n", 1))
    with running_daemon(lab, config, tmp_path / "anabranchd.log") as daemon:
        yield daemon


def test_a_full_flow_map_keeps_counting_established_flows_with_bounded_memory(lab, small_map_daemon):
    sink = lab.popen("srv", sys.executable, str(TRAFFIC), "serve", stdout=subprocess.PIPE, text=True)
    daemon = small_map_daemon
    try:
        assert sink.stdout.readline().strip() == "serving"
        # One established TCP connection (paced, about 12 s) across both floods.
        payload = 12_000_000
        stream = lab.popen("cli", sys.executable, str(TRAFFIC), "tcp", SERVER_V4[0], "--bytes", str(payload),
                           "--rate-mbit", "8", stdout=subprocess.PIPE, text=True)
        with daemon.client() as client:
            before = wait_ticks(client, 1)
            flood(lab, 20_000)
            first = wait_ticks(client, 2)
            rss_first = rss_kib(daemon.process.pid)
            flood(lab, 40_000)
            second = wait_ticks(client, 2)
            rss_second = rss_kib(daemon.process.pid)
            sent = int(stream.stdout.read().strip())
            stream.wait(30)
            stream.stdout.close()
            assert sent == payload
            status = wait_ticks(client, 2)
            tcp = [f for f in client.call("flows", proto="tcp", limit=100)["flows"] if f["dport"] == 9000]
            raised = alerted(client, {"datapath_event_loss", "datapath_map_full"})
    finally:
        sink.kill()
        sink.wait()
        sink.stdout.close()

    # The table held at most its size throughout, and overflowed (the idle floods make room).
    for state in (first, second, status):
        assert MAP_SIZE // 2 < state["totals"]["flows"] <= MAP_SIZE
    # The established flow kept its entry: every payload byte was counted (plus headers).
    assert len(tcp) == 1 and payload <= tcp[0]["bytes_up"] < payload * 1.2
    # A second flood as big as the first costs no more memory: bounded by the map, not the flows.
    assert rss_second <= rss_first * 1.10, (rss_first, rss_second)
    # 10 000 new-flow and payload events a second overrun the 1 MiB ring buffer: counted.
    lost = status["datapath"]["events_lost"] - before["datapath"]["events_lost"]
    assert lost > 0 and status["datapath"]["errors"]["event_lost"] == status["datapath"]["events_lost"]
    # Both conditions are alerted (the map one after its 10 s `for`, so it is read from the stream).
    assert {"datapath_event_loss", "datapath_map_full"} <= raised
    assert daemon.process.poll() is None


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs as the daemon's state directory; filled with `fill()`, freed with `free()`."""
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0750", "abstate", str(state)], check=True)

    class Disk:
        path = state

        def fill(self) -> None:
            subprocess.run(["dd", "if=/dev/zero", f"of={state / 'filler'}", "bs=4k"], capture_output=True)

        def free(self) -> None:
            (state / "filler").unlink()
    try:
        yield Disk()
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def test_a_full_state_disk_refuses_changes_and_the_daemon_keeps_running(lab, tmp_path, full_disk):
    config = daemon_config(tmp_path, PORTS)
    daemon = start_daemon(lab, config, tmp_path / "anabranchd.log")
    try:
        daemon.wait_ready()
        with daemon.client() as client:
            client.call("rules.add", rule={"id": "before", "class": "file", "match": {"ports": [2222]}})
            full_disk.fill()
            reply = client.raw("rules.add", rule={"id": "during", "class": "file", "match": {"ports": [2223]}})
            assert reply["ok"] is False and reply["error"]["code"] == messages.E_UNAVAILABLE
            assert "No space left on device" in reply["error"]["message"]
            ids = [r["id"] for r in client.call("rules.list")["rules"]]
            assert "before" in ids and "during" not in ids  # refused means not applied either
            # Still ticking and answering while the disk stays full; the history's failure is alerted.
            ticks = client.call("status")["daemon"]["ticks"]
            status = wait_ticks(client, 3)
            assert status["daemon"]["ticks"] >= ticks + 3
            # The history fails once SQLite needs a new block: its write-ahead log reuses the
            # room it already has, so that can take a few ticks more than the policy file.
            deadline = time.monotonic() + 30
            while "history_write_failing" not in active_rules(client) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert "history_write_failing" in active_rules(client)
            full_disk.free()
            client.call("rules.add", rule={"id": "after", "class": "file", "match": {"ports": [2224]}})
            wait_ticks(client, 3)
            assert "history_write_failing" not in active_rules(client)
        assert daemon.process.poll() is None
    finally:
        daemon.stop()
    log = daemon.log.read_text()
    assert "cannot save the policy" in log and "history: writing again" in log
    assert log.count("database or disk is full") == 1     # logged once, not once per tick
    assert "controller tick failed" not in log
    assert '"after"' in (full_disk.path / "policy.json").read_text()


def active_rules(client) -> set[str]:
    return {a["rule"] for a in client.call("alerts.list")["alerts"]}
