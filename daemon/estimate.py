"""Answers for `predict` and `predict.batch`: the predictor when present, else a stand-in.

The stand-in forecasts each class with the harmonic mean of its last samples
(it leans to the low ones, the safe side for shaping).  `allocate` is the
shaper's own rule (anabranch.controller.allocate), not a forecaster's.  `load_forecaster()` prefers the ONNX predictor of
anabranch.controller.predict; both answer in the same shape.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)

HORIZONS_S = (1, 5)
# Samples the stand-in averages; older ones are ignored.
WINDOW = 10


class Forecaster(Protocol):
    name: str

    def predict_batch(self, requests: list[dict[str, Any]],
                      classes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]: ...


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

    return OnnxForecaster()

