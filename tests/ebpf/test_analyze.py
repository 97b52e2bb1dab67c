"""The offline analyzer runs the real datapath over real captures (root: loads BPF)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.shared_data]


@pytest.fixture(scope="module")
def offline():
    from anabranch.daemon.analyze import offline_datapath

    datapath = offline_datapath(1 << 16)
    yield datapath
    datapath.close()


def _truth(shared: Path) -> dict[str, list[dict]]:
    by_capture = defaultdict(list)
    with open(shared / "pcaps" / "mptcp" / "ALL_SUBFLOWS.tsv") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            by_capture[row["capture"]].append(row)
    return by_capture


def _by_tuple(analysis) -> dict[tuple, dict]:
    return {(f["src"], f["sport"], f["dst"], f["dport"]): f for f in analysis.flows if f["proto"] == "tcp"}


def test_mptcp_captures_count_every_subflow_packet_each_way(offline, shared_data):
    from anabranch.daemon.analyze import analyze

    for capture, rows in _truth(shared_data).items():
        flows = _by_tuple(analyze(shared_data / "pcaps" / "mptcp" / capture, datapath=offline))
        for row in rows:
            key = (row["cli_ip"], int(row["cli_port"]), row["srv_ip"], int(row["srv_port"]))
            assert key in flows, f"{capture}: subflow {key} missing"
            flow = flows[key]
            assert flow["packets_up"] == int(row["pkts_c2s"]), f"{capture} {key}"
            assert flow["packets_down"] == int(row["pkts_s2c"]), f"{capture} {key}"


def test_mptcp_subflows_are_assigned_to_their_connection(offline, shared_data):
    from anabranch.daemon.analyze import analyze

    for capture, rows in _truth(shared_data).items():
        analysis = analyze(shared_data / "pcaps" / "mptcp" / capture, datapath=offline)
        flows = _by_tuple(analysis)
        handshaken = [r for r in rows if r["role"] in ("initial", "join")]
        streams = defaultdict(set)
        for row in handshaken:
            key = (row["cli_ip"], int(row["cli_port"]), row["srv_ip"], int(row["srv_port"]))
            connection = flows[key]["mptcp_connection"]
            assert connection is not None, f"{capture}: {key} not in any MPTCP connection"
            streams[row["mptcp_stream"]].add(connection)
        for stream, connections in streams.items():
            assert len(connections) == 1, f"{capture}: stream {stream} split over {connections}"
        assert len({next(iter(c)) for c in streams.values()}) == len(streams), f"{capture}: streams merged"
        # Tokens agree with the ground truth's (computed from the MP_CAPABLE keys).
        for row in (r for r in handshaken if r["role"] == "initial"):
            key = (row["cli_ip"], int(row["cli_port"]), row["srv_ip"], int(row["srv_port"]))
            connection = analysis.mptcp_connections[flows[key]["mptcp_connection"]]
            expected = {int(t) for t in row["tokens_cli/srv"].split("/")}
            assert set(connection["tokens"]) == expected, capture
            assert connection["version"] == int(row["version"])
            listed = {(s["src"], s["sport"], s["dst"], s["dport"]) for s in connection["subflows"]}
            assert key in listed


def test_json_document_has_the_stable_shape(offline, shared_data):
    from anabranch.daemon.analyze import analyze

    document = analyze(shared_data / "pcaps" / "mptcp" / "tcpdump" / "mptcp-v0.pcap", datapath=offline).document()
    flow = document["flows"][0]
    for field in ("proto", "src", "sport", "dst", "dport", "packets", "bytes", "class", "reason",
                  "mptcp_connection"):
        assert field in flow
    assert flow["proto"] == "tcp" and flow["class"] == "file" and flow["reason"] == "port:file"
    connection = document["mptcp_connections"][0]
    assert {"id", "version", "tokens", "subflows"} <= set(connection)
    assert len(connection["subflows"]) == 2
    assert {"src", "sport", "dst", "dport", "packets", "bytes"} <= set(connection["subflows"][0])


def test_every_ndpi_capture_is_analyzed_without_failure(offline, shared_data):
    from anabranch.daemon.analyze import analyze

    captures = sorted((shared_data / "pcaps" / "ndpi" / "pcap").iterdir())
    assert len(captures) > 50
    for capture in captures:
        analysis = analyze(capture, datapath=offline)
        assert analysis.flows, f"{capture.name}: no flows"
        assert analysis.unsupported_frames == 0, capture.name
        assert analysis.errors["flow_insert"] == 0 and analysis.errors["event_lost"] == 0, capture.name


def test_analyze_agrees_with_the_labels_and_the_mptcp_ground_truth(offline, shared_data):
    """The issue's score: at least 85 % of labelled bytes in nDPI's class; every MPTCP
    subflow in its ground-truth connection (the same figures `make bench` writes)."""
    import oracle_run

    score = oracle_run.score(shared_data, datapath=offline)
    assert score["class_agreement_bytes"] >= 0.85, score["confusion_bytes"]
    assert score["mptcp_subflows_total"] == 10
    assert score["mptcp_subflows_correct"] == score["mptcp_subflows_total"], score["mptcp_wrong"]
