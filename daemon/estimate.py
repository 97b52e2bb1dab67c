"""Answers for `predict`, `predict.batch` and `allocate`: the predictor when present, else a stand-in.

The stand-in forecasts each class with the harmonic mean of its last samples
(it leans to the low ones, the safe side for shaping) and allocates by
ARCHITECTURE.md's rule.  `load_forecaster()` prefers the ONNX predictor of
anabranch.controller.predict; both answer in the same shape.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)

HORIZONS_S = (1, 5)
# Samples the stand-in averages; older ones are ignored.
WINDOW = 10
# Priority-3 classes get this much above their predicted need (ARCHITECTURE.md).
TOP_PRIORITY_HEADROOM = 1.2


class Forecaster(Protocol):
    name: str

    def predict_batch(self, requests: list[dict[str, Any]],
                      classes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]: ...

    def allocate(self, total_mbit: float, demands: dict[str, float],
                 classes: dict[str, dict[str, Any]]) -> dict[str, Any]: ...


def harmonic_mean(samples: list[float | None]) -> tuple[float, int]:
    """Harmonic mean of the last WINDOW known samples, and how many there were.

    A zero sample makes the harmonic mean zero, which is right for an idle class.
    """
    known = [s for s in samples[-WINDOW:] if s is not None]
    if not known:
        return 0.0, 0
    if any(s <= 0 for s in known):
        return 0.0, len(known)
    return len(known) / sum(1.0 / s for s in known), len(known)


class HarmonicForecaster:
    """The stand-in: no model, no state; confidence grows with the samples it had."""

    name = "harmonic_mean"

    def predict_batch(self, requests: list[dict[str, Any]],
                      classes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        answers = []
        for request in requests:
            mean, used = harmonic_mean(request["recent_mbps"])
            known = [s for s in request["recent_mbps"][-WINDOW:] if s is not None]
            low, high = (min(known), max(known)) if known else (0.0, 0.0)
            confidence = 100.0 * used / WINDOW * (0.5 if used < 3 else 1.0)
            answer: dict[str, Any] = {"class": request["class"], "fallback": True, "history_s": used}
            for horizon in HORIZONS_S:
                answer[f"h{horizon}"] = {"mbit": mean, "p10": min(low, mean), "p50": mean,
                                         "p90": max(high, mean), "confidence": round(confidence, 1)}
            answers.append(answer)
        return answers

    def allocate(self, total_mbit: float, demands: dict[str, float],
                 classes: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return allocate(total_mbit, demands, classes)


def allocate(total_mbit: float, demands: dict[str, float],
             classes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Split a link among classes by ARCHITECTURE.md's rule.

    Minimums first (scaled down together if they alone exceed the link); then
    priority 3 gets its need plus 20 % headroom, then 2 and 1 their need, each
    capped at the class maximum; priority 0 gets what is left.  Where a level
    wants more than remains, it shares in proportion to what each wants.
    """
    def cap(name: str) -> float:
        top = classes[name]["max_mbit"]
        return total_mbit if top is None else min(top, total_mbit)

    names = list(demands)
    floor = {n: min(classes[n]["min_mbit"], cap(n)) for n in names}
    floors = sum(floor.values())
    scale = min(1.0, total_mbit / floors) if floors > 0 else 1.0
    rate = {n: floor[n] * scale for n in names}
    left = total_mbit - sum(rate.values())
    for priority in (3, 2, 1):
        level = [n for n in names if classes[n]["priority"] == priority]
        factor = TOP_PRIORITY_HEADROOM if priority == 3 else 1.0
        want = {n: max(0.0, min(demands[n] * factor, cap(n)) - rate[n]) for n in level}
        wanted = sum(want.values())
        if wanted <= 0:
            continue
        share = min(1.0, left / wanted)
        for n in level:
            rate[n] += want[n] * share
        left -= wanted * share
    for n in (n for n in names if classes[n]["priority"] == 0):
        extra = max(0.0, min(left, cap(n) - rate[n]))
        rate[n] += extra
        left -= extra
    plan = [{"class": n, "rate_mbit": round(rate[n], 6), "ceil_mbit": cap(n),
             "priority": classes[n]["priority"]} for n in names]
    plan.sort(key=lambda p: -p["priority"])
    return {"total_mbit": total_mbit, "spare_mbit": round(max(left, 0.0), 6), "plan": plan}


def load_forecaster() -> Forecaster:
    """The ONNX predictor when its package and model are installed, else the stand-in."""
    try:
        from anabranch.controller.predict import operations, runtime  # type: ignore[attr-defined]

        predictor = runtime.Predictor()
    except Exception as exc:  # absent package, absent model, onnxruntime trouble: all mean "stand-in"
        log.info("predictor unavailable (%s); predict/allocate use the harmonic-mean stand-in", exc)
        return HarmonicForecaster()

    class OnnxForecaster:
        name = "onnx"

        def predict_batch(self, requests, classes):
            return operations.predict_batch(predictor, requests, None)

        def allocate(self, total_mbit, demands, classes):
            return allocate(total_mbit, demands, classes)

    return OnnxForecaster()

