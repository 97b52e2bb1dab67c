"""The committed ONNX model: loads, matches its card, and answers sanely on edge inputs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from anabranch.controller.predict.runtime import (FALLBACK_CONFIDENCE_CAP, Predictor, confidence_from_band,
                                                  default_model_path, read_card)
from anabranch.controller.predict.series import MIN_HISTORY

NAN = np.nan


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor()


def test_model_file_is_small_and_has_a_card():
    path = default_model_path()
    assert path.stat().st_size < 1_000_000
    card = read_card(path)
    assert card["onnx"]["file"] == path.name


@pytest.mark.onnx
def test_onnx_inputs_and_outputs_match_the_card(predictor):
    import onnx
    model = onnx.load(str(predictor.model_path))
    onnx.checker.check_model(model)
    card = predictor.card["onnx"]
    assert model.opset_import[0].version == card["opset"]

    def shapes(values):
        return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}

    expected_inputs = {i["name"]: i["shape"] for i in card["inputs"]}
    expected_outputs = {o["name"]: o["shape"] for o in card["outputs"]}
    assert shapes(model.graph.input) == expected_inputs
    assert shapes(model.graph.output) == expected_outputs
    session_inputs = {i.name: i.type for i in predictor.session.get_inputs()}
    assert session_inputs == {"rates": "tensor(float)", "valid": "tensor(float)"}
    # The weight matrices are stored as the card says (float16 ones are cast when loaded).
    matrices = {onnx.TensorProto.DataType.Name(w.data_type) for w in model.graph.initializer if len(w.dims) == 2}
    assert matrices == {"FLOAT16" if card.get("weights", "float32").startswith("float16") else "FLOAT"}


def test_one_session_per_process(predictor):
    assert Predictor().session is predictor.session


def edge_windows(width: int) -> np.ndarray:
    zeros = np.zeros(width)
    spike = np.zeros(width)
    spike[width // 2] = 1000.0
    newest_spike = np.full(width, 1.0)
    newest_spike[-1] = 1e4
    gaps = np.linspace(1, 50, width)
    gaps[::3] = NAN
    gaps[-1] = NAN
    huge = np.full(width, 1e6)
    tiny = np.full(width, 1e-9)
    mostly_missed = np.full(width, NAN)
    mostly_missed[-MIN_HISTORY:] = 7.0
    return np.stack([zeros, spike, newest_spike, gaps, huge, tiny, mostly_missed])


def test_outputs_are_finite_ordered_and_non_negative_on_edge_inputs(predictor):
    prediction = predictor.predict(edge_windows(predictor.window))
    q = prediction.quantiles
    assert np.isfinite(q).all() and (q >= 0).all()
    assert (q[..., 0] <= q[..., 1] + 1e-6).all() and (q[..., 1] <= q[..., 2] + 1e-6).all()
    assert not prediction.fallback.any()
    assert np.isfinite(prediction.confidence).all()
    assert ((prediction.confidence >= 0) & (prediction.confidence <= 100)).all()


def test_an_idle_series_is_predicted_idle(predictor):
    q = predictor.predict(np.zeros((1, predictor.window))).quantiles
    assert q.max() < 0.01


def test_the_model_is_scale_free(predictor):
    rng = np.random.default_rng(3)
    series = rng.lognormal(0, 0.4, (8, predictor.window))
    small = predictor.predict(series * 5.0).quantiles
    large = predictor.predict(series * 1000.0).quantiles
    np.testing.assert_allclose(large, small * 200.0, rtol=1e-3)


def test_a_steady_series_is_predicted_near_its_level_with_high_confidence(predictor):
    prediction = predictor.predict(np.full((1, predictor.window), 40.0))
    assert prediction.quantiles[0, :, 1] == pytest.approx([40.0, 40.0], rel=0.1)
    assert (prediction.confidence[0] > 50).all()


def test_missed_ticks_are_filled_before_the_model(predictor):
    rng = np.random.default_rng(4)
    series = rng.lognormal(1, 0.3, (4, predictor.window))
    holey = series.copy()
    holey[:, ::4] = NAN
    prediction = predictor.predict(holey)
    assert np.isfinite(prediction.quantiles).all()
    assert (prediction.history == predictor.window - np.isnan(holey).sum(axis=1)).all()


def test_fallback_engages_below_the_minimum_history_and_disengages_at_it(predictor):
    window = predictor.window
    series = np.full((4, window), NAN)
    series[1, -1:] = 5.0
    series[2, -(MIN_HISTORY - 1):] = [1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0][-(MIN_HISTORY - 1):]
    series[3, -MIN_HISTORY:] = 4.0
    prediction = predictor.predict(series)
    assert prediction.fallback.tolist() == [True, True, True, False]
    # No sample: nothing to say, and no confidence in it.
    assert (prediction.quantiles[0] == 0).all() and (prediction.confidence[0] == 0).all()
    # The fallback's median is the harmonic mean of the last five samples.
    assert prediction.quantiles[1, :, 1] == pytest.approx([5.0, 5.0])
    assert prediction.quantiles[2, 0, 1] == pytest.approx(4.0)
    assert (prediction.confidence[:3] <= FALLBACK_CONFIDENCE_CAP).all()
    assert prediction.confidence[1, 0] < prediction.confidence[2, 0]


def test_one_dimensional_and_short_series_are_accepted(predictor):
    prediction = predictor.predict(np.array([3.0, 3.0, 3.0]))
    assert prediction.quantiles.shape == (1, 2, 3) and prediction.fallback[0]


def test_confidence_is_high_for_a_narrow_band_and_low_for_a_wide_one():
    bands = np.array([[[9.9, 10.0, 10.1]], [[2.0, 10.0, 40.0]], [[0.0, 0.0, 0.0]]])
    confidence = confidence_from_band(bands)[:, 0]
    assert confidence[0] == pytest.approx(100.0)
    assert confidence[1] < 20.0
    assert confidence[2] == pytest.approx(100.0)


def test_importing_the_controller_loads_neither_onnxruntime_nor_torch():
    code = ("import sys, anabranch.controller, anabranch.controller.predict, "
            "anabranch.controller.predict.operations, anabranch.controller.predict.anomaly, "
            "anabranch.controller.predict.tracking, anabranch.controller.predict.capacity; "
            "print(sorted(m for m in ('onnxruntime', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
