"""API benchmark: command round trip while 10 000 flows stream, and the cost of publishing them.

cmd_rtt_p99_ms: `status` round trips (p50/p99) from a client to a fake daemon in
its own process that ticks every second with 10 000 flows (10 % of them moving),
publishing all of them on `flows` to a subscriber (its own process) that reads everything.  Ticks
run between commands as in anabranchd, so p99 includes waiting behind a tick.
publish_10k_flows_ms: mean time of one tick's publishing (every topic; flows as
snapshot or delta) in-process, with 10 % of flows moving; the snapshot and
all-moving cases are reported too.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from anabranch.client import Client, Subscriber

NAME = "api"
HERE = Path(__file__).resolve().parent
FAKE_DAEMON = HERE.parent / "daemon" / "fake_daemon.py"
FLOWS = 10_000


def _fake_daemon_module():
    spec = importlib.util.spec_from_file_location("anabranch_bench_fake_daemon", FAKE_DAEMON)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def publish_cost(folder: str) -> dict:
    fake = _fake_daemon_module()
    daemon = fake.FakeDaemon(f"ipc://{folder}/pe.sock", f"ipc://{folder}/pc.sock", f"{folder}/ps",
                             flows=FLOWS, publish_flows=FLOWS)
    subscriber = Subscriber(f"ipc://{folder}/pe.sock", rcvhwm=100_000)
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            subscriber.receive(timeout_s=0.05)
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    time.sleep(0.3)
    snapshot, delta, all_moving = [], [], []
    try:
        for i in range(40):
            moving = 1.0 if i >= 30 else 0.1
            daemon.advance(moving=moving, seed=i)
            is_snapshot = daemon.stream.ticks % daemon.stream.snapshot_every == 0
            started = time.perf_counter()
            daemon.stream.tick()
            elapsed = (time.perf_counter() - started) * 1000
            if i < 2:
                continue  # the first ticks build every record
            (all_moving if moving == 1.0 else snapshot if is_snapshot else delta).append(elapsed)
    finally:
        stop.set()
        reader.join(2)
        subscriber.close()
        daemon.close()
    mixed = snapshot + delta
    return {"publish_10k_flows_ms": round(float(np.mean(mixed)), 2),
            "publish_10k_flows_delta_ms": round(float(np.mean(delta)), 2),
            "publish_10k_flows_snapshot_ms": round(float(np.mean(snapshot)), 2),
            "publish_10k_flows_all_moving_ms": round(float(np.mean(all_moving)), 2)}


SUBSCRIBER = """
import sys, time
from anabranch.client import Subscriber
sub = Subscriber(sys.argv[1], rcvhwm=100_000)
count, deadline = 0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    if sub.receive(timeout_s=0.1) is not None:
        count += 1
print(count)
"""


def command_rtt(folder: str, calls: int = 3000) -> dict:
    events, control = f"ipc://{folder}/e.sock", f"ipc://{folder}/c.sock"
    proc = subprocess.Popen([sys.executable, str(FAKE_DAEMON), events, control, f"{folder}/s",
                             str(FLOWS), "1.0", str(FLOWS)], stdout=subprocess.PIPE, text=True)
    subscriber = None
    try:
        assert proc.stdout.readline().strip() == "ready"
        # The stream's reader is its own process, as a real consumer would be: decoding
        # 10 000-flow messages must not hold this client's GIL while it measures.
        subscriber = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, events, "12"],
                                      stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        rtts = []
        with Client(control, timeout_s=5.0, retries=0) as client:
            client.call("status")
            started = time.monotonic()
            for _ in range(calls):
                t0 = time.perf_counter()
                client.call("status")
                rtts.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.001)  # a steady client, not a flood: ticks fall between calls
            duration = time.monotonic() - started
        received = int(subscriber.communicate(timeout=30)[0].strip() or 0)
        return {"cmd_rtt_p50_ms": round(float(np.percentile(rtts, 50)), 3),
                "cmd_rtt_p99_ms": round(float(np.percentile(rtts, 99)), 3),
                "cmd_rtt_max_ms": round(float(np.max(rtts)), 3),
                "cmd_calls": calls, "cmd_duration_s": round(duration, 1),
                "stream_messages_received": received,
                "load_average_1m": round(os.getloadavg()[0], 2)}
    finally:
        if subscriber is not None and subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait(5)
        if subscriber is not None:
            subscriber.stdout.close()
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def run() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        return {**command_rtt(folder), **publish_cost(folder), "flows": FLOWS}


if __name__ == "__main__":
    print(run())
