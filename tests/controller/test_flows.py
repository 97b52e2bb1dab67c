"""Flow table: ids, rates from monotonic counter deltas, idle flows, top-N."""

import numpy as np

from anabranch.controller.flows import DOWN, UP, FlowRates, flow_ids, locate
from anabranch.daemon import kstructs


def sweep(rows):
    """rows: (lan_port, up_bytes, down_bytes, up_packets, last_seen_ns)"""
    keys = np.zeros(len(rows), dtype=kstructs.FLOW_KEY)
    values = np.zeros(len(rows), dtype=kstructs.FLOW)
    for i, (port, up, down, packets, last) in enumerate(rows):
        keys[i]["ifindex"], keys[i]["family"], keys[i]["proto"] = 4, 4, 6
        keys[i]["lan_port"], keys[i]["remote_port"] = port, 443
        values[i]["dir"]["bytes"] = (up, down)
        values[i]["dir"]["packets"] = (packets, packets)
        values[i]["last_seen_ns"] = last
    return keys, values


def test_ids_are_stable_and_distinct():
    keys, _ = sweep([(p, 0, 0, 0, 0) for p in range(1000, 6000)])
    ids = flow_ids(keys)
    assert len(np.unique(ids)) == len(ids)
    assert np.array_equal(ids, flow_ids(keys.copy()))


def test_locate_finds_present_ids_and_masks_absent_ones():
    ids = np.array([3, 9, 20], dtype=np.uint64)
    pos, found = locate(ids, np.array([20, 1, 9, 25, 3], dtype=np.uint64))
    assert found.tolist() == [True, False, True, False, True]
    assert pos[found].tolist() == [2, 1, 0]
    assert ((pos >= 0) & (pos < len(ids))).all()      # absent ids still index safely
    for empty_set, wanted in ((np.zeros(0, np.uint64), np.array([4], np.uint64)),
                              (ids, np.zeros(0, np.uint64))):
        pos, found = locate(empty_set, wanted)
        assert len(pos) == len(wanted) and not found.any()


def test_rates_come_from_deltas_between_sweeps():
    rates = FlowRates()
    rates.update(*sweep([(1000, 1000, 500, 10, 0)]), now_ns=1_000_000_000)
    table = rates.update(*sweep([(1000, 3000, 1500, 30, 0)]), now_ns=2_000_000_000)
    assert table.bps[0, UP] == 2000 * 8 and table.bps[0, DOWN] == 1000 * 8
    assert table.pps[0, UP] == 20
    assert table.totals()["bytes_up"] == 3000


def test_a_new_flow_counts_everything_since_it_appeared():
    rates = FlowRates()
    rates.update(*sweep([(1000, 10, 0, 1, 0)]), now_ns=0)
    table = rates.update(*sweep([(1000, 10, 0, 1, 0), (2000, 800, 0, 4, 0)]), now_ns=2_000_000_000)
    fresh = table.keys["lan_port"] == 2000
    assert table.bps[fresh, UP][0] == 800 * 8 / 2


def test_a_recreated_flow_never_yields_a_negative_rate():
    rates = FlowRates()
    rates.update(*sweep([(1000, 10_000, 0, 100, 0)]), now_ns=0)
    table = rates.update(*sweep([(1000, 300, 0, 3, 0)]), now_ns=1_000_000_000)
    assert table.bps[0, UP] == 300 * 8


def test_idle_flows_and_top_n():
    rates = FlowRates()
    table = rates.update(*sweep([(1, 10, 0, 1, 0), (2, 90, 0, 1, 9_000_000_000), (3, 50, 0, 1, 0)]),
                         now_ns=10_000_000_000)
    assert table.idle(5_000_000_000).tolist() == [
        p != 2 for p in table.keys["lan_port"].tolist()]
    table = rates.update(*sweep([(1, 20, 0, 1, 0), (2, 990, 0, 1, 0), (3, 550, 0, 1, 0)]),
                         now_ns=11_000_000_000)
    assert table.keys["lan_port"][table.top(2)].tolist() == [2, 3]
