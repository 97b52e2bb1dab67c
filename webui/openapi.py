"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

_ERROR = {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}}}
_OBJ = {"type": "object"}

# (method, path, summary, daemon command or None, parameters, request body schema)
_ROUTES: list[tuple[str, str, str, str | None, list[str], dict[str, Any] | None]] = [
    ("get", "/status", "Latest daemon state and whether the daemon is reachable", None, [], None),
    ("get", "/metrics/realtime", "Totals, interfaces and per-class rates from the live stream", None, [], None),
    ("get", "/metrics/history", "One time series between start and end", "history",
     ["series", "start", "end", "step"], None),
    ("get", "/export", "A time series as a CSV or JSON download", "history",
     ["series", "start", "end", "step", "format"], None),
    ("get", "/export/history", "The history database over a range as a CSV or JSON download",
     "history.export", ["start", "end", "format", "kinds"], None),
    ("get", "/flows", "Active flows, filtered and sorted", "flows", ["limit", "sort", "iface", "proto", "host"],
     None),
    ("get", "/connections", "MPTCP connections with their subflows", "mptcp", [], None),
    ("get", "/connections/{id}", "One MPTCP connection", "mptcp", ["id"], None),
    ("get", "/links", "WAN links: capacity, prediction, RTT, jitter, loss, quality", "links", [], None),
    ("get", "/classes", "Traffic classes with live counts, and the HTB plan read back from the kernel",
     "classes", [], None),
    ("post", "/classes/{name}", "Change a class's priority, minimum, maximum or DSCP (admin)", "class.set",
     ["name"], {"type": "object", "properties": {
         "priority": {"type": "integer", "minimum": 0, "maximum": 3},
         "min_mbit": {"type": "number", "minimum": 0}, "max_mbit": {"type": "number", "minimum": 0},
         "dscp": {"type": "integer", "minimum": 0, "maximum": 63}}}),
    ("get", "/rules", "Classification rules in match order", "rules.list", [], None),
    ("post", "/rules", "Add a classification rule (admin); the daemon checks classes and networks", "rules.add",
     [], {"type": "object", "required": ["class"], "properties": {
         "class": {"type": "string", "maxLength": 32},
         "proto": {"enum": ["any", "tcp", "udp"]},
         "ports": {"description": "ports and ranges: \"873, 6000-6010\" or [873, [6000, 6010]]"},
         "cidrs": {"description": "networks: \"10.0.0.0/8 fd00::/8\" or a list"},
         "hosts": {"description": "host names (SNI, HTTP Host, DNS), \"*.example\" or a list"},
         "match": {"type": "object", "description": "the daemon's match map instead of the four fields"},
         "comment": {"type": "string", "maxLength": 200},
         "position": {"type": "integer", "minimum": 0}}}),
    ("delete", "/rules/{id}", "Delete a classification rule by its id (admin)", "rules.delete", ["id"], None),
    ("get", "/alerts", "Active alerts, then (state=all) the recently resolved ones", "alerts.list",
     ["state"], None),
    ("post", "/alerts/{id}/ack", "Acknowledge an alert (admin)", "alerts.ack", ["id"], None),
    ("get", "/alert-rules", "Alert rules", "alert_rules.list", [], None),
    ("post", "/alert-rules/{name}", "Create or replace an alert rule (admin)", "alert_rules.set", ["name"],
     {"type": "object", "required": ["metric", "op", "threshold", "for_s", "severity"], "properties": {
         "metric": {"enum": ["path.rtt_p95_ms", "path.loss_pct", "path.jitter_ms", "path.score",
                             "link.utilisation_pct", "flows.active", "quota.used_pct", "datapath.events_lost",
                             "datapath.map_fill_pct", "datapath.errors", "link.down",
                             "predict.anomaly", "history.write_errors"]},
         "summary": {"type": "string", "maxLength": 200, "description": "the alert's message"},
         "op": {"enum": [">", ">=", "<", "<="]},
         "threshold": {"type": "number"}, "for_s": {"type": "number", "minimum": 0},
         "severity": {"enum": ["info", "warning", "critical"]}}}),
    ("delete", "/alert-rules/{name}", "Delete an alert rule (admin)", "alert_rules.delete", ["name"], None),
    ("get", "/predictions", "Predicted demand per class and capacity per link", "predict", [], None),
    ("get", "/usage", "Traffic per LAN host", "usage", [], None),
    ("get", "/recommendations/load-balancing", "Suggested share of new flows per link, and the best path per class",
     "links", [], None),
]

_PARAM_DOC = {
    "series": "series name, e.g. total.down_bps or link.wan0.down_bps",
    "start": "unix seconds (default: end - 1 h)", "end": "unix seconds (default: now)",
    "step": "seconds per point", "format": "csv or json", "limit": "most rows", "sort": "rate, bytes, "
    "first_seen or last_seen", "iface": "interface name", "proto": "tcp, udp, icmp...", "host": "an address",
    "id": "identifier", "name": "name", "state": "active, or all (default) for resolved ones too",
    "kinds": "comma-separated: total, class, link, host, connection (default: all)",
}


def _parameter(name: str, path: str) -> dict[str, Any]:
    where = "path" if "{" + name + "}" in path else "query"
    numeric = name in ("start", "end", "step", "limit")
    return {"name": name, "in": where, "required": where == "path" or name == "series",
            "description": _PARAM_DOC.get(name, name),
            "schema": {"type": "number" if numeric else "string"}}


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for method, path, summary, command, params, body in _ROUTES:
        description = f"Daemon command `{command}`." if command else "From the live state stream."
        operation: dict[str, Any] = {
            "summary": summary, "description": description,
            "parameters": [_parameter(p, path) for p in params],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": _OBJ}}},
                "401": {"description": "no session or token",
                        "content": {"application/json": {"schema": _ERROR}}},
                "503": {"description": "not available from this daemon yet, or daemon unreachable",
                        "content": {"application/json": {"schema": _ERROR}}},
            },
        }
        if method != "get":
            operation["responses"]["400"] = {"description": "invalid input (field named)",
                                             "content": {"application/json": {"schema": _ERROR}}}
            operation["responses"]["403"] = {"description": "viewer role: read-only",
                                             "content": {"application/json": {"schema": _ERROR}}}
        if body is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Anabranch web UI API", "version": "1",
                 "description": "Read and steer the gateway. Browsers use the session cookie plus the "
                                "X-CSRF-Token header on changes; scripts use `Authorization: Bearer <token>` "
                                "from `anabranch-webui create-token`."},
        "servers": [{"url": "/api/v1"}],
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "anabranch_session"}}},
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
    }
