"""What the API layer calls: validated predictions for classes, batches, and the allocation split."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anabranch.controller.allocate import FLOOR_MBIT
from anabranch.controller.predict.operations import (DEFAULT_CLASSES, InvalidRequest, allocate,
                                                      predict_batch, predict_class)


class FakePredictor:
    """Stands in for the ONNX predictor: p50 = last sample, records what it was asked."""

    window = 8

    def __init__(self):
        self.calls = []

    def predict(self, series):
        from anabranch.controller.predict.runtime import Prediction

        self.calls.append(series.copy())
        last = np.array([row[~np.isnan(row)][-1] if (~np.isnan(row)).any() else 0.0 for row in series])
        q = np.stack([last * 0.9, last, last * 1.1], axis=-1)[:, None, :].repeat(2, axis=1)
        history = (~np.isnan(series)).sum(axis=1)
        return Prediction(q, np.full((len(series), 2), 80.0), history < 3, history)


def test_predict_class_answers_both_horizons_with_band_and_confidence():
    answer = predict_class(FakePredictor(), "video", [4.0, 5.0, 6.0])
    assert answer["class"] == "video" and answer["fallback"] is False and answer["history_s"] == 3
    assert answer["h1"] == {"mbit": 6.0, "p10": pytest.approx(5.4), "p50": 6.0, "p90": pytest.approx(6.6),
                            "confidence": 80.0}
    assert set(answer["h5"]) == {"mbit", "p10", "p50", "p90", "confidence"}


def test_long_histories_are_trimmed_to_the_window_and_nulls_are_missed_ticks():
    predictor = FakePredictor()
    predict_class(predictor, "file", [1.0] * 20 + [None, 7.0])
    (series,) = predictor.calls
    assert series.shape == (1, 8)
    assert np.isnan(series[0, -2]) and series[0, -1] == 7.0


def test_predict_batch_makes_one_model_call_for_many_classes():
    predictor = FakePredictor()
    answers = predict_batch(predictor, [{"class": "voice", "recent_mbps": [0.1]},
                                        {"class": "background", "recent_mbps": [1, 2, 3, 4]}])
    assert [a["class"] for a in answers] == ["voice", "background"]
    assert answers[0]["fallback"] is True and answers[1]["fallback"] is False
    assert len(predictor.calls) == 1 and predictor.calls[0].shape == (2, 8)


def test_predict_batch_of_nothing_is_nothing():
    assert predict_batch(FakePredictor(), []) == []


@pytest.mark.parametrize("traffic_class, samples, message", [
    ("gaming", [1.0], 'class: unknown class "gaming"; known: background, file, interactive, video, voice'),
    ("Video", [1.0], 'class: must be a class name'),
    ("video", [], "recent_mbps: must hold at least one sample"),
    ("video", "1,2,3", 'recent_mbps: must be a list of Mbit/s samples'),
    ("video", [1.0, "fast"], 'recent_mbps\\[1\\]: must be a number of Mbit/s or null for a missed tick, got "fast"'),
    ("video", [1.0, -2.0], "recent_mbps\\[1\\]: must not be negative, got -2.0"),
    ("video", [1.0, math.inf], "recent_mbps\\[1\\]: must be a number"),
    ("video", [True], "recent_mbps\\[0\\]: must be a number"),
    ("video", [1.0] * 3601, "recent_mbps: at most 3600 samples, got 3601"),
])
def test_invalid_inputs_name_the_field_and_the_problem(traffic_class, samples, message):
    with pytest.raises(InvalidRequest, match=message):
        predict_class(FakePredictor(), traffic_class, samples)


def test_invalid_batch_entries_name_their_index():
    with pytest.raises(InvalidRequest, match=r"requests\[1\].recent_mbps\[0\]: must not be negative"):
        predict_batch(FakePredictor(), [{"class": "voice", "recent_mbps": [1]},
                                        {"class": "voice", "recent_mbps": [-1]}])
    with pytest.raises(InvalidRequest, match=r"requests\[0\].rate: unknown field"):
        predict_batch(FakePredictor(), [{"class": "voice", "recent_mbps": [1], "rate": 3}])
    with pytest.raises(InvalidRequest, match=r"requests\[0\]: must be a map"):
        predict_batch(FakePredictor(), [3])


def test_other_class_sets_can_be_passed_or_validation_skipped():
    answer = predict_class(FakePredictor(), "gaming", [1.0], classes=None)
    assert answer["class"] == "gaming"


def test_allocation_serves_priorities_in_order_with_headroom_for_the_top():
    plan = allocate(100.0, {"voice": 1.0, "video": 20.0, "interactive": 30.0, "file": 25.0, "background": 5.0})
    shares = plan["classes"]
    assert shares["voice"] == pytest.approx(1.2) and shares["video"] == pytest.approx(24.0)
    assert shares["interactive"] == pytest.approx(30.0) and shares["file"] == pytest.approx(25.0)
    # Background takes what is left, up to its maximum of 20.
    assert shares["background"] == pytest.approx(19.8)
    assert plan["spare_mbit"] == pytest.approx(0.0)
    assert sum(shares.values()) <= 100.0 + 1e-9


def test_allocation_splits_a_short_level_in_proportion_and_starves_lower_ones_to_their_minimum():
    plan = allocate(50.0, {"video": 40.0, "interactive": 60.0, "file": 30.0})
    shares = plan["classes"]
    # Minimums 5 + 1 + 0.5; video then takes its 40 * 1.2 = 48; interactive the last 0.5.
    assert shares == {"video": pytest.approx(48.0), "interactive": pytest.approx(1.5), "file": pytest.approx(0.5)}


def test_allocation_grants_minimums_in_priority_order_while_there_is_room():
    # The shaper's rule: video (priority 3) takes its minimum of 5, capped at the 3 Mbit/s
    # link, before interactive (2); interactive keeps only HTB's floor.
    plan = allocate(3.0, {"video": 10.0, "interactive": 10.0})
    assert plan["classes"] == {"video": pytest.approx(3.0 - FLOOR_MBIT), "interactive": pytest.approx(FLOOR_MBIT)}


def test_allocation_is_the_shapers_own():
    from anabranch.controller.allocate import DEFAULT_CLASSES as SHAPER_CLASSES
    from anabranch.controller.allocate import allocate as shaper_allocate

    needs = {"voice": 0.4, "video": 31.0, "interactive": 12.0, "file": 40.0, "background": 9.0}
    shaped = shaper_allocate(60.0, needs, SHAPER_CLASSES)
    assert allocate(60.0, needs)["classes"] == {c.name: c.rate_mbit for c in shaped.classes}


def test_allocation_leaves_spare_when_every_class_is_capped():
    plan = allocate(1000.0, {"voice": 50.0, "background": 100.0})
    assert plan["classes"] == {"voice": pytest.approx(10.0), "background": pytest.approx(20.0)}
    assert plan["spare_mbit"] == pytest.approx(970.0)


@pytest.mark.parametrize("total, demands, message", [
    (0, {"video": 1.0}, "total_mbit: must be a positive number, got 0"),
    ("lots", {"video": 1.0}, 'total_mbit: must be a positive number, got "lots"'),
    (10.0, [1.0], "demands: must be a map"),
    (10.0, {"video": -1.0}, "demands.video: must be a non-negative number of Mbit/s, got -1.0"),
    (10.0, {"gaming": 1.0}, 'demands.gaming: unknown class "gaming"'),
])
def test_allocation_rejects_bad_inputs_clearly(total, demands, message):
    with pytest.raises(InvalidRequest, match=message):
        allocate(total, demands)


def test_default_classes_follow_the_architecture_table():
    assert {n: (c.priority, c.min_mbit, c.max_mbit) for n, c in DEFAULT_CLASSES.items()} == {
        "voice": (3, 0.1, 10.0), "video": (3, 5.0, 50.0), "interactive": (2, 1.0, None),
        "file": (1, 0.5, 30.0), "background": (0, 0.0, 20.0)}


def test_describe_publishes_forecasts_with_their_tracked_error():
    from anabranch.controller.predict.operations import describe
    from anabranch.controller.predict.tracking import ErrorTracker

    predictor = FakePredictor()
    series = np.array([[1.0] * 8, [2.0] * 8])
    tracker = ErrorTracker(2)
    for _ in range(3):
        prediction = predictor.predict(series)
        tracker.update(series[:, -1], prediction.quantiles)
    records = describe(["wan0", "wan1"], prediction, tracker.snapshot())
    assert [r["series"] for r in records] == ["wan0", "wan1"]
    assert records[1]["h1"]["p50"] == 2.0
    assert records[1]["h1"]["error"]["mae"] == 0.0 and records[1]["h1"]["error"]["scored"] == 2
    # No 5 s window has closed yet: null, not NaN.
    assert records[0]["h5"]["error"]["mae"] is None
    with pytest.raises(ValueError, match="1 names for 2 series"):
        describe(["wan0"], prediction)
