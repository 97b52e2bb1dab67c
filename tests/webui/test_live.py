"""The websocket and the status API, end to end over HTTP with a real ZeroMQ publisher."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.error
import urllib.request

import pytest
import simple_websocket

import webui_harness as harness
from anabranch.daemon import config
from webui_harness import login, make_app, next_message, open_websocket, serving


def test_logged_in_websocket_receives_state_and_flows(served):
    with open_websocket(served, login(served)) as ws:
        state = next_message(ws, "state")
        flows = next_message(ws, "flows")
    assert state["v"] == 1 and state["totals"]["flows"] == 14
    assert [i["name"] for i in state["interfaces"]] == ["wan0", "wan1", "lan0"]
    assert flows["count"] == 14 and len(flows["flows"]) == 14
    first = next(f for f in flows["flows"] if f["id"] == "0" * 16)
    assert (first["src"], first["sport"], first["dport"], first["proto"]) == ("192.168.1.10", 51514, 443, "tcp")


def test_websocket_sends_every_second_tick_as_it_comes(served, publisher):
    with open_websocket(served, login(served)) as ws:
        first = next_message(ws, "state")["seq"]
        later = next_message(ws, "state", where=lambda m: m["seq"] >= first + 3)
    assert later["seq"] >= first + 3


def test_websocket_says_when_the_daemon_goes_and_comes_back(served, publisher):
    with open_websocket(served, login(served)) as ws:
        assert next_message(ws, "daemon")["reachable"] is True
        publisher.pause()
        assert next_message(ws, "daemon", timeout_s=5)["reachable"] is False
        publisher.resume()
        assert next_message(ws, "daemon", timeout_s=5)["reachable"] is True
        next_message(ws, "state")


def test_websocket_without_a_session_is_refused(served):
    with pytest.raises(simple_websocket.ConnectionError) as refused:
        with open_websocket(served, None):
            pass
    assert refused.value.status_code == 401


def test_websocket_with_a_forged_cookie_is_refused(served):
    with pytest.raises(simple_websocket.ConnectionError):
        with open_websocket(served, "anabranch_session=eyJ1c2VyIjoiYWRtaW4ifQ.forged.sig"):
            pass


def test_websocket_opened_from_another_site_is_refused(served):
    with pytest.raises(simple_websocket.ConnectionError) as refused:
        with open_websocket(served, login(served), origin="http://evil.example"):
            pass
    assert refused.value.status_code == 403


def test_websocket_from_the_same_origin_is_accepted(served):
    with open_websocket(served, login(served), origin=served) as ws:
        next_message(ws, "state")


def test_status_api_returns_the_latest_state(served):
    request = urllib.request.Request(served + "/api/v1/status", headers={"Cookie": login(served)})
    deadline = time.monotonic() + 5
    while True:
        with urllib.request.urlopen(request, timeout=5) as response:
            status = json.load(response)
        if status["state"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status["daemon"]["reachable"] is True
    assert status["state"]["type"] == "state" and status["state"]["totals"]["flows"] == 14


def test_status_api_needs_a_session(served):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(served + "/api/v1/status", timeout=5)
    refused.value.close()
    assert refused.value.code == 401


def _stalled_websocket(base_url: str, cookie: str) -> socket.socket:
    """A websocket whose browser never reads: a tiny receive buffer, left unread."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Cookie: {cookie}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


@pytest.fixture
def big_publisher(config_path):
    """Messages of ~250 kB ten times a second: a stalled browser fills its buffers fast."""
    events = config.load(config_path).api.events
    with harness.StreamPublisher(events, tick_s=0.1, flow_count=250, padding=600) as publisher:
        yield publisher


@pytest.fixture
def served_big(config_path, big_publisher):
    app = make_app(config_path, RELAY_AUTOSTART=True)
    with serving(app) as url:
        yield url, app


def test_a_stalled_browser_blocks_neither_other_browsers_nor_the_relay(served_big, big_publisher):
    base_url, app = served_big
    relay = app.extensions["anabranch.relay"]
    cookie = login(base_url)
    stalled = _stalled_websocket(base_url, cookie)
    try:
        with open_websocket(base_url, cookie) as ws:
            start = next_message(ws, "state")["seq"]
            # Long enough for megabytes to pile up behind the stalled one.
            end = next_message(ws, "state", timeout_s=15,
                               where=lambda m: m["seq"] >= start + 30)["seq"]
            assert relay.listeners == 2
            assert relay.latest("state")["seq"] >= end
    finally:
        stalled.close()


def test_open_websocket_is_closed_when_the_password_changes(served, config_path, monkeypatch):
    from anabranch.webui import live
    from anabranch.webui.credentials import hash_password, write_password_hash
    monkeypatch.setattr(live, "RECHECK_SESSION_S", 0.2)
    with open_websocket(served, login(served)) as ws:
        next_message(ws, "state")
        write_password_hash(config_path.parent / "webui.passwd",
                            hash_password("the next password", log2_n=10))
        with pytest.raises(simple_websocket.ConnectionClosed) as closed:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                ws.receive(timeout=0.2)
        assert closed.value.reason == live.CLOSE_SESSION_ENDED
