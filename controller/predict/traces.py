"""Throughput traces on disk: CSV `t_s,mbps`, one row a second, grouped into sources by folder.

`read_sources(DIR)` walks DIR recursively; each immediate subfolder is one
source (fcc/, hsdpa/, ...), and CSVs lying directly in DIR form a source named
after DIR itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER = "t_s,mbps"


class TraceError(ValueError):
    """A trace file or folder that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Trace:
    source: str
    path: Path
    mbps: np.ndarray


def read_trace(path: Path) -> np.ndarray:
    """The `mbps` column of one CSV; negative or NaN samples become 0 (as in the shared set)."""
    path = Path(path)
    try:
        with path.open() as handle:
            header = handle.readline().strip().replace(" ", "")
            if header != HEADER:
                raise TraceError(f"{path}: first line must be the header {HEADER!r}, got {header!r}")
            table = np.loadtxt(handle, delimiter=",", ndmin=2, dtype=np.float64)
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise TraceError(f"{path}: every row must be two numbers `t_s,mbps`: {exc}") from None
    if table.size == 0:
        return np.zeros(0)
    if table.shape[1] != 2:
        raise TraceError(f"{path}: every row must be two numbers `t_s,mbps`, got {table.shape[1]} columns")
    steps = np.diff(table[:, 0])
    if steps.size and not np.allclose(steps, 1.0):
        raise TraceError(f"{path}: t_s must advance by 1 s per row (one row per second)")
    mbps = table[:, 1]
    mbps[~np.isfinite(mbps) | (mbps < 0)] = 0.0
    return mbps


def read_sources(root: Path) -> dict[str, list[Trace]]:
    """Every CSV under `root`, grouped by the immediate subfolder it lies in."""
    root = Path(root)
    if not root.is_dir():
        raise TraceError(f"{root}: not a folder; pass --traces DIR with one subfolder per source")
    sources: dict[str, list[Trace]] = {}
    for path in sorted(root.rglob("*.csv")):
        relative = path.relative_to(root)
        source = relative.parts[0] if len(relative.parts) > 1 else root.name
        sources.setdefault(source, []).append(Trace(source, path, read_trace(path)))
    if not sources:
        raise TraceError(f"{root}: no *.csv traces found (expected DIR/<source>/*.csv with header {HEADER!r})")
    return sources
