"""Per WAN link (path): throughput, passive RTT p50/p95 over a window, jitter, loss
estimated from retransmissions, a 0-100 quality score, and the best path per class.

Score (defaults): 40 % latency `max(0, 100 - rtt_ms / 2)` on the window's p50 RTT;
40 % bandwidth `min(100, 10 * mbit_s)` on the window's peak throughput, or
`100 * peak / capacity` when the link's capacity is configured; 20 % stability,
100 at no loss falling linearly to 0 at `loss_zero_pct` (1 %), so 0.1 % loss = 90.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import options as opt
from .features import CounterDeltas, FlowExtras
from .flows import DOWN, UP, FlowTable

# Samples kept per link per tick: enough for a p95, bounded for 100 000 flows.
SAMPLES_PER_TICK = 128


@dataclass(frozen=True)
class LinkSpec:
    name: str
    ifindex: int
    up_mbit: float | None = None
    down_mbit: float | None = None


@dataclass
class PathOptions:
    window_s: float = 60.0
    latency_weight: float = 0.4
    bandwidth_weight: float = 0.4
    stability_weight: float = 0.2
    loss_zero_pct: float = 1.0

    @classmethod
    def configure(cls, table: dict[str, Any], path: str = "paths") -> "PathOptions":
        errors: list[str] = []
        r = opt.Reader(table, path, errors)
        result = cls(window_s=r.get("window_s", 60.0, opt.number(1, 3600)),
                     latency_weight=r.get("latency_weight", 0.4, opt.number(0, 1)),
                     bandwidth_weight=r.get("bandwidth_weight", 0.4, opt.number(0, 1)),
                     stability_weight=r.get("stability_weight", 0.2, opt.number(0, 1)),
                     loss_zero_pct=r.get("loss_zero_pct", 1.0, opt.number(0.01, 100)))
        r.finish()
        total = result.latency_weight + result.bandwidth_weight + result.stability_weight
        if not errors and abs(total - 1.0) > 1e-6:
            errors.append(f"{path}: latency_weight + bandwidth_weight + stability_weight must be 1, got {total:g}")
        if errors:
            raise opt.OptionsError(errors)
        return result


@dataclass
class PathStats:
    name: str
    ifindex: int
    up_bps: float
    down_bps: float
    flows: int
    utilisation_pct: float | None      # of the configured capacity, the busier direction
    rtt_p50_ms: float | None
    rtt_p95_ms: float | None
    jitter_ms: float | None
    loss_pct: float | None
    latency_score: float | None
    bandwidth_score: float
    stability_score: float | None
    score: float

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


def latency_score(rtt_ms: float) -> float:
    return max(0.0, 100.0 - rtt_ms / 2.0)


def bandwidth_score(mbit_s: float, capacity_mbit: float | None = None) -> float:
    if capacity_mbit:
        return max(0.0, min(100.0, 100.0 * mbit_s / capacity_mbit))
    return max(0.0, min(100.0, 10.0 * mbit_s))


def stability_score(loss_pct: float, zero_at_pct: float = 1.0) -> float:
    return max(0.0, 100.0 * (1.0 - loss_pct / zero_at_pct))


@dataclass
class _Tick:
    t: float
    rtt: np.ndarray
    rtt_median: float
    retrans: float
    packets: float
    mbit: float


@dataclass
class _Link:
    spec: LinkSpec
    window: deque = field(default_factory=deque)


class PathMonitor:
    def __init__(self, links: list[LinkSpec] | None = None, options: PathOptions | None = None):
        self.options = options or PathOptions()
        self.links: dict[int, _Link] = {s.ifindex: _Link(s) for s in links or []}
        self._packets = CounterDeltas()
        self._retrans = CounterDeltas()

    def set_links(self, specs: list[LinkSpec]) -> None:
        """Replace the known links (a re-created link has a new ifindex); a link whose
        spec is unchanged keeps its window."""
        wanted = {s.ifindex: s for s in specs}
        for ifindex in [i for i in self.links if i not in wanted]:
            del self.links[ifindex]
        for ifindex, spec in wanted.items():
            link = self.links.get(ifindex)
            if link is None:
                self.links[ifindex] = _Link(spec)
            else:
                link.spec = spec

    def update(self, table: FlowTable, now: float, extras: FlowExtras | None = None,
               packet_deltas: np.ndarray | None = None) -> list[PathStats]:
        """`packet_deltas` [n, 2] saves recomputing the tick's packets from counters."""
        ifindex = table.keys["ifindex"].astype(np.int64)
        if packet_deltas is None:
            packet_deltas = self._packets.update(table.ids, table.packets)
        packets = packet_deltas.sum(axis=1)
        retrans = None
        if extras is not None and extras.retrans is not None:
            r = extras.retrans if extras.retrans.ndim == 1 else extras.retrans.sum(axis=1)
            retrans = self._retrans.update(table.ids, r.astype(np.uint64))
        rtt = extras.rtt_ms if extras is not None and extras.rtt_ms is not None else None
        for idx in np.unique(ifindex).tolist():
            if idx not in self.links:
                self.links[idx] = _Link(LinkSpec(name=str(idx), ifindex=idx))
        stats = []
        active = table.pps.sum(axis=1) > 0
        for idx, link in self.links.items():
            rows = ifindex == idx
            up = float(table.bps[rows, UP].sum())
            down = float(table.bps[rows, DOWN].sum())
            samples = np.zeros(0)
            if rtt is not None:
                samples = rtt[rows & active]
                samples = samples[~np.isnan(samples)]
                if len(samples) > SAMPLES_PER_TICK:
                    samples = np.sort(samples)[np.linspace(0, len(samples) - 1, SAMPLES_PER_TICK).astype(int)]
            link.window.append(_Tick(
                t=now, rtt=samples, rtt_median=float(np.median(samples)) if len(samples) else math.nan,
                retrans=float(retrans[rows].sum()) if retrans is not None else math.nan,
                packets=float(packets[rows].sum()), mbit=max(up, down) / 1e6))
            while link.window and now - link.window[0].t > self.options.window_s:
                link.window.popleft()
            stats.append(self._stats(link, up, down, int(rows.sum())))
        return stats

    def _stats(self, link: _Link, up: float, down: float, flows: int) -> PathStats:
        o = self.options
        window = link.window
        all_rtt = np.concatenate([t.rtt for t in window]) if window else np.zeros(0)
        p50 = p95 = jitter = None
        if len(all_rtt):
            p50, p95 = (float(v) for v in np.percentile(all_rtt, [50, 95]))
            medians = np.array([t.rtt_median for t in window if not math.isnan(t.rtt_median)])
            jitter = float(np.mean(np.abs(np.diff(medians)))) if len(medians) > 1 else 0.0
        retrans = [t.retrans for t in window if not math.isnan(t.retrans)]
        packets = sum(t.packets for t in window if not math.isnan(t.retrans))
        loss = 100.0 * sum(retrans) / packets if retrans and packets else (0.0 if retrans else None)
        capacity = max(link.spec.up_mbit or 0, link.spec.down_mbit or 0) or None
        utilisation = None
        if link.spec.up_mbit or link.spec.down_mbit:
            parts = []
            if link.spec.up_mbit:
                parts.append(up / 1e6 / link.spec.up_mbit)
            if link.spec.down_mbit:
                parts.append(down / 1e6 / link.spec.down_mbit)
            utilisation = 100.0 * max(parts)
        peak = max((t.mbit for t in window), default=0.0)
        lat = latency_score(p50) if p50 is not None else None
        bw = bandwidth_score(peak, capacity)
        stab = stability_score(loss, o.loss_zero_pct) if loss is not None else None
        # Unknown parts are left out and the known weights renormalised.
        parts = [(w, s) for w, s in ((o.latency_weight, lat), (o.bandwidth_weight, bw),
                                      (o.stability_weight, stab)) if s is not None and w > 0]
        weight = sum(w for w, _ in parts)
        score = sum(w * s for w, s in parts) / weight if weight else 0.0
        return PathStats(link.spec.name, link.spec.ifindex, up, down, flows, utilisation, p50, p95,
                         jitter, loss, lat, bw, stab, round(score, 1))


def recommend(stats: list[PathStats]) -> dict[str, str | None]:
    """Which path suits each class: voice/interactive the lowest delay and loss, video and
    file the most bandwidth, background the least utilised."""
    if not stats:
        return {c: None for c in ("voice", "video", "interactive", "file", "background")}

    def rtt(s: PathStats) -> float:
        return s.rtt_p95_ms if s.rtt_p95_ms is not None else 1e9

    def loss(s: PathStats) -> float:
        return s.loss_pct if s.loss_pct is not None else 0.0

    voice = min(stats, key=lambda s: (rtt(s) + 50 * loss(s) + 2 * (s.jitter_ms or 0.0), -s.score))
    interactive = min(stats, key=lambda s: (rtt(s) + 20 * loss(s), -s.score))
    bulk = max(stats, key=lambda s: (s.bandwidth_score * (s.stability_score if s.stability_score is not None else 100), s.score))
    idle = min(stats, key=lambda s: (s.utilisation_pct if s.utilisation_pct is not None else s.up_bps + s.down_bps, -s.score))
    return {"voice": voice.name, "video": bulk.name, "interactive": interactive.name,
            "file": bulk.name, "background": idle.name}
