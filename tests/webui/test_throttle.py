"""Login throttling per client address."""

from __future__ import annotations

from anabranch.webui.throttle import LoginThrottle


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_fifth_failure_within_the_window_blocks_the_address():
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=5, window_s=60, clock=clock)
    for _ in range(4):
        throttle.failed("10.0.0.1")
        assert throttle.retry_after("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 60
    clock.now += 45
    assert throttle.retry_after("10.0.0.1") == 15


def test_block_lifts_when_the_oldest_failure_leaves_the_window():
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=2, window_s=60, clock=clock)
    throttle.failed("a")
    clock.now += 30
    throttle.failed("a")
    clock.now += 30.5
    assert throttle.retry_after("a") == 0


def test_other_addresses_are_not_blocked():
    throttle = LoginThrottle(max_failures=1, window_s=60, clock=FakeClock())
    throttle.failed("a")
    assert throttle.retry_after("a") > 0
    assert throttle.retry_after("b") == 0


def test_success_clears_the_failures():
    throttle = LoginThrottle(max_failures=2, window_s=60, clock=FakeClock())
    throttle.failed("a")
    throttle.succeeded("a")
    throttle.failed("a")
    assert throttle.retry_after("a") == 0


def test_memory_is_bounded_by_forgetting_the_least_recent_address():
    throttle = LoginThrottle(max_failures=1, window_s=60, max_clients=3, clock=FakeClock())
    for client in "abcd":
        throttle.failed(client)
    assert throttle.retry_after("a") == 0
    assert all(throttle.retry_after(c) > 0 for c in "bcd")
