"""Fixtures for the web UI tests; the machinery behind them is in webui_harness.py.

- `config_path`: a config (tick 0.1 s) in a fresh short /tmp folder, with the
  password harness.PASSWORD.
- `app`, `client`, `logged_in`: the Flask app (relay not started) and test clients.
- `fake_daemon` / `old_daemon`: a FakeDaemon at the config's control endpoint,
  with every command or only status and flows.
- `publisher`: a StreamPublisher (real ZeroMQ PUB) at the config's events endpoint.
- `served`: the app behind a real HTTP server in this process, its relay fed by
  `publisher`; yields the base URL.
- `webui`: the real `anabranch-webui` (gunicorn subprocess); yields a RunningWebUI.
- `chromium`: a headless Debian Chromium (Playwright); `page`: a 1280x800 page.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

import webui_harness as harness
from anabranch.daemon import config
from webui_harness import log_in, make_app, serving

# ZeroMQ ipc:// paths are limited to ~107 bytes; pytest's tmp_path can be longer.
_SHORT_TMP = Path("/tmp")


@pytest.fixture
def short_tmp() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="ab-webui-", dir=_SHORT_TMP))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def config_path(short_tmp) -> Path:
    return harness.write_config(short_tmp, tick_s=0.1)


@pytest.fixture
def app(config_path):
    app = make_app(config_path)
    yield app
    app.extensions["anabranch.relay"].stop()
    app.extensions["anabranch.control"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def logged_in(client):
    response = log_in(client)
    assert response.status_code == 302
    return client


@pytest.fixture
def publisher(config_path):
    events = config.load(config_path).api.events
    with harness.StreamPublisher(events, tick_s=0.1, predictions=True) as publisher:
        yield publisher


@pytest.fixture
def fake_daemon(config_path):
    """The daemon's control socket with every command (canned data)."""
    with harness.FakeDaemon(config.load(config_path).api.control) as daemon:
        yield daemon


@pytest.fixture
def old_daemon(config_path):
    """The daemon's control socket knowing only status and flows."""
    with harness.FakeDaemon(config.load(config_path).api.control, full=False) as daemon:
        yield daemon


@pytest.fixture
def served(config_path, publisher):
    """The app with a running relay fed by `publisher`, served over HTTP."""
    with serving(make_app(config_path, RELAY_AUTOSTART=True)) as url:
        yield url


@pytest.fixture
def webui(config_path, publisher):
    with harness.webui_server(config_path) as server:
        yield server


@pytest.fixture
def chromium():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = harness.launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()
