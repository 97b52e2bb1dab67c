"""anabranchd: load the datapath, attach it, run the tick loop, serve the ZeroMQ API.

    anabranchd --config /etc/anabranch/anabranch.toml     run (as root)
    anabranchd --check-config [--config FILE]              validate and exit
    anabranchd --dump-ebpf                                 print the C, cflags, header
    anabranchd --cleanup [--config FILE]                   remove what a killed daemon left

Each tick (default 1 s) sweeps the flow map into numpy, computes rates, runs the
controller (classification, MPTCP, paths, usage, alerts, history) and writes its
verdicts into the kernel maps, shapes, publishes, and between ticks answers commands.
Needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (root in practice); see systemd/.
"""

from __future__ import annotations

import argparse
import faulthandler
import functools
import gc
import ipaddress
import logging
import os
import resource
import signal
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from anabranch.controller.flows import DOWN, UP, FlowRates, FlowTable

from . import commands
from . import config as config_mod
from . import kstructs
from .estimate import load_forecaster
from .notify import Notifier
from .records import FlowRecords
from .server import ApiServer, CurveKeys
from .state import AlertBook, Policy
from .stream import Stream

log = logging.getLogger("anabranchd")

PROGRAM_NAMES = {"ingress": "anabranch_ingress", "egress": "anabranch_egress"}


@functools.cache
def version() -> str:
    # Cached: the package metadata lookup scans sys.path (about 2 ms), and state asks each tick.
    try:
        return metadata.version("anabranch")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class Daemon:
    def __init__(self, config: config_mod.Config):
        self.config = config
        self.notifier = Notifier()
        self.started_mono = time.monotonic()
        self.stopping = False
        self.reload_requested = False
        self.rates = FlowRates()
        self.table: FlowTable | None = None
        self.records = FlowRecords()
        self.tick_ms = 0.0
        self.tick_cpu_ms = 0.0
        self.tick_faults = 0
        self.tick_preemptions = 0
        self.tick_realtime = False     # the last tick ran under SCHED_RR
        self._realtime_refused = False  # the kernel said no: not asked again until a reload
        self.ticks = 0
        self.iface_names: dict[int, str] = {}
        self.pending: list[str] = []
        self.oper_up: dict[str, bool] = {}
        self.link_changes: list[dict[str, Any]] = []
        self.links = None
        self.nat = None
        self._nat_error = ""
        # The gateway's own addresses (usage marks them): read at start and on address events.
        self.own_addresses: frozenset[str] = frozenset()
        self.datapath = None
        self.hooks = None
        self.shaper = None
        self.events: list = []           # decoded this tick (controller.events dataclasses)
        self.events_total = 0
        self._port_stats_prev: dict[str, tuple[int, int, float]] = {}
        self.port_cost: dict[str, dict[str, float]] = {}
        self.class_names: dict[int, str] = {}
        self.server: ApiServer | None = None
        self.policy: Policy | None = None
        self.alerts: AlertBook | None = None
        self.stream: Stream | None = None
        self.forecaster = None
        self.control = None
        self.forecasts = None
        self.controller_ms = 0.0
        self.phases_ms: dict[str, float] = {}
        self.steps_ms: dict[str, float] = {}      # the controller phase, step by step
        self._steps_this_tick: dict[str, float] = {}
        self._gc_started = 0.0
        self._gc_ms = 0.0                         # spent collecting garbage this tick
        self._errors_prev: dict[str, int] = {}
        self._shaper_revision: int | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        from . import policy
        from .attach import Ledger, TcHooks
        from .datapath import BuildOptions, Datapath

        runtime = Path(self.config.daemon.runtime_dir)
        runtime.mkdir(parents=True, exist_ok=True, mode=0o755)
        self.datapath = Datapath(BuildOptions(flow_map_size=self.config.daemon.flow_map_size))
        # The default class table until the controller writes its own (policy.write_policy).
        default_policy = policy.Policy.default()
        policy.write_policy(self.datapath, default_policy)
        self.class_names = {c.class_id: c.name for c in default_policy.classes}
        self.datapath.enable_stats()
        self.hooks = TcHooks(Ledger.load(runtime / "kernel-state.json"))
        api = self.config.api
        curve = CurveKeys(api.curve_server_key, api.curve_clients_dir) if api.curve_server_key else None
        self.server = ApiServer(api.events, api.control, group=api.socket_group, curve=curve)
        self.policy = Policy.load(self.config.daemon.state_dir)
        self.alerts = AlertBook(self.policy, lambda body: self.server.publish("alerts", body))
        self.forecaster = load_forecaster()
        from .control import Control
        self.control = Control(self.config.controller, self.policy, self.alerts, self.datapath,
                               self.config.daemon.state_dir)
        from anabranch.controller.classify import CLASSES

        from .forecast import Forecasts
        self.forecasts = Forecasts(CLASSES, [i.name for i in self.config.interfaces if i.role == "wan"])
        self.control.alert_detail = \
            lambda metric, subject: self.forecasts.anomaly_detail(subject) if metric == "predict.anomaly" else {}
        self.stream = Stream(self.server, self, snapshot_every=api.snapshot_every)
        commands.register(self.server, self)
        from .links import LinkWatcher
        self.links = LinkWatcher()
        self.server.watch_fd(self.links.fileno(), self._on_link_events)
        self._read_own_addresses()
        if self.config.daemon.follow_nat:
            from .conntrack import Conntrack, Translator
            try:
                self.nat = Translator(Conntrack())
            except OSError as exc:   # a kernel without ctnetlink: flows keep the WAN's view
                log.warning("conntrack: %s; NATed flows will show the gateway's address", exc)
            else:
                # Events are taken as they come, between ticks: the tick only takes the rest.
                self.server.watch_fd(self.nat.source.fileno(), self._follow_nat)
        self.pending = [iface.name for iface in self.config.interfaces]
        self._attach_pending()
        self._start_shaping(runtime)
        self.notifier.ready(self._status_line())
        log.info("anabranchd %s ready: events %s, control %s", version(),
                 self.config.api.events, self.config.api.control)

    def _attach_pending(self) -> None:
        from .attach import AttachError

        still = []
        for name in self.pending:
            iface = self.config.interface(name)
            role = kstructs.ROLE_WAN if iface.role == "wan" else kstructs.ROLE_LAN
            flags = kstructs.PORT_COUNT | (kstructs.PORT_MARK if iface.mark else 0)
            try:
                ifindex = self.hooks.attach(name, self.datapath.programs_for(name, role, flags), PROGRAM_NAMES)
            except AttachError as exc:
                if self.ticks == 0:
                    log.warning("%s; will keep trying", exc)
                still.append(name)
                continue
            self.datapath.set_port(ifindex, role, flags)
            self.iface_names[ifindex] = name
            self.oper_up[name] = self.hooks.oper_up(ifindex)
            if self.ticks:
                self._note_link(name, "attached")
        self.pending = still

    def _start_shaping(self, runtime: Path) -> None:
        from .shaper import Shaper, ShapingLedger, shaped_links

        self.shaper = Shaper(shaped_links(self.config), ShapingLedger.load(runtime / "shaping-state.json"),
                             hysteresis=self.config.shaping.hysteresis)
        self._shape()

    def _shape(self) -> None:
        if self.policy.revision != self._shaper_revision:
            self._shaper_revision = self.policy.revision
            self._shaping_policy()
        elif self._auto_links():
            from .shaper import shaped_links
            self.shaper.links = shaped_links(self._effective_config())   # follows the prediction
        needs = None
        if self.forecasts is not None and self.forecasts.prediction is not None:
            needs = {link.iface: self.forecasts.needs(link.link.split("+") if link.direction == "down"
                                                      else [link.iface], link.direction)
                     for link in self.shaper.links}
        try:
            self.shaper.tick(time.monotonic(), needs)
        except Exception:  # a shaping bug must not stop counting and the API
            log.exception("shaping tick failed; the kernel keeps the previous tree")

    def _shaping_policy(self) -> None:
        """The API's class settings and link capacities into the shaper."""
        from anabranch.controller.allocate import TrafficClass

        from .control import CLASS_IDS
        from .shaper import shaped_links

        classes = []
        for name, settings in self.policy.classes.items():
            if name in CLASS_IDS:
                classes.append(TrafficClass(name, CLASS_IDS[name], int(settings["priority"]),
                                            float(settings["min_mbit"]), settings["max_mbit"],
                                            int(settings["dscp"])))
        self.shaper.classes = tuple(classes)
        # Only capacities change here: the shaped egresses are fixed by the configuration.
        self.shaper.links = shaped_links(self._effective_config())

    def _auto_links(self) -> bool:
        return any(v == "auto" for link in self.policy.links.values() for v in link.values())

    def _effective_config(self) -> config_mod.Config:
        """The configuration with the API's link capacities (`link.set`) applied; an `auto`
        capacity follows the prediction, under the configured rate as its ceiling."""
        import dataclasses

        interfaces = []
        for iface in self.config.interfaces:
            override = self.policy.links.get(iface.name, {})
            changes = {}
            for key in ("up_mbit", "down_mbit"):
                value = override.get(key)
                if value is None:
                    continue
                if value != "auto":
                    changes[key] = value
                elif getattr(iface, key) and self.forecasts is not None and iface.role == "wan":
                    changes[key] = self.forecasts.capacity(iface.name, key[:-5], getattr(iface, key))
            interfaces.append(dataclasses.replace(iface, **changes))
        return dataclasses.replace(self.config, interfaces=tuple(interfaces))

    def _on_link_events(self) -> None:
        configured = {iface.name for iface in self.config.interfaces}
        events = self.links.read()
        if any(event.kind in ("addr", "resync") for event in events):
            self._read_own_addresses()
        for event in events:
            if event.kind == "resync":
                self._resync_links()
                continue
            if event.kind == "addr":
                continue
            ours = self.iface_names.get(event.ifindex)
            if event.kind == "del":
                if ours:
                    self._lose(ours, event.ifindex, "deleted")
                continue
            if ours and ours != event.name:
                # Renamed away: it is no longer the port the admin configured.
                self.hooks.detach(ours, ifindex=event.ifindex)
                self._lose(ours, event.ifindex, f"renamed to {event.name}")
            if event.name in configured:
                if self.oper_up.get(event.name) != event.oper_up and event.name in self.hooks.attached:
                    self._note_link(event.name, "up" if event.oper_up else "down")
                self.oper_up[event.name] = event.oper_up
                if event.name not in self.hooks.attached and event.name not in self.pending:
                    self.pending.append(event.name)
        if self.pending:
            self._attach_pending()

    def _resync_links(self) -> None:
        for ifindex, name in list(self.iface_names.items()):
            if self.hooks.ifindex(name) != ifindex:
                self._lose(name, ifindex, "changed while events were lost")

    def _lose(self, name: str, ifindex: int, why: str) -> None:
        log.warning("interface %s %s; will attach again when it returns", name, why)
        self.hooks.forget(name)
        self.iface_names.pop(ifindex, None)
        self.datapath.clear_port(ifindex)
        self.oper_up.pop(name, None)
        if name not in self.pending:
            self.pending.append(name)
        self._note_link(name, why)

    def _note_link(self, name: str, change: str) -> None:
        self.link_changes.append({"ts": time.time(), "interface": name, "change": change})
        del self.link_changes[:-50]

    def stop(self) -> None:
        self.notifier.stopping()
        if self.control is not None:
            self.control.close()
        if self.shaper is not None:
            if self.shaper.stop(self.config.shaping.on_stop):
                log.error("removing the HTB trees left problems; run `anabranchd --cleanup`")
            self.shaper.close()
        if self.hooks is not None:
            failures = self.hooks.detach_all([i.name for i in self.config.interfaces])
            if failures:
                log.error("detaching left %d problem(s); run `anabranchd --cleanup`", len(failures))
            self.hooks.close()
        if self.server is not None:
            self.server.close()
        if self.links is not None:
            self.links.close()
        if self.nat is not None:
            self.nat.close()
        if self.datapath is not None:
            self.datapath.close()
        log.info("stopped")

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_ms += (time.perf_counter() - self._gc_started) * 1000

    def run(self) -> None:
        gc.callbacks.append(self._on_gc)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        self.start()
        # What start-up made (BCC, LLVM's bindings, onnxruntime, the tables) lives as long as
        # the daemon: out of the collector's sight, a full collection walks only what ticks
        # make, instead of pausing a tick for tens of milliseconds.
        gc.collect()
        gc.freeze()
        try:
            period = self.config.daemon.tick_s
            next_tick = time.monotonic()
            while not self.stopping:
                self._tick_in_realtime()
                next_tick += period
                now = time.monotonic()
                if next_tick < now:  # we overran: skip rather than burst
                    next_tick = now + period
                while not self.stopping and time.monotonic() < next_tick:
                    self.server.serve(min(0.2, next_tick - time.monotonic()))
                if self.reload_requested:
                    self.reload_requested = False
                    self._reload()
        finally:
            self.stop()

    def _tick_in_realtime(self) -> None:
        """One tick under SCHED_RR at daemon.realtime_priority, then back to the normal
        scheduler, where the API is served between ticks: a flood of commands never runs
        ahead of the rest of the machine.  Only the tick's thread, only after start-up (BCC's
        compile stays under Nice=), and threads started meanwhile get the normal scheduler
        (SCHED_RESET_ON_FORK).  Two system calls a tick."""
        priority = self.config.daemon.realtime_priority
        self.tick_realtime = False
        if priority and not self._realtime_refused:
            try:
                os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
                self.tick_realtime = True
            except OSError as exc:
                self._realtime_refused = True
                log.warning("daemon.realtime_priority = %d: %s; the tick keeps the normal scheduler "
                            "(the unit's LimitRTPRIO= must allow the priority)", priority, exc.strerror)
        try:
            self.tick()
        finally:
            if self.tick_realtime:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))

    def _on_stop_signal(self, signum, frame) -> None:
        self.stopping = True

    def _on_hup(self, signum, frame) -> None:
        self.reload_requested = True

    def _reload(self) -> None:
        try:
            self.reload_config()
        except config_mod.ConfigError as exc:
            log.error("reload refused, keeping the running configuration:\n%s", exc)

    # -- the tick ---------------------------------------------------------------
    def tick(self) -> None:
        started = time.perf_counter()
        cpu_started = time.thread_time()
        usage_started = resource.getrusage(resource.RUSAGE_THREAD)
        marks = [started]
        if self.pending and self.ticks % 10 == 0:
            self._attach_pending()  # a safety net: link events normally do this at once
        self._drain_events()
        self._measure_cost()
        keys, values = self.datapath.sweep_flows()
        now_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        self.table = self.rates.update(keys, values, now_ns)
        idle = self.table.idle(int(self.config.daemon.idle_timeout_s * 1e9))
        if idle.any():
            self.datapath.delete_flows(self.table.kernel_keys()[idle])
        self.table = self._translate(self.table)
        marks.append(time.perf_counter())
        self._control()
        marks.append(time.perf_counter())
        self._shape()
        marks.append(time.perf_counter())
        self._publish()
        marks.append(time.perf_counter())
        # Where the last tick's time went: a slow tick says which phase made it slow.
        self.phases_ms = {name: round((b - a) * 1000, 3) for name, a, b in
                          zip(("sweep", "controller", "shaping", "publish"), marks, marks[1:])}
        self.phases_ms["gc"] = round(self._gc_ms, 3)   # inside the phases above, not besides them
        self.steps_ms = self._steps_this_tick
        self._gc_ms = 0.0
        self.ticks += 1
        self.tick_ms = (time.perf_counter() - started) * 1000
        # On the CPU, against tick_ms on the clock: a tick much longer than its CPU time
        # waited for a CPU (other processes), not for its own work.
        self.tick_cpu_ms = (time.thread_time() - cpu_started) * 1000
        # And why the CPU time itself may be long: page faults (memory handed back
        # and taken again) and preemptions (other work on the same CPU).
        usage = resource.getrusage(resource.RUSAGE_THREAD)
        self.tick_faults = usage.ru_minflt - usage_started.ru_minflt + usage.ru_majflt - usage_started.ru_majflt
        self.tick_preemptions = usage.ru_nivcsw - usage_started.ru_nivcsw
        self.notifier.watchdog()
        if self.ticks % 10 == 0:
            self.notifier.status(self._status_line())

    def _control(self) -> None:
        from anabranch.controller.paths import LinkSpec
        from anabranch.controller.tick import DatapathHealth

        from .control import timing
        started = time.perf_counter()
        errors = self.datapath.error_counts()
        deltas = {k: max(0, v - self._errors_prev.get(k, 0)) for k, v in errors.items()}
        self._errors_prev = errors
        lost = deltas.pop("event_lost", 0)
        wan = [i for i in self.config.interfaces if i.role == "wan"]
        by_name = {name: idx for idx, name in self.iface_names.items()}
        effective = self._effective_config()
        self.control.set_links([LinkSpec(i.name, by_name[i.name], e.up_mbit, e.down_mbit)
                                for i, e in zip(self.config.interfaces, effective.interfaces)
                                if i.role == "wan" and i.name in by_name])
        health = DatapathHealth(
            events_lost=lost,
            map_fill_pct={"flows": 100.0 * len(self.table) / self.config.daemon.flow_map_size},
            errors={k: v for k, v in deltas.items() if v},
            links_down={i.name: 0.0 if i.name in by_name and self.oper_up.get(i.name, True) else 1.0
                        for i in wan})
        anomalies = {"predict.anomaly": self.forecasts.anomaly_metrics()} if self.forecasts else None
        steps: dict[str, float] = {"daemon_inputs": round((time.perf_counter() - started) * 1000, 3)}
        try:
            result = self.control.tick(self.table, self.events, time.time(), health, anomalies)
        except Exception:  # a controller bug must not stop counting, shaping and the API
            log.exception("controller tick failed; flows keep their previous classes")
            result = None
        with timing(steps, "predict"):
            if result is not None and self.forecasts is not None:
                try:
                    from anabranch.controller.classify import CLASSES
                    self.forecasts.update(self.forecasts.samples(
                        self.table, result.classification.class_index, CLASSES,
                        {name: idx for idx, name in self.iface_names.items() if name in self.forecasts.links}))
                except Exception:
                    log.exception("prediction failed; the allocation uses measured rates")
        self.controller_ms = (time.perf_counter() - started) * 1000
        # Published with the tick's phases, at the end of the tick (state carries the last whole tick).
        self._steps_this_tick = {**self.control.step_ms, **steps}

    def _translate(self, table):
        """The table with NATed flows under their LAN hosts (after the sweep: see Translator.apply)."""
        if self.nat is None:
            return table
        self._follow_nat()
        table = self.nat.apply(table)
        if len(self.nat.relooked):
            self.records.forget(self.nat.relooked)
        return table

    def _follow_nat(self) -> None:
        try:
            self.nat.refresh()
            if self._nat_error:
                log.info("conntrack: reading again")
                self._nat_error = ""
        except OSError as exc:   # new flows then keep the addresses the WAN port sees
            if str(exc) != self._nat_error:
                log.warning("conntrack: %s; new NATed flows show the gateway's address", exc)
            self._nat_error = str(exc)

    def _read_own_addresses(self) -> None:
        from pyroute2 import IPRoute

        try:
            with IPRoute() as ipr:
                # IFA_LOCAL where there is one: on a point-to-point link (PPPoE) IFA_ADDRESS is the peer's.
                found = (a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS") for a in ipr.get_addr())
                self.own_addresses = frozenset(str(ipaddress.ip_address(x)) for x in found if x)
        except (OSError, ValueError) as exc:   # keep the last set; only the marking waits
            log.warning("cannot read the gateway's addresses: %s", exc)

    def _nat_state(self) -> dict[str, Any]:
        if self.nat is None:
            return {"following": False}
        return {"following": True, "connections": len(self.nat.hosts), "flows": self.nat.translated,
                "resyncs": self.nat.resyncs, "error": self._nat_error or None}

    def _drain_events(self) -> None:
        from .events import decode_all

        self.events = decode_all(self.datapath.drain_events(), self.datapath.options.snippet_size)
        self.events_total += len(self.events)

    def _measure_cost(self) -> None:
        """ns per packet and packets/s per port from the kernel's BPF run statistics."""
        now = time.monotonic()
        for name, stats in self.datapath.port_stats().items():
            runs, run_ns = stats["runs"], stats["run_ns"]
            prev = self._port_stats_prev.get(name)
            self._port_stats_prev[name] = (runs, run_ns, now)
            if prev is None:
                continue
            d_runs, d_ns, dt = runs - prev[0], run_ns - prev[1], max(now - prev[2], 1e-3)
            self.port_cost[name] = {"ns_per_packet": round(d_ns / d_runs, 1) if d_runs else 0.0,
                                    "packets_per_s": round(d_runs / dt, 1),
                                    "runs": runs, "run_ns": run_ns}

    def flow_records(self, rows: np.ndarray) -> list[dict[str, Any]]:
        offset = time.time() - time.clock_gettime_ns(time.CLOCK_MONOTONIC) / 1e9
        records = self.records.build(self.table, rows, self.iface_names, offset)
        for record, row in zip(records, rows.tolist()):
            record.update(self._datapath_fields(row))
        decided = self.control.flow_classes(self.table) if self.control is not None else None
        if decided is not None:
            names, reasons = decided
            for record, name, reason in zip(records, names[rows].tolist(), reasons[rows].tolist()):
                record["class"], record["reason"] = name, reason
        return records

    def flow_classes(self) -> np.ndarray:
        """Each flow's class name (the API's class filter and per-class counts)."""
        decided = self.control.flow_classes(self.table) if self.control is not None else None
        if decided is not None:
            return decided[0]
        values = self.table.values if self.table is not None else None
        if values is None:
            return np.full(len(self.table) if self.table is not None else 0, None, dtype=object)
        lookup = np.array([self.class_names.get(i) for i in range(256)], dtype=object)
        return lookup[values["class_id"].astype(np.intp)]

    def _datapath_fields(self, row: int) -> dict[str, Any]:
        """Class, RTT and retransmissions the datapath keeps per flow."""
        values = self.table.values
        if values is None:
            return {"class": None, "reason": None}
        value = values[row]
        class_id, reason = int(value["class_id"]), int(value["class_reason"])
        dirs = value["dir"]
        return {
            "class": self.class_names.get(class_id),
            "reason": kstructs.REASONS[reason] if reason < len(kstructs.REASONS) else None,
            # What the datapath marks with (the controller's verdict reaches it by the maps).
            "kernel_class": self.class_names.get(class_id),
            "rtt_ms": [round(int(dirs[d]["rtt_srtt_ns"]) / 1e6, 3) if int(dirs[d]["rtt_samples"]) else None
                       for d in (UP, DOWN)],
            "retransmits": [int(dirs[UP]["retransmits"]), int(dirs[DOWN]["retransmits"])],
            "mptcp_subtypes": int(value["mptcp_subtypes"]),
        }

    def mptcp_view(self) -> dict[str, Any]:
        return self.control.mptcp_view(self.iface_names)

    def predictions_view(self) -> dict[str, Any]:
        if self.forecasts is None:
            return {"available": False, "method": None, "classes": [], "links": []}
        capacities = {i.name: i.down_mbit for i in self._effective_config().interfaces if i.role == "wan"}
        return self.forecasts.view(capacities)

    def path_stats(self) -> dict[str, dict[str, Any]]:
        return self.control.path_stats() if self.control is not None else {}

    def interfaces(self) -> list[dict[str, Any]]:
        result = []
        by_name = {name: idx for idx, name in self.iface_names.items()}
        for iface in self.config.interfaces:
            ifindex = by_name.get(iface.name)
            entry = {"name": iface.name, "ifindex": ifindex, "role": iface.role,
                     "attached": iface.name in self.hooks.attached,
                     "oper_up": self.oper_up.get(iface.name), "up_bps": 0.0, "down_bps": 0.0,
                     "up_mbit": iface.up_mbit, "down_mbit": iface.down_mbit}
            if ifindex is not None and self.table is not None:
                mask = self.table.by_port(ifindex)
                entry["up_bps"] = float(self.table.bps[mask, UP].sum())
                entry["down_bps"] = float(self.table.bps[mask, DOWN].sum())
            result.append(entry)
        return result

    def state(self) -> dict[str, Any]:
        return {
            "daemon": {"version": version(), "pid": os.getpid(),
                       "uptime_s": round(time.monotonic() - self.started_mono, 1),
                       "tick_s": self.config.daemon.tick_s,
                       "tick_ms": round(self.tick_ms, 3), "tick_cpu_ms": round(self.tick_cpu_ms, 3),
                       "tick_faults": self.tick_faults, "tick_preemptions": self.tick_preemptions,
                       "tick_realtime": self.tick_realtime,
                       "ticks": self.ticks,
                       "controller_ms": round(self.controller_ms, 3), "phases_ms": self.phases_ms,
                       "controller_steps_ms": self.steps_ms,
                       "nat": self._nat_state()},
            "interfaces": self.interfaces(),
            "link_changes": self.link_changes[-10:],
            "totals": self.table.totals() if self.table is not None else {},
            "datapath": {"errors": self.datapath.error_counts(),
                         "flow_map_size": self.config.daemon.flow_map_size,
                         "events": self.events_total,
                         "events_lost": self.datapath.error_counts().get("event_lost", 0),
                         "cost": self.port_cost},
            "shaping": self.shaper.snapshot() if self.shaper is not None else None,
            "recommendation": self.control.recommendation() if self.control is not None else {},
        }

    def _publish(self) -> None:
        self.stream.tick(time.time())

    def _status_line(self) -> str:
        attached = len(self.hooks.attached) if self.hooks else 0
        flows = len(self.table) if self.table is not None else 0
        return f"{attached} interface(s) attached, {flows} flows, tick {self.tick_ms:.1f} ms"

    # -- what the API reads and changes ---------------------------------------------------
    def reload_config(self) -> str:
        """Re-read the TOML (the `config.reload` command); raises ConfigError and keeps the old one."""
        fresh = config_mod.load(self.config.source)
        self.config = fresh
        self._realtime_refused = False
        if self.server is not None and fresh.api.curve_clients_dir:
            self.server.allowed_clients_changed(fresh.api.curve_clients_dir)
        log.info("configuration reloaded from %s (interface changes apply at restart)", fresh.source)
        return fresh.source


def cleanup(config: config_mod.Config) -> int:
    """Remove our tc filters (and clsact qdiscs we created) after a hard kill."""
    from .attach import Ledger, TcHooks

    hooks = TcHooks(Ledger.load(Path(config.daemon.runtime_dir) / "kernel-state.json"))
    names = sorted({i.name for i in config.interfaces} | hooks.ledger.clsact_created)
    failures = hooks.detach_all(names)
    hooks.close()
    from .shaper import Shaper, ShapingLedger, shaped_links

    shaper = Shaper(shaped_links(config),
                    ShapingLedger.load(Path(config.daemon.runtime_dir) / "shaping-state.json"))
    names = sorted(set(names) | shaper.ledger.trees)
    failures += shaper.stop("remove")
    shaper.close()
    for name in names:
        print(f"cleaned {name}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anabranchd", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(config_mod.DEFAULT_PATH), help="TOML configuration file")
    parser.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    parser.add_argument("--dump-ebpf", action="store_true", help="print the datapath source, cflags and header")
    parser.add_argument("--cleanup", action="store_true", help="remove kernel state a killed daemon left")
    parser.add_argument("--version", action="version", version=f"anabranchd {version()}")
    args = parser.parse_args(argv)

    try:
        config = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        print(f"anabranchd: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.daemon.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.check_config:
        print(f"{args.config}: OK ({len(config.interfaces)} interface(s))")
        return 0
    if args.dump_ebpf:
        from .datapath import BuildOptions, dump
        print(dump(BuildOptions(flow_map_size=config.daemon.flow_map_size)))
        return 0
    if os.geteuid() != 0:
        print("anabranchd: must run as root (it loads BPF programs and changes tc)", file=sys.stderr)
        return 1
    if args.cleanup:
        return cleanup(config)
    # `kill -USR1` dumps every thread's stack to the journal: a hung tick is diagnosable.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    Daemon(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
