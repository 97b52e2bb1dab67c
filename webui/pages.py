"""The pages: server-rendered shells with navigation; their tables and charts are
filled by static/pages.js from /api/v1 and the live websocket."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("pages", __name__)

# (endpoint, path, title): the navigation, in order.
NAV = [
    ("dashboard.index", "Overview"),
    ("pages.flows", "Flows"),
    ("pages.links", "Links"),
    ("pages.classes", "Classes"),
    ("pages.predictions", "Predictions"),
    ("pages.alerts", "Alerts"),
    ("pages.usage", "Usage"),
    ("pages.history", "History"),
]


@bp.app_context_processor
def _navigation():
    return {"nav": NAV}


@bp.route("/flows")
def flows():
    return render_template("flows.html", page="flows")


@bp.route("/links")
def links():
    return render_template("links.html", page="links")


@bp.route("/classes")
def classes():
    return render_template("classes.html", page="classes")


@bp.route("/predictions")
def predictions():
    return render_template("predictions.html", page="predictions")


@bp.route("/alerts")
def alerts():
    return render_template("alerts.html", page="alerts")


@bp.route("/usage")
def usage():
    return render_template("usage.html", page="usage")


@bp.route("/history")
def history():
    return render_template("history.html", page="history")
