"""History windows of rate series: the shape every predictor reads, with missed ticks explicit.

A series is one row of Mbit/s samples, one per tick, oldest first; NaN marks a
tick that was missed (or lies before the series began).
"""

from __future__ import annotations

import numpy as np

# The model and the rule-based baselines read at most this many most recent
# seconds (the issue caps every history at 60 s; the model's card says its own).
WINDOW = 60
BASELINE_WINDOW = 60

# Fewer valid samples than this and the predictor answers with the rule-based
# fallback; evaluation starts at t = 10 s, so the model serves every scored point.
MIN_HISTORY = 10


def as_series(series: np.ndarray, what: str = "series") -> np.ndarray:
    """A float64 [n, width] copy with every unusable sample (NaN, inf, negative) as NaN."""
    x = np.array(series, dtype=np.float64, copy=True)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{what}: must be a 1-D or 2-D array of Mbit/s, got {x.ndim} dimensions")
    # A negative rate comes from a counter reset, not from the link: treat it as missed.
    x[~np.isfinite(x) | (x < 0)] = np.nan
    return x


def fill_missed(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rates, valid): missed ticks carry the previous sample forward, with valid = 0.

    Ticks before the first sample are 0 with valid = 0, so the model can tell
    "no history" from "a rate of zero".
    """
    return filled(as_series(series))


def filled(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fill_missed of a series as_series already returned (NaN is the only unusable sample)."""
    valid = ~np.isnan(x)
    idx = np.where(valid, np.arange(x.shape[1])[None, :], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    rows = np.arange(x.shape[0])[:, None]
    rates = x[rows, idx]
    rates[np.isnan(rates)] = 0.0
    return rates, valid


def trailing_windows(trace: np.ndarray, times: np.ndarray, width: int) -> np.ndarray:
    """[len(times), width]: the `width` samples before each t (NaN before the trace began)."""
    padded = np.concatenate([np.full(width, np.nan), np.asarray(trace, dtype=np.float64)])
    # Row i holds trace[t_i - width : t_i], which starts at padded[t_i].
    index = np.asarray(times)[:, None] + np.arange(width)[None, :]
    return padded[index]


def right_aligned(series: np.ndarray, width: int) -> np.ndarray:
    """The last `width` ticks of each row, NaN-padded on the left when the row is shorter."""
    return aligned(as_series(series), width)


def aligned(x: np.ndarray, width: int) -> np.ndarray:
    """right_aligned of a series as_series already returned (no second copy)."""
    if x.shape[1] >= width:
        return x[:, x.shape[1] - width:]
    return np.concatenate([np.full((x.shape[0], width - x.shape[1]), np.nan), x], axis=1)


def future_means(trace: np.ndarray, times: np.ndarray, horizon: int) -> np.ndarray:
    """Mean of trace[t : t + horizon] for each t (the caller keeps t + horizon <= len)."""
    csum = np.concatenate([[0.0], np.cumsum(np.asarray(trace, dtype=np.float64))])
    times = np.asarray(times)
    return (csum[times + horizon] - csum[times]) / horizon
