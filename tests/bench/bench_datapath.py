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
- prog_ns_above_floor_per_pkt: the median over rounds of the datapath's figure
  minus the no-op program's of the same round: the datapath's own cost with the
  machine's drift from round to round (its neighbours, cold caches) taken out,
  where prog_ns_per_pkt still carries it.
- prog_ns_isolated_*: BPF_PROG_TEST_RUN, one CPU, warm caches; *_floor is the
  no-op program there (the harness's own cost per repeat).
- load_avg_*: the machine's 1-minute load average before and after: other work
  on the machine makes every figure here noisier and the ns figures higher.
"""

from __future__ import annotations

import contextlib
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
# within their round, give a steadier median than a few long ones.  With 9
# rounds the median ratio of the no-op control still ranged 0.93-0.96 from
# run to run; 15 narrow it at 40 s more.
ROUNDS = 15
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
    """`count` distinct flows written into the mapped flow table, each in a free
    slot of one of its two sets, where the program would look for it."""
    from anabranch.daemon import kstructs

    slots = datapath.slots
    free = np.full(len(slots) // kstructs.FLOW_WAYS, kstructs.FLOW_WAYS, dtype=np.int64)
    free -= (slots["state"] != kstructs.SLOT_EMPTY).reshape(-1, kstructs.FLOW_WAYS).sum(axis=1)
    placed, serial = 0, 0
    while placed < count:
        batch = count - placed
        keys = np.zeros(batch, dtype=kstructs.FLOW_KEY)
        keys["ifindex"] = 7
        keys["family"] = 4
        keys["proto"] = 6
        index = np.arange(serial, serial + batch, dtype=np.uint32)
        serial += batch
        keys["lan_addr"][:, :4] = index.view(np.uint8).reshape(batch, 4)
        keys["lan_port"] = 40000
        keys["remote_port"] = 443
        bases = kstructs.set_bases(keys, datapath.options.flow_seed, len(slots))
        where = np.full(batch, -1, dtype=np.int64)
        for choice in (0, 1):
            todo = np.flatnonzero(where < 0)
            sets = bases[todo, choice] // kstructs.FLOW_WAYS
            order = np.argsort(sets, kind="stable")
            ordered = sets[order]
            rank = np.arange(len(ordered)) - np.searchsorted(ordered, ordered)
            fits = rank < free[ordered]
            taken = ordered[fits]
            # Filled from an empty table: a set's taken slots are its first ones.
            where[todo[order[fits]]] = (taken * kstructs.FLOW_WAYS + kstructs.FLOW_WAYS
                                        - free[taken] + rank[fits])
            np.subtract.at(free, taken, 1)
        ok = where >= 0
        slots["key"][where[ok]] = keys[ok]
        slots["flow"][where[ok]] = np.zeros(1, dtype=kstructs.FLOW)
        slots["flow"]["dir"]["packets"][where[ok]] = 1
        slots["state"][where[ok]] = kstructs.SLOT_LIVE
        placed += int(ok.sum())


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


PORTS = ("lan0", "lan1", "wan0", "wan1")
HOOK_NAMES = {"ingress": "anabranch_in", "egress": "anabranch_eg"}


@contextlib.contextmanager
def forwarding_lab(name: str):
    """The netns lab, an iperf3 server in it and tc hooks on its gateway: (lab, hooks)."""
    from lab import Lab

    from anabranch.daemon.attach import Ledger, TcHooks

    lab = Lab(name)
    with tempfile.TemporaryDirectory() as tmp:
        lab.up()
        server = hooks = None
        try:
            server = lab.popen("srv", *_pinned(1), "iperf3", "-s", stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            hooks = TcHooks(Ledger(Path(tmp) / "ledger.json"), netns=lab.ns("gw"))
            yield lab, hooks
        finally:
            if hooks is not None:
                hooks.detach_all()
                hooks.close()
            if server is not None:
                server.kill()
                server.wait()
            lab.down()


def forwarding_rounds(lab, hooks, configs: dict, rounds: int) -> dict[str, dict[str, list[float]]]:
    """iperf3 through the gateway with each configuration attached in turn, the order
    rotating from round to round so a drift in the machine's load favours none.  A
    configuration is None (nothing attached), a program fd (on every hook) or a Datapath
    (its programs on every port, each port registered, marking on).  Per configuration,
    one value per round: `gbit`; where a program ran, its ns per run over all hooks
    (`all`) and, for a Datapath, over the LAN and the WAN hooks (`lan`, `wan`)."""
    from lab import SERVER_V4

    from anabranch.daemon import kstructs
    from anabranch.daemon.datapath import program_stats

    def attach(config) -> list[int]:
        """The fds whose statistics count: (ingress, egress) of each port in PORTS order."""
        fds = []
        for name in PORTS:
            if isinstance(config, int):
                hooks.attach(name, {"ingress": config, "egress": config}, HOOK_NAMES)
                fds = [config]
                continue
            role = kstructs.ROLE_WAN if name.startswith("wan") else kstructs.ROLE_LAN
            flags = kstructs.PORT_COUNT | kstructs.PORT_MARK
            programs = config.programs_for(name, role, flags)
            ifindex = hooks.attach(name, programs, HOOK_NAMES)
            config.set_port(ifindex, role, flags)
            fds.extend(programs.values())
        return fds

    names = list(configs)
    measured: dict[str, dict[str, list[float]]] = {name: {"gbit": [], "all": [], "lan": [], "wan": []}
                                                   for name in names}
    for round_number in range(rounds):
        turn = round_number % len(names)
        for name in names[turn:] + names[:turn]:
            config = configs[name]
            fds = attach(config) if config is not None else []
            before = [program_stats(fd) for fd in fds]
            measured[name]["gbit"].append(_iperf(lab, SERVER_V4[0]))
            after = [program_stats(fd) for fd in fds]
            hooks.detach_all()
            parts = {"all": slice(None)}
            if len(fds) == 2 * len(PORTS):
                # A LAN hook returns early or only steers, a WAN hook does the per-flow work.
                parts.update(lan=slice(0, 4), wan=slice(4, 8))
            for part, where in parts.items():
                if (ns := _ns_per_run(before[where], after[where])) is not None:
                    measured[name][part].append(ns)
    return measured


def run() -> dict:
    from anabranch.daemon import policy
    from anabranch.daemon.datapath import BuildOptions, Datapath

    figures: dict = {"load_avg_before": round(os.getloadavg()[0], 2)}
    # Room for 1M flows at three quarters full, where two-choice sets still place
    # nearly every new flow in a free slot (see find_slot in datapath.bpf.c).
    datapath = Datapath(BuildOptions(flow_map_size=1_310_720))
    noop_bpf, noop_fd = _noop_program()
    try:
        figures["sweep_100k_ms"] = round(_sweep_ms(datapath, 100_000), 1)
        figures["sweep_1m_ms"] = round(_sweep_ms(datapath, 1_000_000), 1)
        datapath.clear_flows()
        policy.write_policy(datapath, policy.Policy.default())
        figures.update(_isolated_ns(datapath, noop_fd))
        datapath.clear_flows()

        datapath.enable_stats()
        with forwarding_lab(f"bdp{os.getpid() % 100000}") as (lab, hooks):
            measured = forwarding_rounds(lab, hooks, {"bare": None, "datapath": datapath, "noop": noop_fd},
                                         ROUNDS)
        gbit = {config: m["gbit"] for config, m in measured.items()}
        ns_per_run = {config: measured[config]["all"] for config in ("datapath", "noop")}
        ns_by_role = {role: measured["datapath"][role] for role in ("lan", "wan")}
        figures["forward_ratio"] = round(statistics.median(
            a / b for a, b in zip(gbit["datapath"], gbit["bare"])), 3)
        figures["forward_ratio_noop"] = round(statistics.median(
            a / b for a, b in zip(gbit["noop"], gbit["bare"])), 3)
        figures["prog_ns_per_pkt"] = (round(statistics.median(ns_per_run["datapath"]), 1)
                                      if ns_per_run["datapath"] else None)
        figures["prog_ns_floor_per_pkt"] = (round(statistics.median(ns_per_run["noop"]), 1)
                                            if ns_per_run["noop"] else None)
        # Paired by round only where both ran in every round (a round whose program
        # saw no packet has no figure, and would shift the pairs).
        paired = [a - b for a, b in zip(ns_per_run["datapath"], ns_per_run["noop"])] \
            if len(ns_per_run["datapath"]) == len(ns_per_run["noop"]) == ROUNDS else []
        figures["prog_ns_above_floor_per_pkt"] = round(statistics.median(paired), 1) if paired else None
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
        datapath.close()
        noop_bpf.cleanup()
    return figures
