"""The rule-based forecasters compute what their names claim, on tiny hand-made series."""

from __future__ import annotations

import numpy as np
import pytest

from anabranch.controller.predict import baselines
from anabranch.controller.predict.series import fill_missed, future_means, trailing_windows

NAN = np.nan


def test_last_is_the_newest_valid_sample():
    windows = np.array([[1.0, 2.0, 3.0], [1.0, 5.0, NAN], [NAN, NAN, NAN]])
    out = baselines.last(windows)
    assert out[:2].tolist() == [3.0, 5.0]
    assert np.isnan(out[2])


def test_mean5_averages_the_last_five_samples():
    assert baselines.mean_of_last(np.arange(1.0, 8.0)[None, :], 5)[0] == pytest.approx(5.0)


def test_mean5_skips_missed_ticks_and_uses_what_there_is():
    windows = np.array([[NAN, NAN, 2.0, NAN, 4.0]])
    assert baselines.mean_of_last(windows, 5)[0] == pytest.approx(3.0)


def test_hmean5_is_the_harmonic_mean_of_the_last_five():
    windows = np.array([[100.0, 1.0, 2.0, 4.0, 4.0, 4.0]])
    assert baselines.harmonic_mean_of_last(windows, 5)[0] == pytest.approx(5 / (1 + 0.5 + 0.75))


def test_hmean5_with_a_zero_sample_is_zero():
    assert baselines.harmonic_mean_of_last(np.array([[3.0, 0.0, 3.0]]), 5)[0] == 0.0


def test_ewma_starts_at_the_first_sample_and_holds_over_missed_ticks():
    assert baselines.ewma(np.array([[4.0]]), 0.5)[0] == 4.0
    assert baselines.ewma(np.array([[0.0, 4.0]]), 0.5)[0] == pytest.approx(2.0)
    assert baselines.ewma(np.array([[NAN, 4.0, NAN, 0.0]]), 0.25)[0] == pytest.approx(3.0)


def test_holt_extrapolates_a_ramp_over_the_horizon():
    ramp = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    # alpha = beta = 1: level 5, trend 1; next 1 s is 6, next 5 s average (6..10) is 8.
    assert baselines.holt(ramp, 1.0, 1.0, 1)[0] == pytest.approx(6.0)
    assert baselines.holt(ramp, 1.0, 1.0, 5)[0] == pytest.approx(8.0)


def test_holt_never_forecasts_below_zero():
    falling = np.array([[10.0, 5.0, 0.0]])
    assert baselines.holt(falling, 1.0, 1.0, 5)[0] == 0.0


def test_holt_without_trend_is_the_ewma():
    rng = np.random.default_rng(1)
    windows = rng.random((20, 15))
    np.testing.assert_allclose(baselines.holt(windows, 0.3, 0.0, 5), baselines.ewma(windows, 0.3))


def test_parameter_grids_broadcast_to_one_column_per_setting():
    windows = np.array([[0.0, 4.0]])
    out = baselines._smooth(windows, np.array([0.25, 0.5, 1.0]), 0.0, 1)
    np.testing.assert_allclose(out, [[1.0, 2.0, 4.0]])


def test_unknown_baseline_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown name 'median'"):
        baselines.forecast("median", np.ones((1, 3)), 1)


def test_tuning_prefers_heavy_smoothing_for_noise_and_none_for_a_random_walk():
    rng = np.random.default_rng(0)
    noise = 10 + rng.normal(0, 1, 800)
    walk = np.abs(np.cumsum(rng.normal(0, 1, 800))) + 5

    def points(trace):
        times = np.arange(10, len(trace) - 5 + 1)
        return trailing_windows(trace, times, 20), {h: future_means(trace, times, h) for h in (1, 5)}

    for trace, expect_low in ((noise, True), (walk, False)):
        windows, actual = points(trace)
        tuned = baselines.tune({"s": windows}, {h: {"s": actual[h]} for h in (1, 5)})
        alpha = tuned["ewma"]["h1"]["alpha"]
        assert (alpha <= 0.2) if expect_low else (alpha >= 0.8), (alpha, tuned)


def test_fill_missed_carries_the_previous_sample_and_marks_it():
    rates, valid = fill_missed(np.array([[NAN, 2.0, NAN, -1.0, 5.0]]))
    assert rates.tolist() == [[0.0, 2.0, 2.0, 2.0, 5.0]]
    assert valid.tolist() == [[False, True, False, False, True]]


def test_trailing_windows_hold_only_the_samples_before_t():
    trace = np.array([1.0, 2.0, 3.0, 4.0])
    windows = trailing_windows(trace, np.array([1, 3]), 3)
    np.testing.assert_array_equal(np.isnan(windows[0]), [True, True, False])
    assert windows[1].tolist() == [1.0, 2.0, 3.0]
    assert future_means(trace, np.array([1, 2]), 2).tolist() == [2.5, 3.5]
