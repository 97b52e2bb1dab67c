"""The relay over real ZeroMQ sockets: latest message per topic, reachability, fan-out."""

from __future__ import annotations

import json
import time

import pytest
import zmq

import webui_harness as harness
from anabranch.client import messages
from anabranch.webui.relay import Relay


def wait_for(condition, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def endpoint(short_tmp):
    return f"ipc://{short_tmp}/events.sock"


@pytest.fixture
def relay(endpoint):
    relay = Relay(endpoint, tick_s=0.1)
    relay.start()
    yield relay
    relay.stop()


def test_relay_keeps_the_latest_state_and_flows(endpoint, relay):
    with harness.StreamPublisher(endpoint, tick_s=0.05) as publisher:
        wait_for(lambda: (relay.latest("flows") or {}).get("seq", 0) >= 3)
        state = relay.latest("state")
        assert state["type"] == "state" and state["daemon"]["tick_s"] == 0.05
        assert relay.latest("flows")["count"] == publisher.flow_count
        assert relay.reachable is True
        assert relay.status()["state"]["seq"] == state["seq"]


def test_changes_hands_out_only_frames_newer_than_those_seen(endpoint, relay):
    with harness.StreamPublisher(endpoint, tick_s=0.05):
        seen: dict[str, int] = {}
        first = relay.changes(seen, timeout_s=5)
        while {key for key, _ in first} != {"daemon", "state", "flows"}:
            first += relay.changes(seen, timeout_s=5)
        assert [json.loads(f.text)["type"] for _, f in first][:1] == ["daemon"]
        before = dict(seen)
        later = relay.changes(seen, timeout_s=5)
        assert later and all(frame.version > before[key] for key, frame in later)
        assert {key for key, _ in later} <= {"state", "flows"}  # reachability did not change


def test_daemon_is_unreachable_after_three_silent_ticks_and_reachable_again(endpoint, relay):
    with harness.StreamPublisher(endpoint, tick_s=0.1) as publisher:
        wait_for(lambda: relay.reachable is True)
        publisher.pause()
        paused_at = time.monotonic()
        wait_for(lambda: relay.reachable is False)
        # Not before 3 ticks of silence (0.3 s); the first check may come a poll later.
        assert time.monotonic() - paused_at >= 0.3
        assert relay.latest("state") is not None  # the last data is kept for the page
        publisher.resume()
        wait_for(lambda: relay.reachable is True)


def test_daemon_that_never_spoke_is_unreachable_after_three_ticks(relay):
    assert relay.reachable is None
    wait_for(lambda: relay.reachable is False, timeout_s=3)
    assert relay.status()["daemon"]["reachable"] is False and relay.status()["state"] is None


def test_browsers_get_only_the_busiest_flows(endpoint):
    relay = Relay(endpoint, tick_s=0.1, live_flows=5)
    relay.start()
    try:
        with harness.StreamPublisher(endpoint, tick_s=0.05, flow_count=30):
            flows = wait_for(lambda: relay.latest("flows"))
    finally:
        relay.stop()
    assert flows["count"] == 30 and len(flows["flows"]) == 5
    rates = [f["bps_up"] + f["bps_down"] for f in flows["flows"]]
    everything = [harness.sample_flow(n, flows["seq"]) for n in range(30)]
    assert sorted(rates, reverse=True) == sorted(
        (f["bps_up"] + f["bps_down"] for f in everything), reverse=True)[:5]


def test_messages_a_browser_cannot_parse_are_dropped_not_relayed(endpoint, relay):
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    try:
        def publish(seq, value):
            sock.send_multipart(messages.event("state", seq, time.time(), {"totals": {"up_bps": value}}))
        deadline = time.monotonic() + 5
        while relay.latest("state") is None and time.monotonic() < deadline:
            publish(1, 1.0)  # until the subscription has reached the publisher
            time.sleep(0.05)
        publish(2, float("nan"))
        publish(3, 3.0)
        wait_for(lambda: relay.latest("state")["seq"] == 3)
        assert "NaN" not in relay._frames["state"].text
    finally:
        sock.close(0)


def test_stopping_wakes_waiting_websockets_with_none(relay):
    import threading
    results = []
    waiter = threading.Thread(target=lambda: results.append(relay.changes({"daemon": 10**9}, 30)))
    waiter.start()
    time.sleep(0.1)
    started = time.monotonic()
    relay.stop()
    waiter.join(5)
    assert results == [None] and time.monotonic() - started < 2


def test_listener_slots_are_bounded_and_given_back(endpoint):
    relay = Relay(endpoint, max_listeners=1)
    with relay.listener() as first:
        with relay.listener() as second:
            assert first is True and second is False
            assert relay.listeners == 1
    assert relay.listeners == 0
