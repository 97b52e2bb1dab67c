"""Every page in headless Chromium against the real anabranch-webui (gunicorn), fed by a
StreamPublisher and a FakeDaemon: the admin's tasks, the viewer's limits, the
"not available" state, keyboard order, and screenshots at desktop and phone sizes."""

from __future__ import annotations

import re

import pytest
import webui_harness as harness
from webui_harness import PASSWORD, SCREENSHOTS, browser_login

from anabranch.daemon import config
from anabranch.webui.credentials import hash_password, role_password_file, write_password_hash

pytestmark = pytest.mark.browser

PAGES = {
    "overview": ("/", "#class-mix .bar-list"),
    "flows": ("/flows", "#mptcp tbody tr.conn"),
    "links": ("/links", "#links tbody tr[data-link]"),
    "classes": ("/classes", "#htb tbody tr[data-htb]"),
    "predictions": ("/predictions", "#demand tbody .badge"),
    "alerts": ("/alerts", "#alert-history tbody tr:not(.empty)"),
    "usage": ("/usage", "#usage tbody tr:not(.empty)"),
    "history": ("/history", "#history-chart path"),
}
VIEWER_PASSWORD = "just looking around"


@pytest.fixture
def full_webui(config_path, publisher, fake_daemon):
    with harness.webui_server(config_path) as server:
        yield server


@pytest.fixture
def alert_history(fake_daemon):
    """One alert raised and resolved, one still active."""
    fake_daemon.raise_alert("old", "wan0 above 95 % for 10 s", severity="warning", subject="wan0")
    fake_daemon.resolve_alert("old")
    fake_daemon.raise_alert("now", "datapath errors: 3 truncated", rule="datapath-errors", subject="")


@pytest.fixture
def old_webui(config_path, publisher, old_daemon):
    publisher.predictions = False  # a daemon without a predictor publishes none
    with harness.webui_server(config_path) as server:
        yield server


@pytest.fixture
def console_errors(page):
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def _shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_every_page_fills_in_at_desktop_and_phone_size(full_webui, alert_history, chromium, console_errors, page):
    browser_login(page, full_webui.base_url, PASSWORD)
    phone = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                 is_mobile=True, has_touch=True)
    try:
        small = phone.new_page()
        small.set_default_timeout(10_000)
        browser_login(small, full_webui.base_url, PASSWORD)
        for name, (path, ready) in PAGES.items():
            for view, suffix in ((page, ""), (small, "-phone")):
                view.goto(full_webui.base_url + path)
                view.locator(ready).first.wait_for(state="attached")
                if name == "overview":
                    view.locator("#alert-count", has_text=re.compile(r"\d")).wait_for()
                    view.wait_for_timeout(2500)   # a few points on the live chart
                _shoot(view, f"{name}{suffix}")
            # Nothing wider than the phone's screen but the scrollable tables.
            overflow = small.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{name} is {overflow}px wider than a phone"
    finally:
        phone.close()
    assert console_errors == []


def test_flows_page_lists_flows_with_reasons_rtt_and_retransmissions(full_webui, page):
    browser_login(page, full_webui.base_url, PASSWORD)
    page.goto(full_webui.base_url + "/flows")
    row = page.locator("#all-flows tbody tr", has_text="192.168.1.11:51515")
    row.wait_for()
    assert "port table: voice" in row.inner_text() and "voice" in row.inner_text()
    # RTT and retransmissions come per direction, [up, down]: the larger RTT and the sum are shown.
    video = page.locator("#all-flows tbody tr", has_text="192.168.1.12:51516").inner_text()
    assert "16.5 ms" in video and "\t2\t" in video
    page.get_by_label("Class").select_option("voice")
    page.wait_for_function("() => [...document.querySelectorAll('#all-flows tbody tr')]"
                           ".every(r => r.textContent.includes('voice'))")


def test_usage_page_marks_the_gateways_own_address(full_webui, fake_daemon, page):
    browser_login(page, full_webui.base_url, PASSWORD)
    page.goto(full_webui.base_url + "/usage")
    rows = page.locator("#usage tbody tr[data-host]")
    rows.first.wait_for()
    own, other = rows.nth(0).get_attribute("data-host"), rows.nth(1).get_attribute("data-host")
    fake_daemon.provider.own_addresses = frozenset({own})
    page.reload()
    page.locator(f'#usage tbody tr[data-host="{own}"]', has_text="(gateway)").wait_for()
    assert "(gateway)" not in page.locator(f'#usage tbody tr[data-host="{other}"]').inner_text()


def test_an_mptcp_connection_expands_into_its_subflows_and_stays_open(full_webui, page):
    browser_login(page, full_webui.base_url, PASSWORD)
    page.goto(full_webui.base_url + "/flows")
    toggle = page.get_by_role("button", name=re.compile("token "))
    toggle.wait_for()
    assert toggle.get_attribute("aria-expanded") == "false"
    assert page.locator("#mptcp tbody tr.conn td").nth(2).inner_text() == "2"  # subflows
    toggle.click()
    subflows = page.locator("#mptcp tr.subflows:not([hidden]) tr.subflow")
    subflows.first.wait_for()
    assert subflows.count() == 2
    initial, joined = subflows.nth(0).inner_text(), subflows.nth(1).inner_text()
    assert "10.0.0.7:40001" in initial and "(initial)" in initial and "wan0" in initial and "19.5 ms" in initial
    assert "10.0.1.7:40002" in joined and "(join)" in joined and "wan1" in joined and "44.0 ms" in joined
    assert page.get_by_role("img", name=re.compile(r"wan0 \d+\.\d %, wan1 \d+\.\d %")).count() == 1
    page.wait_for_timeout(2500)  # still open after the next refresh
    assert page.locator("#mptcp tr.subflows:not([hidden]) tr.subflow").count() == 2
    assert page.get_by_role("button", name=re.compile("token ")).get_attribute("aria-expanded") == "true"
    _shoot(page, "flows-mptcp-expanded")


def test_admin_changes_a_class_maximum_and_sees_the_htb_ceil_follow(full_webui, fake_daemon, page):
    browser_login(page, full_webui.base_url, PASSWORD)
    page.goto(full_webui.base_url + "/classes")
    page.locator('#htb tr[data-htb="wan0/video"]', has_text="50.0 Mbit/s").wait_for()
    page.get_by_role("button", name="Edit video").click()
    form = page.get_by_role("form", name="Edit class video")
    form.get_by_label("Maximum (Mbit/s)").fill("fast")
    form.get_by_role("button", name="Apply").click()
    error = form.get_by_role("alert")
    error.filter(has_text="max_mbit: must be a number").wait_for()
    assert form.get_by_label("Maximum (Mbit/s)").get_attribute("aria-invalid") == "true"
    form.get_by_label("Minimum (Mbit/s)").fill("60")
    form.get_by_label("Maximum (Mbit/s)").fill("50")
    form.get_by_role("button", name="Apply").click()
    page.wait_for_function("() => /min_mbit: must not exceed/.test(document.querySelector('.class-editor .form-error').textContent)")
    _shoot(page, "classes-editor-error")
    form.get_by_label("Minimum (Mbit/s)").fill("5")
    form.get_by_label("Maximum (Mbit/s)").fill("42")
    form.get_by_role("button", name="Apply").click()
    page.locator('#classes tr[data-class="video"]', has_text="42.0 Mbit/s").first.wait_for()
    page.locator('#htb tr[data-htb="wan0/video"]', has_text="42.0 Mbit/s").wait_for()
    sets = fake_daemon.commands("class.set")
    assert sets == [{"cmd": "class.set", "args": {"name": "video", "priority": 3, "min_mbit": 5.0,
                                                  "max_mbit": 42.0, "dscp": 34}}]  # refusals stayed in the UI


def test_admin_adds_a_classification_rule_and_sees_refusals_inline(full_webui, fake_daemon, page):
    browser_login(page, full_webui.base_url, PASSWORD)
    page.goto(full_webui.base_url + "/classes")
    page.locator("#rules tbody tr[data-rule]").first.wait_for()
    form = page.get_by_role("form", name="Add a rule")
    form.get_by_label("Ports").fill("rsync")
    form.get_by_role("button", name="Add rule").click()
    form.get_by_role("alert").filter(has_text="ports: must be ports or ranges").wait_for()
    assert form.get_by_label("Ports").get_attribute("aria-invalid") == "true"
    form.get_by_label("Ports").fill("")
    form.get_by_label("Networks").fill("10.0.0.0/33")
    form.get_by_role("button", name="Add rule").click()
    form.get_by_role("alert").filter(has_text="args.rule.match.cidrs[0]").wait_for()  # the daemon's refusal
    form.get_by_label("Networks").fill("")
    form.get_by_label("Protocol").select_option("tcp")
    form.get_by_label("Ports").fill("873, 6000-6010")
    form.get_by_label("Class").select_option("file")
    form.get_by_role("button", name="Add rule").click()
    page.locator("#rules tbody tr", has_text="tcp port 873, 6000-6010").wait_for()
    assert form.get_by_role("alert").is_hidden()
    assert fake_daemon.commands("rules.add")[-1]["args"] == {
        "rule": {"class": "file", "match": {"proto": "tcp", "ports": [873, [6000, 6010]]}}}
    _shoot(page, "classes-rules")
    page.locator("#rules tbody tr", has_text="tcp port 873").get_by_role("button", name="Delete").click()
    page.locator("#rules tbody tr", has_text="tcp port 873").wait_for(state="detached")


def test_an_alert_is_raised_acknowledged_and_resolved_live(full_webui, fake_daemon, page):
    browser_login(page, full_webui.base_url, PASSWORD)
    page.goto(full_webui.base_url + "/alerts")
    page.locator("#active-alerts tbody tr.empty").wait_for()
    fake_daemon.raise_alert("a1", "wan1 loss above 1 %")
    active = page.locator("#active-alerts tbody tr", has_text="wan1 loss above 1 %")
    active.wait_for()
    _shoot(page, "alerts-active")
    active.get_by_role("button", name="Acknowledge").click()
    page.locator("#active-alerts tbody tr", has_text="yes").wait_for()
    fake_daemon.resolve_alert("a1")
    page.locator("#active-alerts tbody tr.empty").wait_for()
    assert "wan1 loss above 1 %" in page.locator("#alert-history tbody").inner_text()
    page.goto(full_webui.base_url + "/")
    page.locator("#alert-count", has_text="0").wait_for()


def test_a_post_without_the_csrf_header_is_refused_in_the_browser(full_webui, fake_daemon, page):
    browser_login(page, full_webui.base_url, PASSWORD)
    status = page.evaluate("""async () => (await fetch('/api/v1/classes/video', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({max_mbit: 1})})).status""")
    assert status == 400
    assert fake_daemon.commands("class.set") == []


def test_viewer_sees_everything_and_can_change_nothing(full_webui, config_path, fake_daemon, page):
    write_password_hash(role_password_file(config.load(config_path).webui.password_file, "viewer"),
                        hash_password(VIEWER_PASSWORD, log2_n=harness.TEST_SCRYPT_LOG2_N))
    browser_login(page, full_webui.base_url, VIEWER_PASSWORD, user="viewer")
    page.goto(full_webui.base_url + "/classes")
    page.locator("#classes tbody tr[data-class]").first.wait_for()
    assert page.get_by_role("button", name=re.compile("^Edit")).count() == 0
    page.goto(full_webui.base_url + "/alerts")
    assert not page.locator("#rule-form").is_visible()
    status = page.evaluate("""async () => (await fetch('/api/v1/classes/video', {method: 'POST',
        headers: {'Content-Type': 'application/json',
                  'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
        body: JSON.stringify({max_mbit: 1})})).status""")
    assert status == 403
    assert fake_daemon.commands("class.set") == []
    _shoot(page, "alerts-viewer")


def test_pages_say_what_this_daemon_does_not_offer_yet(old_webui, page, console_errors):
    browser_login(page, old_webui.base_url, PASSWORD)
    for path in ("/links", "/classes", "/predictions", "/alerts", "/usage", "/history"):
        page.goto(old_webui.base_url + path)
        page.locator(".unavailable", has_text="Not available from this daemon yet").first.wait_for()
        _shoot(page, "missing-" + path.strip("/"))
    page.goto(old_webui.base_url + "/flows")
    page.locator("#all-flows tbody tr", has_text="192.168.1.10:51514").wait_for()
    page.locator("#mptcp-panel .unavailable").wait_for()
    page.goto(old_webui.base_url + "/")
    page.locator("#mptcp-note", has_text="not available").wait_for()
    page.locator("#flows tbody tr", has_text="192.168.1.10:51514").wait_for()
    _shoot(page, "missing-overview")
    # 503s from the API are expected here; nothing else may go wrong.
    assert [e for e in console_errors if "503" not in e] == []


def _tab_through(page, presses: int) -> list[str]:
    names = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        names.append(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    return names


def test_keyboard_order_on_the_login_page_and_the_navigation(full_webui, page):
    page.goto(full_webui.base_url + "/login")
    # The password field has focus on arrival; the skip link is the first stop of the page.
    assert page.evaluate("document.activeElement.id") == "password"
    page.locator(".skip-link").focus()
    assert _tab_through(page, 3) == ["username", "password", "Sign in"]
    browser_login(page, full_webui.base_url, PASSWORD)
    page.locator(".skip-link").focus()
    assert _tab_through(page, 8) == ["Overview", "Flows", "Links", "Classes", "Predictions", "Alerts",
                                     "Usage", "History"]
    page.keyboard.press("Enter")
    page.wait_for_url(full_webui.base_url + "/history")
    # Sortable headers are buttons: reachable and operable from the keyboard.
    page.goto(full_webui.base_url + "/flows")
    page.locator("#all-flows tbody tr", has_text="192.168.1.10").first.wait_for()
    page.get_by_role("button", name="Rate").focus()
    page.keyboard.press("Enter")
    assert page.locator("#all-flows th", has_text="Rate").get_attribute("aria-sort") == "descending"


# Walks the visible text of the page; for each text-bearing element, finds the first
# opaque background up the tree and computes the WCAG contrast ratio.
_CONTRAST_JS = """() => {
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let n = el; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const failures = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || Number(style.opacity) < 1) continue;
    if (el.closest('[hidden], .skip-link, body.stale .grid tbody, input, select')) continue;
    const fg = lum(parse(style.color)), bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const large = parseFloat(style.fontSize) >= 24 || (parseFloat(style.fontSize) >= 18.6 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) failures.push(el.tagName + ' "' + el.textContent.trim().slice(0, 30) + '" ' + ratio.toFixed(2));
  }
  return failures;
}"""

_UNLABELLED_JS = """() => [...document.querySelectorAll('input:not([type=hidden]):not([hidden]), select, button, a[href]')]
  .filter((el) => el.getClientRects().length)
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
  .map((el) => el.outerHTML.slice(0, 80))"""


def test_text_contrast_and_labels_on_every_page(full_webui, alert_history, page):
    browser_login(page, full_webui.base_url, PASSWORD)
    for name, (path, ready) in PAGES.items():
        page.goto(full_webui.base_url + path)
        page.locator(ready).first.wait_for(state="attached")
        if name == "classes":
            page.get_by_role("button", name="Edit video").click()
        assert page.evaluate(_CONTRAST_JS) == [], name
        assert page.evaluate(_UNLABELLED_JS) == [], name


def test_every_page_says_when_the_daemon_is_unreachable(full_webui, publisher, page):
    browser_login(page, full_webui.base_url, PASSWORD)
    page.goto(full_webui.base_url + "/links")
    page.locator("#links tbody tr[data-link]").first.wait_for()
    page.locator("#link-status", has_text="Live").wait_for()
    publisher.pause()
    page.get_by_role("alert").filter(has_text="Daemon unreachable").wait_for()
    _shoot(page, "links-unreachable")
    publisher.resume()
    page.locator("#daemon-banner").wait_for(state="hidden")
