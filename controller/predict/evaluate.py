"""Scores the model and the rule-based baselines on a folder of CSV traces.

At every second t >= 10 of every trace, each forecaster sees only the samples
before t and predicts the mean rate over [t, t + H) for H = 1 and 5.  Per
source: MAE (Mbit/s), nMAE = MAE / mean actual, sMAPE (%); then the macro
average over sources, each source weighing the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import baselines
from .series import BASELINE_WINDOW, future_means, trailing_windows
from .traces import Trace, read_sources

HORIZONS = (1, 5)
FIRST_SCORED_S = 10
METRICS = ("mae", "nmae", "smape")


def scores(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """MAE, nMAE and sMAPE of one set of forecasts; sMAPE counts 0 vs 0 as no error."""
    error = np.abs(predicted - actual)
    mae = float(error.mean())
    mean_actual = float(actual.mean())
    denominator = np.abs(predicted) + np.abs(actual)
    smape = np.where(denominator > 0, 2 * error / np.where(denominator > 0, denominator, 1), 0.0)
    return {"mae": mae, "nmae": mae / mean_actual if mean_actual > 0 else float("nan"),
            "smape": float(smape.mean() * 100)}


def macro(per_source: list[dict[str, float]]) -> dict[str, float]:
    """Each source weighs the same; with no source scored every metric is NaN."""
    if not per_source:
        return {m: float("nan") for m in METRICS}
    return {m: float(np.mean([s[m] for s in per_source])) for m in METRICS}


@dataclass
class ScoringPoints:
    """Every scored (trace, t) of one source for one horizon: history windows and the truth."""

    windows: np.ndarray  # [k, BASELINE_WINDOW]; the model reads as many newest columns as it needs
    actual: np.ndarray   # [k]


def scoring_points(traces: list[Trace], horizon: int, width: int = BASELINE_WINDOW) -> ScoringPoints:
    windows, actual = [], []
    for trace in traces:
        times = np.arange(FIRST_SCORED_S, len(trace.mbps) - horizon + 1)
        if times.size == 0:
            continue
        windows.append(trailing_windows(trace.mbps, times, width))
        actual.append(future_means(trace.mbps, times, horizon))
    if not windows:
        return ScoringPoints(np.zeros((0, width)), np.zeros(0))
    return ScoringPoints(np.concatenate(windows), np.concatenate(actual))


# A model forecaster: history windows [k, BASELINE_WINDOW] -> median forecasts [k, len(HORIZONS)].
ModelForecast = Callable[[np.ndarray], np.ndarray]


def evaluate(sources: dict[str, list[Trace]], baseline_params: dict,
             model: ModelForecast | None = None, chunk: int = 20_000) -> dict:
    """The report: macro scores of the model and of each baseline, then per source."""
    per_source: dict[str, dict] = {}
    for source, traces in sorted(sources.items()):
        entry: dict = {"model": {}, "baselines": {name: {} for name in baselines.NAMES}, "points": {}}
        for h_index, horizon in enumerate(HORIZONS):
            key = f"h{horizon}"
            points = scoring_points(traces, horizon)
            entry["points"][key] = int(points.actual.size)
            if points.actual.size == 0:
                continue
            for name in baselines.NAMES:
                params = baseline_params.get(name, {}).get(key)
                forecast = np.concatenate([
                    baselines.forecast(name, points.windows[i:i + chunk], horizon, params)
                    for i in range(0, len(points.actual), chunk)])
                entry["baselines"][name][key] = scores(forecast, points.actual)
            if model is not None:
                forecast = np.concatenate([
                    model(points.windows[i:i + chunk])[:, h_index]
                    for i in range(0, len(points.actual), chunk)])
                entry["model"][key] = scores(forecast, points.actual)
        if any(entry["points"].values()):
            per_source[source] = entry
    report: dict = {"model": {}, "baselines": {}, "per_source": per_source}
    for horizon in HORIZONS:
        key = f"h{horizon}"
        scored = [e for e in per_source.values() if e["points"][key] > 0]
        if model is not None:
            report["model"][key] = macro([e["model"][key] for e in scored])
        for name in baselines.NAMES:
            report["baselines"].setdefault(name, {})[key] = macro([e["baselines"][name][key] for e in scored])
        ranked = [n for n in baselines.NAMES if np.isfinite(report["baselines"][n][key]["nmae"])]
        best = min(ranked, key=lambda n: report["baselines"][n][key]["nmae"]) if ranked else None
        report.setdefault("best_baseline", {})[key] = best
    report["baseline_params"] = baseline_params
    report["sources"] = sorted(per_source)
    return report


def evaluate_folder(root: Path, model_path: Path | None = None) -> dict:
    """Load traces under root and the model (with its card's baseline parameters) and score."""
    from .runtime import Predictor

    sources = read_sources(root)
    predictor = Predictor(model_path) if model_path else Predictor()

    def model(windows: np.ndarray) -> np.ndarray:
        # The appliance's own path: gap filling, the model, and the fallback
        # (which never engages here: every scored point has 10 s of history).
        return predictor.predict(windows).quantiles[:, :, 1]

    report = evaluate(sources, predictor.card["baselines"], model)
    report["model_file"] = predictor.model_path.name
    return report
