"""The Flask application factory: configuration, security policy and the blueprints."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException

from anabranch.daemon import config

from . import auth, csrf, dashboard, live
from .credentials import load_secret_key
from .relay import LIVE_FLOWS, Relay
from .throttle import LoginThrottle

# Scripts, styles and sockets only from this origin; no framing, no plugins.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'self'",
    "frame-ancestors 'none'",
])

# Websocket threads are taken from the gunicorn pool; keep two for page loads.
THREADS_KEPT_FOR_PAGES = 2


class _SessionCookies(SecureCookieSessionInterface):
    """Marks the session cookie Secure whenever the request came over TLS.

    Gunicorn reports https when it terminates TLS itself, or when a trusted local
    proxy says so (X-Forwarded-Proto from `forwarded_allow_ips`).
    """

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def _defaults() -> dict[str, Any]:
    return {
        # A path to the TOML file, or an already loaded `config.Config`.
        "ANABRANCH_CONFIG": os.environ.get("ANABRANCH_CONFIG", str(config.DEFAULT_PATH)),
        "RELAY_AUTOSTART": True,
        "LIVE_FLOWS": LIVE_FLOWS,
        "LOGIN_MAX_FAILURES": 5,
        "LOGIN_WINDOW_S": 60.0,
        "SESSION_COOKIE_NAME": "anabranch_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Strict",
        "SESSION_COOKIE_SECURE": False,
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=12),
        # Nothing the UI accepts is larger than a login form.
        "MAX_CONTENT_LENGTH": 64 * 1024,
        # Pings find browsers that vanished; browsers send nothing big.
        "SOCK_SERVER_OPTIONS": {"ping_interval": 25, "max_message_size": 4096},
    }


def _security_headers(response):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.endpoint != "static":
        # Pages and API answers carry live, per-session content.
        headers["Cache-Control"] = "no-store"
    return response


def _error(exc: HTTPException):
    if request.path.startswith("/api/") or request.path == "/ws":
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(error={"code": code, "message": exc.description}), exc.code
    return render_template("error.html", error=exc), exc.code


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the web UI; `test_config` overrides Flask and ANABRANCH_* settings."""
    app = Flask(__name__)
    app.config.from_mapping(_defaults())
    if test_config:
        app.config.update(test_config)

    settings = app.config["ANABRANCH_CONFIG"]
    if not isinstance(settings, config.Config):
        settings = config.load(settings)
    app.config["ANABRANCH_SETTINGS"] = settings
    if not app.config.get("SECRET_KEY"):
        app.secret_key = load_secret_key(settings.webui.secret_key_file)

    app.session_interface = _SessionCookies()
    csrf.init_app(app)  # first: no state-changing request gets past it without a token
    auth.init_app(app, settings.webui.password_file,
                  LoginThrottle(app.config["LOGIN_MAX_FAILURES"], app.config["LOGIN_WINDOW_S"]))
    app.register_blueprint(dashboard.bp)

    relay = Relay(settings.api.events, tick_s=settings.daemon.tick_s,
                  live_flows=app.config["LIVE_FLOWS"],
                  max_listeners=max(1, settings.webui.threads - THREADS_KEPT_FOR_PAGES))
    live.init_app(app, relay)
    if app.config["RELAY_AUTOSTART"]:
        relay.start()

    app.after_request(_security_headers)
    app.register_error_handler(HTTPException, _error)
    return app
