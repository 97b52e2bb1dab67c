"""REST /api/v1 against a fake daemon: data when the daemon has it, 503 when it does not,
validation before anything reaches the daemon, CSRF on changes."""

from __future__ import annotations

import csv
import io

import pytest


import webui_harness as harness

from anabranch.webui.api import load_balancing

READS = ["/api/v1/flows", "/api/v1/connections", "/api/v1/links", "/api/v1/classes", "/api/v1/alerts",
         "/api/v1/alert-rules", "/api/v1/usage",
         "/api/v1/recommendations/load-balancing", "/api/v1/metrics/history?series=link.wan0.down_bps"]
NEW_COMMANDS = [path for path in READS if not path.startswith("/api/v1/flows")]



def _meta_token(client) -> str:
    page = client.get("/").get_data(as_text=True)
    marker = 'name="csrf-token" content="'
    start = page.index(marker) + len(marker)
    return page[start:page.index('"', start)]


@pytest.mark.parametrize("path", READS)
def test_every_read_endpoint_answers_json_from_the_daemon(logged_in, fake_daemon, path):
    response = logged_in.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert isinstance(response.get_json(), dict)


@pytest.mark.parametrize("path", NEW_COMMANDS)
def test_endpoints_answer_503_not_available_when_the_daemon_lacks_the_command(logged_in, old_daemon, path):
    response = logged_in.get(path)
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "not_available"
    assert error["message"].startswith("Not available from this daemon yet")


def test_predictions_come_from_the_predictions_topic(app, logged_in):
    relay = app.extensions["anabranch.relay"]
    relay._take("predictions", {"v": 1, "type": "predictions", "seq": 1, "ts": 1.0, "available": False,
                                "classes": [], "links": []})
    assert logged_in.get("/api/v1/predictions").status_code == 503  # no predictor in the daemon yet
    relay._take("predictions", {"v": 1, "type": "predictions", "seq": 2, "ts": 2.0,
                                **harness.sample_predictions()})
    reply = logged_in.get("/api/v1/predictions")
    assert reply.status_code == 200 and reply.get_json()["classes"][0]["next_1s_mbit"] == 3.2


def test_flows_still_work_against_a_daemon_with_only_status_and_flows(logged_in, old_daemon):
    assert logged_in.get("/api/v1/flows?limit=5").get_json()["count"] == 14
    assert old_daemon.commands("flows")[0]["args"] == {"limit": 5}


def test_a_silent_daemon_is_503_not_an_error_page(logged_in, app):
    app.extensions["anabranch.control"].timeout_s = 0.2
    response = logged_in.get("/api/v1/links")
    assert response.status_code == 503
    assert "no answer from the daemon" in response.get_json()["error"]["message"]


def test_mptcp_connection_by_id_and_unknown_id(logged_in, fake_daemon):
    conn = logged_in.get("/api/v1/connections/c1").get_json()["connection"]
    assert [s["iface"] for s in conn["subflows"]] == ["wan0", "wan1"]
    assert logged_in.get("/api/v1/connections/nope").status_code == 404


def test_class_change_reaches_the_daemon_as_class_set(logged_in, fake_daemon):
    response = logged_in.post("/api/v1/classes/video", json={"max_mbit": "40", "priority": 3},
                              headers={"X-CSRF-Token": _meta_token(logged_in)})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert fake_daemon.commands("class.set") == [
        {"cmd": "class.set", "args": {"name": "video", "max_mbit": 40.0, "priority": 3}}]


@pytest.mark.parametrize("body, field", [
    ({"min_mbit": 20, "max_mbit": 10}, "min_mbit"),
    ({"max_mbit": "fast"}, "max_mbit"),
    ({"priority": 1.5}, "priority"),
    ({"dscp": 64}, "dscp"),
    ({"colour": "red"}, "colour"),
    ({}, "body"),
])
def test_bad_class_settings_are_refused_with_the_field_named(logged_in, fake_daemon, body, field):
    response = logged_in.post("/api/v1/classes/video", json=body,
                              headers={"X-CSRF-Token": _meta_token(logged_in)})
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field
    assert fake_daemon.commands("class.set") == []


def test_the_daemons_own_refusal_comes_back_as_400_with_its_message(logged_in, fake_daemon):
    response = logged_in.post("/api/v1/classes/video", json={"max_mbit": 5000},
                              headers={"X-CSRF-Token": _meta_token(logged_in)})
    assert response.status_code == 400
    assert "args.max_mbit" in response.get_json()["error"]["message"]


def test_a_post_without_the_csrf_token_is_refused(logged_in, fake_daemon):
    response = logged_in.post("/api/v1/classes/video", json={"max_mbit": 40})
    assert response.status_code == 400
    assert fake_daemon.commands("class.set") == []


def test_alert_ack_and_rule_editing(logged_in, fake_daemon):
    fake_daemon.raise_alert("a1")
    headers = {"X-CSRF-Token": _meta_token(logged_in)}
    assert logged_in.post("/api/v1/alerts/a1/ack", headers=headers).status_code == 200
    assert logged_in.get("/api/v1/alerts").get_json()["active"][0]["acked"] is True
    rule = {"metric": "link.wan0.loss", "op": ">", "threshold": "0.02", "for_s": 10, "severity": "critical"}
    assert logged_in.post("/api/v1/alert-rules/wan0-loss", json=rule, headers=headers).status_code == 200
    bad = logged_in.post("/api/v1/alert-rules/x", json={**rule, "op": "=="}, headers=headers)
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "op"
    assert logged_in.delete("/api/v1/alert-rules/wan0-loss", headers=headers).status_code == 200
    assert [c["cmd"] for c in fake_daemon.requests if c["cmd"] not in ("alerts.list", "status")] == [
        "alerts.ack", "alert_rules.set", "alert_rules.delete"]


def test_export_csv_is_a_download_with_a_header_row(logged_in, fake_daemon):
    response = logged_in.get("/api/v1/export?series=link.wan0.down_bps&start=1000&end=1600&step=60")
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["ts", "link.wan0.down_bps"] and len(rows) == 11
    as_json = logged_in.get("/api/v1/export?series=x&start=1000&end=1600&step=60&format=json").get_json()
    assert len(as_json["points"]) == 10


def test_history_range_is_checked(logged_in, fake_daemon):
    assert logged_in.get("/api/v1/metrics/history").status_code == 400
    response = logged_in.get("/api/v1/metrics/history?series=x&start=10&end=5")
    assert response.get_json()["error"]["field"] == "start"


def test_openapi_describes_every_api_route(logged_in, app):
    doc = logged_in.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    described = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule.endswith("openapi.json"):
            continue
        path = rule.rule[len("/api/v1"):].replace("<int:", "<").replace("<", "{").replace(">", "}") \
            .replace("{conn_id}", "{id}").replace("{alert_id}", "{id}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in described, (path, method)


def test_load_balancing_prefers_headroom_times_quality():
    advice = load_balancing({"links": [
        {"name": "a", "predicted_mbit": 100, "quality": 0.9, "up_bps": 0, "down_bps": 0},
        {"name": "b", "predicted_mbit": 100, "quality": 0.45, "up_bps": 0, "down_bps": 0},
        {"name": "c", "predicted_mbit": 10, "quality": 1.0, "up_bps": 20e6, "down_bps": 20e6},
    ]})
    weights = {row["link"]: row["weight"] for row in advice["links"]}
    assert advice["prefer"] == "a"
    assert weights["a"] == pytest.approx(2 * weights["b"], rel=1e-3) and weights["c"] == 0


@pytest.mark.parametrize("path", ["/flows", "/links", "/classes", "/predictions", "/alerts", "/usage",
                                  "/history"])
def test_every_page_renders_with_navigation(logged_in, path):
    page = logged_in.get(path).get_data(as_text=True)
    assert 'aria-current="page"' in page and "pages.js" in page


def test_rules_are_added_and_deleted_through_the_daemon(logged_in, fake_daemon):
    headers = {"X-CSRF-Token": _meta_token(logged_in)}
    added = logged_in.post("/api/v1/rules", json={"match": "tcp port 873", "class": "file"}, headers=headers)
    assert added.status_code == 200
    refused = logged_in.post("/api/v1/rules", json={"match": "rsync please", "class": "file"}, headers=headers)
    assert refused.status_code == 400 and "args.match" in refused.get_json()["error"]["message"]
    assert logged_in.post("/api/v1/rules", json={"match": "", "class": "file"},
                          headers=headers).get_json()["error"]["field"] == "match"
    assert logged_in.delete("/api/v1/rules/3", headers=headers).status_code == 200
    assert logged_in.delete("/api/v1/rules/99", headers=headers).status_code == 404
    assert [r["match"] for r in logged_in.get("/api/v1/classes").get_json()["rules"]][-1] == "host *.backup.example"
