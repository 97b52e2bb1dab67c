"""Every command of the control socket: its argument schema, its handler, and the reply views.

`register(server, provider)` binds the commands to a state provider: the Daemon,
or in tests a fake with a real FlowTable.  The provider offers `table`,
`flow_records(rows)`, `interfaces()`, `state()`, `config`, `policy`, `alerts`,
`stream`, `forecaster` and `reload_config()`.  Handlers see arguments already
checked against their schema and raise CommandError with a stable code.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any, Callable

import numpy as np

from anabranch.client import messages
from anabranch.controller.alerts import METRICS
from anabranch.controller.predict.operations import ClassPolicy, InvalidRequest, allocate_plan

from . import kstructs
from .server import ApiServer, Arg, Command, CommandError
from .state import MAX_RULES, PolicyError

SORT_KEYS = ("rate", "bytes", "first_seen", "last_seen")
MAX_FLOWS = 100_000
# A reply must fit the client's receive limit with room to spare.
MAX_EXPORT_BYTES = 32 << 20

# Shared pieces of the schemas.
CLASS_NAME = Arg((str,), pattern=r"[a-z][a-z0-9_-]{0,31}", max_len=32)
IFACE = Arg((str,), pattern=r"[A-Za-z0-9_.:@-]{1,15}", max_len=15)
RULE_ID = Arg((str,), pattern=r"[A-Za-z0-9_-]{1,64}", max_len=64)
MBIT = Arg((float,), low=0.0, high=1_000_000)
PORT = Arg((int, list), low=0, high=65535, min_len=2, max_len=2,
           items=Arg((int,), low=0, high=65535), doc="a port or [first, last]")
MATCH = Arg((dict,), fields={
    "proto": Arg((str,), choices=("tcp", "udp", "any")),
    "ports": Arg((list,), items=PORT, max_len=64),
    "cidrs": Arg((list,), items=Arg((str,), min_len=2, max_len=43), max_len=64),
    "hosts": Arg((list,), items=Arg((str,), pattern=r"(\*\.)?[A-Za-z0-9_.-]{1,253}", max_len=255), max_len=64),
})
RULE_FIELDS = {
    "class": CLASS_NAME,
    "match": MATCH,
    "enabled": Arg((bool,)),
    "comment": Arg((str,), max_len=200),
}
NEW_RULE = Arg((dict,), required=True, fields={
    "id": RULE_ID, **RULE_FIELDS,
    "class": Arg((str,), required=True, pattern=CLASS_NAME.pattern, max_len=32),
    "match": Arg((dict,), required=True, fields=MATCH.fields),
})
ALERT_METRICS = tuple(METRICS)
ALERT_RULE = Arg((dict,), required=True, fields={
    "name": Arg((str,), required=True, pattern=r"[a-z0-9][a-z0-9_-]{0,63}", max_len=64),
    "metric": Arg((str,), choices=ALERT_METRICS),
    "op": Arg((str,), choices=(">", ">=", "<", "<=")),
    "threshold": Arg((float,), low=-1e12, high=1e12),
    "for_s": Arg((float,), low=0, high=86_400),
    "severity": Arg((str,), choices=("info", "warning", "critical")),
    "summary": Arg((str,), max_len=200),
    "enabled": Arg((bool,)),
})
SAMPLES = Arg((list,), required=True, min_len=1, max_len=3600,
              items=Arg((float, type(None)), low=0, high=1_000_000), doc="Mbit/s per second, oldest first")
PREDICT_REQUEST = Arg((dict,), fields={"class": Arg((str,), required=True, pattern=CLASS_NAME.pattern,
                                                    max_len=32),
                                       "recent_mbps": SAMPLES})


def _flow_index(table, flow_id: str) -> int | None:
    wanted = np.uint64(int(flow_id, 16))
    pos = int(np.searchsorted(table.ids, wanted))
    if pos < len(table.ids) and table.ids[pos] == wanted:
        return pos
    return None


# -- reply views shared with the state stream ------------------------------------------
def links_view(provider) -> list[dict[str, Any]]:
    """Each configured interface with its capacity: the admin's, the API's, or `auto`."""
    links = []
    paths = provider.path_stats() if hasattr(provider, "path_stats") else {}
    for iface in provider.interfaces():
        override = provider.policy.links.get(iface["name"], {})
        entry = dict(iface)
        for key in ("up_mbit", "down_mbit"):
            configured = iface.get(key)
            value = override.get(key, configured)
            entry[key] = None if value == "auto" else value
            entry[f"{key[:-5]}_source"] = ("auto" if value in ("auto", None) else
                                            "api" if key in override else "config")
        # Path quality from the controller's path monitor (None before the first tick).
        entry["quality"] = paths.get(iface["name"])
        links.append(entry)
    return links


def mptcp_view(provider) -> dict[str, Any]:
    """MPTCP connections with their subflows (each with its path and share)."""
    view = getattr(provider, "mptcp_view", None)
    return view() if view is not None else {"available": False, "count": 0, "connections": []}


def shaping_view(provider) -> dict[str, Any] | None:
    """The HTB plan per shaped link, read back from the kernel (None: shaping is off)."""
    shaper = getattr(provider, "shaper", None)
    return shaper.snapshot() if shaper is not None else None


def classes_view(provider) -> list[dict[str, Any]]:
    """The class table with each class's live flow count and rates."""
    counts: dict[str, list[float]] = {}
    classify = getattr(provider, "flow_classes", None)
    table = provider.table
    if classify is not None and table is not None and len(table):
        names = classify()
        for name in set(names):
            mask = names == name
            counts[name] = [int(mask.sum()), float(table.bps[mask, 0].sum()), float(table.bps[mask, 1].sum())]
    return [{"name": name, **settings,
             "flows": counts.get(name, [0])[0],
             "up_bps": counts.get(name, [0, 0.0])[1], "down_bps": counts.get(name, [0, 0.0, 0.0])[2]}
            for name, settings in provider.policy.classes.items()]


class Handlers:
    """The handlers, bound to one provider."""

    def __init__(self, provider, clock: Callable[[], float] = time.time):
        self.p = provider
        self.clock = clock
        self._status: tuple[Any, Any, dict[str, Any]] | None = None

    def _table(self):
        if self.p.table is None:
            raise CommandError(messages.E_UNAVAILABLE, "no flow sweep yet; try again after the first tick")
        return self.p.table

    def status(self, args):
        # Between two sweeps the answer can only differ in uptime: reuse it, so
        # a script polling `status` costs the tick nothing even with 100 000 flows.
        table, config = self.p.table, self.p.config
        if self._status is None or self._status[0] is not table or self._status[1] is not config:
            self._status = (table, config, self.p.state())
        return self._status[2]

    def flows(self, args):
        table = self._table()
        mask = np.ones(len(table), dtype=bool)
        if "iface" in args:
            ifindex = next((i for i, n in self.p.iface_names.items() if n == args["iface"]), None)
            if ifindex is None:
                raise CommandError(messages.E_NOT_FOUND, f"args.iface: no attached interface {args['iface']!r}")
            mask &= table.by_port(ifindex)
        if "proto" in args:
            number = next(n for n, name in kstructs.PROTO_NAMES.items() if name == args["proto"])
            mask &= table.keys["proto"] == number
        if "host" in args:
            mask &= self._host_mask(table, args["host"])
        if "class" in args:
            if args["class"] not in self.p.policy.classes:
                raise CommandError(messages.E_NOT_FOUND, f"args.class: no class {args['class']!r}")
            classify = getattr(self.p, "flow_classes", None)
            if classify is None:
                mask &= False
            else:
                mask &= classify() == args["class"]
        rows = np.flatnonzero(mask)
        weight = {"rate": lambda r: table.bps[r].sum(axis=1),
                  "bytes": lambda r: table.bytes[r].sum(axis=1).astype(np.float64),
                  "first_seen": lambda r: table.first_seen_ns[r].astype(np.float64),
                  "last_seen": lambda r: table.last_seen_ns[r].astype(np.float64)}[args.get("sort", "rate")](rows)
        rows = rows[np.argsort(-weight, kind="stable")]
        limit = args.get("limit", 100)
        return {"count": len(rows), "flows": self.p.flow_records(rows[:limit])}

    @staticmethod
    def _host_mask(table, host: str) -> np.ndarray:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise CommandError(messages.E_INVALID, f"args.host: must be an IPv4 or IPv6 address, got {host!r}") \
                from None
        raw = np.zeros(16, dtype=np.uint8)
        raw[:len(address.packed)] = np.frombuffer(address.packed, dtype=np.uint8)
        family = kstructs.FAMILY_V4 if address.version == 4 else kstructs.FAMILY_V6
        width = 4 if address.version == 4 else 16
        same_family = table.keys["family"] == family
        lan = (table.keys["lan_addr"][:, :width] == raw[:width]).all(axis=1)
        remote = (table.keys["remote_addr"][:, :width] == raw[:width]).all(axis=1)
        return same_family & (lan | remote)

    def flow(self, args):
        table = self._table()
        row = _flow_index(table, args["id"])
        if row is None:
            raise CommandError(messages.E_NOT_FOUND, f"args.id: no active flow {args['id']}")
        record = self.p.flow_records(np.array([row]))[0]
        history = self.p.stream.watch_flow(args["id"])
        return {"flow": record, "history": history}

    def mptcp(self, args):
        return mptcp_view(self.p)

    def links(self, args):
        return {"links": links_view(self.p)}

    def classes(self, args):
        return {"classes": classes_view(self.p), "shaping": shaping_view(self.p)}

    def rules_list(self, args):
        control = getattr(self.p, "control", None)
        return {"revision": self.p.policy.revision, "rules": self.p.policy.rules,
                "builtin": control.builtin_rules() if control is not None else []}

    def rules_add(self, args):
        position = args.get("position")
        if position is not None and position > len(self.p.policy.rules):
            raise CommandError(messages.E_INVALID,
                               f"args.position: at most {len(self.p.policy.rules)} (the number of rules)")
        return {"rule": self._policy(lambda: self.p.policy.add_rule(args["rule"], position))}

    def rules_update(self, args):
        return {"rule": self._policy(lambda: self.p.policy.update_rule(args["id"], args["rule"]),
                                     missing=f"args.id: no rule {args['id']!r}")}

    def rules_delete(self, args):
        self._policy(lambda: self.p.policy.delete_rule(args["id"]), missing=f"args.id: no rule {args['id']!r}")
        return {"deleted": args["id"]}

    def class_set(self, args):
        name = args["name"]
        if name not in self.p.policy.classes:
            raise CommandError(messages.E_NOT_FOUND, f"args.name: no class {name!r}; "
                                                     f"known: {', '.join(self.p.policy.classes)}")
        changes = {k: v for k, v in args.items() if k != "name"}
        if not changes:
            raise CommandError(messages.E_INVALID, "args: give at least one of priority, min_mbit, max_mbit, dscp")
        return {"class": self._policy(lambda: self.p.policy.set_class(name, changes))}

    def link_set(self, args):
        name = args["name"]
        if name not in {iface.name for iface in self.p.config.interfaces}:
            raise CommandError(messages.E_NOT_FOUND, f"args.name: no configured interface {name!r}")
        changes = {k: v for k, v in args.items() if k != "name"}
        if not changes:
            raise CommandError(messages.E_INVALID, "args: give up_mbit and/or down_mbit (a number or \"auto\")")
        for key, value in changes.items():
            if isinstance(value, str) and value != "auto":
                raise CommandError(messages.E_INVALID, f"args.{key}: a number of Mbit/s or \"auto\", got {value!r}")
            if not isinstance(value, str) and value <= 0:
                raise CommandError(messages.E_INVALID, f"args.{key}: must be above 0, got {value!r}")
        self._policy(lambda: self.p.policy.set_link(name, changes))
        return {"link": next(link for link in links_view(self.p) if link["name"] == name)}

    def alerts_list(self, args):
        alerts = self.p.alerts.listing(include_resolved=args.get("state", "active") == "all")
        return {"count": len(alerts), "alerts": alerts[: args.get("limit", 100)]}

    def alerts_ack(self, args):
        try:
            return {"alert": self.p.alerts.ack(args["id"], self.clock())}
        except KeyError:
            raise CommandError(messages.E_NOT_FOUND, f"args.id: no active alert {args['id']!r}") from None

    def _configured_alert_rules(self) -> frozenset[str]:
        control = getattr(self.p, "control", None)
        return frozenset(r.id for r in control.options.alerts.rules) if control is not None else frozenset()

    def alert_rules_list(self, args):
        control = getattr(self.p, "control", None)
        return {"rules": control.alert_rules() if control is not None else self.p.policy.alert_rules}

    def alert_rules_set(self, args):
        configured = self._configured_alert_rules()
        self._policy(lambda: self.p.policy.set_alert_rule(args["rule"], configured))
        return {"rule": next((r for r in self.alert_rules_list({})["rules"] if r["name"] == args["rule"]["name"]),
                             args["rule"])}

    def alert_rules_delete(self, args):
        configured = self._configured_alert_rules()
        self._policy(lambda: self.p.policy.delete_alert_rule(args["name"], configured),
                     missing=f"args.name: no alert rule {args['name']!r}")
        return {"deleted": args["name"]}

    def _check_classes(self, names: list[str], where: Callable[[int, str], str]) -> None:
        for i, name in enumerate(names):
            if name not in self.p.policy.classes:
                raise CommandError(messages.E_INVALID, f"{where(i, name)}: unknown class {name!r}; "
                                                       f"known: {', '.join(self.p.policy.classes)}")

    def predict(self, args):
        self._check_classes([args["class"]], lambda i, n: "args.class")
        answer = self.p.forecaster.predict_batch([args], self.p.policy.classes)[0]
        return {"method": self.p.forecaster.name, "prediction": answer}

    def predict_batch(self, args):
        requests = args["requests"]
        self._check_classes([r["class"] for r in requests], lambda i, n: f"args.requests[{i}].class")
        answers = self.p.forecaster.predict_batch(requests, self.p.policy.classes) if requests else []
        return {"method": self.p.forecaster.name, "predictions": answers}

    def allocate(self, args):
        demands = args["demands"]
        self._check_classes(list(demands), lambda i, n: f"args.demands.{n}")
        demands = {name: float(mbit) for name, mbit in demands.items()}
        # The shaper's rule, over the policy's class settings: the answer is what shaping would do.
        classes = {name: ClassPolicy(int(c["priority"]), float(c["min_mbit"]), c["max_mbit"])
                   for name, c in self.p.policy.classes.items() if name in demands}
        total = float(args["total_mbit"])
        try:
            plan = allocate_plan(total, demands, classes)
        except InvalidRequest as exc:
            raise CommandError(messages.E_INVALID, f"args.{exc}") from None
        rows = [{"class": c.name, "rate_mbit": c.rate_mbit, "ceil_mbit": c.ceil_mbit, "priority": c.priority}
                for c in plan.classes]
        rows.sort(key=lambda r: -r["priority"])
        return {"total_mbit": total, "plan": rows, "spare_mbit": plan.spare_mbit}

    def history(self, args):
        start, end = args.get("start"), args.get("end")
        if start is not None and end is not None and start > end:
            raise CommandError(messages.E_INVALID, "args.start: must not be after args.end")
        try:
            return self.p.stream.history(args["series"], start, end, args.get("step", 1.0))
        except KeyError:
            raise CommandError(messages.E_NOT_FOUND,
                               f"args.series: no series {args['series']!r}; known: "
                               f"{', '.join(self.p.stream.series_names())}") from None

    def history_export(self, args):
        start, end = args["start"], args["end"]
        if start > end:
            raise CommandError(messages.E_INVALID, "args.start: must not be after args.end")
        control = getattr(self.p, "control", None)
        if control is None or control.history is None:
            raise CommandError(messages.E_UNAVAILABLE, "no history database (controller.history.path)")
        fmt = args.get("format", "json")
        kinds = tuple(args["kinds"]) if args.get("kinds") else None
        content = control.history.export(start, end, fmt, kinds=kinds)
        if len(content) > MAX_EXPORT_BYTES:
            raise CommandError(messages.E_INVALID, f"args: the range holds {len(content)} bytes of history, more "
                                                   f"than {MAX_EXPORT_BYTES}; ask for a shorter range or fewer kinds")
        return {"format": fmt, "start": start, "end": end, "content": content}

    def usage(self, args):
        table = self._table()
        if not len(table):
            return {"window": "active flows", "count": 0, "hosts": [], **self._periods([])}
        keys = table.keys
        # Group by (family, LAN address) without a Python dict over every flow.
        group = np.empty(len(table), dtype=[("family", "u1"), ("addr", "u1", 16)])
        group["family"], group["addr"] = keys["family"], keys["lan_addr"]
        unique, inverse = np.unique(group, return_inverse=True)
        inverse = inverse.ravel()
        n = len(unique)

        def summed(values: np.ndarray) -> np.ndarray:
            return np.bincount(inverse, weights=values.astype(np.float64), minlength=n)

        flows = np.bincount(inverse, minlength=n)
        bytes_up, bytes_down = summed(table.bytes[:, 0]), summed(table.bytes[:, 1])
        bps_up, bps_down = summed(table.bps[:, 0]), summed(table.bps[:, 1])
        weight = bps_up + bps_down if args.get("sort", "bytes") == "rate" else bytes_up + bytes_down
        order = np.argsort(-weight, kind="stable")[: args.get("limit", 100)]
        own = getattr(self.p, "own_addresses", frozenset())
        hosts = [{"host": (host := kstructs.address(int(unique[i]["family"]), unique[i]["addr"])),
                  "gateway": host in own, "flows": int(flows[i]),
                  "bytes_up": int(bytes_up[i]), "bytes_down": int(bytes_down[i]),
                  "bps_up": float(bps_up[i]), "bps_down": float(bps_down[i])} for i in order.tolist()]
        return {"window": "active flows", "count": n, "hosts": hosts, **self._periods(hosts)}

    def _periods(self, hosts: list[dict[str, Any]]) -> dict[str, Any]:
        """Today's and this month's totals per host (added to `hosts`) and the quotas,
        from the controller's meter, read once per command."""
        control = getattr(self.p, "control", None)
        if control is None:
            return {"day": None, "month": None, "quotas": []}
        usage = control.usage(self.clock())
        for host in hosts:
            totals = usage["hosts"].get(host["host"], {})
            for key in ("day_up", "day_down", "month_up", "month_down"):
                host[key] = int(totals.get(key, 0))
        return {"day": usage["day"], "month": usage["month"], "quotas": usage["quotas"]}

    def config_reload(self, args):
        from .config import ConfigError

        try:
            source = self.p.reload_config()
        except ConfigError as exc:
            raise CommandError(messages.E_INVALID,
                               f"configuration refused, the running one is kept: {exc}") from None
        return {"reloaded": True, "source": source}

    def snapshot(self, args):
        snapshot = self.p.stream.flows_snapshot()
        if snapshot is None:
            raise CommandError(messages.E_UNAVAILABLE, "no flows published yet; try again after the first tick")
        return snapshot

    def _policy(self, change: Callable[[], Any], missing: str = "") -> Any:
        try:
            return change()
        except PolicyError as exc:
            raise CommandError(messages.E_INVALID, f"args.{exc}") from None
        except KeyError:
            raise CommandError(messages.E_NOT_FOUND, missing) from None
        except OSError as exc:
            raise CommandError(messages.E_UNAVAILABLE,
                               f"cannot write the state file: {exc.strerror}; the change is not saved") from None


def commands(provider) -> list[Command]:
    """The command table: name, handler, schema, one line of help."""
    h = Handlers(provider)
    return [
        Command("status", h.status, summary="daemon, interfaces, totals and datapath errors"),
        Command("flows", h.flows, summary="active flows, filtered, sorted and limited", args={
            "limit": Arg((int,), low=1, high=MAX_FLOWS),
            "sort": Arg((str,), choices=SORT_KEYS),
            "iface": IFACE,
            "proto": Arg((str,), choices=tuple(kstructs.PROTO_NAMES.values())),
            "host": Arg((str,), max_len=45, doc="an IP address on either side"),
            "class": CLASS_NAME,
        }),
        Command("flow", h.flow, summary="one flow and the rate history kept since it was first asked for",
                args={"id": Arg((str,), required=True, pattern=r"[0-9a-f]{16}", max_len=16)}),
        Command("mptcp", h.mptcp, summary="MPTCP connections and their subflows",
                args={"limit": Arg((int,), low=1, high=MAX_FLOWS)}),
        Command("links", h.links, summary="links with capacity, its source and current rates"),
        Command("classes", h.classes, summary="the class table with live counts"),
        Command("rules.list", h.rules_list, summary="classification rules in match order"),
        Command("rules.add", h.rules_add, summary="add a rule (at the end, or at `position`)", args={
            "rule": NEW_RULE, "position": Arg((int,), low=0, high=MAX_RULES)}),
        Command("rules.update", h.rules_update, summary="change fields of a rule", args={
            "id": Arg((str,), required=True, pattern=RULE_ID.pattern, max_len=64),
            "rule": Arg((dict,), required=True, min_len=1, fields=RULE_FIELDS)}),
        Command("rules.delete", h.rules_delete, summary="delete a rule", args={
            "id": Arg((str,), required=True, pattern=RULE_ID.pattern, max_len=64)}),
        Command("class.set", h.class_set, summary="set a class's priority, min/max Mbit/s or DSCP", args={
            "name": Arg((str,), required=True, pattern=CLASS_NAME.pattern, max_len=32),
            "priority": Arg((int,), low=0, high=3),
            "min_mbit": MBIT,
            "max_mbit": Arg((float, type(None)), low=0.0, high=1_000_000, doc="null: up to the link"),
            "dscp": Arg((int,), low=0, high=63)}),
        Command("link.set", h.link_set, summary="set a link's capacity, or \"auto\" to estimate it", args={
            "name": Arg((str,), required=True, pattern=IFACE.pattern, max_len=15),
            "up_mbit": Arg((float, str), low=0.0, high=1_000_000, max_len=4),
            "down_mbit": Arg((float, str), low=0.0, high=1_000_000, max_len=4)}),
        Command("alerts.list", h.alerts_list, summary="active alerts (or also recently resolved ones)", args={
            "state": Arg((str,), choices=("active", "all")),
            "limit": Arg((int,), low=1, high=1000)}),
        Command("alerts.ack", h.alerts_ack, summary="acknowledge an active alert", args={
            "id": Arg((str,), required=True, min_len=1, max_len=128)}),
        Command("alert_rules.list", h.alert_rules_list, summary="threshold rules of the alert engine"),
        Command("alert_rules.set", h.alert_rules_set, summary="add or change an alert rule (by name)",
                args={"rule": ALERT_RULE}),
        Command("alert_rules.delete", h.alert_rules_delete, summary="delete an alert rule", args={
            "name": Arg((str,), required=True, pattern=r"[a-z0-9][a-z0-9_-]{0,63}", max_len=64)}),
        Command("predict", h.predict, summary="next 1 s and 5 s demand of a class from its recent rates", args={
            "class": Arg((str,), required=True, pattern=CLASS_NAME.pattern, max_len=32),
            "recent_mbps": SAMPLES}),
        Command("predict.batch", h.predict_batch, summary="many predictions in one call", args={
            "requests": Arg((list,), required=True, max_len=1024, items=PREDICT_REQUEST)}),
        Command("allocate", h.allocate, summary="split a link among predicted class demands", args={
            "total_mbit": Arg((float,), required=True, low=0.001, high=1_000_000),
            "demands": Arg((dict,), required=True, max_len=32, key_pattern=CLASS_NAME.pattern,
                           values=MBIT)}),
        Command("history", h.history, summary="a time series kept in memory (totals and links)", args={
            "series": Arg((str,), required=True, max_len=64),
            "start": Arg((float,), low=0, high=1e11, doc="Unix time"),
            "end": Arg((float,), low=0, high=1e11, doc="Unix time"),
            "step": Arg((float,), low=1, high=86_400, doc="seconds per point (mean)")}),
        Command("history.export", h.history_export, summary="the history database for a time range, "
                "as JSON or CSV", args={
            "start": Arg((float,), required=True, low=0, high=1e11, doc="Unix time"),
            "end": Arg((float,), required=True, low=0, high=1e11, doc="Unix time"),
            "format": Arg((str,), choices=("json", "csv")),
            "kinds": Arg((list,), items=Arg((str,), choices=("total", "class", "link", "host", "connection")),
                         max_len=5)}),
        Command("usage", h.usage, summary="traffic per LAN host over the active flows", args={
            "limit": Arg((int,), low=1, high=MAX_FLOWS),
            "sort": Arg((str,), choices=("bytes", "rate"))}),
        Command("config.reload", h.config_reload, summary="re-read the TOML configuration"),
        Command("snapshot", h.snapshot, summary="the full `flows` state as of a stream seq, to resync", args={
            "topic": Arg((str,), choices=("flows",))}),
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def reference(table: dict[str, Command]) -> str:
    """The argument reference of API.md, generated from the schemas (a test keeps them equal)."""
    lines = []
    for name in sorted(table):
        command = table[name]
        lines += [f"#### `{name}`", "", command.summary, ""]
        rows = [(path, arg) for key, spec in command.args.items() for path, arg in spec.walk(key)]
        if rows:
            lines += ["| argument | schema |", "|---|---|"]
            lines += [f"| `{path}` | {_cell(arg.describe())} |" for path, arg in rows]
        else:
            lines.append("No arguments.")
        lines.append("")
    return "\n".join(lines)


def command_table(provider) -> dict[str, Command]:
    """Every command by name, with `commands` (the table describing itself)."""
    table = {c.name: c for c in commands(provider)}

    def listing(args: dict[str, Any]) -> dict[str, Any]:
        return {"commands": {c.name: {"summary": c.summary,
                                      "args": {name: arg.describe() for name, arg in c.args.items()}}
                             for c in table.values()}}
    table["commands"] = Command("commands", listing, summary="every command with its summary and arguments")
    return table


def register(server: ApiServer, provider) -> None:
    for command in command_table(provider).values():
        server.register(command)


if __name__ == "__main__":
    print(reference(command_table(None)), end="")
