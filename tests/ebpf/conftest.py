"""One compiled datapath (the capture-clock variant) shared by the crafted-packet tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def compiled():
    from anabranch.daemon import kstructs
    from anabranch.daemon.datapath import BuildOptions, Datapath

    datapath = Datapath(BuildOptions(flow_map_size=4096, clock_from_skb=True))
    datapath.set_port(1, kstructs.ROLE_WAN, kstructs.PORT_COUNT | kstructs.PORT_MARK)
    yield datapath
    datapath.close()


@pytest.fixture
def dp(compiled):
    """The shared datapath with no flows, no pending events, the default policy."""
    from anabranch.daemon import kstructs, policy

    compiled.clear_flows()
    compiled.overrides.clear()
    compiled.tokens.clear()
    compiled.drain_events()
    compiled.set_port(1, kstructs.ROLE_WAN, kstructs.PORT_COUNT | kstructs.PORT_MARK)
    policy.write_policy(compiled, policy.Policy.default())
    return compiled
