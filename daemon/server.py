"""The daemon's ZeroMQ sockets: PUB for the state stream, ROUTER for commands.

Requests are decoded and validated before any handler runs; every request gets
exactly one reply, and nothing a client sends can raise out of `serve()`.  The
ipc:// socket files are made 0660 and given the API group, so only root and
members of that group (the web UI's user) can connect.
"""

from __future__ import annotations

import grp
import logging
import math
import os
import re
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


_KIND = {int: "an integer", float: "a number", str: "a string", bool: "a boolean",
         list: "a list", dict: "a map", type(None): "null"}


@dataclass(frozen=True)
class Arg:
    """The schema of one value: type(s), bounds, and for lists and maps their contents.

    `items` checks every element of a list; `fields` lists the known keys of a
    map (anything else is refused); `values` checks every value of a map whose
    keys are free (then `key_pattern` checks the keys).  Nesting is bounded by
    the schema, so a deeply nested request stops at the first level it breaks.
    """

    types: tuple[type, ...]
    required: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    max_len: int = 256
    min_len: int = 0
    pattern: str | None = None
    items: Arg | None = None
    fields: dict[str, Arg] | None = None
    values: Arg | None = None
    key_pattern: str | None = None
    doc: str = ""

    def check(self, name: str, value: Any) -> None:
        if isinstance(value, bool) and bool not in self.types:
            raise CommandError(messages.E_INVALID, f"{name}: must be {self.kind()}, got a boolean")
        if isinstance(value, int) and not isinstance(value, bool) and float in self.types \
                and int not in self.types:
            value = float(value)  # an integer is a fine number
        if not isinstance(value, self.types):
            raise CommandError(messages.E_INVALID, f"{name}: must be {self.kind()}, got {_shown_type(value)}")
        if value is None:
            return
        if self.choices and value not in self.choices:
            raise CommandError(messages.E_INVALID, f"{name}: must be one of {', '.join(map(str, self.choices))}, "
                                                   f"got {_shown(value)}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise CommandError(messages.E_INVALID, f"{name}: must be a finite number")
            if self.low is not None and value < self.low:
                raise CommandError(messages.E_INVALID, f"{name}: must be at least {self.low:g}, got {value!r}")
            if self.high is not None and value > self.high:
                raise CommandError(messages.E_INVALID, f"{name}: must be at most {self.high:g}, got {value!r}")
        if isinstance(value, (str, bytes, list, dict)):
            if len(value) > self.max_len:
                raise CommandError(messages.E_INVALID, f"{name}: longer than {self.max_len}")
            if len(value) < self.min_len:
                raise CommandError(messages.E_INVALID, f"{name}: must hold at least {self.min_len}")
        if isinstance(value, str) and self.pattern and not re.fullmatch(self.pattern, value):
            raise CommandError(messages.E_INVALID, f"{name}: must match {self.pattern}, got {_shown(value)}")
        if isinstance(value, list) and self.items is not None:
            for i, item in enumerate(value):
                self.items.check(f"{name}[{i}]", item)
        if isinstance(value, dict):
            check_map(name, value, self.fields, self.values, self.key_pattern)

    def kind(self) -> str:
        return " or ".join(_KIND.get(t, t.__name__) for t in self.types)

    def describe(self) -> str:
        """One line for the API reference: `an integer, 1..100000, required`."""
        parts = [self.kind()]
        if self.choices:
            parts.append("one of " + ", ".join(f"`{c}`" for c in self.choices))
        if self.low is not None or self.high is not None:
            parts.append(f"{_number(self.low)}..{_number(self.high)}")
        if self.pattern:
            parts.append(f"matching `{self.pattern}`")
        if (list in self.types or (dict in self.types and self.fields is None) or str in self.types) \
                and not self.pattern and not self.choices:
            parts.append(f"length {self.min_len}..{self.max_len}")
        if self.key_pattern:
            parts.append(f"keys matching `{self.key_pattern}`")
        if self.required:
            parts.append("**required**")
        if self.doc:
            parts.append(self.doc)
        return ", ".join(parts)

    def walk(self, path: str):
        """(path, Arg) for this value and everything nested in it, for the reference."""
        yield path, self
        if self.items is not None:
            yield from self.items.walk(f"{path}[]")
        for name, spec in (self.fields or {}).items():
            yield from spec.walk(f"{path}.{name}")
        if self.values is not None:
            yield from self.values.walk(f"{path}.*")


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def _shown_type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_map(name: str, value: dict[str, Any], fields: dict[str, Arg] | None,
              values: Arg | None = None, key_pattern: str | None = None) -> None:
    """Check a map against its known fields (or free keys with one value schema)."""
    for key in value:
        if not isinstance(key, str):
            raise CommandError(messages.E_INVALID, f"{name}: keys must be strings")
        if fields is not None and key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise CommandError(messages.E_INVALID, f"{name}.{key}: unknown field (known: {known})")
        if key_pattern is not None and not re.fullmatch(key_pattern, key):
            raise CommandError(messages.E_INVALID, f"{name}.{key}: key must match {key_pattern}")
    if fields is not None:
        for key, spec in fields.items():
            if key in value:
                spec.check(f"{name}.{key}", value[key])
            elif spec.required:
                raise CommandError(messages.E_INVALID, f"{name}.{key}: required")
    if values is not None:
        for key, item in value.items():
            values.check(f"{name}.{key}", item)


@dataclass(frozen=True)
class Command:
    """A command: its handler and the schema of its `args` map."""

    name: str
    handler: Callable[[dict[str, Any]], dict[str, Any]]
    args: dict[str, Arg] = field(default_factory=dict)
    summary: str = ""

    def validate(self, args: Any) -> dict[str, Any]:
        if not isinstance(args, dict):
            raise CommandError(messages.E_INVALID, "args: must be a map")
        check_map("args", args, self.args)
        return args


@dataclass(frozen=True)
class CurveKeys:
    """CURVE for tcp:// endpoints: the server's key pair and the allowed clients' public keys.

    Both are files in ZeroMQ's certificate format, as `anabranch keygen` writes them.
    """

    server_secret_file: str
    clients_dir: str


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
    """Binds both sockets; `publish()` from the tick, `serve()` between ticks.

    A tcp:// endpoint is refused unless `curve` is given: then that socket is a
    CURVE server and a ZAP authenticator admits only the listed client keys.
    """

    def __init__(self, events: str, control: str, group: str = "",
                 context: zmq.Context | None = None, curve: CurveKeys | None = None):
        tcp = [e for e in (events, control) if e.startswith("tcp://")]
        if tcp and curve is None:
            raise ValueError(f"{tcp[0]}: a tcp:// endpoint needs CURVE keys ([api] curve_server_key "
                             "and curve_clients_dir; make them with `anabranch keygen`)")
        # CURVE's authenticator binds the one ZAP address a context has: a server of its
        # own context never races a closed server's authenticator still letting it go.
        self._own_context = context is None and bool(tcp)
        self._context = context or (zmq.Context() if tcp else zmq.Context.instance())
        self.commands: dict[str, Command] = {}
        self._seq: dict[str, int] = {}
        self.requests_served = 0
        self.requests_failed = 0
        self._poller = zmq.Poller()
        self._fd_handlers: dict[int, Callable[[], None]] = {}
        self._auth = None
        try:
            server_keys = self._start_curve(curve) if tcp else None
        except BaseException:
            self._close_sockets()     # stops a started authenticator, ends our own context
            raise

        old_umask = os.umask(0o077)  # no window where the socket is world-connectable
        try:
            self.pub = self._context.socket(zmq.PUB)
            self.router = self._context.socket(zmq.ROUTER)
            self.pub.setsockopt(zmq.LINGER, 0)
            self.pub.setsockopt(zmq.SNDHWM, PUB_HWM)
            self.router.setsockopt(zmq.LINGER, 0)
            self.router.setsockopt(zmq.MAXMSGSIZE, messages.MAX_REQUEST_BYTES)
            self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
            self.router.setsockopt(zmq.SNDHWM, 10_000)
            for sock, endpoint in ((self.pub, events), (self.router, control)):
                if endpoint.startswith("tcp://"):
                    sock.curve_secretkey = server_keys[1]
                    sock.curve_publickey = server_keys[0]
                    sock.curve_server = True
                _prepare_ipc(endpoint)
                sock.bind(endpoint)
        except BaseException:
            self._close_sockets()
            raise
        finally:
            os.umask(old_umask)
        _secure_ipc(events, group)
        _secure_ipc(control, group)
        self._poller.register(self.router, zmq.POLLIN)
        # With port 0 the kernel picks the port: report what was really bound.
        self.endpoints = (self.pub.getsockopt_string(zmq.LAST_ENDPOINT),
                          self.router.getsockopt_string(zmq.LAST_ENDPOINT))

    def _start_curve(self, curve: CurveKeys) -> tuple[bytes, bytes]:
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        try:
            public, secret = zmq.auth.load_certificate(curve.server_secret_file)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{curve.server_secret_file}: cannot read the CURVE server key: {exc}") from None
        if not secret:
            raise ValueError(f"{curve.server_secret_file}: holds no secret key; "
                             "give the .key_secret file `anabranch keygen` wrote")
        if not os.path.isdir(curve.clients_dir):
            raise ValueError(f"{curve.clients_dir}: no such folder of allowed client public keys")
        self._auth = ThreadAuthenticator(self._context, log=log)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=curve.clients_dir)
        return public, secret

    def allowed_clients_changed(self, clients_dir: str) -> None:
        """Re-read the allowed client keys (on reload)."""
        if self._auth is not None:
            self._auth.configure_curve(domain="*", location=clients_dir)

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
            # Drain what is queued, but never past the deadline: a flood of
            # requests must not hold off the next tick.
            while time.monotonic() < deadline:
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

    def _close_sockets(self) -> None:
        for sock in (getattr(self, "pub", None), getattr(self, "router", None)):
            if sock is not None:
                sock.close(0)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._own_context:
            self._context.term()
            self._own_context = False

    def close(self) -> None:
        for endpoint in self.endpoints:
            if endpoint.startswith("ipc://"):
                try:
                    os.unlink(endpoint[len("ipc://"):])
                except OSError:
                    pass
        self._close_sockets()
