"""Test-wide policy: which tiers may skip, and where.

Root, lab and browser tests skip only when not root.  Tests of ../shared/data skip
only where that folder is absent.  Under CI=true (CI runs as root, with ../shared,
after the set-up installed everything) any skip, whatever its reason, fails the
run, so a broken environment cannot pass as green.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Tests import with --import-mode=importlib (two test files may share a basename);
# the helper modules beside them (lab, daemon_harness, webui_harness, flowgen, ...)
# have distinct names and are found through these folders.
for _helpers in ("lab", "webui", "controller", "daemon", "client", "ebpf"):
    sys.path.insert(0, str(REPO / "tests" / _helpers))

from daemon_harness import daemon_config, running_daemon  # noqa: E402
from lab import Lab  # noqa: E402
SHARED_DATA = REPO.parent / "shared" / "data"
UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
IS_ROOT = os.geteuid() == 0
STRICT_TIERS = ("root", "lab", "browser")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(item.get_closest_marker(m) for m in STRICT_TIERS) and not IS_ROOT:
            item.add_marker(pytest.mark.skip(reason="needs root (BPF, netns, tc)"))
        if item.get_closest_marker("shared_data") and not SHARED_DATA.is_dir():
            item.add_marker(pytest.mark.skip(reason=f"{SHARED_DATA} is absent"))


_strict_skips: list[str] = []


def pytest_runtest_logreport(report):
    # Under CI every skip fails the run, whatever its reason (not root, ../shared absent, a tool
    # or module missing): CI runs as root with ../shared and the set-up installs everything.
    if report.skipped and UNDER_CI:
        _strict_skips.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _strict_skips:
        session.config._ab_strict_skips = list(_strict_skips)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skips = getattr(config, "_ab_strict_skips", [])
    if skips:
        terminalreporter.section("skipped under CI (a failure: CI runs as root with ../shared, everything installed)")
        for nodeid in skips:
            terminalreporter.line(nodeid)


@pytest.fixture
def shared_data() -> Path:
    return SHARED_DATA


# -- the lab and a real daemon in it -------------------------------------------------

_lab_counter = itertools.count()


@pytest.fixture
def lab():
    """A fresh lab (client, gateway, server namespaces) for one test, always removed."""
    instance = Lab(prefix=f"t{os.getpid() % 100000}x{next(_lab_counter)}")
    instance.up()
    try:
        yield instance
    finally:
        instance.down()


@pytest.fixture
def gateway_daemon(lab, tmp_path):
    """anabranchd running in the lab's gateway on all four ports, ready."""
    config = daemon_config(tmp_path, {"wan0": "wan", "wan1": "wan", "lan0": "lan", "lan1": "lan"})
    with running_daemon(lab, config, tmp_path / "anabranchd.log") as daemon:
        yield daemon
