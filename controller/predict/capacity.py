"""The `auto` link capacity: what the predictor expects the link to carry, less a safety margin."""

from __future__ import annotations

import numpy as np


def auto_capacity(predicted_mbit: np.ndarray, ceiling_mbit: float | np.ndarray, margin: float = 0.1,
                  floor_mbit: float | np.ndarray = 0.0) -> np.ndarray:
    """predicted * (1 - margin), never above the configured ceiling nor below the floor.

    Pass a conservative quantile (p10, or p50 of the 5 s horizon) as
    `predicted_mbit`; a missing prediction (NaN) gives the floor.
    """
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"auto_capacity.margin: must be in [0, 1), got {margin!r}")
    ceiling = np.asarray(ceiling_mbit, dtype=np.float64)
    floor = np.asarray(floor_mbit, dtype=np.float64)
    if not np.all(np.isfinite(ceiling) & (ceiling > 0)):
        raise ValueError(f"auto_capacity.ceiling_mbit: must be positive numbers, got {ceiling_mbit!r}")
    if not np.all(np.isfinite(floor) & (floor >= 0) & (floor <= ceiling)):
        raise ValueError(f"auto_capacity.floor_mbit: must be between 0 and the ceiling, got {floor_mbit!r}")
    predicted = np.asarray(predicted_mbit, dtype=np.float64)
    capacity = np.nan_to_num(predicted * (1.0 - margin), nan=0.0, posinf=np.inf, neginf=0.0)
    return np.minimum(np.maximum(capacity, floor), ceiling)
