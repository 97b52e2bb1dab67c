"""Client side of the ZeroMQ API: the message schema, a typed client and the CLI.

The web UI and scripts import only this package, never the daemon.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from typing import Any

import zmq

from . import messages
from .messages import Endpoints, ProtocolError


class DaemonUnreachable(Exception):
    """No reply from the daemon in time: it is not running or not listening there."""


class CommandFailed(Exception):
    """The daemon answered `{ok: false}`; `code` is one of messages.ERROR_CODES."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Client:
    """Commands over the control socket, one reply per request.

    A DEALER socket with request ids, so a late reply to a timed-out request is
    recognised and dropped instead of being taken for the answer to the next one.
    """

    def __init__(self, endpoint: str = Endpoints.control, timeout_s: float = 3.0,
                 retries: int = 1, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.retries = retries
        self._context = context or zmq.Context.instance()
        self._ids = itertools.count(int.from_bytes(os.urandom(3), "big"))
        self._socket: zmq.Socket | None = None

    def _connect(self) -> zmq.Socket:
        if self._socket is None:
            sock = self._context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self.endpoint)
            self._socket = sock
        return self._socket

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def raw(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command and return the whole reply map, ok or not."""
        for attempt in range(self.retries + 1):
            request_id = next(self._ids)
            sock = self._connect()
            sock.send_multipart([b"", messages.request(cmd, args, request_id)])
            deadline_ms = int(self.timeout_s * 1000)
            while sock.poll(deadline_ms, zmq.POLLIN):
                frames = sock.recv_multipart()
                try:
                    reply = messages.unpack(frames[-1], max_bytes=1 << 30)
                except ProtocolError:
                    continue
                if reply.get("id") == request_id:
                    return reply
            # No answer: the socket may hold a half-sent request; start afresh.
            self.close()
        raise DaemonUnreachable(
            f"no reply from the daemon at {self.endpoint} within {self.timeout_s:g} s "
            f"({self.retries + 1} attempt(s)); is anabranchd running?")

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command; return the reply's fields or raise CommandFailed."""
        reply = self.raw(cmd, **args)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise CommandFailed(error.get("code", messages.E_INTERNAL), error.get("message", ""))
        return {k: v for k, v in reply.items() if k not in ("v", "type", "id", "ok")}


class Subscriber:
    """The state stream: yields `(topic, message)` for the chosen topics."""

    def __init__(self, endpoint: str = Endpoints.events, topics: tuple[str, ...] = messages.TOPICS,
                 context: zmq.Context | None = None, rcvhwm: int = 100):
        self._context = context or zmq.Context.instance()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, rcvhwm)
        for topic in topics:
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._socket.connect(endpoint)

    def receive(self, timeout_s: float | None = None) -> tuple[str, dict[str, Any]] | None:
        """One message, or None when no valid one arrives within `timeout_s`.

        The deadline holds across rejected messages: a stream of garbage cannot
        keep a caller waiting forever."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if deadline is None:
                timeout_ms = None
            else:
                timeout_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not self._socket.poll(timeout_ms, zmq.POLLIN):
                return None
            frames = self._socket.recv_multipart()
            if len(frames) == 2:
                try:
                    return frames[0].decode(), messages.unpack(frames[1], max_bytes=1 << 30)
                except (ProtocolError, UnicodeDecodeError):
                    pass
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while True:
            item = self.receive()
            if item is not None:
                yield item

    def close(self) -> None:
        self._socket.close(0)


__all__ = ["Client", "Subscriber", "Endpoints", "CommandFailed", "DaemonUnreachable", "messages"]
