"""Client side of the ZeroMQ API: the message schema, a typed client and the CLI.

The web UI and scripts import only this package, never the daemon.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class CurveKeys:
    """What a client needs for a CURVE (tcp://) endpoint: certificate files from `anabranch keygen`.

    `server_public_file` is the server's public certificate (.key);
    `client_secret_file` is this client's own secret certificate (.key_secret),
    whose public half the daemon's admin put in `api.curve_clients_dir`.
    """

    server_public_file: str
    client_secret_file: str

    def apply(self, sock: zmq.Socket) -> None:
        import zmq.auth

        server_public, _ = zmq.auth.load_certificate(self.server_public_file)
        public, secret = zmq.auth.load_certificate(self.client_secret_file)
        if not secret:
            raise ValueError(f"{self.client_secret_file}: holds no secret key; give the .key_secret file")
        sock.curve_serverkey = server_public
        sock.curve_publickey = public
        sock.curve_secretkey = secret


# Commands that must not be sent twice: a retry after a lost reply could apply them twice.
NOT_RETRIED = frozenset({"rules.add"})


class Client:
    """Commands over the control socket, one reply per request.

    A DEALER socket with request ids, so a late reply to a timed-out request is
    recognised and dropped instead of being taken for the answer to the next one.
    A request without a reply in `timeout_s` is sent again up to `retries` times,
    except commands in NOT_RETRIED, which could otherwise take effect twice.
    """

    def __init__(self, endpoint: str = Endpoints.control, timeout_s: float = 3.0,
                 retries: int = 1, context: zmq.Context | None = None, curve: CurveKeys | None = None):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.retries = retries
        self.curve = curve
        self._context = context or zmq.Context.instance()
        self._ids = itertools.count(int.from_bytes(os.urandom(3), "big"))
        self._socket: zmq.Socket | None = None

    def _connect(self) -> zmq.Socket:
        if self._socket is None:
            sock = self._context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            if self.curve is not None:
                self.curve.apply(sock)
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
        rule = args.get("rule")
        once = cmd in NOT_RETRIED and not (isinstance(rule, dict) and "id" in rule)
        attempts = 1 if once else self.retries + 1
        for attempt in range(attempts):
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
            f"({attempts} attempt(s)); is anabranchd running?")

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command; return the reply's fields or raise CommandFailed."""
        reply = self.raw(cmd, **args)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise CommandFailed(error.get("code", messages.E_INTERNAL), error.get("message", ""))
        return {k: v for k, v in reply.items() if k not in ("v", "type", "id", "ok")}

    # -- typed shortcuts for the common commands ----------------------------------------
    def status(self) -> dict[str, Any]:
        return self.call("status")

    def flows(self, **filters: Any) -> list[dict[str, Any]]:
        return self.call("flows", **filters)["flows"]

    def flow(self, flow_id: str) -> dict[str, Any]:
        return self.call("flow", id=flow_id)

    def rules(self) -> list[dict[str, Any]]:
        return self.call("rules.list")["rules"]

    def add_rule(self, rule: dict[str, Any], position: int | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {"rule": rule}
        if position is not None:
            args["position"] = position
        return self.call("rules.add", **args)["rule"]

    def update_rule(self, rule_id: str, **changes: Any) -> dict[str, Any]:
        return self.call("rules.update", id=rule_id, rule=changes)["rule"]

    def delete_rule(self, rule_id: str) -> None:
        self.call("rules.delete", id=rule_id)

    def set_class(self, name: str, **settings: Any) -> dict[str, Any]:
        return self.call("class.set", name=name, **settings)["class"]

    def set_link(self, name: str, **capacity: Any) -> dict[str, Any]:
        return self.call("link.set", name=name, **capacity)["link"]

    def alerts(self, include_resolved: bool = False) -> list[dict[str, Any]]:
        return self.call("alerts.list", state="all" if include_resolved else "active")["alerts"]

    def predict(self, traffic_class: str, recent_mbps: list[float | None]) -> dict[str, Any]:
        return self.call("predict", **{"class": traffic_class, "recent_mbps": recent_mbps})["prediction"]


class Subscriber:
    """The state stream: yields `(topic, message)` for the chosen topics."""

    def __init__(self, endpoint: str = Endpoints.events, topics: tuple[str, ...] = messages.TOPICS,
                 context: zmq.Context | None = None, rcvhwm: int = 100, curve: CurveKeys | None = None):
        self._context = context or zmq.Context.instance()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, rcvhwm)
        if curve is not None:
            curve.apply(self._socket)
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


class FlowMirror:
    """The daemon's flow set rebuilt from the `flows` topic: snapshots and deltas.

    `apply()` returns False when a message was lost (its `seq` is not the next
    one) or a delta arrives before any snapshot: the mirror is then stale until
    the next snapshot message, or until `resync(client)` fetches one at once.
    """

    def __init__(self) -> None:
        self.flows: dict[str, dict[str, Any]] = {}
        self.count = 0
        self.seq: int | None = None
        self.in_sync = False
        self.gaps = 0

    def apply(self, message: dict[str, Any]) -> bool:
        seq = message.get("seq")
        if not isinstance(seq, int):
            return self.in_sync
        if self.seq is not None and seq <= self.seq:
            return self.in_sync  # older than what we hold (e.g. before a resync snapshot)
        if message.get("snapshot"):
            self._load(message)
            return True
        if not self.in_sync or seq != self.seq + 1:
            if self.in_sync:
                self.gaps += 1
            self.in_sync = False
            self.seq = seq
            return False
        for flow_id in message.get("removed", ()):
            self.flows.pop(flow_id, None)
        for flow in message.get("upserts", ()):
            self.flows[flow["id"]] = flow
        self.count = message.get("count", len(self.flows))
        self.seq = seq
        return True

    def resync(self, client: Client) -> None:
        """Fetch the daemon's current flow set (the `snapshot` command)."""
        snapshot = client.call("snapshot", topic="flows")
        self.seq = None
        self._load(snapshot)

    def _load(self, message: dict[str, Any]) -> None:
        self.flows = {flow["id"]: flow for flow in message.get("flows", ())}
        self.count = message.get("count", len(self.flows))
        self.seq = message["seq"]
        self.in_sync = True


__all__ = ["Client", "Subscriber", "FlowMirror", "CurveKeys", "Endpoints", "CommandFailed",
           "DaemonUnreachable", "messages"]
