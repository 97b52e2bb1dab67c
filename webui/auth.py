"""Login and logout for the one admin account, and the gate that makes every page need it.

The gate is secure by default: every endpoint needs a session except those in
PUBLIC_ENDPOINTS.  A session is bound to the password it was opened with, so
setting a new password signs every browser out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flask import (Blueprint, Flask, current_app, flash, g, jsonify, redirect, render_template,
                   request, session, url_for)

from . import csrf
from .credentials import CredentialError, PasswordHash, read_password_hash
from .throttle import LoginThrottle

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

PUBLIC_ENDPOINTS = frozenset({"auth.login", "static"})
USER = "admin"
# Longer input is refused unhashed: nobody types this, and scrypt should not see it.
MAX_PASSWORD_CHARS = 1024


@dataclass
class AuthState:
    """Per-app login state: where the hash lives, the throttle, the scrypt slot."""

    password_file: str
    throttle: LoginThrottle
    # One scrypt at a time: each takes 128 MiB, and parallel logins must not add up.
    verify_slot: threading.Lock = field(default_factory=threading.Lock)


def _state() -> AuthState:
    return current_app.extensions["anabranch.auth"]


def _stored_hash(fresh: bool = False) -> PasswordHash | None:
    """The password hash, read once per request (or again, when `fresh`)."""
    if fresh or "stored_hash" not in g:
        try:
            g.stored_hash = read_password_hash(_state().password_file)
        except CredentialError as exc:
            log.error("%s", exc)
            g.stored_hash = None
    return g.stored_hash


def _fingerprint(stored: PasswordHash) -> str:
    """Names the password a session was opened with, without revealing anything about it."""
    key = current_app.secret_key
    key = key if isinstance(key, bytes) else str(key).encode()
    return hmac.new(key, stored.encode().encode(), hashlib.sha256).hexdigest()[:32]


def logged_in(fresh: bool = False) -> bool:
    """Whether this request's session is the admin's, opened with the current password
    and not older than the session lifetime.  `fresh` re-reads the password file, for
    long-lived requests (websockets) that check again."""
    if session.get("user") != USER:
        return False
    since = session.get("since")
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    if not isinstance(since, (int, float)) or not 0 <= time.time() - since < lifetime:
        return False
    stored = _stored_hash(fresh)
    return stored is not None and hmac.compare_digest(str(session.get("auth", "")), _fingerprint(stored))


def _wants_json() -> bool:
    return (request.path.startswith("/api/") or request.path == "/ws"
            or request.headers.get("Upgrade", "").lower() == "websocket")


def _gate():
    if request.endpoint in PUBLIC_ENDPOINTS or logged_in():
        return None
    if _wants_json():
        return jsonify(error={"code": "unauthorized", "message": "log in first"}), 401
    target = request.full_path.rstrip("?") if request.method == "GET" else "/"
    return redirect(url_for("auth.login", next=target))


def safe_next(target: str | None) -> str:
    """Only a path on this site: a login link must not send the admin elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target):
        return "/"
    return target


def _login_page(error: str | None = None, status: int = 200, retry_after: int | None = None):
    response = current_app.make_response((render_template(
        "login.html", error=error, next=safe_next(request.values.get("next")),
        password_set=_stored_hash() is not None), status))
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if logged_in():
            return redirect(safe_next(request.args.get("next")))
        return _login_page()

    state = _state()
    client = request.remote_addr or "unknown"
    wait = state.throttle.retry_after(client)
    if wait > 0:
        seconds = math.ceil(wait)
        log.warning("login refused for %s: too many failed attempts", client)
        return _login_page(f"Too many failed attempts. Try again in {seconds} seconds.", 429, seconds)

    stored = _stored_hash()
    if stored is None:
        return _login_page("No admin password is set. On the gateway, run "
                           "`anabranch-webui set-password` and try again.", 503)

    password = request.form.get("password", "")
    ok = False
    if 0 < len(password) <= MAX_PASSWORD_CHARS:
        with state.verify_slot:
            ok = stored.verify(password)
    if not ok:
        state.throttle.failed(client)
        log.warning("failed login from %s", client)
        return _login_page("Wrong password. Please try again.", 401)

    state.throttle.succeeded(client)
    # A fresh session (and CSRF token) at login: nothing set before it survives.
    session.clear()
    session.permanent = True
    session["user"] = USER
    session["auth"] = _fingerprint(stored)
    session["since"] = int(time.time())
    csrf.renew()
    log.info("admin logged in from %s", client)
    return redirect(safe_next(request.form.get("next")))


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    flash("You have signed out.")
    return redirect(url_for("auth.login"))


def init_app(app: Flask, password_file: str, throttle: LoginThrottle) -> None:
    app.extensions["anabranch.auth"] = AuthState(password_file, throttle)
    app.before_request(_gate)
    app.register_blueprint(bp)
