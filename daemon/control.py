"""The controller inside the daemon: each tick's verdicts go into the kernel's policy
maps, the alert book and the API's views; the API's policy edits go into the controller.

    control = Control(options, policy, alerts, datapath)
    result = control.tick(table, events, now, health)     # after each sweep

Classification is the controller's: its port and prefix rules are compiled into the
datapath's maps (so a flow's first packet is already marked), what only user space can
decide (host names, heuristics, MPTCP joins) goes into the per-flow override map, and
each MPTCP connection's tokens into the token map so a new subflow inherits its class
at its SYN.  Maps are written by difference: a quiet tick writes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import numpy as np

from anabranch.controller.alerts import METRICS, AlertOptions, AlertRule
from anabranch.controller.classify import CLASSES, PROTOS, HostPattern, Rule
from anabranch.controller.classify import Policy as RulePolicy
from anabranch.controller.features import FlowExtras
from anabranch.controller.flows import DOWN, UP, FlowTable, locate
from anabranch.controller.options import parse_port_range
from anabranch.controller.paths import LinkSpec
from anabranch.controller.tick import Controller, ControllerOptions, DatapathHealth, TickResult

from . import kstructs
from . import policy as kpolicy
from .state import AlertBook
from .state import Policy as StatePolicy

log = logging.getLogger(__name__)

# The kernel's class ids: the controller's class order, from 1 (0 is "unclassified").
CLASS_IDS = {name: i + 1 for i, name in enumerate(CLASSES)}
REASON_NONE = kstructs.REASONS.index("none")
REASON_OVERRIDE = kstructs.REASONS.index("override")
PROTO_TEXT = {0: "any", socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}


@contextmanager
def timing(store: dict[str, float], name: str):
    """Milliseconds the block took, into store[name] (the tick's split in state.daemon)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        store[name] = round((time.perf_counter() - started) * 1000, 3)


def api_rule(rule: dict[str, Any]) -> Rule:
    """A rule of the API's policy (`rules.add`) as a controller rule; `cidrs` are remote
    prefixes, so a rule of ports or of prefixes alone compiles into the kernel maps."""
    match = rule["match"]
    proto = match.get("proto", "any")
    ports = tuple(parse_port_range(p if isinstance(p, int) else f"{p[0]}-{p[1]}")
                  for p in match.get("ports", []))
    hosts = match.get("hosts", [])
    return Rule(id=f"api:{rule['id']}", class_name=rule["class"],
                proto=PROTOS[proto] if proto != "any" else None, ports=ports,
                remote_cidrs=tuple(match.get("cidrs", [])), hosts=HostPattern(hosts) if hosts else None)


def alert_rules(base: tuple[AlertRule, ...], overlay: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The effective alert rules: the configured ones (defaults and TOML) changed, added
    to or switched off by the API's (`alert_rules.set`); each says where it comes from."""
    rules: dict[str, dict[str, Any]] = {
        r.id: {"name": r.id, "metric": r.metric, "op": r.op, "threshold": r.threshold, "for_s": r.for_s,
               "severity": r.severity, "summary": r.summary, "enabled": True, "source": "config"}
        for r in base}
    for entry in overlay:
        current = rules.get(entry["name"])
        if current is None and not all(k in entry for k in ("metric", "op", "threshold")):
            continue     # an API change to a rule the configuration no longer has
        fresh = {"for_s": 0.0, "severity": "warning", "summary": "", "enabled": True,
                 **(current or {}), **entry, "source": "api"}
        if fresh["metric"] not in METRICS:
            continue     # written by an older version; alert_rules.list still shows the overlay
        rules[entry["name"]] = fresh
    return list(rules.values())


def engine_rules(effective: list[dict[str, Any]]) -> AlertOptions:
    return AlertOptions(tuple(AlertRule(r["name"], r["metric"], r["op"], float(r["threshold"]), r["severity"],
                                        float(r["for_s"]), r.get("summary", ""))
                              for r in effective if r.get("enabled", True)))


def extras_of(table: FlowTable) -> FlowExtras | None:
    """RTT, retransmissions and MPTCP-seen from the datapath's per-flow values.
    The path RTT is the upstream direction's: LAN packets echoed by the far end."""
    values = table.values
    if values is None:
        return None
    dirs = values["dir"]
    samples = dirs[:, UP]["rtt_samples"] > 0
    rtt = np.where(samples, dirs[:, UP]["rtt_srtt_ns"].astype(np.float64) / 1e6, np.nan)
    retrans = np.stack([dirs[:, UP]["retransmits"], dirs[:, DOWN]["retransmits"]], axis=1).astype(np.uint64)
    return FlowExtras(rtt_ms=rtt, retrans=retrans, mptcp_seen=values["mptcp_subtypes"] != 0)


class Control:
    """The Controller plus what ties it to the kernel and the API."""

    def __init__(self, options: ControllerOptions | None, policy: StatePolicy, alerts: AlertBook,
                 datapath=None, state_dir: str | None = None):
        options = options or ControllerOptions()
        if options.history_path is None and state_dir:
            options = dataclasses.replace(options, history_path=str(Path(state_dir) / "history.db"))
        if options.history_path:
            Path(options.history_path).parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.options = options
        self.controller = Controller(options)
        self.policy = policy
        self.book = alerts
        self.datapath = datapath
        self.result: TickResult | None = None
        self.table: FlowTable | None = None
        self._revision: int | None = None
        self._kernel_dirty = True
        self._overrides: dict[int, tuple[bytes, int]] = {}     # flow id -> (FLOW_KEY bytes, class id)
        # Flows overridden because the kernel's own verdict disagreed with the controller's.
        self._corrected: set[int] = set()
        self._generation: int | None = None                    # the kernel's policy generation
        self._tokens: dict[int, int] = {}                      # token -> class id
        self._written = kpolicy.Written()                      # the policy maps, as last written
        self._seeded = False
        self.override_errors = 0
        self._history_failing = False
        # (metric, subject) -> more for a raised alert: "message" replaces the rule's summary,
        # the rest is published with it (the predictor's expected band, for one).
        self.alert_detail: Callable[[str, str], dict[str, Any]] | None = None
        # Where the last tick's controller time went, step by step (state.daemon.phases_ms).
        self.step_ms: dict[str, float] = {}
        self.controller.steps = tuple((name, self._timed(name, step)) for name, step in self.controller.steps)

    def _timed(self, name: str, step):
        def run(*args):
            with timing(self.step_ms, name):
                step(*args)
        return run

    def close(self) -> None:
        self.controller.close()

    @property
    def history(self):
        return self.controller.history

    # -- the tick -------------------------------------------------------------------------
    def tick(self, table: FlowTable, events: list, now: float, health: DatapathHealth | None = None,
             metrics: dict[str, dict[str, float]] | None = None) -> TickResult:
        with timing(self.step_ms, "inputs"):
            self._sync_policy()
            extras = extras_of(table)
        with timing(self.step_ms, "tick"):
            result = self.controller.tick(table, events, now, extras, health, metrics)
        self.result, self.table = result, table
        if bool(result.history_error) != self._history_failing:
            # Once per change, not per tick: a full disk must not also flood the journal.
            self._history_failing = bool(result.history_error)
            if self._history_failing:
                log.error("history: %s; counting, classification and the API go on without it",
                          result.history_error)
            else:
                log.info("history: writing again")
        with timing(self.step_ms, "alert_book"):
            self._book_alerts(result)
        if self.datapath is not None:
            with timing(self.step_ms, "kernel_maps"):
                self._write_kernel(table, result)
        return result

    def _sync_policy(self) -> None:
        if self.policy.revision == self._revision:
            return
        self._revision = self.policy.revision
        rules = []
        for entry in self.policy.rules:
            if not entry.get("enabled", True):
                continue
            try:
                rules.append(api_rule(entry))
            except (ValueError, KeyError) as exc:   # checked by the API; an old file may differ
                log.warning("rule %s skipped: %s", entry.get("id"), exc)
        self.controller.classifier.replace_rules(rules)
        self.controller.alerting.options = engine_rules(self.alert_rules())
        self._kernel_dirty = True

    def builtin_rules(self) -> list[dict[str, Any]]:
        """The rules after the API's, in match order: configured, services, port table."""
        out = []
        for rule in self.controller.classifier.rules:
            if rule.id.startswith("api:"):
                continue
            out.append({"id": rule.id, "class": rule.class_name,
                        "proto": next((k for k, v in PROTOS.items() if v == rule.proto), "any"),
                        "ports": [[lo, hi] for lo, hi in rule.ports], "cidrs": list(rule.remote_cidrs),
                        "hosts": list(rule.hosts.patterns) if rule.hosts is not None else []})
        return out

    def alert_rules(self) -> list[dict[str, Any]]:
        return alert_rules(self.options.alerts.rules, self.policy.alert_rules)

    def set_links(self, specs: list[LinkSpec]) -> None:
        """The WAN links as attached now (ifindex changes when a link is re-created)."""
        self.controller.paths.set_links(specs)

    def _book_alerts(self, result: TickResult) -> None:
        changes = result.alerts
        raised = changes.active if not self._seeded else changes.raised
        if not self._seeded:
            # An alert restored from the last run and resolved at once is still shown, as resolved.
            raised = raised + [a for a in changes.resolved if str(a.id) not in self.book.active]
        self._seeded = True
        for alert in raised:
            detail = dict(self.alert_detail(alert.metric, alert.subject)) if self.alert_detail else {}
            message = detail.pop("message", alert.summary)
            self.book.raise_alert(str(alert.id), alert.rule, alert.severity, message, alert.raised_at,
                                  subject=alert.subject, metric=alert.metric, value=alert.value,
                                  threshold=alert.threshold, **detail)
        for alert in changes.resolved:
            self.book.resolve(str(alert.id), alert.resolved_at)

    # -- the kernel maps ----------------------------------------------------------------------
    def kernel_policy(self, rules: RulePolicy) -> kpolicy.Policy:
        classes = [kpolicy.TrafficClass(name, CLASS_IDS[name], self.policy.classes.get(name, {}).get("dscp"))
                   for name in CLASSES]
        # Each rule's place in the list is its rank: the kernel then takes the first
        # match of the list, as the classifier does, from a flow's first packet.
        ports = [kpolicy.PortRule(r.class_name, ((r.lo, r.hi),), PROTO_TEXT.get(r.proto, "any"), r.order)
                 for r in sorted(rules.port_rules, key=lambda r: r.order)]
        prefixes = [kpolicy.PrefixRule(r.class_name, r.cidr, r.order)
                    for r in sorted(rules.prefix_rules, key=lambda r: r.order)]
        return kpolicy.Policy(classes=classes, port_rules=ports, prefix_rules=prefixes,
                              default_class=self.controller.classifier.options.default_class)

    def _write_kernel(self, table: FlowTable, result: TickResult) -> None:
        if self._kernel_dirty:
            self._generation = kpolicy.write_policy(self.datapath, self.kernel_policy(result.policy), self._written)
            self._kernel_dirty = False
        overrides = self._disagreements(table, result)
        overrides.update(result.policy.overrides)
        self._write_overrides(table, overrides)
        self._write_tokens(result.mptcp.token_classes)

    def _disagreements(self, table: FlowTable, result: TickResult) -> dict[int, str]:
        """Overrides for flows whose kernel verdict differs from the controller's.

        The kernel's maps take the rule list's first match of its port and prefix rules
        (each rule's rank is its place in the list), so they agree with the controller
        for the rules they hold; this is the safety net for the rest (rules past the
        16-bit rank, a map write that failed).  A verdict is read back from the flow
        map, counted only where it was reached under the rules now in force (the
        flow's generation), and corrected by an override, which stays while the flow
        lives: dropping it would send the flow back to the verdict it corrected.
        """
        values, c = table.values, result.classification
        if values is None or c is None or self._generation is None:
            return {}
        decided = c.class_index.astype(np.int64) + 1          # CLASS_IDS: CLASSES order from 1
        reason = values["class_reason"]
        disagree = ((values["policy_generation"] == self._generation) & (reason != REASON_NONE)
                    & (reason != REASON_OVERRIDE) & (values["class_id"] != decided))
        for row in np.flatnonzero(disagree).tolist():
            self._corrected.add(int(table.ids[row]))
        if not self._corrected:
            return {}
        held = np.fromiter(self._corrected, dtype=np.uint64, count=len(self._corrected))
        rows, live = locate(table.ids, held)
        self._corrected = set(held[live].tolist())
        return {int(fid): CLASSES[int(c.class_index[row])] for fid, row in zip(held[live], rows[live])}

    def _write_overrides(self, table: FlowTable, overrides: dict[int, str]) -> None:
        wanted: dict[int, int] = {fid: CLASS_IDS[name] for fid, name in overrides.items()}
        changed = False
        for fid in [f for f in self._overrides if f not in wanted]:
            key, _ = self._overrides.pop(fid)
            try:
                del self.datapath.overrides[self.datapath.overrides.Key.from_buffer_copy(key)]
            except KeyError:
                pass
            changed = True
        fresh = [fid for fid, class_id in wanted.items()
                 if fid not in self._overrides or self._overrides[fid][1] != class_id]
        if fresh:
            ids = np.array(fresh, dtype=np.uint64)
            rows, live = locate(table.ids, ids)
            for fid, row in zip(ids[live].tolist(), rows[live].tolist()):
                key = table.kernel_keys()[row].tobytes()
                leaf = self.datapath.overrides.Leaf()
                leaf.class_id = wanted[fid]
                try:
                    self.datapath.overrides[self.datapath.overrides.Key.from_buffer_copy(key)] = leaf
                except Exception:     # the map is full: the flow keeps its first-packet class
                    self.override_errors += 1
                    continue
                self._overrides[fid] = (key, wanted[fid])
                changed = True
        if changed:
            # Live flows re-evaluate their class on their next packet.
            self._generation = kpolicy.bump_generation(self.datapath)

    def _write_tokens(self, token_classes: dict[int, str]) -> None:
        wanted = {token: CLASS_IDS[name] for token, name in token_classes.items()}
        for token in [t for t in self._tokens if t not in wanted]:
            kpolicy.clear_token(self.datapath, token)
            del self._tokens[token]
        for token, class_id in wanted.items():
            if self._tokens.get(token) != class_id:
                kpolicy.set_token_class(self.datapath, token, class_id)
                self._tokens[token] = class_id

    # -- views for the API ----------------------------------------------------------------------
    def flow_classes(self, table: FlowTable) -> tuple[np.ndarray, np.ndarray] | None:
        """(class names, reasons) per row of `table`, or None if it is not the tick's."""
        result = self.result
        if result is None or table is not self.table or result.classification is None:
            return None
        c = result.classification
        names = np.array(CLASSES, dtype=object)[c.class_index.astype(np.intp)]
        reasons = np.array(c.reasons, dtype=object)[c.reason_index.astype(np.intp)]
        return names, reasons

    def mptcp_view(self, iface_names: dict[int, str]) -> dict[str, Any]:
        result, table = self.result, self.table
        if result is None or result.mptcp is None:
            return {"available": True, "count": 0, "connections": []}
        connections = []
        for conn in result.mptcp.connections:
            summary = conn.summary()
            for sub in summary["subflows"]:
                sub["iface"] = iface_names.get(sub["ifindex"])
                sub.update(self._endpoints(table, int(sub["flow_id"], 16)))
                if sub["rtt_ms"] != sub["rtt_ms"]:      # NaN is not JSON
                    sub["rtt_ms"] = None
            connections.append(summary)
        return {"available": True, "count": len(connections), "connections": connections}

    @staticmethod
    def _endpoints(table: FlowTable | None, fid: int) -> dict[str, Any]:
        if table is None or not len(table):
            return {}
        row = int(np.searchsorted(table.ids, np.uint64(fid)))
        if row >= len(table) or int(table.ids[row]) != fid:
            return {}
        key = table.keys[row]
        family = int(key["family"])
        width = 4 if family == kstructs.FAMILY_V4 else 16
        af = socket.AF_INET if family == kstructs.FAMILY_V4 else socket.AF_INET6
        lan = socket.inet_ntop(af, key["lan_addr"].tobytes()[:width])
        remote = socket.inet_ntop(af, key["remote_addr"].tobytes()[:width])
        return {"lan": lan, "lan_port": int(key["lan_port"]), "remote": remote,
                "remote_port": int(key["remote_port"])}

    def path_stats(self) -> dict[str, dict[str, Any]]:
        """Per link name: throughput, RTT p50/p95, jitter, loss and the quality score."""
        return {p.name: p.as_dict() for p in self.result.paths} if self.result is not None else {}

    def recommendation(self) -> dict[str, str | None]:
        return dict(self.result.recommendation) if self.result is not None else {}

    def usage(self, now: float) -> dict[str, Any]:
        meter = self.controller.usage
        return {"day": meter.day, "month": meter.month,
                "hosts": {address: host.as_dict() for address, host in meter.hosts.items()},
                "quotas": meter.quota_usage(now)}

