"""The real anabranch-webui process: gunicorn, one gthread worker, clean stop."""

from __future__ import annotations

import time
import urllib.request

from webui_harness import login, next_message, open_websocket

from anabranch.webui.server import GRACEFUL_TIMEOUT_S, gunicorn_bind


def test_ipv6_hosts_are_bracketed_for_gunicorn():
    assert gunicorn_bind("127.0.0.1:8080") == "127.0.0.1:8080"
    assert gunicorn_bind("::1:8080") == "[::1]:8080"
    assert gunicorn_bind("[::]:8080") == "[::]:8080"


def test_served_by_one_gthread_worker_that_relays_the_daemon(webui):
    with urllib.request.urlopen(webui.base_url + "/login", timeout=5) as response:
        assert response.headers["Server"].startswith("gunicorn")
    with open_websocket(webui.base_url, login(webui.base_url)) as ws:
        assert next_message(ws, "flows")["count"] == 14
    log = webui.log()
    assert "Using worker: LiveWorker" in log
    assert log.count("Booting worker") == 1


def test_stop_closes_open_websockets_instead_of_waiting_for_them(webui):
    with open_websocket(webui.base_url, login(webui.base_url)) as ws:
        next_message(ws, "state")
        started = time.monotonic()
        status = webui.stop()
        took = time.monotonic() - started
    assert status == 0, webui.log()
    assert took < GRACEFUL_TIMEOUT_S, f"stop took {took:.1f} s:\n{webui.log()}"
    assert ws.close_reason == 1001
