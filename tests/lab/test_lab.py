"""The lab itself: both paths and IPv6 work, up/down are idempotent and leave nothing."""

import pytest

from lab import CLIENT_V4, SERVER_V4, Lab, netns_list

pytestmark = [pytest.mark.root, pytest.mark.lab]


def test_both_paths_and_ipv6_reach_the_server(lab):
    lab.run("cli", "ping", "-c1", "-W2", SERVER_V4[0])
    lab.run("cli", "ping", "-c1", "-W2", "-I", CLIENT_V4[1], SERVER_V4[0])
    lab.run("cli", "ping", "-6", "-c3", "-i0.2", "-W2", "fd72:1::2", check=False)  # neighbour discovery
    lab.run("cli", "ping", "-6", "-c1", "-W2", "fd72:1::2")


def test_second_uplink_leaves_the_gateway_through_wan1(lab):
    before = lab.link_stats("gw", "wan1")["tx_packets"]
    lab.run("cli", "ping", "-c5", "-i0.05", "-W2", "-I", CLIENT_V4[1], SERVER_V4[0])
    assert lab.link_stats("gw", "wan1")["tx_packets"] - before >= 5


def test_mptcp_endpoint_and_limits_are_set_on_the_client(lab):
    endpoints = lab.run("cli", "ip", "mptcp", "endpoint", "show").stdout
    assert CLIENT_V4[1] in endpoints and "subflow" in endpoints


def test_up_and_down_are_idempotent_and_leave_nothing(tmp_path):
    instance = Lab(prefix="tidem")
    sleeper = None
    try:
        instance.up()
        instance.up()
        assert instance.exists()
        sleeper = instance.popen("srv", "sleep", "60")  # must not keep the namespace alive
    finally:
        instance.down()
        instance.down()
        if sleeper is not None:
            sleeper.wait(5)
    assert not [n for n in netns_list() if n.startswith("tidem-")]
