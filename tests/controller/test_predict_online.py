"""Online helpers around the predictor: error tracking, anomalies, the `auto` capacity."""

from __future__ import annotations

import numpy as np
import pytest

from anabranch.controller.predict.anomaly import AnomalyDetector
from anabranch.controller.predict.capacity import auto_capacity
from anabranch.controller.predict.tracking import ErrorTracker


def constant_forecast(n: int, p10: float, p50: float, p90: float) -> np.ndarray:
    return np.tile(np.array([p10, p50, p90]), (n, 2, 1)).astype(np.float64)


def test_tracker_scores_each_forecast_against_the_samples_of_its_horizon():
    tracker = ErrorTracker(1, half_life_ticks=1e9)
    # Forecast 10 every tick; the series is 10, 10, 20, 20, 20, 20, 20.
    for sample in (10, 10, 20, 20, 20, 20, 20):
        tracker.update(np.array([sample]), constant_forecast(1, 8, 10, 12))
    snap = tracker.snapshot()
    # h1: forecasts made after samples 1..6 scored on samples 2..7: errors 0, 10, 10, 10, 10, 10.
    assert snap["h1"]["scored"][0] == 6
    assert snap["h1"]["mae"][0] == pytest.approx(50 / 6)
    assert snap["h1"]["bias"][0] == pytest.approx(-50 / 6)
    assert snap["h1"]["coverage"][0] == pytest.approx(1 / 6)
    # h5: the forecast after sample 1 covers samples 2..6 (mean 18); after 2, 3..7 (mean 20).
    assert snap["h5"]["scored"][0] == 2
    assert snap["h5"]["mae"][0] == pytest.approx((8 + 10) / 2)
    assert snap["h5"]["nmae"][0] == pytest.approx(18 / 38)


def test_tracker_skips_windows_with_a_missed_tick():
    tracker = ErrorTracker(1)
    tracker.update(np.array([10.0]), constant_forecast(1, 8, 10, 12))
    tracker.update(np.array([np.nan]), constant_forecast(1, 8, 10, 12))
    assert tracker.snapshot()["h1"]["scored"][0] == 0
    assert np.isnan(tracker.snapshot()["h1"]["mae"][0])
    for _ in range(5):
        tracker.update(np.array([10.0]), constant_forecast(1, 8, 10, 12))
    snap = tracker.snapshot()
    # Of the six h1 windows one held the missed tick; of the two h5 windows, one.
    assert (snap["h1"]["scored"][0], snap["h5"]["scored"][0]) == (5, 1)


def test_tracker_rejects_mismatched_shapes_with_the_expected_shape():
    tracker = ErrorTracker(3)
    with pytest.raises(ValueError, match=r"quantiles must have shape \(3, 2, 3\)"):
        tracker.update(np.zeros(3), np.zeros((3, 3)))


def test_tracker_reset_forgets_one_series_only():
    tracker = ErrorTracker(2)
    for _ in range(3):
        tracker.update(np.array([5.0, 5.0]), constant_forecast(2, 4, 6, 7))
    tracker.reset(np.array([0]))
    scored = tracker.snapshot()["h1"]["scored"]
    assert scored.tolist() == [0, 2]


def band(n: int, low: float, high: float) -> np.ndarray:
    return np.tile([low, high], (n, 1)).astype(np.float64)


def test_anomaly_raised_once_after_the_series_stays_outside_for_the_given_ticks():
    detector = AnomalyDetector(1, ticks=3, slack=0.0)
    detector.update(np.array([10.0]), band(1, 9, 11))
    raised = []
    for tick in range(5):
        # The model re-centres on the new level at once; the frozen band still counts.
        update = detector.update(np.array([30.0]), band(1, 28, 32))
        raised += update.raised
        assert update.cleared == []
        if tick < 2:
            assert not update.raised
    assert len(raised) == 1
    anomaly = raised[0]
    assert (anomaly.series, anomaly.direction, anomaly.ticks) == (0, "above", 3)
    assert (anomaly.expected_low_mbit, anomaly.expected_high_mbit) == (9.0, 11.0)
    assert detector.active[0]


def test_anomaly_clears_when_the_series_returns_to_the_expected_band():
    detector = AnomalyDetector(1, ticks=2, slack=0.0)
    detector.update(np.array([10.0]), band(1, 9, 11))
    for _ in range(3):
        detector.update(np.array([2.0]), band(1, 1, 3))
    assert detector.active[0]
    update = detector.update(np.array([10.0]), band(1, 9, 11))
    assert update.cleared == [0] and not detector.active[0]


def test_a_short_excursion_or_a_missed_tick_raises_nothing():
    detector = AnomalyDetector(1, ticks=3, slack=0.0)
    detector.update(np.array([10.0]), band(1, 9, 11))
    for sample in (30.0, np.nan, 30.0, 10.0, 10.0):
        assert not detector.update(np.array([sample]), band(1, 9, 11)).raised
    assert not detector.active[0]


def test_anomaly_settles_when_the_new_level_lasts():
    detector = AnomalyDetector(1, ticks=2, settle_ticks=4, slack=0.0)
    detector.update(np.array([10.0]), band(1, 9, 11))
    cleared = []
    for _ in range(5):
        cleared += detector.update(np.array([30.0]), band(1, 28, 32)).cleared
    assert cleared == [0] and not detector.active[0]


def test_fallback_bands_never_start_an_excursion():
    detector = AnomalyDetector(1, ticks=1, slack=0.0)
    detector.update(np.array([10.0]), band(1, 9, 11), trusted=np.array([False]))
    assert not detector.update(np.array([50.0]), band(1, 9, 11)).raised


def test_anomaly_directions_are_per_series():
    detector = AnomalyDetector(2, ticks=1, slack=0.0)
    detector.update(np.array([10.0, 10.0]), band(2, 9, 11))
    raised = detector.update(np.array([20.0, 1.0]), band(2, 9, 11)).raised
    assert [(a.series, a.direction) for a in raised] == [(0, "above"), (1, "below")]


def test_auto_capacity_takes_the_margin_and_respects_ceiling_and_floor():
    out = auto_capacity(np.array([100.0, 1000.0, 1.0, np.nan]), ceiling_mbit=500.0, margin=0.1, floor_mbit=5.0)
    assert out.tolist() == [90.0, 500.0, 5.0, 5.0]


@pytest.mark.parametrize("kwargs, message", [
    ({"ceiling_mbit": 0.0}, "ceiling_mbit: must be positive"),
    ({"ceiling_mbit": 10.0, "margin": 1.0}, r"margin: must be in \[0, 1\)"),
    ({"ceiling_mbit": 10.0, "floor_mbit": 20.0}, "floor_mbit: must be between 0 and the ceiling"),
])
def test_auto_capacity_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        auto_capacity(np.array([1.0]), **kwargs)
