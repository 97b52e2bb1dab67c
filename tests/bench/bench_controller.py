"""Controller tick (classify + MPTCP + paths + usage + alerts + history write) for
10 000 and 100 000 synthetic active flows; the figure is the median tick in ms."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "controller"))

from anabranch.controller.events import MpCapable, MpJoin  # noqa: E402
from anabranch.controller.features import FlowExtras  # noqa: E402
from anabranch.controller.mptcp import key_token  # noqa: E402
from anabranch.controller.paths import LinkSpec  # noqa: E402
from anabranch.controller.tick import Controller, ControllerOptions  # noqa: E402
from anabranch.controller.usage import UsageOptions  # noqa: E402
from flowgen import Synthetic  # noqa: E402

NAME = "controller"


def events_for(table, rng, count: int) -> list:
    """MPTCP handshakes and joins on a few flows, as the datapath would report them."""
    rows = rng.choice(len(table), size=min(2 * count, len(table)), replace=False)
    events = []
    for i in range(0, len(rows) - 1, 2):
        key = int(rng.integers(1, 2**63))
        events.append(MpCapable(table.now_ns, int(table.ids[rows[i]]), None, 0, 1, key, key + 1))
        events.append(MpJoin(table.now_ns, int(table.ids[rows[i + 1]]), None, 0, key_token(key + 1, 1), 1))
    return events


def measure(n: int, ticks: int) -> tuple[float, float]:
    gen = Synthetic(n, seed=n)
    with tempfile.TemporaryDirectory() as tmp:
        options = ControllerOptions(links=(LinkSpec("wan0", 2, 100, 100), LinkSpec("wan1", 3, 50, 20)),
                                    history_path=str(Path(tmp) / "history.sqlite"),
                                    usage=UsageOptions.configure({"quotas": {"lan": {
                                        "prefix": "10.0.0.0/8", "limit_gb": 100, "per_host": True}}}))
        controller = Controller(options)
        rng = np.random.default_rng(7)
        now = 1_767_225_600.0
        times, cpu = [], []
        for tick in range(ticks):
            table = gen.tick()
            rtt = rng.gamma(4, 10, len(table))
            rtt[rng.random(len(table)) < 0.5] = np.nan
            extras = FlowExtras(rtt_ms=rtt, retrans=np.zeros(len(table), dtype=np.uint64),
                                mptcp_seen=None)
            events = events_for(table, rng, 20) if tick % 5 == 0 else []
            started, started_cpu = time.perf_counter(), time.process_time()
            controller.tick(table, events, now + tick, extras)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
        controller.close()
    # The first tick names every flow and creates every host: report steady state.
    return statistics.median(times[2:]), statistics.median(cpu[2:])


def measure_nat(n: int, ticks: int) -> float:
    """The daemon's NAT step (daemon/conntrack.py: conntrack events learnt, the table
    mapped) when every flow is masqueraded and 1 % of them are new connections each
    tick: median ms per tick, the first (every flow looked up at once, as at start) left out."""
    from anabranch.daemon.conntrack import Connection, Event, Translator, Tuple

    gen = Synthetic(n, seed=n)
    table = gen.tick()
    k = table.keys
    events = [Event("new", Connection(4, int(k["proto"][i]),
                                      Tuple(bytes([192, 168, i % 250, 1 + i % 200]), remote, 1024 + i % 60000, rport),
                                      Tuple(remote, lan, rport, lport)))
              for i, (lan, lport, remote, rport) in enumerate(zip(
                  (bytes(a[:4]) for a in k["lan_addr"]), k["lan_port"].tolist(),
                  (bytes(a[:4]) for a in k["remote_addr"]), k["remote_port"].tolist()))]
    nat = Translator()
    nat.learn(events)
    assert nat.apply(table).wire_keys is not None
    times = []
    for tick in range(ticks):
        table = gen.tick()
        started = time.perf_counter()
        nat.learn(events[tick * n // 100:(tick + 1) * n // 100])
        nat.apply(table)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


# Run in a namespace of its own: 5 000 UDP "connections" over its loopback, whose
# conntrack NEW events (as the kernel writes them) the daemon's socket reads and learns.
_CONNTRACK_SCRIPT = """
import json, socket, time
from anabranch.daemon.conntrack import Conntrack, Translator
source = Conntrack(nat_only=False)        # every event, as a gateway that NATs all
for port in range(20000, 25000):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port)); s.sendto(b"x", ("127.0.0.1", 9)); s.close()
time.sleep(0.2)
started = time.perf_counter()
events = source.read()
Translator().learn(events)
elapsed = time.perf_counter() - started
print(json.dumps({"events": len(events), "us": elapsed * 1e6 / max(len(events), 1)}))
"""


def measure_conntrack() -> float:
    """The daemon's cost per conntrack event (read from its socket, parsed, learnt), in µs."""
    ns = "abbench-ct"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        run_in = ["ip", "netns", "exec", ns]
        subprocess.run(run_in + ["ip", "link", "set", "lo", "up"], check=True)
        # A rule that reads conntrack state makes the namespace track its connections.
        subprocess.run(run_in + ["nft", "add table ip ab; add chain ip ab out { type filter hook output "
                                 "priority 0; }; add rule ip ab out ct state new counter"], check=True)
        result = json.loads(subprocess.run(run_in + [sys.executable, "-c", _CONNTRACK_SCRIPT], check=True,
                                           capture_output=True, text=True).stdout)
        assert result["events"] >= 4000, result
        return result["us"]
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def run() -> dict:
    wall_10k, cpu_10k = measure(10_000, 30)
    wall_100k, cpu_100k = measure(100_000, 12)
    # CPU time as well: on a shared, loaded machine wall time includes waiting for a core.
    return {"tick_10k_ms": round(wall_10k, 2), "tick_100k_ms": round(wall_100k, 2),
            "tick_10k_cpu_ms": round(cpu_10k, 2), "tick_100k_cpu_ms": round(cpu_100k, 2),
            "nat_10k_ms": round(measure_nat(10_000, 20), 2), "nat_100k_ms": round(measure_nat(100_000, 10), 2),
            "conntrack_event_us": round(measure_conntrack(), 2)}


if __name__ == "__main__":
    print(run())
