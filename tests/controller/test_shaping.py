"""The desired HTB tree and its diff against what the kernel reports (no root)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from anabranch.controller.allocate import allocate
from anabranch.controller.shaping import (LEAF_KINDS, ROOT_CLASSID, Tree, classid, desired_tree, diff,
                                          pfifo_limit, show_handle)


def _tree(link=20, needs=None, kind="pfifo"):
    return desired_tree(allocate(link, needs or {}), kind)


def test_classids_follow_the_numbering_shared_with_the_datapath():
    tree = _tree()
    assert [show_handle(c.classid) for c in tree.classes] == ["1:1", "1:11", "1:12", "1:13", "1:14", "1:15"]
    assert [c.name for c in tree.classes] == ["root", "voice", "video", "interactive", "file", "background"]
    assert tree.default_classid == classid(3) == 0x10013
    assert [show_handle(leaf.handle) for leaf in tree.leaves] == ["11:0", "12:0", "13:0", "14:0", "15:0"]


def test_root_is_the_link_and_priority_3_is_htb_prio_0():
    tree = _tree(20)
    root = tree.class_by_id()[ROOT_CLASSID]
    assert root.rate_bps == root.ceil_bps == 20_000_000
    prios = {c.name: c.prio for c in tree.classes}
    assert (prios["voice"], prios["video"], prios["interactive"], prios["file"], prios["background"]) == (0, 0, 1, 2, 3)


def test_pfifo_leaf_is_small_and_other_kinds_keep_their_default():
    assert {leaf.limit for leaf in _tree(kind="fq_codel").leaves} == {None}
    limits = [leaf.limit for leaf in _tree(kind="pfifo").leaves]
    assert all(128 <= limit <= 1000 for limit in limits)
    assert pfifo_limit(20_000_000) == 128   # 50 ms at 20 Mbit/s is fewer packets than the floor
    assert pfifo_limit(100_000_000) == 413  # 50 ms at 100 Mbit/s


def test_unknown_leaf_kind_is_refused():
    with pytest.raises(ValueError, match="leaf_kind"):
        _tree(kind="netem")
    assert "pfifo" in LEAF_KINDS


def test_no_tree_creates_root_classes_then_leaves():
    ops = [c.op for c in diff(_tree(), None)]
    assert ops == ["create-root"] + ["add-class"] * 6 + ["add-leaf"] * 5


def test_identical_tree_needs_nothing():
    assert diff(_tree(), _tree()) == []


def test_a_moved_rate_changes_only_that_class_in_place():
    before = _tree(20, {"voice": 1})
    after = _tree(20, {"voice": 3})
    changes = diff(after, before)
    names = {(c.op, c.node.name) for c in changes}
    # voice grew; background, which takes the rest, shrank; nothing is rebuilt
    assert names == {("change-class", "voice"), ("change-class", "background")}
    assert [c.node.name for c in changes] == ["background", "voice"]  # who gives up rate goes first


def test_a_missing_class_and_leaf_are_added_and_a_stray_removed():
    want = _tree()
    voice = want.class_by_id()[classid(1)]
    stray = replace(voice, classid=0x10099, name="stray")
    have = Tree(want.default_classid, tuple(c for c in want.classes if c is not voice) + (stray,),
                tuple(leaf for leaf in want.leaves if leaf.parent != voice.classid))
    ops = [(c.op, show_handle(c.node.classid if hasattr(c.node, "classid") else c.node.handle))
           for c in diff(want, have)]
    assert ops == [("delete-class", "1:99"), ("add-class", "1:11"), ("add-leaf", "11:0")]


def test_a_different_leaf_kind_is_replaced():
    ops = {c.op for c in diff(_tree(kind="fq_codel"), _tree(kind="pfifo"))}
    assert ops == {"replace-leaf"}


def test_a_different_default_rebuilds_the_root():
    have = replace(_tree(), default_classid=classid(5))
    assert [c.op for c in diff(_tree(), have)][:2] == ["delete-root", "create-root"]


def test_a_new_link_rate_changes_the_root_first():
    changes = diff(_tree(40), _tree(20))
    assert changes[0].op == "change-class" and changes[0].node.classid == ROOT_CLASSID
    assert "create-root" not in {c.op for c in changes}


def _counters(sent, packets, dropped=0, backlog=0):
    return {"sent_bytes": sent, "sent_packets": packets, "dropped": dropped, "backlog_bytes": backlog}


@pytest.mark.parametrize("before, after, dt, expected", [
    (_counters(0, 0), _counters(125_000, 100), 1.0, (1e6, 1e6)),                       # nothing lost
    (_counters(0, 0), _counters(125_000, 100, dropped=100), 1.0, (1e6, 2e6)),          # half dropped
    (_counters(0, 0), _counters(125_000, 100, backlog=12_500), 0.5, (2e6, 2.2e6)),     # queue grew
    (_counters(500, 5), _counters(100, 1), 1.0, (0.0, 0.0)),                           # class re-created
])
def test_class_rates_count_drops_and_queue_growth_as_demand(before, after, dt, expected):
    from anabranch.controller.shaping import class_rates
    assert class_rates(before, after, dt) == pytest.approx(expected)
