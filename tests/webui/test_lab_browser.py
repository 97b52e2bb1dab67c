"""The web UI in headless Chromium against the real anabranchd in the netns lab: sign-in
(and a wrong password refused), live flows from real traffic, an MPTCP connection
expanded into its two subflows, a class maximum reaching the kernel's HTB class, an
alert raised and resolved by traffic, a CSRF-less POST refused, and screenshots of
every page (build/screenshots/lab-*.png).

The daemon runs in the lab's gateway namespace on all four ports (both WANs shaped
upward); the web UI (gunicorn) runs in this namespace and reaches the daemon's
ipc:// sockets through the file system, as on a real gateway.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import webui_harness as harness
from daemon_harness import RunningDaemon, daemon_config, start_daemon
from lab import CLIENT_V4, SERVER_V4, Lab
from webui_harness import PASSWORD, SCREENSHOTS, browser_login

from anabranch.webui.credentials import hash_password, write_password_hash

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.browser]

TRAFFIC = Path(__file__).resolve().parents[1] / "lab" / "traffic.py"
WAN_UP_MBIT = 20
PAGES = {"overview": "/", "flows": "/flows", "links": "/links", "classes": "/classes",
         "predictions": "/predictions", "alerts": "/alerts", "usage": "/usage", "history": "/history"}


@dataclass
class Appliance:
    lab: Lab
    daemon: RunningDaemon
    webui: harness.RunningWebUI
    _senders: list[subprocess.Popen] = field(default_factory=list)

    def traffic(self, *args: str) -> subprocess.Popen:
        """A sender on the client (traffic.py), killed by the fixture at the end at the latest."""
        process = self.lab.popen("cli", sys.executable, str(TRAFFIC), *args,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._senders.append(process)
        return process

    def htb_class(self, iface: str, classid: str) -> str:
        """The kernel's line for one HTB class on the gateway, as `tc class show` prints it."""
        shown = self.lab.run("gw", "tc", "class", "show", "dev", iface).stdout
        return next((line for line in shown.splitlines() if line.startswith(f"class htb {classid} ")), "")


def _config(tmp_path: Path) -> Path:
    extra = "".join(f'[interfaces.{wan}]\nrole = "wan"\nup_mbit = {WAN_UP_MBIT}\ndown_mbit = 40\n\n'
                    for wan in ("wan0", "wan1"))
    extra += "".join(f'[interfaces.{lan}]\nrole = "lan"\n\n' for lan in ("lan0", "lan1"))
    extra += (f'[webui]\npassword_file = "{tmp_path}/webui.passwd"\n'
              f'secret_key_file = "{tmp_path}/webui.secret"\nthreads = 8\n')
    config = daemon_config(tmp_path, {}, extra)
    write_password_hash(tmp_path / "webui.passwd", hash_password(PASSWORD, log2_n=harness.TEST_SCRYPT_LOG2_N))
    return config


@pytest.fixture
def appliance(lab, tmp_path):
    config = _config(tmp_path)
    sinks = lab.popen("srv", sys.executable, str(TRAFFIC), "serve",
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    daemon = start_daemon(lab, config, tmp_path / "anabranchd.log")
    try:
        daemon.wait_ready()
        with harness.webui_server(config) as webui:
            appliance = Appliance(lab, daemon, webui)
            try:
                yield appliance
            finally:
                for sender in appliance._senders:
                    sender.kill()
                    sender.wait()
    finally:
        if daemon.process.poll() is None:
            assert daemon.stop() == 0, (tmp_path / "anabranchd.log").read_text()
        sinks.kill()
        sinks.wait()


def _shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"lab-{name}.png"), full_page=True)


def test_wrong_password_is_refused_and_the_right_one_shows_live_flows(appliance, page):
    base = appliance.webui.base_url
    page.goto(base + "/flows")
    page.wait_for_url(re.compile(r"/login"))
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    page.locator("#login-error").wait_for()
    assert "/login" in page.url and page.get_by_label("Password").get_attribute("aria-invalid") == "true"
    _shoot(page, "login-refused")

    browser_login(page, base, PASSWORD)
    page.goto(base + "/flows")
    appliance.traffic("tcp", SERVER_V4[0], "--bytes", "0", "--rate-mbit", "2")
    row = page.locator("#all-flows tbody tr", has_text=f"{SERVER_V4[0]}:9000")
    row.first.wait_for(timeout=20_000)
    text = row.first.inner_text()
    assert CLIENT_V4[0] in text and "TCP" in text and "interactive" in text
    # The rate is live: a paced 2 Mbit/s sender shows as Mbit/s or kbit/s, never 0.
    page.wait_for_function("""(remote) => [...document.querySelectorAll('#all-flows tbody tr')]
        .some((r) => r.textContent.includes(remote) && /[\\d.]+ [kM]bit\\/s/.test(r.cells[5].textContent))""",
                           arg=f"{SERVER_V4[0]}:9000", timeout=20_000)
    _shoot(page, "flows")


def test_every_page_of_the_real_appliance_fills_in(appliance, page):
    appliance.traffic("tcp", SERVER_V4[0], "--bytes", "0", "--rate-mbit", "3")
    appliance.traffic("udp", SERVER_V4[0], "--packets", "0", "--pps", "50", "--source-port", "16390")
    browser_login(page, appliance.webui.base_url, PASSWORD)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    ready = {"overview": "#flows tbody tr:not(.empty)", "flows": "#all-flows tbody tr:not(.empty)",
             "links": "#links tbody tr[data-link]", "classes": "#htb tbody tr[data-htb]",
             "predictions": "#predictions-panel", "alerts": "#alert-rules tbody tr:not(.empty)",
             "usage": "#usage tbody tr:not(.empty)", "history": "#history-chart"}
    for name, path in PAGES.items():
        page.goto(appliance.webui.base_url + path)
        page.locator(ready[name]).first.wait_for(state="attached", timeout=20_000)
        page.wait_for_timeout(1500)  # a tick or two of live data
        _shoot(page, name)
    assert errors == []


def test_a_class_maximum_set_in_the_ui_becomes_the_kernels_htb_ceil(appliance, page):
    base = appliance.webui.base_url
    # video is class id 2: HTB class 1:12 on each shaped WAN egress.
    before = appliance.htb_class("wan0", "1:12")
    assert "ceil 20Mbit" in before, before  # max 50 Mbit/s, capped by the 20 Mbit/s link
    browser_login(page, base, PASSWORD)
    page.goto(base + "/classes")
    page.locator('#htb tr[data-htb="wan0/video"]', has_text="20.0 Mbit/s").first.wait_for(timeout=20_000)
    page.get_by_role("button", name="Edit video").click()
    form = page.get_by_role("form", name="Edit class video")
    form.get_by_label("Maximum (Mbit/s)").fill("12")
    form.get_by_role("button", name="Apply").click()
    page.locator('#classes tr[data-class="video"]', has_text="12.0 Mbit/s").wait_for()

    deadline = time.monotonic() + 15
    while "ceil 12Mbit" not in appliance.htb_class("wan0", "1:12") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "ceil 12Mbit" in appliance.htb_class("wan0", "1:12"), appliance.htb_class("wan0", "1:12")
    assert "ceil 12Mbit" in appliance.htb_class("wan1", "1:12")
    # ...and the page shows what the kernel now has.
    page.locator('#htb tr[data-htb="wan0/video"]', has_text="12.0 Mbit/s").wait_for(timeout=10_000)
    _shoot(page, "classes-after-change")
    with appliance.daemon.client() as client:
        assert {c["name"]: c["max_mbit"] for c in client.call("classes")["classes"]}["video"] == 12.0


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(appliance, page):
    browser_login(page, appliance.webui.base_url, PASSWORD)
    page.goto(appliance.webui.base_url + "/classes")
    status = page.evaluate("""async () => (await fetch('/api/v1/classes/video', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({max_mbit: 1})})).status""")
    assert status == 400
    with appliance.daemon.client() as client:
        assert {c["name"]: c["max_mbit"] for c in client.call("classes")["classes"]}["video"] == 50.0
    assert "ceil 1Mbit" not in appliance.htb_class("wan0", "1:12")


def test_an_mptcp_connection_expands_into_its_two_subflows_one_per_wan(appliance, page):
    browser_login(page, appliance.webui.base_url, PASSWORD)
    page.goto(appliance.webui.base_url + "/flows")
    # The client opens the second subflow from up1, which the gateway routes out of wan1.
    appliance.traffic("mptcp", SERVER_V4[0], "--bytes", "0", "--rate-mbit", "4")
    connection = page.locator("#mptcp tbody tr.conn").first
    connection.wait_for(timeout=30_000)
    page.wait_for_function("""() => [...document.querySelectorAll('#mptcp tbody tr.conn')]
        .some((r) => r.cells[3].textContent.trim() === '2')""", timeout=30_000)
    toggle = page.locator("#mptcp tbody tr.conn", has=page.locator("td", has_text="2")).first \
        .get_by_role("button", name=re.compile(r"token|connection"))
    assert toggle.get_attribute("aria-expanded") == "false"
    toggle.click()
    subflows = page.locator("#mptcp tr.subflows:not([hidden]) tr.subflow")
    subflows.first.wait_for()
    assert subflows.count() == 2
    rows = [subflows.nth(i).inner_text() for i in range(2)]
    assert {"wan0", "wan1"} == {iface for iface in ("wan0", "wan1") for row in rows if iface in row}
    assert any(CLIENT_V4[0] in row for row in rows) and any(CLIENT_V4[1] in row for row in rows)
    # Still open after the next refresh, with the shares of both paths shown.
    page.wait_for_timeout(2500)
    assert page.locator("#mptcp tr.subflows:not([hidden]) tr.subflow").count() == 2
    _shoot(page, "flows-mptcp-expanded")
    with appliance.daemon.client() as client:
        reply = client.call("mptcp")
    two = [c for c in reply["connections"] if len(c["subflows"]) == 2]
    assert two and {s["iface"] for s in two[0]["subflows"]} == {"wan0", "wan1"}


def test_an_alert_rule_set_in_the_ui_raises_with_traffic_and_resolves_without(appliance, page):
    base = appliance.webui.base_url
    browser_login(page, base, PASSWORD)
    page.goto(base + "/alerts")
    page.locator("#alert-rules tbody tr:not(.empty)").first.wait_for()
    form = page.locator("#rule-form")
    form.get_by_label("Name").fill("wan-busy")
    form.get_by_label("Metric").select_option("link.utilisation_pct")
    form.get_by_label("Threshold").fill("20")
    form.get_by_label("For (s)").fill("0")
    form.get_by_label("Severity").select_option("warning")
    form.get_by_role("button", name="Save rule").click()
    page.locator("#alert-rules tbody tr", has_text="wan-busy").wait_for()

    # 8 Mbit/s up a 20 Mbit/s link is 40 %: above the rule's 20 %.
    sender = appliance.traffic("tcp", SERVER_V4[0], "--bytes", "0", "--rate-mbit", "8")
    active = page.locator("#active-alerts tbody tr", has_text="wan-busy")
    active.first.wait_for(timeout=30_000)
    assert "wan0" in active.first.inner_text()
    _shoot(page, "alerts-raised")
    sender.kill()
    sender.wait()
    active.first.wait_for(state="detached", timeout=30_000)
    page.locator("#alert-history tbody tr", has_text="wan-busy").first.wait_for()
    _shoot(page, "alerts-resolved")
    with appliance.daemon.client() as client:
        alerts = client.call("alerts.list", state="all")["alerts"]
    mine = [a for a in alerts if a["rule"] == "wan-busy"]
    assert mine and all(a["state"] == "resolved" for a in mine)
