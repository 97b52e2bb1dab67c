"""The shipped Grafana dashboard and Prometheus rules use only metrics /metrics produces."""

from __future__ import annotations

import json
import re
import time
from importlib import resources

import webui_harness as harness
import yaml
from prometheus_client.parser import text_string_to_metric_families

OURS = re.compile(r"\b((?:anabranch|mptcp|network|packet)_[a-z0-9_]+)\b")


def _produced(client, app) -> set[str]:
    relay = app.extensions["anabranch.relay"]
    flows = [harness.sample_flow(n) for n in range(6)]
    now = time.time()
    relay._take("state", {"v": 1, "type": "state", "seq": 1, "ts": now, **harness.sample_state(1, now, flows, 100)})
    relay._take("flows", {"v": 1, "type": "flows", "seq": 1, "ts": now, "snapshot": True, "count": 6,
                          "flows": flows})
    relay._take("predictions", {"v": 1, "type": "predictions", "seq": 1, "ts": now,
                                **harness.sample_predictions()})
    text = client.get("/metrics").get_data(as_text=True)
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_dashboard_and_rules_are_package_data():
    package = resources.files("anabranch.webui")
    assert (package / "grafana" / "anabranch-dashboard.json").is_file()
    assert (package / "prometheus" / "anabranch-rules.yml").is_file()


def test_dashboard_queries_only_metrics_the_web_ui_exports(client, app, fake_daemon):
    produced = _produced(client, app)
    dashboard = json.loads((resources.files("anabranch.webui") / "grafana" / "anabranch-dashboard.json").read_text())
    titles = {p["title"] for p in dashboard["panels"] if p["type"] == "row"}
    assert titles == {"Overview", "MPTCP", "Paths", "Alerts"}
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {name for expr in exprs for name in OURS.findall(expr)}
    assert used and used <= produced, used - produced


def test_alert_rules_parse_and_use_only_exported_metrics(client, app, fake_daemon):
    produced = _produced(client, app)
    rules = yaml.safe_load((resources.files("anabranch.webui") / "prometheus" / "anabranch-rules.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert all(rule["labels"]["severity"] in ("info", "warning", "critical")
               for group in rules["groups"] for rule in group["rules"])
    used = {name for expr in exprs for name in OURS.findall(expr)}
    assert used <= produced, used - produced
