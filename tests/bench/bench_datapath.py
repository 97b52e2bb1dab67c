"""Datapath cost: forwarding throughput with/without it, program ns/packet, map sweep time.

Needs root and the netns lab.  Forwarding is measured side by side: each round
runs iperf3 (client -> server, through the gateway) once bare and once with the
datapath on all four gateway ports (marking on), interleaved, median of rounds.
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
ROUNDS = 5
IPERF_SECONDS = 3
SWEEP_REPEATS = 5

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))


def _iperf(lab, server_addr: str) -> float:
    out = lab.run("cli", "iperf3", "-c", server_addr, "-t", str(IPERF_SECONDS), "-J", timeout=60).stdout
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


def _isolated_ns(datapath) -> dict:
    """Program run time on one CPU without contention (BPF_PROG_TEST_RUN, repeat):
    a TCP data segment with timestamps and a UDP datagram of an established flow."""
    sys.path.insert(0, str(REPO / "tests" / "ebpf"))
    from packets import ACK, ethernet, ipv4, tcp, ts_option, udp

    from anabranch.daemon import kstructs

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
    datapath.clear_port(1)
    return result


def run() -> dict:
    from lab import SERVER_V4, Lab

    from anabranch.daemon import kstructs, policy
    from anabranch.daemon.attach import Ledger, TcHooks
    from anabranch.daemon.datapath import BuildOptions, Datapath, program_stats

    figures: dict = {}
    # LRU maps start evicting before they are full: room for 1M plus a margin.
    datapath = Datapath(BuildOptions(flow_map_size=1_310_720))
    lab = Lab(f"bdp{os.getpid() % 100000}")
    tmp = tempfile.TemporaryDirectory()
    hooks = None
    try:
        figures["sweep_100k_ms"] = round(_sweep_ms(datapath, 100_000), 1)
        figures["sweep_1m_ms"] = round(_sweep_ms(datapath, 1_000_000), 1)
        datapath.clear_flows()
        policy.write_policy(datapath, policy.Policy.default())
        figures.update(_isolated_ns(datapath))
        datapath.clear_flows()

        lab.up()
        datapath.enable_stats()
        server = lab.popen("srv", "iperf3", "-s", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        hooks = TcHooks(Ledger(Path(tmp.name) / "ledger.json"), netns=lab.ns("gw"))
        bare, attached, ns_per_pkt = [], [], []
        try:
            for _ in range(ROUNDS):
                bare.append(_iperf(lab, SERVER_V4[0]))
                fds = {}
                for name in ("lan0", "lan1", "wan0", "wan1"):
                    fds[name] = datapath.programs_for(name)
                    ifindex = hooks.attach(name, fds[name], {"ingress": "anabranch_in", "egress": "anabranch_eg"})
                    role = kstructs.ROLE_WAN if name.startswith("wan") else kstructs.ROLE_LAN
                    datapath.set_port(ifindex, role, kstructs.PORT_COUNT | kstructs.PORT_MARK)
                before = [program_stats(fd) for f in fds.values() for fd in f.values()]
                attached.append(_iperf(lab, SERVER_V4[0]))
                after = [program_stats(fd) for f in fds.values() for fd in f.values()]
                runs = sum(a[0] - b[0] for a, b in zip(after, before))
                run_ns = sum(a[1] - b[1] for a, b in zip(after, before))
                if runs:
                    ns_per_pkt.append(run_ns / runs)
                hooks.detach_all()
        finally:
            server.kill()
            server.wait()
        figures["forward_ratio"] = round(statistics.median(a / b for a, b in zip(attached, bare)), 3)
        figures["prog_ns_per_pkt"] = round(statistics.median(ns_per_pkt), 1) if ns_per_pkt else None
        figures["forward_bare_gbit"] = round(statistics.median(bare) / 1e9, 2)
        figures["forward_attached_gbit"] = round(statistics.median(attached) / 1e9, 2)
        figures["rounds"] = ROUNDS
    finally:
        if hooks is not None:
            hooks.detach_all()
            hooks.close()
        lab.down()
        datapath.close()
        tmp.cleanup()
    return figures
