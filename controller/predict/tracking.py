"""Online accuracy of the predictor: each forecast is held until its horizon has passed, then scored.

Pure and clock-free: call `update(samples, quantiles)` once per tick with the
newest measured rate of each series and the forecast just made from it.
"""

from __future__ import annotations

from collections import deque

import numpy as np

HORIZONS = (1, 5)


class ErrorTracker:
    """Exponentially weighted MAE, nMAE, bias and p10-p90 coverage per series and horizon."""

    def __init__(self, series: int, half_life_ticks: float = 300.0, horizons: tuple[int, ...] = HORIZONS):
        if series < 0:
            raise ValueError(f"ErrorTracker.series: must be >= 0, got {series}")
        if half_life_ticks <= 0:
            raise ValueError(f"ErrorTracker.half_life_ticks: must be positive, got {half_life_ticks}")
        self.series = series
        self.horizons = tuple(horizons)
        self.decay = 0.5 ** (1.0 / half_life_ticks)
        self._recent = np.full((series, max(self.horizons)), np.nan)
        self._pending = {h: deque(maxlen=h) for h in self.horizons}
        zeros = lambda: {h: np.zeros(series) for h in self.horizons}  # noqa: E731
        self._weight, self._abs_error, self._error, self._actual, self._inside = (
            zeros(), zeros(), zeros(), zeros(), zeros())
        self.scored = {h: np.zeros(series, dtype=np.int64) for h in self.horizons}

    def update(self, samples: np.ndarray, quantiles: np.ndarray) -> None:
        """samples [n] Mbit/s (NaN = missed tick); quantiles [n, horizons, 3] forecast after them."""
        samples = np.asarray(samples, dtype=np.float64).reshape(-1)
        quantiles = np.asarray(quantiles, dtype=np.float64)
        if samples.shape != (self.series,):
            raise ValueError(f"ErrorTracker.update: samples must have shape ({self.series},), got {samples.shape}")
        if quantiles.shape != (self.series, len(self.horizons), 3):
            raise ValueError(f"ErrorTracker.update: quantiles must have shape "
                             f"({self.series}, {len(self.horizons)}, 3), got {quantiles.shape}")
        self._recent = np.roll(self._recent, -1, axis=1)
        self._recent[:, -1] = samples
        for j, h in enumerate(self.horizons):
            pending = self._pending[h]
            if len(pending) == h:
                # The oldest forecast covered exactly the last h samples.
                self._score(h, pending[0], self._recent[:, -h:].mean(axis=1))
            pending.append(quantiles[:, j].copy())

    def _score(self, h: int, forecast: np.ndarray, actual: np.ndarray) -> None:
        ok = np.isfinite(actual) & np.isfinite(forecast).all(axis=1)
        d = np.where(ok, self.decay, 1.0)
        err = np.where(ok, forecast[:, 1] - actual, 0.0)
        inside = (actual >= forecast[:, 0]) & (actual <= forecast[:, 2])
        self._weight[h] = d * self._weight[h] + ok
        self._abs_error[h] = d * self._abs_error[h] + np.abs(err)
        self._error[h] = d * self._error[h] + err
        self._actual[h] = d * self._actual[h] + np.where(ok, actual, 0.0)
        self._inside[h] = d * self._inside[h] + (ok & inside)
        self.scored[h] += ok

    def reset(self, rows: np.ndarray) -> None:
        """Forget the history of some rows (a series that was reassigned to another link or class)."""
        self._recent[rows] = np.nan
        for h in self.horizons:
            for forecast in self._pending[h]:
                forecast[rows] = np.nan
            for stat in (self._weight, self._abs_error, self._error, self._actual, self._inside):
                stat[h][rows] = 0.0
            self.scored[h][rows] = 0

    def snapshot(self) -> dict[str, dict[str, np.ndarray]]:
        """Per horizon `h1`, `h5`: mae and bias (Mbit/s), nmae, coverage (0-1), scored; NaN before any."""
        out = {}
        for h in self.horizons:
            w = self._weight[h]
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"h{h}"] = {
                    "mae": np.where(w > 0, self._abs_error[h] / w, np.nan),
                    "bias": np.where(w > 0, self._error[h] / w, np.nan),
                    "nmae": np.where(self._actual[h] > 0, self._abs_error[h] / self._actual[h], np.nan),
                    "coverage": np.where(w > 0, self._inside[h] / w, np.nan),
                    "scored": self.scored[h].copy(),
                }
        return out
