"""Prometheus /metrics: who may scrape it, and that it parses with every name we promise."""

from __future__ import annotations

import time

import pytest
import webui_harness as harness
from prometheus_client.parser import text_string_to_metric_families

from anabranch.daemon import config
from anabranch.webui.credentials import create_token, token_file

PROMISED = ["mptcp_connections_total", "mptcp_subflows_active", "mptcp_bandwidth_utilization",
            "mptcp_latency_p95", "mptcp_packet_loss_rate", "network_latency_milliseconds",
            "network_bandwidth_mbps", "network_jitter_milliseconds", "packet_loss_ratio",
            "anabranch_class_rate_bits_per_second", "anabranch_class_sent_bytes_total",
            "anabranch_class_dropped_packets_total", "anabranch_path_quality",
            "anabranch_link_predicted_capacity_mbit", "anabranch_prediction_demand_mbit",
            "anabranch_prediction_error_mbit", "anabranch_alerts_active", "anabranch_flows_active"]
REMOTE = {"REMOTE_ADDR": "192.0.2.9"}


def _feed(app) -> None:
    relay = app.extensions["anabranch.relay"]
    flows = [harness.sample_flow(n) for n in range(6)]
    now = time.time()
    relay._take("state", {"v": 1, "type": "state", "seq": 1, "ts": now,
                          **harness.sample_state(1, now, flows, 100)})
    relay._take("flows", {"v": 1, "type": "flows", "seq": 1, "ts": now, "snapshot": True, "count": 6,
                          "flows": flows})
    relay._take("predictions", {"v": 1, "type": "predictions", "seq": 1, "ts": now,
                                **harness.sample_predictions()})


def _families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_metrics_parse_and_carry_every_promised_name(client, app, fake_daemon):
    _feed(app)
    fake_daemon.raise_alert()
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    families = _families(response.get_data(as_text=True))
    names = {sample.name for family in families.values() for sample in family.samples}
    missing = [name for name in PROMISED if name not in names and name.removesuffix("_total") not in families]
    assert missing == []
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in families.values() for s in family.samples}
    # The fake daemon's one MPTCP connection: subflows on wan0 and wan1 (RTT 19.5 and 44 ms).
    assert samples[("mptcp_connections_total", ())] == 1
    assert samples[("mptcp_subflows_active", ())] == 2
    assert samples[("mptcp_latency_p95", (("link", "wan1"),))] == 44.0
    assert samples[("network_latency_milliseconds", (("link", "wan1"), ("quantile", "0.95")))] == 44.0
    assert 0 < samples[("anabranch_path_quality", (("link", "wan0"),))] <= 1
    assert samples[("anabranch_alerts_active", (("severity", "critical"),))] == 1


def test_metrics_from_a_daemon_with_only_status_and_flows_still_parse(client, app, old_daemon):
    _feed(app)
    families = _families(client.get("/metrics").get_data(as_text=True))
    assert "anabranch_class_rate_bits_per_second" in families
    assert "mptcp_subflows_active" not in families


def test_metrics_need_credentials_from_other_hosts(client, config_path, fake_daemon):
    assert client.get("/metrics", environ_base=REMOTE).status_code == 401
    token = create_token(token_file(config.load(config_path).webui.password_file), "viewer", "prom", now=1)
    response = client.get("/metrics", environ_base=REMOTE, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


@pytest.mark.parametrize("policy, loopback, remote", [("none", 200, 200), ("always", 401, 401)])
def test_metrics_policy_is_configurable(config_path, policy, loopback, remote, old_daemon):
    app = harness.make_app(config_path, METRICS_AUTH=policy)
    try:
        client = app.test_client()
        assert client.get("/metrics").status_code == loopback
        assert client.get("/metrics", environ_base=REMOTE).status_code == remote
    finally:
        app.extensions["anabranch.relay"].stop()
        app.extensions["anabranch.control"].close()


def test_an_unknown_metrics_policy_is_refused_at_start(config_path):
    with pytest.raises(ValueError, match="METRICS_AUTH"):
        harness.make_app(config_path, METRICS_AUTH="sometimes")
