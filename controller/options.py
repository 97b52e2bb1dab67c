"""Validation of the controller's option tables: every error names the key's path.

Mirrors daemon/config.py's style (`alerts.rules.p95.threshold: must be a number, got "x"`)
without importing the daemon, so the controller stays importable on its own.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable

Check = Callable[[Any], "str | None"]


class OptionsError(ValueError):
    """One or more option errors; str() lists each as `path: reason`."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


def show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


class Reader:
    """Reads one table, collecting errors instead of stopping at the first."""

    def __init__(self, table: Any, path: str, errors: list[str]):
        if not isinstance(table, dict):
            errors.append(f"{path}: must be a table, got {show(table)}")
            table = {}
        self.table = table
        self.path = path
        self.errors = errors
        self.seen: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, default: Any, check: Check) -> Any:
        self.seen.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        problem = check(value)
        if problem:
            self.errors.append(f"{self.key(key)}: {problem}, got {show(value)}")
            return default
        return value

    def require(self, key: str, check: Check, what: str) -> Any:
        if key not in self.table:
            self.seen.add(key)
            self.errors.append(f"{self.key(key)}: missing; must be {what}")
            return None
        return self.get(key, None, check)

    def finish(self) -> None:
        for key in self.table:
            if key not in self.seen:
                self.errors.append(f"{self.key(key)}: unknown key")


def number(low: float | None = None, high: float | None = None, integer: bool = False,
           positive: bool = False) -> Check:
    kind = "whole number" if integer else "number"

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int,) if integer else (int, float)):
            return f"must be a positive {kind}" if positive else f"must be a {kind}"
        if positive and value <= 0:
            return f"must be a positive {kind}"
        if low is not None and value < low:
            return f"must be at least {low}"
        if high is not None and value > high:
            return f"must be at most {high}"
        return None
    return check


def choice(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        if value not in choices:
            return "must be one of " + ", ".join(f'"{c}"' for c in choices)
        return None
    return check


def string(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "must be a non-empty string"


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def cidr_list(value: Any) -> str | None:
    if not isinstance(value, list):
        return "must be a list of CIDR prefixes"
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except (ValueError, TypeError):
            return f"{show(item)} is not a CIDR prefix such as \"10.0.0.0/8\""
    return None


def port_ranges(value: Any) -> str | None:
    """A list of ports or "lo-hi" ranges."""
    if not isinstance(value, list):
        return 'must be a list of ports or "lo-hi" ranges'
    for item in value:
        if parse_port_range(item) is None:
            return f'{show(item)} is not a port (0-65535) or a "lo-hi" range'
    return None


def parse_port_range(item: Any) -> tuple[int, int] | None:
    if isinstance(item, int) and not isinstance(item, bool):
        lo = hi = item
    elif isinstance(item, str):
        lo_s, _, hi_s = item.partition("-")
        if not lo_s.strip().isdigit() or (hi_s and not hi_s.strip().isdigit()):
            return None
        lo, hi = int(lo_s), int(hi_s or lo_s)
    else:
        return None
    if not 0 <= lo <= hi <= 65535:
        return None
    return lo, hi


def string_list(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        return "must be a list of non-empty strings"
    return None
