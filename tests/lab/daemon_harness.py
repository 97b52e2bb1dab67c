"""A real anabranchd for tests: a config under a temp dir, started in a lab's gateway."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab import Lab

REPO = Path(__file__).resolve().parent.parent.parent
VENV_BIN = Path(sys.executable).parent


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


@contextmanager
def running_daemon(lab: Lab, config: Path, log: Path):
    """A started daemon, ready; stopped afterwards unless the test already ended it."""
    daemon = start_daemon(lab, config, log)
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        if daemon.process.poll() is None:
            daemon.stop()
