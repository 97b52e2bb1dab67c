"""REST JSON under /api/v1: the daemon's commands for scripts and for the pages' scripts.

Every answer is JSON.  A command this daemon lacks (or a silent daemon) is 503
`not_available`; the daemon's own refusals keep their meaning (400 invalid, 404
not found).  The same login gate applies, plus bearer tokens for scripts.
"""

from __future__ import annotations

import csv
import io
import math
import re
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from anabranch.client import CommandFailed, messages

from .control import NotAvailable, control
from .openapi import document

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# HTTP status for each of the daemon's error codes.
STATUS_OF_CODE = {messages.E_INVALID: 400, messages.E_NOT_FOUND: 404, messages.E_TOO_LARGE: 413,
                  messages.E_UNAVAILABLE: 503, messages.E_TIMEOUT: 503}

# What a class may be set to; the daemon validates again (and knows the link speeds).
CLASS_FIELDS = {"priority": (int, 0, 3), "min_mbit": (float, 0.0, 100_000.0),
                "max_mbit": (float, 0.0, 100_000.0), "dscp": (int, 0, 63)}
ALERT_RULE_FIELDS = {"metric": str, "op": str, "threshold": float, "for_s": float, "severity": str}
ALERT_OPS = (">", ">=", "<", "<=")
SEVERITIES = ("info", "warning", "critical")
# The daemon's alert metrics (controller/alerts.py METRICS; a test keeps them equal).
ALERT_METRICS = ("path.rtt_p95_ms", "path.loss_pct", "path.jitter_ms", "path.score", "link.utilisation_pct",
                 "flows.active", "quota.used_pct", "datapath.events_lost", "datapath.map_fill_pct",
                 "datapath.errors", "link.down", "predict.anomaly", "history.write_errors")
RULE_PROTOS = ("any", "tcp", "udp")
HISTORY_MAX_POINTS = 20_000


class InvalidInput(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@bp.errorhandler(NotAvailable)
def _not_available(exc: NotAvailable):
    return jsonify(error={"code": "not_available", "command": exc.cmd,
                          "message": f"Not available from this daemon yet: {exc.reason}."}), 503


@bp.errorhandler(CommandFailed)
def _command_failed(exc: CommandFailed):
    return jsonify(error={"code": exc.code, "message": exc.message}), STATUS_OF_CODE.get(exc.code, 502)


@bp.errorhandler(InvalidInput)
def _invalid(exc: InvalidInput):
    return jsonify(error={"code": "invalid_argument", "field": exc.field, "message": str(exc)}), 400


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("body", "must be a JSON object (Content-Type: application/json)")
    return body


def _number(body: dict[str, Any], name: str, kind: type, low: float, high: float) -> int | float:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(str(value).strip())
        except ValueError:
            raise InvalidInput(name, f"must be a number, got {body[name]!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidInput(name, f"must be between {low:g} and {high:g}, got {value:g}")
    if kind is int:
        if value != int(value):
            raise InvalidInput(name, f"must be a whole number, got {value:g}")
        return int(value)
    return float(value)


def validate_class_settings(body: dict[str, Any]) -> dict[str, Any]:
    """The fields of a class.set request, checked; InvalidInput names the first bad one."""
    unknown = sorted(set(body) - set(CLASS_FIELDS))
    if unknown:
        raise InvalidInput(unknown[0], f"unknown field; one of {', '.join(CLASS_FIELDS)}")
    settings = {name: _number(body, name, *spec) for name, spec in CLASS_FIELDS.items() if name in body}
    if not settings:
        raise InvalidInput("body", f"give at least one of {', '.join(CLASS_FIELDS)}")
    if "min_mbit" in settings and "max_mbit" in settings and settings["min_mbit"] > settings["max_mbit"]:
        raise InvalidInput("min_mbit", f"must not exceed max_mbit ({settings['max_mbit']:g})")
    return settings


def validate_alert_rule(body: dict[str, Any]) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    for name, kind in ALERT_RULE_FIELDS.items():
        if name not in body:
            raise InvalidInput(name, "is required")
        if kind is float:
            rule[name] = _number(body, name, float, 0.0 if name == "for_s" else -1e12, 1e12)
        else:
            value = str(body[name]).strip()
            if not value or len(value) > 64:
                raise InvalidInput(name, "must be a non-empty text of at most 64 characters")
            rule[name] = value
    summary = str(body.get("summary") or "").strip()
    if len(summary) > 200:
        raise InvalidInput("summary", "must be at most 200 characters")
    if summary:
        rule["summary"] = summary
    if rule["metric"] not in ALERT_METRICS:
        raise InvalidInput("metric", f"must be one of {', '.join(ALERT_METRICS)}, got {rule['metric']!r}")
    if rule["op"] not in ALERT_OPS:
        raise InvalidInput("op", f"must be one of {' '.join(ALERT_OPS)}, got {rule['op']!r}")
    if rule["severity"] not in SEVERITIES:
        raise InvalidInput("severity", f"must be one of {', '.join(SEVERITIES)}, got {rule['severity']!r}")
    return rule


# ---- reading ------------------------------------------------------------------

@bp.get("/flows")
def flows():
    args: dict[str, Any] = {}
    if "limit" in request.args:
        args["limit"] = int(_number(dict(request.args), "limit", int, 1, 100_000))
    for name in ("sort", "iface", "proto", "host"):
        if request.args.get(name):
            args[name] = request.args[name]
    return jsonify(control().call("flows", **args))


@bp.get("/connections")
def connections():
    return jsonify(control().call("mptcp"))


@bp.get("/connections/<conn_id>")
def connection(conn_id: str):
    for conn in control().call("mptcp").get("connections", []):
        if str(conn.get("id")) == conn_id:
            return jsonify(connection=conn)
    return jsonify(error={"code": "not_found", "message": f"no MPTCP connection {conn_id!r}"}), 404


@bp.get("/links")
def links():
    """The daemon's links, each with its latest prediction (now, next 1 s and 5 s, the
    capacity in use and the confidence) from the `predictions` topic when there is one."""
    reply = control().call("links")
    latest = published_predictions(current_app.extensions["anabranch.relay"]) or {}
    predicted = {p.get("name"): p for p in latest.get("links") or [] if isinstance(p, dict)}
    for link in reply.get("links") or []:
        forecast = predicted.get(link.get("name"))
        if forecast is not None:
            link["prediction"] = {k: forecast.get(k) for k in ("now_mbit", "next_1s_mbit", "next_5s_mbit",
                                                                "capacity_mbit", "confidence")}
    return jsonify(reply)


@bp.get("/classes")
def classes():
    return jsonify(control().call("classes"))


@bp.get("/alerts")
def alerts():
    """Active alerts, newest first, then (state=all, the default) the recently resolved ones."""
    state = request.args.get("state", "all")
    if state not in ("active", "all"):
        raise InvalidInput("state", f"must be active or all, got {state!r}")
    return jsonify(control().call("alerts.list", state=state, limit=1000))


@bp.get("/alert-rules")
def alert_rules():
    return jsonify(control().call("alert_rules.list"))


@bp.get("/predictions")
def predictions():
    # The daemon's periodic predictions are the `predictions` topic; the `predict`
    # command is the operation that predicts from measurements a caller supplies.
    latest = published_predictions(current_app.extensions["anabranch.relay"])
    if latest is None:
        raise NotAvailable("predictions", "the daemon publishes no predictions yet")
    return jsonify(latest)


def published_predictions(relay) -> dict[str, Any] | None:
    """The latest `predictions` message, or None while the daemon has none to give."""
    latest = relay.latest("predictions")
    if not latest or latest.get("available") is False:
        return None
    return {k: v for k, v in latest.items() if k not in ("v", "type", "seq")}


@bp.get("/usage")
def usage():
    return jsonify(control().call("usage"))


def class_rates(flows_message: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    """Per-class upload/download rate and flow count, summed over the live flows."""
    totals: dict[str, dict[str, float]] = {}
    for flow in (flows_message or {}).get("flows") or []:
        name = flow.get("class") or "unclassified"
        entry = totals.setdefault(name, {"up_bps": 0.0, "down_bps": 0.0, "flows": 0,
                                         "bytes_up": 0.0, "bytes_down": 0.0})
        entry["up_bps"] += float(flow.get("bps_up") or 0)
        entry["down_bps"] += float(flow.get("bps_down") or 0)
        entry["bytes_up"] += float(flow.get("bytes_up") or 0)
        entry["bytes_down"] += float(flow.get("bytes_down") or 0)
        entry["flows"] += 1
    return totals


@bp.get("/metrics/realtime")
def realtime():
    relay = current_app.extensions["anabranch.relay"]
    state = relay.latest("state")
    if state is None:
        raise NotAvailable("state", "no state received from the daemon yet")
    return jsonify(daemon={"reachable": relay.reachable}, ts=state.get("ts"),
                   totals=state.get("totals"), interfaces=state.get("interfaces"),
                   classes=class_rates(relay.latest("flows")))


def _history_args() -> dict[str, Any]:
    query = dict(request.args)
    series = query.get("series", "").strip()
    if not series:
        raise InvalidInput("series", "is required, e.g. series=link.wan0.down_bps")
    now = time.time()
    end = float(_number(query, "end", float, 0, 1e11)) if "end" in query else now
    start = float(_number(query, "start", float, 0, 1e11)) if "start" in query else end - 3600
    if start >= end:
        raise InvalidInput("start", "must be before end")
    step = float(_number(query, "step", float, 1, 1e8)) if "step" in query else max(1.0, (end - start) / 360)
    if (end - start) / step > HISTORY_MAX_POINTS:
        raise InvalidInput("step", f"too small: at most {HISTORY_MAX_POINTS} points per request")
    return {"series": series, "start": start, "end": end, "step": step}


@bp.get("/metrics/history")
def history():
    return jsonify(control().call("history", **_history_args()))


@bp.get("/export")
def export():
    args = _history_args()
    fmt = request.args.get("format", "csv")
    if fmt not in ("csv", "json"):
        raise InvalidInput("format", f"must be csv or json, got {fmt!r}")
    reply = control().call("history", **args)
    # ASCII only: a header must be Latin-1, and a download name must not carry a path.
    name = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "_" for c in args["series"])
    disposition = f'attachment; filename="anabranch-{name}.{fmt}"'
    if fmt == "json":
        response = jsonify(reply)
    else:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["ts", args["series"]])
        for point in reply.get("points") or []:
            writer.writerow(point[:2])
        response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = disposition
    return response


def path_of(link: dict[str, Any]) -> dict[str, float | None]:
    """A link's path measurements, normalised: RTT p50/p95 and jitter in ms, loss and
    quality as 0..1.  The daemon puts the controller's path statistics under `quality`
    (loss_pct and score 0-100), or None before its first tick."""
    stats = link.get("quality")
    if not isinstance(stats, dict):
        return {"rtt_p50_ms": None, "rtt_p95_ms": None, "jitter_ms": None, "loss": None,
                "quality": None if stats is None else float(stats)}

    def scaled(key: str) -> float | None:
        value = stats.get(key)
        return None if value is None else float(value) / 100

    return {"rtt_p50_ms": stats.get("rtt_p50_ms"), "rtt_p95_ms": stats.get("rtt_p95_ms"),
            "jitter_ms": stats.get("jitter_ms"), "loss": scaled("loss_pct"), "quality": scaled("score")}


def _capacity_mbit(link: dict[str, Any], direction: str) -> float | None:
    """A link's capacity one way: the predicted one when the daemon has it, else the configured one."""
    for key in (f"predicted_{direction}_mbit", f"{direction}_mbit"):
        value = link.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


EXPORT_KINDS = ("total", "class", "link", "host", "connection")


@bp.get("/export/history")
def export_history():
    """The daemon's history database over a range (`history.export`), as a download."""
    query = dict(request.args)
    end = float(_number(query, "end", float, 0, 1e11)) if "end" in query else time.time()
    start = float(_number(query, "start", float, 0, 1e11)) if "start" in query else end - 3600
    if start >= end:
        raise InvalidInput("start", "must be before end")
    fmt = request.args.get("format", "csv")
    if fmt not in ("csv", "json"):
        raise InvalidInput("format", f"must be csv or json, got {fmt!r}")
    args: dict[str, Any] = {"start": start, "end": end, "format": fmt}
    kinds = [k for k in request.args.get("kinds", "").split(",") if k]
    for kind in kinds:
        if kind not in EXPORT_KINDS:
            raise InvalidInput("kinds", f"each one of {', '.join(EXPORT_KINDS)}, got {kind!r}")
    if kinds:
        args["kinds"] = kinds
    reply = control().call("history.export", **args)
    content = reply.get("content", "")
    response = Response(content if isinstance(content, str) else str(content),
                        mimetype="text/csv" if fmt == "csv" else "application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="anabranch-history-{int(start)}-{int(end)}.{fmt}"'
    return response


def load_balancing(links_reply: dict[str, Any]) -> dict[str, Any]:
    """New MPTCP subflows and flows per WAN link in proportion to headroom times quality.

    Headroom is the smaller of the two directions' capacity (predicted, else
    configured) minus what the link carries now; a link whose capacity is
    unknown ("auto" before any estimate) or has no headroom gets no weight.  A
    link without a quality score yet counts as quality 1.
    """
    rows = []
    for link in links_reply.get("links") or []:
        if link.get("role", "wan") != "wan":
            continue
        spare = []
        for direction in ("up", "down"):
            capacity = _capacity_mbit(link, direction)
            if capacity is not None:
                spare.append(capacity - float(link.get(f"{direction}_bps") or 0) / 1e6)
        headroom = max(0.0, min(spare)) if spare else 0.0
        quality = path_of(link)["quality"]
        quality = 1.0 if quality is None else min(1.0, max(0.0, quality))
        rows.append({"link": link.get("name"), "headroom_mbit": round(headroom, 3),
                     "quality": quality, "score": headroom * quality})
    total = sum(row["score"] for row in rows)
    for row in rows:
        row["weight"] = round(row["score"] / total, 4) if total > 0 else 0.0
        del row["score"]
    best = max(rows, key=lambda row: row["weight"], default=None)
    return {"links": rows, "prefer": best["link"] if best and best["weight"] > 0 else None,
            "basis": "capacity (predicted, else configured) minus current load, times path quality"}


@bp.get("/recommendations/load-balancing")
def recommendations():
    advice = load_balancing(control().call("links"))
    # The daemon's own choice of path per class (controller/paths.py), from the live state.
    state = current_app.extensions["anabranch.relay"].latest("state") or {}
    advice["best_path_per_class"] = state.get("recommendation") or {}
    return jsonify(advice)


@bp.get("/openapi.json")
def openapi():
    return jsonify(document())


# ---- changing (admin only; the gate refuses viewers, CSRF applies to sessions) ----

@bp.post("/classes/<name>")
def set_class(name: str):
    settings = validate_class_settings(_json_body())
    return jsonify(control().call("class.set", name=name, **settings))


def _items(body: dict[str, Any], name: str) -> list[Any]:
    """A list field given as a list (scripts) or as text separated by commas or spaces (forms)."""
    value = body.get(name)
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [item for item in re.split(r"[,\s]+", value.strip()) if item]
    if isinstance(value, list):
        return value
    raise InvalidInput(name, f"must be a list or text separated by commas, got {value!r}")


def _port(item: Any) -> int | list[int]:
    """A port (80) or a range ("6000-6010" or [6000, 6010]), as rules.add wants it."""
    if isinstance(item, list) and len(item) == 2:
        low, high = (_one_port(p) for p in item)
        return [low, high]
    if isinstance(item, str) and "-" in item:
        low, high = (_one_port(p) for p in item.split("-", 1))
        return [low, high]
    return _one_port(item)


def _one_port(item: Any) -> int:
    try:
        port = int(str(item).strip())
    except ValueError:
        raise InvalidInput("ports", f"must be ports or ranges like 873 or 6000-6010, got {item!r}") from None
    if not 0 <= port <= 65535:
        raise InvalidInput("ports", f"a port is 0 to 65535, got {port}")
    return port


def validate_rule(body: dict[str, Any]) -> dict[str, Any]:
    """The `rules.add` arguments from a form or a script: {rule: {class, match, comment}, position}.

    `match` may be given whole (the daemon's map) or as fields `proto`, `ports`,
    `cidrs`, `hosts`; the daemon checks the rest (known class, CIDR syntax)."""
    name = str(body.get("class", "")).strip()
    if not name or len(name) > 32:
        raise InvalidInput("class", "must be a class name of at most 32 characters")
    if isinstance(body.get("match"), dict):
        match = body["match"]
    else:
        proto = str(body.get("proto") or "any").strip()
        if proto not in RULE_PROTOS:
            raise InvalidInput("proto", f"must be one of {', '.join(RULE_PROTOS)}, got {proto!r}")
        match = {"proto": proto}
        ports = [_port(p) for p in _items(body, "ports")]
        cidrs = [str(c) for c in _items(body, "cidrs")]
        hosts = [str(h) for h in _items(body, "hosts")]
        for key, values in (("ports", ports), ("cidrs", cidrs), ("hosts", hosts)):
            if values:
                match[key] = values
        if len(match) == 1:
            raise InvalidInput("ports", "give at least one of ports, networks (CIDR) or host names")
    rule: dict[str, Any] = {"class": name, "match": match}
    comment = str(body.get("comment") or "").strip()
    if comment:
        rule["comment"] = comment[:200]
    args: dict[str, Any] = {"rule": rule}
    if body.get("position") not in (None, ""):
        args["position"] = int(_number(body, "position", int, 0, 10_000))
    return args


@bp.get("/rules")
def rules():
    return jsonify(control().call("rules.list"))


@bp.post("/rules")
def add_rule():
    """A classification rule: class plus proto/ports/cidrs/hosts (or the daemon's `match` map)."""
    return jsonify(control().call("rules.add", **validate_rule(_json_body())))


@bp.delete("/rules/<rule_id>")
def delete_rule(rule_id: str):
    return jsonify(control().call("rules.delete", id=rule_id))


@bp.post("/alerts/<alert_id>/ack")
def ack_alert(alert_id: str):
    return jsonify(control().call("alerts.ack", id=alert_id))


@bp.post("/alert-rules/<name>")
def set_alert_rule(name: str):
    rule = validate_alert_rule(_json_body())
    return jsonify(control().call("alert_rules.set", rule={"name": name, **rule}))


@bp.delete("/alert-rules/<name>")
def delete_alert_rule(name: str):
    return jsonify(control().call("alert_rules.delete", name=name))
