"""The web UI's stand-ins speak the real daemon's shapes: the stream samples have the keys
of the Daemon's own records and state, and the forms offer what the daemon's schemas accept."""

from __future__ import annotations

import re
import sys
from importlib import resources

import webui_harness as harness

from anabranch.client import Client
from anabranch.daemon import commands
from anabranch.daemon import config as config_mod
from anabranch.daemon.main import Daemon
from anabranch.webui import api


def _daemon_without_a_kernel(tmp_path) -> Daemon:
    sys.path.insert(0, str(harness.REPO / "tests" / "daemon"))
    from fake_daemon import CONFIG

    config = config_mod.loads(CONFIG.format(publish=100, state_dir=tmp_path))
    daemon = Daemon(config)
    daemon.datapath = type("Datapath", (), {"error_counts": lambda self: {"truncated": 0}})()
    daemon.hooks = type("Hooks", (), {"attached": {"wan0", "lan0"}})()
    return daemon


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0] + ":" if ":" in reason else reason


def test_sample_flows_have_exactly_the_fields_and_reasons_of_daemon_flow_records(fake_daemon):
    with Client(fake_daemon.endpoint) as client:   # the daemon's own thread builds the records
        records = client.call("flows", limit=100_000)["flows"]
    for n in range(6):
        assert set(harness.sample_flow(n)) == set(records[0]), n
    # Reasons are the controller's: a rule id (port:, service:, api:), a heuristic, or default.
    kinds = {_reason_kind(r["reason"]) for r in records}
    assert kinds <= {"port:", "service:", "heuristic:", "api:", "mptcp:", "default"}, kinds
    assert {_reason_kind(harness.sample_flow(n)["reason"]) for n in range(6)} <= kinds


def test_sample_state_has_exactly_the_keys_of_the_daemons_state(tmp_path):
    real = _daemon_without_a_kernel(tmp_path).state()
    sample = harness.sample_state(1, 0.0, [harness.sample_flow(n) for n in range(3)], 100)
    assert set(sample) == set(real)
    assert set(sample["daemon"]) == set(real["daemon"])
    assert set(sample["datapath"]) == set(real["datapath"])
    assert set(sample["interfaces"][0]) == set(real["interfaces"][0])


def test_fake_daemon_answers_with_the_real_command_table(fake_daemon):
    assert set(fake_daemon.provider.server.commands) == set(commands.command_table(None))


def test_alert_metrics_offered_are_the_daemons():
    assert api.ALERT_METRICS == commands.ALERT_METRICS
    page = (resources.files("anabranch.webui") / "templates" / "alerts.html").read_text()
    offered = re.search(r'for metric in \[([^\]]*)\]', page).group(1)
    assert tuple(re.findall(r'"([a-z0-9_.]+)"', offered)) == commands.ALERT_METRICS


def test_class_fields_accepted_are_within_the_daemons_schema():
    schema = commands.command_table(None)["class.set"].args
    for name, (_kind, low, high) in api.CLASS_FIELDS.items():
        assert schema[name].low <= low and high <= schema[name].high, name
