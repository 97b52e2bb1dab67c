"""The client library: retry policy, typed shortcuts and FlowMirror's sequence rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from anabranch.client import Client, CommandFailed, DaemonUnreachable, FlowMirror

REPO = Path(__file__).resolve().parents[2]
FAKE_DAEMON = REPO / "tests" / "daemon" / "fake_daemon.py"


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    folder = tmp_path_factory.mktemp("client")
    endpoint = f"ipc://{folder}/control.sock"
    proc = subprocess.Popen([sys.executable, str(FAKE_DAEMON), f"ipc://{folder}/events.sock", endpoint,
                             str(folder / "state")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def test_a_lost_request_is_retried_but_rules_add_is_not(tmp_path):
    with Client(f"ipc://{tmp_path}/none.sock", timeout_s=0.1, retries=2) as client:
        with pytest.raises(DaemonUnreachable, match="3 attempt"):
            client.call("status")
        with pytest.raises(DaemonUnreachable, match="1 attempt"):
            client.add_rule({"class": "voice", "match": {"ports": [1]}})
        # With an id a second copy would be refused as a duplicate, so retrying is safe.
        with pytest.raises(DaemonUnreachable, match="3 attempt"):
            client.add_rule({"id": "mine", "class": "voice", "match": {"ports": [1]}})


def test_typed_shortcuts(control):
    with Client(control, timeout_s=5) as client:
        assert client.status()["totals"]["flows"] == 200
        flow = client.flows(limit=1)[0]
        assert client.flow(flow["id"])["flow"]["id"] == flow["id"]
        rule = client.add_rule({"class": "file", "match": {"ports": [[6881, 6889]]}}, position=0)
        assert client.rules()[0]["id"] == rule["id"]
        assert client.update_rule(rule["id"], comment="torrents")["comment"] == "torrents"
        client.delete_rule(rule["id"])
        assert client.set_class("background", dscp=8)["dscp"] == 8
        assert client.set_link("wan0", up_mbit="auto")["up_source"] == "auto"
        assert client.alerts(include_resolved=True) == []
        assert client.predict("voice", [0.1, 0.1])["h1"]["mbit"] == pytest.approx(0.1)


def test_a_refusal_raises_command_failed_with_the_code(control):
    with Client(control, timeout_s=5) as client:
        with pytest.raises(CommandFailed) as failure:
            client.set_class("nosuch", dscp=1)
    assert failure.value.code == "not_found"


def _delta(seq, upserts=(), removed=()):
    return {"seq": seq, "snapshot": False, "count": 0, "upserts": list(upserts), "removed": list(removed)}


def test_flow_mirror_applies_in_order_and_flags_gaps():
    mirror = FlowMirror()
    assert mirror.apply(_delta(4)) is False  # no snapshot yet
    assert mirror.apply({"seq": 5, "snapshot": True, "count": 1, "flows": [{"id": "a"}]})
    assert mirror.apply(_delta(6, upserts=[{"id": "b"}]))
    assert mirror.apply(_delta(6, upserts=[{"id": "zzz"}]))  # a repeat is ignored
    assert set(mirror.flows) == {"a", "b"}
    assert mirror.apply(_delta(8, removed=["a"])) is False and mirror.gaps == 1
    assert mirror.apply(_delta(9)) is False  # stays stale until a snapshot
    assert mirror.apply({"seq": 10, "snapshot": True, "count": 0, "flows": []}) and mirror.flows == {}
