"""The Controller: one call per tick that runs, in this order, classification, MPTCP
correlation, path quality, per-host usage and quotas, alerts and the history write.

The daemon builds it once from validated options and calls `tick()` with the tick's
FlowTable, the datapath events decoded since the last tick and `now` (epoch seconds).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import options as opt
from .alerts import AlertChanges, AlertOptions, Alerting
from .classify import CLASS_INDEX, CLASSES, Classification, Classifier, ClassifyOptions, Policy
from .features import CounterDeltas, FlowExtras
from .flows import DOWN, UP, FlowTable, locate
from .history import History, Point, open_alerts
from .mptcp import MptcpOptions, MptcpResult, MptcpTracker
from .paths import LinkSpec, PathMonitor, PathOptions, PathStats, recommend
from .usage import QuotaEvent, UsageMeter, UsageOptions

INHERITED = "mptcp:join"


@dataclass
class ControllerOptions:
    classify: ClassifyOptions = field(default_factory=ClassifyOptions)
    mptcp: MptcpOptions = field(default_factory=MptcpOptions)
    paths: PathOptions = field(default_factory=PathOptions)
    usage: UsageOptions = field(default_factory=UsageOptions)
    alerts: AlertOptions = field(default_factory=AlertOptions)
    links: tuple[LinkSpec, ...] = ()
    history_path: str | None = None
    # History series per tick are bounded: the busiest hosts and connections only.
    history_hosts: int = 200
    history_connections: int = 200
    history_max_mb: float = 1024.0           # the database's size cap: oldest points go first

    @classmethod
    def configure(cls, table: dict[str, Any], links: tuple[LinkSpec, ...] = (),
                  path: str = "controller") -> "ControllerOptions":
        """Validate the controller's tables (`classify`, `paths`, `usage`, `alerts`,
        `history`); raise OptionsError listing every problem with its key."""
        errors: list[str] = []
        r = opt.Reader(table, path, errors)
        parts: dict[str, Any] = {}
        for key, kind in (("classify", ClassifyOptions), ("mptcp", MptcpOptions), ("paths", PathOptions),
                          ("usage", UsageOptions), ("alerts", AlertOptions)):
            raw = r.get(key, {}, lambda v: None if isinstance(v, dict) else "must be a table")
            try:
                parts[key] = kind.configure(raw, f"{path}.{key}")
            except opt.OptionsError as exc:
                errors.extend(exc.errors)
        hr = opt.Reader(r.get("history", {}, lambda v: None if isinstance(v, dict) else "must be a table"),
                        f"{path}.history", errors)
        history_path = hr.get("path", None, lambda v: None if isinstance(v, str) and v.startswith("/")
                              else "must be an absolute path")
        hosts = hr.get("hosts", 200, opt.number(0, 100_000, integer=True))
        conns = hr.get("connections", 200, opt.number(0, 100_000, integer=True))
        max_mb = hr.get("max_mb", 1024, opt.number(1, 1_000_000))
        hr.finish()
        r.finish()
        if errors:
            raise opt.OptionsError(errors)
        return cls(links=links, history_path=history_path, history_hosts=hosts,
                   history_connections=conns, history_max_mb=max_mb, **parts)


@dataclass
class DatapathHealth:
    """What the daemon knows of the datapath this tick (all optional)."""

    events_lost: int = 0                                       # since the last tick
    map_fill_pct: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)       # since the last tick
    # 1.0 for each configured link that is missing or down, 0.0 for one that is up.
    links_down: dict[str, float] = field(default_factory=dict)


@dataclass
class TickResult:
    now: float
    classification: Classification | None = None
    policy: Policy | None = None
    mptcp: MptcpResult | None = None
    paths: list[PathStats] = field(default_factory=list)
    recommendation: dict[str, str | None] = field(default_factory=dict)
    quota_events: list[QuotaEvent] = field(default_factory=list)
    alerts: AlertChanges = field(default_factory=AlertChanges)
    class_totals: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    # Why this tick's history write failed (e.g. the disk is full), else None.
    history_error: str | None = None

    def flow_class(self, row: int) -> tuple[str, str]:
        """(class, reason) of a row of the tick's FlowTable."""
        c = self.classification
        return c.class_of(row), c.reason_of(row)


class Controller:
    def __init__(self, options: ControllerOptions | None = None):
        self.options = options or ControllerOptions()
        o = self.options
        self.classifier = Classifier(o.classify)
        self.mptcp = MptcpTracker(o.mptcp)
        self.paths = PathMonitor(list(o.links), o.paths)
        self.usage = UsageMeter(o.usage)
        # Ticks in a row whose history write failed (a full or read-only state directory):
        # everything else keeps running, an alert says so, and the write is retried each tick.
        self.history_failures = 0
        self.history = self._open_history()
        first_alert = self.history.last_alert_id() + 1 if self.history else 1
        self.alerting = Alerting(o.alerts, first_id=first_alert)
        if self.history is not None:
            self.usage.restore(self.history.load_usage())
            try:
                if self.usage.month:
                    self.history.forget_usage_before(self.usage.month)
            except sqlite3.Error:
                pass    # a full or read-only disk: the stale rows go at a later start
        self._restored_alerts = False
        self._extra_metrics: dict[str, dict[str, float]] = {}
        self._deltas = CounterDeltas()
        self._tick_deltas = np.zeros((0, 4))
        # The composition, in order: each step reads what the previous ones produced.
        self.steps: tuple[tuple[str, Callable[..., None]], ...] = (
            ("classify", self._classify),
            ("mptcp", self._mptcp),
            ("paths", self._paths),
            ("usage", self._usage),
            ("alerts", self._alerts),
            ("history", self._history),
        )

    def _open_history(self) -> History | None:
        if not self.options.history_path:
            return None
        try:
            return History(self.options.history_path, int(self.options.history_max_mb * 1e6))
        except (sqlite3.Error, OSError):
            self.history_failures += 1
            return None

    def _restore(self, now: float) -> None:
        """Alerts the previous run left active stay active (see Alerting.restore)."""
        self._restored_alerts = True
        if self.history is not None:
            self.alerting.restore(open_alerts(self.history), now)

    def close(self) -> None:
        """Save the usage that a failed tick write left unsaved, then close the history."""
        if self.history is not None:
            unsaved = self.usage.unsaved()
            if unsaved:
                try:
                    self.history.save_usage(unsaved)
                except (sqlite3.Error, OSError):
                    pass    # a full or read-only disk: what the last good write saved stands
            self.history.close()

    def tick(self, table: FlowTable, events: list, now: float, extras: FlowExtras | None = None,
             datapath: DatapathHealth | None = None,
             metrics: dict[str, dict[str, float]] | None = None) -> TickResult:
        """`metrics`: more alert inputs by metric and subject (e.g. the predictor's anomalies)."""
        self._extra_metrics = metrics or {}
        if not self._restored_alerts:
            self._restore(now)
        if extras is not None:
            extras.check(len(table))
        result = TickResult(now=now)
        for _, step in self.steps:
            step(result, table, events, now, extras, datapath)
        return result

    # -- steps -----------------------------------------------------------------------------
    def _classify(self, result: TickResult, table, events, now, extras, datapath) -> None:
        result.classification = self.classifier.update(table, events, now, extras)

    def _mptcp(self, result: TickResult, table, events, now, extras, datapath) -> None:
        c = result.classification
        result.mptcp = self.mptcp.update(table, events, now, extras, c.class_index)
        if result.mptcp.inherit:
            # Joined subflows take their connection's class (the kernel does it by token).
            if INHERITED not in c.reasons:
                c.reasons = c.reasons + [INHERITED]
            reason = c.reasons.index(INHERITED)
            ids = np.fromiter(result.mptcp.inherit.keys(), dtype=np.uint64)
            pos, ok = locate(table.ids, ids)
            for row, fid in zip(pos[ok].tolist(), ids[ok].tolist()):
                c.class_index[row] = CLASS_INDEX[result.mptcp.inherit[fid]]
                c.reason_index[row] = reason
        result.policy = self.classifier.policy(table, c, result.mptcp.inherit)
        bps = table.bps
        totals = {}
        up = np.bincount(c.class_index, weights=bps[:, UP], minlength=len(CLASSES))
        down = np.bincount(c.class_index, weights=bps[:, DOWN], minlength=len(CLASSES))
        flows = np.bincount(c.class_index, minlength=len(CLASSES))
        for i, name in enumerate(CLASSES):
            totals[name] = {"up_bps": float(up[i]), "down_bps": float(down[i]), "flows": int(flows[i])}
        result.class_totals = totals

    def _paths(self, result: TickResult, table, events, now, extras, datapath) -> None:
        # One counter-delta pass for packets and bytes, shared by paths and usage.
        deltas = self._deltas.update(table.ids, np.concatenate([table.packets, table.bytes], axis=1))
        self._tick_deltas = deltas
        result.paths = self.paths.update(table, now, extras, packet_deltas=deltas[:, :2])
        result.recommendation = recommend(result.paths)

    def _usage(self, result: TickResult, table, events, now, extras, datapath) -> None:
        result.quota_events = self.usage.update(table, now, byte_deltas=self._tick_deltas[:, 2:])

    def _alerts(self, result: TickResult, table, events, now, extras, datapath) -> None:
        m: dict[str, dict[str, float]] = {
            "path.rtt_p95_ms": {p.name: p.rtt_p95_ms for p in result.paths if p.rtt_p95_ms is not None},
            "path.loss_pct": {p.name: p.loss_pct for p in result.paths if p.loss_pct is not None},
            "path.jitter_ms": {p.name: p.jitter_ms for p in result.paths if p.jitter_ms is not None},
            "path.score": {p.name: p.score for p in result.paths},
            "link.utilisation_pct": {p.name: p.utilisation_pct for p in result.paths
                                     if p.utilisation_pct is not None},
            "flows.active": {"-": float(len(table))},
        }
        if self.usage.options.quotas:
            m["quota.used_pct"] = {f"{q['quota']}:{q['subject']}": q["used_pct"]
                                   for q in self.usage.quota_usage(now)}
        if self.options.history_path:
            m["history.write_errors"] = {"-": float(self.history_failures)}
        if datapath is not None:
            m["datapath.events_lost"] = {"-": float(datapath.events_lost)}
            m["datapath.map_fill_pct"] = dict(datapath.map_fill_pct)
            m["datapath.errors"] = {k: float(v) for k, v in datapath.errors.items()}
            m["link.down"] = dict(datapath.links_down)
        m.update(self._extra_metrics)
        result.metrics = m
        result.alerts = self.alerting.update(m, now)

    def _history(self, result: TickResult, table, events, now, extras, datapath) -> None:
        if self.history is None:
            if not self.options.history_path:
                return    # no history configured: nothing is failing
            self.history = self._open_history()
            if self.history is None:
                result.history_error = f"cannot open {self.options.history_path}"
                return
        points = [Point("total", "-", "flows", float(len(table)))]
        for name, t in result.class_totals.items():
            points += [Point("class", name, "up_bps", t["up_bps"]), Point("class", name, "down_bps", t["down_bps"]),
                       Point("class", name, "flows", t["flows"])]
        for p in result.paths:
            for metric in ("up_bps", "down_bps", "rtt_p50_ms", "rtt_p95_ms", "jitter_ms", "loss_pct",
                           "utilisation_pct", "score"):
                value = getattr(p, metric)
                if value is not None:
                    points.append(Point("link", p.name, metric, float(value)))
        for address, up, down in self.usage.busiest(self.options.history_hosts):
            points += [Point("host", address, "bytes_up", up), Point("host", address, "bytes_down", down)]
        live = [c for c in result.mptcp.connections if c.ended is None and c.subflows]
        live.sort(key=lambda c: -sum(sum(s.bps) for s in c.subflows.values()))
        for conn in live[: self.options.history_connections]:
            subject = f"{min(conn.tokens):08x}" if conn.tokens else f"unknown-{conn.id}"
            points += [Point("connection", subject, "up_bps", sum(s.bps[UP] for s in conn.subflows.values())),
                       Point("connection", subject, "down_bps", sum(s.bps[DOWN] for s in conn.subflows.values())),
                       Point("connection", subject, "subflows", len(conn.subflows))]
        changed = result.alerts.raised + result.alerts.resolved
        try:
            # The hosts counted this tick (and any a failed write left) go in the tick's own
            # transaction: a kill -9 loses no usage that a finished tick counted.
            self.history.write(now, points, changed, self.usage.unsaved())
        except (sqlite3.Error, OSError) as exc:
            self.history_failures += 1
            result.history_error = str(exc)
            return
        self.usage.mark_saved()
        self.history_failures = 0
