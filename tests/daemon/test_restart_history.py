"""kill -9 under traffic, then a restart: the history database is intact and continuous but
for the gap, alerts that were active stay active (same alert, same raise time), and no
usage that a finished tick counted is lost."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_harness import daemon_config, start_daemon
from lab import SERVER_V4

pytestmark = [pytest.mark.root, pytest.mark.lab]

REPO = Path(__file__).resolve().parents[2]
TRAFFIC = REPO / "tests" / "lab" / "traffic.py"
# wan9 never exists: its link_down alert is raised at the first tick and stays active.
PORTS = {"wan0": "wan", "wan1": "wan", "lan0": "lan", "lan1": "lan", "wan9": "wan"}


def history_seconds(db: Path, start: float, end: float) -> list[int]:
    """The seconds with a tick's row (the `total.flows` point every tick writes) in [start, end]."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return [t for (t,) in conn.execute(
            "SELECT DISTINCT t FROM series WHERE level = 0 AND kind = 'total' AND metric = 'flows' "
            "AND t >= ? AND t <= ? ORDER BY t", (int(start), int(end)))]


def ticks_and_alert(daemon, count: int) -> tuple[dict, dict]:
    """After `count` more ticks: the status and the active link_down alert for wan9."""
    with daemon.client() as client:
        start = client.call("status")["daemon"]["ticks"]
        deadline = time.monotonic() + count * 2 + 10
        while time.monotonic() < deadline:
            status = client.call("status")
            if status["daemon"]["ticks"] >= start + count:
                break
            time.sleep(0.1)
        alerts = client.call("alerts.list")["alerts"]
    down = [a for a in alerts if a["rule"] == "link_down" and a["subject"] == "wan9"]
    assert len(down) == 1, alerts
    return status, down[0]


def test_kill_9_keeps_the_history_continuous_but_for_the_gap_and_active_alerts_active(lab, tmp_path):
    config = daemon_config(tmp_path, PORTS)
    db = tmp_path / "state" / "history.db"
    sink = lab.popen("srv", sys.executable, str(TRAFFIC), "serve", stdout=subprocess.PIPE, text=True)
    sender = None
    try:
        assert sink.stdout.readline().strip() == "serving"
        sender = lab.popen("cli", sys.executable, str(TRAFFIC), "udp", SERVER_V4[0], "--packets", "0",
                           "--pps", "200", stdout=subprocess.DEVNULL)
        first = start_daemon(lab, config, tmp_path / "first.log")
        first_ready = time.time()
        first.wait_ready()
        status, alert = ticks_and_alert(first, 4)
        killed_after = status["daemon"]["ticks"]
        with first.client() as client:
            # Served between ticks: every tick it reflects has finished its history write.
            counted = {h["host"]: h["day_up"] + h["day_down"] for h in client.call("usage")["hosts"]}
        first.stop(signal.SIGKILL)
        killed_at = time.time()
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            saved = {a: up + down for a, up, down in conn.execute("SELECT address, day_up, day_down FROM usage")}

        second = start_daemon(lab, config, tmp_path / "second.log")
        try:
            second.wait_ready()
            restarted_at = time.time()
            status, again = ticks_and_alert(second, 4)
            second_ticks = status["daemon"]["ticks"]
        finally:
            assert second.stop() == 0
        stopped_at = time.time()
    finally:
        for proc in filter(None, (sender, sink)):
            proc.kill()
            proc.wait()
        sink.stdout.close()

    assert counted and max(counted.values()) > 0, counted
    for host, total in counted.items():
        assert saved.get(host, 0) >= total, (host, total, saved)
    # The same alert, not a new one raised again.
    assert (again["id"], again["raised_at"]) == (alert["id"], alert["raised_at"])
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    before = history_seconds(db, first_ready, killed_at)
    after = history_seconds(db, int(killed_at) + 1, stopped_at)   # the new daemon starts seconds later
    # Every tick the killed daemon finished is there (its last may have been cut mid-write).
    assert len(before) >= killed_after - 1
    # Continuous within each run (a tick is 1 s; 2 allows for scheduling jitter) ...
    for run in (before, after):
        assert max(b - a for a, b in zip(run, run[1:])) <= 2, run
    assert len(after) >= second_ticks - 1
    # ... and the one gap is the restart.
    assert after[0] - before[-1] <= (restarted_at - killed_at) + 3
