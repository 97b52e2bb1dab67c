"""Predictor speed (one batched tick of 64 series) and its evaluation table on the validation split.

    .venv/bin/python tests/bench/run.py predict    -> build/bench/predict.json
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

NAME = "predict"
REPO = Path(__file__).resolve().parent.parent.parent
VALIDATION = REPO.parent / "shared" / "data" / "traces" / "validation"
SERIES = 64
# Timed in rounds spread over several seconds, the tick and the bare model
# call alternating: on a shared host one contiguous window can land in a slow
# stretch (seen: 1.5 to 2.5 ms for the same graph from run to run).
ROUNDS = 10
TICKS_PER_ROUND = 200
PAUSE_S = 0.3


def _timings(call, ticks: int) -> np.ndarray:
    out = np.empty(ticks)
    for i in range(ticks):
        started = time.perf_counter()
        call()
        out[i] = time.perf_counter() - started
    return out * 1e3


def _rounds(calls: dict) -> dict[str, list[np.ndarray]]:
    """Each call's timings (ms) per round, the calls alternating within every round."""
    for call in calls.values():
        _timings(call, 50)
    out: dict[str, list[np.ndarray]] = {name: [] for name in calls}
    for _ in range(ROUNDS):
        for name, call in calls.items():
            out[name].append(_timings(call, TICKS_PER_ROUND))
        time.sleep(PAUSE_S)
    return out


def run() -> dict:
    from anabranch.controller.predict.evaluate import evaluate_folder
    from anabranch.controller.predict.runtime import Predictor

    predictor = Predictor()
    rng = np.random.default_rng(0)
    # Realistic input: levels from 1 to 1000 Mbit/s, noise, and a few missed ticks.
    levels = 10 ** rng.uniform(0, 3, (SERIES, 1))
    series = levels * rng.lognormal(0, 0.3, (SERIES, predictor.window))
    series[rng.random(series.shape) < 0.02] = np.nan
    rates = np.nan_to_num(series, nan=0.0).astype(np.float32)
    valid = np.isfinite(series).astype(np.float32)

    rounds = _rounds({"tick": lambda: predictor.predict(series),
                      "session": lambda: predictor.session.run(None, {"rates": rates, "valid": valid})})
    tick, session = np.concatenate(rounds["tick"]), np.concatenate(rounds["session"])
    per_round = [float(np.median(r)) for r in rounds["tick"]]
    figures = {
        "series": SERIES,
        "window_s": predictor.window,
        "architecture": predictor.card["architecture"]["kind"],
        "model_bytes": predictor.model_path.stat().st_size,
        # The whole tick: gap filling, model, fallback and confidence for 64 series.
        "infer_64_ms": float(np.median(tick)),
        "infer_64_p99_ms": float(np.percentile(tick, 99)),
        # The spread of the per-round medians shows how steady the host was.
        "infer_64_round_min_ms": min(per_round),
        "infer_64_round_max_ms": max(per_round),
        "timing": f"{ROUNDS} rounds of {TICKS_PER_ROUND} ticks, {PAUSE_S} s apart",
        "session_64_ms": float(np.median(session)),
    }
    if not VALIDATION.is_dir():
        figures["evaluation"] = f"skipped: {VALIDATION} is absent"
        return figures

    started = time.perf_counter()
    report = evaluate_folder(VALIDATION)
    figures["evaluate_s"] = round(time.perf_counter() - started, 1)
    for key in ("h1", "h5"):
        best = report["best_baseline"][key]
        model = report["model"][key]["nmae"]
        baseline = report["baselines"][best][key]["nmae"]
        figures[f"model_{key}_nmae"] = model
        figures[f"best_baseline_{key}"] = best
        figures[f"best_baseline_{key}_nmae"] = baseline
        figures[f"model_vs_best_{key}_pct"] = 100.0 * (model / baseline - 1.0)
        for source, entry in report["per_source"].items():
            source_best = min(entry["baselines"], key=lambda n: entry["baselines"][n][key]["nmae"])
            figures[f"{source}_model_{key}_nmae"] = entry["model"][key]["nmae"]
            figures[f"{source}_best_baseline_{key}_nmae"] = entry["baselines"][source_best][key]["nmae"]
    figures["report"] = report
    return figures
