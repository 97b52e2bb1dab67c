"""Bytes up and down per LAN host (IPv4 and IPv6) per day and month, with optional
quotas per host or prefix that report once at 90 % and once at 100 % per period.

Days and months are of local time: `now` (epoch seconds) plus `tz_offset_s`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import options as opt
from .features import CounterDeltas
from .flows import DOWN, UP, FlowTable, flow_ids, locate

LEVELS = (90, 100)


@dataclass(frozen=True)
class Quota:
    name: str
    prefix: str                 # a host is a /32 or /128
    period: str                 # "day" or "month"
    limit_bytes: int
    direction: str = "both"     # "up", "down" or "both"
    per_host: bool = False      # each host of the prefix has its own limit


@dataclass
class UsageOptions:
    tz_offset_s: int = 0
    quotas: tuple[Quota, ...] = ()

    @classmethod
    def configure(cls, table: dict[str, Any], path: str = "usage") -> "UsageOptions":
        errors: list[str] = []
        r = opt.Reader(table, path, errors)
        tz = r.get("tz_offset_s", 0, opt.number(-14 * 3600, 14 * 3600, integer=True))
        raw = r.get("quotas", {}, lambda v: None if isinstance(v, dict) else "must be a table of quotas")
        r.finish()
        quotas = []
        for name, q in raw.items():
            qr = opt.Reader(q, f"{path}.quotas.{name}", errors)
            before = len(errors)
            prefix = qr.require("prefix", lambda v: opt.cidr_list([v]) if isinstance(v, str) else
                                "must be an address or CIDR prefix", "an address or prefix such as \"10.0.0.5\"")
            period = qr.get("period", "month", opt.choice("day", "month"))
            limit = qr.require("limit_gb", opt.number(0.000001, 1_000_000), "a positive number of gigabytes")
            direction = qr.get("direction", "both", opt.choice("up", "down", "both"))
            per_host = qr.get("per_host", False, opt.boolean)
            qr.finish()
            if len(errors) == before:
                quotas.append(Quota(name, str(ipaddress.ip_network(prefix, strict=False)), period,
                                    int(limit * 1e9), direction, per_host))
        if errors:
            raise opt.OptionsError(errors)
        return cls(tz, tuple(quotas))


@dataclass
class HostUsage:
    address: str
    day: str = ""
    month: str = ""
    day_bytes: list[int] = field(default_factory=lambda: [0, 0])     # [up, down]
    month_bytes: list[int] = field(default_factory=lambda: [0, 0])
    tick_bytes: list[int] = field(default_factory=lambda: [0, 0])
    quotas: tuple[int, ...] = ()      # indices of the quotas covering this host

    def as_dict(self) -> dict:
        return {"address": self.address, "day": self.day, "month": self.month,
                "day_up": self.day_bytes[UP], "day_down": self.day_bytes[DOWN],
                "month_up": self.month_bytes[UP], "month_down": self.month_bytes[DOWN]}


@dataclass(frozen=True)
class QuotaEvent:
    quota: str
    subject: str                # the host address, or the prefix for shared quotas
    period: str                 # "2026-11-22" or "2026-11"
    level: int                  # 90 or 100
    used_bytes: int
    limit_bytes: int
    ts: float


def host_side(keys: np.ndarray) -> np.ndarray:
    """Per flow key: is its LAN-side address one host's?  Not for multicast, broadcast or
    unspecified addresses (IPv6 neighbour discovery to ff02::2, DHCP to 255.255.255.255):
    their bytes are nobody's usage."""
    addr = keys["lan_addr"]
    v4 = keys["family"] == 4
    unspecified = ~addr[:, :16].any(axis=1) & ~v4 | ~addr[:, :4].any(axis=1) & v4
    group = np.where(v4, addr[:, 0] >= 224, addr[:, 0] == 0xFF)   # 224/4 multicast, 240/4 and broadcast
    return ~(group | unspecified)


def periods(now: float, tz_offset_s: int) -> tuple[str, str]:
    local = dt.datetime.fromtimestamp(now + tz_offset_s, tz=dt.timezone.utc)
    return local.strftime("%Y-%m-%d"), local.strftime("%Y-%m")


class UsageMeter:
    """Per-host counters live in numpy arrays (one row per host ever seen); HostUsage
    records are made on demand."""

    def __init__(self, options: UsageOptions | None = None):
        self.options = options or UsageOptions()
        self._deltas = CounterDeltas()
        self._reported: set[tuple[str, str, str, int]] = set()
        self._usage_cache: tuple[float, list[dict]] | None = None
        self._nets = [(q, ipaddress.ip_network(q.prefix)) for q in self.options.quotas]
        self._hids = np.zeros(0, dtype=np.uint64)       # sorted host hashes
        self._row = np.zeros(0, dtype=np.int64)         # hash order -> row
        self.addresses: list[str] = []
        self._quotas: list[tuple[int, ...]] = []
        self.day_bytes = np.zeros((0, 2), dtype=np.int64)
        self.month_bytes = np.zeros((0, 2), dtype=np.int64)
        self.tick_bytes = np.zeros((0, 2), dtype=np.int64)
        self._unsaved = np.zeros(0, dtype=bool)         # rows counted since their last save
        self.day = ""
        self.month = ""

    @property
    def hosts(self) -> dict[str, HostUsage]:
        return {a: HostUsage(a, self.day, self.month, self.day_bytes[i].tolist(), self.month_bytes[i].tolist(),
                             self.tick_bytes[i].tolist(), self._quotas[i])
                for i, a in enumerate(self.addresses)}

    def _rows_for(self, hids: np.ndarray, family: np.ndarray, raw: np.ndarray) -> np.ndarray:
        pos, found = locate(self._hids, hids)
        if not found.all():
            new = np.flatnonzero(~found)
            first_row = len(self.addresses)
            for i in new.tolist():
                data = raw[i].tobytes()
                address = socket.inet_ntop(socket.AF_INET, data[:4]) if family[i] == 4 else \
                    socket.inet_ntop(socket.AF_INET6, data)
                self.addresses.append(address)
                self._quotas.append(self._covering(address))
            grow = np.zeros((len(new), 2), dtype=np.int64)
            self.day_bytes = np.concatenate([self.day_bytes, grow])
            self.month_bytes = np.concatenate([self.month_bytes, grow])
            self.tick_bytes = np.concatenate([self.tick_bytes, grow])
            self._unsaved = np.concatenate([self._unsaved, np.zeros(len(new), dtype=bool)])
            hids_all = np.concatenate([self._hids, hids[new]])
            rows_all = np.concatenate([self._row, np.arange(first_row, first_row + len(new))])
            order = np.argsort(hids_all)
            self._hids, self._row = hids_all[order], rows_all[order]
            pos = np.searchsorted(self._hids, hids)
        return self._row[pos]

    def update(self, table: FlowTable, now: float, byte_deltas: np.ndarray | None = None) -> list[QuotaEvent]:
        """Add the tick's bytes; `byte_deltas` [n, 2] saves recomputing them from counters."""
        day, month = periods(now, self.options.tz_offset_s)
        self._usage_cache = None
        delta = byte_deltas if byte_deltas is not None else self._deltas.update(table.ids, table.bytes)
        if day != self.day:
            self.day, self.day_bytes[:] = day, 0
        if month != self.month:
            self.month, self.month_bytes[:] = month, 0
        self.tick_bytes[:] = 0
        moved = np.flatnonzero((delta.sum(axis=1) > 0) & host_side(table.keys))
        if len(moved):
            keys = table.keys[moved]
            host_keys = np.zeros(len(moved), dtype=[("family", "u1"), ("addr", "u1", 16)])
            host_keys["family"] = keys["family"]
            host_keys["addr"] = keys["lan_addr"]
            hids = flow_ids(host_keys)
            unique, first, inverse = np.unique(hids, return_index=True, return_inverse=True)
            rows = self._rows_for(unique, host_keys["family"][first], host_keys["addr"][first])
            tick = np.zeros((len(unique), 2), dtype=np.int64)
            tick[:, UP] = np.rint(np.bincount(inverse, weights=delta[moved, UP], minlength=len(unique)))
            tick[:, DOWN] = np.rint(np.bincount(inverse, weights=delta[moved, DOWN], minlength=len(unique)))
            self.tick_bytes[rows] = tick
            self.day_bytes[rows] += tick
            self.month_bytes[rows] += tick
            self._unsaved[rows] = True
        return self._check_quotas(now, day, month) if self._nets else []

    def busiest(self, limit: int) -> list[tuple[str, int, int]]:
        """(address, up, down) of the hosts that moved the most bytes this tick."""
        total = self.tick_bytes.sum(axis=1)
        rows = np.flatnonzero(total > 0)
        rows = rows[np.argsort(-total[rows], kind="stable")][:limit]
        return [(self.addresses[r], int(self.tick_bytes[r, UP]), int(self.tick_bytes[r, DOWN])) for r in rows.tolist()]

    def _covering(self, address: str) -> tuple[int, ...]:
        ip = ipaddress.ip_address(address)
        return tuple(i for i, (_, net) in enumerate(self._nets) if ip.version == net.version and ip in net)

    def quota_usage(self, now: float) -> list[dict]:
        """Every quota subject with its use: quota, subject, period, used, limit, pct."""
        if self._usage_cache is not None and self._usage_cache[0] == now:
            return self._usage_cache[1]
        day, month = periods(now, self.options.tz_offset_s)
        current = {"day": day, "month": month}
        out = []
        for i, (quota, _) in enumerate(self._nets):
            rows = np.array([r for r, q in enumerate(self._quotas) if i in q], dtype=np.int64)
            counts = self.day_bytes if quota.period == "day" else self.month_bytes
            if (quota.period == "day" and self.day != day) or (quota.period == "month" and self.month != month):
                counts = np.zeros_like(counts)
            used_rows = {"up": counts[rows, UP], "down": counts[rows, DOWN],
                         "both": counts[rows].sum(axis=1)}[quota.direction] if len(rows) else np.zeros(0)
            groups = [(self.addresses[r], int(u)) for r, u in zip(rows.tolist(), used_rows.tolist())] \
                if quota.per_host else [(quota.prefix, int(used_rows.sum()))]
            for subject, used in groups:
                out.append({"quota": quota.name, "subject": subject, "period": current[quota.period],
                            "used_bytes": used, "limit_bytes": quota.limit_bytes,
                            "used_pct": 100.0 * used / quota.limit_bytes})
        self._usage_cache = (now, out)
        return out

    def _check_quotas(self, now: float, day: str, month: str) -> list[QuotaEvent]:
        # What was reported in past periods can never repeat: forget it.
        self._reported = {k for k in self._reported if k[2] in (day, month)}
        events = []
        for entry in self.quota_usage(now):
            for level in LEVELS:
                key = (entry["quota"], entry["subject"], entry["period"], level)
                if entry["used_pct"] >= level and key not in self._reported:
                    self._reported.add(key)
                    events.append(QuotaEvent(entry["quota"], entry["subject"], entry["period"], level,
                                             entry["used_bytes"], entry["limit_bytes"], now))
        return events

    def snapshot(self) -> list[dict]:
        return [h.as_dict() for h in self.hosts.values()]

    def unsaved(self) -> list[tuple]:
        """(address, day, month, day_up, day_down, month_up, month_down) of every host
        counted since it was last saved: what the history stores this tick."""
        rows = np.flatnonzero(self._unsaved)
        day, month = self.day_bytes[rows].tolist(), self.month_bytes[rows].tolist()
        return [(self.addresses[r], self.day, self.month, d[UP], d[DOWN], m[UP], m[DOWN])
                for r, d, m in zip(rows.tolist(), day, month)]

    def mark_saved(self) -> None:
        self._unsaved[:] = False

    def restore(self, hosts: list[dict]) -> None:
        """Carry day/month totals over a restart (from the history); each host's totals
        count only where their day or month is the newest saved one (hosts of older
        months are left out), and totals of a day or month that has passed since are
        dropped at the next update."""
        if not hosts:
            return
        # ISO dates: the newest sorts last.  A host last counted in an older month has nothing to carry.
        self.day, self.month = max(h["day"] for h in hosts), max(h["month"] for h in hosts)
        hosts = [h for h in hosts if h["month"] == self.month]
        key = np.zeros(len(hosts), dtype=[("family", "u1"), ("addr", "u1", 16)])
        for i, entry in enumerate(hosts):
            ip = ipaddress.ip_address(entry["address"])
            key["family"][i] = ip.version
            key["addr"][i, :len(ip.packed)] = np.frombuffer(ip.packed, dtype=np.uint8)
        rows = self._rows_for(flow_ids(key), key["family"], key["addr"])
        for row, entry in zip(rows.tolist(), hosts):
            if entry["day"] == self.day:
                self.day_bytes[row] = (entry["day_up"], entry["day_down"])
            self.month_bytes[row] = (entry["month_up"], entry["month_down"])
