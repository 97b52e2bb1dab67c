"""Rule-based forecasters of a series' mean rate over the next H ticks: the model's competitors.

Each reads history windows [n, width] of Mbit/s (NaN = missed tick or before the
series began) and returns [n] forecasts; a row without any sample gives NaN.
`last`, `mean5` and `hmean5` have no parameters; `ewma` and `holt` take the
parameters tuned on the train split, recorded in the model card.
"""

from __future__ import annotations

import numpy as np

from .series import as_series

NAMES = ("last", "mean5", "hmean5", "ewma", "holt")


def _latest(windows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The last k valid samples of each row (others NaN) and how many there are."""
    x = as_series(windows)
    valid = ~np.isnan(x)
    # Rank of each valid sample counted from the newest: 1, 2, ...
    rank = np.cumsum(valid[:, ::-1], axis=1)[:, ::-1]
    keep = valid & (rank <= k)
    return np.where(keep, x, np.nan), keep.sum(axis=1)


def last(windows: np.ndarray) -> np.ndarray:
    latest, count = _latest(windows, 1)
    out = np.full(latest.shape[0], np.nan)
    rows = count > 0
    out[rows] = np.nanmax(latest[rows], axis=1)
    return out


def mean_of_last(windows: np.ndarray, k: int = 5) -> np.ndarray:
    latest, count = _latest(windows, k)
    total = np.nansum(latest, axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def harmonic_mean_of_last(windows: np.ndarray, k: int = 5) -> np.ndarray:
    """Harmonic mean of the last k samples; a zero among them makes it 0 (its limit)."""
    latest, count = _latest(windows, k)
    with np.errstate(divide="ignore"):
        inverse = np.nansum(1.0 / latest, axis=1)
    out = np.where(np.isinf(inverse), 0.0, count / np.where(inverse > 0, inverse, 1.0))
    return np.where(count > 0, out, np.nan)


def _smooth(windows: np.ndarray, alpha, beta, horizon: int) -> np.ndarray:
    """Holt's linear smoothing run over each window; beta = 0 is a plain EWMA.

    alpha and beta broadcast (scalars or [P] arrays, giving [n] or [n, P]).  The
    state starts at the first sample with no trend; a missed tick leaves it as
    it was.  The forecast of the mean over the next `horizon` ticks is
    level + trend * (horizon + 1) / 2, never below 0.
    """
    x = as_series(windows)
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    shape = (x.shape[0],) + np.broadcast_shapes(alpha.shape, beta.shape)
    extra = (slice(None),) + (None,) * (len(shape) - 1)
    level = np.full(shape, np.nan)
    trend = np.zeros(shape)
    for column in x.T:
        sample = column[extra]
        seen = ~np.isnan(sample)
        started = ~np.isnan(level)
        new_level = alpha * sample + (1 - alpha) * (level + trend)
        new_trend = beta * (new_level - level) + (1 - beta) * trend
        update = seen & started
        trend = np.where(update, new_trend, trend)
        level = np.where(update, new_level, np.where(seen & ~started, sample, level))
    return np.maximum(level + trend * (horizon + 1) / 2, 0.0)


def ewma(windows: np.ndarray, alpha: float) -> np.ndarray:
    return _smooth(windows, alpha, 0.0, 1)


def holt(windows: np.ndarray, alpha: float, beta: float, horizon: int) -> np.ndarray:
    return _smooth(windows, alpha, beta, horizon)


def forecast(name: str, windows: np.ndarray, horizon: int, params: dict | None = None) -> np.ndarray:
    """One baseline by name; `params` holds the tuned alpha (and beta) for ewma/holt."""
    params = params or {}
    needs = {"ewma": ("alpha",), "holt": ("alpha", "beta")}.get(name, ())
    missing = [key for key in needs if key not in params]
    if missing:
        raise ValueError(f"baseline {name} (h{horizon}): needs its tuned {' and '.join(missing)}; "
                         "take them from the model card's `baselines` section")
    if name == "last":
        return last(windows)
    if name == "mean5":
        return mean_of_last(windows, 5)
    if name == "hmean5":
        return harmonic_mean_of_last(windows, 5)
    if name == "ewma":
        return ewma(windows, params["alpha"])
    if name == "holt":
        return holt(windows, params["alpha"], params["beta"], horizon)
    raise ValueError(f"baseline: unknown name {name!r}; choose one of {', '.join(NAMES)}")


ALPHAS = np.round(np.arange(0.05, 1.0001, 0.05), 2)
BETAS = np.array([0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5])


def _macro_nmae(forecasts: dict[str, np.ndarray], actuals: dict[str, np.ndarray]) -> np.ndarray:
    """Macro nMAE over sources for every parameter column of the forecasts."""
    per_source = [np.abs(forecasts[s] - actuals[s][:, None]).mean(axis=0) / max(actuals[s].mean(), 1e-12)
                  for s in forecasts]
    return np.mean(per_source, axis=0)


def _grid_forecasts(windows: dict[str, np.ndarray], alphas, betas, horizon: int,
                    chunk: int = 20_000) -> dict[str, np.ndarray]:
    out = {}
    for source, rows in windows.items():
        parts = [_smooth(rows[i:i + chunk], alphas, betas, horizon) for i in range(0, len(rows), chunk)]
        out[source] = np.concatenate(parts)
    return out


def tune(windows: dict[str, np.ndarray], actuals: dict[int, dict[str, np.ndarray]]) -> dict:
    """Grid search of ewma alpha and holt (alpha, beta) per horizon, minimising macro nMAE.

    `windows[source]` are the history windows of the tuning points and
    `actuals[horizon][source]` the means that followed them (train split only).
    A second, finer pass searches alpha in steps of 0.01 around the best.
    """
    result: dict = {"ewma": {}, "holt": {}}
    for horizon, truth in actuals.items():
        key = f"h{horizon}"
        best_ewma, best_holt = _search(windows, truth, horizon, ALPHAS, BETAS)
        fine = np.round(np.clip(np.arange(-0.04, 0.0401, 0.01) + best_ewma["alpha"], 0.01, 1.0), 2)
        result["ewma"][key], _ = _search(windows, truth, horizon, np.unique(fine), np.array([0.0]))
        fine = np.round(np.clip(np.arange(-0.04, 0.0401, 0.01) + best_holt["alpha"], 0.01, 1.0), 2)
        _, result["holt"][key] = _search(windows, truth, horizon, np.unique(fine), np.array([best_holt["beta"]]))
    return result


def _search(windows, truth, horizon, alphas, betas) -> tuple[dict, dict]:
    grid_a, grid_b = np.meshgrid(alphas, betas, indexing="ij")
    grid_a, grid_b = grid_a.ravel(), grid_b.ravel()
    score = _macro_nmae(_grid_forecasts(windows, grid_a, grid_b, horizon), truth)
    plain = grid_b == 0
    i = int(np.flatnonzero(plain)[np.argmin(score[plain])]) if plain.any() else int(np.argmin(score))
    j = int(np.argmin(score))
    return ({"alpha": float(grid_a[i]), "train_macro_nmae": round(float(score[i]), 5)},
            {"alpha": float(grid_a[j]), "beta": float(grid_b[j]), "train_macro_nmae": round(float(score[j]), 5)})
