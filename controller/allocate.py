"""Per-link allocation: from each class's need to an HTB rate (guarantee) and ceil (limit).

Rules (ARCHITECTURE.md, "Allocation per link"): every class first gets its minimum,
in priority order, while the link has room; priority 3 then gets its need plus 20 %
headroom, priorities 2 and 1 their need, and priority 0 what is left; the sum of
rates never exceeds the link; each class may borrow up to its maximum (ceil), never
above the link.  Pure: numbers in, a plan out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# HTB refuses a zero rate; a class without a guarantee gets this token amount.
FLOOR_MBIT = 0.008
HEADROOM = 0.2
HYSTERESIS = 0.05
# Below this absolute step a rate change is never applied (5 % of a floor is nothing).
MIN_STEP_MBIT = 0.05


@dataclass(frozen=True)
class TrafficClass:
    name: str
    class_id: int            # shared with the datapath: HTB minor = 0x10 + class_id
    priority: int            # 3 = served first ... 0 = gets the rest
    min_mbit: float
    max_mbit: float | None   # None: up to the link
    dscp: int


# The defaults of ARCHITECTURE.md's class table (class ids agreed with the datapath).
DEFAULT_CLASSES: tuple[TrafficClass, ...] = (
    TrafficClass("voice", 1, 3, 0.1, 10.0, 46),
    TrafficClass("video", 2, 3, 5.0, 50.0, 34),
    TrafficClass("interactive", 3, 2, 1.0, None, 0),
    TrafficClass("file", 4, 1, 0.5, 30.0, 10),
    TrafficClass("background", 5, 0, 0.0, 20.0, 8),
)


@dataclass(frozen=True)
class ClassAllocation:
    name: str
    class_id: int
    priority: int
    rate_mbit: float         # guaranteed
    ceil_mbit: float         # may borrow up to this


@dataclass(frozen=True)
class LinkPlan:
    """What one shaped direction of one link should look like."""

    link_mbit: float
    classes: tuple[ClassAllocation, ...]

    def by_name(self) -> dict[str, ClassAllocation]:
        return {c.name: c for c in self.classes}

    @property
    def spare_mbit(self) -> float:
        """What no class is guaranteed (priority 0 classes already took theirs)."""
        return max(0.0, round(self.link_mbit - sum(c.rate_mbit for c in self.classes), 6))


def allocate(link_mbit: float, needs: Mapping[str, float],
             classes: tuple[TrafficClass, ...] = DEFAULT_CLASSES,
             headroom: float = HEADROOM) -> LinkPlan:
    """Rates and ceils for every class on a link of `link_mbit` given each class's need (Mbit/s).

    A class missing from `needs` needs nothing.  Rates never sum above the link;
    if even the minimums do not fit, lower priorities lose theirs first.
    """
    if link_mbit <= 0:
        raise ValueError(f"link_mbit: must be positive, got {link_mbit}")
    order = sorted(classes, key=lambda c: -c.priority)  # stable: table order within a priority
    ceil = {c.name: min(c.max_mbit if c.max_mbit is not None else link_mbit, link_mbit) for c in classes}
    # Every class keeps a token floor so that HTB accepts it; reserve those first.
    rate = {c.name: FLOOR_MBIT for c in classes}
    left = link_mbit - FLOOR_MBIT * len(classes)
    if left < 0:
        raise ValueError(f"link_mbit: {link_mbit} is too small for {len(classes)} classes")

    def grant(name: str, target: float) -> None:
        nonlocal left
        extra = min(max(target, 0.0), ceil[name]) - rate[name]
        if extra > 0:
            extra = min(extra, left)
            rate[name] += extra
            left -= extra

    for c in order:
        grant(c.name, c.min_mbit)
    for c in order:
        if c.priority == 0:
            continue
        need = max(float(needs.get(c.name, 0.0)), 0.0)
        grant(c.name, need * (1.0 + headroom) if c.priority >= 3 else need)
    for c in order:
        if c.priority == 0:
            grant(c.name, ceil[c.name])
    return LinkPlan(link_mbit, tuple(
        ClassAllocation(c.name, c.class_id, c.priority, round(rate[c.name], 6), round(ceil[c.name], 6))
        for c in classes))


def changed(applied: LinkPlan | None, fresh: LinkPlan, hysteresis: float = HYSTERESIS) -> bool:
    """Whether `fresh` differs from the applied plan enough to be worth a kernel change.

    A rate moving by no more than `hysteresis` (relative) is noise: applying it
    would churn the kernel every tick for nothing.  A changed link rate, ceil or
    set of classes always counts.
    """
    if applied is None or applied.link_mbit != fresh.link_mbit:
        return True
    old = applied.by_name()
    if set(old) != {c.name for c in fresh.classes}:
        return True
    for c in fresh.classes:
        before = old[c.name]
        if before.ceil_mbit != c.ceil_mbit or before.priority != c.priority:
            return True
        if abs(c.rate_mbit - before.rate_mbit) > max(hysteresis * before.rate_mbit, MIN_STEP_MBIT):
            return True
    return False
