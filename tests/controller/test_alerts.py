import pytest

from anabranch.controller.alerts import DEFAULT_RULES, AlertOptions, Alerting
from anabranch.controller.options import OptionsError


def rtt(value, link="wan0"):
    return {"path.rtt_p95_ms": {link: value}}


def test_alert_raises_only_after_its_for_duration_and_resolves_when_clear():
    alerting = Alerting()
    assert alerting.update(rtt(150), 0).raised == []
    assert alerting.update(rtt(150), 29).raised == []
    changes = alerting.update(rtt(150), 30)
    (alert,) = changes.raised
    assert (alert.rule, alert.subject, alert.severity) == ("path_latency_warning", "wan0", "warning")
    assert alerting.update(rtt(160), 31).raised == []                 # de-duplicated
    assert [a.id for a in alerting.update(rtt(160), 32).active] == [alert.id]
    changes = alerting.update(rtt(50), 40)
    assert changes.resolved == [alert] and alert.resolved_at == 40 and changes.active == []


def test_condition_interrupted_restarts_the_for_timer():
    alerting = Alerting()
    alerting.update(rtt(150), 0)
    alerting.update(rtt(50), 20)
    assert alerting.update(rtt(150), 31).raised == []
    assert alerting.update(rtt(150), 61).raised != []


def test_critical_replaces_warning_on_the_same_metric_and_subject():
    alerting = Alerting()
    alerting.update(rtt(250), 0)
    (alert,) = alerting.update(rtt(250), 30).raised
    assert alert.severity == "critical"           # both held 30 s: only the critical is raised
    alerting = Alerting()
    alerting.update(rtt(150), 0)
    (warning,) = alerting.update(rtt(150), 30).raised
    alerting.update(rtt(250), 31)
    changes = alerting.update(rtt(250), 61)
    assert [a.severity for a in changes.raised] == ["critical"] and changes.resolved == [warning]
    assert [a.severity for a in changes.active] == ["critical"]


def test_subjects_are_independent_and_a_vanished_subject_resolves():
    alerting = Alerting()
    m = {"link.utilisation_pct": {"wan0": 90.0, "wan1": 10.0}}
    alerting.update(m, 0)
    (alert,) = alerting.update(m, 60).raised
    assert alert.subject == "wan0"
    assert alerting.update({"link.utilisation_pct": {}}, 61).resolved == [alert]


def test_defaults_cover_the_issue_thresholds():
    ids = {r.id: r for r in DEFAULT_RULES}
    assert ids["path_latency_critical"].threshold == 200 and ids["path_loss"].threshold == 2
    assert ids["link_utilisation_critical"].threshold == 95 and ids["flows_active"].threshold == 5000
    assert ids["quota_exceeded"].threshold == 100 and "datapath_event_loss" in ids and "datapath_map_full" in ids


def test_configure_changes_adds_and_drops_rules():
    opts = AlertOptions.configure({"rules": {
        "path_loss": {"threshold": 5, "for_s": 0},
        "flows_active": {"enabled": False},
        "jitter": {"metric": "path.jitter_ms", "op": ">", "threshold": 30, "severity": "critical"},
    }})
    rules = {r.id: r for r in opts.rules}
    assert rules["path_loss"].threshold == 5 and "flows_active" not in rules
    alerting = Alerting(opts)
    (alert,) = alerting.update({"path.jitter_ms": {"wan0": 31.0}}, 0).raised
    assert alert.severity == "critical"


def test_configure_errors_name_the_key():
    with pytest.raises(OptionsError) as err:
        AlertOptions.configure({"rules": {"new": {"metric": "cpu", "threshold": "high"},
                                          "path_loss": {"severity": "urgent", "delay": 3}}})
    text = str(err.value)
    assert 'alerts.rules.new.metric: must be one of' in text
    assert 'alerts.rules.new.threshold: must be a number, got "high"' in text
    assert "alerts.rules.new.op: missing" in text
    assert 'alerts.rules.path_loss.severity: must be one of' in text
    assert "alerts.rules.path_loss.delay: unknown key" in text
