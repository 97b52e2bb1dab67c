"""Hostile HTTP against the real anabranch-webui: schemathesis from its OpenAPI, and the classic attacks.

The server is the real gunicorn process; behind it a stand-in daemon records
every command that reaches it, so "no state change without auth" is checked
where the state lives, not inferred from status codes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

import webui_harness as harness
from anabranch.webui.credentials import create_token, token_file
from http_fuzz import fuzz

# Commands that change the daemon's state; reads are harmless whoever sends them.
MUTATING = {"class.set", "rules.add", "rules.delete", "alerts.ack", "alert_rules.set", "alert_rules.delete",
            "config.reload"}
# Per operation and generation mode; FUZZ_HTTP_EXAMPLES raises it for a longer run.
EXAMPLES = int(os.environ.get("FUZZ_HTTP_EXAMPLES", "8"))


@pytest.fixture(scope="module")
def server():
    """The real web UI with a recording stand-in daemon, shared by this module's tests."""
    directory = Path(tempfile.mkdtemp(prefix="ab-fuzz-", dir="/tmp"))  # short: ipc:// paths are limited
    config = harness.write_config(directory, tick_s=0.2)
    tokens = {role: create_token(token_file(directory / "webui.passwd"), role, f"fuzz {role}", int(time.time()))
              for role in ("admin", "viewer")}
    try:
        with harness.FakeDaemon(f"ipc://{directory}/control.sock") as daemon, \
                harness.StreamPublisher(f"ipc://{directory}/events.sock", tick_s=0.2, predictions=True), \
                harness.webui_server(config) as webui:
            yield webui, daemon, tokens
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def stack(server):
    """The shared server, its daemon's record of commands emptied for this test."""
    webui, daemon, tokens = server
    with daemon._lock:
        daemon.requests.clear()
    return server


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def mutations(daemon) -> list[str]:
    with daemon._lock:
        return [r["cmd"] for r in daemon.requests if r["cmd"] in MUTATING]


def assert_alive(webui, tokens) -> None:
    assert webui.process.poll() is None, webui.log()
    answer = requests.get(webui.base_url + "/api/v1/links", headers=bearer(tokens["viewer"]), timeout=10)
    assert answer.status_code == 200


def test_unauthenticated_fuzzing_is_refused_everywhere_and_reaches_no_daemon_command(stack):
    webui, daemon, tokens = stack
    tally = fuzz(webui.base_url, headers={}, examples=EXAMPLES, schema_headers=bearer(tokens["viewer"]))
    assert tally.requests >= 20 * EXAMPLES
    # 401 from the gate; 400 from the CSRF check (it runs first on changes); 404/405 for odd
    # paths; 413/414/431 from the server for a body, URL or headers too long to read.
    assert set(tally.statuses) <= {400, 401, 404, 405, 413, 414, 431}, (tally.statuses, tally.server_errors)
    assert daemon.requests == []
    assert_alive(webui, tokens)


def test_viewer_token_fuzzing_changes_nothing_and_never_fails_with_500(stack):
    webui, daemon, tokens = stack
    tally = fuzz(webui.base_url, headers=bearer(tokens["viewer"]), examples=EXAMPLES)
    assert tally.http_500 == 0 and tally.undeclared_5xx == 0, tally.server_errors
    assert mutations(daemon) == []
    assert_alive(webui, tokens)


def test_admin_token_fuzzing_never_fails_with_500(stack):
    webui, daemon, tokens = stack
    tally = fuzz(webui.base_url, headers=bearer(tokens["admin"]), examples=EXAMPLES)
    assert tally.http_500 == 0 and tally.undeclared_5xx == 0, tally.server_errors
    assert tally.statuses[200] > 0  # the fuzz really got through the gate
    assert_alive(webui, tokens)


def test_a_session_without_the_csrf_header_changes_nothing(stack):
    webui, daemon, tokens = stack
    cookie = harness.login(webui.base_url)
    tally = fuzz(webui.base_url, headers={"Cookie": cookie}, examples=max(3, EXAMPLES // 3),
                 schema_headers={"Cookie": cookie})
    assert tally.http_500 == 0, tally.server_errors
    assert mutations(daemon) == []
    for method, path in (("POST", "/api/v1/classes/voice"), ("POST", "/api/v1/rules"),
                         ("DELETE", "/api/v1/rules/0"), ("POST", "/api/v1/alerts/a1/ack"),
                         ("DELETE", "/api/v1/alert-rules/wan1-rtt")):
        answer = requests.request(method, webui.base_url + path, headers={"Cookie": cookie},
                                  json={"priority": 1, "match": "tcp port 22", "class": "file"}, timeout=10)
        assert answer.status_code == 400 and "did not come from this site" in answer.text
    assert mutations(daemon) == []


def test_oversized_bodies_are_refused_with_413_before_the_daemon_sees_them(stack):
    webui, daemon, tokens = stack
    for size in (64 * 1024 + 1, 8 * 1024 * 1024):
        body = b'{"match": "' + b"a" * size + b'", "class": "file"}'
        answer = requests.post(webui.base_url + "/api/v1/rules", data=body, timeout=30,
                               headers={**bearer(tokens["admin"]), "Content-Type": "application/json"})
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "request_entity_too_large"
    assert mutations(daemon) == []
    assert_alive(webui, tokens)


@pytest.mark.parametrize("body, content_type", [
    (b"{", "application/json"),
    (b'{"priority": ', "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"[1, 2, 3]", "application/json"),
    (b'"just a string"', "application/json"),
    (b"null", "application/json"),
    (b'{"priority": NaN}', "application/json"),
    (b'{"priority": 1e999}', "application/json"),
    (b'{"priority": {"$gt": 1}}', "application/json"),
    (b"priority=1", "application/x-www-form-urlencoded"),
    (b'{"priority": 1}', "text/plain"),
    (b"[" * 50_000 + b"]" * 50_000, "application/json"),
])
def test_bad_json_is_a_400_naming_the_problem(stack, body, content_type):
    webui, daemon, tokens = stack
    answer = requests.post(webui.base_url + "/api/v1/classes/voice", data=body, timeout=10,
                           headers={**bearer(tokens["admin"]), "Content-Type": content_type})
    assert answer.status_code in (400, 413), answer.text
    assert answer.json()["error"]["message"]
    assert mutations(daemon) == []


@pytest.mark.parametrize("series", [
    "../../../../etc/passwd", "..%2f..%2fetc%2fshadow", "/etc/passwd", "link.wan0.down_bps/../../x",
    "a\r\nSet-Cookie: evil=1", 'x"; filename="/etc/passwd', "\x00", "….\u2215etc\u2215passwd", "日本",
])
def test_export_never_leaks_a_file_or_forges_the_download_name(stack, series):
    webui, daemon, tokens = stack
    query = urllib.parse.urlencode({"series": series, "start": 1000, "end": 1060, "step": 10, "format": "csv"})
    answer = requests.get(f"{webui.base_url}/api/v1/export?{query}", headers=bearer(tokens["viewer"]), timeout=10)
    assert answer.status_code in (200, 400, 404), answer.text   # 404: the daemon knows no such series
    assert "root:" not in answer.text
    if answer.status_code == 200:
        disposition = answer.headers["Content-Disposition"]
        filename = disposition.split('filename="', 1)[1].rstrip('"')
        assert filename.isascii() and not set(filename) & set('/\\"\r\n\0')
        assert "evil" not in answer.headers.get("Set-Cookie", "")


@pytest.mark.parametrize("path", [
    "/api/v1/export/../../../../etc/passwd", "/api/v1/%2e%2e/%2e%2e/etc/passwd",
    "/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2fetc%2fpasswd", "/static//etc/passwd",
])
def test_path_traversal_in_urls_finds_no_file(stack, path):
    webui, daemon, tokens = stack
    answer = requests.get(webui.base_url + path, headers=bearer(tokens["viewer"]), timeout=10,
                          allow_redirects=False)
    assert answer.status_code in (301, 302, 308, 400, 401, 404), answer.text[:300]
    assert "root:" not in answer.text



def test_load_balancing_reads_quality_from_the_daemons_path_record():
    # Found by the soak's fuzz against the real daemon: its `links` reply carries the
    # path monitor's record as `quality`, which /recommendations/load-balancing failed on.
    from anabranch.webui.api import load_balancing

    advice = load_balancing({"links": [
        {"name": "wan0", "role": "wan", "up_mbit": 100, "down_mbit": 100, "up_bps": 0, "down_bps": 0,
         "quality": {"name": "wan0", "score": 80.0, "rtt_p50_ms": 12.0, "loss_pct": 0.0}},
        {"name": "wan1", "role": "wan", "up_mbit": 100, "down_mbit": 100, "quality": {"score": 20.0}},
    ]})
    assert advice["prefer"] == "wan0"
    assert [row["quality"] for row in advice["links"]] == [0.8, 0.2]


@pytest.mark.parametrize("series", ["日本", "link.wan0.down_bps\u2028", "../x", 'a"b'])
def test_the_export_download_name_is_ascii_whatever_the_series(logged_in, monkeypatch, series):
    # Found by the fuzz: a series name outside Latin-1 went into Content-Disposition as is,
    # and gunicorn answered 500 for the header it could not encode.
    class Daemon:
        def call(self, cmd, **args):
            return {"series": args["series"], "points": [[1000.0, 1.0]]}
    monkeypatch.setattr("anabranch.webui.api.control", lambda: Daemon())
    answer = logged_in.get("/api/v1/export", query_string={"series": series, "start": 1000, "end": 1060})
    assert answer.status_code == 200
    filename = answer.headers["Content-Disposition"].split('filename="', 1)[1].rstrip('"')
    assert filename.isascii() and not set(filename) & set('/\\"')
