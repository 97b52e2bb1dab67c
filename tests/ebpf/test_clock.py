"""The datapath's per-packet clock: jiffies, scaled to CLOCK_MONOTONIC by a calibration."""

from __future__ import annotations

import time

import pytest
from packets import ACK, ethernet, ipv4, tcp

from anabranch.daemon.datapath import jiffies_calibration


class FakeKernel:
    """jiffies advancing at `hz` from a base, and a clock each sample and sleep moves on."""

    def __init__(self, hz: int, base_ns: int, start_ns: int = 10**12):
        self.jiffy_ns = (1_000_000_000 + hz // 2) // hz
        self.base_ns = base_ns
        self.now_ns = start_ns

    def sample(self) -> tuple[int, int]:
        jiffies = (self.now_ns - self.base_ns) // self.jiffy_ns
        self.now_ns += 3_000  # the sample's own time
        return jiffies, self.now_ns

    def sleep(self, seconds: float) -> None:
        self.now_ns += int(seconds * 1e9)


@pytest.mark.parametrize("hz", [100, 250, 300, 1000])
def test_the_calibration_finds_the_tick_and_the_start_of_jiffy_zero(hz):
    # jiffies start near 2^32 - 300 * HZ: the base is far negative.
    base = -(2**32) * 4_000_000 + 123_456_789
    kernel = FakeKernel(hz, base)
    jiffy_ns, found = jiffies_calibration(kernel.sample, kernel.sleep)
    assert jiffy_ns == kernel.jiffy_ns
    assert base <= found <= base + jiffy_ns // 8


def test_jiffies_at_no_kernel_tick_rate_keep_the_coarse_clock():
    kernel = FakeKernel(250, 0)
    kernel.jiffy_ns = 1_000_000_000 // 173
    assert jiffies_calibration(kernel.sample, kernel.sleep) is None


@pytest.mark.root
def test_flow_times_come_from_the_calibrated_jiffies():
    """Built for the live clock, the datapath calibrates itself on load; a flow's
    first and last seen are CLOCK_MONOTONIC within a tick of the packet."""
    from anabranch.daemon import kstructs, policy
    from anabranch.daemon.datapath import KERNEL_HZ, BuildOptions, Datapath

    datapath = Datapath(BuildOptions(flow_map_size=1024))
    try:
        config = datapath.config[datapath.config.Key(0)]
        jiffy_ns = config.jiffy_ns
        assert jiffy_ns in {(1_000_000_000 + hz // 2) // hz for hz in KERNEL_HZ}
        policy.write_policy(datapath, policy.Policy.default())
        assert datapath.config[datapath.config.Key(0)].jiffy_ns == jiffy_ns  # policy writes keep it
        datapath.set_port(1, kstructs.ROLE_WAN, kstructs.PORT_COUNT)
        frame = ethernet(ipv4("10.0.0.2", "192.0.2.7", 6, tcp(40000, 443, ACK)), 0x0800)
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        datapath.test_runner("egress").run(frame)
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        _, values = datapath.sweep_flows()
        assert len(values) == 1
        seen = int(values["first_seen_ns"][0])
        assert before - 2 * jiffy_ns <= seen <= after + jiffy_ns // 2
        assert int(values["last_seen_ns"][0]) == seen
    finally:
        datapath.close()
