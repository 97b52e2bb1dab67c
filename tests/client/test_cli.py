"""The `anabranch` CLI against a fake daemon in its own process, over real ipc:// sockets."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from anabranch.client import cli

REPO = Path(__file__).resolve().parents[2]
FAKE_DAEMON = REPO / "tests" / "daemon" / "fake_daemon.py"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    events, control = f"ipc://{folder}/events.sock", f"ipc://{folder}/control.sock"
    proc = subprocess.Popen([sys.executable, str(FAKE_DAEMON), events, control, str(folder / "state")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield ["--control", control, "--events", events]
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_prints_a_table(daemon, capsys):
    code, out, _ = run(capsys, *daemon, "status")
    assert code == 0
    assert "anabranchd test" in out and "interface" in out and "wan0" in out


def test_json_output_is_the_reply(daemon, capsys):
    code, out, _ = run(capsys, *daemon, "--json", "status")
    assert code == 0 and json.loads(out)["totals"]["flows"] == 200
    code, out, _ = run(capsys, *daemon, "status", "--json")
    assert code == 0 and json.loads(out)["totals"]["flows"] == 200


def test_flows_with_filters(daemon, capsys):
    code, out, _ = run(capsys, *daemon, "--json", "flows", "--limit", "3", "--proto", "udp", "--sort", "bytes")
    flows = json.loads(out)["flows"]
    assert code == 0 and len(flows) == 3 and all(f["proto"] == "udp" for f in flows)
    code, out, _ = run(capsys, *daemon, "flows", "--limit", "2", "--host", "10.0.0.3")
    assert code == 0 and "10.0.0.3:" in out and "(2 of 4 flows)" in out


def test_flow_by_id(daemon, capsys):
    _, out, _ = run(capsys, *daemon, "--json", "flows", "--limit", "1")
    flow_id = json.loads(out)["flows"][0]["id"]
    code, out, _ = run(capsys, *daemon, "flow", flow_id)
    assert code == 0 and flow_id in out


@pytest.mark.parametrize("command, expected", [
    ("links", "up Mbit/s"), ("classes", "interactive"), ("usage", "10.0.0."), ("mptcp", "(0 connections)"),
    ("alerts", "no alerts"), ("rules", "port:voice"),
])
def test_listing_commands(daemon, capsys, command, expected):
    code, out, _ = run(capsys, *daemon, command)
    assert code == 0 and expected in out


def test_rules_add_update_delete(daemon, capsys):
    code, out, _ = run(capsys, *daemon, "--json", "rules", "add", "--class", "voice", "--ports", "7000,7100-7200",
                       "--proto", "udp", "--host", "*.example.com", "--comment", "from the CLI")
    rule = json.loads(out)["rule"]
    assert code == 0 and rule["match"]["ports"] == [7000, [7100, 7200]]
    code, out, _ = run(capsys, *daemon, "rules", "update", rule["id"], "--disable")
    assert code == 0 and f"updated rule {rule['id']}" in out
    code, out, _ = run(capsys, *daemon, "rules", "list")
    assert "from the CLI" in out
    code, out, _ = run(capsys, *daemon, "rules", "delete", rule["id"])
    assert code == 0 and f"deleted rule {rule['id']}" in out


def test_class_and_link_set(daemon, capsys):
    code, out, _ = run(capsys, *daemon, "--json", "class", "set", "file", "--max", "link", "--dscp", "12")
    assert code == 0 and json.loads(out)["class"]["max_mbit"] is None
    code, out, _ = run(capsys, *daemon, "link", "set", "wan0", "--up", "auto", "--down", "150")
    assert code == 0 and "auto (auto)" in out and "150 (api)" in out


def test_predict_and_history(daemon, capsys):
    code, out, _ = run(capsys, *daemon, "predict", "video", "4", "-", "4")
    assert code == 0 and "video in 1 s: 4.000 Mbit/s" in out
    code, out, _ = run(capsys, *daemon, "history", "total.flows", "--step", "1")
    assert code == 0 and "total.flows" in out


def test_raw_call(daemon, capsys):
    code, out, _ = run(capsys, *daemon, "call", "allocate", '{"total_mbit": 10, "demands": {"voice": 1}}')
    assert code == 0 and json.loads(out)["plan"][0]["class"] == "voice"
    code, _, err = run(capsys, *daemon, "call", "allocate", "{not json")
    assert code == cli.EXIT_USAGE and "not JSON" in err


def test_a_refused_command_exits_4_with_the_error_code(daemon, capsys):
    code, _, err = run(capsys, *daemon, "class", "set", "nosuch", "--dscp", "1")
    assert code == cli.EXIT_FAILED and "not_found" in err and "nosuch" in err


def test_an_absent_daemon_exits_3_with_a_clear_message(tmp_path, capsys):
    code, _, err = run(capsys, "--control", f"ipc://{tmp_path}/none.sock", "--timeout", "0.2", "status")
    assert code == cli.EXIT_UNREACHABLE
    assert "no reply from the daemon" in err and "is anabranchd running?" in err


def test_watch_prints_the_stream_as_json_lines(daemon):
    proc = subprocess.Popen([sys.executable, "-m", "anabranch.client.cli", *daemon, "--json", "watch",
                             "--topic", "flows"], stdout=subprocess.PIPE, text=True)
    try:
        message = json.loads(proc.stdout.readline())
        assert message["type"] == "flows" and message["v"] == 1
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def test_watch_without_a_daemon_exits_3(tmp_path, capsys):
    code, _, err = run(capsys, "--events", f"ipc://{tmp_path}/none.sock", "--timeout", "0.1", "watch")
    assert code == cli.EXIT_UNREACHABLE and "is anabranchd running?" in err


def test_keygen_writes_both_certificates(tmp_path, capsys):
    code, out, _ = run(capsys, "--json", "keygen", "gw1", "--dir", str(tmp_path / "keys"))
    written = json.loads(out)
    assert code == 0 and len(written["public_key"]) == 40
    assert stat.S_IMODE(os.stat(written["secret_file"]).st_mode) == 0o600
    code, _, err = run(capsys, "keygen", "gw1", "--dir", str(tmp_path / "keys"))
    assert code == cli.EXIT_FAILED and "exists" in err


def test_curve_options_go_together(capsys):
    code, _, err = run(capsys, "--server-key", "/x", "status")
    assert code == cli.EXIT_USAGE and "go together" in err
