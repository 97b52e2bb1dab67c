"""MPTCP correlation from packets: connections by token, their subflows and per-subflow
and per-connection figures, and the token -> class map joined subflows inherit.

A connection's token is the most significant 32 bits of SHA-256(key) (v1, RFC 8684)
or SHA-1(key) (v0, RFC 6824), the key taken as 8 bytes in network order.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

import numpy as np

from . import options as opt
from .classify import CLASSES
from .events import FlowEnd, MpCapable, MpFastClose, MpJoin, MpTcpRst, NewFlow
from .features import FlowExtras
from .flows import DOWN, UP, FlowTable, locate


def key_token(key: int, version: int) -> int:
    digest = (hashlib.sha256 if version >= 1 else hashlib.sha1)(key.to_bytes(8, "big")).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass
class Subflow:
    flow_id: int
    role: str                  # "initial", "join" or "unknown" (seen mid-connection)
    address_id: int | None = None
    started: float | None = None
    ended: float | None = None
    end_reason: str | None = None
    # Figures of the latest tick; bytes/packets are totals [UP, DOWN].
    ifindex: int | None = None
    bytes: tuple[int, int] = (0, 0)
    packets: tuple[int, int] = (0, 0)
    bps: tuple[float, float] = (0.0, 0.0)
    rtt_ms: float = float("nan")
    retrans: int = 0
    share: float = 0.0         # of the connection's bytes


@dataclass
class Connection:
    id: int
    version: int | None
    tokens: set[int] = field(default_factory=set)
    subflows: dict[int, Subflow] = field(default_factory=dict)
    known: bool = True         # False: subflows seen without any handshake
    started: float | None = None
    ended: float | None = None
    end_reason: str | None = None
    class_name: str | None = None
    last_seen: float | None = None

    @property
    def bytes(self) -> tuple[int, int]:
        return (sum(s.bytes[UP] for s in self.subflows.values()),
                sum(s.bytes[DOWN] for s in self.subflows.values()))

    def summary(self) -> dict:
        return {
            "id": self.id, "version": self.version, "known": self.known,
            "tokens": [f"{t:08x}" for t in sorted(self.tokens)], "class": self.class_name,
            "started": self.started, "ended": self.ended, "end_reason": self.end_reason,
            "bytes_up": self.bytes[UP], "bytes_down": self.bytes[DOWN],
            "subflows": [{"flow_id": f"{s.flow_id:016x}", "role": s.role, "ifindex": s.ifindex,
                          "bytes_up": s.bytes[UP], "bytes_down": s.bytes[DOWN],
                          "packets_up": s.packets[UP], "packets_down": s.packets[DOWN],
                          "bps_up": s.bps[UP], "bps_down": s.bps[DOWN], "rtt_ms": s.rtt_ms,
                          "retrans": s.retrans, "share": s.share, "ended": s.ended}
                         for s in self.subflows.values()],
        }


@dataclass
class MptcpOptions:
    linger_s: float = 60.0     # how long an ended (or idle) connection stays listed

    @classmethod
    def configure(cls, table: dict, path: str = "mptcp") -> "MptcpOptions":
        errors: list[str] = []
        r = opt.Reader(table, path, errors)
        result = cls(linger_s=r.get("linger_s", 60.0, opt.number(0, 86_400)))
        r.finish()
        if errors:
            raise opt.OptionsError(errors)
        return result


class MptcpTracker:
    def __init__(self, options: MptcpOptions | None = None):
        self.options = options or MptcpOptions()
        self.connections: dict[int, Connection] = {}
        self.by_token: dict[int, int] = {}
        self.by_flow: dict[int, int] = {}
        self._ids = itertools.count(1)
        self._sub_ids = np.zeros(0, dtype=np.uint64)
        self._sub_conn = np.zeros(0, dtype=np.int64)
        self._dirty = True
        self._now = 0.0

    # -- events -----------------------------------------------------------------------
    def _new(self, version: int | None, known: bool, started: float | None) -> Connection:
        conn = Connection(id=next(self._ids), version=version, known=known, started=started)
        self.connections[conn.id] = conn
        return conn

    def _attach(self, conn: Connection, flow_id: int, role: str, started: float | None,
                address_id: int | None = None) -> None:
        old = self.by_flow.get(flow_id)
        if old is not None and old != conn.id and old in self.connections:
            previous = self.connections[old]
            sub = previous.subflows.pop(flow_id, None)
            if not previous.subflows and not previous.known:
                del self.connections[old]
            if sub is not None and role == "unknown":
                role = sub.role
        if flow_id not in conn.subflows:
            conn.subflows[flow_id] = Subflow(flow_id, role, address_id, started)
        self.by_flow[flow_id] = conn.id
        self._dirty = True

    def _register_token(self, conn: Connection, token: int) -> None:
        other_id = self.by_token.get(token)
        if other_id is not None and other_id != conn.id and other_id in self.connections:
            # A join seen before its handshake made a placeholder: fold it in.
            other = self.connections.pop(other_id)
            for flow_id, sub in other.subflows.items():
                conn.subflows.setdefault(flow_id, sub)
                self.by_flow[flow_id] = conn.id
            for t in other.tokens:
                self.by_token[t] = conn.id
                conn.tokens.add(t)
            self._dirty = True
        conn.tokens.add(token)
        self.by_token[token] = conn.id

    def observe(self, events: list, to_epoch) -> None:
        for event in events:
            if isinstance(event, MpCapable):
                ts = to_epoch(event.ts_ns)
                conn_id = self.by_flow.get(event.flow_id)
                conn = self.connections.get(conn_id) if conn_id is not None else None
                if conn is None or not conn.known:
                    conn = self._new(event.version, True, ts)
                    self._attach(conn, event.flow_id, "initial", ts)
                conn.version = event.version
                self._register_token(conn, key_token(event.sender_key, event.version))
                if event.receiver_key is not None:
                    self._register_token(conn, key_token(event.receiver_key, event.version))
            elif isinstance(event, MpJoin):
                ts = to_epoch(event.ts_ns)
                conn_id = self.by_token.get(event.token)
                conn = self.connections.get(conn_id) if conn_id is not None else None
                if conn is None:
                    conn = self._new(None, True, ts)
                    conn.tokens.add(event.token)
                    self.by_token[event.token] = conn.id
                self._attach(conn, event.flow_id, "join", ts, event.address_id)
            elif isinstance(event, (FlowEnd, MpFastClose, MpTcpRst)):
                conn_id = self.by_flow.get(event.flow_id)
                conn = self.connections.get(conn_id) if conn_id is not None else None
                if conn is None:
                    continue
                ts = to_epoch(event.ts_ns)
                if isinstance(event, MpFastClose):
                    self._end(conn, ts, "fastclose")
                    continue
                sub = conn.subflows.get(event.flow_id)
                if sub is not None and sub.ended is None:
                    sub.ended = ts
                    sub.end_reason = event.reason if isinstance(event, FlowEnd) else "mp_tcprst"
                if all(s.ended is not None for s in conn.subflows.values()) and conn.ended is None:
                    conn.ended = ts
                    conn.end_reason = "all subflows closed"
            elif isinstance(event, NewFlow):
                continue

    def _end(self, conn: Connection, ts: float, reason: str) -> None:
        conn.ended = ts
        conn.end_reason = reason
        for sub in conn.subflows.values():
            if sub.ended is None:
                sub.ended, sub.end_reason = ts, reason

    # -- the tick -------------------------------------------------------------------------
    def update(self, table: FlowTable, events: list, now: float,
               extras: FlowExtras | None = None,
               class_index: np.ndarray | None = None) -> "MptcpResult":
        """Correlate, refresh per-subflow figures; `class_index` is each row's class (CLASSES)."""
        offset = now - table.now_ns / 1e9
        self._now = now
        self.observe(events, lambda ts_ns: ts_ns / 1e9 + offset)
        if extras is not None and extras.mptcp_seen is not None and extras.mptcp_seen.any():
            self._adopt_unknown(table, extras.mptcp_seen, now)
        if self._dirty:
            self._rebuild_index()
        rows_of = np.full(0, 0)
        inherit: dict[int, str] = {}
        if len(self._sub_ids) and len(table):
            pos, present = locate(table.ids, self._sub_ids)
            rows_of = np.where(present, pos, -1)
            self._refresh(table, extras, rows_of)
            if class_index is not None:
                inherit = self._classes(rows_of, class_index)
        self._expire(now, table)
        return MptcpResult(list(self.connections.values()), self.token_classes(), inherit)

    def _adopt_unknown(self, table: FlowTable, seen: np.ndarray, now: float) -> None:
        rows = np.flatnonzero(seen)
        for row in rows.tolist():
            fid = int(table.ids[row])
            if fid in self.by_flow:
                continue
            first = now - (table.now_ns - int(table.first_seen_ns[row])) / 1e9
            conn = self._new(None, False, first)
            self._attach(conn, fid, "unknown", first)

    def _rebuild_index(self) -> None:
        ids = np.fromiter(self.by_flow.keys(), dtype=np.uint64, count=len(self.by_flow))
        conns = np.fromiter(self.by_flow.values(), dtype=np.int64, count=len(self.by_flow))
        order = np.argsort(ids)
        self._sub_ids, self._sub_conn = ids[order], conns[order]
        self._dirty = False

    def _refresh(self, table: FlowTable, extras: FlowExtras | None, rows_of: np.ndarray) -> None:
        present = np.flatnonzero(rows_of >= 0)
        rows = rows_of[present]
        fids = self._sub_ids[present].tolist()
        conn_ids = self._sub_conn[present].tolist()
        ifindex = table.keys["ifindex"][rows].tolist()
        octets = table.bytes[rows].tolist()
        packets = table.packets[rows].tolist()
        bps = table.bps[rows].tolist()
        rtt = extras.rtt_ms[rows].tolist() if extras is not None and extras.rtt_ms is not None else None
        retrans = None
        if extras is not None and extras.retrans is not None:
            r = extras.retrans[rows]
            retrans = (r if r.ndim == 1 else r.sum(axis=1)).tolist()
        touched: dict[int, Connection] = {}
        for i, (fid, conn_id) in enumerate(zip(fids, conn_ids)):
            conn = self.connections.get(conn_id)
            sub = conn.subflows.get(fid) if conn else None
            if sub is None:
                continue
            sub.ifindex = ifindex[i]
            sub.bytes = tuple(octets[i])
            sub.packets = tuple(packets[i])
            sub.bps = tuple(bps[i])
            if rtt is not None:
                sub.rtt_ms = rtt[i]
            if retrans is not None:
                sub.retrans = int(retrans[i])
            conn.last_seen = self._now
            touched[conn.id] = conn
        for conn in touched.values():
            total = sum(sum(s.bytes) for s in conn.subflows.values())
            for sub in conn.subflows.values():
                sub.share = sum(sub.bytes) / total if total else 0.0

    def _classes(self, rows_of: np.ndarray, class_index: np.ndarray) -> dict[int, str]:
        """Connection class = its initial subflow's class; joined subflows inherit it."""
        row_by_flow = dict(zip(self._sub_ids.tolist(), rows_of.tolist()))
        inherit = {}
        for conn in self.connections.values():
            initial = next((s for s in conn.subflows.values() if s.role == "initial"), None)
            if initial is not None and row_by_flow.get(initial.flow_id, -1) >= 0:
                conn.class_name = CLASSES[int(class_index[row_by_flow[initial.flow_id]])]
            if conn.class_name is None:
                continue
            for sub in conn.subflows.values():
                if sub.role == "join":
                    inherit[sub.flow_id] = conn.class_name
        return inherit

    def token_classes(self) -> dict[int, str]:
        """token -> class for the datapath's map, so a joined subflow is classed at its SYN."""
        return {t: c.class_name for c in self.connections.values() if c.class_name and c.ended is None
                for t in c.tokens}

    def _expire(self, now: float, table: FlowTable) -> None:
        for conn in self.connections.values():
            # Subflows that left the flow table without a FIN (idle eviction) end the connection.
            if conn.ended is None and conn.last_seen is not None and now - conn.last_seen > self.options.linger_s:
                self._end(conn, conn.last_seen, "idle")
        gone = [c for c in self.connections.values()
                if c.ended is not None and now - c.ended > self.options.linger_s]
        for conn in gone:
            del self.connections[conn.id]
            for t in conn.tokens:
                if self.by_token.get(t) == conn.id:
                    del self.by_token[t]
            for fid in conn.subflows:
                if self.by_flow.get(fid) == conn.id:
                    del self.by_flow[fid]
            self._dirty = True


@dataclass
class MptcpResult:
    connections: list[Connection]
    token_classes: dict[int, str]
    inherit: dict[int, str]          # flow_id of a joined subflow -> its connection's class
