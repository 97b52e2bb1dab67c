"""A Daemon stand-in for API tests: real ApiServer, commands and stream over a synthetic FlowTable.

No BPF, no root: flow keys and counters are numpy arrays of kstructs' dtypes fed
through the real controller FlowRates.  Run as a script it serves until killed
(the fuzz test measures that process's memory):

    python fake_daemon.py EVENTS CONTROL STATE_DIR [FLOWS [TICK_S [PUBLISH_FLOWS]]]
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import numpy as np

from anabranch.controller.flows import FlowRates
from anabranch.daemon import commands, config as config_mod, kstructs
from anabranch.daemon.estimate import HarmonicForecaster
from anabranch.daemon.control import Control
from anabranch.daemon.main import Daemon
from anabranch.daemon.records import FlowRecords
from anabranch.daemon.server import ApiServer
from anabranch.daemon.state import AlertBook, Policy
from anabranch.daemon.stream import Stream

CONFIG = """
[daemon]
publish_flows = {publish}
state_dir = "{state_dir}"
[interfaces.wan0]
role = "wan"
up_mbit = 50
down_mbit = 200
[interfaces.lan0]
role = "lan"
"""
IFINDEX = {"wan0": 2, "lan0": 3}


def synthetic_flows(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """n flows on wan0/lan0 from hosts 10.0.0.1-10.0.0.50 (IPv4) plus a few IPv6 ones."""
    rng = np.random.default_rng(seed)
    keys = np.zeros(n, dtype=kstructs.FLOW_KEY)
    keys["ifindex"] = np.where(np.arange(n) % 4 == 0, IFINDEX["lan0"], IFINDEX["wan0"])
    keys["family"] = np.where(np.arange(n) % 50 == 49, kstructs.FAMILY_V6, kstructs.FAMILY_V4)
    keys["proto"] = np.where(np.arange(n) % 3 == 0, 17, 6)
    keys["lan_port"] = 10_000 + np.arange(n) % 50_000
    keys["remote_port"] = rng.choice([443, 80, 53, 5060, 22], size=n)
    host = (np.arange(n) % 50 + 1).astype(np.uint8)
    keys["lan_addr"][:, 0], keys["lan_addr"][:, 3] = 10, host
    keys["remote_addr"][:, 0] = 93
    keys["remote_addr"][:, 2] = (np.arange(n) // 256) % 256
    keys["remote_addr"][:, 3] = np.arange(n) % 256
    v6 = keys["family"] == kstructs.FAMILY_V6
    keys["lan_addr"][v6] = np.frombuffer(bytes.fromhex("fd000000000000000000000000000001"), np.uint8)
    values = np.zeros(n, dtype=kstructs.FLOW)
    values["first_seen_ns"] = 1_000_000_000
    values["last_seen_ns"] = 1_000_000_000
    return keys, values


class FakeDaemon:
    """What commands.py and stream.py need from a Daemon, with a synthetic flow table."""

    flow_records = Daemon.flow_records
    _datapath_fields = Daemon._datapath_fields
    flow_classes = Daemon.flow_classes
    interfaces = Daemon.interfaces
    mptcp_view = Daemon.mptcp_view
    path_stats = Daemon.path_stats

    def __init__(self, events: str, control: str, state_dir: str, flows: int = 200,
                 publish_flows: int = 2000, group: str = "", curve=None, snapshot_every: int = 10):
        self.config = config_mod.loads(CONFIG.format(publish=publish_flows, state_dir=state_dir))
        self.server = ApiServer(events, control, group=group, curve=curve)
        self.policy = Policy.load(state_dir)
        self.alerts = AlertBook(self.policy, lambda body: self.server.publish("alerts", body))
        self.forecaster = HarmonicForecaster()
        self.stream = Stream(self.server, self, snapshot_every=snapshot_every)
        self.iface_names = {index: name for name, index in IFINDEX.items()}
        self.hooks = type("Hooks", (), {"attached": {"wan0", "lan0"}})()
        self.oper_up = {"wan0": True, "lan0": True}
        self.class_names: dict[int, str] = {}
        self.link_changes: list[dict[str, Any]] = []
        self.rates = FlowRates()
        self.records = FlowRecords()
        self.table = None
        self.now_ns = 2_000_000_000
        self.keys, self.values = synthetic_flows(flows)
        self.reloads = 0
        # The real controller (no kernel maps to write): classes, paths, alerts, history.
        self.control = Control(self.config.controller, self.policy, self.alerts, None, state_dir)
        commands.register(self.server, self)

    # -- the flow table moves on ---------------------------------------------------------
    def advance(self, moving: float = 0.1, seed: int | None = None, dt_ns: int = 1_000_000_000) -> None:
        """One tick: a `moving` share of the flows carry traffic, then sweep."""
        rng = np.random.default_rng(seed)
        self.now_ns += dt_ns
        busy = rng.random(len(self.keys)) < moving
        grow = rng.integers(100, 150_000, size=(int(busy.sum()), 2)).astype(np.uint64)
        self.values["dir"]["bytes"][busy] += grow
        self.values["dir"]["packets"][busy] += grow // 1000 + 1
        self.values["last_seen_ns"][busy] = self.now_ns
        self.table = self.rates.update(self.keys.copy(), self.values.copy(), self.now_ns)

    def tick(self, now: float | None = None, **advance: Any) -> None:
        self.advance(**advance)
        self.control.tick(self.table, [], time.time() if now is None else now)
        self.stream.tick(now)

    # -- what the Daemon offers the API --------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"daemon": {"version": "test", "pid": os.getpid(), "uptime_s": 1.0, "tick_ms": 1.0, "ticks": 1},
                "interfaces": self.interfaces(),
                "totals": self.table.totals() if self.table is not None else {},
                "datapath": {"errors": {}, "flow_map_size": 65536}}

    def reload_config(self) -> str:
        source = getattr(self, "reload_source", None)
        if source is not None:
            self.config = config_mod.load(source)
        self.reloads += 1
        return self.config.source

    def serve_forever(self, stop: threading.Event, tick_s: float = 0.2) -> None:
        while not stop.is_set():
            self.tick()
            self.server.serve(tick_s)

    def close(self) -> None:
        self.control.close()
        self.server.close()


def main(argv: list[str]) -> int:
    events, control, state_dir = argv[:3]
    flows = int(argv[3]) if len(argv) > 3 else 200
    tick_s = float(argv[4]) if len(argv) > 4 else 0.5
    publish_flows = int(argv[5]) if len(argv) > 5 else 2000
    daemon = FakeDaemon(events, control, state_dir, flows=flows, publish_flows=publish_flows)
    daemon.tick()
    print("ready", flush=True)
    try:
        while True:
            daemon.server.serve(tick_s)
            daemon.tick()
    except KeyboardInterrupt:
        pass
    finally:
        daemon.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
