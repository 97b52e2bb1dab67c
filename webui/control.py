"""Commands to the daemon's control socket from request threads, with one answer for
"this daemon cannot do that (yet)": NotAvailable, which pages show and the REST API
turns into 503."""

from __future__ import annotations

import threading
from typing import Any

from flask import current_app

from anabranch.client import Client, CommandFailed, DaemonUnreachable, messages

# A page waits at most this long for the daemon; it answers between ticks.
TIMEOUT_S = 2.0


class NotAvailable(Exception):
    """The daemon does not offer `cmd` (an older daemon) or does not answer at all."""

    def __init__(self, cmd: str, reason: str, unreachable: bool = False):
        super().__init__(reason)
        self.cmd = cmd
        self.reason = reason
        self.unreachable = unreachable


class Control:
    """One DEALER client per request thread (ZeroMQ sockets are not thread-safe)."""

    def __init__(self, endpoint: str, timeout_s: float = TIMEOUT_S):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._clients: list[Client] = []
        self._lock = threading.Lock()

    def _client(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = Client(self.endpoint, timeout_s=self.timeout_s, retries=0)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        client.timeout_s = self.timeout_s
        return client

    def close(self) -> None:
        """Close every thread's socket (when the app is taken down)."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        """The reply's fields; NotAvailable when the daemon lacks `cmd` or is silent;
        CommandFailed for the daemon's other refusals (bad arguments, not found)."""
        try:
            return self._client().call(cmd, **args)
        except CommandFailed as exc:
            if exc.code == messages.E_UNKNOWN_COMMAND:
                raise NotAvailable(cmd, f"it does not offer the `{cmd}` command") from None
            if exc.code == messages.E_UNAVAILABLE:
                raise NotAvailable(cmd, exc.message or f"`{cmd}` is not available right now") from None
            raise
        except DaemonUnreachable:
            raise NotAvailable(cmd, f"no answer from the daemon at {self.endpoint}", unreachable=True) from None

    def optional(self, cmd: str, **args: Any) -> dict[str, Any] | None:
        """Like call, but None when not available (for pages that show what there is)."""
        try:
            return self.call(cmd, **args)
        except NotAvailable:
            return None


def control() -> Control:
    return current_app.extensions["anabranch.control"]
