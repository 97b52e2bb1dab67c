"""Test-wide policy: which tiers may skip, and where.

Root, lab and browser tests skip only when not root.  Under CI=true (CI runs as
root) any skip of those tiers fails the run, so a broken environment cannot pass
as green.  Tests of ../shared/data skip only where that folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
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
    if report.skipped and UNDER_CI:
        keywords = report.keywords
        if any(m in keywords for m in STRICT_TIERS) or "shared_data" in keywords:
            _strict_skips.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _strict_skips:
        session.config._ab_strict_skips = list(_strict_skips)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skips = getattr(config, "_ab_strict_skips", [])
    if skips:
        terminalreporter.section("skipped under CI (a failure: CI runs as root with ../shared)")
        for nodeid in skips:
            terminalreporter.line(nodeid)


@pytest.fixture
def shared_data() -> Path:
    return SHARED_DATA


# -- the lab and a real daemon in it -------------------------------------------------
import itertools  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

sys.path.insert(0, str(REPO / "tests" / "lab"))
from lab import Lab  # noqa: E402

VENV_BIN = Path(sys.executable).parent
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


def daemon_config(tmp: Path, interfaces: dict[str, str], extra: str = "") -> Path:
    """A config whose sockets and state live under `tmp` (so tests never collide)."""
    run = tmp / "run"
    lines = [
        "[daemon]", f'runtime_dir = "{run}"', f'state_dir = "{tmp / "state"}"', "",
        "[api]", f'events = "ipc://{run}/events.sock"', f'control = "ipc://{run}/control.sock"',
        'socket_group = ""', "",
    ]
    for name, role in interfaces.items():
        lines += [f"[interfaces.{name}]", f'role = "{role}"', ""]
    path = tmp / "anabranch.toml"
    path.write_text("\n".join(lines) + extra)
    return path


@dataclass
class RunningDaemon:
    process: subprocess.Popen
    config: Path
    control: str
    events: str
    log: Path

    def client(self, timeout_s: float = 5.0):
        from anabranch.client import Client
        return Client(self.control, timeout_s=timeout_s, retries=0)

    def wait_ready(self, timeout_s: float = 60.0) -> dict:
        from anabranch.client import DaemonUnreachable
        deadline = time.monotonic() + timeout_s
        with self.client(timeout_s=1.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"anabranchd exited {self.process.returncode}:\n{self.log.read_text()}")
                try:
                    return client.call("status")
                except DaemonUnreachable:
                    time.sleep(0.2)
        raise AssertionError(f"anabranchd not ready in {timeout_s} s:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout_s)


def start_daemon(lab: Lab, config: Path, log: Path) -> RunningDaemon:
    run = config.parent / "run"
    with log.open("ab") as sink:
        process = subprocess.Popen(lab.cmd("gw", str(VENV_BIN / "anabranchd"), "--config", str(config)),
                                   stdout=sink, stderr=subprocess.STDOUT)
    return RunningDaemon(process, config, f"ipc://{run}/control.sock", f"ipc://{run}/events.sock", log)


@pytest.fixture
def gateway_daemon(lab, tmp_path):
    """anabranchd running in the lab's gateway on all four ports, ready."""
    config = daemon_config(tmp_path, {"wan0": "wan", "wan1": "wan", "lan0": "lan", "lan1": "lan"})
    daemon = start_daemon(lab, config, tmp_path / "anabranchd.log")
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        if daemon.process.poll() is None:
            daemon.stop()
