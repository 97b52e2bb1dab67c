"""Two builds of the datapath side by side under the same forwarding load.

Not part of `make bench`: a tool for changing ebpf/.  It builds the program
twice, attaches each build in turn to every gateway port of a fresh lab (and a
no-op program as the floor), runs iperf3 through the gateway in rotating order,
and prints each build's mean run time per invocation (kernel BPF statistics)
over all hooks and over the WAN hooks, with the median of the per-round
differences: under load this machine's figures drift by tens of ns from minute
to minute, so only a difference measured in the same rounds means anything.

    .venv/bin/python tests/bench/ab_datapath.py --define AB_TRY_X   # without vs with -DAB_TRY_X
    .venv/bin/python tests/bench/ab_datapath.py --against HEAD      # HEAD's ebpf/ vs the working tree's

The Python side is the working tree's for both builds, so REV's ebpf/ must have
the same entry points and map layouts: the tool refuses a revision that lacks
an entry point the working tree attaches.  For older code, check out a worktree
instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_datapath import REPO, _noop_program, forwarding_lab, forwarding_rounds  # noqa: E402

from anabranch.daemon import kstructs, policy  # noqa: E402
from anabranch.daemon.datapath import HEADER, SOURCE, BuildOptions, Datapath  # noqa: E402


def checkout(revision: str, into: Path) -> Path:
    """ebpf/ as it is at `revision`, written into a folder."""
    for name in (SOURCE, HEADER):
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:ebpf/{name}"],
                              check=True, capture_output=True, text=True).stdout
        (into / name).write_text(text)
    return into


def missing_entry_points(build: Datapath) -> list[str]:
    """The entry points the working tree attaches to the lab's ports that `build` lacks."""
    from bcc.libbcc import lib

    flags = kstructs.PORT_COUNT | kstructs.PORT_MARK
    wanted = {name for role in (kstructs.ROLE_LAN, kstructs.ROLE_WAN)
              for name in Datapath.entry_points(role, flags).values()}
    return sorted(name.decode() for name in wanted if not lib.bpf_function_start(build.bpf.module, name))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--define", help="B is the working tree built with -D<this>")
    which.add_argument("--against", metavar="REV", help="A is ebpf/ at this git revision")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (BPF and the netns lab)")

    size = 1_310_720
    with tempfile.TemporaryDirectory() as tmp:
        a_options = BuildOptions(flow_map_size=size)
        if args.against:
            a_options = BuildOptions(flow_map_size=size, directory=checkout(args.against, Path(tmp)))
        b_options = BuildOptions(flow_map_size=size, defines=(args.define,) if args.define else ())
        builds = {"A": Datapath(a_options), "B": Datapath(b_options)}
    for name, build in builds.items():
        missing = missing_entry_points(build)
        if missing:
            parser.error(f"build {name} lacks {', '.join(missing)}: check out a worktree of that revision instead")
    noop_bpf, noop_fd = _noop_program()
    try:
        for build in builds.values():
            policy.write_policy(build, policy.Policy.default())
        builds["A"].enable_stats()
        with forwarding_lab(f"abd{os.getpid() % 100000}") as (lab, hooks):
            measured = forwarding_rounds(lab, hooks, {**builds, "noop": noop_fd}, args.rounds)
    finally:
        for build in builds.values():
            build.close()
        noop_bpf.cleanup()

    median = statistics.median
    print(f"A = {args.against or 'working tree'}, B = working tree{f' -D{args.define}' if args.define else ''}; "
          f"{args.rounds} rounds; no-op floor {median(measured['noop']['all']):.1f} ns")
    for name in ("A", "B"):
        m = measured[name]
        print(f"  {name}: all hooks {median(m['all']):.1f} ns, WAN {median(m['wan']):.1f}, "
              f"LAN {median(m['lan']):.1f}; {median(m['gbit']) / 1e9:.2f} Gbit/s")
    for part in ("all", "wan"):
        change = median(b - a for a, b in zip(measured["A"][part], measured["B"][part]))
        print(f"  B - A, median of the rounds' differences, {part}: {change:+.1f} ns")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
