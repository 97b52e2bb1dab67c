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
from .flows import DOWN, UP, FlowTable, flow_ids

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


def periods(now: float, tz_offset_s: int) -> tuple[str, str]:
    local = dt.datetime.fromtimestamp(now + tz_offset_s, tz=dt.timezone.utc)
    return local.strftime("%Y-%m-%d"), local.strftime("%Y-%m")


class UsageMeter:
    def __init__(self, options: UsageOptions | None = None):
        self.options = options or UsageOptions()
        self.hosts: dict[int, HostUsage] = {}
        self._deltas = CounterDeltas()
        self._reported: set[tuple[str, str, str, int]] = set()
        self._nets = [(q, ipaddress.ip_network(q.prefix)) for q in self.options.quotas]

    def update(self, table: FlowTable, now: float) -> list[QuotaEvent]:
        day, month = periods(now, self.options.tz_offset_s)
        delta = self._deltas.update(table.ids, table.bytes)
        for host in self.hosts.values():
            host.tick_bytes = [0, 0]
            if host.day != day:
                host.day, host.day_bytes = day, [0, 0]
            if host.month != month:
                host.month, host.month_bytes = month, [0, 0]
        moved = np.flatnonzero(delta.sum(axis=1) > 0)
        if len(moved):
            keys = table.keys[moved]
            host_keys = np.zeros(len(moved), dtype=[("family", "u1"), ("addr", "u1", 16)])
            host_keys["family"] = keys["family"]
            host_keys["addr"] = keys["lan_addr"]
            hids = flow_ids(host_keys)
            unique, first, inverse = np.unique(hids, return_index=True, return_inverse=True)
            up = np.bincount(inverse, weights=delta[moved, UP], minlength=len(unique))
            down = np.bincount(inverse, weights=delta[moved, DOWN], minlength=len(unique))
            for hid, f, u, d in zip(unique.tolist(), first.tolist(), up.tolist(), down.tolist()):
                host = self.hosts.get(hid)
                if host is None:
                    fam = int(host_keys["family"][f])
                    raw = host_keys["addr"][f].tobytes()
                    address = socket.inet_ntop(socket.AF_INET, raw[:4]) if fam == 4 else \
                        socket.inet_ntop(socket.AF_INET6, raw)
                    host = self.hosts[hid] = HostUsage(address, day, month,
                                                       quotas=self._covering(address))
                u, d = int(round(u)), int(round(d))
                host.tick_bytes = [u, d]
                host.day_bytes[UP] += u
                host.day_bytes[DOWN] += d
                host.month_bytes[UP] += u
                host.month_bytes[DOWN] += d
        return self._check_quotas(now, day, month) if self._nets else []

    def _covering(self, address: str) -> tuple[int, ...]:
        ip = ipaddress.ip_address(address)
        return tuple(i for i, (_, net) in enumerate(self._nets) if ip.version == net.version and ip in net)

    def _used(self, host: HostUsage, quota: Quota) -> int:
        counts = host.day_bytes if quota.period == "day" else host.month_bytes
        return {"up": counts[UP], "down": counts[DOWN], "both": counts[UP] + counts[DOWN]}[quota.direction]

    def quota_usage(self, now: float) -> list[dict]:
        """Every quota subject with its use: quota, subject, period, used, limit, pct."""
        day, month = periods(now, self.options.tz_offset_s)
        current = {"day": day, "month": month}
        out = []
        members_of: dict[int, list[HostUsage]] = {i: [] for i in range(len(self._nets))}
        for host in self.hosts.values():
            for i in host.quotas:
                members_of[i].append(host)
        for i, (quota, net) in enumerate(self._nets):
            members = members_of[i]
            groups = [(h.address, [h]) for h in members] if quota.per_host else [(quota.prefix, members)]
            for subject, hosts in groups:
                used = sum(self._used(h, quota) for h in hosts)
                period = current[quota.period]
                out.append({"quota": quota.name, "subject": subject, "period": period, "used_bytes": used,
                            "limit_bytes": quota.limit_bytes, "used_pct": 100.0 * used / quota.limit_bytes})
        return out

    def _check_quotas(self, now: float, day: str, month: str) -> list[QuotaEvent]:
        events = []
        for entry in self.quota_usage(now):
            period = entry["period"]
            for level in LEVELS:
                key = (entry["quota"], entry["subject"], period, level)
                if entry["used_pct"] >= level and key not in self._reported:
                    self._reported.add(key)
                    events.append(QuotaEvent(entry["quota"], entry["subject"], period, level,
                                             entry["used_bytes"], entry["limit_bytes"], now))
        return events

    def snapshot(self) -> list[dict]:
        return [h.as_dict() for h in self.hosts.values()]

    def restore(self, hosts: list[dict]) -> None:
        """Carry day/month totals over a restart (from history's saved state)."""
        for entry in hosts:
            raw = ipaddress.ip_address(entry["address"])
            key = np.zeros(1, dtype=[("family", "u1"), ("addr", "u1", 16)])
            key["family"] = raw.version
            key["addr"][0, :len(raw.packed)] = np.frombuffer(raw.packed, dtype=np.uint8)
            self.hosts[int(flow_ids(key)[0])] = HostUsage(
                entry["address"], entry["day"], entry["month"], [entry["day_up"], entry["day_down"]],
                [entry["month_up"], entry["month_down"]], quotas=self._covering(entry["address"]))
