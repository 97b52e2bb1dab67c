"""The desired HTB tree of a shaped interface, and the minimal changes from what the kernel has.

Numbering is shared with the datapath, which steers packets by setting
skb->priority to a class's classid (HTB then needs no filters): HTB handle 1:,
root class 1:1, one class 1:(0x10 + class id) per traffic class, `interactive`
(1:13) as HTB's default.  Each class has one leaf qdisc with handle
(0x10 + class id):.  Pure: the daemon reads the kernel into a `Tree`, asks
`diff()` what to do, and does it (daemon/shaper.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from .allocate import LinkPlan

HTB_HANDLE = 0x0001_0000
ROOT_CLASSID = 0x0001_0001
DEFAULT_CLASS_ID = 3  # interactive: what nobody marked
# Leaf qdiscs in order of preference; the daemon probes which the kernel has.
LEAF_KINDS = ("cake", "fq_codel", "sfq", "pfifo")
# A pfifo leaf holds about this long at the class's ceil (a small buffer, not a bloat).
PFIFO_HOLD_S = 0.05
# pfifo counts packets, not bytes: the floor absorbs a burst of small real-time
# packets (128 voice packets of 200 bytes are 20 kB, a few ms at the ceil).
PFIFO_LIMITS = (128, 1000)
WIRE_PACKET_BYTES = 1514


def classid(class_id: int) -> int:
    """HTB classid (major 1) of a traffic class id: voice 1 -> 1:11 (0x10011)."""
    return HTB_HANDLE | (0x10 + class_id)


def leaf_handle(class_id: int) -> int:
    return (0x10 + class_id) << 16


def show_handle(handle: int) -> str:
    """tc's notation: 0x10011 -> "1:11"."""
    return f"{handle >> 16:x}:{handle & 0xFFFF:x}"


def htb_prio(priority: int) -> int:
    """HTB serves prio 0 first; our priority 3 is served first."""
    return max(0, min(7, 3 - priority))


def _bps(mbit: float) -> int:
    # The kernel keeps rates in bytes/s: round to whole bytes so read-back compares equal.
    return int(round(mbit * 1e6 / 8)) * 8


@dataclass(frozen=True)
class ClassNode:
    classid: int
    parent: int
    name: str
    rate_bps: int   # bit/s, a multiple of 8
    ceil_bps: int
    prio: int       # HTB prio (0 first)


@dataclass(frozen=True)
class LeafNode:
    handle: int
    parent: int     # the classid it hangs under
    kind: str
    limit: int | None = None  # packets (pfifo only); None = the kind's default


@dataclass(frozen=True)
class Tree:
    default_classid: int
    classes: tuple[ClassNode, ...]   # the root class first
    leaves: tuple[LeafNode, ...]

    def class_by_id(self) -> dict[int, ClassNode]:
        return {c.classid: c for c in self.classes}

    def leaf_by_parent(self) -> dict[int, LeafNode]:
        return {leaf.parent: leaf for leaf in self.leaves}


def pfifo_limit(ceil_bps: int) -> int:
    packets = round(ceil_bps / 8 * PFIFO_HOLD_S / WIRE_PACKET_BYTES)
    return max(PFIFO_LIMITS[0], min(PFIFO_LIMITS[1], packets))


def desired_tree(plan: LinkPlan, leaf_kind: str) -> Tree:
    """The HTB tree that implements `plan`, with `leaf_kind` under every class."""
    if leaf_kind not in LEAF_KINDS:
        raise ValueError(f"leaf_kind: one of {', '.join(LEAF_KINDS)}, got {leaf_kind!r}")
    link = _bps(plan.link_mbit)
    classes = [ClassNode(ROOT_CLASSID, HTB_HANDLE, "root", link, link, 0)]
    leaves = []
    for c in sorted(plan.classes, key=lambda c: c.class_id):
        node = ClassNode(classid(c.class_id), ROOT_CLASSID, c.name,
                         _bps(c.rate_mbit), min(_bps(c.ceil_mbit), link), htb_prio(c.priority))
        classes.append(node)
        leaves.append(LeafNode(leaf_handle(c.class_id), node.classid, leaf_kind,
                               pfifo_limit(node.ceil_bps) if leaf_kind == "pfifo" else None))
    return Tree(classid(DEFAULT_CLASS_ID), tuple(classes), tuple(leaves))


@dataclass(frozen=True)
class Change:
    """One kernel operation.  `op` is one of: create-root, delete-root, add-class,
    change-class, delete-class, add-leaf, replace-leaf, delete-leaf."""

    op: str
    node: ClassNode | LeafNode | None = None
    default_classid: int = 0

    def describe(self) -> str:
        node = self.node
        if node is None:
            return self.op
        if isinstance(node, ClassNode):
            return (f"{self.op} {node.name} {show_handle(node.classid)} rate {node.rate_bps} "
                    f"ceil {node.ceil_bps} prio {node.prio}")
        return f"{self.op} {node.kind} {show_handle(node.handle)} under {show_handle(node.parent)}"


def diff(desired: Tree, actual: Tree | None) -> list[Change]:
    """The changes that turn `actual` (as read from the kernel, None = no tree of
    ours) into `desired`: a class whose numbers moved is changed in place, never
    rebuilt; only a different HTB default forces a new root."""
    changes: list[Change] = []
    if actual is not None and actual.default_classid != desired.default_classid:
        changes.append(Change("delete-root"))
        actual = None
    if actual is None:
        changes.append(Change("create-root", default_classid=desired.default_classid))
        changes += [Change("add-class", c) for c in desired.classes]
        changes += [Change("add-leaf", leaf) for leaf in desired.leaves]
        return changes

    have = actual.class_by_id()
    want = desired.class_by_id()
    have_leaf = actual.leaf_by_parent()
    want_leaf = desired.leaf_by_parent()
    # Removals first (leaves before their classes, children before parents):
    # they free rate that the additions below may need.
    for leaf in actual.leaves:
        if leaf.parent not in want_leaf and leaf.parent in have:
            changes.append(Change("delete-leaf", leaf))
    for c in reversed(actual.classes):
        if c.classid not in want:
            changes.append(Change("delete-class", c))
    # Classes giving up rate before those taking it, so that the sum of children's
    # rates stays within the parent at every step.
    updates = []
    for c in desired.classes:
        old = have.get(c.classid)
        if old is None:
            updates.append((1, Change("add-class", c)))
        elif (old.rate_bps, old.ceil_bps, old.prio, old.parent) != (c.rate_bps, c.ceil_bps, c.prio, c.parent):
            order = -1 if c.classid == ROOT_CLASSID and c.rate_bps > old.rate_bps else \
                (0 if c.rate_bps <= old.rate_bps else 1)
            updates.append((order, Change("change-class", c)))
    changes += [change for _, change in sorted(updates, key=lambda u: u[0])]
    for leaf in desired.leaves:
        old_leaf = have_leaf.get(leaf.parent)
        if old_leaf is None:
            changes.append(Change("add-leaf", leaf))
        elif old_leaf != leaf:
            changes.append(Change("replace-leaf", leaf))
    return changes


def class_rates(before: dict[str, int], after: dict[str, int], dt_s: float) -> tuple[float, float]:
    """(sent, offered) bit/s of one class between two readings of its kernel counters.

    What a class *sent* understates the need of a class held below its demand;
    what it was *offered* also counts what it dropped (at its average packet size)
    and what it queued, so a starved class gets its full need at the next tick
    instead of growing by the headroom each tick."""
    sent = after["sent_bytes"] - before["sent_bytes"]
    if dt_s <= 0 or sent < 0 or after["dropped"] < before["dropped"]:
        return 0.0, 0.0  # counters restarted (the class was re-created)
    packets = max(after["sent_packets"] - before["sent_packets"], 1)
    dropped_bytes = (after["dropped"] - before["dropped"]) * (sent / packets if sent else WIRE_PACKET_BYTES)
    queued = max(after["backlog_bytes"] - before["backlog_bytes"], 0)
    return sent * 8 / dt_s, (sent + dropped_bytes + queued) * 8 / dt_s
