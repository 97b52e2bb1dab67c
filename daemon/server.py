"""The daemon's ZeroMQ sockets: PUB for the state stream, ROUTER for commands.

Requests are decoded and validated before any handler runs; every request gets
exactly one reply, and nothing a client sends can raise out of `serve()`.  The
ipc:// socket files are made 0660 and given the API group, so only root and
members of that group (the web UI's user) can connect.
"""

from __future__ import annotations

import grp
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from anabranch.client import messages
from anabranch.client.messages import ProtocolError

log = logging.getLogger(__name__)

# A publisher never waits for a slow subscriber: past this many queued messages
# ZeroMQ drops for that subscriber only.
PUB_HWM = 1000


class CommandError(Exception):
    """Raised by a handler to answer `{ok: false}` with a stable code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Arg:
    """One argument of a command: its type(s), bounds and whether it is required."""

    types: tuple[type, ...]
    required: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    max_len: int = 256

    def check(self, name: str, value: Any) -> None:
        if isinstance(value, bool) and bool not in self.types:
            raise CommandError(messages.E_INVALID, f"{name}: must be {self._kind()}, got a boolean")
        if not isinstance(value, self.types):
            raise CommandError(messages.E_INVALID, f"{name}: must be {self._kind()}, got {type(value).__name__}")
        if self.choices and value not in self.choices:
            raise CommandError(messages.E_INVALID, f"{name}: must be one of {', '.join(map(str, self.choices))}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.low is not None and value < self.low:
                raise CommandError(messages.E_INVALID, f"{name}: must be at least {self.low}")
            if self.high is not None and value > self.high:
                raise CommandError(messages.E_INVALID, f"{name}: must be at most {self.high}")
        if isinstance(value, (str, bytes, list, dict)) and len(value) > self.max_len:
            raise CommandError(messages.E_INVALID, f"{name}: longer than {self.max_len}")

    def _kind(self) -> str:
        names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean",
                 list: "a list", dict: "a map"}
        return " or ".join(names.get(t, t.__name__) for t in self.types)


@dataclass(frozen=True)
class Command:
    name: str
    handler: Callable[[dict[str, Any]], dict[str, Any]]
    args: dict[str, Arg] = field(default_factory=dict)
    summary: str = ""

    def validate(self, args: Any) -> dict[str, Any]:
        if not isinstance(args, dict):
            raise CommandError(messages.E_INVALID, "args: must be a map")
        for key in args:
            if key not in self.args:
                raise CommandError(messages.E_INVALID, f"args.{key}: unknown argument of {self.name}")
        for key, spec in self.args.items():
            if key in args:
                spec.check(f"args.{key}", args[key])
            elif spec.required:
                raise CommandError(messages.E_INVALID, f"args.{key}: required by {self.name}")
        return args


def _secure_ipc(endpoint: str, group: str) -> None:
    if not endpoint.startswith("ipc://"):
        return
    path = endpoint[len("ipc://"):]
    gid = -1
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            log.warning("group %r does not exist: %s stays root-only (0600)", group, path)
    if gid >= 0:
        os.chown(path, -1, gid)
        os.chmod(path, 0o660)
    else:
        os.chmod(path, 0o600)


def _prepare_ipc(endpoint: str) -> None:
    """Create the socket's folder; remove a stale socket file left by a crash."""
    if not endpoint.startswith("ipc://"):
        return
    path = endpoint[len("ipc://"):]
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)


class ApiServer:
    """Binds both sockets; `publish()` from the tick, `serve()` between ticks."""

    def __init__(self, events: str, control: str, group: str = "",
                 context: zmq.Context | None = None):
        self._context = context or zmq.Context.instance()
        self.commands: dict[str, Command] = {}
        self._seq: dict[str, int] = {}
        self.requests_served = 0
        self.requests_failed = 0
        self._poller = zmq.Poller()
        self._fd_handlers: dict[int, Callable[[], None]] = {}

        old_umask = os.umask(0o077)  # no window where the socket is world-connectable
        try:
            _prepare_ipc(events)
            self.pub = self._context.socket(zmq.PUB)
            self.pub.setsockopt(zmq.LINGER, 0)
            self.pub.setsockopt(zmq.SNDHWM, PUB_HWM)
            self.pub.bind(events)
            _prepare_ipc(control)
            self.router = self._context.socket(zmq.ROUTER)
            self.router.setsockopt(zmq.LINGER, 0)
            self.router.setsockopt(zmq.MAXMSGSIZE, messages.MAX_REQUEST_BYTES)
            self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
            self.router.setsockopt(zmq.SNDHWM, 10_000)
            self.router.bind(control)
        finally:
            os.umask(old_umask)
        _secure_ipc(events, group)
        _secure_ipc(control, group)
        self.endpoints = (events, control)
        self._poller.register(self.router, zmq.POLLIN)

    def watch_fd(self, fd: int, handler: Callable[[], None]) -> None:
        """Call `handler` from serve() whenever `fd` is readable (e.g. netlink events)."""
        self._fd_handlers[fd] = handler
        self._poller.register(fd, zmq.POLLIN)

    def register(self, command: Command) -> None:
        self.commands[command.name] = command

    def publish(self, topic: str, body: dict[str, Any], now: float | None = None) -> int:
        seq = self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        try:
            self.pub.send_multipart(messages.event(topic, seq, now if now is not None else time.time(), body),
                                    flags=zmq.NOBLOCK)
        except zmq.Again:
            pass  # every subscriber is at its high-water mark: drop, never block the tick
        return seq

    def serve(self, timeout_s: float) -> None:
        """Answer requests until `timeout_s` has passed."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            ready = dict(self._poller.poll(int(remaining * 1000) + 1))
            if not ready:
                return
            for fd, handler in self._fd_handlers.items():
                if fd in ready:
                    try:
                        handler()
                    except Exception:
                        log.exception("handler of fd %d failed", fd)
            if self.router not in ready:
                continue
            # Drain what is queued before checking the clock again.
            for _ in range(1000):
                try:
                    frames = self.router.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._answer(frames)

    def _answer(self, frames: list[bytes]) -> None:
        # ROUTER frames: [identity, (empty delimiter,) payload]; reply with the same envelope.
        if len(frames) < 2:
            return
        envelope, payload = frames[:-1], frames[-1]
        reply = self.handle(payload)
        try:
            self.router.send_multipart([*envelope, reply], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.debug("reply dropped: %s", exc)

    def handle(self, payload: bytes) -> bytes:
        """One request in, one reply out; never raises."""
        request_id: Any = None
        try:
            message = messages.unpack(payload)
            request_id = message.get("id")
            if not isinstance(request_id, (int, str, type(None))) or isinstance(request_id, bool):
                request_id = None
                raise ProtocolError(messages.E_MALFORMED, "field `id` must be an integer or a string")
            if message["type"] != "request":
                raise ProtocolError(messages.E_MALFORMED, f"expected type \"request\", got {message['type']!r}")
            name = message.get("cmd")
            if not isinstance(name, str) or name not in self.commands:
                raise CommandError(messages.E_UNKNOWN_COMMAND,
                                   f"unknown command {name!r}; known: {', '.join(sorted(self.commands))}")
            command = self.commands[name]
            args = command.validate(message.get("args", {}))
            body = command.handler(args)
            self.requests_served += 1
            return messages.reply_ok(request_id, body)
        except (ProtocolError, CommandError) as exc:
            self.requests_failed += 1
            return messages.reply_error(request_id, exc.code, exc.message)
        except Exception:
            self.requests_failed += 1
            log.exception("command failed")
            return messages.reply_error(request_id, messages.E_INTERNAL,
                                        "internal error; the daemon logged the details")

    def close(self) -> None:
        for endpoint in self.endpoints:
            if endpoint.startswith("ipc://"):
                try:
                    os.unlink(endpoint[len("ipc://"):])
                except OSError:
                    pass
        self.pub.close(0)
        self.router.close(0)
