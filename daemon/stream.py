"""The state stream: what the daemon publishes each tick, with `flows` delta-encoded.

`flows` is a full snapshot every `snapshot_every` ticks and a delta in between
(`upserts` of new or changed flows, `removed` ids).  Each topic's `seq` grows by
one per message, so a subscriber that sees a gap waits for the next snapshot or
asks for one with the `snapshot` command (anabranch.client.FlowMirror does both).
Only changed flows are turned into records, which is what keeps 10 000 flows cheap.
A small in-memory history of totals and link rates backs the `history` command.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np

from anabranch.controller.flows import locate

from .commands import classes_view, links_view, mptcp_view, shaping_view

SNAPSHOT_EVERY = 10
HISTORY_TICKS = 3600
# Flows whose history is kept because someone asked for them (`flow` command).
WATCHED_FLOWS = 64
WATCH_FOR_S = 300.0


class Stream:
    """Publishes one tick of state; answers snapshot and history queries."""

    def __init__(self, server, provider, snapshot_every: int = SNAPSHOT_EVERY,
                 history_ticks: int = HISTORY_TICKS):
        self.server = server
        self.p = provider
        self.snapshot_every = snapshot_every
        self.ticks = 0
        self._ids = np.zeros(0, dtype=np.uint64)      # last published flows, sorted
        self._signature = np.zeros(0, dtype=np.uint64)
        self._active = np.zeros(0, dtype=bool)
        self._records: dict[str, dict[str, Any]] = {}
        self._flows_seq = 0
        self._flows_ts = 0.0
        self._flows_count = 0
        self._history: deque[dict[str, float]] = deque(maxlen=history_ticks)
        self._watched: dict[str, tuple[float, deque]] = {}

    # -- one tick -------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        state = self.p.state()
        self.server.publish("state", state, now)
        if self.p.table is not None:
            body = self.flows_body(self.p.config.daemon.publish_flows)
            self._flows_seq = self.server.publish("flows", body, now)
            self._flows_ts = now
        links = links_view(self.p)
        self.server.publish("links", {"links": links}, now)
        self.server.publish("classes", {"classes": classes_view(self.p), "shaping": shaping_view(self.p)}, now)
        self.server.publish("mptcp", mptcp_view(self.p), now)
        predictions = getattr(self.p, "predictions_view", None)
        self.server.publish("predictions", predictions() if predictions is not None else
                            {"available": False, "method": None, "classes": [], "links": []}, now)
        self._record(now, state, links)
        self.ticks += 1

    def flows_body(self, limit: int) -> dict[str, Any]:
        """Body of the next `flows` message; updates the mirror kept for `snapshot`."""
        table = self.p.table
        rows = table.top(limit) if limit > 0 else np.zeros(0, dtype=np.int64)
        ids = table.ids[rows]
        signature = table.bytes[rows].sum(axis=1) + table.packets[rows].sum(axis=1)
        active = table.bps[rows].sum(axis=1) > 0

        if len(self._ids):
            pos, known = locate(self._ids, ids)
            # A flow that was moving last tick and is idle now changed too: its rate fell to 0.
            changed = ~known | (self._signature[pos] != signature) | (known & self._active[pos])
        else:
            changed = np.ones(len(ids), dtype=bool)
        gone = np.setdiff1d(self._ids, ids, assume_unique=True)
        upserts = self.p.flow_records(rows[changed])
        removed = [f"{int(i):016x}" for i in gone.tolist()]
        for flow_id in removed:
            self._records.pop(flow_id, None)
        for record in upserts:
            self._records[record["id"]] = record

        order = np.argsort(ids, kind="stable")
        self._ids, self._signature, self._active = ids[order], signature[order], active[order]
        self._flows_count = len(table)
        snapshot = self.ticks % self.snapshot_every == 0
        if snapshot:
            return {"snapshot": True, "count": len(table), "flows": list(self._records.values())}
        return {"snapshot": False, "count": len(table), "upserts": upserts, "removed": removed}

    def flows_snapshot(self) -> dict[str, Any] | None:
        """The flows a subscriber holds after applying every message up to `seq`."""
        if self._flows_seq == 0:
            return None
        return {"topic": "flows", "seq": self._flows_seq, "ts": self._flows_ts, "snapshot": True,
                "count": self._flows_count, "flows": list(self._records.values())}

    # -- in-memory history ------------------------------------------------------------
    def _record(self, now: float, state: dict[str, Any], links: list[dict[str, Any]]) -> None:
        totals = state.get("totals") or {}
        point = {"ts": now, "total.up_bps": float(totals.get("up_bps", 0.0)),
                 "total.down_bps": float(totals.get("down_bps", 0.0)),
                 "total.flows": float(totals.get("flows", 0))}
        for link in links:
            point[f"link.{link['name']}.up_bps"] = float(link.get("up_bps", 0.0))
            point[f"link.{link['name']}.down_bps"] = float(link.get("down_bps", 0.0))
        self._history.append(point)
        self._record_watched(now)

    def series_names(self) -> list[str]:
        names = {"total.up_bps", "total.down_bps", "total.flows"}
        for link in self.p.config.interfaces:
            names |= {f"link.{link.name}.up_bps", f"link.{link.name}.down_bps"}
        return sorted(names)

    def history(self, series: str, start: float | None, end: float | None, step: float) -> dict[str, Any]:
        if series not in self.series_names():
            raise KeyError(series)
        buckets: dict[float, list[float]] = {}
        for point in self._history:
            ts = point["ts"]
            if (start is not None and ts < start) or (end is not None and ts > end) or series not in point:
                continue
            buckets.setdefault(ts - ts % step, []).append(point[series])
        points = [[ts, sum(values) / len(values)] for ts, values in sorted(buckets.items())]
        return {"series": series, "step": step, "retention_s": self._retention(), "points": points}

    def _retention(self) -> float:
        return self._history.maxlen * self.p.config.daemon.tick_s

    # -- per-flow history, for flows someone is looking at -----------------------------
    def watch_flow(self, flow_id: str, now: float | None = None) -> list[list[float]]:
        """Start (or keep) recording this flow's rates; return what is recorded so far."""
        now = time.time() if now is None else now
        if flow_id not in self._watched and len(self._watched) >= WATCHED_FLOWS:
            oldest = min(self._watched, key=lambda k: self._watched[k][0])
            del self._watched[oldest]
        points = self._watched[flow_id][1] if flow_id in self._watched else deque(maxlen=600)
        self._watched[flow_id] = (now, points)
        return [list(p) for p in points]

    def _record_watched(self, now: float) -> None:
        table = self.p.table
        for flow_id, (asked, points) in list(self._watched.items()):
            if now - asked > WATCH_FOR_S or table is None:
                del self._watched[flow_id]
                continue
            wanted = np.uint64(int(flow_id, 16))
            pos = int(np.searchsorted(table.ids, wanted))
            if pos < len(table.ids) and table.ids[pos] == wanted:
                points.append((now, float(table.bps[pos, 0]), float(table.bps[pos, 1])))
