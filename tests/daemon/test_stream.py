"""The state stream over a real PUB socket: every topic, flow deltas, gap detection and resync."""

from __future__ import annotations

import time

import numpy as np
import pytest

from anabranch.client import FlowMirror, Subscriber, messages


@pytest.fixture
def subscriber(served):
    sub = Subscriber(served.events, rcvhwm=10_000)
    # A SUB joins asynchronously: tick until the first message shows it is connected.
    deadline = time.monotonic() + 5
    while sub.receive(timeout_s=0.05) is None:
        assert time.monotonic() < deadline, "subscriber never connected"
        served.tick()
    while sub.receive(timeout_s=0.05) is not None:
        pass
    yield sub
    sub.close()


def _drain(sub: Subscriber) -> list[tuple[str, dict]]:
    items = []
    while (item := sub.receive(timeout_s=0.1)) is not None:
        items.append(item)
    return items


def test_every_topic_carries_version_type_seq_and_ts(served, subscriber):
    served.tick()
    items = _drain(subscriber)
    assert {topic for topic, _ in items} == {"state", "flows", "links", "classes", "mptcp", "predictions"}
    for topic, message in items:
        assert message["v"] == messages.SCHEMA_VERSION and message["type"] == topic
        assert isinstance(message["seq"], int) and isinstance(message["ts"], float)


def test_topic_sequence_numbers_grow_by_one(served, subscriber):
    for _ in range(3):
        served.tick()
    seqs = [m["seq"] for topic, m in _drain(subscriber) if topic == "state"]
    assert seqs == list(range(seqs[0], seqs[0] + 3))


def test_deltas_rebuild_exactly_what_a_snapshot_holds(served, subscriber):
    mirror = FlowMirror()
    mirror.resync(served.client)
    for seed in range(12):  # crosses a periodic snapshot
        served.tick(seed=seed + 10, moving=0.2)
        for topic, message in _drain(subscriber):
            if topic == "flows":
                assert mirror.apply(message)
    snapshot = served.call("snapshot", topic="flows")
    assert mirror.seq == snapshot["seq"]
    assert mirror.flows == {f["id"]: f for f in snapshot["flows"]}
    assert mirror.count == 200 and mirror.gaps == 0


def test_deltas_carry_only_changed_flows(served, subscriber):
    served.tick(moving=0.0)  # every flow idle: the ones that were moving drop to zero
    served.tick(moving=0.0)  # nothing changes at all
    flows = [m for topic, m in _drain(subscriber) if topic == "flows" and not m["snapshot"]]
    assert flows[-1]["upserts"] == [] and flows[-1]["removed"] == []
    served.tick(moving=0.05, seed=5)
    delta = next(m for topic, m in _drain(subscriber) if topic == "flows")
    assert 0 < len(delta["upserts"]) < 30 and all(f["bps_up"] + f["bps_down"] > 0 for f in delta["upserts"])


def test_a_flow_that_stops_is_sent_once_more_with_zero_rate(served, subscriber):
    mirror = FlowMirror()
    mirror.resync(served.client)
    served.tick(moving=1.0, seed=3)
    served.tick(moving=0.0)
    for topic, message in _drain(subscriber):
        if topic == "flows":
            mirror.apply(message)
    assert all(f["bps_up"] == 0 and f["bps_down"] == 0 for f in mirror.flows.values())


def test_flows_that_end_are_removed(served, subscriber):
    mirror = FlowMirror()
    mirror.resync(served.client)
    with served.lock:
        served.daemon.keys = served.daemon.keys[:150]
        served.daemon.values = served.daemon.values[:150]
    served.tick()
    delta = next(m for topic, m in _drain(subscriber) if topic == "flows")
    assert len(delta["removed"]) == 50 and delta["count"] == 150
    assert mirror.apply(delta) and len(mirror.flows) == 150


def test_a_lost_message_is_detected_and_a_snapshot_resyncs(served, subscriber):
    mirror = FlowMirror()
    mirror.resync(served.client)
    served.tick(seed=1)
    served.tick(seed=2)
    deltas = [m for topic, m in _drain(subscriber) if topic == "flows"]
    assert not deltas[0]["snapshot"] and not deltas[1]["snapshot"]
    assert mirror.apply(deltas[1]) is False  # deltas[0] "lost" on the way
    assert not mirror.in_sync and mirror.gaps == 1
    mirror.resync(served.client)
    assert mirror.in_sync and mirror.seq == deltas[1]["seq"]
    served.tick(seed=3)
    assert all(mirror.apply(m) for topic, m in _drain(subscriber) if topic == "flows")
    assert mirror.flows == {f["id"]: f for f in served.call("snapshot")["flows"]}


def test_a_mirror_joining_between_snapshots_waits_for_one(served, subscriber):
    mirror = FlowMirror()
    for seed in range(served.daemon.stream.snapshot_every + 1):
        served.tick(seed=seed)
    results = [(m["snapshot"], mirror.apply(m)) for topic, m in _drain(subscriber) if topic == "flows"]
    first_snapshot = next(i for i, (snap, _) in enumerate(results) if snap)
    assert all(ok is False for _, ok in results[:first_snapshot])
    assert all(ok for _, ok in results[first_snapshot:])


def test_the_flows_topic_lists_at_most_publish_flows(tmp_path, make_served):
    api = make_served(tmp_path, flows=300, publish_flows=20)
    sub = Subscriber(api.events, topics=("flows",))
    try:
        message = None
        deadline = time.monotonic() + 5
        while message is None or not message["snapshot"]:
            assert time.monotonic() < deadline
            api.tick(moving=0.5)
            item = sub.receive(timeout_s=0.1)
            message = item[1] if item else None
        assert message["count"] == 300 and len(message["flows"]) == 20
        rates = sorted(f["bps_up"] + f["bps_down"] for f in message["flows"])
        table = api.daemon.table
        assert rates[0] >= np.sort(table.bps.sum(axis=1))[-20] - 1e-6
    finally:
        sub.close()
        api.close()


def test_alerts_are_published_as_they_are_raised_acknowledged_and_resolved(served, subscriber):
    with served.lock:
        served.daemon.alerts.raise_alert("a1", "link-saturated", "warning", "wan0 full", now=5.0)
    served.call("alerts.ack", id="a1")
    with served.lock:
        served.daemon.alerts.resolve("a1", now=6.0)
    events = [(m["event"], m["alert"]["state"]) for topic, m in _drain(subscriber) if topic == "alerts"]
    assert events == [("raise", "active"), ("ack", "active"), ("resolve", "resolved")]
