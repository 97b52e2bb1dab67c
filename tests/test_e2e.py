"""End to end: real traffic through the lab, the real daemon, the real web UI, a websocket
client and headless Chromium all see the same flows."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from daemon_harness import REPO

from lab import CLIENT_V4, SERVER_V4

sys.path.insert(0, str(REPO / "tests" / "webui"))
from webui_harness import (PASSWORD, browser_login, launch_chromium, login,  # noqa: E402
                           next_message, open_websocket, webui_server, write_config)

pytestmark = [pytest.mark.root, pytest.mark.lab]

TRAFFIC = str(REPO / "tests" / "lab" / "traffic.py")
SCREENSHOTS = REPO / "build" / "screenshots"


@pytest.fixture
def live_gateway(lab, gateway_daemon, tmp_path):
    """Sinks on the server, a voice-like UDP flow and a paced TCP flow from the client,
    and the web UI subscribed to the daemon; yields the web UI."""
    sinks = lab.popen("srv", sys.executable, TRAFFIC, "serve")
    time.sleep(0.5)
    senders = [
        lab.popen("cli", sys.executable, TRAFFIC, "udp", SERVER_V4[0], "--packets", "0",
                  "--pps", "50", "--source-port", "16390"),
        lab.popen("cli", sys.executable, TRAFFIC, "tcp", SERVER_V4[0], "--bytes", "0",
                  "--rate-mbit", "8"),
    ]
    config = write_config(tmp_path / "webui", events=gateway_daemon.events)
    try:
        with webui_server(config) as webui:
            yield webui
    finally:
        for process in [*senders, sinks]:
            process.kill()
            process.wait(5)


def generated(flows: list[dict]) -> dict[str, dict]:
    found = {}
    for flow in flows:
        if flow["proto"] == "udp" and flow["sport"] == 16390 and flow["dport"] == 16384:
            found["voice"] = flow
        if flow["proto"] == "tcp" and flow["dport"] == 9000 and flow["src"] == CLIENT_V4[0]:
            found["bulk"] = flow
    return found


def test_a_websocket_client_receives_the_generated_flows(live_gateway):
    with open_websocket(live_gateway.base_url, login(live_gateway.base_url)) as ws:
        message = next_message(ws, "flows", timeout_s=20,
                               where=lambda m: len(generated(m["flows"])) == 2
                               and all(f["bps_up"] > 0 for f in generated(m["flows"]).values()))
        flows = generated(message["flows"])
        assert flows["voice"]["iface"] == "wan0" and flows["voice"]["dst"] == SERVER_V4[0]
        assert 4e6 < flows["bulk"]["bps_up"] < 12e6  # paced at 8 Mbit/s
        state = next_message(ws, "state", timeout_s=5)
        assert state["totals"]["flows"] >= 2
        assert {i["name"] for i in state["interfaces"] if i["attached"]} == {"wan0", "wan1", "lan0", "lan1"}


@pytest.mark.browser
def test_chromium_shows_a_row_for_a_generated_flow(live_gateway):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            browser_login(page, live_gateway.base_url, PASSWORD)
            row = page.locator("#flows tbody tr", has_text=f"{CLIENT_V4[0]}:16390")
            row.wait_for(timeout=20_000)
            assert f"{SERVER_V4[0]}:16384" in row.inner_text()
            page.locator("#flows tbody tr", has_text=f"{SERVER_V4[0]}:9000").first.wait_for(timeout=10_000)
            time.sleep(4)  # longer than the relay's staleness limit at a 1 s tick
            assert page.locator("#link-status").inner_text().strip() == "Live"
            page.screenshot(path=str(SCREENSHOTS / "e2e-dashboard.png"), full_page=True)
        finally:
            browser.close()
