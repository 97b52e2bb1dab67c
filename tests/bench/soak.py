#!/usr/bin/env python3
"""Soak: anabranchd in a lab gateway for N minutes of mixed traffic, faults and hostile input.

    .venv/bin/python tests/bench/soak.py [--minutes 10]     (as root; `make soak`, SOAK_MINUTES)

The daemon runs at its systemd unit's Nice= (read from systemd/anabranchd.service).
What runs, all at once: the lab (tests/lab/lab.py) with the daemon on its four
gateway ports; the demo's traffic mix plus MPTCP churn (the client's second
subflow endpoint removed and re-added, short MPTCP connections opened); the real
web UI with its dashboard open in headless Chromium; a subscriber on the events
stream.  Injected on a schedule: kill -9 of the daemon (restarted at once, as
systemd would), a WAN link deleted and re-created, a WAN link losing carrier;
a ZeroMQ fuzz (10 000 messages) at the control socket and a schemathesis fuzz
through the web UI.  What is measured: daemon RSS growth (from a quarter of the
run, after the restart), tick times from the `state` topic, the gap between two
ticks (systemd's WatchdogSec is not in play in the lab: the gap is what it would
watch), datapath events lost, each fault's recovery time, HTTP 5xx, crashes, and
(once the daemon keeps history) rows missing from the history database.

The figures go to build/bench/reliability.json (run.py's format); `make bench`
runs the one-minute form through bench_reliability.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
for _helpers in ("lab", "webui", "daemon"):
    sys.path.insert(0, str(REPO / "tests" / _helpers))

import webui_harness  # noqa: E402
from daemon_harness import RunningDaemon, daemon_config, start_daemon  # noqa: E402
from lab import CLIENT_V4, SERVER_V4, Lab  # noqa: E402

OUT = REPO / "build" / "bench" / "reliability.json"
TRAFFIC = REPO / "tests" / "lab" / "traffic.py"
PORTS = {"wan0": "wan", "wan1": "wan", "lan0": "lan", "lan1": "lan", "wan7": "wan", "wan9": "wan"}
# wan7 is a spare WAN port (a veth pair inside the gateway) that the soak deletes
# and re-creates; wan1 carries real traffic and loses carrier instead.  wan9 never
# exists: its link_down alert is active throughout, and must survive the kill -9.
ATTACHABLE = sorted(set(PORTS) - {"wan9"})
RECOVERY_TIMEOUT_S = 30.0
# The daemon runs at its systemd unit's Nice=, read from the unit so the two never differ.
UNIT_NICE = int(next(line.split("=", 1)[1] for line in
                     (REPO / "systemd" / "anabranchd.service").read_text().splitlines()
                     if line.startswith("Nice=")))
ZMQ_FUZZ_MESSAGES = 10_000


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class StateWatch:
    """Every `state` message: arrival time, the daemon's pid, tick duration, seq, events lost."""

    endpoint: str
    samples: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="soak-state", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        from anabranch.client import Subscriber

        subscriber = Subscriber(self.endpoint, topics=("state", "alerts"), rcvhwm=1000)
        while not self._stop.is_set():
            item = subscriber.receive(0.5)
            if item is None:
                continue
            topic, message = item
            if topic == "alerts":
                self.alerts.append(message)
                continue
            daemon = message.get("daemon", {})
            datapath = message.get("datapath") or {}
            self.samples.append({"at": time.monotonic(), "ts": message.get("ts"), "pid": daemon.get("pid"),
                                 "seq": message.get("seq"),
                                 "tick_ms": daemon.get("tick_ms"), "ticks": daemon.get("ticks"),
                                 "phases_ms": daemon.get("phases_ms") or {},
                                 "tick_cpu_ms": daemon.get("tick_cpu_ms"),
                                 "tick_faults": daemon.get("tick_faults"),
                                 "tick_preemptions": daemon.get("tick_preemptions"),
                                 "flows": (message.get("totals") or {}).get("flows"),
                                 "steps_ms": daemon.get("controller_steps_ms") or {},
                                 "events_lost": datapath.get("events_lost", 0),
                                 "attached": sorted(i["name"] for i in message.get("interfaces", [])
                                                    if i.get("attached")),
                                 "oper": {i["name"]: i.get("oper_up") for i in message.get("interfaces", [])}})

    def latest(self) -> dict[str, Any] | None:
        return self.samples[-1] if self.samples else None


class Soak:
    def __init__(self, minutes: float, folder: Path, log=print):
        self.seconds = minutes * 60
        self.folder = folder
        self.say = log
        self.lab = Lab(prefix=f"sk{os.getpid() % 100000}")
        self.daemon: RunningDaemon | None = None
        self.killed_by_us = False
        self.crashes = 0
        self.restarts = 0
        self.faults: list[dict[str, Any]] = []
        self.rss: list[tuple[float, int, int]] = []  # (t, pid, KiB)
        self.fuzz: dict[str, Any] = {}
        self.browser_errors: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.fuzzers: list[threading.Thread] = []
        # (start, end) monotonic spans of fuzzing and restarts: ticks there are told apart.
        self.busy: list[tuple[float, float]] = []
        self.started = time.monotonic()

    # -- set-up ---------------------------------------------------------------------
    def start_daemon(self) -> None:
        self.restarts += 1
        log = self.folder / f"anabranchd-{self.restarts}.log"
        self.daemon = start_daemon(self.lab, self.config_path, log)
        # As systemd would start it (`ip netns exec` execs the daemon: same pid).
        os.setpriority(os.PRIO_PROCESS, self.daemon.process.pid, UNIT_NICE)
        self.daemon.wait_ready(90)

    def up(self) -> None:
        self.lab.up()
        self._spare_link("add")
        self.config_path = daemon_config(self.folder, PORTS)
        self.start_daemon()
        run = self.folder / "run"
        self.watch = StateWatch(f"ipc://{run}/events.sock")
        self.watch.start()
        sink = self.lab.popen("srv", sys.executable, str(TRAFFIC), "serve", stdout=subprocess.PIPE, text=True)
        self.procs.append(sink)
        assert sink.stdout.readline().strip() == "serving"
        self.procs.append(self.lab.popen("cli", sys.executable, str(TRAFFIC), "mix", SERVER_V4[0],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self._thread(self._mptcp_churn)
        self._thread(self._sample_rss)
        self._start_webui(run)

    def _thread(self, target, *args) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"soak-{target.__name__}")
        thread.start()
        self.threads.append(thread)
        return thread

    def _spare_link(self, action: str) -> None:
        if action == "add":
            self.lab.run("gw", "ip", "link", "add", "wan7", "type", "veth", "peer", "name", "wan7p")
            for name in ("wan7", "wan7p"):
                self.lab.run("gw", "ip", "link", "set", name, "up")
        else:
            self.lab.run("gw", "ip", "link", "del", "wan7")

    def _start_webui(self, run: Path) -> None:
        from anabranch.webui.credentials import create_token, token_file

        webdir = self.folder / "web"
        config = webui_harness.write_config(webdir, events=f"ipc://{run}/events.sock", tick_s=1.0)
        config.write_text(config.read_text().replace(f"ipc://{webdir}/control.sock", f"ipc://{run}/control.sock"))
        self.token = create_token(token_file(webdir / "webui.passwd"), "admin", "soak", int(time.time()))
        self._webui_cm = webui_harness.webui_server(config)
        self.webui = self._webui_cm.__enter__()
        self._thread(self._browse)

    # -- what runs throughout ----------------------------------------------------------
    def _mptcp_churn(self) -> None:
        """The client's second path endpoint comes and goes; short MPTCP connections open meanwhile."""
        present = True
        turn = 0
        while not self.stop_event.wait(2.0):
            turn += 1
            try:
                if turn % 3 == 0:
                    if present:
                        self.lab.run("cli", "ip", "mptcp", "endpoint", "flush")
                    else:
                        self.lab.run("cli", "ip", "mptcp", "endpoint", "add", CLIENT_V4[1], "dev", "up1",
                                     "subflow")
                    present = not present
                self.lab.run("cli", sys.executable, str(TRAFFIC), "mptcp", SERVER_V4[0], "--bytes", "300000",
                             "--rate-mbit", "4", check=False, timeout=30)
            except Exception as exc:  # the lab is being torn down, or a fault is in progress
                if self.stop_event.is_set():
                    return
                self.say(f"mptcp churn: {exc}")

    def _sample_rss(self) -> None:
        while not self.stop_event.wait(2.0):
            daemon = self.daemon
            if daemon is None or daemon.process.poll() is not None:
                continue
            kib = rss_kib(daemon.process.pid)
            if kib:
                self.rss.append((time.monotonic() - self.started, daemon.process.pid, kib))

    def _browse(self) -> None:
        """The dashboard open in headless Chromium, visiting the other pages now and then."""
        from playwright.sync_api import sync_playwright

        pages = ["/", "/flows", "/links", "/alerts", "/classes", "/history", "/"]
        try:
            with sync_playwright() as playwright:
                browser = webui_harness.launch_chromium(playwright)
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.on("pageerror", lambda exc: self.browser_errors.append(str(exc)[:200]))
                webui_harness.browser_login(page, self.webui.base_url)
                turn = 0
                while not self.stop_event.wait(20.0):
                    turn += 1
                    page.goto(self.webui.base_url + pages[turn % len(pages)])
                    if pages[turn % len(pages)] == "/":
                        page.wait_for_timeout(1000)
                browser.close()
        except Exception as exc:
            self.browser_errors.append(f"browser: {exc}"[:300])

    # -- faults -------------------------------------------------------------------------
    def _wait(self, predicate, timeout_s: float = RECOVERY_TIMEOUT_S, since: float | None = None) -> float | None:
        """Seconds from `since` (default: now) until predicate() holds, or None after `timeout_s`."""
        started = time.monotonic() if since is None else since
        while time.monotonic() - started < timeout_s:
            if predicate():
                return time.monotonic() - started
            time.sleep(0.05)
        return None

    def _status(self) -> dict[str, Any] | None:
        from anabranch.client import DaemonUnreachable

        try:
            with self.daemon.client(timeout_s=1.0) as client:
                return client.call("status")
        except (DaemonUnreachable, Exception):
            return None

    def _iface(self, name: str) -> dict[str, Any] | None:
        status = self._status()
        if status is None:
            return None
        return next((i for i in status["interfaces"] if i["name"] == name), None)

    def _record(self, kind: str, recovery_s: float | None, **detail) -> None:
        fault = {"kind": kind, "at_s": round(time.monotonic() - self.started, 1),
                 "recovered": recovery_s is not None,
                 "recovery_s": round(recovery_s, 3) if recovery_s is not None else None, **detail}
        self.faults.append(fault)
        self.say(f"fault {kind}: {'recovered in %.2f s' % recovery_s if recovery_s is not None else 'NOT recovered'}")

    def kill9(self) -> None:
        """kill -9 under traffic, restarted at once; recovered once the new daemon publishes
        state with every port attached again."""
        old = self.daemon
        before = {a["id"]: a for a in self._alerts()}
        self.killed_by_us = True
        started = time.monotonic()
        old.stop(signal.SIGKILL)
        self.killed_by_us = False
        try:
            self.start_daemon()
        except AssertionError as exc:
            self._record("kill -9", None, error=str(exc)[:300])
            return
        pid = self.daemon.process.pid
        ok = self._wait(lambda: (s := self.watch.latest()) is not None and s["pid"] == pid
                        and s["attached"] == ATTACHABLE, RECOVERY_TIMEOUT_S)
        recovery = None if ok is None else time.monotonic() - started
        self.busy.append((started, time.monotonic() + 5.0))   # and the new daemon's first ticks
        duplicates = self._duplicate_filters()
        # Each alert active at the kill must be the same alert after it: still active, or
        # resolved by the new daemon because its condition no longer holds; never just gone.
        after = {a["id"]: a for a in self._alerts("all")}
        kept = [i for i in before if i in after and after[i]["state"] == "active"
                and after[i]["raised_at"] == before[i]["raised_at"]]
        resolved = [i for i in before if i in after and after[i]["state"] == "resolved"]
        vanished = [f"{before[i]['rule']}:{before[i]['subject']}" for i in before if i not in after]
        self._record("kill -9", recovery, duplicate_filters=duplicates, alerts_active_before=len(before),
                     alerts_kept=len(kept), alerts_resolved_since=len(resolved), alerts_vanished=vanished,
                     alerts_before=sorted(f"{a['rule']}:{a['subject']}" for a in before.values()))

    def _alerts(self, state: str = "active") -> list[dict[str, Any]]:
        try:
            with self.daemon.client(timeout_s=2.0) as client:
                return client.call("alerts.list", state=state, limit=1000)["alerts"]
        except Exception:
            return []

    def _duplicate_filters(self) -> int:
        extra = 0
        for name in ATTACHABLE:
            for hook in ("ingress", "egress"):
                out = self.lab.run("gw", "tc", "filter", "show", "dev", name, hook, check=False).stdout
                extra += max(0, out.count("anabranch_") - 1)
        return extra

    def link_delete(self) -> None:
        """The spare WAN port deleted, then re-created: re-attached (recovery counted from re-creation)."""
        since = time.monotonic()
        self._spare_link("del")
        detected = self._wait(lambda: (i := self._iface("wan7")) is not None and not i["attached"], 10, since)
        time.sleep(1.0)
        since = time.monotonic()
        self._spare_link("add")
        recovery = self._wait(lambda: (i := self._iface("wan7")) is not None and i["attached"], since=since)
        self._record("link delete/recreate", recovery if detected is not None else None,
                     detected_s=None if detected is None else round(detected, 3))

    def carrier_loss(self) -> None:
        """wan1's far end goes down for 3 s (carrier lost, traffic on it stops), then returns."""
        since = time.monotonic()
        self.lab.run("srv", "ip", "link", "set", "eth1", "down")
        detected = self._wait(lambda: (i := self._iface("wan1")) is not None and i["oper_up"] is False, 10, since)
        time.sleep(3.0)
        since = time.monotonic()
        self.lab.run("srv", "ip", "link", "set", "eth1", "up")
        recovery = self._wait(lambda: (i := self._iface("wan1")) is not None and i["oper_up"] is True,
                              since=since)
        self._record("carrier loss", recovery if detected is not None else None,
                     detected_s=None if detected is None else round(detected, 3))

    # -- hostile input ---------------------------------------------------------------------
    def fuzz_zmq(self, count: int = ZMQ_FUZZ_MESSAGES) -> None:
        """test_server.py's hostile messages, at the real daemon's control socket."""
        import msgpack
        import zmq

        hostile = _load("anabranch_soak_zmq_fuzz", REPO / "tests" / "daemon" / "test_server.py")._hostile
        rng = random.Random(20261122)
        context = zmq.Context.instance()
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.daemon.control)
        sent = answered = 0
        started = time.monotonic()
        self.busy.append((started, float("inf")))
        slot = len(self.busy) - 1
        try:
            for start in range(0, count, 10):
                batch = [hostile(rng) for _ in range(min(10, count - start))]
                for payload in batch:
                    sock.send_multipart([b"", payload])
                    sent += 1
                for _ in batch:
                    if not sock.poll(10_000):
                        break
                    reply = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
                    answered += reply.get("type") == "reply"
        finally:
            sock.close(0)
            self.busy[slot] = (started, time.monotonic())
        self.fuzz.update(zmq_messages=sent, zmq_replies=answered,
                         zmq_fuzz_s=round(time.monotonic() - started, 1))
        self.say(f"zmq fuzz: {sent} sent, {answered} answered")

    def fuzz_http(self, examples: int) -> None:
        from http_fuzz import Tally, fuzz

        total = Tally()
        started = time.monotonic()
        for headers in ({}, {"Authorization": f"Bearer {self.token}"}):
            total.add(fuzz(self.webui.base_url, headers=headers, examples=examples,
                           schema_headers={"Authorization": f"Bearer {self.token}"}))
        # http_5xx: server errors the API description does not declare (every 500 among them);
        # a declared 503 is the documented "this daemon does not offer that (yet)".
        self.fuzz.update(http_requests=total.requests, http_5xx=total.undeclared_5xx, http_500=total.http_500,
                         http_503_declared=total.http_5xx - total.undeclared_5xx,
                         http_statuses={str(k): v for k, v in sorted(total.statuses.items())},
                         http_server_errors=total.server_errors[:5])
        self.busy.append((started, time.monotonic()))
        self.say(f"http fuzz: {total.requests} requests, {total.undeclared_5xx} undeclared 5xx, "
                 f"{total.http_5xx - total.undeclared_5xx} declared 503")

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.say(f"soak: {self.seconds / 60:g} min in lab {self.lab.prefix}, files in {self.folder}")
        try:
            self.up()
            self.started = time.monotonic()
            schedule = self._schedule()
            while (elapsed := time.monotonic() - self.started) < self.seconds:
                self._check_alive()
                while schedule and schedule[0][0] <= elapsed:
                    _, action = schedule.pop(0)
                    action()
                time.sleep(0.2)
            for thread in self.fuzzers:  # a short run may end before the fuzzers do
                thread.join(600)
            self._check_alive()
            return self.figures()
        finally:
            self.down()

    def _schedule(self) -> list[tuple[float, Any]]:
        t = self.seconds
        examples = 4 if t <= 120 else 12

        def fuzz_both():
            self.fuzzers = [self._thread(self.fuzz_zmq), self._thread(self.fuzz_http, examples)]
        plan = [(0.10 * t, self.kill9), (0.15 * t, fuzz_both)]
        # Link faults every ~20 % of the run after the fuzz, alternating.
        faults = [self.link_delete, self.carrier_loss]
        at, n = 0.35 * t, 0
        while at < 0.92 * t:
            plan.append((at, faults[n % 2]))
            n += 1
            at += max(0.15 * t, 25.0)
        return sorted(plan, key=lambda p: p[0])

    def _check_alive(self) -> None:
        if self.daemon.process.poll() is not None and not self.killed_by_us:
            self.crashes += 1
            self.say(f"daemon exited on its own ({self.daemon.process.returncode}); restarting")
            self.start_daemon()

    def down(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(40)
        if getattr(self, "watch", None) is not None:
            self.watch.stop()
        if getattr(self, "_webui_cm", None) is not None:
            self._webui_cm.__exit__(None, None, None)
        for proc in self.procs:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self.daemon is not None and self.daemon.process.poll() is None:
            self.daemon.stop()
        self.lab.down()

    # -- figures -----------------------------------------------------------------------------
    def figures(self) -> dict[str, Any]:
        samples_ticked = [s for s in self.watch.samples if s["tick_ms"] is not None and (s["ticks"] or 0) > 3]
        ticks = [s["tick_ms"] for s in samples_ticked]
        quiet = [s["tick_ms"] for s in samples_ticked if not any(a <= s["at"] <= b for a, b in self.busy)]
        samples = self.watch.samples
        gaps, lost, seq_gaps = [], 0, 0
        by_pid: dict[int, list[dict[str, Any]]] = {}
        for s in samples:
            by_pid.setdefault(s["pid"], []).append(s)
        for runs in by_pid.values():
            lost += max(0, runs[-1]["events_lost"] - runs[0]["events_lost"])
            for a, b in zip(runs, runs[1:]):
                gaps.append(b["at"] - a["at"])
                seq_gaps += max(0, b["seq"] - a["seq"] - 1)
        median = statistics.median(ticks) if ticks else None
        # RSS growth of the daemon running at the end, from a quarter of the run (after the
        # fuzz's one-off allocations) or a few ticks after the kill -9 restart recovered,
        # whichever is later (a daemon still starting up is not a baseline), to the end.
        end_pid = self.rss[-1][1] if self.rss else None
        mine = [(t, kib) for t, pid, kib in self.rss if pid == end_pid]
        restarted = max((f["at_s"] for f in self.faults if f["kind"] == "kill -9" and f["recovered"]),
                        default=0.0)
        steady = max(0.25 * self.seconds, restarted + 5.0)  # as `busy`: its first ticks
        base = next((kib for t, kib in mine if t >= steady), mine[0][1] if mine else None)
        end = mine[-1][1] if mine else None
        recovered = [f for f in self.faults if f["recovered"]]
        return {
            "soak_minutes": round(self.seconds / 60, 2),
            "faults_injected": len(self.faults),
            "faults_recovered": len(recovered),
            "max_recovery_s": max((f["recovery_s"] for f in recovered), default=None),
            "fuzz_messages": self.fuzz.get("zmq_messages", 0),
            "fuzz_replies": self.fuzz.get("zmq_replies", 0),
            "http_requests": self.fuzz.get("http_requests", 0),
            "http_5xx": self.fuzz.get("http_5xx", 0),
            "http_500": self.fuzz.get("http_500", 0),
            "http_503_declared": self.fuzz.get("http_503_declared", 0),
            "daemon_crashes": self.crashes,
            "history_rows_lost": self.history_rows_lost(by_pid),
            "alerts_lost_across_restart": sum(len(f.get("alerts_vanished", [])) for f in self.faults),
            "rss_start_kib": base,
            "rss_end_kib": end,
            "rss_max_kib": max((kib for _, kib in mine), default=None),
            "rss_growth_pct": round((end - base) / base * 100, 2) if base and end else None,
            "tick_p50_ms": round(median, 3) if median is not None else None,
            "tick_max_ms": round(max(ticks), 3) if ticks else None,
            # What a typical tick saw, to read the slowest ticks against.
            "tick_typical": {key: statistics.median(s[key] for s in samples_ticked if s[key] is not None)
                             for key in ("tick_cpu_ms", "tick_faults", "tick_preemptions", "flows")
                             if any(s[key] is not None for s in samples_ticked)},
            "tick_p99_ms": round(float(sorted(ticks)[int(0.99 * (len(ticks) - 1))]), 3) if ticks else None,
            "ticks_over_2x_median": sum(1 for t in ticks if median and t > 2 * median),
            # The same outside the fuzzing and the restart (what steady traffic costs).
            "ticks_over_2x_median_quiet": sum(1 for t in quiet if median and t > 2 * median),
            "tick_max_quiet_ms": round(max(quiet), 3) if quiet else None,
            "ticks_measured": len(ticks),
            "max_tick_gap_s": round(max(gaps), 3) if gaps else None,
            "events_lost": lost,
            "state_messages_lost": seq_gaps,
            "duplicate_filters_after_restart": sum(f.get("duplicate_filters", 0) for f in self.faults),
            "browser_errors": len(self.browser_errors),
            "faults": self.faults,
            "fuzz": self.fuzz,
            "browser_error_samples": self.browser_errors[:5],
            # The slowest ticks with where their time went (state carries the previous tick's split).
            "slowest_ticks": [{"tick_ms": round(s["tick_ms"], 3), "tick_cpu_ms": s["tick_cpu_ms"],
                               "tick_faults": s["tick_faults"], "tick_preemptions": s["tick_preemptions"],
                               "flows": s["flows"], "phases_ms": s["phases_ms"],
                               "controller_steps_ms": s["steps_ms"],
                               "during_fault_or_fuzz": any(a <= s["at"] <= b for a, b in self.busy)}
                              for s in sorted(samples_ticked, key=lambda s: -s["tick_ms"])[:10]],
        }


    def history_rows_lost(self, by_pid: dict[int, list[dict[str, Any]]]) -> int | None:
        """Ticks the daemon reported on `state` whose row is missing from the history database.

        Each tick writes one `total.flows` point (at the tick's whole second) before it
        publishes, so within one daemon's run the rows should number the ticks published;
        the time between a kill and the restart is a gap, not a loss."""
        db = self.folder / "state" / "history.db"
        if not db.exists():
            return None
        lost = 0
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            for runs in by_pid.values():
                runs = [r for r in runs if r["ts"] is not None and r["ticks"] is not None]
                if len(runs) < 2:
                    continue
                first, last = runs[0], runs[-1]
                rows = conn.execute(
                    "SELECT COUNT(DISTINCT t) FROM series WHERE level = 0 AND kind = 'total' "
                    "AND metric = 'flows' AND t >= ? AND t <= ?",
                    (int(first["ts"]) - 1, int(last["ts"]))).fetchone()[0]
                # (Two ticks in one whole second share a row: that counts as a loss too.)
                lost += max(0, last["ticks"] - first["ticks"] + 1 - rows)
        return lost


def run(minutes: float) -> dict[str, Any]:
    if os.geteuid() != 0:
        raise RuntimeError("soak: must run as root (it builds a netns lab and loads BPF)")
    # Short: ZeroMQ ipc:// paths are limited to ~107 bytes.
    with tempfile.TemporaryDirectory(prefix="ab-soak-", dir="/tmp") as folder:
        return Soak(minutes, Path(folder), log=lambda line: print(line, file=sys.stderr, flush=True)).run()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "10")))
    args = parser.parse_args(argv)
    started = time.time()
    figures = run(args.minutes)
    harness = _load("anabranch_bench_run", HERE / "run.py")
    document = {**figures, "machine": harness.machine(), "measured_at": started,
                "duration_s": round(time.time() - started, 1)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    print(harness.table("reliability", figures))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
