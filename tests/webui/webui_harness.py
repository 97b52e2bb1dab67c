"""Test harness for the web UI, reusable by end-to-end tests.

Import it from any test (pytest puts tests/webui on sys.path only for tests in
that folder, so elsewhere add it first):

    sys.path.insert(0, str(REPO / "tests" / "webui"))
    from webui_harness import StreamPublisher, write_config, webui_server, login, open_websocket

Pieces, each usable alone:
- `StreamPublisher(endpoint, tick_s)`: a stand-in daemon; a real ZeroMQ PUB socket
  that sends `state` and `flows` (schema v1, built with anabranch.client.messages)
  every tick.  `pause()`/`resume()` make the daemon vanish and return.
- `FakeDaemon(endpoint, full=True)`: the daemon's own command table
  (daemon/commands.py) over a synthetic flow table, policy, alert book and HTB
  plan, recording each request; `full=False` knows only the commands of an
  older daemon (status, flows, snapshot).
- `write_config(directory, events=..., password=...)`: a config file for the web UI
  with its password and key files under `directory`; returns its path.
- `webui_server(config_path)`: runs the real `anabranch-webui` (gunicorn) on a free
  loopback port; yields a `RunningWebUI` with `.base_url`; stops it with SIGTERM.
- `login(base_url, password)`: logs in over HTTP; returns the Cookie header value.
- `open_websocket(base_url, cookie)`: a logged-in websocket to /ws;
  `next_message(ws, type)` waits for one message of a type.
- `launch_chromium(playwright)` and `browser_login(page, base_url, password)`:
  Debian's /usr/bin/chromium, headless, driven by Playwright.
- In-process: `make_app(config_path)` (relay not started unless asked),
  `serving(app)` (a threaded HTTP server on a free port, yields its URL), and
  `log_in(test_client)` for the Flask test client.
"""

from __future__ import annotations

import http.cookiejar
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from anabranch.client import messages
from anabranch.webui.credentials import hash_password, write_password_hash

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "build" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "correct horse battery staple"
# Test hashes are cheap (the real default costs half a second per login).
TEST_SCRYPT_LOG2_N = 10
SESSION_COOKIE = "anabranch_session"


# ---- a stand-in daemon ------------------------------------------------------

def sample_flow(n: int, seq: int = 0) -> dict[str, Any]:
    """The n-th flow of a small, varied, deterministic LAN (IPv4 and IPv6), as the daemon's
    FlowRecords build it (a test keeps the fields equal to a real record's)."""
    kinds = [
        ("tcp", 443, "interactive", "default"),
        ("udp", 16390, "voice", "port:voice"),
        ("tcp", 1935, "video", "port:video"),
        ("tcp", 22, "file", "port:file"),
        ("udp", 53, "background", "port:background"),
        ("icmp", 0, "interactive", "default"),
    ]
    proto, dport, cls, reason = kinds[n % len(kinds)]
    family = 6 if n % 4 == 3 else 4
    if family == 4:
        src, dst = f"192.168.1.{10 + n % 40}", f"203.0.113.{20 + n % 200}"
    else:
        src, dst = f"fd00:1::{10 + n:x}", f"2001:db8:40::{n:x}"
    wave = 1.0 + 0.5 * math.sin((seq + n) / 3.0)
    bps_down = float(int(wave * 40_000_000 / (n + 1)))
    bps_up = float(int(wave * 4_000_000 / (n + 2)))
    if proto == "icmp":
        proto_family = "icmpv6" if family == 6 else "icmp"
        sport = dport = 0
    else:
        proto_family, sport = proto, 51514 + n
    tcp = proto == "tcp"
    return {
        "id": f"{n:016x}", "iface": "wan0" if n % 3 else "wan1", "proto": proto_family,
        "family": family, "src": src, "sport": sport, "dst": dst, "dport": dport, "nat": None,
        "packets_up": 40 * (seq + 1) + n, "packets_down": 90 * (seq + 1) + n,
        "bytes_up": int(bps_up) // 8 * (seq + 1), "bytes_down": int(bps_down) // 8 * (seq + 1),
        "bps_up": bps_up, "bps_down": bps_down,
        "first_seen": 1_700_000_000.0, "last_seen": 1_700_000_000.0 + seq,
        "class": cls, "reason": reason, "kernel_class": cls,
        # Per direction [up, down]; None where the datapath took no sample (not TCP).
        "rtt_ms": [round(12.0 + n, 3), round(14.5 + n, 3)] if tcp else [None, None],
        "retransmits": [n % 3, n % 2] if tcp else [0, 0],
        "mptcp_subtypes": 0,
    }


def sample_state(seq: int, ts: float, flows: list[dict[str, Any]], tick_ms: int) -> dict[str, Any]:
    """A `state` message body as Daemon.state() builds it (a test keeps the keys equal)."""
    up = sum(f["bps_up"] for f in flows)
    down = sum(f["bps_down"] for f in flows)

    def iface(name: str, ifindex: int, role: str, share: float, up_mbit, down_mbit) -> dict[str, Any]:
        return {"name": name, "ifindex": ifindex, "role": role, "attached": True, "oper_up": True,
                "up_bps": up * share, "down_bps": down * share, "up_mbit": up_mbit, "down_mbit": down_mbit}

    return {
        "daemon": {"version": "0.1.0", "pid": 4242, "uptime_s": 3725 + seq * tick_ms / 1000,
                   "tick_s": tick_ms / 1000, "tick_ms": 2.5, "tick_cpu_ms": 2.4,
                   "tick_faults": 0, "tick_preemptions": 0, "tick_realtime": True, "ticks": seq,
                   "controller_ms": 0.8,
                   "phases_ms": {"sweep": 0.4, "controller": 0.8, "shaping": 0.9, "publish": 0.4, "gc": 0.0},
                   "controller_steps_ms": {"classify": 0.3, "mptcp": 0.1, "paths": 0.1, "usage": 0.05,
                                           "alerts": 0.02, "history": 0.1, "kernel_maps": 0.03, "predict": 0.1},
                   "nat": {"following": True, "connections": 0, "flows": 0, "resyncs": 1, "error": None}},
        "interfaces": [iface("wan0", 2, "wan", 2 / 3, 50, 200), iface("wan1", 3, "wan", 1 / 3, 20, 100),
                       iface("lan0", 4, "lan", 1.0, None, None)],
        "link_changes": [],
        "totals": {"flows": len(flows), "up_bps": up, "down_bps": down,
                   "up_pps": up / 9000, "down_pps": down / 11000,
                   "bytes_up": int(up) // 8 * (seq + 1), "bytes_down": int(down) // 8 * (seq + 1)},
        "datapath": {"errors": {}, "flow_map_size": 65536, "events": 10 * seq, "events_lost": 0, "cost": {}},
        "shaping": None,
        "recommendation": {"voice": "wan0", "video": "wan0", "interactive": "wan0", "file": "wan1",
                           "background": "wan1"},
    }


@dataclass
class StreamPublisher:
    """A ZeroMQ PUB bound at `endpoint` that publishes `state` and `flows` every tick."""

    endpoint: str
    tick_s: float = 0.1
    flow_count: int = 14
    predictions: bool = False  # also publish the `predictions` topic (a daemon with a predictor)
    # Extra characters per flow (in `reason`), to make big messages on purpose.
    padding: int = 0
    seq: int = 0
    _running: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _socket: zmq.Socket | None = None

    def flows(self, seq: int) -> list[dict[str, Any]]:
        flows = [sample_flow(n, seq) for n in range(self.flow_count)]
        if self.padding:
            for flow in flows:
                flow["reason"] += " " + "x" * self.padding
        return flows

    def __enter__(self) -> StreamPublisher:
        sock = zmq.Context.instance().socket(zmq.PUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.endpoint)
        self._socket = sock
        self._running.set()
        self._thread = threading.Thread(target=self._run, name="test-publisher", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._socket is not None:
            self._socket.close(0)

    def pause(self) -> None:
        """Stop publishing: to the web UI the daemon has gone."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def _run(self) -> None:
        tick_ms = max(1, int(self.tick_s * 1000))
        while not self._stop.is_set():
            if self._running.is_set():
                self.seq += 1
                now = time.time()
                flows = self.flows(self.seq)
                self._socket.send_multipart(
                    messages.event("state", self.seq, now, sample_state(self.seq, now, flows, tick_ms)))
                self._socket.send_multipart(messages.event("flows", self.seq, now, {
                    "snapshot": True, "count": len(flows), "flows": flows}))
                if self.predictions:
                    self._socket.send_multipart(messages.event("predictions", self.seq, now,
                                                               sample_predictions()))
            self._stop.wait(self.tick_s)


def sample_predictions() -> dict[str, Any]:
    """What the daemon publishes on the `predictions` topic (daemon/forecast.py Forecasts.view)."""
    def both(i: int) -> dict[str, Any]:
        one = {"now_mbit": 1.0 + i, "fallback": False, "history_s": 120, "anomaly": False,
               "h1": {"p10": 0.8 + i, "p50": 1.1 + i, "p90": 1.4 + i, "confidence": 80.0, "error": {"mae": 0.3}},
               "h5": {"p10": 0.7 + i, "p50": 1.2 + i, "p90": 1.9 + i, "confidence": 70.0, "error": {"mae": 0.5}}}
        return {"now_mbit": 3.0 + i, "next_1s_mbit": 3.2 + i, "next_5s_mbit": 3.9 + i, "confidence": 80.0,
                "up": one, "down": one}

    return {"available": True, "method": "onnx", "model": "anabranch-hybrid-v1",
            "error": {"mae_mbit": 1.7, "nmae": 0.12},
            "classes": [{"name": name, **both(i)}
                        for i, name in enumerate(("voice", "video", "interactive", "file", "background"))],
            "links": [{"name": "wan0", **both(5), "capacity_mbit": 200}, {"name": "wan1", **both(6), "capacity_mbit": 100}]}


# ---- a stand-in daemon's control socket: the real command table ------------

# Commands an older daemon (before the API issue) offered; `full=False` keeps only these.
OLD_COMMANDS = ("status", "flows", "snapshot", "commands")


def _daemon_helpers() -> None:
    """tests/daemon (fake_daemon.py) on sys.path, for callers outside the test folders."""
    folder = str(REPO / "tests" / "daemon")
    if folder not in sys.path:
        sys.path.insert(0, folder)


class FakeDaemon:
    """The daemon's own command table (daemon/commands.py) at `endpoint`, over a synthetic
    provider, so every reply has exactly the real daemon's shape.

    The provider is tests/daemon/fake_daemon.FakeDaemon (real ApiServer, Policy,
    AlertBook, Stream and flow records over a numpy flow table) with a planned
    shaper whose HTB "kernel" is the desired tree of the policy's classes.  Its
    own state stream goes to a private socket: the web UI's stream comes from a
    StreamPublisher.  `full=False` offers only the commands of an older daemon.
    Every request is recorded in `requests`; `raise_alert()`/`resolve_alert()`
    drive the real AlertBook from the daemon's thread.
    """

    def __init__(self, endpoint: str, full: bool = True, flows: int = 24, tick_s: float = 0.1):
        self.endpoint = endpoint
        self.full = full
        self.flows = flows
        self.tick_s = tick_s
        self.requests: list[dict[str, Any]] = []
        self.provider = None
        self._lock = threading.Lock()
        self._pending: list[Any] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._directory: Path | None = None

    def __enter__(self) -> FakeDaemon:
        import tempfile

        _daemon_helpers()
        from fake_daemon import FakeDaemon as Provider

        self._directory = Path(tempfile.mkdtemp(prefix="ab-fd-", dir="/tmp"))
        self.provider = Provider(f"ipc://{self._directory}/events.sock", self.endpoint,
                                 str(self._directory / "state"), flows=self.flows)
        _classify(self.provider)
        self._scenery = Scenery(self.provider)
        self.provider.shaper = PlannedShaper(self.provider)
        server = self.provider.server
        if not self.full:
            for name in [n for n in server.commands if n not in OLD_COMMANDS]:
                del server.commands[name]
        answer = server.handle

        def recording(payload: bytes) -> bytes:
            try:
                request = messages.unpack(payload)
                with self._lock:
                    self.requests.append({"cmd": request.get("cmd"), "args": request.get("args") or {}})
            except messages.ProtocolError:
                pass
            return answer(payload)

        server.handle = recording
        self.provider.tick()
        self._thread = threading.Thread(target=self._run, name="fake-daemon", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import shutil

        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.provider.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    def _run(self) -> None:
        # ZeroMQ sockets belong to one thread: ticks, requests and test actions all run here.
        while not self._stop.is_set():
            with self._lock:
                pending, self._pending = self._pending, []
            for action in pending:
                action()
            self._scenery.move()
            self.provider.tick()
            self.provider.server.serve(self.tick_s)

    def _in_daemon(self, action) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                action()
            finally:
                done.set()

        with self._lock:
            self._pending.append(run)
        if not done.wait(5):
            raise TimeoutError("the fake daemon's thread did not run the action")

    def raise_alert(self, alert_id: str = "a1", message: str = "wan1 loss above 1 %",
                    rule: str = "link-saturated", severity: str = "critical", subject: str = "wan1") -> None:
        self._in_daemon(lambda: self.provider.alerts.raise_alert(alert_id, rule, severity, message, time.time(),
                                                                 subject=subject))

    def resolve_alert(self, alert_id: str = "a1") -> None:
        self._in_daemon(lambda: self.provider.alerts.resolve(alert_id, time.time()))

    def commands(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["cmd"] == name]


def _classify(provider) -> None:
    """Give the synthetic flows the classes and reasons the datapath would (ports of the defaults)."""
    from anabranch.controller.allocate import DEFAULT_CLASSES

    ids = {c.name: c.class_id for c in DEFAULT_CLASSES}
    provider.class_names = {c.class_id: c.name for c in DEFAULT_CLASSES}
    by_port = {5060: "voice", 22: "file", 53: "background"}
    ports = provider.keys["remote_port"].tolist()
    names = [by_port.get(port, "interactive") for port in ports]
    provider.values["class_id"] = [ids[name] for name in names]
    provider.values["class_reason"] = [2 if port in by_port else 1 for port in ports]  # port / default


class Scenery:
    """What the synthetic provider lacks to exercise the whole controller: a second WAN
    (wan1), RTT and retransmission samples on TCP flows (path statistics), and one
    MPTCP connection (MP_CAPABLE then MP_JOIN events) whose subflows leave by wan0 and
    wan1, sent 70 and 30 kB a tick (plus the provider's random traffic on every flow)."""

    WAN1 = 4
    LAN_ADDRESS, JOIN_ADDRESS, REMOTE = "10.0.0.7", "10.0.1.7", "198.51.100.7"
    KEYS = (0x1D2C3B4A59687706, 0x0A1B2C3D4E5F6071)   # client's and server's MPTCP keys

    def __init__(self, provider):
        from anabranch.controller.events import FlowKey, MpCapable, MpJoin
        from anabranch.controller.flows import flow_ids
        from anabranch.controller.mptcp import key_token
        from anabranch.controller.paths import LinkSpec
        from anabranch.daemon import config as config_mod
        from anabranch.daemon import kstructs

        self.provider = provider
        provider.config = config_mod.loads(SCENERY_CONFIG.format(state_dir=provider.config.daemon.state_dir))
        provider.iface_names[self.WAN1] = "wan1"
        provider.hooks.attached.add("wan1")
        provider.oper_up["wan1"] = True
        provider.control.set_links([LinkSpec("wan0", 2, 50, 200), LinkSpec("wan1", self.WAN1, 20, 100)])

        tcp = provider.keys["proto"] == 6
        rtt = provider.values["dir"]["rtt_srtt_ns"]
        rtt[tcp, 0] = np.where(provider.keys["ifindex"][tcp] == 2, 18_000_000, 42_000_000)
        provider.values["dir"]["rtt_samples"][tcp, 0] = 5
        provider.values["dir"]["retransmits"][tcp, 0] = np.arange(int(tcp.sum())) % 3

        keys = np.zeros(2, dtype=kstructs.FLOW_KEY)
        for i, (ifindex, lan, port) in enumerate(((2, self.LAN_ADDRESS, 40001), (self.WAN1, self.JOIN_ADDRESS, 40002))):
            keys[i]["ifindex"], keys[i]["family"], keys[i]["proto"] = ifindex, 4, 6
            keys[i]["lan_port"], keys[i]["remote_port"] = port, 443
            keys[i]["lan_addr"][:4] = [int(b) for b in lan.split(".")]
            keys[i]["remote_addr"][:4] = [int(b) for b in self.REMOTE.split(".")]
        values = np.zeros(2, dtype=provider.values.dtype)
        values["first_seen_ns"] = values["last_seen_ns"] = provider.now_ns
        values["dir"]["rtt_srtt_ns"][:, 0] = (19_500_000, 44_000_000)
        values["dir"]["rtt_samples"][:, 0] = 5
        self.rows = np.arange(len(provider.keys), len(provider.keys) + 2)
        provider.keys = np.concatenate([provider.keys, keys])
        provider.values = np.concatenate([provider.values, values])

        initial, joined = (int(i) for i in flow_ids(keys))
        flow_key = [FlowKey(int(k["ifindex"]), 4, 6, lan, int(k["lan_port"]), self.REMOTE, 443)
                    for k, lan in zip(keys, (self.LAN_ADDRESS, self.JOIN_ADDRESS))]
        client, server = self.KEYS
        self._events = [MpCapable(provider.now_ns, initial, flow_key[0], 0, 1, client, server),
                        MpJoin(provider.now_ns, joined, flow_key[1], 0, key_token(server, 1), 1)]
        real_tick = provider.control.tick

        def tick(table, events, now, *rest, **options):
            events, self._events = list(events) + self._events, []
            return real_tick(table, events, now, *rest, **options)

        provider.control.tick = tick

    def move(self) -> None:
        """One tick's bytes on the two subflows (the provider's tick moves the others)."""
        values = self.provider.values
        values["dir"]["bytes"][self.rows, 0] += np.array([70_000, 30_000], dtype=np.uint64)
        values["dir"]["bytes"][self.rows, 1] += np.array([7_000, 3_000], dtype=np.uint64)
        values["dir"]["packets"][self.rows] += np.uint64(10)
        values["last_seen_ns"][self.rows] = self.provider.now_ns + 1_000_000_000


SCENERY_CONFIG = """
[daemon]
publish_flows = 2000
state_dir = "{state_dir}"
[interfaces.wan0]
role = "wan"
up_mbit = 50
down_mbit = 200
[interfaces.wan1]
role = "wan"
up_mbit = 20
down_mbit = 100
[interfaces.lan0]
role = "lan"
"""


class PlannedShaper:
    """The daemon's Shaper.snapshot() over plans from the policy's classes, without a kernel:
    the "kernel" holds exactly the desired tree, with counters that grow each tick."""

    def __init__(self, provider):
        from anabranch.daemon.shaper import shaped_links

        self.provider = provider
        self._shaper_links = shaped_links(provider.config)
        self._ticks = 0

    def snapshot(self) -> dict[str, Any]:
        from anabranch.controller.allocate import DEFAULT_CLASSES, TrafficClass, allocate
        from anabranch.controller.shaping import desired_tree
        from anabranch.daemon.shaper import KernelTree, Shaper

        self._ticks += 1
        ids = {c.name: c.class_id for c in DEFAULT_CLASSES}
        classes = tuple(TrafficClass(name, ids[name], c["priority"], c["min_mbit"], c["max_mbit"], c["dscp"])
                        for name, c in self.provider.policy.classes.items() if name in ids)
        shaper = Shaper.__new__(Shaper)  # the real snapshot code, no netlink socket
        shaper.links, shaper.classes, shaper.hysteresis = self._shaper_links, classes, 0.1
        shaper.leaf_kind, shaper.errors, shaper.plans, shaper.kernel = "pfifo", {}, {}, {}
        shaper.class_bps, shaper.class_offered_bps = {}, {}
        for link in self._shaper_links:
            plan = allocate(link.link_mbit, {}, classes)
            tree = desired_tree(plan, "pfifo")
            shaper.plans[link.iface] = plan
            shaper.kernel[link.iface] = KernelTree(tree, None, {
                node.classid: {"sent_bytes": 150_000 * self._ticks * (i + 1), "sent_packets": 100 * self._ticks,
                               "dropped": i, "overlimits": 3 * i}
                for i, node in enumerate(tree.classes)})
        return shaper.snapshot()


# ---- configuration ----------------------------------------------------------

def write_config(directory: Path, events: str | None = None, password: str | None = PASSWORD,
                 threads: int = 8, tick_s: float = 1.0, listen: str = "127.0.0.1:8080") -> Path:
    """A web UI config whose files all live under `directory`; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    events = events or f"ipc://{directory}/events.sock"
    path = directory / "anabranch.toml"
    path.write_text(
        f'[daemon]\ntick_s = {tick_s}\n\n'
        f'[api]\nevents = "{events}"\ncontrol = "ipc://{directory}/control.sock"\n\n'
        f'[webui]\nlisten = "{listen}"\npassword_file = "{directory}/webui.passwd"\n'
        f'secret_key_file = "{directory}/webui.secret"\nthreads = {threads}\n')
    if password is not None:
        write_password_hash(directory / "webui.passwd", hash_password(password, log2_n=TEST_SCRYPT_LOG2_N))
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the real server --------------------------------------------------------

def webui_command() -> list[str]:
    script = Path(sys.executable).parent / "anabranch-webui"
    return [str(script)] if script.exists() else [sys.executable, "-m", "anabranch.webui.main"]


@dataclass
class RunningWebUI:
    base_url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit status (kills it after `timeout_s`)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _wait_until_serving(server: RunningWebUI, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(server.base_url + "/login", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"anabranch-webui did not serve within {timeout_s} s:\n{server.log()}")


@contextmanager
def webui_server(config_path: Path, timeout_s: float = 20.0,
                 env: dict[str, str] | None = None) -> Iterator[RunningWebUI]:
    """The real `anabranch-webui --config FILE --listen 127.0.0.1:<free port>`."""
    log_path = Path(config_path).with_name("webui.log")
    for _attempt in range(3):
        port = free_port()
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [*webui_command(), "--config", str(config_path), "--listen", f"127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        server = RunningWebUI(f"http://127.0.0.1:{port}", process, log_path)
        try:
            if _wait_until_serving(server, timeout_s):
                break
        except BaseException:
            server.stop()
            raise
        # Another test took the port between free_port() and gunicorn's bind.
        if "Address already in use" not in server.log():
            raise RuntimeError(f"anabranch-webui exited with {process.returncode}:\n{server.log()}")
    else:
        raise RuntimeError(f"anabranch-webui found no free port:\n{server.log()}")
    try:
        yield server
    finally:
        server.stop()


# ---- clients ----------------------------------------------------------------

_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(base_url: str, password: str = PASSWORD) -> str:
    """Log in through the form like a browser; returns the `Cookie` header value."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(base_url + "/login", timeout=10) as response:
        token = _CSRF_FIELD.search(response.read().decode()).group(1)
    form = urllib.parse.urlencode({"csrf_token": token, "password": password, "next": "/"}).encode()
    with opener.open(base_url + "/login", data=form, timeout=10) as response:
        if urllib.parse.urlsplit(response.url).path != "/":
            raise RuntimeError(f"login failed: ended at {response.url}")
    cookies = [f"{c.name}={c.value}" for c in jar if c.name == SESSION_COOKIE]
    if not cookies:
        raise RuntimeError("login set no session cookie")
    return "; ".join(cookies)


def _websocket_client_class():
    import simple_websocket

    class Client(simple_websocket.Client):
        """simple-websocket's client, with a `Host` header that carries the port (as
        browsers send it, and the same-origin check expects) and no socket leak when
        the server refuses."""

        def handshake(self):
            if self.port not in (80, 443):
                self.host = f"{self.host}:{self.port}"
            try:
                super().handshake()
            except BaseException:
                self.sock.close()
                raise

    return Client


@contextmanager
def open_websocket(base_url: str, cookie: str | None, origin: str | None = None):
    """A websocket to `/ws` carrying the session cookie (simple-websocket's client).

    A refused handshake raises simple_websocket.ConnectionError (`.status_code`).
    """
    import simple_websocket

    headers = {}
    if cookie:
        headers["Cookie"] = cookie
    if origin:
        headers["Origin"] = origin
    ws = _websocket_client_class().connect(base_url.replace("http://", "ws://", 1) + "/ws", headers=headers)
    try:
        yield ws
    finally:
        try:
            ws.close()
        except simple_websocket.ConnectionClosed:
            pass


def next_message(ws, kind: str, timeout_s: float = 10.0, where=None) -> dict[str, Any]:
    """The next JSON message of type `kind` (and matching `where(message)`, if given)."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        raw = ws.receive(timeout=left)
        if raw is None:
            break
        message = json.loads(raw)
        if message.get("type") == kind and (where is None or where(message)):
            return message
    raise TimeoutError(f"no {kind!r} message within {timeout_s} s")


# ---- the app in this process (Flask test client, or a threaded HTTP server) -----

def make_app(config_path: Path, **overrides):
    """The Flask app for tests; its relay starts only with RELAY_AUTOSTART=True."""
    from anabranch.webui.app import create_app

    return create_app({"ANABRANCH_CONFIG": str(config_path), "TESTING": True,
                       "RELAY_AUTOSTART": False, **overrides})


@contextmanager
def serving(app) -> Iterator[str]:
    """`app` behind a threaded HTTP server on a free port; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        app.extensions["anabranch.relay"].stop()
        server.shutdown()
        server.server_close()
        thread.join(5)
        app.extensions["anabranch.control"].close()


def csrf_from(response) -> str:
    """The CSRF token in a page fetched with the Flask test client."""
    return _CSRF_FIELD.search(response.get_data(as_text=True)).group(1)


def log_in(client, password: str = PASSWORD, next_url: str = "/", user: str = "admin"):
    """Post the login form with the Flask test client; returns the response."""
    token = csrf_from(client.get("/login"))
    return client.post("/login", data={"csrf_token": token, "password": password, "next": next_url,
                                       "username": user})


# ---- the browser ------------------------------------------------------------

def launch_chromium(playwright):
    """Debian's Chromium, headless; never a downloaded browser."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def browser_login(page, base_url: str, password: str = PASSWORD, user: str = "admin") -> None:
    """Log `page` in through the form and wait for the dashboard."""
    page.goto(base_url + "/")
    page.get_by_label("User").select_option(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base_url + "/")
