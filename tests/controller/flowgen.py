"""Builds FlowTables for controller tests and benchmarks (no datapath, no root)."""

from __future__ import annotations

import ipaddress
import socket
import zlib

import numpy as np

from anabranch.controller.events import FlowKey
from anabranch.controller.flows import FlowRates, FlowTable, flow_ids
from anabranch.daemon import kstructs

PROTO = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "icmp": socket.IPPROTO_ICMP}


def _raw(address: str) -> np.ndarray:
    packed = ipaddress.ip_address(address).packed
    out = np.zeros(16, dtype=np.uint8)
    out[: len(packed)] = np.frombuffer(packed, dtype=np.uint8)
    return out


def _default_port(spec: dict) -> int:
    """A client port that depends on the flow's other key fields only (not on list order)."""
    fields = {k: spec.get(k) for k in ("ifindex", "proto", "lan", "remote", "rport")}
    return 40000 + zlib.crc32(repr(sorted(fields.items())).encode()) % 20000


def keys(specs: list[dict]) -> np.ndarray:
    out = np.zeros(len(specs), dtype=kstructs.FLOW_KEY)
    for i, s in enumerate(specs):
        lan = s.get("lan", "192.168.1.10")
        out[i]["ifindex"] = s.get("ifindex", 2)
        out[i]["family"] = ipaddress.ip_address(lan).version
        out[i]["proto"] = PROTO[s.get("proto", "tcp")]
        out[i]["lan_port"] = s.get("lport", _default_port(s))
        out[i]["remote_port"] = s.get("rport", 443)
        out[i]["lan_addr"] = _raw(lan)
        out[i]["remote_addr"] = _raw(s.get("remote", "203.0.113.7"))
    return out


def flow_id(spec: dict) -> int:
    return int(flow_ids(keys([spec]))[0])


def flow_key(spec: dict) -> FlowKey:
    k = keys([spec])[0]
    return FlowKey(int(k["ifindex"]), int(k["family"]), int(k["proto"]), spec.get("lan", "192.168.1.10"),
                   int(k["lan_port"]), spec.get("remote", "203.0.113.7"), int(k["remote_port"]))


def table(specs: list[dict], now_s: float = 100.0) -> FlowTable:
    """A FlowTable from specs: packets/bytes (up, down) totals, bps/pps, first_s/last_s."""
    k = keys(specs)
    ids = flow_ids(k)
    order = np.argsort(ids, kind="stable")
    arr = lambda name, default, dtype: np.array([s.get(name, default) for s in specs], dtype=dtype)[order]
    return FlowTable(
        ids=ids[order], keys=k[order],
        packets=arr("packets", (10, 10), np.uint64).reshape(-1, 2),
        bytes=arr("bytes", (1000, 1000), np.uint64).reshape(-1, 2),
        first_seen_ns=(arr("first_s", now_s - 10, np.float64) * 1e9).astype(np.uint64),
        last_seen_ns=(arr("last_s", now_s, np.float64) * 1e9).astype(np.uint64),
        bps=arr("bps", (0.0, 0.0), np.float64).reshape(-1, 2), pps=arr("pps", (0.0, 0.0), np.float64).reshape(-1, 2),
        now_ns=int(now_s * 1e9))


def row_of(t: FlowTable, spec: dict) -> int:
    return int(np.flatnonzero(t.ids == np.uint64(flow_id(spec)))[0])


class Synthetic:
    """n active flows over a few WAN links and LAN hosts, counters growing every tick."""

    def __init__(self, n: int, seed: int = 1, links: int = 2, hosts: int = 500):
        rng = np.random.default_rng(seed)
        self.rng = rng
        k = np.zeros(n, dtype=kstructs.FLOW_KEY)
        k["ifindex"] = 2 + rng.integers(0, links, n)
        k["family"] = 4
        k["proto"] = np.where(rng.random(n) < 0.7, PROTO["tcp"], PROTO["udp"])
        k["lan_port"] = rng.integers(32768, 61000, n)
        k["remote_port"] = rng.choice([443, 80, 53, 22, 5060, 3478, 8080, 993, 51820], n)
        host = rng.integers(0, hosts, n)
        k["lan_addr"][:, 0] = 10
        k["lan_addr"][:, 2] = host // 250
        k["lan_addr"][:, 3] = 1 + host % 250
        k["remote_addr"][:, :4] = rng.integers(1, 255, (n, 4))
        self.keys = k
        self.values = np.zeros(n, dtype=kstructs.FLOW)
        self.rate = rng.lognormal(8, 2, (n, 2))         # bytes per tick
        self.size = rng.choice([100, 600, 1400], (n, 2))
        self.rates = FlowRates()
        self.t_ns = 1_000_000_000_000

    def tick(self) -> FlowTable:
        self.t_ns += 1_000_000_000
        grow = (self.rate * self.rng.random(self.rate.shape) * 2).astype(np.uint64)
        d = self.values["dir"]
        d["bytes"] += grow
        d["packets"] += np.maximum(grow // self.size.astype(np.uint64), 1)
        first = self.values["first_seen_ns"]
        first[first == 0] = self.t_ns
        self.values["last_seen_ns"] = self.t_ns
        return self.rates.update(self.keys, self.values, self.t_ns)
