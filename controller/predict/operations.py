"""The predictor's operations as the API layer calls them: validated inputs, plain dicts out.

`predict_class` (one traffic class and its recent measurements), `predict_batch`
(many, in one model call) and `allocate` (split a total among predicted
demands by priority).  Errors are `InvalidRequest` naming the field and the fix;
the API maps them to `invalid_argument`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from anabranch.controller import allocate as allocation

# Longer histories are accepted and trimmed to what the model reads.
MAX_SAMPLES = 3600
MAX_BATCH = 4096
_CLASS_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class InvalidRequest(ValueError):
    """A request field failed validation; str() is `field: what is wrong, got VALUE`."""


@dataclass(frozen=True)
class ClassPolicy:
    priority: int          # 3 served first ... 0 gets what is left
    min_mbit: float
    max_mbit: float | None  # None: up to the link


# The defaults of ARCHITECTURE.md's class table.
DEFAULT_CLASSES: dict[str, ClassPolicy] = {
    "voice": ClassPolicy(3, 0.1, 10.0),
    "video": ClassPolicy(3, 5.0, 50.0),
    "interactive": ClassPolicy(2, 1.0, None),
    "file": ClassPolicy(1, 0.5, 30.0),
    "background": ClassPolicy(0, 0.0, 20.0),
}


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_class(name: Any, where: str, classes: Mapping[str, ClassPolicy] | None) -> str:
    if not isinstance(name, str) or not _CLASS_NAME.match(name):
        raise InvalidRequest(f"{where}: must be a class name (lower-case letters, digits, _ or -), got {_show(name)}")
    if classes is not None and name not in classes:
        raise InvalidRequest(f"{where}: unknown class {_show(name)}; known: {', '.join(sorted(classes))}")
    return name


def validate_samples(values: Any, where: str) -> np.ndarray:
    """A list of Mbit/s samples, oldest first; None or NaN marks a missed tick."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InvalidRequest(f"{where}: must be a list of Mbit/s samples (oldest first), got {_show(values)}")
    if len(values) == 0:
        raise InvalidRequest(f"{where}: must hold at least one sample")
    if len(values) > MAX_SAMPLES:
        raise InvalidRequest(f"{where}: at most {MAX_SAMPLES} samples, got {len(values)}")
    out = np.empty(len(values))
    for i, value in enumerate(values):
        if value is None:
            out[i] = np.nan
        elif not _is_number(value) or math.isinf(value):
            raise InvalidRequest(f"{where}[{i}]: must be a number of Mbit/s or null for a missed tick, got {_show(value)}")
        elif value < 0:
            raise InvalidRequest(f"{where}[{i}]: must not be negative, got {value!r}")
        else:
            out[i] = float(value)
    return out


def _answer(name: str, prediction, row: int, key: str = "class", accuracy: dict | None = None) -> dict:
    out: dict[str, Any] = {key: name, "fallback": bool(prediction.fallback[row]),
                           "history_s": int(prediction.history[row])}
    for j, horizon in enumerate((1, 5)):
        p10, p50, p90 = (float(v) for v in prediction.quantiles[row, j])
        out[f"h{horizon}"] = {"mbit": p50, "p10": p10, "p50": p50, "p90": p90,
                              "confidence": float(prediction.confidence[row, j])}
        if accuracy is not None:
            # JSON and msgpack have no NaN: "not scored yet" is null.
            error = {metric: (None if not np.isfinite(values[row]) else float(values[row]))
                     for metric, values in accuracy[f"h{horizon}"].items()}
            error["scored"] = int(accuracy[f"h{horizon}"]["scored"][row])
            out[f"h{horizon}"]["error"] = error
    return out


def describe(names: Sequence[str], prediction, accuracy: dict | None = None, key: str = "series") -> list[dict]:
    """One plain record per series, for the `predictions` topic: forecasts, confidence, fallback,
    and (given an `ErrorTracker.snapshot()`) the tracked error of each horizon."""
    if len(names) != prediction.quantiles.shape[0]:
        raise ValueError(f"describe: {len(names)} names for {prediction.quantiles.shape[0]} series")
    return [_answer(name, prediction, i, key, accuracy) for i, name in enumerate(names)]


def predict_batch(predictor, requests: Any, classes: Mapping[str, ClassPolicy] | None = DEFAULT_CLASSES) -> list[dict]:
    """Many `{"class": name, "recent_mbps": [...]}` requests answered with one model call."""
    if isinstance(requests, (str, bytes)) or not isinstance(requests, Sequence):
        raise InvalidRequest(f"requests: must be a list of {{class, recent_mbps}} maps, got {_show(requests)}")
    if len(requests) > MAX_BATCH:
        raise InvalidRequest(f"requests: at most {MAX_BATCH} per batch, got {len(requests)}")
    names, series = [], []
    for i, request in enumerate(requests):
        if not isinstance(request, Mapping):
            raise InvalidRequest(f"requests[{i}]: must be a map with `class` and `recent_mbps`, got {_show(request)}")
        unknown = set(request) - {"class", "recent_mbps"}
        if unknown:
            raise InvalidRequest(f"requests[{i}].{sorted(unknown)[0]}: unknown field; use `class` and `recent_mbps`")
        names.append(validate_class(request.get("class"), f"requests[{i}].class", classes))
        series.append(validate_samples(request.get("recent_mbps"), f"requests[{i}].recent_mbps"))
    if not series:
        return []
    width = predictor.window
    matrix = np.full((len(series), width), np.nan)
    for i, samples in enumerate(series):
        tail = samples[-width:]
        matrix[i, width - tail.size:] = tail
    prediction = predictor.predict(matrix)
    return [_answer(name, prediction, i) for i, name in enumerate(names)]


def predict_class(predictor, traffic_class: Any, recent_mbps: Any,
                  classes: Mapping[str, ClassPolicy] | None = DEFAULT_CLASSES) -> dict:
    """The next 1 s and 5 s of one traffic class from its recent per-second rates."""
    name = validate_class(traffic_class, "class", classes)
    samples = validate_samples(recent_mbps, "recent_mbps")
    return predict_batch(predictor, [{"class": name, "recent_mbps": list(_as_request(samples))}], classes)[0]


def _as_request(samples: np.ndarray) -> list:
    return [None if np.isnan(v) else float(v) for v in samples]


def allocate(total_mbit: Any, demands: Any, classes: Mapping[str, ClassPolicy] = DEFAULT_CLASSES) -> dict:
    """Split `total_mbit` among the classes' predicted demands (Mbit/s) by the shaper's own
    rule (anabranch.controller.allocate): minimums first in priority order while there
    is room, then priority 3 its need plus 20 % headroom, 2 and 1 their need (in table
    order within a priority), each capped at its maximum; priority 0 takes what is left
    up to its maximum, and anything beyond is `spare_mbit`.
    """
    if not _is_number(total_mbit) or not math.isfinite(total_mbit) or total_mbit <= 0:
        raise InvalidRequest(f"total_mbit: must be a positive number, got {_show(total_mbit)}")
    if not isinstance(demands, Mapping):
        raise InvalidRequest(f"demands: must be a map of class name to predicted Mbit/s, got {_show(demands)}")
    need: dict[str, float] = {}
    for name, value in demands.items():
        validate_class(name, f"demands.{name}", classes)
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            raise InvalidRequest(f"demands.{name}: must be a non-negative number of Mbit/s, got {_show(value)}")
        need[name] = float(value)
    plan = allocate_plan(float(total_mbit), need, {n: classes[n] for n in need})
    return {"classes": {c.name: c.rate_mbit for c in plan.classes},
            "spare_mbit": plan.spare_mbit,
            "total_mbit": float(total_mbit)}


def allocate_plan(total_mbit: float, needs: Mapping[str, float], classes: Mapping[str, ClassPolicy]):
    """The shaper's LinkPlan for `classes` (name -> ClassPolicy, in table order) on a link of
    `total_mbit`; InvalidRequest when the link is too small for the classes' HTB floors."""
    table = tuple(allocation.TrafficClass(name, i + 1, policy.priority, policy.min_mbit, policy.max_mbit, 0)
                  for i, (name, policy) in enumerate(classes.items()))
    try:
        return allocation.allocate(total_mbit, needs, table)
    except ValueError as exc:
        raise InvalidRequest(f"total_mbit: {exc}") from None
