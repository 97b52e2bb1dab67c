from pathlib import Path

import pytest

from anabranch.controller.oracle import (class_agreement, class_agreement_files, mptcp_subflows,
                                         mptcp_subflows_files)

TRUTH = [
    {"pcap": "a.pcap", "l4": "TCP", "cli_ip": "10.0.0.1", "cli_port": "5000", "srv_ip": "1.1.1.1",
     "srv_port": "443", "bytes_c2s": "100", "bytes_s2c": "900", "proposed_class": "video"},
    {"pcap": "a.pcap", "l4": "UDP", "cli_ip": "10.0.0.1", "cli_port": "6000", "srv_ip": "2.2.2.2",
     "srv_port": "3478", "bytes_c2s": "200", "bytes_s2c": "300", "proposed_class": "voice"},
    {"pcap": "a.pcap", "l4": "UDP", "cli_ip": "10.0.0.1", "cli_port": "53", "srv_ip": "3.3.3.3",
     "srv_port": "53", "bytes_c2s": "50", "bytes_s2c": "50", "proposed_class": "background"},
    {"pcap": "a.pcap", "l4": "TCP", "cli_ip": "10.0.0.9", "cli_port": "1", "srv_ip": "9.9.9.9",
     "srv_port": "2", "bytes_c2s": "5000", "bytes_s2c": "0", "proposed_class": "-"},
    {"pcap": "b.pcap", "l4": "TCP", "cli_ip": "10.0.0.1", "cli_port": "1", "srv_ip": "1.1.1.1",
     "srv_port": "2", "bytes_c2s": "1", "bytes_s2c": "1", "proposed_class": "file"},
]


def test_class_agreement_weights_by_bytes_matches_either_orientation_and_counts_missing():
    results = {"a.pcap": {"flows": [
        {"proto": "tcp", "src": "1.1.1.1", "sport": 443, "dst": "10.0.0.1", "dport": 5000,
         "bytes_up": 100, "bytes_down": 900, "class": "video"},
        {"proto": 17, "src": "10.0.0.1", "sport": 6000, "dst": "2.2.2.2", "dport": 3478,
         "bytes": 500, "class": "video"},
    ]}}
    score = class_agreement(results, TRUTH)
    assert score.labelled_bytes == 1600 and score.agreed_bytes == 1000
    assert score.class_agreement_bytes == pytest.approx(1000 / 1600)
    assert score.confusion == {"video": {"video": 1000}, "voice": {"video": 500},
                               "background": {"missing": 100}}
    assert score.flows_labelled == 3 and score.flows_missing == 1
    assert set(score.per_capture) == {"a.pcap"}          # b.pcap was not analysed


SUBFLOWS = [
    {"capture": "v0", "mptcp_stream": "0", "role": "initial", "cli_ip": "10.2.1.2", "cli_port": "35961",
     "srv_ip": "10.1.1.2", "srv_port": "22"},
    {"capture": "v0", "mptcp_stream": "0", "role": "join", "cli_ip": "10.2.1.2", "cli_port": "41221",
     "srv_ip": "10.1.2.2", "srv_port": "22"},
    {"capture": "echo", "mptcp_stream": "0", "role": "mptcp-nohs", "cli_ip": "10.0.1.1", "cli_port": "10000",
     "srv_ip": "10.0.3.2", "srv_port": "54737"},
    {"capture": "echo", "mptcp_stream": "1", "role": "mptcp-nohs", "cli_ip": "10.0.1.2", "cli_port": "35924",
     "srv_ip": "10.0.1.1", "srv_port": "10000"},
]


def sub(a, ap, b, bp):
    return {"src": a, "sport": ap, "dst": b, "dport": bp}


def test_mptcp_subflows_correct_needs_exactly_the_truth_grouping():
    good = {"v0": {"mptcp_connections": [{"subflows": [sub("10.2.1.2", 35961, "10.1.1.2", 22),
                                                       sub("10.1.2.2", 22, "10.2.1.2", 41221)]}]},
            "echo": {"mptcp_connections": [{"subflows": [sub("10.0.1.1", 10000, "10.0.3.2", 54737)]},
                                           {"subflows": [sub("10.0.1.2", 35924, "10.0.1.1", 10000)]}]}}
    score = mptcp_subflows(good, SUBFLOWS)
    assert (score.mptcp_subflows_correct, score.mptcp_subflows_total) == (4, 4)
    merged = {"echo": {"mptcp_connections": [{"subflows": [sub("10.0.1.1", 10000, "10.0.3.2", 54737),
                                                           sub("10.0.1.2", 35924, "10.0.1.1", 10000)]}]},
              "v0": {"mptcp_connections": [{"subflows": [sub("10.2.1.2", 35961, "10.1.1.2", 22)]}]}}
    score = mptcp_subflows(merged, SUBFLOWS)
    assert (score.mptcp_subflows_correct, score.mptcp_subflows_total) == (0, 4)
    assert len(score.wrong) == 4


@pytest.mark.shared_data
def test_truth_files_score_a_perfect_analyzer_at_one(request):
    data = Path(request.config.rootpath).parent / "shared" / "data" / "pcaps"
    import csv
    with open(data / "ndpi" / "FLOWS.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    results: dict[str, dict] = {}
    for r in rows:
        results.setdefault(r["pcap"], {"flows": []})["flows"].append(
            {"proto": r["l4"], "src": r["cli_ip"], "sport": r["cli_port"], "dst": r["srv_ip"],
             "dport": r["srv_port"], "bytes": int(r["bytes_c2s"]) + int(r["bytes_s2c"]),
             "class": r["proposed_class"]})
    score = class_agreement_files(results, data / "ndpi" / "FLOWS.tsv")
    assert score.class_agreement_bytes > 0.99      # duplicate tuples in a capture may collide
    with open(data / "mptcp" / "ALL_SUBFLOWS.tsv", newline="") as f:
        subs = list(csv.DictReader(f, delimiter="\t"))
    mresults: dict[str, dict] = {}
    groups: dict[tuple, list] = {}
    for i, r in enumerate(subs):
        stream = r["mptcp_stream"] if r["mptcp_stream"] != "-" else f"x{i}"
        groups.setdefault((r["capture"], stream), []).append(sub(r["cli_ip"], r["cli_port"], r["srv_ip"], r["srv_port"]))
    for (capture, _), members in groups.items():
        mresults.setdefault(capture, {"mptcp_connections": []})["mptcp_connections"].append({"subflows": members})
    score = mptcp_subflows_files(mresults, data / "mptcp" / "ALL_SUBFLOWS.tsv")
    assert score.mptcp_subflows_correct == score.mptcp_subflows_total == 10
