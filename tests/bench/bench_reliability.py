"""Reliability benchmark: the soak (tests/bench/soak.py) in its short form, one minute by default.

Faults injected and recovered (kill -9 and restart, a WAN link deleted and re-created,
carrier loss), recovery times, ZeroMQ and HTTP fuzz counts, daemon crashes, RSS
growth, tick times and events lost.  `make soak` runs the long form (10 minutes,
SOAK_MINUTES) into the same build/bench/reliability.json.  Needs root.
"""

from __future__ import annotations

import os

import soak

NAME = "reliability"


def run() -> dict:
    return soak.run(float(os.environ.get("BENCH_RELIABILITY_MINUTES", "1")))
