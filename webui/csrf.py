"""CSRF protection: a per-session token that every state-changing request must echo.

Forms carry it in the hidden field `csrf_token`, scripts in the `X-CSRF-Token`
header.  A request without a matching token is refused with 400 before any view
runs.  (SameSite=Strict cookies already stop most cross-site posts; the token
covers older browsers and same-site attackers.)
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, abort, request, session

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
_SESSION_KEY = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token() -> str:
    """This session's token, created on first use (templates call it as `csrf_token()`)."""
    value = session.get(_SESSION_KEY)
    if not value:
        value = secrets.token_urlsafe(32)
        session[_SESSION_KEY] = value
    return value


def renew() -> str:
    """A fresh token, e.g. at login, so a token seen before login is worthless after."""
    session.pop(_SESSION_KEY, None)
    return token()


def _check() -> None:
    if request.method in SAFE_METHODS:
        return
    expected = session.get(_SESSION_KEY)
    sent = request.headers.get(HEADER) or request.form.get(FIELD)
    if not expected or not sent or not hmac.compare_digest(str(expected), str(sent)):
        abort(400, description="The form was stale or did not come from this site. "
                               "Reload the page and try again.")


def init_app(app: Flask) -> None:
    app.before_request(_check)
    app.jinja_env.globals["csrf_token"] = token
