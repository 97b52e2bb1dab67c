"""Bufferbloat, side by side: a voice-like ping's RTT idle, under a saturating bulk TCP upload
without Anabranch shaping, and with it.

The lab's uplink gets a deep-buffered bottleneck on the server's side of the WAN
link (an IFB on the server's eth0 ingress with TBF 20 Mbit/s and a 500 ms
buffer), like a modem in front of a slower line.  Shaped: an HTB tree from the
allocation plan on the gateway's wan0 at 19 Mbit/s, just below the bottleneck,
so the queue forms in the gateway where classes separate it.  Until the
datapath marks skb->priority, the bench steers with u32 filters (ICMP -> voice,
TCP 8080 -> file).  The bulk sender uses cubic, the loss-based congestion
control of most LAN hosts (this kernel defaults to BBR, which keeps queues short
by itself and would hide the bloat).  Each loaded phase runs REPEATS times to
show the variance on a shared 2-core machine.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lab"))

from lab import SERVER_V4, Lab  # noqa: E402
from steering import (FILE_PORT, iperf3_client, iperf3_received_mbit, iperf3_server, steer_by_port,  # noqa: E402
                      wire_sized_packets)

NAME = "shaping"
BOTTLENECK_MBIT = 20
SHAPED_MBIT = 19
BUFFER_MS = 500
LOAD_S = 14          # bulk upload per phase
SETTLE_S = 4         # ping starts after the bottleneck queue filled
PING_INTERVAL_S = 0.02
REPEATS = 3
CONGESTION = "cubic"


def _bottleneck(lab: Lab) -> None:
    lab.run("srv", "ip", "link", "add", "ifbn", "type", "ifb")
    lab.run("srv", "ip", "link", "set", "ifbn", "up")
    lab.run("srv", "tc", "qdisc", "add", "dev", "ifbn", "root", "tbf", "rate", f"{BOTTLENECK_MBIT}mbit",
            "burst", "16kb", "latency", f"{BUFFER_MS}ms")
    lab.run("srv", "tc", "qdisc", "add", "dev", "eth0", "handle", "ffff:", "ingress")
    lab.run("srv", "tc", "filter", "add", "dev", "eth0", "parent", "ffff:", "protocol", "all", "u32",
            "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", "ifbn")


def _ping(lab: Lab, seconds: float) -> list[float]:
    count = int(seconds / PING_INTERVAL_S)
    out = lab.run("cli", "ping", "-n", "-i", str(PING_INTERVAL_S), "-c", str(count), "-s", "160",
                  SERVER_V4[0], check=False, timeout=seconds + 10).stdout
    return [float(m) for m in re.findall(r"time=([\d.]+) ms", out)]


def _loaded(lab: Lab) -> tuple[list[float], float]:
    """RTTs of the ping while a bulk upload saturates the uplink, and the bulk's goodput."""
    server = iperf3_server(lab, FILE_PORT)
    try:
        bulk = iperf3_client(lab, SERVER_V4[0], FILE_PORT, LOAD_S, omit_s=SETTLE_S, congestion=CONGESTION)
        time.sleep(SETTLE_S)
        rtts = _ping(lab, LOAD_S - SETTLE_S - 1)
        goodput = iperf3_received_mbit(bulk)
    finally:
        server.kill()
        server.wait()
    return rtts, goodput


def _summary(rtts: list[float]) -> dict[str, float]:
    ordered = sorted(rtts)
    return {"median_ms": statistics.median(ordered), "p95_ms": ordered[int(0.95 * (len(ordered) - 1))],
            "samples": len(ordered)}


def run() -> dict:
    from anabranch.daemon.shaper import Shaper, ShapedLink, ShapingLedger

    lab = Lab(prefix=f"bsh{os.getpid() % 100000}")
    lab.up()
    try:
        wire_sized_packets(lab)
        _bottleneck(lab)
        idle = _summary(_ping(lab, 5))
        unshaped, shaped = [], []
        ledger_dir = Path(tempfile.mkdtemp(prefix="anabranch-bench-"))
        for _ in range(REPEATS):
            rtts, goodput = _loaded(lab)
            unshaped.append({**_summary(rtts), "goodput_mbit": goodput})

            shaper = Shaper([ShapedLink("wan0", "wan0", "up", SHAPED_MBIT)],
                            ShapingLedger.load(ledger_dir / "shaping.json"), netns=lab.ns("gw"))
            shaper.tick(time.monotonic())
            steer_by_port(lab, "wan0", {FILE_PORT: "file"}, icmp_class="voice")
            stop = threading.Event()

            def ticks(shaper=shaper, stop=stop):  # the daemon's tick loop
                while not stop.wait(1.0):
                    shaper.tick(time.monotonic())
            ticker = threading.Thread(target=ticks, daemon=True)
            ticker.start()
            try:
                rtts, goodput = _loaded(lab)
            finally:
                stop.set()
                ticker.join()
                shaper.stop("remove")
                shaper.close()
            shaped.append({**_summary(rtts), "goodput_mbit": goodput})
            time.sleep(1)  # let the bottleneck's queue drain between phases
    finally:
        lab.down()

    def med(runs, key):
        return statistics.median(r[key] for r in runs)
    ratios = [s["goodput_mbit"] / u["goodput_mbit"] for s, u in zip(shaped, unshaped)]
    return {
        "voice_rtt_idle_ms": round(idle["median_ms"], 3),
        "voice_rtt_loaded_unshaped_ms": round(med(unshaped, "median_ms"), 3),
        "voice_rtt_loaded_shaped_ms": round(med(shaped, "median_ms"), 3),
        "bulk_goodput_shaped_ratio": round(statistics.median(ratios), 3),
        "voice_rtt_idle_p95_ms": round(idle["p95_ms"], 3),
        "voice_rtt_loaded_unshaped_p95_ms": round(med(unshaped, "p95_ms"), 3),
        "voice_rtt_loaded_shaped_p95_ms": round(med(shaped, "p95_ms"), 3),
        "bulk_goodput_unshaped_mbit": round(med(unshaped, "goodput_mbit"), 3),
        "bulk_goodput_shaped_mbit": round(med(shaped, "goodput_mbit"), 3),
        "shaped_rtt_minus_idle_ms": round(med(shaped, "median_ms") - idle["median_ms"], 3),
        # Spread over the repeats (min, max of each run's median): the machine is shared.
        "voice_rtt_loaded_unshaped_ms_min": min(r["median_ms"] for r in unshaped),
        "voice_rtt_loaded_unshaped_ms_max": max(r["median_ms"] for r in unshaped),
        "voice_rtt_loaded_shaped_ms_min": min(r["median_ms"] for r in shaped),
        "voice_rtt_loaded_shaped_ms_max": max(r["median_ms"] for r in shaped),
        "bulk_goodput_shaped_ratio_min": round(min(ratios), 3),
        "bulk_goodput_shaped_ratio_max": round(max(ratios), 3),
        "repeats": REPEATS,
        "bottleneck": {"mbit": BOTTLENECK_MBIT, "buffer_ms": BUFFER_MS, "shaped_mbit": SHAPED_MBIT,
                       "congestion_control": CONGESTION,
                       "steering": "u32 (test-only): ICMP -> voice 1:11, TCP 8080 -> file 1:14"},
        "runs": {"idle": idle, "unshaped": unshaped, "shaped": shaped, "goodput_ratios": ratios},
    }


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
