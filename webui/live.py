"""Live data for logged-in browsers: the `/ws` websocket fed by the relay, and
`GET /api/v1/status`, the latest state as JSON."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, jsonify, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from . import auth
from .relay import Relay

bp = Blueprint("live", __name__)
sock = Sock()

# How long a websocket waits for news before it checks whether the browser left.
WAIT_S = 1.0
# A browser that stops acknowledging data is dropped after this long, so its
# thread does not hang in send() for the kernel's default of many minutes.
UNACKED_LIMIT_MS = 30_000

# How long a closing websocket waits for the browser's answer to its close frame.
CLOSE_HANDSHAKE_S = 1.0

# An open websocket checks this often that its session is still good (a new
# password or the end of the session lifetime closes it).
RECHECK_SESSION_S = 30.0

# Close codes the page understands (see static/dashboard.js).
CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_SESSION_ENDED = 4401


def relay() -> Relay:
    return current_app.extensions["anabranch.relay"]


@bp.before_request
def _same_origin():
    """Refuse websockets opened by another site's page (cross-site websocket hijacking)."""
    if request.endpoint != "live.stream":
        return None
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc.lower() != request.host.lower():
        return jsonify(error={"code": "forbidden", "message": "cross-origin websocket refused"}), 403
    return None


def _bound_unacked_time(ws) -> None:
    tcp = getattr(ws, "sock", None)
    try:
        if tcp is not None and tcp.family in (socket.AF_INET, socket.AF_INET6):
            tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, UNACKED_LIMIT_MS)
    except OSError:
        pass


def _finish(ws) -> None:
    """Wait for simple-websocket's reader thread to end before the server closes the socket.

    The reader sits in select() on the socket; if the server closed the socket
    under it, select would not wake, and the thread (not a daemon) would hold the
    process at exit until the next ping.  The browser answers our close frame at
    once; a peer that does not is shut down, which wakes the reader.
    """
    reader = getattr(ws, "thread", None)
    if reader is None:
        return
    reader.join(CLOSE_HANDSHAKE_S)
    if reader.is_alive():
        try:
            ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        reader.join(CLOSE_HANDSHAKE_S)


def _send_news(ws, source: Relay) -> None:
    with source.listener() as granted:
        if not granted:
            ws.close(reason=CLOSE_TRY_AGAIN_LATER, message="too many live views open")
            return
        _bound_unacked_time(ws)
        seen: dict[str, int] = {}
        recheck_at = time.monotonic() + RECHECK_SESSION_S
        while ws.connected:
            if time.monotonic() >= recheck_at:
                if not auth.logged_in(fresh=True):
                    ws.close(reason=CLOSE_SESSION_ENDED, message="signed out: log in again")
                    return
                recheck_at = time.monotonic() + RECHECK_SESSION_S
            news = source.changes(seen, WAIT_S)
            if news is None:
                ws.close(reason=CLOSE_GOING_AWAY, message="the web UI is stopping")
                return
            for _, frame in news:
                ws.send(frame.text)


@sock.route("/ws", bp=bp)
def stream(ws):
    """Send the newest frame of each topic whenever the relay has news."""
    try:
        _send_news(ws, relay())
    except (ConnectionClosed, OSError):
        pass
    finally:
        _finish(ws)


@bp.route("/api/v1/status")
def status():
    return jsonify(relay().status())


def init_app(app: Flask, source: Relay) -> None:
    app.extensions["anabranch.relay"] = source
    app.register_blueprint(bp)
    sock.init_app(app)
