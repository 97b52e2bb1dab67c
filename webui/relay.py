"""The relay: one thread that subscribes to the daemon's state stream and keeps the latest
message of each topic, ready as a JSON text frame for every browser.

Browsers never queue: each websocket thread waits for the relay's version to move
and then sends only the newest frame of each topic.  A slow browser therefore
skips updates instead of holding anyone up, and the relay thread never waits on a
browser.  Each frame is encoded once, however many browsers watch.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import zmq

from anabranch.client import Subscriber

log = logging.getLogger(__name__)

TOPICS = ("state", "flows")
# The daemon counts as unreachable after this many ticks without any message.
STALE_TICKS = 3
# Flows sent to browsers per update (the busiest); the page shows a table, not
# the whole map, and a WAN-side admin should not pay megabits for it.
LIVE_FLOWS = 250
# Longest sleep between checks of the stop flag and of staleness.
POLL_S = 0.2


@dataclass(frozen=True)
class Frame:
    version: int
    text: str


def _json(message: dict[str, Any]) -> str:
    # allow_nan=False: browsers' JSON.parse rejects NaN, so refuse it here, loudly.
    return json.dumps(message, separators=(",", ":"), allow_nan=False,
                      default=lambda value: value.hex() if isinstance(value, bytes) else str(value))


def _busiest(flows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    if len(flows) <= limit:
        return flows

    def rate(flow: dict[str, Any]) -> float:
        try:
            return float(flow.get("bps_up", 0) or 0) + float(flow.get("bps_down", 0) or 0)
        except (TypeError, ValueError):
            return 0.0

    return heapq.nlargest(limit, flows, key=rate)


class Relay:
    """Latest `state` and `flows` from the daemon, plus whether the daemon is reachable."""

    def __init__(self, endpoint: str, tick_s: float = 1.0, stale_ticks: int = STALE_TICKS,
                 live_flows: int = LIVE_FLOWS, max_listeners: int = 64,
                 context: zmq.Context | None = None, clock: Callable[[], float] = time.monotonic):
        self.endpoint = endpoint
        self.tick_s = tick_s
        self.stale_ticks = stale_ticks
        self.live_flows = live_flows
        self.max_listeners = max_listeners
        self._context = context
        self._clock = clock
        self._changed = threading.Condition()
        self._version = 0
        self._frames: dict[str, Frame] = {}
        self._latest: dict[str, dict[str, Any]] = {}
        self._reachable: bool | None = None
        self._last_message_ts: float | None = None
        self._listeners = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the relay thread ------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="anabranch-relay", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and wake every websocket so it can close."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _run(self) -> None:
        subscriber = None
        last_message = self._clock()
        try:
            subscriber = Subscriber(self.endpoint, topics=TOPICS, context=self._context)
            log.info("relaying %s from %s", ", ".join(TOPICS), self.endpoint)
            while not self._stopping.is_set():
                item = subscriber.receive(timeout_s=min(self.tick_s, POLL_S))
                now = self._clock()
                if item is not None:
                    last_message = now
                    self._take(*item)
                elif now - last_message > self.stale_ticks * self.tick_s:
                    self._set_reachable(False)
        except Exception:
            log.exception("relay stopped by an error; the dashboard will show the daemon as unreachable")
            self._set_reachable(False)
        finally:
            if subscriber is not None:
                subscriber.close()

    def _take(self, topic: str, message: dict[str, Any]) -> None:
        if topic not in TOPICS:
            return
        if topic == "state":
            # The daemon's tick period (not `tick_ms`, which is how long a tick's work took).
            tick_s = (message.get("daemon") or {}).get("tick_s")
            if isinstance(tick_s, (int, float)) and not isinstance(tick_s, bool) and tick_s > 0:
                self.tick_s = float(tick_s)
        elif topic == "flows" and isinstance(message.get("flows"), list):
            flows = message["flows"]
            busiest = _busiest(flows, self.live_flows)
            if busiest is not flows:
                message = {**message, "flows": busiest}
        try:
            text = _json(message)
        except (TypeError, ValueError) as exc:
            log.warning("dropped a %s message the browser could not parse: %s", topic, exc)
            return
        with self._changed:
            self._version += 1
            self._latest[topic] = message
            self._frames[topic] = Frame(self._version, text)
            self._last_message_ts = message.get("ts") if isinstance(message.get("ts"), (int, float)) else None
            self._set_reachable_locked(True)
            self._changed.notify_all()

    def _set_reachable(self, reachable: bool) -> None:
        with self._changed:
            self._set_reachable_locked(reachable)

    def _set_reachable_locked(self, reachable: bool) -> None:
        if self._reachable is reachable:
            return
        if reachable:
            log.info("daemon reachable at %s", self.endpoint)
        else:
            log.warning("no message from the daemon at %s for %d ticks; marking it unreachable",
                        self.endpoint, self.stale_ticks)
        self._reachable = reachable
        self._version += 1
        self._frames["daemon"] = Frame(self._version, _json({"type": "daemon", "reachable": reachable}))
        self._changed.notify_all()

    # -- readers (web requests) ------------------------------------------------

    @property
    def reachable(self) -> bool | None:
        """True/False once known; None before the first message or timeout."""
        with self._changed:
            return self._reachable

    def latest(self, topic: str) -> dict[str, Any] | None:
        with self._changed:
            return self._latest.get(topic)

    def status(self) -> dict[str, Any]:
        with self._changed:
            return {"daemon": {"reachable": self._reachable, "endpoint": self.endpoint,
                               "last_message_ts": self._last_message_ts},
                    "state": self._latest.get("state")}

    def changes(self, seen: dict[str, int], timeout_s: float) -> list[tuple[str, Frame]] | None:
        """Frames newer than `seen` (updated in place), after waiting up to `timeout_s`.

        Returns None once the relay is stopping, so the websocket can close.
        """
        with self._changed:
            def pending() -> list[tuple[str, Frame]]:
                return [(key, frame) for key, frame in self._frames.items()
                        if frame.version > seen.get(key, 0)]
            news = pending()
            if not news and not self._stopping.is_set():
                self._changed.wait(timeout_s)
                news = pending()
            if self._stopping.is_set():
                return None
        for key, frame in news:
            seen[key] = frame.version
        # "daemon" first: the page shows reachability before it shows data.
        return sorted(news, key=lambda item: item[0] != "daemon")

    @contextmanager
    def listener(self) -> Iterator[bool]:
        """A browser slot; yields False when all `max_listeners` slots are taken."""
        with self._changed:
            granted = self._listeners < self.max_listeners
            if granted:
                self._listeners += 1
        try:
            yield granted
        finally:
            if granted:
                with self._changed:
                    self._listeners -= 1

    @property
    def listeners(self) -> int:
        with self._changed:
            return self._listeners
