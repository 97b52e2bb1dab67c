"""`anabranch analyze FILE`: run the real datapath program over a capture, offline.

    anabranch analyze capture.pcap [--json]

Reads pcap or pcapng (link types Ethernet, Linux cooked v1/v2, raw IP, BSD
loopback, PPP) with dpkt and pushes every frame through the compiled datapath
with BPF_PROG_TEST_RUN: no network, no attached hook, but root (it loads BPF).
Frames without Ethernet get a synthetic Ethernet header; the variant compiled
with AB_CLOCK_SKB_TSTAMP takes each packet's capture time as its clock.

A capture has no WAN port: every flow is treated as crossing one WAN port, with
the side that opened it (the SYN sender, else the first packet's source) as the
LAN side, so its packets go through the egress entry point and the other side's
through ingress.  Each second of capture time the flow map is swept and the
daemon's controller ticks over it and the datapath's events, as in the daemon;
prints flows with the controller's class and why, and MPTCP connections with
their subflows (correlated by the controller from MP_CAPABLE keys and MP_JOIN
tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from anabranch.controller import events as ev
from anabranch.controller.flows import flow_ids

from . import kstructs

# Link types (LINKTYPE_* of the pcap format).
LINK_NULL, LINK_ETHERNET, LINK_PPP, LINK_PPP_HDLC = 0, 1, 9, 50
LINK_RAW, LINK_RAW_ALT1, LINK_RAW_ALT2, LINK_LOOP = 101, 12, 14, 108
LINK_SLL, LINK_SLL2 = 113, 276

ETH_IPV4, ETH_IPV6, ETH_VLAN, ETH_QINQ, ETH_PPPOE = 0x0800, 0x86DD, 0x8100, 0x88A8, 0x8864
SYNTHETIC_MACS = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
WAN_IFINDEX = 1  # the loopback device: BPF_PROG_TEST_RUN accepts it without a lookup
EVENT_DRAIN_EVERY = 64
# BPF_PROG_TEST_RUN takes at most a page minus skb overhead; longer frames
# (GRO/TSO captures) are cut, and the program counts them by their IP length.
MAX_TEST_FRAME = 3072
TICK_NS = 1_000_000_000       # the controller ticks once per second of capture time
MAX_STEP_NS = 3600 * TICK_NS  # a longer gap between two frames is a clock jump
MAX_PLAUSIBLE_NS = 4_102_444_800 * TICK_NS   # 2100-01-01


class CaptureError(Exception):
    pass


# -- reading ---------------------------------------------------------------------------
def read_capture(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(timestamp ns, link type, frame) for every record of a pcap or pcapng file."""
    import dpkt

    with open(path, "rb") as handle:
        magic = handle.read(4)
        handle.seek(0)
        try:
            if magic == b"\x0a\x0d\x0d\x0a":
                reader = dpkt.pcapng.Reader(handle)
            else:
                reader = dpkt.pcap.Reader(handle)
        except (ValueError, dpkt.dpkt.Error) as exc:
            raise CaptureError(f"{path}: not a pcap or pcapng file ({exc})") from None
        link = reader.datalink()
        for ts, frame in reader:
            yield int(round(float(ts) * 1e9)), link, bytes(frame)


def _ethertype_of_ip(packet: bytes) -> int | None:
    if not packet:
        return None
    version = packet[0] >> 4
    return ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else None


def to_ethernet(link: int, frame: bytes) -> bytes | None:
    """The frame as the tc program expects it: starting with an Ethernet header."""
    if link == LINK_ETHERNET:
        return frame
    if link == LINK_SLL and len(frame) >= 16:
        return SYNTHETIC_MACS + frame[14:16] + frame[16:]
    if link == LINK_SLL2 and len(frame) >= 20:
        return SYNTHETIC_MACS + frame[0:2] + frame[20:]
    if link in (LINK_RAW, LINK_RAW_ALT1, LINK_RAW_ALT2):
        payload = frame
    elif link in (LINK_NULL, LINK_LOOP):
        payload = frame[4:]
    elif link in (LINK_PPP, LINK_PPP_HDLC):
        body = frame[2:] if frame[:2] == b"\xff\x03" else frame
        protocol = int.from_bytes(body[:2], "big") if len(body) >= 2 else 0
        if protocol not in (0x0021, 0x0057):
            return None
        payload = body[2:]
    else:
        return None
    ethertype = _ethertype_of_ip(payload)
    if ethertype is None:
        return None
    return SYNTHETIC_MACS + struct.pack("!H", ethertype) + payload


# -- who opened each flow ----------------------------------------------------------------
@dataclass(frozen=True)
class Endpoints:
    proto: int
    src: bytes
    sport: int
    dst: bytes
    dport: int
    syn: bool       # SYN without ACK
    synack: bool


def endpoints(frame: bytes) -> Endpoints | None:
    """The L3/L4 endpoints as the datapath keys them (fragments and port-less
    protocols have zero ports); None for what the datapath does not count."""
    offset = 12
    ethertype = int.from_bytes(frame[offset:offset + 2], "big") if len(frame) >= 14 else 0
    offset = 14
    for _ in range(2):
        if ethertype not in (ETH_VLAN, ETH_QINQ) or len(frame) < offset + 4:
            break
        ethertype = int.from_bytes(frame[offset + 2:offset + 4], "big")
        offset += 4
    if ethertype == ETH_PPPOE and len(frame) >= offset + 8:
        protocol = int.from_bytes(frame[offset + 6:offset + 8], "big")
        ethertype = {0x0021: ETH_IPV4, 0x0057: ETH_IPV6}.get(protocol, 0)
        offset += 8
    sport = dport = 0
    syn = synack = False
    if ethertype == ETH_IPV4 and len(frame) >= offset + 20:
        ihl = (frame[offset] & 0x0F) * 4
        if ihl < 20:
            return None
        proto = frame[offset + 9]
        src, dst = frame[offset + 12:offset + 16], frame[offset + 16:offset + 20]
        fragment = int.from_bytes(frame[offset + 6:offset + 8], "big") & 0x3FFF
        l4 = offset + ihl if not fragment else None
    elif ethertype == ETH_IPV6 and len(frame) >= offset + 40:
        proto = frame[offset + 6]
        src, dst = frame[offset + 8:offset + 24], frame[offset + 24:offset + 40]
        l4 = offset + 40
        for _ in range(4):
            if proto in (0, 43, 60, 51) and len(frame) >= l4 + 2:
                step = (frame[l4 + 1] + 2) * 4 if proto == 51 else (frame[l4 + 1] + 1) * 8
                proto = frame[l4]
                l4 += step
            elif proto == 44:
                l4 = None
                break
            else:
                break
    else:
        return None
    if l4 is not None and proto in (6, 17) and len(frame) >= l4 + (20 if proto == 6 else 8):
        sport, dport = struct.unpack_from("!HH", frame, l4)
        if proto == 6:
            flags = frame[l4 + 13]
            syn = flags & 0x12 == 0x02
            synack = flags & 0x12 == 0x12
    return Endpoints(proto, bytes(src), sport, bytes(dst), dport, syn, synack)


def conversation(e: Endpoints) -> tuple:
    a, b = (e.src, e.sport), (e.dst, e.dport)
    return (e.proto,) + (a + b if a <= b else b + a)


def openers(frames: list[tuple[int, bytes]]) -> dict[tuple, tuple[bytes, int]]:
    """Per conversation, the (address, port) of the side that opened it."""
    opened: dict[tuple, tuple[bytes, int]] = {}
    from_syn: set[tuple] = set()
    for _, frame in frames:
        e = endpoints(frame)
        if e is None:
            continue
        conv = conversation(e)
        if e.syn and conv not in from_syn:
            opened[conv] = (e.src, e.sport)   # a SYN is the best evidence
            from_syn.add(conv)
        elif conv not in opened:
            opened[conv] = (e.dst, e.dport) if e.synack else (e.src, e.sport)
    return opened


# -- the run --------------------------------------------------------------------------------
@dataclass
class Analysis:
    frames: int
    unsupported_frames: int
    flows: list[dict[str, Any]]
    mptcp_connections: list[dict[str, Any]]
    errors: dict[str, int]
    events: list[ev.Event]

    def document(self) -> dict[str, Any]:
        return {"frames": self.frames, "unsupported_frames": self.unsupported_frames,
                "errors": self.errors, "flows": self.flows, "mptcp_connections": self.mptcp_connections}


def offline_datapath(flow_map_size: int = 65536):
    """The datapath variant that takes capture time as its clock, with one WAN port."""
    from .datapath import BuildOptions, Datapath

    datapath = Datapath(BuildOptions(flow_map_size=flow_map_size, clock_from_skb=True))
    datapath.set_port(WAN_IFINDEX, kstructs.ROLE_WAN, kstructs.PORT_COUNT | kstructs.PORT_MARK)
    return datapath


def analyze(path: Path, policy=None, datapath=None) -> Analysis:
    """Analyze one capture.  Pass a `datapath` from offline_datapath() to reuse one
    compiled program over many captures (its flows are cleared first)."""
    from . import policy as policy_mod

    frames: list[tuple[int, bytes]] = []
    unsupported = 0
    for ts_ns, link, frame in read_capture(path):
        eth = to_ethernet(link, frame)
        if eth is None or len(eth) < 14:  # BPF_PROG_TEST_RUN needs an Ethernet header
            unsupported += 1
            continue
        frames.append((ts_ns, eth))
    frames = steady_clock(frames)
    opened = openers(frames)
    owned = datapath is None
    if owned:
        datapath = offline_datapath(max(1024, 2 * len(opened)))
    elif 2 * len(opened) > datapath.options.flow_map_size:
        raise CaptureError(f"{path}: {len(opened)} flows do not fit the flow map "
                           f"({datapath.options.flow_map_size}); use a fresh datapath")
    try:
        datapath.clear_flows()
        datapath.drain_events()
        errors_before = datapath.error_counts()
        policy = policy or policy_mod.Policy.default()
        policy_mod.write_policy(datapath, policy)
        snippet_size = datapath.options.snippet_size
        run = _ControllerRun(datapath, snippet_size)
        egress, ingress = datapath.test_runner("egress"), datapath.test_runner("ingress")
        for n, (ts_ns, frame) in enumerate(frames):
            run.maybe_tick(ts_ns)
            e = endpoints(frame)
            runner = egress
            if e is not None and opened.get(conversation(e)) != (e.src, e.sport):
                runner = ingress
            runner.run(frame[:MAX_TEST_FRAME], tstamp_ns=ts_ns, ifindex=WAN_IFINDEX)
            if n % EVENT_DRAIN_EVERY == EVENT_DRAIN_EVERY - 1:
                run.drain()
        keys, values, result, table = run.finish()
        errors = {k: v - errors_before.get(k, 0) for k, v in datapath.error_counts().items()}
    finally:
        if owned:
            datapath.close()
    names = {c.class_id: c.name for c in policy.classes}
    flows, subflows = _flow_records(keys, values, names, result, table)
    mptcp = []
    for position, conn in enumerate(result.mptcp.connections if result is not None else []):
        for flow in flows:
            if flow["mptcp_connection"] == conn.id:
                flow["mptcp_connection"] = position
        mptcp.append({"id": position, "version": conn.version, "known": conn.known,
                      "tokens": sorted(conn.tokens), "class": conn.class_name,
                      "subflows": [subflows[f] for f in conn.subflows if f in subflows]})
    return Analysis(frames=len(frames) + unsupported, unsupported_frames=unsupported, flows=flows,
                    mptcp_connections=mptcp, errors=errors, events=run.events)


def steady_clock(frames: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Capture times as a clock that only moves forward by plausible steps: some capture
    clocks jump by days or years, or backwards; such a jump counts as 1 ms."""
    out = []
    previous = clock = None
    for ts_ns, frame in frames:
        if clock is None:
            clock = ts_ns if 0 <= ts_ns < MAX_PLAUSIBLE_NS else 0
        else:
            step = ts_ns - previous
            clock += step if 0 <= step <= MAX_STEP_NS else 1_000_000
        previous = ts_ns
        out.append((clock, frame))
    return out


class _ControllerRun:
    """The daemon's controller over the capture: a sweep and a tick each second of capture time."""

    def __init__(self, datapath, snippet_size: int):
        from anabranch.controller.flows import FlowRates
        from anabranch.controller.mptcp import MptcpOptions
        from anabranch.controller.tick import Controller, ControllerOptions

        self.datapath, self.snippet_size = datapath, snippet_size
        # A capture is read at once: keep every connection listed, however long ago it ended.
        self.controller = Controller(ControllerOptions(mptcp=MptcpOptions(linger_s=1e12)))
        self.rates = FlowRates()
        self.pending: list[ev.Event] = []
        self.events: list[ev.Event] = []
        self.next_tick: int | None = None
        self.last_ts = 0

    def drain(self) -> None:
        from . import events as event_codec

        decoded = event_codec.decode_all(self.datapath.drain_events(), self.snippet_size)
        self.pending += decoded
        self.events += decoded

    def maybe_tick(self, ts_ns: int) -> None:
        self.last_ts = max(self.last_ts, ts_ns)
        if self.next_tick is None:
            self.next_tick = ts_ns + TICK_NS
        if ts_ns >= self.next_tick:
            self.tick(self.next_tick)
            # Quiet stretches of a capture (minutes, days) need no empty ticks.
            self.next_tick += max(1, (ts_ns - self.next_tick) // TICK_NS + 1) * TICK_NS

    def tick(self, now_ns: int):
        from .control import extras_of

        self.drain()
        keys, values = self.datapath.sweep_flows()
        table = self.rates.update(keys, values, now_ns)
        result = self.controller.tick(table, self.pending, now_ns / 1e9, extras_of(table))
        self.pending = []
        return keys, values, result, table

    def finish(self):
        now = max(self.next_tick or 0, self.last_ts + 1)
        keys, values, result, table = self.tick(now)
        self.controller.close()
        return keys, values, result, table


def _flow_records(keys: np.ndarray, values: np.ndarray, names: dict[int, str], result,
                  table) -> tuple[list[dict], dict[int, dict]]:
    connection_of = {f: c.id for c in (result.mptcp.connections if result is not None else ())
                     for f in c.subflows}
    ids = flow_ids(keys)
    decided: dict[int, tuple[str, str]] = {}
    if result is not None and len(table):
        c = result.classification
        decided = {int(fid): (c.class_of(row), c.reason_of(row)) for row, fid in enumerate(table.ids.tolist())}
    order = np.argsort(values["first_seen_ns"], kind="stable")
    flows, subflows = [], {}
    for row in order.tolist():
        key, value, fid = keys[row], values[row], int(ids[row])
        family = int(key["family"])
        dirs = value["dir"]
        packets, octets = dirs["packets"], dirs["bytes"]
        subtypes = int(value["mptcp_subtypes"])
        kernel_class = names.get(int(value["class_id"]), "unclassified")
        class_name, reason = decided.get(fid, (kernel_class, "kernel"))
        record = {
            "id": f"{fid:016x}",
            "proto": kstructs.proto_name(key["proto"]),
            "src": kstructs.address(family, key["lan_addr"]), "sport": int(key["lan_port"]),
            "dst": kstructs.address(family, key["remote_addr"]), "dport": int(key["remote_port"]),
            "packets": int(packets.sum()), "bytes": int(octets.sum()),
            "packets_up": int(packets[0]), "packets_down": int(packets[1]),
            "bytes_up": int(octets[0]), "bytes_down": int(octets[1]),
            "class": class_name, "reason": reason, "kernel_class": kernel_class,
            "mptcp_connection": connection_of.get(fid),
            "mptcp_subtypes": [n for i, n in enumerate(kstructs.MPTCP_SUBTYPES) if subtypes >> i & 1],
            "retransmits": [int(dirs[0]["retransmits"]), int(dirs[1]["retransmits"])],
            "rtt_us": [round(int(dirs[d]["rtt_srtt_ns"]) / 1000, 1) if int(dirs[d]["rtt_samples"]) else None
                       for d in (0, 1)],
            "first_seen": int(value["first_seen_ns"]) / 1e9, "last_seen": int(value["last_seen_ns"]) / 1e9,
        }
        flows.append(record)
        subflows[fid] = {k: record[k] for k in ("src", "sport", "dst", "dport", "packets", "bytes")}
    return flows, subflows


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render(analysis: Analysis) -> str:
    lines = [f"{analysis.frames} frames ({analysis.unsupported_frames} of unsupported link types), "
             f"{len(analysis.flows)} flows, {len(analysis.mptcp_connections)} MPTCP connections"]
    errors = {k: v for k, v in analysis.errors.items() if v}
    if errors:
        lines.append("datapath errors: " + ", ".join(f"{k} {v}" for k, v in errors.items()))
    lines += ["", f"{'proto':<7}{'opened by':<44}{'remote':<44}{'packets':>8}{'bytes':>10}  class (reason)  mptcp"]
    for f in analysis.flows:
        conn = "" if f["mptcp_connection"] is None else f"#{f['mptcp_connection']}"
        lines.append(f"{f['proto']:<7}{_endpoint(f['src'], f['sport']):<44}{_endpoint(f['dst'], f['dport']):<44}"
                     f"{f['packets']:>8}{f['bytes']:>10}  {f['class']} ({f['reason']})  {conn}")
    for c in analysis.mptcp_connections:
        tokens = ", ".join(f"{t:08x}" for t in c["tokens"])
        lines += ["", f"MPTCP connection #{c['id']} (v{c['version']}, tokens {tokens})"]
        for s in c["subflows"]:
            lines.append(f"  {_endpoint(s['src'], s['sport'])} -> {_endpoint(s['dst'], s['dport'])}  "
                         f"{s['packets']} packets, {s['bytes']} bytes")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anabranch analyze", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="pcap or pcapng capture")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("anabranch analyze: must run as root (it loads the datapath with BPF)", file=sys.stderr)
        return 1
    try:
        analysis = analyze(args.file)
    except (CaptureError, OSError) as exc:
        print(f"anabranch analyze: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(analysis.document(), indent=2) if args.json else render(analysis))
    return 0


if __name__ == "__main__":
    sys.exit(main())
