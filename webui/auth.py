"""Login and logout for the two accounts (admin and a read-only viewer), API tokens,
and the gate that makes every page need one of them.

The gate is secure by default: every endpoint needs a session or a bearer token
except those in PUBLIC_ENDPOINTS.  A session is bound to the password it was
opened with, so setting a new password signs every browser out.  A viewer (by
session or token) may read everything and change nothing: any state-changing
request is refused with 403.
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
from .credentials import (ROLES, CredentialError, PasswordHash, read_password_hash, role_password_file,
                          token_file, token_role)
from .throttle import LoginThrottle

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

PUBLIC_ENDPOINTS = frozenset({"auth.login", "static"})
# Endpoints that may skip the gate for some clients decide it themselves (see metrics.py).
SELF_GATED_ENDPOINTS = frozenset({"metrics.metrics"})
# Requests a viewer may make although they are not GET: signing out.
VIEWER_MAY_POST = frozenset({"auth.logout"})
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


def _stored_hash(fresh: bool = False, role: str = "admin") -> PasswordHash | None:
    """A role's password hash, read once per request (or again, when `fresh`)."""
    cache = g.setdefault("stored_hashes", {})
    if fresh or role not in cache:
        try:
            cache[role] = read_password_hash(role_password_file(_state().password_file, role))
        except CredentialError as exc:
            log.error("%s", exc)
            cache[role] = None
    return cache[role]


def _fingerprint(stored: PasswordHash) -> str:
    """Names the password a session was opened with, without revealing anything about it."""
    key = current_app.secret_key
    key = key if isinstance(key, bytes) else str(key).encode()
    return hmac.new(key, stored.encode().encode(), hashlib.sha256).hexdigest()[:32]


def role() -> str | None:
    """The role of this request: from its bearer token or its session; None if neither."""
    return g.get("role")


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def bearer_presented() -> bool:
    return _bearer() is not None


def logged_in(fresh: bool = False) -> bool:
    """Whether this request's session is the admin's or the viewer's, opened with that
    role's current password and not older than the session lifetime.  `fresh`
    re-reads the password file, for long-lived requests (websockets) that check again."""
    user = session.get("user")
    if user not in ROLES:
        return False
    since = session.get("since")
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    if not isinstance(since, (int, float)) or not 0 <= time.time() - since < lifetime:
        return False
    stored = _stored_hash(fresh, user)
    return stored is not None and hmac.compare_digest(str(session.get("auth", "")), _fingerprint(stored))


def _authenticate() -> str | None:
    """The role this request carries; a bearer token, when present, is the only credential."""
    token = _bearer()
    if token is not None:
        try:
            return token_role(token_file(_state().password_file), token)
        except CredentialError as exc:
            log.error("%s", exc)
            return None
    return session.get("user") if logged_in() else None


def _wants_json() -> bool:
    return (request.path.startswith("/api/") or request.path == "/ws"
            or request.headers.get("Upgrade", "").lower() == "websocket")


def _gate():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    g.role = _authenticate()
    if request.endpoint in SELF_GATED_ENDPOINTS:
        return None
    if g.role is not None:
        if (g.role != "admin" and request.method not in csrf.SAFE_METHODS
                and request.endpoint not in VIEWER_MAY_POST):
            if _wants_json():
                return jsonify(error={"code": "forbidden",
                                      "message": "the viewer role is read-only; sign in as admin"}), 403
            return current_app.make_response((render_template(
                "error.html", error=_Forbidden()), 403))
        return None
    if _wants_json() or bearer_presented():
        return jsonify(error={"code": "unauthorized", "message": "log in first"}), 401
    target = request.full_path.rstrip("?") if request.method == "GET" else "/"
    return redirect(url_for("auth.login", next=target))


class _Forbidden:
    code = 403
    name = "Forbidden"
    description = "The viewer account is read-only. Sign in as admin to change settings."


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

    user = request.form.get("username", "admin").strip() or "admin"
    if user not in ROLES:
        state.throttle.failed(client)
        return _login_page("Unknown user: sign in as admin or viewer.", 401)
    stored = _stored_hash(role=user)
    if stored is None:
        state.throttle.failed(client)
        return _login_page(f"No {user} password is set. On the gateway, run "
                           f"`anabranch-webui set-password --role {user}` and try again.",
                           503 if user == "admin" else 401)

    password = request.form.get("password", "")
    ok = False
    if 0 < len(password) <= MAX_PASSWORD_CHARS:
        with state.verify_slot:
            ok = stored.verify(password)
    if not ok:
        state.throttle.failed(client)
        log.warning("failed login as %s from %s", user, client)
        return _login_page("Wrong password. Please try again.", 401)

    state.throttle.succeeded(client)
    # A fresh session (and CSRF token) at login: nothing set before it survives.
    session.clear()
    session.permanent = True
    session["user"] = user
    session["auth"] = _fingerprint(stored)
    session["since"] = int(time.time())
    csrf.renew()
    log.info("%s logged in from %s", user, client)
    return redirect(safe_next(request.form.get("next")))


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    flash("You have signed out.")
    return redirect(url_for("auth.login"))


def init_app(app: Flask, password_file: str, throttle: LoginThrottle) -> None:
    app.extensions["anabranch.auth"] = AuthState(password_file, throttle)
    app.before_request(_gate)
    app.jinja_env.globals["current_role"] = role
    app.register_blueprint(bp)
