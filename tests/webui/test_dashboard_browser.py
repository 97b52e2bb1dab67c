"""The dashboard in headless Chromium against the real anabranch-webui (gunicorn)."""

from __future__ import annotations

import pytest

from webui_harness import PASSWORD, SCREENSHOTS, browser_login

pytestmark = pytest.mark.browser


@pytest.fixture
def console_errors(page):
    """Errors the page logs (a CSP violation or a script error shows up here)."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def test_login_then_live_flows_appear_in_the_table(webui, page, console_errors):
    browser_login(page, webui.base_url, PASSWORD)
    row = page.locator("#flows tbody tr", has_text="192.168.1.10:51514")
    row.wait_for()
    assert "203.0.113.20:443" in row.inner_text()
    assert row.locator(".badge").inner_text() == "interactive"
    assert page.locator("#link-status").inner_text().strip() == "Live"
    assert page.locator("#total-flows").inner_text() == "14"
    assert "Mbit/s" in page.locator("#total-down").inner_text()
    assert page.locator("#ifaces tbody tr").count() == 3
    # IPv6 endpoints are bracketed; ICMP has no ports.
    page.locator("#flows tbody tr", has_text="[fd00:1::d]:51517").wait_for()
    page.locator("#flows tbody td", has_text="ICMP").first.wait_for()
    # Updates keep coming: the byte counters move on.
    before = row.locator("td").nth(5).inner_text()
    page.wait_for_function(
        "before => [...document.querySelectorAll('#flows tbody tr')]"
        ".some(r => r.textContent.includes('192.168.1.10:51514') && r.cells[5].textContent !== before)",
        arg=before)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"))
    assert console_errors == []


def test_filter_narrows_the_flows_table(webui, page):
    browser_login(page, webui.base_url, PASSWORD)
    page.locator("#flows tbody tr", has_text="192.168.1.10:51514").wait_for()
    page.get_by_label("Filter").fill("voice")
    page.wait_for_function("() => [...document.querySelectorAll('#flows tbody tr')]"
                           ".every(r => r.textContent.includes('voice'))")
    assert "match the filter" in page.locator("#flows-caption").inner_text()


def test_sort_buttons_order_the_flows_table(webui, page):
    browser_login(page, webui.base_url, PASSWORD)
    page.locator("#flows tbody tr", has_text="192.168.1.10:51514").wait_for()
    # The IPv4 sources' addresses (the column sorts by address; ports break no ties).
    order_is = ("([key, descending]) => { const v = [...document.querySelectorAll('#flows tbody tr')]"
                ".map(r => r.cells[key].textContent).filter(t => /^\\d/.test(t)).map(t => t.split(':')[0]);"
                " const s = [...v].sort((a, b) => a.localeCompare(b, 'en', {numeric: true}));"
                " if (descending) s.reverse(); return new Set(v).size > 1 && v.every((x, i) => x === s[i]); }")
    source = page.locator("#flows th", has_text="Source")
    # A text column sorts ascending first, and a second press turns it round.
    page.get_by_role("button", name="Source").click()
    assert source.get_attribute("aria-sort") == "ascending"
    page.wait_for_function(order_is, arg=[0, False])
    page.get_by_role("button", name="Source").click()
    assert source.get_attribute("aria-sort") == "descending"
    page.wait_for_function(order_is, arg=[0, True])
    # A numeric column starts descending; the other headers are reset.
    page.get_by_role("button", name="Rate up").click()
    assert page.locator("#flows th", has_text="Rate up").get_attribute("aria-sort") == "descending"
    assert source.get_attribute("aria-sort") == "none"
    # ... and orders by the number, not by the text ("900 kbit/s" below "1.2 Mbit/s").
    falling = ("() => { const unit = {'bit/s': 1, 'kbit/s': 1e3, 'Mbit/s': 1e6, 'Gbit/s': 1e9};"
               " const v = [...document.querySelectorAll('#flows tbody tr')].map(r => r.cells[6].textContent.trim())"
               ".filter(t => /^[\\d.]+ \\S+$/.test(t)).map(t => { const [n, u] = t.split(' '); return Number(n) * unit[u]; });"
               " return new Set(v).size > 1 && v.every((x, i) => i === 0 || v[i - 1] >= x); }")
    page.wait_for_function(falling)


def test_dashboard_says_when_the_daemon_is_unreachable(webui, publisher, page):
    browser_login(page, webui.base_url, PASSWORD)
    page.locator("#flows tbody tr", has_text="192.168.1.10").first.wait_for()
    publisher.pause()
    page.get_by_role("alert").filter(has_text="Daemon unreachable").wait_for()
    assert page.locator("#link-status").inner_text().strip() == "Daemon unreachable"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard-unreachable.png"))
    publisher.resume()
    page.locator("#daemon-banner").wait_for(state="hidden")


def test_wrong_password_shows_a_message_in_the_browser(webui, page):
    page.goto(webui.base_url + "/")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert "Wrong password" in page.get_by_role("alert").inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "login.png"))


def test_sign_out_returns_to_the_login_page(webui, page):
    browser_login(page, webui.base_url, PASSWORD)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(webui.base_url + "/login")
    assert "You have signed out" in page.content()
    page.goto(webui.base_url + "/")
    page.wait_for_url(webui.base_url + "/login?next=/")
