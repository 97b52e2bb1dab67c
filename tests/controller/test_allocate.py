"""Allocation: tables of links and needs -> rates and ceils."""

from __future__ import annotations

import pytest

from anabranch.controller.allocate import (DEFAULT_CLASSES, FLOOR_MBIT, LinkPlan, ClassAllocation,
                                           allocate, changed)

NAMES = [c.name for c in DEFAULT_CLASSES]

# link, needs -> expected rates (voice, video, interactive, file, background), rounded to 0.01
CASES = [
    # idle link: minimums, and background takes the rest
    (20, {}, (0.1, 5.0, 1.0, 0.5, 13.4)),
    # voice and video get their need plus 20 %; interactive and file their need
    (100, {"voice": 1, "video": 10, "interactive": 20, "file": 30},
     (1.2, 12.0, 20.0, 30.0, 20.0)),
    # priority 3 below its minimum keeps the minimum
    (50, {"video": 2}, (0.1, 5.0, 1.0, 0.5, 20.0)),
    # a saturated link: priority 3 first, then 2, then 1; background keeps only its floor
    (20, {"voice": 2, "video": 10, "interactive": 10, "file": 10},
     (2.4, 12.0, 5.09, 0.5, 0.01)),
    # a need above the class maximum is capped at the maximum (voice max 10)
    (100, {"voice": 50}, (10.0, 5.0, 1.0, 0.5, 20.0)),
    # the link smaller than the sum of minimums: lower priorities lose theirs
    (4, {}, (0.1, 3.87, 0.01, 0.01, 0.01)),
    # a negative need (a counter glitch) counts as none
    (20, {"file": -5}, (0.1, 5.0, 1.0, 0.5, 13.4)),
]


@pytest.mark.parametrize("link, needs, expected", CASES)
def test_allocate_follows_priority_headroom_and_limits(link, needs, expected):
    plan = allocate(link, needs)
    rates = tuple(round(plan.by_name()[n].rate_mbit, 2) for n in NAMES)
    assert rates == pytest.approx(expected, abs=0.011)


@pytest.mark.parametrize("link", [1, 4, 20, 100, 1000])
@pytest.mark.parametrize("needs", [{}, {"voice": 100, "video": 100, "interactive": 1000, "file": 1000,
                                        "background": 1000}, {"file": 3}])
def test_rates_never_sum_above_the_link_and_ceils_never_exceed_it(link, needs):
    plan = allocate(link, needs)
    assert sum(c.rate_mbit for c in plan.classes) <= link + 1e-6
    for c in plan.classes:
        assert FLOOR_MBIT <= c.rate_mbit <= c.ceil_mbit <= link


@pytest.mark.parametrize("link, expected_ceils", [
    (20, (10, 20, 20, 20, 20)),
    (100, (10, 50, 100, 30, 20)),
])
def test_ceil_is_the_class_maximum_capped_at_the_link(link, expected_ceils):
    plan = allocate(link, {})
    assert tuple(plan.by_name()[n].ceil_mbit for n in NAMES) == expected_ceils


def test_a_link_too_small_for_the_floors_is_an_error():
    with pytest.raises(ValueError, match="too small"):
        allocate(0.01, {})


def _plan(rates, link=20.0):
    return LinkPlan(link, tuple(ClassAllocation(c.name, c.class_id, c.priority, r, 10.0)
                                for c, r in zip(DEFAULT_CLASSES, rates)))


@pytest.mark.parametrize("before, after, link_after, expected", [
    (None, (1, 5, 1, 1, 1), 20.0, True),                     # nothing applied yet
    ((1, 5, 1, 1, 1), (1, 5, 1, 1, 1), 20.0, False),         # identical
    ((1, 5, 1, 1, 1), (1.04, 5.2, 1, 1, 1), 20.0, False),    # within 5 %
    ((1, 5, 1, 1, 1), (1.2, 5, 1, 1, 1), 20.0, True),        # voice moved 20 %
    ((1, 5, 1, 1, 1), (1, 5, 1, 1, 1), 30.0, True),          # the link changed
    ((0.01, 5, 1, 1, 1), (0.02, 5, 1, 1, 1), 20.0, False),   # a tiny absolute step
])
def test_changed_applies_hysteresis(before, after, link_after, expected):
    applied = _plan(before) if before is not None else None
    assert changed(applied, _plan(after, link_after)) is expected
