"""The policy the API edits (rules, classes, links, alert rules, acknowledged alerts) and its file.

This is what the classifier, allocator and alert engine read; the API changes it
and it survives restarts in `<daemon.state_dir>/policy.json`, written atomically
(temporary file, fsync, rename) and never into the admin's TOML.  Values arrive
already checked against the command schemas in daemon/commands.py; the checks
here are the ones a schema cannot express (min <= max, CIDR syntax, unique ids).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_VERSION = 1
STATE_FILE = "policy.json"
MAX_RULES = 1000
MAX_ALERT_RULES = 100
# Resolved alerts kept for `alerts.list state=all`.
RESOLVED_KEPT = 200

# ARCHITECTURE.md's class table (RFC 4594 DSCP).  max_mbit None means "up to the link".
DEFAULT_CLASSES: dict[str, dict[str, Any]] = {
    "voice": {"priority": 3, "min_mbit": 0.1, "max_mbit": 10.0, "dscp": 46},
    "video": {"priority": 3, "min_mbit": 5.0, "max_mbit": 50.0, "dscp": 34},
    "interactive": {"priority": 2, "min_mbit": 1.0, "max_mbit": None, "dscp": 0},
    "file": {"priority": 1, "min_mbit": 0.5, "max_mbit": 30.0, "dscp": 10},
    "background": {"priority": 0, "min_mbit": 0.0, "max_mbit": 20.0, "dscp": 8},
}
# The class of flows no rule matches.
FALLBACK_CLASS = "interactive"

# The admin's rules start empty: the controller's own defaults (services known by
# host name, ARCHITECTURE.md's port table, heuristics) follow them (`rules.list` builtin).
DEFAULT_RULES: list[dict[str, Any]] = []

# Changes to the configured alert rules (which include the controller's defaults),
# by name: `alert_rules.set` adds here; `alert_rules.list` shows the merged result.
DEFAULT_ALERT_RULES: list[dict[str, Any]] = []


class PolicyError(ValueError):
    """A change that passes the schema but not the policy's own rules; str() names the field."""


class Policy:
    """The API-editable policy; every mutator saves the file before returning."""

    def __init__(self, state_dir: str | Path | None):
        self.path = Path(state_dir) / STATE_FILE if state_dir else None
        self.rules: list[dict[str, Any]] = copy.deepcopy(DEFAULT_RULES)
        self.classes: dict[str, dict[str, Any]] = copy.deepcopy(DEFAULT_CLASSES)
        # Per link: up_mbit / down_mbit as a number, or "auto" (estimate it).
        self.links: dict[str, dict[str, Any]] = {}
        self.alert_rules: list[dict[str, Any]] = copy.deepcopy(DEFAULT_ALERT_RULES)
        self.acked_alerts: dict[str, float] = {}
        # Bumped on every change: readers (classifier, allocator) compare it to re-read.
        self.revision = 0
        self._next_rule = 1

    # -- persistence ------------------------------------------------------------
    @classmethod
    def load(cls, state_dir: str | Path | None) -> Policy:
        policy = cls(state_dir)
        if policy.path is None or not policy.path.exists():
            return policy
        try:
            document = json.loads(policy.path.read_text())
            if document.get("v") != STATE_VERSION:
                raise ValueError(f"version {document.get('v')!r}, expected {STATE_VERSION}")
            policy.rules = list(document["rules"])
            policy.classes = dict(document["classes"])
            policy.links = dict(document.get("links", {}))
            policy.alert_rules = list(document.get("alert_rules", []))
            policy.acked_alerts = dict(document.get("acked_alerts", {}))
            policy._next_rule = int(document.get("next_rule", 1))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Never refuse to start over a damaged state file: keep it for the admin, use defaults.
            aside = policy.path.with_suffix(f".bad-{int(time.time())}")
            log.error("%s: unreadable (%s); moved to %s, starting from the defaults", policy.path, exc, aside)
            try:
                os.replace(policy.path, aside)
            except OSError:
                pass
            return cls(state_dir)
        return policy

    def document(self) -> dict[str, Any]:
        return {"v": STATE_VERSION, "rules": self.rules, "classes": self.classes, "links": self.links,
                "alert_rules": self.alert_rules, "acked_alerts": self.acked_alerts,
                "next_rule": self._next_rule}

    def save(self) -> None:
        self.revision += 1
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as out:
            json.dump(self.document(), out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, self.path)
        # The rename is durable only once the folder entry is on disk.
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- rules --------------------------------------------------------------------
    def rule(self, rule_id: str) -> dict[str, Any]:
        for rule in self.rules:
            if rule["id"] == rule_id:
                return rule
        raise KeyError(rule_id)

    def _check_rule(self, rule: dict[str, Any], where: str) -> None:
        if rule["class"] not in self.classes:
            raise PolicyError(f"{where}.class: unknown class {rule['class']!r}; "
                              f"known: {', '.join(self.classes)}")
        match = rule["match"]
        if not any(match.get(k) for k in ("ports", "cidrs", "hosts")):
            raise PolicyError(f"{where}.match: needs at least one of ports, cidrs, hosts")
        for i, port in enumerate(match.get("ports", [])):
            if isinstance(port, list) and port[0] > port[1]:
                raise PolicyError(f"{where}.match.ports[{i}]: range start {port[0]} is above its end {port[1]}")
        for i, cidr in enumerate(match.get("cidrs", [])):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise PolicyError(f"{where}.match.cidrs[{i}]: not an IPv4/IPv6 network, got {cidr!r}") from None

    def add_rule(self, rule: dict[str, Any], position: int | None = None) -> dict[str, Any]:
        if len(self.rules) >= MAX_RULES:
            raise PolicyError(f"rule: at most {MAX_RULES} rules; delete some first")
        rule = {"enabled": True, "comment": "", **copy.deepcopy(rule)}
        if "id" not in rule:
            while any(r["id"] == f"r{self._next_rule}" for r in self.rules):
                self._next_rule += 1
            rule["id"] = f"r{self._next_rule}"
            self._next_rule += 1
        elif any(r["id"] == rule["id"] for r in self.rules):
            raise PolicyError(f"rule.id: {rule['id']!r} exists; use rules.update")
        self._check_rule(rule, "rule")
        self.rules.insert(len(self.rules) if position is None else position, rule)
        self.save()
        return rule

    def update_rule(self, rule_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        current = self.rule(rule_id)
        fresh = {**current, **copy.deepcopy(changes), "id": rule_id}
        self._check_rule(fresh, "rule")
        self.rules[self.rules.index(current)] = fresh
        self.save()
        return fresh

    def delete_rule(self, rule_id: str) -> None:
        self.rules.remove(self.rule(rule_id))
        self.save()

    # -- classes and links --------------------------------------------------------
    def set_class(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        fresh = {**self.classes[name], **changes}
        if fresh["max_mbit"] is not None and fresh["min_mbit"] > fresh["max_mbit"]:
            raise PolicyError(f"min_mbit: {fresh['min_mbit']:g} is above max_mbit {fresh['max_mbit']:g}")
        self.classes[name] = fresh
        self.save()
        return {"name": name, **fresh}

    def set_link(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        fresh = {**self.links.get(name, {}), **changes}
        self.links[name] = fresh
        self.save()
        return fresh

    # -- alert rules and acknowledgements -----------------------------------------
    def set_alert_rule(self, rule: dict[str, Any], configured: frozenset[str] = frozenset()) -> dict[str, Any]:
        """Change a rule by name: a `configured` one (defaults and TOML) with any subset
        of its fields, or a new one with at least metric, op and threshold."""
        for i, current in enumerate(self.alert_rules):
            if current["name"] == rule["name"]:
                self.alert_rules[i] = {**current, **rule}
                self.save()
                return self.alert_rules[i]
        if rule["name"] not in configured:
            missing = [k for k in ("metric", "op", "threshold") if k not in rule]
            if missing:
                raise PolicyError(f"rule.{missing[0]}: required for a new alert rule")
            rule = {"for_s": 0, "severity": "warning", "enabled": True, **rule}
        if len(self.alert_rules) >= MAX_ALERT_RULES:
            raise PolicyError(f"rule: at most {MAX_ALERT_RULES} alert rules")
        fresh = dict(rule)
        self.alert_rules.append(fresh)
        self.save()
        return fresh

    def delete_alert_rule(self, name: str, configured: frozenset[str] = frozenset()) -> None:
        """Delete an API rule or change (a changed configured rule is back as configured);
        a configured rule without changes is switched off (`enabled = false`)."""
        for i, current in enumerate(self.alert_rules):
            if current["name"] == name:
                del self.alert_rules[i]
                self.save()
                return
        if name in configured:
            self.alert_rules.append({"name": name, "enabled": False})
            self.save()
            return
        raise KeyError(name)

    def ack_alert(self, alert_id: str, now: float) -> None:
        self.acked_alerts[alert_id] = now
        # Keep the file bounded: acknowledgements of long-gone alerts are forgotten.
        while len(self.acked_alerts) > 1000:
            del self.acked_alerts[next(iter(self.acked_alerts))]
        self.save()


class AlertBook:
    """Active and recently resolved alerts; the alert engine raises and resolves,
    the API lists and acknowledges, and each change is published on `alerts`."""

    def __init__(self, policy: Policy, publish=None):
        self.policy = policy
        self.active: dict[str, dict[str, Any]] = {}
        self.resolved: deque[dict[str, Any]] = deque(maxlen=RESOLVED_KEPT)
        self._publish = publish or (lambda body: None)

    def raise_alert(self, alert_id: str, rule: str, severity: str, message: str, now: float,
                    subject: str = "", **measured: Any) -> dict[str, Any]:
        """`measured`: what the engine saw (metric, value, threshold)."""
        if alert_id in self.active:
            return self.active[alert_id]
        alert = {"id": alert_id, "rule": rule, "severity": severity, "subject": subject,
                 "message": message, "state": "active", "raised_at": now, "resolved_at": None,
                 "acked_at": self.policy.acked_alerts.get(alert_id), **measured}
        self.active[alert_id] = alert
        self._publish({"event": "raise", "alert": alert})
        return alert

    def resolve(self, alert_id: str, now: float) -> None:
        alert = self.active.pop(alert_id, None)
        if alert is None:
            return
        alert = {**alert, "state": "resolved", "resolved_at": now}
        self.resolved.append(alert)
        self._publish({"event": "resolve", "alert": alert})

    def ack(self, alert_id: str, now: float) -> dict[str, Any]:
        alert = self.active.get(alert_id)
        if alert is None:
            raise KeyError(alert_id)
        alert["acked_at"] = now
        self.policy.ack_alert(alert_id, now)
        self._publish({"event": "ack", "alert": alert})
        return alert

    def listing(self, include_resolved: bool) -> list[dict[str, Any]]:
        alerts = sorted(self.active.values(), key=lambda a: -a["raised_at"])
        if include_resolved:
            alerts += sorted(self.resolved, key=lambda a: -a["resolved_at"])
        return alerts
