"""Test harness for the web UI, reusable by end-to-end tests.

Import it from any test (pytest puts tests/webui on sys.path only for tests in
that folder, so elsewhere add it first):

    sys.path.insert(0, str(REPO / "tests" / "webui"))
    from webui_harness import StreamPublisher, write_config, webui_server, login, open_websocket

Pieces, each usable alone:
- `StreamPublisher(endpoint, tick_s)`: a stand-in daemon; a real ZeroMQ PUB socket
  that sends `state` and `flows` (schema v1, built with anabranch.client.messages)
  every tick.  `pause()`/`resume()` make the daemon vanish and return.
- `FakeDaemon(endpoint, full=True)`: a real ROUTER answering the daemon's commands
  (mptcp, links, classes, class.set, alerts.*, alert_rules.*, predict, usage,
  history) with canned data and recording each request; `full=False` knows only
  status and flows, as today's daemon does.
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
    """The n-th flow of a small, varied, deterministic LAN (IPv4 and IPv6)."""
    kinds = [
        ("tcp", 443, "interactive", "port 443 (default class)"),
        ("udp", 16390, "voice", "port 16390 (RTP)"),
        ("tcp", 1935, "video", "port 1935 (RTMP)"),
        ("tcp", 22, "file", "port 22 (SSH)"),
        ("udp", 53, "background", "port 53 (DNS)"),
        ("icmp", 0, "interactive", "default class"),
    ]
    proto, dport, cls, reason = kinds[n % len(kinds)]
    family = 6 if n % 4 == 3 else 4
    if family == 4:
        src, dst = f"192.168.1.{10 + n % 40}", f"203.0.113.{20 + n % 200}"
    else:
        src, dst = f"fd00:1::{10 + n:x}", f"2001:db8:40::{n:x}"
    wave = 1.0 + 0.5 * math.sin((seq + n) / 3.0)
    bps_down = int(wave * 40_000_000 / (n + 1))
    bps_up = int(wave * 4_000_000 / (n + 2))
    if proto == "icmp":
        proto_family = "icmpv6" if family == 6 else "icmp"
        sport = dport = 0
    else:
        proto_family, sport = proto, 51514 + n
    return {
        "id": f"{n:016x}", "iface": "wan0" if n % 3 else "wan1", "proto": proto_family,
        "family": family, "src": src, "sport": sport, "dst": dst, "dport": dport,
        "packets_up": 40 * (seq + 1) + n, "packets_down": 90 * (seq + 1) + n,
        "bytes_up": bps_up // 8 * (seq + 1), "bytes_down": bps_down // 8 * (seq + 1),
        "bps_up": bps_up, "bps_down": bps_down,
        "first_seen": 1_700_000_000.0, "last_seen": 1_700_000_000.0 + seq,
        "class": cls, "reason": reason,
    }


def sample_state(seq: int, ts: float, flows: list[dict[str, Any]], tick_ms: int) -> dict[str, Any]:
    up = sum(f["bps_up"] for f in flows)
    down = sum(f["bps_down"] for f in flows)
    return {
        "daemon": {"version": "0.1.0", "pid": 4242, "uptime_s": 3725 + seq * tick_ms / 1000,
                   "tick_s": tick_ms / 1000, "tick_ms": 2.5},
        "interfaces": [
            {"name": "wan0", "ifindex": 2, "role": "wan", "attached": True,
             "up_bps": up * 2 // 3, "down_bps": down * 2 // 3},
            {"name": "wan1", "ifindex": 3, "role": "wan", "attached": True,
             "up_bps": up // 3, "down_bps": down // 3},
            {"name": "lan0", "ifindex": 4, "role": "lan", "attached": True,
             "up_bps": up, "down_bps": down},
        ],
        "totals": {"flows": len(flows), "up_bps": up, "down_bps": down,
                   "up_pps": up // 9000, "down_pps": down // 11000,
                   "bytes_up": up // 8 * (seq + 1), "bytes_down": down // 8 * (seq + 1)},
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
    """What the daemon publishes on the `predictions` topic once the predictor runs."""
    links = sample_links()
    return {"available": True, "model": "anabranch-lstm-v1 (onnx)", "error": {"mae_mbit": 1.7},
            "classes": [{"name": c["name"], "now_mbit": 3.0 + i, "next_1s_mbit": 3.2 + i,
                         "next_5s_mbit": 3.9 + i} for i, c in enumerate(sample_classes())],
            "links": [{"name": link["name"], "capacity_mbit": link["predicted_mbit"],
                       "confidence": link["confidence"]} for link in links]}


# ---- a stand-in daemon's control socket --------------------------------------

def sample_links() -> list[dict[str, Any]]:
    return [
        {"name": "wan0", "capacity_mbit": 200.0, "predicted_mbit": 182.5, "confidence": 0.86,
         "rtt_p50_ms": 18.2, "rtt_p95_ms": 31.0, "jitter_ms": 2.4, "loss": 0.002, "quality": 0.91,
         "up_bps": 6_500_000, "down_bps": 48_000_000},
        {"name": "wan1", "capacity_mbit": 100.0, "predicted_mbit": 83.0, "confidence": 0.72,
         "rtt_p50_ms": 42.0, "rtt_p95_ms": 88.5, "jitter_ms": 7.9, "loss": 0.013, "quality": 0.64,
         "up_bps": 2_100_000, "down_bps": 19_000_000},
    ]


def sample_classes() -> list[dict[str, Any]]:
    rows = [("voice", 3, 0.1, 10, 46), ("video", 3, 5, 50, 34), ("interactive", 2, 1, 100, 0),
            ("file", 1, 0.5, 30, 10), ("background", 0, 0, 20, 8)]
    return [{"name": n, "priority": p, "min_mbit": lo, "max_mbit": hi, "dscp": d,
             "rate_mbit": max(lo, 2.0), "ceil_mbit": hi, "sent_bytes": 10_000_000 * (i + 1),
             "sent_packets": 9000 * (i + 1), "dropped": 3 * i, "overlimits": 17 * i}
            for i, (n, p, lo, hi, d) in enumerate(rows)]


def sample_mptcp() -> list[dict[str, Any]]:
    def sub(n, iface, src, share, up, down, rtt):
        return {"flow_id": f"{0xa0 + n:016x}", "src": src, "sport": 40000 + n, "dst": "198.51.100.7",
                "dport": 443, "iface": iface, "bytes_up": up, "bytes_down": down, "share": share,
                "rtt_ms": rtt}
    return [
        {"id": "c1", "version": 1, "tokens": ["8f2a41c0", "1b77e2d9"], "state": "established",
         "subflows": [sub(1, "wan0", "10.0.1.2", 0.7, 700_000, 7_000_000, 19.5),
                      sub(2, "wan1", "10.0.2.2", 0.3, 300_000, 3_000_000, 44.0)]},
        {"id": "c2", "version": 1, "tokens": ["33aa0c12", "9e01bb47"], "state": "established",
         "subflows": [sub(3, "wan0", "10.0.1.2", 1.0, 120_000, 900_000, 18.0)]},
    ]


class FakeDaemon:
    """A real ROUTER at `endpoint` answering the daemon's commands with canned data.

    `full=False` knows only `status` and `flows` (today's daemon): every other
    command is answered `unknown_command`.  Requests are recorded in `requests`;
    `class.set`, `alerts.ack` and `alert_rules.*` change the canned data;
    `raise_alert()`/`resolve_alert()` drive an alert's lifecycle.
    """

    def __init__(self, endpoint: str, full: bool = True):
        self.endpoint = endpoint
        self.full = full
        self.requests: list[dict[str, Any]] = []
        self.links = sample_links()
        self.classes = sample_classes()
        self.rules = [{"match": "udp port 5060-5062, 16384-16396", "class": "voice"},
                      {"match": "tcp port 1935, udp port 3478", "class": "video"},
                      {"match": "host *.backup.example", "class": "file"}]
        self.connections = sample_mptcp()
        self.active: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = [
            {"id": "a0", "rule": "wan1-rtt", "severity": "warning", "message": "wan1 RTT p95 above 80 ms",
             "raised_at": time.time() - 7200, "resolved_at": time.time() - 6900, "acked": True}]
        self.alert_rules = [{"name": "wan1-rtt", "metric": "link.wan1.rtt_p95_ms", "op": ">",
                             "threshold": 80.0, "for_s": 30.0, "severity": "warning"}]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeDaemon:
        sock = zmq.Context.instance().socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.endpoint)
        self._socket = sock
        self._thread = threading.Thread(target=self._run, name="fake-daemon", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._socket.close(0)

    def raise_alert(self, alert_id: str = "a1", message: str = "wan1 loss above 1 %") -> None:
        with self._lock:
            self.active.append({"id": alert_id, "rule": "wan1-loss", "severity": "critical",
                                "message": message, "raised_at": time.time(), "resolved_at": None,
                                "acked": False})

    def resolve_alert(self, alert_id: str = "a1") -> None:
        with self._lock:
            for alert in [a for a in self.active if a["id"] == alert_id]:
                self.active.remove(alert)
                self.history.insert(0, {**alert, "resolved_at": time.time()})

    def commands(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["cmd"] == name]

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._socket.poll(50):
                continue
            frames = self._socket.recv_multipart()
            try:
                req = messages.unpack(frames[-1])
            except messages.ProtocolError as exc:
                self._socket.send_multipart([*frames[:-1], messages.reply_error(None, exc.code, exc.message)])
                continue
            with self._lock:
                self.requests.append({"cmd": req.get("cmd"), "args": req.get("args") or {}})
                try:
                    body = self._answer(req.get("cmd"), req.get("args") or {})
                    reply = messages.reply_ok(req.get("id"), body)
                except _Refused as exc:
                    reply = messages.reply_error(req.get("id"), exc.code, exc.message)
            self._socket.send_multipart([*frames[:-1], reply])

    def _answer(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        if cmd == "status":
            flows = [sample_flow(n) for n in range(3)]
            return sample_state(1, now, flows, 100)
        if cmd == "flows":
            flows = [sample_flow(n) for n in range(14)]
            return {"count": len(flows), "flows": flows[: args.get("limit", 100)]}
        if not self.full:
            raise _Refused(messages.E_UNKNOWN_COMMAND, f"unknown command {cmd!r}")
        if cmd == "mptcp":
            return {"connections": self.connections}
        if cmd == "links":
            return {"links": self.links}
        if cmd == "classes":
            return {"classes": self.classes, "rules": self.rules}
        if cmd == "class.set":
            target = next((c for c in self.classes if c["name"] == args.get("name")), None)
            if target is None:
                raise _Refused(messages.E_NOT_FOUND, f"args.name: no class {args.get('name')!r}")
            if args.get("max_mbit", 0) > 1000:
                raise _Refused(messages.E_INVALID, "args.max_mbit: above every link's capacity (1000 Mbit/s)")
            target.update({k: v for k, v in args.items() if k != "name"})
            target["ceil_mbit"] = target["max_mbit"]
            return {"class": target}
        if cmd == "rules.add":
            if " port " not in f" {args['match']} " and not args["match"].startswith("host "):
                raise _Refused(messages.E_INVALID, f"args.match: cannot parse {args['match']!r}; "
                                                   "write e.g. `tcp port 22` or `host *.example`")
            rule = {"match": args["match"], "class": args["class"]}
            self.rules.insert(args.get("position", len(self.rules)), rule)
            return {"rule": rule}
        if cmd == "rules.delete":
            if not 0 <= args.get("index", -1) < len(self.rules):
                raise _Refused(messages.E_NOT_FOUND, f"args.index: no rule {args.get('index')}")
            return {"rule": self.rules.pop(args["index"])}
        if cmd == "alerts.list":
            return {"active": self.active, "history": self.history}
        if cmd == "alerts.ack":
            for alert in self.active:
                if alert["id"] == args.get("id"):
                    alert["acked"] = True
                    return {"alert": alert}
            raise _Refused(messages.E_NOT_FOUND, f"args.id: no active alert {args.get('id')!r}")
        if cmd == "alert_rules.list":
            return {"rules": self.alert_rules}
        if cmd == "alert_rules.set":
            rule = dict(args)
            self.alert_rules = [r for r in self.alert_rules if r["name"] != rule["name"]] + [rule]
            return {"rule": rule}
        if cmd == "alert_rules.delete":
            self.alert_rules = [r for r in self.alert_rules if r["name"] != args.get("name")]
            return {}
        if cmd == "usage":
            return {"hosts": [
                {"host": "192.168.1.10", "day_bytes_up": 310_000_000, "day_bytes_down": 4_200_000_000,
                 "month_bytes_up": 9_100_000_000, "month_bytes_down": 88_000_000_000,
                 "quota_bytes": 150_000_000_000},
                {"host": "192.168.1.11", "day_bytes_up": 12_000_000, "day_bytes_down": 640_000_000,
                 "month_bytes_up": 700_000_000, "month_bytes_down": 19_500_000_000, "quota_bytes": None}]}
        if cmd == "history":
            start, end, step = float(args["start"]), float(args["end"]), float(args["step"])
            count = int((end - start) // step)
            points = [[start + i * step, 30e6 + 12e6 * math.sin(i / 9.0)] for i in range(count)]
            return {"series": args["series"], "points": points}
        raise _Refused(messages.E_UNKNOWN_COMMAND, f"unknown command {cmd!r}")


class _Refused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


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
