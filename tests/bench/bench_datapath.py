"""Datapath cost: forwarding throughput with/without it, program ns/packet, map sweep time.

Needs root and the netns lab.  Forwarding is measured side by side: each round
runs iperf3 (client -> server, through the gateway) bare, with the datapath on
all four gateway ports (marking on), and with a no-op tc program on the same
hooks; the order rotates from round to round so a drift in the machine's load
favours none of them.  Figures are medians over the rounds.  The iperf3 sender
is pinned to CPU 0 and the receiver to CPU 1 in every run (`_pinned`).

- forward_ratio: datapath throughput / bare throughput of the same round.
- forward_ratio_noop: the no-op program's, the control: how far from 1.0 the
  measurement strays when the program does nothing.
- prog_ns_per_pkt: the datapath's mean run time per invocation over all eight
  hooks, from the kernel's BPF statistics.
- prog_ns_lan_per_pkt, prog_ns_wan_per_pkt: the same over the LAN hooks (which
  return at once or only steer by DSCP) and over the WAN hooks (the whole
  per-flow work: parse, flow lookup, counters, RTT, marking).
- prog_ns_floor_per_pkt: the same for the no-op program: what any tc program
  costs on these hooks here (statistics overhead, cold cache lines), so the
  datapath's own share is the difference.
- prog_ns_isolated_*: BPF_PROG_TEST_RUN, one CPU, warm caches; *_floor is the
  no-op program there (the harness's own cost per repeat).
- load_avg_*: the machine's 1-minute load average before and after: other work
  on the machine makes every figure here noisier and the ns figures higher.
"""

from __future__ import annotations

import ctypes as ct
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NAME = "datapath"
# Throughput through the lab swings by tens of percent from one run to the
# next when other work shares the machine: many short adjacent runs, compared
# within their round, give a steadier median than a few long ones.
ROUNDS = 9
CONFIGS = ("bare", "datapath", "noop")
IPERF_SECONDS = 2
SWEEP_REPEATS = 5

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))


def _pinned(cpu: int) -> list[str]:
    """taskset for `cpu` where the machine has a second CPU: the sender (whose CPU also
    forwards, softirq follows the veth transmit) on one, the receiver on the other, in
    every round.  Unpinned, where the scheduler puts the two changes from run to run and
    throughput with it (14 to 26 Gbit/s within one run on this VM), which buries a
    few-percent difference between configurations in noise."""
    return ["taskset", "-c", str(cpu)] if (os.cpu_count() or 1) >= 2 else []


def _iperf(lab, server_addr: str) -> float:
    out = lab.run("cli", *_pinned(0), "iperf3", "-c", server_addr, "-t", str(IPERF_SECONDS), "-J",
                  timeout=60).stdout
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"])


def _fill(datapath, count: int) -> None:
    """count distinct flows into the flow map with BPF_MAP_UPDATE_BATCH."""
    from bcc.libbcc import lib

    from anabranch.daemon import kstructs

    keys = np.zeros(count, dtype=kstructs.FLOW_KEY)
    keys["ifindex"] = 7
    keys["family"] = 4
    keys["proto"] = 6
    index = np.arange(count, dtype=np.uint32)
    keys["lan_addr"][:, :4] = index.view(np.uint8).reshape(count, 4)
    keys["lan_port"] = 40000
    keys["remote_port"] = 443
    values = np.zeros(count, dtype=kstructs.FLOW)
    values["dir"]["packets"] = 1
    chunk = 65536
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        number = ct.c_uint32(n)
        rc = lib.bpf_update_batch(datapath.flows.get_fd(),
                                  ct.c_void_p(keys.ctypes.data + start * keys.dtype.itemsize),
                                  ct.c_void_p(values.ctypes.data + start * values.dtype.itemsize),
                                  ct.byref(number))
        if rc != 0:
            raise OSError(ct.get_errno(), "BPF_MAP_UPDATE_BATCH failed")


def _sweep_ms(datapath, count: int) -> float:
    datapath.clear_flows()
    _fill(datapath, count)
    times = []
    for _ in range(SWEEP_REPEATS):
        started = time.perf_counter()
        keys, _ = datapath.sweep_flows()
        times.append((time.perf_counter() - started) * 1000)
        if len(keys) < count * 0.99:
            raise RuntimeError(f"sweep read {len(keys)} of {count} flows")
    return statistics.median(times)


def _noop_program():
    """The no-op tc program (noop.bpf.c beside this file) and its fd."""
    from bcc import BPF

    bpf = BPF(src_file=str(Path(__file__).resolve().parent / "noop.bpf.c").encode())
    return bpf, bpf.load_func(b"ab_noop", BPF.SCHED_CLS).fd


def _isolated_ns(datapath, noop_fd: int) -> dict:
    """Program run time on one CPU without contention (BPF_PROG_TEST_RUN, repeat):
    a TCP data segment with timestamps and a UDP datagram of an established flow."""
    sys.path.insert(0, str(REPO / "tests" / "ebpf"))
    from packets import ACK, ethernet, ipv4, tcp, ts_option, udp

    from anabranch.daemon import kstructs
    from anabranch.daemon.datapath import TestRunner

    datapath.set_port(1, kstructs.ROLE_WAN, kstructs.PORT_COUNT | kstructs.PORT_MARK)
    runner = datapath.test_runner("egress")
    frames = {
        "tcp": ethernet(ipv4("10.0.0.2", "192.0.2.1", 6, tcp(40000, 443, ACK, options=ts_option(1, 2),
                                                              payload=b"x" * 1400)), 0x0800),
        "udp": ethernet(ipv4("10.0.0.2", "192.0.2.1", 17, udp(40000, 443, b"x" * 1400)), 0x0800),
    }
    result = {}
    for name, frame in frames.items():
        runner.run(frame)
        result[f"prog_ns_isolated_{name}"] = statistics.median(
            runner.run(frame, repeat=100_000).duration_ns for _ in range(5))
    noop = TestRunner(noop_fd)
    result["prog_ns_isolated_floor"] = statistics.median(
        noop.run(frames["tcp"], repeat=100_000).duration_ns for _ in range(5))
    datapath.clear_port(1)
    return result


def _ns_per_run(stats_before: list[tuple[int, int]], stats_after: list[tuple[int, int]]) -> float | None:
    runs = sum(a[0] - b[0] for a, b in zip(stats_after, stats_before))
    run_ns = sum(a[1] - b[1] for a, b in zip(stats_after, stats_before))
    return run_ns / runs if runs else None


def run() -> dict:
    from lab import SERVER_V4, Lab

    from anabranch.daemon import kstructs, policy
    from anabranch.daemon.attach import Ledger, TcHooks
    from anabranch.daemon.datapath import BuildOptions, Datapath, program_stats

    figures: dict = {"load_avg_before": round(os.getloadavg()[0], 2)}
    # LRU maps start evicting before they are full: room for 1M plus a margin.
    datapath = Datapath(BuildOptions(flow_map_size=1_310_720))
    noop_bpf, noop_fd = _noop_program()
    lab = Lab(f"bdp{os.getpid() % 100000}")
    tmp = tempfile.TemporaryDirectory()
    hooks = None
    try:
        figures["sweep_100k_ms"] = round(_sweep_ms(datapath, 100_000), 1)
        figures["sweep_1m_ms"] = round(_sweep_ms(datapath, 1_000_000), 1)
        datapath.clear_flows()
        policy.write_policy(datapath, policy.Policy.default())
        figures.update(_isolated_ns(datapath, noop_fd))
        datapath.clear_flows()

        lab.up()
        datapath.enable_stats()
        server = lab.popen("srv", *_pinned(1), "iperf3", "-s", stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        hooks = TcHooks(Ledger(Path(tmp.name) / "ledger.json"), netns=lab.ns("gw"))
        names = {"ingress": "anabranch_in", "egress": "anabranch_eg"}

        def attach(config: str) -> list[int]:
            """Attach one configuration on every gateway port; the fds whose statistics count."""
            fds = []
            for name in ("lan0", "lan1", "wan0", "wan1"):
                if config == "noop":
                    hooks.attach(name, {"ingress": noop_fd, "egress": noop_fd}, names)
                    fds = [noop_fd]
                    continue
                programs = datapath.programs_for(name)
                ifindex = hooks.attach(name, programs, names)
                role = kstructs.ROLE_WAN if name.startswith("wan") else kstructs.ROLE_LAN
                datapath.set_port(ifindex, role, kstructs.PORT_COUNT | kstructs.PORT_MARK)
                fds.extend(programs.values())
            return fds

        gbit: dict[str, list[float]] = {config: [] for config in CONFIGS}
        ns_per_run: dict[str, list[float]] = {"datapath": [], "noop": []}
        ns_by_role: dict[str, list[float]] = {"lan": [], "wan": []}
        try:
            for round_number in range(ROUNDS):
                turn = round_number % len(CONFIGS)
                for config in CONFIGS[turn:] + CONFIGS[:turn]:
                    fds = attach(config) if config != "bare" else []
                    before = [program_stats(fd) for fd in fds]
                    gbit[config].append(_iperf(lab, SERVER_V4[0]))
                    after = [program_stats(fd) for fd in fds]
                    hooks.detach_all()
                    if fds and (ns := _ns_per_run(before, after)) is not None:
                        ns_per_run[config].append(ns)
                    if config == "datapath":
                        # fds are (ingress, egress) of lan0, lan1, wan0, wan1: a LAN hook returns
                        # early or only steers, a WAN hook does the whole per-flow work.
                        for role, part in (("lan", slice(0, 4)), ("wan", slice(4, 8))):
                            if (ns := _ns_per_run(before[part], after[part])) is not None:
                                ns_by_role[role].append(ns)
        finally:
            server.kill()
            server.wait()
        figures["forward_ratio"] = round(statistics.median(
            a / b for a, b in zip(gbit["datapath"], gbit["bare"])), 3)
        figures["forward_ratio_noop"] = round(statistics.median(
            a / b for a, b in zip(gbit["noop"], gbit["bare"])), 3)
        figures["prog_ns_per_pkt"] = (round(statistics.median(ns_per_run["datapath"]), 1)
                                      if ns_per_run["datapath"] else None)
        figures["prog_ns_floor_per_pkt"] = (round(statistics.median(ns_per_run["noop"]), 1)
                                            if ns_per_run["noop"] else None)
        for role, values in ns_by_role.items():
            figures[f"prog_ns_{role}_per_pkt"] = round(statistics.median(values), 1) if values else None
        figures["forward_bare_gbit"] = round(statistics.median(gbit["bare"]) / 1e9, 2)
        figures["forward_attached_gbit"] = round(statistics.median(gbit["datapath"]) / 1e9, 2)
        figures["forward_noop_gbit"] = round(statistics.median(gbit["noop"]) / 1e9, 2)
        figures["rounds"] = ROUNDS
        figures["iperf_cpus"] = "sender 0, receiver 1" if _pinned(0) else "unpinned (one CPU)"
        figures["per_round"] = {"gbit": {config: [round(g / 1e9, 2) for g in values]
                                         for config, values in gbit.items()},
                                "ns_per_run": {config: [round(ns, 1) for ns in values]
                                               for config, values in ns_per_run.items()}}
        figures["load_avg_after"] = round(os.getloadavg()[0], 2)
    finally:
        if hooks is not None:
            hooks.detach_all()
            hooks.close()
        lab.down()
        datapath.close()
        noop_bpf.cleanup()
        tmp.cleanup()
    return figures
