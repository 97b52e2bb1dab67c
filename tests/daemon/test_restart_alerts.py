"""Alerts active when the daemon died, after its restart: shown until a real verdict, then resolved in view."""

from __future__ import annotations

import numpy as np

from anabranch.controller.alerts import Alert
from anabranch.controller.history import History
from anabranch.controller.predict.anomaly import AnomalyDetector
from anabranch.controller.tick import ControllerOptions
from anabranch.daemon.control import Control
from anabranch.daemon.state import AlertBook, Policy

from flowgen import table

T0 = 1_767_225_600.0
WEB = {"lan": "10.0.0.3", "rport": 443, "bytes": (2000, 9000), "bps": (1e3, 5e3), "pps": (1, 2)}


def test_a_restored_alert_resolved_at_the_first_tick_is_listed_as_resolved(tmp_path):
    db = tmp_path / "history.db"
    history = History(db)
    history.write(T0 - 10, [], [Alert(7, "flows_active", "flows.active", "-", "warning", "many flows",
                                      6000.0, 5000.0, T0 - 60)])
    history.close()
    policy = Policy(None)
    book = AlertBook(policy)
    control = Control(ControllerOptions.configure({"history": {"path": str(db)}}), policy, book)
    control.tick(table([WEB]), [], T0)          # one flow: the condition is gone
    listed = {a["id"]: a for a in book.listing(include_resolved=True)}
    assert listed["7"]["state"] == "resolved" and listed["7"]["raised_at"] == T0 - 60
    control.close()


def test_an_anomaly_detector_gives_no_verdict_before_it_has_a_trusted_band():
    detector = AnomalyDetector(2, ticks=3)
    assert detector.judging.tolist() == [False, False]
    detector.update(np.array([10.0, 10.0]), np.array([[9.0, 11.0], [9.0, 11.0]]),
                    trusted=np.array([True, False]))
    assert detector.judging.tolist() == [True, False]     # the cold-start fallback is no verdict


def test_an_anomaly_alert_says_the_band_the_rate_left(caplog):
    """A rate held far above what the model expected raises prediction_anomaly with the band."""
    from anabranch.daemon.forecast import ANOMALY_TICKS, Forecasts

    forecasts = Forecasts(("voice",), ["wan0"])       # the real ONNX model
    policy = Policy(None)
    book = AlertBook(policy)
    control = Control(ControllerOptions.configure({}), policy, book)
    control.alert_detail = lambda metric, subject: forecasts.anomaly_detail(subject) \
        if metric == "predict.anomaly" else {}
    steady = {name: 10.0 for name in forecasts.names}
    for tick in range(70):                            # a full window at a steady 10 Mbit/s
        forecasts.update(steady)
    burst = dict(steady, **{"link:wan0:up": 60.0})
    for tick in range(ANOMALY_TICKS + 2):
        forecasts.update(burst)
        control.tick(table([WEB]), [], T0 + tick, metrics={"predict.anomaly": forecasts.anomaly_metrics()})
    raised = [a for a in book.listing(include_resolved=False) if a["rule"] == "prediction_anomaly"]
    assert [a["subject"] for a in raised] == ["link:wan0:up"]
    low, high = raised[0]["expected_mbit"]
    assert low <= 10.0 <= high < 60.0 and raised[0]["actual_mbit"] == 60.0 and raised[0]["side"] == "above"
    assert "60.00 Mbit/s, above the expected" in raised[0]["message"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]   # no history configured is no failure
    control.close()
