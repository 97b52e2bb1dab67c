"""The predictor at run time: one onnxruntime session per process, batched over every series each tick.

`Predictor.predict(series)` takes [n, width] Mbit/s samples (NaN = missed tick)
and returns p10/p50/p90 for the next 1 s and 5 s, a confidence and the mask of
series answered by the rule-based fallback (too little history for the model).
onnxruntime is imported when the first session is made, not on import.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from . import baselines
from .series import MIN_HISTORY, aligned, as_series, filled, right_aligned

HORIZONS = (1, 5)
MODEL_FILE = "model.onnx"
CARD_FILE = "model.json"

# Confidence is the chance that the actual mean lands within this fraction of
# the median forecast, read off the predicted p10/p50/p90.
CONFIDENCE_TOLERANCE = 0.2
# Below this (Mbit/s) a series is idle: tolerances are at least this wide, so a
# silent class predicted silent is confidently right.
IDLE_MBIT = 0.01
# The fallback knows little: its band is this wide around the harmonic mean and
# its confidence grows from 0 to this cap as history accumulates.
FALLBACK_BAND = 0.5
FALLBACK_CONFIDENCE_CAP = 25.0

_sessions: dict[Path, object] = {}
_sessions_lock = threading.Lock()


class ModelError(RuntimeError):
    """The model file or its card is missing or does not match; the message says which and why."""


def default_model_path() -> Path:
    return Path(str(resources.files(__package__).joinpath(MODEL_FILE)))


def session_for(path: Path, threads: int = 1):
    """The process-wide onnxruntime session for a model file (created once, then shared)."""
    path = Path(path).resolve()
    with _sessions_lock:
        if path not in _sessions:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            # One thread: the appliance's tick is small and the machine is shared.
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            try:
                _sessions[path] = onnxruntime.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own zoo of types
                raise ModelError(f"{path}: cannot load the ONNX model: {exc}") from None
        return _sessions[path]


def read_card(model_path: Path) -> dict:
    card_path = Path(model_path).with_suffix(".json")
    try:
        card = json.loads(card_path.read_text())
    except OSError as exc:
        raise ModelError(f"{card_path}: cannot read the model card: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{card_path}: not valid JSON: {exc}") from None
    for key in ("onnx", "architecture", "baselines"):
        if key not in card:
            raise ModelError(f"{card_path}: missing the `{key}` section; retrain or restore the file")
    return card


@dataclass(frozen=True)
class Prediction:
    """Forecasts for n series: quantiles [n, 2, 3] (horizon 1 s / 5 s; p10, p50, p90) in Mbit/s."""

    quantiles: np.ndarray
    confidence: np.ndarray  # [n, 2], percent
    fallback: np.ndarray    # [n] bool: rule-based answer, too little history for the model
    history: np.ndarray     # [n] valid samples the answer was based on

    def horizon(self, seconds: int) -> np.ndarray:
        return self.quantiles[:, HORIZONS.index(seconds)]

    @property
    def h1(self) -> np.ndarray:
        return self.horizon(1)

    @property
    def h5(self) -> np.ndarray:
        return self.horizon(5)


def confidence_from_band(quantiles: np.ndarray) -> np.ndarray:
    """Percent chance that the actual lies within ±CONFIDENCE_TOLERANCE of p50.

    The distribution is read as piecewise linear through (p10, 10 %), (p50,
    50 %), (p90, 90 %), its outer slopes continued; a zero-width side means all
    of that half lies at p50.
    """
    p10, p50, p90 = quantiles[..., 0], quantiles[..., 1], quantiles[..., 2]
    tolerance = np.maximum(CONFIDENCE_TOLERANCE * p50, IDLE_MBIT)
    below = p50 - p10
    above = p90 - p50
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(below > 0, np.minimum(0.5, 0.4 * tolerance / below), 0.5)
        high = np.where(above > 0, np.minimum(0.5, 0.4 * tolerance / above), 0.5)
    return np.clip((low + high) * 100.0, 0.0, 100.0)


class Predictor:
    """Batched forecasts from the committed ONNX model, with the rule-based cold start.

    Every Predictor of one model file shares the process's one session (the
    first one's `threads` setting holds).
    """

    def __init__(self, model_path: Path | None = None, threads: int = 1):
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not self.model_path.is_file():
            raise ModelError(f"{self.model_path}: no such model file; run "
                             "`python -m anabranch.controller.predict train --traces DIR`")
        self.card = read_card(self.model_path)
        self.session = session_for(self.model_path, threads)
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        card_inputs = {i["name"]: i["shape"] for i in self.card["onnx"]["inputs"]}
        if set(inputs) != set(card_inputs) or inputs.get("rates", [None, None])[1] != card_inputs["rates"][1]:
            raise ModelError(f"{self.model_path}: inputs {inputs} differ from the card's {card_inputs}; "
                             "the model and model.json must come from the same training run")
        if [o.name for o in self.session.get_outputs()] != ["quantiles"]:
            raise ModelError(f"{self.model_path}: the model must have the one output `quantiles`")
        self.window = int(card_inputs["rates"][1])
        self.min_history = int(self.card["architecture"].get("min_history_s", MIN_HISTORY))

    def quantiles(self, series: np.ndarray) -> np.ndarray:
        """The model's raw answer [n, 2, 3] for every row, however short its history."""
        return self._model(right_aligned(series, self.window))

    def _model(self, x: np.ndarray) -> np.ndarray:
        """quantiles() of windows that right_aligned already returned."""
        rates, valid = filled(x)
        if rates.shape[0] == 0:
            return np.zeros((0, len(HORIZONS), 3))
        (out,) = self.session.run(["quantiles"], {"rates": rates.astype(np.float32),
                                                  "valid": valid.astype(np.float32)})
        # A non-finite output would poison the allocation: answer 0 instead.
        out = np.nan_to_num(out.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        return np.maximum(out, 0.0)

    def median(self, series: np.ndarray) -> np.ndarray:
        return self.quantiles(series)[:, :, 1]

    def predict(self, series: np.ndarray) -> Prediction:
        x = aligned(as_series(series), self.window)
        history = (~np.isnan(x)).sum(axis=1)
        fallback = history < self.min_history
        cold = fallback.any()
        if cold:
            quantiles = np.zeros((x.shape[0], len(HORIZONS), 3))
            quantiles[~fallback] = self._model(x[~fallback])
        else:
            # The usual tick: every series has its history, no rows to pick.
            quantiles = self._model(x)
        confidence = confidence_from_band(quantiles)
        if cold:
            quantiles[fallback], confidence[fallback] = cold_start(x[fallback], self.min_history)
        return Prediction(quantiles, confidence, fallback, history)


def cold_start(series: np.ndarray, min_history: int = MIN_HISTORY) -> tuple[np.ndarray, np.ndarray]:
    """Rule-based answer for short histories: the harmonic mean of the last samples.

    The harmonic mean leans towards the low samples, the safe side for an
    allocation.  With no sample at all the answer is 0 with confidence 0.
    """
    x = as_series(series)
    history = (~np.isnan(x)).sum(axis=1)
    centre = np.nan_to_num(baselines.harmonic_mean_of_last(x, 5), nan=0.0)
    band = np.stack([centre * (1 - FALLBACK_BAND), centre, centre * (1 + FALLBACK_BAND)], axis=-1)
    quantiles = np.repeat(band[:, None, :], len(HORIZONS), axis=1)
    confidence = FALLBACK_CONFIDENCE_CAP * np.minimum(history / max(min_history, 1), 1.0)
    return quantiles, np.repeat(confidence[:, None], len(HORIZONS), axis=1)
