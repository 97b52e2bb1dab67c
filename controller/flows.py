"""Flow table: a map sweep in, per-flow rates out, all in numpy.

The datapath's counters are monotonic; rates are deltas between consecutive
sweeps.  Flows are identified by a 64-bit hash of their key so matching two
sweeps is a sorted search over integers, not a Python dict of 100 000 keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UP = 0
DOWN = 1

# Mixing constants of a 64-bit multiply-xorshift hash (splitmix64 finaliser).
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def flow_ids(keys: np.ndarray) -> np.ndarray:
    """A 64-bit identifier per flow key (stable across sweeps and restarts)."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.uint64)
    raw = np.ascontiguousarray(keys).view(np.uint8).reshape(len(keys), keys.dtype.itemsize)
    pad = (-raw.shape[1]) % 4
    if pad:
        raw = np.pad(raw, ((0, 0), (0, pad)))
    words = raw.view("<u4").astype(np.uint64)
    h = np.full(len(keys), 0x2545F4914F6CDD1D, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in words.T:
            h = (h ^ column) * _GOLDEN
            h ^= h >> np.uint64(31)
        h = (h ^ (h >> np.uint64(30))) * _M1
        h = (h ^ (h >> np.uint64(27))) * _M2
        h ^= h >> np.uint64(31)
    return h


def locate(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of `ids`, its row in the sorted `sorted_ids` and whether it is there.

    Rows of ids that are absent are clipped into range (0 when `sorted_ids` is
    empty), so they index safely and must be masked by the second array.
    """
    if len(sorted_ids) == 0 or len(ids) == 0:
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return pos, sorted_ids[pos] == ids


@dataclass
class FlowTable:
    """One sweep with rates; arrays are aligned by row, sorted by `ids`."""

    ids: np.ndarray          # uint64
    keys: np.ndarray         # kstructs.FLOW_KEY
    packets: np.ndarray      # uint64 [n, 2]  (UP, DOWN), monotonic
    bytes: np.ndarray        # uint64 [n, 2]
    first_seen_ns: np.ndarray
    last_seen_ns: np.ndarray
    bps: np.ndarray          # float64 [n, 2], bit/s over the last interval
    pps: np.ndarray          # float64 [n, 2]
    now_ns: int
    # The swept flow records (kstructs.FLOW) in row order: class, RTT,
    # retransmissions, MPTCP subtypes for whoever needs more than counters.
    values: np.ndarray | None = None
    # Where the gateway translates addresses (daemon/conntrack.py), `keys` name each
    # flow's LAN host and these are the datapath's own keys, which its maps use.
    wire_keys: np.ndarray | None = None

    def kernel_keys(self) -> np.ndarray:
        """The keys the datapath knows the flows by (its maps, deleting idle flows)."""
        return self.keys if self.wire_keys is None else self.wire_keys

    def __len__(self) -> int:
        return len(self.ids)

    def totals(self) -> dict[str, float | int]:
        return {
            "flows": len(self),
            "up_bps": float(self.bps[:, UP].sum()),
            "down_bps": float(self.bps[:, DOWN].sum()),
            "up_pps": float(self.pps[:, UP].sum()),
            "down_pps": float(self.pps[:, DOWN].sum()),
            "bytes_up": int(self.bytes[:, UP].sum()),
            "bytes_down": int(self.bytes[:, DOWN].sum()),
        }

    def by_port(self, ifindex: int) -> np.ndarray:
        return self.keys["ifindex"] == ifindex

    def idle(self, timeout_ns: int) -> np.ndarray:
        """Mask of flows not seen for `timeout_ns` (clock: the datapath's monotonic ns)."""
        return (self.now_ns - self.last_seen_ns.astype(np.int64)) > timeout_ns

    def top(self, limit: int) -> np.ndarray:
        """Row indices of the `limit` busiest flows, busiest first."""
        rate = self.bps.sum(axis=1)
        if limit >= len(rate):
            return np.argsort(-rate, kind="stable")
        part = np.argpartition(-rate, limit)[:limit]
        return part[np.argsort(-rate[part], kind="stable")]


class FlowRates:
    """Keeps the previous sweep and turns each new one into a FlowTable."""

    def __init__(self) -> None:
        self._prev: FlowTable | None = None

    def update(self, keys: np.ndarray, values: np.ndarray, now_ns: int) -> FlowTable:
        ids = flow_ids(keys)
        order = np.argsort(ids, kind="stable")
        ids, keys, values = ids[order], keys[order], values[order]
        counters = values["dir"]
        packets = counters["packets"].astype(np.uint64)
        octets = counters["bytes"].astype(np.uint64)

        bps = np.zeros((len(ids), 2))
        pps = np.zeros((len(ids), 2))
        prev = self._prev
        if prev is not None and len(ids):
            dt = max((now_ns - prev.now_ns) / 1e9, 1e-3)
            pos, known = locate(prev.ids, ids)
            prev_packets = np.zeros_like(packets)
            prev_octets = np.zeros_like(octets)
            prev_packets[known] = prev.packets[pos[known]]
            prev_octets[known] = prev.bytes[pos[known]]
            # A flow evicted and re-created between sweeps restarts its counters:
            # treat a decrease as a fresh start rather than a huge wrap-around.
            restarted = (packets < prev_packets).any(axis=1) | (octets < prev_octets).any(axis=1)
            prev_packets[restarted] = 0
            prev_octets[restarted] = 0
            # Flows first seen before the previous sweep but absent from it were
            # not counted then; all their bytes fall in this interval or earlier.
            bps = (octets - prev_octets).astype(np.float64) * 8.0 / dt
            pps = (packets - prev_packets).astype(np.float64) / dt
        table = FlowTable(ids=ids, keys=keys, packets=packets, bytes=octets,
                          first_seen_ns=values["first_seen_ns"].astype(np.uint64),
                          last_seen_ns=values["last_seen_ns"].astype(np.uint64),
                          bps=bps, pps=pps, now_ns=now_ns, values=values)
        self._prev = table
        return table
