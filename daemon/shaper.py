"""Apply the allocation plan as HTB trees with pyroute2, read them back, and take them away.

Which egress is shaped (`shaped_links`): upload on each WAN port at its
`up_mbit`; download on the LAN port's egress, because the datapath steers a
packet into its class by setting skb->priority at tc *egress*, and an IFB fed
from WAN ingress would take packets away before the datapath sees them (IFB
re-injection skips tc ingress).  A LAN port is shaped at its own `down_mbit`,
or, on a gateway with a single LAN port, at the sum of the WAN links' `down_mbit`.

Each tick: read the tree and its counters back from the kernel, measure what
each class was offered (sent + dropped + queued), take the larger of that and
the predictor's need for the class, allocate (controller.allocate), and when the
plan moved past the hysteresis, diff (controller.shaping) and apply only the
changed classes.  A failed netlink call is logged with the interface and the
class and the previous tree is put back.  Trees we created are recorded in a
ledger under the runtime directory, so a restart adopts them instead of
building a second one, and `--cleanup` finds them after a hard kill.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from anabranch.controller import allocate as allocate_mod
from anabranch.controller.allocate import DEFAULT_CLASSES, LinkPlan, TrafficClass
from anabranch.controller.shaping import (DEFAULT_CLASS_ID, HTB_HANDLE, LEAF_KINDS, ROOT_CLASSID, Change,
                                          ClassNode, LeafNode, Tree, class_rates, classid, desired_tree, diff,
                                          show_handle)

from .tcread import TcReader

log = logging.getLogger(__name__)

TC_H_ROOT = 0xFFFF_FFFF
PROBE_CLASSID = HTB_HANDLE | 0xFFFE   # a short-lived class to try leaf kinds under
PROBE_HANDLE = 0xFFFE_0000
MTU_BYTES = 1600
# Borrowers of one HTB prio share the spare rate by quantum.  HTB's default
# (rate / r2q) would hand a 5 Mbit/s class 50 times a 0.1 Mbit/s class's share
# (a starting voice flow, before its first tick, loses to video); one quantum
# for every class shares the spare evenly and never trips the kernel's
# "quantum is small/big" warnings.
QUANTUM_BYTES = 2 * MTU_BYTES
COUNTERS = ("sent_bytes", "sent_packets", "dropped", "overlimits", "backlog_bytes", "backlog_packets")


class ShapingError(Exception):
    pass


@dataclass(frozen=True)
class ShapedLink:
    """One shaped direction: the interface whose egress carries it and the link it stands for."""

    iface: str
    link: str         # the WAN link(s) whose capacity this is, for people
    direction: str    # "up" or "down"
    link_mbit: float


def shaped_links(config) -> list[ShapedLink]:
    """The egresses to shape, from the configured interfaces' roles and rates."""
    wans = [i for i in config.interfaces if i.role == "wan"]
    lans = [i for i in config.interfaces if i.role == "lan"]
    links = [ShapedLink(w.name, w.name, "up", w.up_mbit) for w in wans if w.up_mbit]
    wan_down = [w for w in wans if w.down_mbit]
    for lan in lans:
        if lan.down_mbit:
            links.append(ShapedLink(lan.name, "+".join(w.name for w in wans) or lan.name, "down",
                                    lan.down_mbit))
        elif len(lans) == 1 and wan_down:
            links.append(ShapedLink(lan.name, "+".join(w.name for w in wan_down), "down",
                                    sum(w.down_mbit for w in wan_down)))
    return links


@dataclass
class ShapingLedger:
    """Interfaces on which this appliance created the HTB root, persisted across restarts."""

    path: Path
    trees: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, path: Path) -> ShapingLedger:
        ledger = cls(path)
        try:
            ledger.trees = set(json.loads(path.read_text()).get("htb_created", []))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ignoring unreadable shaping ledger %s: %s", path, exc)
        return ledger

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"htb_created": sorted(self.trees)}))
        os.replace(tmp, self.path)


@dataclass
class KernelTree:
    """What the kernel reports on one interface: our tree (or None), a foreign root, counters."""

    tree: Tree | None
    foreign_root: str | None                  # "tbf 8001:" when the root is someone else's
    counters: dict[int, dict[str, int]]       # classid -> sent_bytes, sent_packets, dropped, ...


def _class_name(classid: int, classes: tuple[TrafficClass, ...]) -> str:
    if classid == ROOT_CLASSID:
        return "root"
    for c in classes:
        if classid == HTB_HANDLE | (0x10 + c.class_id):
            return c.name
    return f"unknown-{show_handle(classid)}"


def _burst(rate_bps: int) -> int:
    # What tc uses by default: one millisecond at the rate plus a packet.
    return rate_bps // 8 // 1000 + MTU_BYTES


class Shaper:
    """HTB trees on the egress of the shaped interfaces of one network namespace."""

    def __init__(self, links: list[ShapedLink], ledger: ShapingLedger, netns: str | None = None,
                 classes: tuple[TrafficClass, ...] = DEFAULT_CLASSES,
                 hysteresis: float = allocate_mod.HYSTERESIS):
        self.links = links
        self.ledger = ledger
        self.classes = classes
        self.hysteresis = hysteresis
        self._ipr = IPRoute(netns=netns) if netns else IPRoute()  # changes
        self._reader = TcReader(netns)                             # the read-back every tick
        self.leaf_kind: str | None = None
        self.plans: dict[str, LinkPlan] = {}         # iface -> the plan in the kernel
        self.errors: dict[str, str] = {}             # iface -> why it is not shaped as planned
        self.kernel: dict[str, KernelTree] = {}      # iface -> last read-back
        self.class_bps: dict[str, dict[str, float]] = {}          # iface -> class -> sent bit/s
        self.class_offered_bps: dict[str, dict[str, float]] = {}  # ... sent + dropped + queued
        self._last_bytes: dict[str, tuple[float, dict[int, dict[str, int]]]] = {}

    def close(self) -> None:
        self._ipr.close()
        self._reader.close()

    def ifindex(self, name: str) -> int | None:
        try:
            return self._reader.ifindex(name)
        except OSError as exc:
            raise ShapingError(f"interface {name}: looking it up: {exc.strerror}") from exc

    # -- reading the kernel -----------------------------------------------------------
    def read(self, iface: str) -> KernelTree:
        """Our tree on `iface` as the kernel has it, with every class's counters."""
        ifindex = self.ifindex(iface)
        if ifindex is None:
            raise ShapingError(f"interface {iface}: not found")
        try:
            qdiscs = self._reader.qdiscs(ifindex)
        except OSError as exc:
            raise ShapingError(f"interface {iface}: reading its qdiscs: {exc.strerror}") from exc
        root = None
        leaves = []
        for q in qdiscs:
            if q.parent == TC_H_ROOT:
                root = q
            elif q.parent >> 16 == HTB_HANDLE >> 16:
                leaves.append(LeafNode(q.handle, q.parent, q.kind, q.options.get("limit")))
        if root is None or root.handle == 0:
            return KernelTree(None, None, {})  # the kernel's default qdisc: nobody's tree
        defcls = root.options.get("defcls")
        if root.kind != "htb" or root.handle != HTB_HANDLE or defcls is None:
            return KernelTree(None, f"{root.kind} {show_handle(root.handle)}", {})
        if iface not in self.ledger.trees:
            # An HTB 1: on a shaped port with our default class is a tree an earlier
            # instance built but whose ledger was lost (runtime directory cleared).
            if defcls != classid(DEFAULT_CLASS_ID) & 0xFFFF:
                return KernelTree(None, f"htb 1: (default {defcls:x})", {})
            log.info("adopting the anabranch HTB tree on %s (not in the ledger)", iface)
            self.ledger.trees.add(iface)
            self.ledger.save()
        try:
            dumped = self._reader.classes(ifindex)
        except OSError as exc:
            raise ShapingError(f"interface {iface}: reading its classes: {exc.strerror}") from exc
        classes = []
        counters = {}
        for c in dumped:
            if c.kind != "htb" or "rate_Bps" not in c.options:
                continue
            classes.append(ClassNode(c.handle, c.parent if c.parent != TC_H_ROOT else HTB_HANDLE,
                                     _class_name(c.handle, self.classes), c.options["rate_Bps"] * 8,
                                     c.options["ceil_Bps"] * 8, c.options["prio"]))
            counters[c.handle] = {key: c.counters.get(key, 0) for key in COUNTERS}
        classes.sort(key=lambda c: (c.classid != ROOT_CLASSID, c.classid))
        known = {c.classid for c in classes}
        tree = Tree(HTB_HANDLE | defcls, tuple(classes),
                    tuple(sorted((leaf for leaf in leaves if leaf.parent in known), key=lambda l: l.parent)))
        return KernelTree(tree, None, counters)

    # -- changing the kernel ------------------------------------------------------------
    def _do(self, ifindex: int, change: Change) -> None:
        node = change.node
        if change.op == "create-root":
            self._ipr.tc("replace", "htb", ifindex, HTB_HANDLE, default=change.default_classid & 0xFFFF)
        elif change.op == "delete-root":
            self._ipr.tc("del", "htb", ifindex, HTB_HANDLE, parent=TC_H_ROOT)
        elif change.op in ("add-class", "change-class"):
            self._ipr.tc(change.op, "htb", ifindex, node.classid, parent=node.parent,
                         rate=node.rate_bps // 8, ceil=node.ceil_bps // 8, prio=node.prio,
                         burst=_burst(node.rate_bps), cburst=_burst(node.ceil_bps),
                         quantum=QUANTUM_BYTES)
        elif change.op == "delete-class":
            self._delete_class(ifindex, node.classid, node.parent)
        elif change.op in ("add-leaf", "replace-leaf"):
            extra = {"limit": node.limit} if node.limit is not None else {}
            self._ipr.tc("add" if change.op == "add-leaf" else "replace", node.kind, ifindex, node.handle,
                         parent=node.parent, **extra)
        elif change.op == "delete-leaf":
            self._ipr.tc("del", node.kind, ifindex, node.handle, parent=node.parent)
        else:
            raise ValueError(f"unknown change {change.op!r}")

    def _delete_class(self, ifindex: int, classid: int, parent: int) -> None:
        # pyroute2 encodes HTB parameters even for a deletion, so it needs a rate.
        self._ipr.tc("del-class", "htb", ifindex, classid, parent=parent, rate=1000, ceil=1000)

    def _apply_changes(self, iface: str, ifindex: int, changes: list[Change]) -> str | None:
        """Apply in order; stop at the first failure and return its description."""
        for change in changes:
            try:
                self._do(ifindex, change)
            except NetlinkError as exc:
                return f"interface {iface}: {change.describe()}: {os.strerror(exc.code)}"
            if change.op == "create-root":
                self.ledger.trees.add(iface)
                self.ledger.save()
            elif change.op == "delete-root":
                self.ledger.trees.discard(iface)
                self.ledger.save()
        return None

    def probe_leaf_kind(self, ifindex: int) -> str:
        """The first of LEAF_KINDS this kernel has, tried under a short-lived class of our HTB."""
        self._ipr.tc("add-class", "htb", ifindex, PROBE_CLASSID, parent=HTB_HANDLE,
                     rate=1000, ceil=1000, burst=MTU_BYTES, cburst=MTU_BYTES, quantum=QUANTUM_BYTES)
        try:
            for kind in LEAF_KINDS:
                try:
                    self._ipr.tc("add", kind, ifindex, PROBE_HANDLE, parent=PROBE_CLASSID,
                                 **({"limit": 10} if kind == "pfifo" else {}))
                except (NetlinkError, ValueError, KeyError, TypeError) as exc:
                    log.debug("leaf qdisc %s unavailable: %s", kind, exc)
                    continue
                self._ipr.tc("del", kind, ifindex, PROBE_HANDLE, parent=PROBE_CLASSID)
                log.info("leaf qdisc: %s (first available of %s)", kind, ", ".join(LEAF_KINDS))
                return kind
        finally:
            self._delete_class(ifindex, PROBE_CLASSID, HTB_HANDLE)
        raise ShapingError("no leaf qdisc available (tried " + ", ".join(LEAF_KINDS) + ")")

    def apply(self, link: ShapedLink, plan: LinkPlan) -> bool:
        """Make the kernel's tree on `link.iface` implement `plan`; True when it does."""
        iface = link.iface
        try:
            ifindex = self.ifindex(iface)
            if ifindex is None:
                raise ShapingError(f"interface {iface}: not found")
            current = self.read(iface)
            if current.foreign_root is not None:
                raise ShapingError(f"interface {iface}: root qdisc {current.foreign_root} was not created by "
                                   f"anabranch; remove it (tc qdisc del dev {iface} root) to shape this link")
            if current.tree is None:
                failure = self._apply_changes(iface, ifindex, [Change("create-root",
                                                                      default_classid=classid(DEFAULT_CLASS_ID))])
                if failure:
                    raise ShapingError(failure)
                current = self.read(iface)
            if self.leaf_kind is None:
                self.leaf_kind = self.probe_leaf_kind(ifindex)
        except (ShapingError, NetlinkError) as exc:
            message = str(exc) if isinstance(exc, ShapingError) else \
                f"interface {iface}: reading or creating the HTB root: {os.strerror(exc.code)}"
            self._fail(iface, message)
            return False
        want = desired_tree(plan, self.leaf_kind)
        changes = diff(want, current.tree)
        failure = self._apply_changes(iface, ifindex, changes)
        if failure is None:
            if changes:
                log.info("shaping %s (%s %s, %.1f Mbit/s): %d change(s)", iface, link.link, link.direction,
                         plan.link_mbit, len(changes))
            self.plans[iface] = plan
            self.errors.pop(iface, None)
            return True
        self._fail(iface, failure)
        previous = self.plans.get(iface)
        if previous is not None:
            try:
                back = diff(desired_tree(previous, self.leaf_kind), self.read(iface).tree)
            except (ShapingError, NetlinkError):
                back = None
            rollback_failure = self._apply_changes(iface, ifindex, back) if back else None
            if rollback_failure:
                log.error("restoring the previous tree: %s", rollback_failure)
        return False

    def _fail(self, iface: str, message: str) -> None:
        if self.errors.get(iface) != message:  # once per new problem, not every tick
            log.error("%s; keeping the previous tree", message)
        self.errors[iface] = message

    def remove(self, iface: str) -> list[str]:
        """Delete our tree on `iface` (the kernel puts its default qdisc back)."""
        failures = []
        try:
            ifindex = self.ifindex(iface)
            # read() also recognises a tree of ours whose ledger entry was lost.
            if ifindex is not None and self.read(iface).tree is not None:
                self._ipr.tc("del", "htb", ifindex, HTB_HANDLE, parent=TC_H_ROOT)
        except NetlinkError as exc:
            if exc.code not in (errno.ENOENT, errno.EINVAL):
                failures.append(f"interface {iface}: removing the HTB tree: {os.strerror(exc.code)}")
        except ShapingError as exc:
            failures.append(str(exc))
        self.ledger.trees.discard(iface)
        self.ledger.save()
        self.plans.pop(iface, None)
        self._last_bytes.pop(iface, None)
        for failure in failures:
            log.error("%s", failure)
        return failures

    def stop(self, on_stop: str) -> list[str]:
        """`on_stop` "remove": delete every tree; "keep": leave shaping in place for the next start."""
        failures = []
        if on_stop == "remove":
            for name in sorted({link.iface for link in self.links} | self.ledger.trees):
                failures += self.remove(name)
        else:
            log.info("keeping the HTB trees on %s (on_stop = \"keep\")", ", ".join(sorted(self.ledger.trees)))
        return failures

    # -- the tick ---------------------------------------------------------------------
    def measure(self, iface: str, now_s: float) -> dict[str, float]:
        """Read back `iface`; return each class's offered rate (bit/s) since the last call."""
        kernel = self.read(iface)
        self.kernel[iface] = kernel
        offered: dict[str, float] = {}
        sent: dict[str, float] = {}
        last = self._last_bytes.get(iface)
        if last is not None and kernel.tree is not None and now_s > last[0]:
            names = {c.classid: c.name for c in kernel.tree.classes}
            for cid, counters in kernel.counters.items():
                if cid in last[1]:
                    sent[names[cid]], offered[names[cid]] = class_rates(last[1][cid], counters, now_s - last[0])
        self._last_bytes[iface] = (now_s, kernel.counters)
        self.class_bps[iface] = sent
        self.class_offered_bps[iface] = offered
        return offered

    def tick(self, now_s: float, needs_mbit: dict[str, dict[str, float]] | None = None) -> None:
        """One allocation round.  A class's need is its offered rate, or the predictor's
        figure from `needs_mbit` (iface -> class -> Mbit/s) when that is higher."""
        for link in self.links:
            try:
                measured = self.measure(link.iface, now_s)
            except (ShapingError, NetlinkError) as exc:
                self._fail(link.iface, str(exc))
                continue
            # Plan for what each class offers now or is predicted to, whichever is more:
            # a flow that just started has no history the prediction could follow yet.
            predicted = (needs_mbit or {}).get(link.iface) or {}
            needs = {n: max(bps / 1e6, predicted.get(n, 0.0)) for n, bps in measured.items()}
            needs.update({n: v for n, v in predicted.items() if n not in needs})
            try:
                plan = allocate_mod.allocate(link.link_mbit, needs, self.classes)
            except ValueError as exc:
                self._fail(link.iface, f"interface {link.iface}: {exc}")
                continue
            applied = self.plans.get(link.iface)
            kernel = self.kernel[link.iface]
            if applied is not None and not allocate_mod.changed(applied, plan, self.hysteresis):
                plan = applied
                # Unchanged plan: act only if the kernel drifted (someone edited or deleted the tree).
                if kernel.tree is not None and self.leaf_kind is not None and \
                        not diff(desired_tree(plan, self.leaf_kind), kernel.tree):
                    continue
            self.apply(link, plan)

    # -- what is published ---------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The plan and the kernel's view of every class, for `state.shaping` and `classes`."""
        links = []
        for link in self.links:
            plan = self.plans.get(link.iface)
            kernel = self.kernel.get(link.iface)
            planned = plan.by_name() if plan else {}
            rows = []
            if kernel is not None and kernel.tree is not None:
                for node in kernel.tree.classes:
                    counters = kernel.counters.get(node.classid, {})
                    alloc = planned.get(node.name)
                    rows.append({
                        "name": node.name, "classid": show_handle(node.classid),
                        "priority": alloc.priority if alloc else None, "htb_prio": node.prio,
                        "plan_rate_mbit": alloc.rate_mbit if alloc else (plan.link_mbit if plan else None),
                        "plan_ceil_mbit": alloc.ceil_mbit if alloc else (plan.link_mbit if plan else None),
                        "rate_bps": node.rate_bps, "ceil_bps": node.ceil_bps,
                        "measured_bps": self.class_bps.get(link.iface, {}).get(node.name, 0.0),
                        "offered_bps": self.class_offered_bps.get(link.iface, {}).get(node.name, 0.0),
                        **counters,
                    })
            links.append({"iface": link.iface, "link": link.link, "direction": link.direction,
                          "link_mbit": link.link_mbit, "shaped": plan is not None and link.iface not in self.errors,
                          "error": self.errors.get(link.iface), "classes": rows})
        return {"leaf_qdisc": self.leaf_kind, "hysteresis": self.hysteresis, "links": links}


def classes_command(shaper_of) -> Any:
    """The `classes` command: the plan and each class's kernel counters, per shaped link.

    `shaper_of` returns the daemon's Shaper (or None before start-up)."""
    from anabranch.client import messages

    from .server import Command, CommandError

    def handler(args: dict[str, Any]) -> dict[str, Any]:
        shaper = shaper_of()
        if shaper is None:
            raise CommandError(messages.E_UNAVAILABLE, "shaping has not started; try again in a second")
        return shaper.snapshot()

    return Command("classes", handler, summary="shaping plan and per-class rate/ceil/sent/dropped/overlimits")
