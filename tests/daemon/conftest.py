"""Fixtures for the API tests: a FakeDaemon serving real ipc:// sockets under tmp_path."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

import pytest
import zmq

from anabranch.client import Client

HERE = Path(__file__).resolve().parent


def _load_fake():
    # Loaded by path under a unique name: works whatever pytest's import mode.
    name = "anabranch_tests_fake_daemon"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "fake_daemon.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fake_daemon = _load_fake()


class Served:
    """A FakeDaemon whose control socket is served by a thread; `lock` pauses it for ticks."""

    def __init__(self, tmp_path: Path, flows: int = 200, endpoints: tuple[str, str] | None = None, **options):
        self.tmp_path = tmp_path
        events, control = endpoints or (f"ipc://{tmp_path}/events.sock", f"ipc://{tmp_path}/control.sock")
        self.state_dir = str(tmp_path / "state")
        self.daemon = fake_daemon.FakeDaemon(events, control, self.state_dir, flows=flows, **options)
        # What was really bound (a tcp:// port 0 becomes the kernel's choice).
        self.events, self.control = self.daemon.server.endpoints
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self.client = Client(self.control, timeout_s=5.0, retries=0)

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                self.daemon.server.serve(0.02)

    def tick(self, **options) -> None:
        with self.lock:
            self.daemon.tick(**options)

    def raw(self, cmd: str, **args):
        return self.client.raw(cmd, **args)

    def call(self, cmd: str, **args):
        return self.client.call(cmd, **args)

    def error(self, cmd: str, **args) -> tuple[str, str]:
        reply = self.client.raw(cmd, **args)
        assert reply["ok"] is False, reply
        return reply["error"]["code"], reply["error"]["message"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.close()
        self.daemon.close()


@pytest.fixture
def make_served():
    return Served


@pytest.fixture
def served(tmp_path):
    api = Served(tmp_path)
    api.tick(seed=1)
    api.tick(seed=2)
    yield api
    api.close()


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)
