"""The predictor in the daemon: per class, per link and per (link, class) rate series,
one batched model call per tick, online error, anomaly metrics and the shaper's needs.

    forecasts = Forecasts(predictor, classes, links)     # predictor None: harmonic mean only
    forecasts.update(table, classification, link_ifindex)
    forecasts.view()          # the `predictions` topic
    forecasts.needs(link)     # class -> Mbit/s the allocation should plan for on that link
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from anabranch.controller.flows import DOWN, UP
from anabranch.controller.predict.anomaly import AnomalyDetector
from anabranch.controller.predict.tracking import ErrorTracker

log = logging.getLogger(__name__)

WINDOW = 60                       # samples kept per series (the model's window)
# An anomaly is a rate that stays outside its predicted band, widened by a fifth, for
# 15 s: a gateway's traffic changes level all the time (a download starts), and an
# alert for each change would teach admins to ignore the alert.
ANOMALY_TICKS = 15
ANOMALY_SLACK = 0.2
DIRECTIONS = ("up", "down")


class _HarmonicPredictor:
    """The cold-start rule for every series when the model is not installed."""

    min_history = 1

    def predict(self, series: np.ndarray):
        from anabranch.controller.predict.runtime import Prediction, cold_start

        quantiles, confidence = cold_start(series, 5)
        history = (~np.isnan(series)).sum(axis=1)
        return Prediction(quantiles, confidence, np.ones(len(series), bool), history)


def load_predictor():
    """(predictor, method): the ONNX model when installed, else the harmonic-mean rule."""
    try:
        from anabranch.controller.predict.runtime import Predictor

        return Predictor(), "onnx"
    except Exception as exc:      # absent onnxruntime or model: say so once, keep predicting
        log.info("predictor model unavailable (%s); predictions use the harmonic mean", exc)
        return _HarmonicPredictor(), "harmonic_mean"


class Forecasts:
    def __init__(self, classes: tuple[str, ...], links: list[str], predictor=None, method: str = "onnx"):
        if predictor is None:
            predictor, method = load_predictor()
        self.predictor, self.method = predictor, method
        self.classes = tuple(classes)
        self.links = list(links)
        # Series names: "class:<c>:<dir>", "link:<l>:<dir>", "linkclass:<l>:<c>:<dir>".
        self.names = ([f"class:{c}:{d}" for c in self.classes for d in DIRECTIONS] +
                      [f"link:{link}:{d}" for link in self.links for d in DIRECTIONS] +
                      [f"linkclass:{link}:{c}:{d}" for link in self.links for c in self.classes
                       for d in DIRECTIONS])
        self.index = {name: i for i, name in enumerate(self.names)}
        n = len(self.names)
        self.series = np.full((n, WINDOW), np.nan)
        self.tracker = ErrorTracker(n)
        self.anomalies = AnomalyDetector(n, ticks=ANOMALY_TICKS, slack=ANOMALY_SLACK)
        self.prediction = None
        self.ticks = 0

    def update(self, samples_mbit: dict[str, float]) -> None:
        """One tick: each series' measured Mbit/s (absent: a missed sample)."""
        now = np.array([samples_mbit.get(name, np.nan) for name in self.names])
        self.series = np.roll(self.series, -1, axis=1)
        self.series[:, -1] = now
        if self.prediction is not None:
            # Did this tick's sample leave the band predicted for it one tick ago?
            band = self.prediction.quantiles[:, 0][:, [0, 2]]
            self.anomalies.update(now, band, trusted=~self.prediction.fallback)
        self.prediction = self.predictor.predict(self.series)
        self.tracker.update(now, self.prediction.quantiles)
        self.ticks += 1

    @staticmethod
    def samples(table, class_index: np.ndarray, classes: tuple[str, ...],
                link_ifindex: dict[str, int]) -> dict[str, float]:
        """Mbit/s per series name from the tick's flow rates and classes."""
        out: dict[str, float] = {}
        bps = table.bps
        k = len(classes)
        ci = class_index.astype(np.intp)
        for d, direction in ((UP, "up"), (DOWN, "down")):
            per_class = np.bincount(ci, weights=bps[:, d], minlength=k)
            for i, name in enumerate(classes):
                out[f"class:{name}:{direction}"] = per_class[i] / 1e6
        ifindex = table.keys["ifindex"]
        for link, idx in link_ifindex.items():
            rows = ifindex == idx
            for d, direction in ((UP, "up"), (DOWN, "down")):
                per_class = np.bincount(ci[rows], weights=bps[rows, d], minlength=k)
                out[f"link:{link}:{direction}"] = float(per_class.sum()) / 1e6
                for i, name in enumerate(classes):
                    out[f"linkclass:{link}:{name}:{direction}"] = per_class[i] / 1e6
        return out

    # -- what others read ----------------------------------------------------------------
    def _row(self, name: str) -> int | None:
        return self.index.get(name)

    def need(self, name: str) -> float | None:
        """Mbit/s to plan for: the larger of the 1 s and 5 s medians (None before any)."""
        i = self._row(name)
        if i is None or self.prediction is None:
            return None
        return float(max(self.prediction.quantiles[i, 0, 1], self.prediction.quantiles[i, 1, 1]))

    def needs(self, links: list[str], direction: str) -> dict[str, float]:
        """class -> Mbit/s summed over `links` in one direction."""
        out = {}
        for c in self.classes:
            values = [self.need(f"linkclass:{link}:{c}:{direction}") for link in links]
            values = [v for v in values if v is not None]
            if values:
                out[c] = sum(values)
        return out

    def capacity(self, link: str, direction: str, ceiling_mbit: float, margin: float = 0.1) -> float:
        """The `auto` link rate: room for what the link is predicted to carry (p90 of
        the 5 s horizon) plus the margin, never above the configured ceiling and never
        below a tenth of it (so a quiet link can grow again)."""
        i = self._row(f"link:{link}:{direction}")
        if i is None or self.prediction is None:
            return ceiling_mbit
        p90 = float(self.prediction.quantiles[i, 1, 2])
        return float(min(ceiling_mbit, max(ceiling_mbit / 10, p90 / (1 - margin))))

    def anomaly_metrics(self) -> dict[str, float]:
        """1.0 per series in an anomaly (outside its p10-p90 band for several ticks), 0.0 per
        series judged normal; a series not yet judged (no trusted band since the start) is left
        out, so an anomaly alert restored after a restart waits for a verdict instead of
        being resolved by the lack of one."""
        return {name: float(active) for name, active, judged in zip(self.names, self.anomalies.active.tolist(),
                                                                    self.anomalies.judging.tolist())
                if judged and not name.startswith("linkclass:")}

    def anomaly_detail(self, name: str) -> dict[str, Any]:
        """What an anomaly alert on series `name` shows: the band it left and where the rate is."""
        i = self._row(name)
        excursion = self.anomalies.excursion(i) if i is not None else None
        if excursion is None:
            return {}
        side, p10, p90 = excursion
        actual = _num(self.series[i, -1])
        detail = {"expected_mbit": [round(p10, 3), round(p90, 3)], "actual_mbit": actual, "side": side}
        if actual is not None:
            detail["message"] = (f"{name}: {actual:.2f} Mbit/s, {side} the expected {p10:.2f}-{p90:.2f} Mbit/s "
                                 f"(p10-p90) for {ANOMALY_TICKS} s or more")
        return detail

    def view(self, capacities: dict[str, float | None] | None = None) -> dict[str, Any]:
        if self.prediction is None:
            return {"available": False, "method": self.method, "classes": [], "links": [], "series": []}
        p = self.prediction
        accuracy = self.tracker.snapshot()
        now = self.series[:, -1]

        def one(i: int) -> dict[str, Any]:
            entry: dict[str, Any] = {"now_mbit": _num(now[i]), "fallback": bool(p.fallback[i]),
                                     "history_s": int(p.history[i]), "anomaly": bool(self.anomalies.active[i])}
            for j, h in enumerate((1, 5)):
                p10, p50, p90 = (float(v) for v in p.quantiles[i, j])
                entry[f"h{h}"] = {"p10": p10, "p50": p50, "p90": p90, "confidence": float(p.confidence[i, j]),
                                  "error": {k: _num(v[i]) for k, v in accuracy[f"h{h}"].items()}}
            return entry

        def both(prefix: str) -> dict[str, Any]:
            up, down = self.index[f"{prefix}:up"], self.index[f"{prefix}:down"]
            a, b = one(up), one(down)
            return {"now_mbit": _num(now[up] + now[down]),
                    "next_1s_mbit": a["h1"]["p50"] + b["h1"]["p50"],
                    "next_5s_mbit": a["h5"]["p50"] + b["h5"]["p50"],
                    "confidence": min(a["h1"]["confidence"], b["h1"]["confidence"]),
                    "up": a, "down": b}

        classes = [{"name": c, **both(f"class:{c}")} for c in self.classes]
        links = [{"name": link, **both(f"link:{link}"), "capacity_mbit": (capacities or {}).get(link)}
                 for link in self.links]
        mae = [accuracy["h1"]["mae"][i] for i in range(len(self.names)) if not self.names[i].startswith("linkclass:")]
        nmae = [accuracy["h1"]["nmae"][i] for i in range(len(self.names)) if not self.names[i].startswith("linkclass:")]
        return {"available": True, "method": self.method,
                "model": getattr(self.predictor, "card", {}).get("name") if self.method == "onnx" else None,
                "error": {"mae_mbit": _mean(mae), "nmae": _mean(nmae)},
                "classes": classes, "links": links}


def _num(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else None

