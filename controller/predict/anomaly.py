"""Rate anomalies: a series that stays outside the band the model expected, tick after tick.

Pure and clock-free; the alert engine raises and resolves alerts from what
`AnomalyDetector.update` returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Anomaly:
    series: int
    direction: str            # "above" or "below" the expected band
    actual_mbit: float        # the latest sample
    expected_low_mbit: float  # the p10-p90 band expected when the excursion began
    expected_high_mbit: float
    ticks: int                # consecutive ticks outside that band


@dataclass(frozen=True)
class AnomalyUpdate:
    raised: list[Anomaly]
    cleared: list[int]  # series whose anomaly ended: back inside, or settled at a new normal


class AnomalyDetector:
    """Per series: an excursion starts when a sample leaves the p10-p90 band predicted for it.

    The band at that moment is frozen as the expectation, because the model
    re-centres on a new level within a tick or two and would otherwise explain
    the change away.  Staying on the same side of the frozen band for `ticks`
    ticks raises an anomaly; returning inside clears it, and so does staying out
    for `settle_ticks` (the new level has become the normal).  `slack` widens
    the band by that fraction of its centre so tiny excursions do not count.
    """

    def __init__(self, series: int, ticks: int = 5, settle_ticks: int = 300, slack: float = 0.05):
        if ticks < 1:
            raise ValueError(f"AnomalyDetector.ticks: must be at least 1, got {ticks}")
        if settle_ticks <= ticks:
            raise ValueError(f"AnomalyDetector.settle_ticks: must exceed ticks ({ticks}), got {settle_ticks}")
        if not 0 <= slack < 1:
            raise ValueError(f"AnomalyDetector.slack: must be in [0, 1), got {slack}")
        self.series, self.ticks, self.settle_ticks, self.slack = series, ticks, settle_ticks, slack
        self._expected = np.full((series, 2), np.nan)  # band predicted for the coming tick
        self._frozen = np.full((series, 2), np.nan)
        self._side = np.zeros(series, dtype=np.int8)   # +1 above, -1 below, 0 inside
        self._streak = np.zeros(series, dtype=np.int64)
        self.active = np.zeros(series, dtype=bool)

    def excursion(self, i: int) -> tuple[str, float, float] | None:
        """Series `i`'s excursion under way: ("above" or "below", p10, p90 of the band it left)."""
        if self._side[i] == 0:
            return None
        return ("above" if self._side[i] > 0 else "below", float(self._frozen[i, 0]), float(self._frozen[i, 1]))

    @property
    def judging(self) -> np.ndarray:
        """Per series: can its next sample be judged (a trusted band, or an excursion under way)?
        Until then a series has no verdict, which is not the same as a clean one."""
        return np.isfinite(self._expected).all(axis=1) | (self._side != 0) | self.active

    def _side_of(self, actual: np.ndarray, band: np.ndarray) -> np.ndarray:
        """+1 above the (slackened) band, -1 below, 0 inside or when there is no band."""
        slack = self.slack * band.mean(axis=1)
        above = actual > band[:, 1] + slack
        below = actual < band[:, 0] - slack
        known = np.isfinite(band).all(axis=1)
        return (np.where(above, 1, 0) - np.where(below, 1, 0)) * known

    def update(self, actual: np.ndarray, next_band: np.ndarray, trusted: np.ndarray | None = None) -> AnomalyUpdate:
        """actual [n]: this tick's samples; next_band [n, 2]: p10, p90 predicted for the next tick.

        `trusted` [n] marks bands from the model (False for the cold-start
        fallback, whose band is a rule of thumb and never starts an excursion).
        A missed tick (NaN) neither extends nor ends an excursion.
        """
        actual = np.asarray(actual, dtype=np.float64).reshape(-1)
        next_band = np.asarray(next_band, dtype=np.float64)
        if actual.shape != (self.series,) or next_band.shape != (self.series, 2):
            raise ValueError(f"AnomalyDetector.update: expected actual ({self.series},) and next_band "
                             f"({self.series}, 2), got {actual.shape} and {next_band.shape}")
        trusted = np.ones(self.series, bool) if trusted is None else np.asarray(trusted, bool).reshape(-1)
        measured = np.isfinite(actual)
        cleared = np.zeros(self.series, bool)

        # Excursions under way: still on the same side of the frozen band?
        going = measured & (self._side != 0)
        still = going & (self._side_of(actual, self._frozen) == self._side)
        self._streak[still] += 1
        ended = going & ~still
        settled = still & self.active & (self._streak >= self.settle_ticks)
        for rows in (ended, settled):
            cleared |= rows & self.active
            self.active[rows] = False
            self._side[rows] = 0
            self._streak[rows] = 0

        # No excursion (or one that just ended): compare with the band predicted for this tick.
        idle = measured & (self._side == 0) & ~settled
        side = self._side_of(actual, self._expected) * idle
        beginning = side != 0
        self._side[beginning] = side[beginning]
        self._streak[beginning] = 1
        self._frozen[beginning] = self._expected[beginning]

        raised = []
        for i in np.flatnonzero((self._streak >= self.ticks) & ~self.active):
            self.active[i] = True
            raised.append(Anomaly(int(i), "above" if self._side[i] > 0 else "below", float(actual[i]),
                                  float(self._frozen[i, 0]), float(self._frozen[i, 1]), int(self._streak[i])))
        self._expected = np.where(trusted[:, None], next_band, np.nan)
        return AnomalyUpdate(raised, [int(i) for i in np.flatnonzero(cleared)])
