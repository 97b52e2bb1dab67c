"""Threshold alerts on the tick's metrics: rules with `for` durations and severities,
a raise/resolve lifecycle, one live alert per (rule, subject), and escalation (a
critical alert on a metric and subject replaces the warning on the same).
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass, field, replace
from typing import Any

from . import options as opt

# metric -> what its subjects are; the Controller fills these each tick.
METRICS = {
    "path.rtt_p95_ms": "link", "path.loss_pct": "link", "path.jitter_ms": "link",
    "path.score": "link", "link.utilisation_pct": "link", "flows.active": "-",
    "quota.used_pct": "quota subject", "datapath.events_lost": "-",
    "datapath.map_fill_pct": "map", "datapath.errors": "counter", "link.down": "link",
    "predict.anomaly": "series",
}
SEVERITIES = ("info", "warning", "critical")
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class AlertRule:
    id: str
    metric: str
    op: str
    threshold: float
    severity: str = "warning"
    for_s: float = 0.0
    summary: str = ""


DEFAULT_RULES = (
    AlertRule("path_latency_warning", "path.rtt_p95_ms", ">", 100, "warning", 30,
              "path latency p95 above 100 ms"),
    AlertRule("path_latency_critical", "path.rtt_p95_ms", ">", 200, "critical", 30,
              "path latency p95 above 200 ms"),
    AlertRule("path_loss", "path.loss_pct", ">", 2, "warning", 30, "path loss above 2 %"),
    AlertRule("link_utilisation_warning", "link.utilisation_pct", ">", 85, "warning", 60,
              "link utilisation above 85 %"),
    AlertRule("link_utilisation_critical", "link.utilisation_pct", ">", 95, "critical", 60,
              "link utilisation above 95 %"),
    AlertRule("flows_active", "flows.active", ">", 5000, "warning", 10, "more than 5 000 active flows"),
    AlertRule("quota_warning", "quota.used_pct", ">=", 90, "warning", 0, "quota 90 % used"),
    AlertRule("quota_exceeded", "quota.used_pct", ">=", 100, "critical", 0, "quota used up"),
    AlertRule("datapath_event_loss", "datapath.events_lost", ">", 0, "warning", 0,
              "the datapath lost events (ring buffer full)"),
    AlertRule("datapath_map_full", "datapath.map_fill_pct", ">", 90, "warning", 10,
              "a datapath map is more than 90 % full"),
    AlertRule("link_down", "link.down", ">", 0, "critical", 0,
              "a configured link is missing or down"),
    AlertRule("prediction_anomaly", "predict.anomaly", ">", 0, "warning", 0,
              "rate outside the predicted p10-p90 band for several seconds"),
)
# A restored alert (active when the daemon stopped) waits this long for its metric
# to be measured again before it is resolved for lack of evidence.
RESTORE_GRACE_S = 120.0


@dataclass
class AlertOptions:
    rules: tuple[AlertRule, ...] = DEFAULT_RULES

    @classmethod
    def configure(cls, table: dict[str, Any], path: str = "alerts") -> "AlertOptions":
        """`[alerts.rules.<id>]` tables change a default rule (any subset of its keys),
        add a new one (metric, op, threshold required) or drop one (`enabled = false`)."""
        errors: list[str] = []
        r = opt.Reader(table, path, errors)
        use_defaults = r.get("defaults", True, opt.boolean)
        raw = r.get("rules", {}, lambda v: None if isinstance(v, dict) else "must be a table of rules")
        r.finish()
        rules = {rule.id: rule for rule in (DEFAULT_RULES if use_defaults else ())}
        for rule_id, entry in raw.items():
            rp = f"{path}.rules.{rule_id}"
            rr = opt.Reader(entry, rp, errors)
            base = rules.get(rule_id)
            before = len(errors)
            enabled = rr.get("enabled", True, opt.boolean)
            fields = {}
            for key, check in (("metric", opt.choice(*METRICS)), ("op", opt.choice(*OPS)),
                               ("threshold", opt.number()), ("severity", opt.choice(*SEVERITIES)),
                               ("for_s", opt.number(0, 86_400)), ("summary", opt.string)):
                if base is None and key in ("metric", "op", "threshold"):
                    value = rr.require(key, check, {"metric": "one of " + ", ".join(METRICS),
                                                    "op": "one of > >= < <=", "threshold": "a number"}[key])
                else:
                    value = rr.get(key, None, check)
                if value is not None:
                    fields[key] = value
            rr.finish()
            if len(errors) != before:
                continue
            if not enabled:
                rules.pop(rule_id, None)
                continue
            rules[rule_id] = replace(base, **fields) if base else AlertRule(id=rule_id, **fields)
        if errors:
            raise opt.OptionsError(errors)
        return cls(tuple(rules.values()))


@dataclass
class Alert:
    id: int
    rule: str
    metric: str
    subject: str
    severity: str
    summary: str
    value: float
    threshold: float
    raised_at: float
    resolved_at: float | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class AlertChanges:
    raised: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    active: list[Alert] = field(default_factory=list)


class Alerting:
    def __init__(self, options: AlertOptions | None = None, first_id: int = 1):
        self.options = options or AlertOptions()
        self._ids = itertools.count(first_id)
        self._pending: dict[tuple[str, str], float] = {}
        self.active: dict[tuple[str, str], Alert] = {}
        self._restored: dict[tuple[str, str], float] = {}    # key -> resolve-anyway deadline

    def restore(self, alerts: list[Alert], now: float) -> None:
        """Alerts the previous run left active stay active across a restart: each is
        resolved once its metric is measured again and no longer holds (or after a grace)."""
        for alert in alerts:
            key = (alert.rule, alert.subject)
            self.active[key] = alert
            self._pending[key] = alert.raised_at
            self._restored[key] = now + RESTORE_GRACE_S

    def update(self, metrics: dict[str, dict[str, float]], now: float) -> AlertChanges:
        changes = AlertChanges()
        holding: set[tuple[str, str]] = set()
        for rule in self.options.rules:
            compare = OPS[rule.op]
            for subject, value in metrics.get(rule.metric, {}).items():
                if value is None or value != value or not compare(value, rule.threshold):
                    continue
                key = (rule.id, subject)
                holding.add(key)
                since = self._pending.setdefault(key, now)
                alert = self.active.get(key)
                if alert is not None:
                    alert.value = value
                elif now - since >= rule.for_s and not self._outranked(rule, subject):
                    alert = Alert(next(self._ids), rule.id, rule.metric, subject, rule.severity,
                                  rule.summary or f"{rule.metric} {rule.op} {rule.threshold:g}",
                                  value, rule.threshold, now)
                    self.active[key] = alert
                    changes.raised.append(alert)
        for key, deadline in list(self._restored.items()):
            alert = self.active.get(key)
            if key in holding or alert is None:
                del self._restored[key]
            elif key[1] not in metrics.get(alert.metric, {}) and now < deadline:
                holding.add(key)     # not measured yet since the restart: keep it
            else:
                del self._restored[key]
        for key in list(self._pending):
            if key not in holding:
                del self._pending[key]
        for key, alert in list(self.active.items()):
            if key not in holding:
                alert.resolved_at = now
                changes.resolved.append(self.active.pop(key))
        self._escalate(changes, now)
        changes.active = sorted(self.active.values(), key=lambda a: a.id)
        return changes

    def _outranked(self, rule: AlertRule, subject: str) -> bool:
        rank = SEVERITIES.index(rule.severity)
        return any(a.metric == rule.metric and a.subject == subject and SEVERITIES.index(a.severity) > rank
                   for a in self.active.values())

    def _escalate(self, changes: AlertChanges, now: float) -> None:
        """Keep only the most severe live alert per (metric, subject)."""
        best: dict[tuple[str, str], Alert] = {}
        for alert in self.active.values():
            key = (alert.metric, alert.subject)
            if key not in best or SEVERITIES.index(alert.severity) > SEVERITIES.index(best[key].severity):
                best[key] = alert
        for key, alert in list(self.active.items()):
            if best[(alert.metric, alert.subject)] is not alert:
                del self.active[key]
                if alert in changes.raised:
                    changes.raised.remove(alert)
                else:
                    alert.resolved_at = now
                    changes.resolved.append(alert)
