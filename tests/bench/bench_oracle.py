"""`anabranch analyze` (the real datapath with BPF_PROG_TEST_RUN, then the daemon's
controller) over the labelled captures of ../shared/data/pcaps, scored against them:
class agreement by bytes over nDPI-labelled flows, MPTCP subflows in their connection."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "ebpf"))

import oracle_run  # noqa: E402

NAME = "oracle"
SHARED = HERE.parents[2] / "shared" / "data"


def run() -> dict:
    if not SHARED.is_dir():
        return {"skipped": f"{SHARED} is absent"}
    return oracle_run.score(SHARED)
