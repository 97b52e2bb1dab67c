"""Per-flow inputs beyond the counters (RTT, retransmissions, DSCP, MPTCP seen) and
counter deltas between ticks, shared by classification, paths and usage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .flows import FlowTable, locate


@dataclass
class FlowExtras:
    """Optional arrays aligned with a FlowTable's rows; any may be None (unknown).

    rtt_ms: float64 [n], passive RTT of the flow's latest sample, NaN when none.
    retrans: uint64 [n] or [n, 2], monotonic retransmitted segments.
    dscp: uint8 [n], DSCP of the flow's incoming (DOWN) packets as first seen.
    mptcp_seen: bool [n], the datapath saw an MPTCP option on this flow.
    """

    rtt_ms: np.ndarray | None = None
    retrans: np.ndarray | None = None
    dscp: np.ndarray | None = None
    mptcp_seen: np.ndarray | None = None

    def check(self, n: int) -> None:
        for name in ("rtt_ms", "retrans", "dscp", "mptcp_seen"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"extras.{name}: has {len(value)} rows, the flow table {n}")


class CounterDeltas:
    """Turns a monotonic per-flow counter into per-tick deltas (restarts count from zero)."""

    def __init__(self) -> None:
        self._ids = np.zeros(0, dtype=np.uint64)
        self._values: np.ndarray | None = None

    def update(self, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        previous = np.zeros_like(values)
        if self._values is not None and self._values.shape[1:] == values.shape[1:]:
            pos, known = locate(self._ids, ids)
            previous[known] = self._values[pos[known]]
        restarted = values < previous
        previous[restarted] = 0
        self._ids, self._values = ids, values
        return (values - previous).astype(np.float64)


def new_rows(prev_ids: np.ndarray, table: FlowTable) -> np.ndarray:
    """Mask of rows whose flow was not in the previous tick's table."""
    _, known = locate(prev_ids, table.ids)
    return ~known
