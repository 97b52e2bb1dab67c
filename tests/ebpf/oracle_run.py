"""`anabranch analyze` over the labelled captures of ../shared/data/pcaps, scored against
their ground truth (controller/oracle.py): shared by the test and `make bench`."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def score(shared: Path, datapath=None) -> dict[str, Any]:
    from anabranch.controller import oracle
    from anabranch.daemon.analyze import analyze, offline_datapath

    pcaps = shared / "pcaps"
    owned = datapath is None
    datapath = datapath or offline_datapath(1 << 16)
    try:
        ndpi = {p.name: analyze(p, datapath=datapath).document()
                for p in sorted((pcaps / "ndpi" / "pcap").iterdir())}
        mptcp = {f"{p.parent.name}/{p.name}": analyze(p, datapath=datapath).document()
                 for p in sorted((pcaps / "mptcp").glob("*/*.pcap"))}
    finally:
        if owned:
            datapath.close()
    classes = oracle.class_agreement_files(ndpi, pcaps / "ndpi" / "FLOWS.tsv")
    subflows = oracle.mptcp_subflows_files(mptcp, pcaps / "mptcp" / "ALL_SUBFLOWS.tsv")
    return {"class_agreement_bytes": round(classes.class_agreement_bytes, 4),
            "mptcp_subflows_correct": subflows.mptcp_subflows_correct,
            "mptcp_subflows_total": subflows.mptcp_subflows_total,
            "labelled_bytes": classes.labelled_bytes, "flows_missing": classes.flows_missing,
            "confusion_bytes": classes.confusion, "per_capture": classes.per_capture,
            "mptcp_wrong": subflows.wrong}
