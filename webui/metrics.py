"""Prometheus text exposition at /metrics, built from the live stream and the daemon's
commands (each part is left out when this daemon does not offer it).

Who may scrape without logging in is `METRICS_AUTH`: "loopback" (default: no
credentials from 127.0.0.1/::1, a session or bearer token from anywhere else),
"none" (open to all) or "always".
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from anabranch.client import CommandFailed

from . import auth
from .api import class_rates, path_of, published_predictions
from .control import NotAvailable, control

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
POLICIES = ("loopback", "none", "always")


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class Exposition:
    """Families in the text format: HELP and TYPE once, then the samples."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, kind: str, help_text: str, value: Any, **labels: Any) -> None:
        number = _number(value)
        if number is None:
            return
        family = self._families.setdefault(name, (kind, help_text, []))
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items() if v is not None)
        family[2].append(f"{name}{{{label_text}}} {number!r}" if label_text else f"{name} {number!r}")

    def declare(self, name: str, kind: str, help_text: str) -> None:
        self._families.setdefault(name, (kind, help_text, []))

    def text(self) -> str:
        lines = []
        for name, (kind, help_text, samples) in self._families.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(samples)
        return "\n".join(lines) + "\n"


def _items(reply: dict[str, Any] | None, key: str) -> Iterable[dict[str, Any]]:
    for item in (reply or {}).get(key) or []:
        if isinstance(item, dict):
            yield item


class _Asker:
    """Optional commands for one scrape; after one timeout it stops asking, so a
    silent daemon costs one timeout, not one per command."""

    def __init__(self, ctl) -> None:
        self._ctl = ctl
        self._silent = False

    def optional(self, cmd: str) -> dict[str, Any] | None:
        if self._silent:
            return None
        try:
            return self._ctl.call(cmd)
        except NotAvailable as exc:
            self._silent = exc.unreachable
            return None
        except CommandFailed as exc:  # a refusal must cost this section, never the scrape
            log.warning("/metrics: the daemon refused %s: %s", cmd, exc)
            return None


def build(relay, ctl) -> str:
    ctl = _Asker(ctl)
    out = Exposition()
    out.add("anabranch_daemon_up", "gauge", "1 when the daemon's state stream is live", bool(relay.reachable))
    state = relay.latest("state") or {}
    totals = state.get("totals") or {}
    out.add("anabranch_flows_active", "gauge", "Active flows tracked by the datapath", totals.get("flows"))
    for direction in ("up", "down"):
        out.add("anabranch_bytes_total", "counter", "Bytes through the gateway", totals.get(f"bytes_{direction}"),
                direction=direction)
    for iface in state.get("interfaces") or []:
        for direction in ("up", "down"):
            out.add("anabranch_interface_rate_bits_per_second", "gauge", "Rate per interface",
                    iface.get(f"{direction}_bps"), interface=iface.get("name"), role=iface.get("role"),
                    direction=direction)

    for name, entry in class_rates(relay.latest("flows")).items():
        for direction in ("up", "down"):
            out.add("anabranch_class_rate_bits_per_second", "gauge", "Rate per traffic class (live flows)",
                    entry[f"{direction}_bps"], **{"class": name, "direction": direction})
            out.add("anabranch_class_flow_bytes", "gauge", "Bytes of the live flows per class",
                    entry[f"bytes_{direction}"], **{"class": name, "direction": direction})
        out.add("anabranch_class_flows", "gauge", "Live flows per class", entry["flows"], **{"class": name})

    classes = ctl.optional("classes")
    shaping = (classes or {}).get("shaping") or {}
    for link in _items(shaping, "links"):
        for cls in _items(link, "classes"):
            labels = {"class": cls.get("name"), "interface": link.get("iface"), "direction": link.get("direction")}
            out.add("anabranch_class_sent_bytes_total", "counter", "Bytes sent by the class's HTB qdisc class",
                    cls.get("sent_bytes"), **labels)
            out.add("anabranch_class_sent_packets_total", "counter", "Packets sent by the class",
                    cls.get("sent_packets"), **labels)
            out.add("anabranch_class_dropped_packets_total", "counter", "Packets the class dropped",
                    cls.get("dropped"), **labels)
            out.add("anabranch_class_overlimits_total", "counter", "Times the class hit its limit",
                    cls.get("overlimits"), **labels)
            rate, ceil = _number(cls.get("rate_bps")), _number(cls.get("ceil_bps"))
            out.add("anabranch_class_rate_mbit", "gauge", "HTB rate of the class in the kernel",
                    None if rate is None else rate / 1e6, **labels)
            out.add("anabranch_class_ceil_mbit", "gauge", "HTB ceil of the class in the kernel",
                    None if ceil is None else ceil / 1e6, **labels)

    links = ctl.optional("links")
    for link in _items(links, "links"):
        name = link.get("name")
        path = path_of(link)
        out.add("network_latency_milliseconds", "gauge", "Path RTT per link", path["rtt_p50_ms"],
                link=name, quantile="0.5")
        out.add("network_latency_milliseconds", "gauge", "Path RTT per link", path["rtt_p95_ms"],
                link=name, quantile="0.95")
        out.add("network_jitter_milliseconds", "gauge", "RTT jitter per link", path["jitter_ms"], link=name)
        out.add("packet_loss_ratio", "gauge", "Loss ratio per link (0..1)", path["loss"], link=name)
        for direction in ("up", "down"):
            bps = _number(link.get(f"{direction}_bps"))
            out.add("network_bandwidth_mbps", "gauge", "Throughput per link",
                    None if bps is None else bps / 1e6, link=name, direction=direction)
        for direction in ("up", "down"):
            out.add("anabranch_link_capacity_mbit", "gauge", "Capacity per link (configured or set by the API)",
                    link.get(f"{direction}_mbit"), link=name, direction=direction)
        out.add("anabranch_path_quality", "gauge", "Path quality score (0..1)", path["quality"], link=name)

    mptcp = ctl.optional("mptcp")
    if mptcp is not None:
        connections = list(_items(mptcp, "connections"))
        subflows = [s for c in connections for s in c.get("subflows") or []
                    if isinstance(s, dict) and not s.get("ended")]
        out.add("mptcp_connections_total", "gauge", "MPTCP connections seen through the gateway",
                len(connections))
        out.add("mptcp_subflows_active", "gauge", "Active MPTCP subflows", len(subflows))
        by_link: dict[str, list[dict[str, Any]]] = {}
        for sub in subflows:
            by_link.setdefault(str(sub.get("iface")), []).append(sub)
        all_bytes = sum(float(s.get("bytes_up") or 0) + float(s.get("bytes_down") or 0) for s in subflows)
        loss = {link.get("name"): path_of(link)["loss"] for link in _items(links, "links")}
        for link_name, subs in sorted(by_link.items()):
            link_bytes = sum(float(s.get("bytes_up") or 0) + float(s.get("bytes_down") or 0) for s in subs)
            out.add("mptcp_bandwidth_utilization", "gauge", "Share of MPTCP bytes carried per link (0..1)",
                    link_bytes / all_bytes if all_bytes else 0.0, link=link_name)
            rtts = sorted(r for r in (_number(s.get("rtt_ms")) for s in subs) if r is not None)
            if rtts:
                out.add("mptcp_latency_p95", "gauge", "95th percentile subflow RTT per link, ms",
                        rtts[min(len(rtts) - 1, math.ceil(0.95 * len(rtts)) - 1)], link=link_name)
            out.add("mptcp_packet_loss_rate", "gauge", "Loss ratio of the links MPTCP subflows use",
                    loss.get(link_name), link=link_name)

    alerts = ctl.optional("alerts.list")
    if alerts is not None:
        active = [a for a in _items(alerts, "alerts") if a.get("state") == "active"]
        out.declare("anabranch_alerts_active", "gauge", "Active alerts per severity")
        for severity in ("info", "warning", "critical"):
            out.add("anabranch_alerts_active", "gauge", "Active alerts per severity",
                    sum(1 for a in active if a.get("severity") == severity), severity=severity)

    prediction = published_predictions(relay)
    for item in _items(prediction, "classes"):
        out.add("anabranch_prediction_demand_mbit", "gauge", "Predicted demand per class",
                item.get("next_1s_mbit"), **{"class": item.get("name"), "horizon": "1s"})
        out.add("anabranch_prediction_demand_mbit", "gauge", "Predicted demand per class",
                item.get("next_5s_mbit"), **{"class": item.get("name"), "horizon": "5s"})
    for item in _items(prediction, "links"):
        out.add("anabranch_link_predicted_capacity_mbit", "gauge", "Predicted capacity per link",
                item.get("capacity_mbit"), link=item.get("name"))
        confidence = _number(item.get("confidence"))   # the predictor's is a percentage
        out.add("anabranch_link_prediction_confidence", "gauge", "Confidence of the link's prediction (0..1)",
                None if confidence is None else confidence / 100, link=item.get("name"))
    if prediction is not None:
        out.add("anabranch_prediction_error_mbit", "gauge", "Mean absolute error of recent predictions",
                (prediction.get("error") or {}).get("mae_mbit"))
    return out.text()


def _from_loopback() -> bool:
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


@bp.get("/metrics")
def metrics():
    policy = current_app.config["METRICS_AUTH"]
    open_here = policy == "none" or (policy == "loopback" and _from_loopback())
    if not open_here and auth.role() is None:
        return jsonify(error={"code": "unauthorized", "message": "log in or send a bearer token"}), 401
    return Response(build(current_app.extensions["anabranch.relay"], control()), content_type=CONTENT_TYPE)
