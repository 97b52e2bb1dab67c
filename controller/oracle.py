"""Scores analyzer output against the ground truth of ../shared/data/pcaps: class
agreement weighted by bytes (with a confusion matrix) over nDPI-labelled flows, and
MPTCP subflow -> connection correctness.

Pure functions over analyzer-shaped results, per capture:
    {"flows": [{"proto", "src", "sport", "dst", "dport", "bytes" | "bytes_up"+"bytes_down", "class"}],
     "mptcp_connections": [{"subflows": [{"src", "sport", "dst", "dport"}, ...]}, ...]}
Flows are matched on the unordered 5-tuple, so either orientation scores.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
MISSING = "missing"


def _proto(value: Any) -> int:
    if isinstance(value, str):
        text = value.strip().lower()
        return PROTO_NUMBERS.get(text, int(text) if text.isdigit() else -1)
    return int(value)


def flow_match_key(proto: Any, a: str, a_port: Any, b: str, b_port: Any) -> tuple:
    ends = sorted([(str(a), int(a_port or 0)), (str(b), int(b_port or 0))])
    return (_proto(proto), ends[0], ends[1])


def _flow_bytes(flow: dict) -> int:
    if "bytes" in flow:
        value = flow["bytes"]
        return int(sum(value)) if isinstance(value, (list, tuple)) else int(value)
    return int(flow.get("bytes_up", 0)) + int(flow.get("bytes_down", 0))


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@dataclass
class ClassScore:
    class_agreement_bytes: float          # 0..1 over labelled bytes
    labelled_bytes: int
    agreed_bytes: int
    confusion: dict[str, dict[str, int]]  # truth class -> predicted class (or "missing") -> bytes
    per_capture: dict[str, float] = field(default_factory=dict)
    flows_labelled: int = 0
    flows_missing: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def class_agreement(results: dict[str, dict], truth_rows: Iterable[dict[str, str]]) -> ClassScore:
    """Agreement of predicted classes with FLOWS.tsv rows (`proposed_class` not "-"),
    weighted by the truth's bytes.  A labelled flow the analyzer did not report counts
    against it (predicted "missing"); captures absent from `results` are skipped."""
    predicted: dict[str, dict[tuple, str]] = {}
    for capture, result in results.items():
        table: dict[tuple, tuple[int, str]] = {}
        for flow in result.get("flows", []):
            key = flow_match_key(flow["proto"], flow["src"], flow.get("sport", 0), flow["dst"], flow.get("dport", 0))
            size = _flow_bytes(flow)
            # Two analyzer flows on one tuple (e.g. per WAN port): the bigger one speaks.
            if key not in table or size > table[key][0]:
                table[key] = (size, flow.get("class") or MISSING)
        predicted[capture] = {k: v[1] for k, v in table.items()}
    confusion: dict[str, dict[str, int]] = {}
    per_capture: dict[str, list[int]] = {}
    labelled = agreed = n_flows = n_missing = 0
    for row in truth_rows:
        truth = row["proposed_class"]
        capture = row["pcap"]
        if truth == "-" or capture not in predicted:
            continue
        size = int(row["bytes_c2s"]) + int(row["bytes_s2c"])
        key = flow_match_key(row["l4"], row["cli_ip"], row["cli_port"], row["srv_ip"], row["srv_port"])
        guess = predicted[capture].get(key, MISSING)
        n_flows += 1
        n_missing += guess == MISSING
        confusion.setdefault(truth, {}).setdefault(guess, 0)
        confusion[truth][guess] += size
        labelled += size
        agreed += size if guess == truth else 0
        totals = per_capture.setdefault(capture, [0, 0])
        totals[0] += size if guess == truth else 0
        totals[1] += size
    return ClassScore(agreed / labelled if labelled else 0.0, labelled, agreed, confusion,
                      {c: a / t if t else 0.0 for c, (a, t) in per_capture.items()}, n_flows, n_missing)


def class_agreement_files(results: dict[str, dict], flows_tsv: Path) -> ClassScore:
    return class_agreement(results, _read_tsv(flows_tsv))


@dataclass
class MptcpScore:
    mptcp_subflows_correct: int
    mptcp_subflows_total: int
    wrong: list[str]

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _subflow_key(sub: dict) -> tuple:
    return flow_match_key(sub.get("proto", "tcp"), sub["src"], sub["sport"], sub["dst"], sub["dport"])


def mptcp_subflows(results: dict[str, dict], truth_rows: Iterable[dict[str, str]]) -> MptcpScore:
    """A truth subflow is correct when the analyzer's connection holding it contains
    exactly the truth connection's subflows (of that capture).  Subflows with no
    handshake and no stream (`-`) must stand alone (an unknown connection).  Rows of
    plain TCP (role `tcp`) must not be in any MPTCP connection."""
    rows = [r for r in truth_rows if r["capture"] in results]
    groups: dict[tuple[str, str], set] = {}
    keys_of_row = []
    for i, r in enumerate(rows):
        key = flow_match_key("tcp", r["cli_ip"], r["cli_port"], r["srv_ip"], r["srv_port"])
        keys_of_row.append(key)
        if r["role"] == "tcp":
            continue
        stream = r["mptcp_stream"] if r["mptcp_stream"] != "-" else f"alone-{i}"
        groups.setdefault((r["capture"], stream), set()).add(key)
    placed: dict[str, dict[tuple, frozenset]] = {}
    for capture, result in results.items():
        where: dict[tuple, frozenset] = {}
        for conn in result.get("mptcp_connections", []):
            members = frozenset(_subflow_key(s) for s in conn.get("subflows", []))
            for key in members:
                where[key] = members
        placed[capture] = where
    correct, total, wrong = 0, 0, []
    for i, r in enumerate(rows):
        key = keys_of_row[i]
        total += 1
        got = placed[r["capture"]].get(key)
        if r["role"] == "tcp":
            ok = got is None
        else:
            stream = r["mptcp_stream"] if r["mptcp_stream"] != "-" else f"alone-{i}"
            expected = groups[(r["capture"], stream)]
            # Only subflows the truth knows about count: an analyzer may see more flows.
            known = {k for g in groups.values() for k in g}
            ok = got is not None and set(got) & known == expected
        correct += ok
        if not ok:
            wrong.append(f"{r['capture']} {r['cli_ip']}:{r['cli_port']}->{r['srv_ip']}:{r['srv_port']}")
    return MptcpScore(correct, total, wrong)


def mptcp_subflows_files(results: dict[str, dict], all_subflows_tsv: Path) -> MptcpScore:
    return mptcp_subflows(results, _read_tsv(all_subflows_tsv))
