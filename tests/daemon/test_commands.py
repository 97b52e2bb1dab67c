"""Every command of the control socket over a real ipc:// socket: success and each error class."""

from __future__ import annotations

import json
import time
import os
import stat

import pytest

from anabranch.client import messages
from anabranch.daemon import commands
from anabranch.daemon.state import DEFAULT_CLASSES


def test_every_command_is_registered(served):
    listed = served.call("commands")["commands"]
    names = {c.name for c in commands.commands(served.daemon)} | {"commands"}
    assert set(listed) == names
    for required in ("status", "flows", "flow", "mptcp", "links", "classes", "rules.list", "rules.add",
                     "rules.update", "rules.delete", "class.set", "link.set", "alerts.list", "alerts.ack",
                     "alert_rules.list", "alert_rules.set", "predict", "predict.batch", "allocate", "history",
                     "usage", "config.reload"):
        assert required in listed


def test_status_reports_daemon_interfaces_and_totals(served):
    reply = served.call("status")
    assert reply["totals"]["flows"] == 200
    assert [i["name"] for i in reply["interfaces"]] == ["wan0", "lan0"]


def test_status_refuses_arguments(served):
    code, message = served.error("status", verbose=True)
    assert code == messages.E_INVALID and "args.verbose" in message


def test_flows_before_the_first_sweep_is_unavailable(tmp_path, make_served):
    api = make_served(tmp_path)
    try:
        assert api.error("flows")[0] == messages.E_UNAVAILABLE
    finally:
        api.close()


def test_flows_limit_and_sort_by_bytes(served):
    reply = served.call("flows", limit=5, sort="bytes")
    assert reply["count"] == 200 and len(reply["flows"]) == 5
    totals = [f["bytes_up"] + f["bytes_down"] for f in reply["flows"]]
    assert totals == sorted(totals, reverse=True)


def test_flows_filter_by_interface_protocol_and_host(served):
    lan = served.call("flows", iface="lan0", limit=1000)["flows"]
    assert lan and all(f["iface"] == "lan0" for f in lan)
    udp = served.call("flows", proto="udp", limit=1000)["flows"]
    assert udp and all(f["proto"] == "udp" for f in udp)
    host = served.call("flows", host="10.0.0.7", limit=1000)["flows"]
    assert len(host) == 4 and all(f["src"] == "10.0.0.7" for f in host)
    v6 = served.call("flows", host="fd00::1", limit=1000)["flows"]
    assert len(v6) == 4 and all(f["family"] == 6 for f in v6)


def test_flows_filter_errors(served):
    assert served.error("flows", iface="eth9")[0] == messages.E_NOT_FOUND
    assert served.error("flows", host="not-an-ip")[0] == messages.E_INVALID
    assert served.error("flows", proto="ospf")[0] == messages.E_INVALID
    assert served.error("flows", limit=0)[0] == messages.E_INVALID
    assert served.error("flows", sort="name")[0] == messages.E_INVALID
    assert served.error("flows", **{"class": "nosuch"})[0] == messages.E_NOT_FOUND


def test_flows_carry_the_controllers_class_and_reason_and_filter_by_it(served):
    voice = served.call("flows", limit=1000, **{"class": "voice"})["flows"]
    assert voice and all(f["class"] == "voice" for f in voice)
    by_port = [f for f in voice if f["reason"] == "port:voice"]
    assert by_port and all(5060 in (f["sport"], f["dport"]) for f in by_port)
    everything = served.call("flows", limit=1000)["flows"]
    assert {f["class"] for f in everything} >= {"voice", "file", "background", "interactive"}


def test_flow_returns_one_flow_and_grows_its_history(served):
    flow_id = served.call("flows", limit=1)["flows"][0]["id"]
    first = served.call("flow", id=flow_id)
    assert first["flow"]["id"] == flow_id and first["history"] == []
    served.tick(seed=3)
    served.tick(seed=4)
    history = served.call("flow", id=flow_id)["history"]
    assert len(history) == 2 and all(len(point) == 3 for point in history)


def test_flow_errors(served):
    assert served.error("flow", id="0123456789abcdef")[0] == messages.E_NOT_FOUND
    assert served.error("flow", id="XYZ")[0] == messages.E_INVALID
    assert served.error("flow")[0] == messages.E_INVALID


def test_mptcp_answers_with_no_connections_on_plain_traffic(served):
    assert served.call("mptcp") == {"available": True, "count": 0, "connections": []}
    assert served.error("mptcp", limit=-1)[0] == messages.E_INVALID


def test_links_show_capacity_and_where_it_comes_from(served):
    links = {link["name"]: link for link in served.call("links")["links"]}
    assert links["wan0"]["up_mbit"] == 50 and links["wan0"]["up_source"] == "config"
    assert links["lan0"]["up_mbit"] is None and links["lan0"]["up_source"] == "auto"


def test_link_set_number_and_auto(served):
    link = served.call("link.set", name="wan0", up_mbit=80, down_mbit="auto")["link"]
    assert (link["up_mbit"], link["up_source"]) == (80, "api")
    assert (link["down_mbit"], link["down_source"]) == (None, "auto")


def test_link_set_errors(served):
    assert served.error("link.set", name="eth9", up_mbit=5)[0] == messages.E_NOT_FOUND
    assert served.error("link.set", name="wan0", up_mbit="fast")[0] == messages.E_INVALID
    assert served.error("link.set", name="wan0", up_mbit=0)[0] == messages.E_INVALID
    assert served.error("link.set", name="wan0")[0] == messages.E_INVALID


def test_classes_lists_the_default_table(served):
    classes = served.call("classes")["classes"]
    assert [c["name"] for c in classes] == list(DEFAULT_CLASSES)
    voice = classes[0]
    assert (voice["priority"], voice["min_mbit"], voice["max_mbit"], voice["dscp"]) == (3, 0.1, 10.0, 46)


def test_class_set_changes_priority_bounds_and_dscp(served):
    changed = served.call("class.set", name="file", priority=2, min_mbit=1, max_mbit=None, dscp=12)["class"]
    assert changed == {"name": "file", "priority": 2, "min_mbit": 1, "max_mbit": None, "dscp": 12}
    assert served.call("classes")["classes"][3]["dscp"] == 12


def test_class_set_errors(served):
    assert served.error("class.set", name="nosuch", dscp=1)[0] == messages.E_NOT_FOUND
    code, message = served.error("class.set", name="voice", min_mbit=20)
    assert code == messages.E_INVALID and "max_mbit" in message
    assert served.error("class.set", name="voice", dscp=64)[0] == messages.E_INVALID
    assert served.error("class.set", name="voice", priority=4)[0] == messages.E_INVALID
    assert served.error("class.set", name="voice")[0] == messages.E_INVALID
    assert served.error("class.set", name="voice", min_mbit=float("nan"))[0] == messages.E_INVALID


def test_rules_add_update_delete(served):
    before = served.call("rules.list")["rules"]
    rule = served.call("rules.add", rule={"class": "voice", "match": {"proto": "udp", "ports": [7000, [7100, 7200]],
                                                                      "cidrs": ["192.0.2.0/24"],
                                                                      "hosts": ["*.example.com"]}})["rule"]
    assert rule["id"] == "r1" and rule["enabled"] is True
    first = served.call("rules.add", rule={"id": "top", "class": "file", "match": {"ports": [9]}}, position=0)
    assert served.call("rules.list")["rules"][0]["id"] == first["rule"]["id"] == "top"
    updated = served.call("rules.update", id="r1", rule={"enabled": False, "comment": "off for now"})["rule"]
    assert updated["enabled"] is False and updated["match"]["proto"] == "udp"
    assert served.call("rules.delete", id="r1") == {"deleted": "r1"}
    assert served.call("rules.delete", id="top") == {"deleted": "top"}
    assert served.call("rules.list")["rules"] == before


@pytest.mark.parametrize("rule, where", [
    ({"class": "voice"}, "args.rule.match: required"),
    ({"class": "voice", "match": {}}, "needs at least one of"),
    ({"class": "nosuch", "match": {"ports": [1]}}, "unknown class"),
    ({"class": "voice", "match": {"ports": [[9, 1]]}}, "range start"),
    ({"class": "voice", "match": {"ports": [70000]}}, "args.rule.match.ports[0]"),
    ({"class": "voice", "match": {"ports": [[1, 2, 3]]}}, "args.rule.match.ports[0]"),
    ({"class": "voice", "match": {"ports": ["80"]}}, "args.rule.match.ports[0]"),
    ({"class": "voice", "match": {"cidrs": ["10.0.0.0/33"]}}, "args.rule.match.cidrs[0]"),
    ({"class": "voice", "match": {"hosts": ["bad host"]}}, "args.rule.match.hosts[0]"),
    ({"class": "voice", "match": {"ports": [1], "dscp": 3}}, "args.rule.match.dscp: unknown field"),
    ({"class": "voice", "match": {"ports": list(range(65))}}, "args.rule.match.ports: longer than 64"),
    ({"class": "voice", "match": {"ports": [1]}, "id": "has space"}, "args.rule.id"),
])
def test_rules_add_refuses_bad_rules_naming_the_field(served, rule, where):
    code, message = served.error("rules.add", rule=rule)
    assert code == messages.E_INVALID
    assert where in message


def test_rules_errors(served):
    served.call("rules.add", rule={"id": "default-voice", "class": "voice", "match": {"ports": [5060]}})
    assert served.error("rules.add", rule={"id": "default-voice", "class": "voice",
                                           "match": {"ports": [1]}})[0] == messages.E_INVALID
    assert served.error("rules.add", rule={"class": "voice", "match": {"ports": [1]}},
                        position=99)[0] == messages.E_INVALID
    assert served.error("rules.update", id="nosuch", rule={"enabled": False})[0] == messages.E_NOT_FOUND
    assert served.error("rules.update", id="default-voice", rule={})[0] == messages.E_INVALID
    assert served.error("rules.update", id="default-voice", rule={"id": "x"})[0] == messages.E_INVALID
    assert served.error("rules.delete", id="nosuch")[0] == messages.E_NOT_FOUND


def test_alerts_list_ack_and_resolved(served):
    assert served.call("alerts.list") == {"count": 0, "alerts": []}
    with served.lock:
        served.daemon.alerts.raise_alert("link-saturated:wan0", "link-saturated", "warning",
                                         "wan0 above 95 %", now=1000.0, subject="wan0")
    alert = served.call("alerts.list")["alerts"][0]
    assert alert["id"] == "link-saturated:wan0" and alert["acked_at"] is None
    acked = served.call("alerts.ack", id="link-saturated:wan0")["alert"]
    assert acked["acked_at"] is not None
    with served.lock:
        served.daemon.alerts.resolve("link-saturated:wan0", now=1010.0)
    assert served.call("alerts.list")["count"] == 0
    everything = served.call("alerts.list", state="all")["alerts"]
    assert everything[0]["state"] == "resolved" and everything[0]["resolved_at"] == 1010.0


def test_alerts_errors(served):
    assert served.error("alerts.ack", id="nosuch")[0] == messages.E_NOT_FOUND
    assert served.error("alerts.list", state="old")[0] == messages.E_INVALID


def test_alert_rules_set_update_and_delete(served):
    names = [r["name"] for r in served.call("alert_rules.list")["rules"]]
    assert "path_latency_warning" in names                  # the controller's defaults
    new = served.call("alert_rules.set", rule={"name": "many-flows", "metric": "flows.active", "op": ">",
                                               "threshold": 50_000})["rule"]
    assert new["severity"] == "warning" and new["enabled"] is True and new["source"] == "api"
    changed = served.call("alert_rules.set", rule={"name": "many-flows", "threshold": 60_000})["rule"]
    assert changed["threshold"] == 60_000 and changed["metric"] == "flows.active"
    assert served.call("alert_rules.delete", name="many-flows") == {"deleted": "many-flows"}
    assert [r["name"] for r in served.call("alert_rules.list")["rules"]] == names


def test_configured_alert_rules_are_changed_switched_off_and_back(served):
    changed = served.call("alert_rules.set", rule={"name": "path_latency_warning", "threshold": 150})["rule"]
    assert changed["threshold"] == 150 and changed["metric"] == "path.rtt_p95_ms" and changed["source"] == "api"
    served.call("alert_rules.delete", name="path_latency_warning")          # the change undone
    assert {r["name"]: r for r in served.call("alert_rules.list")["rules"]}["path_latency_warning"]["threshold"] == 100
    served.call("alert_rules.delete", name="path_latency_warning")          # a configured rule: off
    rules = {r["name"]: r for r in served.call("alert_rules.list")["rules"]}
    assert rules["path_latency_warning"]["enabled"] is False
    served.call("alert_rules.delete", name="path_latency_warning")          # and on again
    rules = {r["name"]: r for r in served.call("alert_rules.list")["rules"]}
    assert rules["path_latency_warning"]["enabled"] is True and rules["path_latency_warning"]["threshold"] == 100


def test_alert_rules_errors(served):
    code, message = served.error("alert_rules.set", rule={"name": "new-one", "threshold": 1})
    assert code == messages.E_INVALID and "metric" in message
    assert served.error("alert_rules.set", rule={"name": "x", "metric": "mood", "op": ">",
                                                 "threshold": 1})[0] == messages.E_INVALID
    assert served.error("alert_rules.delete", name="nosuch")[0] == messages.E_NOT_FOUND


def test_predict_uses_the_harmonic_mean_stand_in(served):
    reply = served.call("predict", **{"class": "video", "recent_mbps": [4.0, None, 4.0, 1.0]})
    assert reply["method"] == "harmonic_mean"
    prediction = reply["prediction"]
    assert prediction["h1"]["mbit"] == pytest.approx(2.0)
    assert prediction["history_s"] == 3 and prediction["h5"]["p90"] == 4.0


def test_predict_errors(served):
    assert served.error("predict", **{"class": "nosuch", "recent_mbps": [1]})[0] == messages.E_INVALID
    assert served.error("predict", **{"class": "voice", "recent_mbps": []})[0] == messages.E_INVALID
    assert served.error("predict", **{"class": "voice", "recent_mbps": [-1]})[0] == messages.E_INVALID
    assert served.error("predict", **{"class": "voice", "recent_mbps": [float("inf")]})[0] == messages.E_INVALID
    assert served.error("predict", **{"class": "voice", "recent_mbps": [1] * 3601})[0] == messages.E_INVALID
    assert served.error("predict", **{"class": "voice"})[0] == messages.E_INVALID


def test_predict_batch_answers_each_request_in_order(served):
    requests = [{"class": "voice", "recent_mbps": [0.1, 0.1]}, {"class": "file", "recent_mbps": [10, 30]}]
    predictions = served.call("predict.batch", requests=requests)["predictions"]
    assert [p["class"] for p in predictions] == ["voice", "file"]
    assert predictions[1]["h1"]["mbit"] == pytest.approx(15.0)
    assert served.call("predict.batch", requests=[])["predictions"] == []


def test_predict_batch_errors(served):
    code, message = served.error("predict.batch", requests=[{"class": "voice", "recent_mbps": [1]},
                                                            {"class": "nosuch", "recent_mbps": [1]}])
    assert code == messages.E_INVALID and "args.requests[1].class" in message
    assert served.error("predict.batch", requests=[{"class": "voice", "recent_mbps": [1]}] * 1025)[0] \
        == messages.E_INVALID
    assert served.error("predict.batch", requests=[{"class": "voice", "recent_mbps": [1], "x": 1}])[0] \
        == messages.E_INVALID


def test_allocate_serves_priority_three_first_with_headroom(served):
    reply = served.call("allocate", total_mbit=20, demands={"voice": 1, "video": 10, "file": 20, "background": 5})
    plan = {p["class"]: p for p in reply["plan"]}
    assert plan["voice"]["rate_mbit"] == pytest.approx(1.2)
    assert plan["video"]["rate_mbit"] == pytest.approx(12.0)
    assert sum(p["rate_mbit"] for p in reply["plan"]) <= 20 + 1e-9
    assert plan["background"]["rate_mbit"] <= 0.01     # HTB's floor: nothing is left for priority 0


def test_allocate_errors(served):
    assert served.error("allocate", total_mbit=0, demands={})[0] == messages.E_INVALID
    assert served.error("allocate", total_mbit=10, demands={"nosuch": 1})[0] == messages.E_INVALID
    assert served.error("allocate", total_mbit=10, demands={"voice": -1})[0] == messages.E_INVALID
    assert served.error("allocate", total_mbit=10, demands={"Voice!": 1})[0] == messages.E_INVALID


def test_history_of_totals_with_step(served):
    reply = served.call("history", series="total.flows", step=1)
    assert reply["points"] and all(value == 200 for _, value in reply["points"])
    assert served.call("history", series="link.wan0.up_bps", start=0, end=1)["points"] == []


def test_history_errors(served):
    assert served.error("history", series="nosuch")[0] == messages.E_NOT_FOUND
    assert served.error("history", series="total.flows", start=10, end=5)[0] == messages.E_INVALID
    assert served.error("history", series="total.flows", step=0)[0] == messages.E_INVALID


def test_usage_sums_flows_per_lan_host(served):
    reply = served.call("usage", limit=100)
    assert reply["count"] == 50  # 10.0.0.1-49 and fd00::1 (every 50th flow is IPv6)
    assert sum(h["flows"] for h in reply["hosts"]) == 200
    total = served.call("status")["totals"]
    assert sum(h["bytes_up"] for h in reply["hosts"]) == total["bytes_up"]
    assert served.error("usage", sort="name")[0] == messages.E_INVALID


def test_config_reload_keeps_the_running_config_when_the_file_is_bad(served, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[interfaces.wan0]\nrole = "wan"\n')
    served.daemon.reload_source = str(good)
    assert served.call("config.reload") == {"reloaded": True, "source": str(good)}
    bad = tmp_path / "bad.toml"
    bad.write_text('[interfaces.wan0]\nrole = "moon"\n')
    served.daemon.reload_source = str(bad)
    code, message = served.error("config.reload")
    assert code == messages.E_INVALID and "interfaces.wan0.role" in message
    assert served.daemon.config.source == str(good)


def test_snapshot_returns_the_published_flows(served):
    snapshot = served.call("snapshot", topic="flows")
    assert snapshot["count"] == 200 and len(snapshot["flows"]) == 200 and snapshot["seq"] == 2


def test_changes_persist_across_a_restart(tmp_path, make_served):
    api = make_served(tmp_path)
    try:
        api.call("rules.add", rule={"id": "keep", "class": "video", "match": {"hosts": ["*.example.org"]}})
        api.call("class.set", name="voice", dscp=40)
        api.call("link.set", name="wan0", down_mbit=300)
        api.call("alert_rules.set", rule={"name": "busy", "metric": "flows.active", "op": ">", "threshold": 500})
    finally:
        api.close()
    path = tmp_path / "state" / "policy.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    # No temporary file left (the history database lives beside it).
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith("history.db")) == ["policy.json"]
    again = make_served(tmp_path)
    try:
        assert any(r["id"] == "keep" for r in again.call("rules.list")["rules"])
        assert again.call("classes")["classes"][0]["dscp"] == 40
        again.tick()
        assert {l["name"]: l for l in again.call("links")["links"]}["wan0"]["down_mbit"] == 300
        assert any(r["name"] == "busy" for r in again.call("alert_rules.list")["rules"])
    finally:
        again.close()


def test_a_damaged_state_file_is_set_aside_and_defaults_used(tmp_path, make_served):
    state = tmp_path / "state"
    state.mkdir()
    (state / "policy.json").write_text("{not json")
    api = make_served(tmp_path)
    try:
        assert api.call("rules.list")["rules"] == []         # the defaults: no admin rules
        assert any(p.name.startswith("policy.bad-") for p in state.iterdir())
    finally:
        api.close()


def test_an_unwritable_state_dir_answers_unavailable(tmp_path, make_served):
    api = make_served(tmp_path)
    try:
        api.daemon.policy.path = tmp_path / "file-not-dir" / "policy.json"
        (tmp_path / "file-not-dir").write_text("")
        code, message = api.error("class.set", name="voice", dscp=1)
        assert code == messages.E_UNAVAILABLE and "not saved" in message
    finally:
        api.close()


def test_state_file_is_json_an_admin_can_read(served):
    served.call("class.set", name="voice", dscp=41)
    document = json.loads((served.tmp_path / "state" / "policy.json").read_text())
    assert document["v"] == 1 and document["classes"]["voice"]["dscp"] == 41


def test_history_export_reads_the_database_the_controller_writes(served):
    now = time.time()
    served.tick(now=now + 1, seed=5)
    served.tick(now=now + 2, seed=6)
    reply = served.call("history.export", start=now - 100, end=now + 100, format="csv", kinds=["class"])
    lines = reply["content"].splitlines()
    assert lines[0] == "t,resolution_s,kind,subject,metric,value"
    assert len(lines) > 1 and all(line.split(",")[2] == "class" for line in lines[1:])
    document = json.loads(served.call("history.export", start=now - 100, end=now + 100)["content"])
    assert {s["kind"] for s in document["series"]} >= {"total", "class", "link"}
    assert served.error("history.export", start=2.0, end=1.0)[0] == messages.E_INVALID
    assert served.error("history.export", start=1.0, end=2.0, format="xml")[0] == messages.E_INVALID


def test_usage_carries_day_and_month_totals(served):
    served.tick(seed=7)
    reply = served.call("usage", limit=5)
    assert reply["day"] and reply["month"] and reply["quotas"] == []
    assert all({"day_up", "day_down", "month_up", "month_down"} <= set(h) for h in reply["hosts"])
    assert any(h["day_down"] > 0 for h in reply["hosts"])
