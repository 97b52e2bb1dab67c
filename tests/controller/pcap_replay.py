"""Dev/test tool: replay a capture through the controller the way the datapath would
feed it (per-flow counters swept every second, NewFlow, payload snippets, DNS answers,
MP_CAPABLE/MP_JOIN events), and print analyzer-shaped results and oracle scores.

Only for tuning and checking the controller against ../shared/data/pcaps before the
real `anabranch analyze` exists; it reads captures with dpkt (a test dependency).

    .venv/bin/python tests/controller/pcap_replay.py ndpi      # class agreement over the nDPI set
    .venv/bin/python tests/controller/pcap_replay.py mptcp     # MPTCP subflow grouping
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import sys
from pathlib import Path

import dpkt
import numpy as np

from anabranch.controller import oracle
from anabranch.controller.events import FlowKey, MpCapable, MpJoin, NewFlow, PayloadSnippet
from anabranch.controller.features import FlowExtras
from anabranch.controller.flows import FlowRates, flow_ids
from anabranch.controller.tick import Controller
from anabranch.daemon import kstructs

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO.parent / "shared" / "data" / "pcaps"
SNIPPET_BYTES = 1500          # payload kept per snippet: a whole QUIC Initial (>= 1200 B)
SNIPPET_PACKETS = 3           # first payload packets per direction that are reported
TCP, UDP = socket.IPPROTO_TCP, socket.IPPROTO_UDP


def _packets(path: Path):
    """(ts, ip packet) for every IPv4/IPv6 packet, whatever the link type; GTP-U unwrapped."""
    with open(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        link = reader.datalink()
        for ts, frame in reader:
            ip = _network(link, frame)
            if ip is None:
                continue
            inner = _gtp_inner(ip)
            yield ts, inner if inner is not None else ip


def _network(link: int, frame: bytes):
    try:
        if link == dpkt.pcap.DLT_EN10MB:
            eth = dpkt.ethernet.Ethernet(frame)
            ip = eth.data
        elif link == dpkt.pcap.DLT_LINUX_SLL:
            ip = dpkt.sll.SLL(frame).data
        elif link == 276:  # LINUX_SLL2
            ip = dpkt.sll2.SLL2(frame).data
        elif link in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
            ip = _raw(frame[4:])
        else:
            ip = _raw(frame)
    except (dpkt.UnpackError, struct.error, ValueError, IndexError):
        return None
    return ip if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) else None


def _raw(data: bytes):
    if not data:
        return None
    return dpkt.ip.IP(data) if data[0] >> 4 == 4 else dpkt.ip6.IP6(data) if data[0] >> 4 == 6 else None


def _gtp_inner(ip):
    udp = ip.data
    if not isinstance(udp, dpkt.udp.UDP) or 2152 not in (udp.sport, udp.dport):
        return None
    data = bytes(udp.data)
    if len(data) < 8 or data[1] != 0xFF:
        return None
    offset = 8 + (4 if data[0] & 0x07 else 0)
    try:
        return _raw(data[offset:])
    except (dpkt.UnpackError, ValueError):
        return None


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_private or ip.is_link_local or ip.is_multicast


def _addr(ip, src: bool) -> str:
    raw = ip.src if src else ip.dst
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _mptcp_options(tcp) -> list[bytes]:
    return [bytes(d) for kind, d in dpkt.tcp.parse_opts(tcp.opts) if kind == 30 and d]


class Replay:
    def __init__(self, controller: Controller | None = None):
        self.controller = controller or Controller()
        self.rates = FlowRates()
        self.flows: dict[tuple, dict] = {}
        self.events: list = []
        self.result = None

    def _flow(self, ip, ts_ns: int):
        proto = ip.p if isinstance(ip, dpkt.ip.IP) else ip.nxt
        l4 = ip.data
        sport = getattr(l4, "sport", 0) if proto in (TCP, UDP) else 0
        dport = getattr(l4, "dport", 0) if proto in (TCP, UDP) else 0
        src, dst = _addr(ip, True), _addr(ip, False)
        for key, up in (((proto, src, sport, dst, dport), True), ((proto, dst, dport, src, sport), False)):
            if key in self.flows:
                return self.flows[key], up
        # The LAN side: the private end if exactly one is private, else whoever spoke first.
        up = not (_private(dst) and not _private(src))
        lan, lport, remote, rport = (src, sport, dst, dport) if up else (dst, dport, src, sport)
        key = (proto, lan, lport, remote, rport)
        family = 4 if isinstance(ip, dpkt.ip.IP) else 6
        fk = FlowKey(2, family, proto, lan, lport, remote, rport)
        record = self.flows[key] = {"key": fk, "id": self._id(fk), "packets": [0, 0], "bytes": [0, 0],
                                    "first": ts_ns, "last": ts_ns, "snippets": [0, 0], "mptcp": False}
        self.events.append(NewFlow(ts_ns, record["id"], fk, 0 if up else 1))
        return record, up

    @staticmethod
    def _id(fk: FlowKey) -> int:
        k = np.zeros(1, dtype=kstructs.FLOW_KEY)
        k["ifindex"], k["family"], k["proto"] = fk.ifindex, fk.family, fk.proto
        k["lan_port"], k["remote_port"] = fk.lan_port, fk.remote_port
        for field, text in (("lan_addr", fk.lan_addr), ("remote_addr", fk.remote_addr)):
            packed = ipaddress.ip_address(text).packed
            k[field][0, : len(packed)] = np.frombuffer(packed, dtype=np.uint8)
        return int(flow_ids(k)[0])

    def packet(self, ts_ns: int, ip) -> None:
        flow, up = self._flow(ip, ts_ns)
        d = 0 if up else 1
        flow["packets"][d] += 1
        flow["bytes"][d] += len(ip)
        flow["last"] = ts_ns
        l4 = ip.data
        payload = bytes(getattr(l4, "data", b"")) if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)) else b""
        fk = flow["key"]
        if payload and flow["snippets"][d] < SNIPPET_PACKETS:
            flow["snippets"][d] += 1
            dns = fk.proto == UDP and 53 in (fk.remote_port, fk.lan_port) and not up
            self.events.append(PayloadSnippet(ts_ns, flow["id"], fk, d, payload[:SNIPPET_BYTES], dns))
        elif payload and not up and fk.proto == UDP and 53 in (fk.remote_port, fk.lan_port):
            self.events.append(PayloadSnippet(ts_ns, flow["id"], fk, d, payload[:SNIPPET_BYTES], True))
        if isinstance(l4, dpkt.tcp.TCP):
            for opt in _mptcp_options(l4):
                flow["mptcp"] = True
                self._mptcp_event(opt, l4, flow, d, ts_ns)

    def _mptcp_event(self, opt: bytes, tcp, flow, d: int, ts_ns: int) -> None:
        subtype, fk = opt[0] >> 4, flow["key"]
        syn = bool(tcp.flags & dpkt.tcp.TH_SYN)
        if subtype == 0 and len(opt) >= 10:
            version = opt[0] & 0x0F
            sender = int.from_bytes(opt[2:10], "big")
            receiver = int.from_bytes(opt[10:18], "big") if len(opt) >= 18 else None
            self.events.append(MpCapable(ts_ns, flow["id"], fk, d, version, sender, receiver))
        elif subtype == 1 and syn and not tcp.flags & dpkt.tcp.TH_ACK and len(opt) >= 10:
            self.events.append(MpJoin(ts_ns, flow["id"], fk, d, int.from_bytes(opt[2:6], "big"), opt[1]))

    def tick(self, now_ns: int) -> None:
        records = list(self.flows.values())
        keys = np.zeros(len(records), dtype=kstructs.FLOW_KEY)
        values = np.zeros(len(records), dtype=kstructs.FLOW)
        for i, r in enumerate(records):
            fk = r["key"]
            keys[i]["ifindex"], keys[i]["family"], keys[i]["proto"] = fk.ifindex, fk.family, fk.proto
            keys[i]["lan_port"], keys[i]["remote_port"] = fk.lan_port, fk.remote_port
            for field, text in (("lan_addr", fk.lan_addr), ("remote_addr", fk.remote_addr)):
                packed = ipaddress.ip_address(text).packed
                keys[i][field][: len(packed)] = np.frombuffer(packed, dtype=np.uint8)
            values[i]["dir"]["packets"] = r["packets"]
            values[i]["dir"]["bytes"] = r["bytes"]
            values[i]["first_seen_ns"], values[i]["last_seen_ns"] = r["first"], r["last"]
        table = self.rates.update(keys, values, now_ns)
        by_id = {r["id"]: r for r in records}
        seen = np.array([by_id[int(i)]["mptcp"] for i in table.ids], dtype=bool)
        self.result = (table, self.controller.tick(table, self.events, now_ns / 1e9, FlowExtras(mptcp_seen=seen)))
        self.events = []

    def run(self, path: Path) -> dict:
        next_tick = None
        previous, clock = None, 10**12
        for ts, ip in _packets(path):
            # Some capture clocks jump (days, or backwards): keep a monotonic clock that
            # takes plausible steps and treats a jump as 1 ms.
            step = 0.0 if previous is None else ts - previous
            previous = ts
            clock += int((step if 0 <= step <= 3600 else 0.001) * 1e9)
            ts_ns = clock
            if next_tick is None:
                next_tick = ts_ns + 1_000_000_000
            if ts_ns >= next_tick:
                self.tick(next_tick)
                # Quiet stretches of a capture (minutes, days) need no empty ticks.
                next_tick += max(1, (ts_ns - next_tick) // 1_000_000_000 + 1) * 1_000_000_000
            self.packet(ts_ns, ip)
        if next_tick is not None:
            self.tick(next_tick)
        return self.analyzer_result()

    def analyzer_result(self) -> dict:
        if self.result is None:
            return {"flows": [], "mptcp_connections": []}
        table, result = self.result
        c = result.classification
        flows = []
        for row in range(len(table)):
            k = table.keys[row]
            fam = int(k["family"])
            flows.append({"proto": int(k["proto"]), "src": kstructs.address(fam, k["lan_addr"]),
                          "sport": int(k["lan_port"]), "dst": kstructs.address(fam, k["remote_addr"]),
                          "dport": int(k["remote_port"]), "bytes": int(table.bytes[row].sum()),
                          "class": c.class_of(row), "reason": c.reason_of(row),
                          "host": c.name_of(int(table.ids[row]))})
        key_of = {int(table.ids[r]): flows[r] for r in range(len(table))}
        conns = []
        for conn in result.mptcp.connections:
            subs = [key_of[f] for f in conn.subflows if f in key_of]
            conns.append({"known": conn.known, "tokens": sorted(conn.tokens), "class": conn.class_name,
                          "subflows": [{k: s[k] for k in ("src", "sport", "dst", "dport")} for s in subs]})
        return {"flows": flows, "mptcp_connections": conns}


def replay(path: Path) -> dict:
    return Replay().run(path)


def main(argv: list[str]) -> int:
    which = argv[0] if argv else "ndpi"
    if which == "ndpi":
        results = {p.name: replay(p) for p in sorted((PCAPS / "ndpi" / "pcap").iterdir())}
        score = oracle.class_agreement_files(results, PCAPS / "ndpi" / "FLOWS.tsv")
        print(json.dumps({"class_agreement_bytes": round(score.class_agreement_bytes, 4),
                          "flows_labelled": score.flows_labelled, "flows_missing": score.flows_missing,
                          "confusion": score.confusion,
                          "per_capture": {k: round(v, 3) for k, v in score.per_capture.items()}}, indent=1))
    else:
        results = {f"{p.parent.name}/{p.name}": replay(p) for p in sorted((PCAPS / "mptcp").glob("*/*.pcap"))}
        score = oracle.mptcp_subflows_files(results, PCAPS / "mptcp" / "ALL_SUBFLOWS.tsv")
        print(json.dumps(score.as_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
