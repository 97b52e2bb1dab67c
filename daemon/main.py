"""anabranchd: load the datapath, attach it, run the tick loop, serve the ZeroMQ API.

    anabranchd --config /etc/anabranch/anabranch.toml     run (as root)
    anabranchd --check-config [--config FILE]              validate and exit
    anabranchd --dump-ebpf                                 print the C, cflags, header
    anabranchd --cleanup [--config FILE]                   remove what a killed daemon left

Each tick (default 1 s) sweeps the flow map into numpy, computes rates in the
controller, publishes `state` and `flows`, and between ticks answers commands.
Needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (root in practice); see systemd/.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import socket
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from anabranch.client import messages
from anabranch.controller.flows import DOWN, UP, FlowRates, FlowTable

from . import config as config_mod
from . import kstructs
from .notify import Notifier
from .server import ApiServer, Arg, Command, CommandError

log = logging.getLogger("anabranchd")

PROGRAM_NAMES = {"ingress": "anabranch_ingress", "egress": "anabranch_egress"}
SORT_KEYS = ("rate", "bytes", "first_seen", "last_seen")


def version() -> str:
    try:
        return metadata.version("anabranch")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _addresses(family: np.ndarray, raw: np.ndarray) -> list[str]:
    out = []
    for fam, addr in zip(family.tolist(), raw):
        data = addr.tobytes()
        out.append(socket.inet_ntop(socket.AF_INET, data[:4]) if fam == kstructs.FAMILY_V4
                   else socket.inet_ntop(socket.AF_INET6, data))
    return out


class Daemon:
    def __init__(self, config: config_mod.Config):
        self.config = config
        self.notifier = Notifier()
        self.started_mono = time.monotonic()
        self.stopping = False
        self.reload_requested = False
        self.rates = FlowRates()
        self.table: FlowTable | None = None
        self.tick_ms = 0.0
        self.ticks = 0
        self.iface_names: dict[int, str] = {}
        self.pending: list[str] = []
        self.oper_up: dict[str, bool] = {}
        self.link_changes: list[dict[str, Any]] = []
        self.links = None
        self.datapath = None
        self.hooks = None
        self.server: ApiServer | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        from .attach import Ledger, TcHooks
        from .datapath import BuildOptions, Datapath

        runtime = Path(self.config.daemon.runtime_dir)
        runtime.mkdir(parents=True, exist_ok=True, mode=0o755)
        self.datapath = Datapath(BuildOptions(flow_map_size=self.config.daemon.flow_map_size))
        self.hooks = TcHooks(Ledger.load(runtime / "kernel-state.json"))
        self.server = ApiServer(self.config.api.events, self.config.api.control,
                                group=self.config.api.socket_group)
        self._register_commands()
        from .links import LinkWatcher
        self.links = LinkWatcher()
        self.server.watch_fd(self.links.fileno(), self._on_link_events)
        self.pending = [iface.name for iface in self.config.interfaces]
        self._attach_pending()
        self.notifier.ready(self._status_line())
        log.info("anabranchd %s ready: events %s, control %s", version(),
                 self.config.api.events, self.config.api.control)

    def _attach_pending(self) -> None:
        from .attach import AttachError

        still = []
        for name in self.pending:
            iface = self.config.interface(name)
            try:
                ifindex = self.hooks.attach(name, self.datapath.program_fds, PROGRAM_NAMES)
            except AttachError as exc:
                if self.ticks == 0:
                    log.warning("%s; will keep trying", exc)
                still.append(name)
                continue
            role = kstructs.ROLE_WAN if iface.role == "wan" else kstructs.ROLE_LAN
            self.datapath.set_port(ifindex, role, kstructs.PORT_COUNT)
            self.iface_names[ifindex] = name
            self.oper_up[name] = self.hooks.oper_up(ifindex)
            if self.ticks:
                self._note_link(name, "attached")
        self.pending = still

    def _on_link_events(self) -> None:
        configured = {iface.name for iface in self.config.interfaces}
        for event in self.links.read():
            if event.kind == "resync":
                self._resync_links()
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
        if self.hooks is not None:
            failures = self.hooks.detach_all([i.name for i in self.config.interfaces])
            if failures:
                log.error("detaching left %d problem(s); run `anabranchd --cleanup`", len(failures))
            self.hooks.close()
        if self.server is not None:
            self.server.close()
        if self.links is not None:
            self.links.close()
        if self.datapath is not None:
            self.datapath.close()
        log.info("stopped")

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        self.start()
        try:
            period = self.config.daemon.tick_s
            next_tick = time.monotonic()
            while not self.stopping:
                self.tick()
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

    def _on_stop_signal(self, signum, frame) -> None:
        self.stopping = True

    def _on_hup(self, signum, frame) -> None:
        self.reload_requested = True

    def _reload(self) -> None:
        try:
            fresh = config_mod.load(self.config.source)
        except config_mod.ConfigError as exc:
            log.error("reload refused, keeping the running configuration:\n%s", exc)
            return
        log.info("configuration reloaded from %s (interface changes apply at restart)",
                 self.config.source)
        self.config = fresh

    # -- the tick ---------------------------------------------------------------
    def tick(self) -> None:
        started = time.perf_counter()
        if self.pending and self.ticks % 10 == 0:
            self._attach_pending()  # a safety net: link events normally do this at once
        keys, values = self.datapath.sweep_flows()
        now_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        self.table = self.rates.update(keys, values, now_ns)
        idle = self.table.idle(int(self.config.daemon.idle_timeout_s * 1e9))
        if idle.any():
            self.datapath.delete_flows(self.table.keys[idle])
        self._publish()
        self.ticks += 1
        self.tick_ms = (time.perf_counter() - started) * 1000
        self.notifier.watchdog()
        if self.ticks % 10 == 0:
            self.notifier.status(self._status_line())

    def _epoch(self, mono_ns: np.ndarray) -> np.ndarray:
        offset = time.time() - time.clock_gettime_ns(time.CLOCK_MONOTONIC) / 1e9
        return mono_ns.astype(np.float64) / 1e9 + offset

    def flow_records(self, rows: np.ndarray) -> list[dict[str, Any]]:
        table = self.table
        keys = table.keys[rows]
        family = keys["family"]
        src = _addresses(family, keys["lan_addr"])
        dst = _addresses(family, keys["remote_addr"])
        first = self._epoch(table.first_seen_ns[rows]).tolist()
        last = self._epoch(table.last_seen_ns[rows]).tolist()
        packets = table.packets[rows].tolist()
        octets = table.bytes[rows].tolist()
        bps = table.bps[rows].tolist()
        records = []
        for i, row in enumerate(rows.tolist()):
            key = keys[i]
            records.append({
                "id": f"{int(table.ids[row]):016x}",
                "iface": self.iface_names.get(int(key["ifindex"]), str(int(key["ifindex"]))),
                "proto": kstructs.proto_name(key["proto"]),
                "family": int(family[i]),
                "src": src[i], "sport": int(key["lan_port"]),
                "dst": dst[i], "dport": int(key["remote_port"]),
                "packets_up": packets[i][UP], "packets_down": packets[i][DOWN],
                "bytes_up": octets[i][UP], "bytes_down": octets[i][DOWN],
                "bps_up": bps[i][UP], "bps_down": bps[i][DOWN],
                "first_seen": first[i], "last_seen": last[i],
                "class": None, "reason": None,
            })
        return records

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
                       "tick_ms": round(self.tick_ms, 3), "ticks": self.ticks},
            "interfaces": self.interfaces(),
            "link_changes": self.link_changes[-10:],
            "totals": self.table.totals() if self.table is not None else {},
            "datapath": {"errors": self.datapath.error_counts(),
                         "flow_map_size": self.config.daemon.flow_map_size},
        }

    def _publish(self) -> None:
        now = time.time()
        self.server.publish("state", self.state(), now)
        rows = self.table.top(self.config.daemon.publish_flows)
        self.server.publish("flows", {"snapshot": True, "count": len(self.table),
                                      "flows": self.flow_records(rows)}, now)

    def _status_line(self) -> str:
        attached = len(self.hooks.attached) if self.hooks else 0
        flows = len(self.table) if self.table is not None else 0
        return f"{attached} interface(s) attached, {flows} flows, tick {self.tick_ms:.1f} ms"

    # -- commands -------------------------------------------------------------------
    def _register_commands(self) -> None:
        self.server.register(Command("status", lambda args: self.state(),
                                     summary="daemon, interfaces, totals and datapath errors"))
        self.server.register(Command("flows", self._cmd_flows, summary="active flows, filtered and sorted", args={
            "limit": Arg((int,), low=1, high=100_000),
            "sort": Arg((str,), choices=SORT_KEYS),
            "iface": Arg((str,), max_len=15),
            "proto": Arg((str,), max_len=8),
            "host": Arg((str,), max_len=64),
        }))

    def _cmd_flows(self, args: dict[str, Any]) -> dict[str, Any]:
        table = self.table
        if table is None:
            raise CommandError(messages.E_UNAVAILABLE, "no sweep yet; try again in a second")
        mask = np.ones(len(table), dtype=bool)
        if "iface" in args:
            ifindex = next((i for i, n in self.iface_names.items() if n == args["iface"]), None)
            if ifindex is None:
                raise CommandError(messages.E_NOT_FOUND, f"args.iface: no attached interface {args['iface']!r}")
            mask &= table.by_port(ifindex)
        if "proto" in args:
            numbers = [n for n, name in kstructs.PROTO_NAMES.items() if name == args["proto"]]
            if not numbers:
                raise CommandError(messages.E_INVALID,
                                   f"args.proto: one of {', '.join(kstructs.PROTO_NAMES.values())}")
            mask &= table.keys["proto"] == numbers[0]
        rows = np.flatnonzero(mask)
        sort = args.get("sort", "rate")
        weight = {"rate": lambda r: table.bps[r].sum(axis=1),
                  "bytes": lambda r: table.bytes[r].sum(axis=1).astype(np.float64),
                  "first_seen": lambda r: table.first_seen_ns[r].astype(np.float64),
                  "last_seen": lambda r: table.last_seen_ns[r].astype(np.float64)}[sort](rows)
        rows = rows[np.argsort(-weight, kind="stable")]
        records = self.flow_records(rows) if "host" not in args else [
            r for r in self.flow_records(rows) if args["host"] in (r["src"], r["dst"])]
        return {"count": len(records), "flows": records[: args.get("limit", 100)]}


def cleanup(config: config_mod.Config) -> int:
    """Remove our tc filters (and clsact qdiscs we created) after a hard kill."""
    from .attach import Ledger, TcHooks

    hooks = TcHooks(Ledger.load(Path(config.daemon.runtime_dir) / "kernel-state.json"))
    names = sorted({i.name for i in config.interfaces} | hooks.ledger.clsact_created)
    failures = hooks.detach_all(names)
    hooks.close()
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
