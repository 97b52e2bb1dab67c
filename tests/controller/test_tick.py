import numpy as np
import pytest

from anabranch.controller.events import MpCapable, MpJoin, PayloadSnippet
from anabranch.controller.features import FlowExtras
from anabranch.controller.mptcp import key_token
from anabranch.controller.options import OptionsError
from anabranch.controller.paths import LinkSpec
from anabranch.controller.tick import Controller, ControllerOptions, DatapathHealth

from flowgen import flow_id, flow_key, row_of, table
from test_hostnames import client_hello, tls_record

T0 = 1_767_225_600.0
INITIAL = {"lan": "10.0.0.2", "lport": 5000, "remote": "198.51.100.1", "rport": 22, "ifindex": 2,
           "bytes": (5000, 100_000), "bps": (1e4, 8e5), "pps": (5, 70)}
JOINED = {"lan": "10.0.0.2", "lport": 5001, "remote": "198.51.100.1", "rport": 22, "ifindex": 3,
          "bytes": (1000, 50_000), "bps": (1e3, 4e5), "pps": (1, 35)}
WEB = {"lan": "10.0.0.3", "rport": 443, "bytes": (2000, 9000), "bps": (1e3, 5e3), "pps": (1, 2)}


def options(tmp_path, **extra):
    return ControllerOptions.configure(
        {"history": {"path": str(tmp_path / "h.sqlite")},
         "usage": {"quotas": {"small": {"prefix": "10.0.0.3", "limit_gb": 0.00001}}}, **extra},
        links=(LinkSpec("fibre", 2, 10, 10), LinkSpec("lte", 3)))


def test_one_tick_runs_every_component_in_order(tmp_path):
    controller = Controller(options(tmp_path))
    assert [name for name, _ in controller.steps] == ["classify", "mptcp", "paths", "usage", "alerts", "history"]
    t = table([INITIAL, JOINED, WEB], now_s=50.0)
    events = [MpCapable(49_000_000_000, flow_id(INITIAL), flow_key(INITIAL), 0, 1, 11, 22),
              MpJoin(49_500_000_000, flow_id(JOINED), flow_key(JOINED), 0, key_token(22, 1), 2),
              PayloadSnippet(49_000_000_000, flow_id(WEB), flow_key(WEB), 0,
                             tls_record(client_hello("www.example.org")))]
    result = controller.tick(t, events, T0, FlowExtras(rtt_ms=np.array([20.0, 80.0, np.nan])))
    assert result.flow_class(row_of(t, INITIAL)) == ("file", "port:file")
    assert result.flow_class(row_of(t, JOINED)) == ("file", "mptcp:join")
    assert result.flow_class(row_of(t, WEB)) == ("interactive", "default")
    assert result.policy.overrides == {flow_id(JOINED): "file"}
    assert set(result.mptcp.token_classes.values()) == {"file"}
    assert {p.name for p in result.paths} == {"fibre", "lte"}
    assert result.class_totals["file"]["down_bps"] == pytest.approx(12e5)
    assert [(e.quota, e.level) for e in result.quota_events] == [("small", 90), ("small", 100)]
    assert {a.rule for a in result.alerts.raised} == {"quota_exceeded"}     # escalated past 90 %
    kinds = {row[1] for row in controller.history.series(T0 - 1, T0 + 1, level=0)}
    assert kinds == {"total", "class", "link", "host", "connection"}
    controller.close()


def test_datapath_health_raises_event_loss_alert(tmp_path):
    controller = Controller(options(tmp_path))
    result = controller.tick(table([WEB]), [], T0, datapath=DatapathHealth(events_lost=3))
    assert "datapath_event_loss" in {a.rule for a in result.alerts.raised}
    controller.close()


def test_restart_continues_history_and_keeps_active_alerts(tmp_path):
    controller = Controller(options(tmp_path))
    first = controller.tick(table([WEB]), [], T0)
    assert first.alerts.raised
    controller.close()
    again = Controller(options(tmp_path))
    second = again.tick(table([WEB]), [], T0 + 1, datapath=DatapathHealth(events_lost=1))
    # Still true after the restart: the same alerts, still active, not raised twice.
    assert {a.id for a in second.alerts.active} >= {a.id for a in first.alerts.raised}
    assert [a.rule for a in second.alerts.raised] == ["datapath_event_loss"]
    assert second.alerts.raised[0].id > max(a.id for a in first.alerts.raised)
    logged = again.history.alerts(T0 - 10, T0 + 10)
    assert all(a["resolved_at"] is None for a in logged if a["id"] in {x.id for x in first.alerts.raised})
    assert again.usage.hosts["10.0.0.3"].day_bytes == [4000, 18000]   # restored + fresh counters
    again.close()


def test_usage_counted_by_every_finished_tick_survives_a_hard_kill(tmp_path):
    """Each tick saves the totals of the hosts it counted in its own history
    transaction, so a kill -9 (no close) loses none of the bytes a finished tick counted."""
    controller = Controller(options(tmp_path))
    controller.tick(table([WEB]), [], T0)
    controller.tick(table([{**WEB, "bytes": (5000, 20_000)}]), [], T0 + 1)
    assert controller.usage.hosts["10.0.0.3"].day_bytes == [5000, 20_000]
    # Killed: the history is never closed (SQLite's WAL holds what was committed).
    again = Controller(options(tmp_path))
    assert again.usage.hosts["10.0.0.3"].day_bytes == [5000, 20_000]
    again.close()
    untouched = Controller(options(tmp_path))        # opened and closed without a tick
    untouched.close()
    assert Controller(options(tmp_path)).usage.hosts["10.0.0.3"].day_bytes == [5000, 20_000]


def test_a_restored_alert_resolves_once_measured_and_clear(tmp_path):
    controller = Controller(options(tmp_path))
    controller.tick(table([WEB]), [], T0, datapath=DatapathHealth(links_down={"lte": 1.0}))
    controller.close()
    again = Controller(options(tmp_path))
    kept = again.tick(table([WEB]), [], T0 + 1)          # not measured yet: kept
    assert "link_down" in {a.rule for a in kept.alerts.active}
    clear = again.tick(table([WEB]), [], T0 + 2, datapath=DatapathHealth(links_down={"lte": 0.0}))
    assert [a.rule for a in clear.alerts.resolved] == ["link_down"]
    again.close()


def test_extras_with_the_wrong_length_are_refused(tmp_path):
    controller = Controller()
    with pytest.raises(ValueError, match="extras.rtt_ms: has 1 rows, the flow table 2"):
        controller.tick(table([WEB, INITIAL]), [], T0, FlowExtras(rtt_ms=np.zeros(1)))


def test_options_collect_errors_from_every_section():
    with pytest.raises(OptionsError) as err:
        ControllerOptions.configure({"classify": {"default_class": "x"}, "alerts": {"rules": 3},
                                     "history": {"path": "relative.db"}, "extra": 1})
    text = str(err.value)
    for key in ("controller.classify.default_class", "controller.alerts.rules", "controller.history.path",
                "controller.extra: unknown key"):
        assert key in text


def test_an_empty_flow_table_ticks(tmp_path):
    controller = Controller(options(tmp_path))
    result = controller.tick(table([]), [], T0)
    assert result.class_totals["voice"]["flows"] == 0 and result.policy.overrides == {}
    controller.close()
