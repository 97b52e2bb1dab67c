"""Gunicorn, configured in code: one gthread worker process (the relay lives in it).

One process on purpose: the relay thread and the websocket threads share the
latest state in memory.  `webui.threads` bounds concurrent requests, and each
open dashboard holds one thread.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

# Websockets never finish on their own; stopping closes them (see LiveWorker),
# so a short grace period is enough for the page loads in flight.
GRACEFUL_TIMEOUT_S = 5


def gunicorn_bind(listen: str) -> str:
    """`HOST:PORT` as gunicorn wants it: IPv6 hosts in brackets."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class LiveWorker(ThreadWorker):
    """The gthread worker, plus: on stop, close the live websockets first.

    Otherwise every open dashboard would hold the worker for the whole grace
    period.  Stopping the relay only sets an event and notifies a condition that
    the main thread never holds, so it is safe inside the signal handler.
    """

    def _stop_relay(self) -> None:
        app = getattr(self, "wsgi", None)
        relay = getattr(app, "extensions", {}).get("anabranch.relay")
        if relay is not None:
            relay.stop(timeout_s=0)

    def handle_exit(self, sig, frame):
        self._stop_relay()
        super().handle_exit(sig, frame)

    def handle_quit(self, sig, frame):
        self._stop_relay()
        super().handle_quit(sig, frame)


class WebServer(BaseApplication):
    def __init__(self, app_factory: Callable[[], Flask], listen: str, threads: int):
        self._app_factory = app_factory
        self._settings = {
            "bind": [gunicorn_bind(listen)],
            "workers": 1,
            "worker_class": LiveWorker,
            "threads": threads,
            # Enough connections for every thread plus idle keep-alives.
            "worker_connections": max(100, threads * 4),
            "graceful_timeout": GRACEFUL_TIMEOUT_S,
            "keepalive": 5,
            "proc_name": "anabranch-webui",
            "errorlog": "-",
            "loglevel": "info",
            # No gunicornc control socket: nothing else to secure, nothing left behind.
            "control_socket_disable": True,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._settings.items():
            # Settings newer than the installed gunicorn are skipped, not fatal.
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> Flask:
        # Called in the worker after the fork, so the relay thread and its
        # ZeroMQ socket are created in the process that uses them.
        return self._app_factory()
