"""The one message schema of the ZeroMQ API: versioned msgpack maps, topics, error codes.

Every message is a msgpack map with `v` (schema version) and `type`.  The state
stream (PUB) sends two frames, `[topic, payload]`; the control socket (ROUTER)
answers each request with exactly one reply `{ok: true, ...}` or
`{ok: false, error: {code, message}}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

SCHEMA_VERSION = 1

# Topics of the state stream, as ZeroMQ subscription prefixes.
TOPICS = ("state", "flows", "mptcp", "links", "classes", "predictions", "alerts")

# A request larger than this is refused before it is decoded (also set as
# ZMQ_MAXMSGSIZE on the control socket, so the kernel buffer is bounded too).
MAX_REQUEST_BYTES = 1 << 20

# Stable error codes: scripts branch on these, so never rename one.
E_MALFORMED = "malformed"            # not msgpack, or not a map
E_VERSION = "unsupported_version"    # `v` missing or not SCHEMA_VERSION
E_UNKNOWN_COMMAND = "unknown_command"
E_INVALID = "invalid_argument"       # a field failed its schema
E_NOT_FOUND = "not_found"
E_TOO_LARGE = "too_large"
E_UNAVAILABLE = "unavailable"        # the daemon cannot serve this now
E_INTERNAL = "internal"              # a bug: logged by the daemon with a traceback
E_TIMEOUT = "timeout"                # client side: no reply in time

ERROR_CODES = (E_MALFORMED, E_VERSION, E_UNKNOWN_COMMAND, E_INVALID, E_NOT_FOUND,
               E_TOO_LARGE, E_UNAVAILABLE, E_INTERNAL, E_TIMEOUT)


class ProtocolError(Exception):
    """A message that breaks the schema; `code` is one of ERROR_CODES."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def pack(message: dict[str, Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def unpack(raw: bytes, max_bytes: int = MAX_REQUEST_BYTES) -> dict[str, Any]:
    """Decode one message, refusing anything that is not a versioned map."""
    if len(raw) > max_bytes:
        raise ProtocolError(E_TOO_LARGE, f"message of {len(raw)} bytes exceeds {max_bytes}")
    try:
        # Bounded decoding: a hostile client cannot make us allocate huge containers.
        message = msgpack.unpackb(
            raw, raw=False, strict_map_key=True,
            max_array_len=100_000, max_map_len=10_000,
            max_str_len=max_bytes, max_bin_len=max_bytes, max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises a zoo of exception types
        raise ProtocolError(E_MALFORMED, f"not valid msgpack: {exc or type(exc).__name__}") from None
    if not isinstance(message, dict):
        raise ProtocolError(E_MALFORMED, f"expected a map, got {type(message).__name__}")
    if message.get("v") != SCHEMA_VERSION:
        raise ProtocolError(E_VERSION, f"schema version must be {SCHEMA_VERSION}, got {message.get('v')!r}")
    if not isinstance(message.get("type"), str):
        raise ProtocolError(E_MALFORMED, "field `type` must be a string")
    return message


def event(topic: str, seq: int, ts: float, body: dict[str, Any]) -> list[bytes]:
    """Frames of one state-stream message: `[topic, payload]`."""
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}")
    return [topic.encode(), pack({"v": SCHEMA_VERSION, "type": topic, "seq": seq, "ts": ts, **body})]


def request(cmd: str, args: dict[str, Any] | None = None, request_id: int = 0) -> bytes:
    return pack({"v": SCHEMA_VERSION, "type": "request", "id": request_id,
                 "cmd": cmd, "args": args or {}})


def reply_ok(request_id: Any, body: dict[str, Any]) -> bytes:
    return pack({"v": SCHEMA_VERSION, "type": "reply", "id": request_id, "ok": True, **body})


def reply_error(request_id: Any, code: str, message: str) -> bytes:
    return pack({"v": SCHEMA_VERSION, "type": "reply", "id": request_id, "ok": False,
                 "error": {"code": code, "message": message}})


@dataclass(frozen=True)
class Endpoints:
    """Where the daemon listens; the defaults are the packaged ipc:// sockets."""

    events: str = "ipc:///run/anabranch/events.sock"
    control: str = "ipc:///run/anabranch/control.sock"
