"""The controller on real captures (../shared/data/pcaps), fed as the datapath would feed it."""

import pytest

pytestmark = pytest.mark.shared_data


def test_mptcp_captures_group_every_subflow_as_the_ground_truth_does():
    import pcap_replay as replay
    from anabranch.controller import oracle

    captures = sorted((replay.PCAPS / "mptcp").glob("*/*.pcap"))
    results = {f"{p.parent.name}/{p.name}": replay.replay(p) for p in captures}
    score = oracle.mptcp_subflows_files(results, replay.PCAPS / "mptcp" / "ALL_SUBFLOWS.tsv")
    assert score.mptcp_subflows_total == 10
    assert score.mptcp_subflows_correct == 10, score.wrong
    v0 = results["tcpdump/mptcp-v0.pcap"]["mptcp_connections"]
    assert len(v0) == 1 and len(v0[0]["subflows"]) == 2 and v0[0]["class"] == "file"   # SSH port 22


def test_ndpi_captures_class_agreement_stays_above_its_floor():
    import pcap_replay as replay
    from anabranch.controller import oracle

    captures = sorted((replay.PCAPS / "ndpi" / "pcap").iterdir())
    results = {p.name: replay.replay(p) for p in captures}
    score = oracle.class_agreement_files(results, replay.PCAPS / "ndpi" / "FLOWS.tsv")
    # 0.94 when written; the floor catches regressions without pinning the exact figure.
    assert score.class_agreement_bytes >= 0.90
