"""Accessibility and layout in headless Chromium, at 1280x800 and at phone width (390x844):
every control has a name, the keyboard alone reaches and operates the editors, focus is
visible, nothing but a table scrolls sideways, and touch targets are big enough."""

from __future__ import annotations

import pytest
import webui_harness as harness
from webui_harness import PASSWORD, SCREENSHOTS, browser_login

pytestmark = pytest.mark.browser

PAGES = {
    "overview": ("/", "#flows tbody tr:not(.empty)"),
    "flows": ("/flows", "#all-flows tbody tr:not(.empty)"),
    "links": ("/links", "#links tbody tr[data-link]"),
    "classes": ("/classes", "#htb tbody tr[data-htb]"),
    "predictions": ("/predictions", "#demand tbody .badge"),
    "alerts": ("/alerts", "#alert-rules tbody tr:not(.empty)"),
    "usage": ("/usage", "#usage tbody tr:not(.empty)"),
    "history": ("/history", "#history-chart"),
}
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# WCAG 2.2 success criterion 2.5.8 (target size, minimum): 24 by 24 CSS pixels.
MIN_TARGET_PX = 24

# Controls a person can reach, with no accessible name (label, aria-label, or text).
_UNNAMED_JS = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, a[href], [tabindex]:not([tabindex="-1"])')]
  .filter((el) => el.getClientRects().length && !el.closest('[hidden]'))
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !el.getAttribute('aria-labelledby') && !el.textContent.trim() && !el.title)
  .map((el) => el.outerHTML.slice(0, 80))"""

# What scrolls sideways: the document (never allowed) and any element past the screen's
# edge that is not inside a container made to scroll sideways (tables, the page links).
_OVERFLOW_JS = """() => {
  const width = window.innerWidth;
  const scrolls = (el) => {
    for (let n = el.parentElement; n; n = n.parentElement) {
      if (['auto', 'scroll'].includes(getComputedStyle(n).overflowX)) return true;
    }
    return false;
  };
  const wide = [...document.querySelectorAll('body *')].filter((el) => {
    if (!el.getClientRects().length || el.closest('[hidden]') || scrolls(el)) return false;
    const box = el.getBoundingClientRect();
    return box.right > width + 1 || box.left < -1;
  }).filter((el) => !el.classList.contains('skip-link'));
  return {page: document.documentElement.scrollWidth - width,
          elements: wide.slice(0, 5).map((el) => el.tagName + '.' + el.className + '#' + el.id)};
}"""

# Visible controls smaller than the minimum target in either direction (inline links
# in running text are exempt under the criterion).
_SMALL_TARGETS_JS = """(min) => [...document.querySelectorAll('button, a[href], input:not([type=hidden]), select')]
  .filter((el) => el.getClientRects().length && !el.closest('[hidden], p, .skip-link'))
  .filter((el) => { const b = el.getBoundingClientRect(); return b.width < min || b.height < min; })
  .map((el) => el.outerHTML.slice(0, 60) + ' ' + Math.round(el.getBoundingClientRect().width) + 'x'
       + Math.round(el.getBoundingClientRect().height))"""

_FOCUS_RING_JS = """() => {
  const s = getComputedStyle(document.activeElement);
  return (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2) || s.boxShadow !== 'none';
}"""


@pytest.fixture
def full_webui(config_path, publisher, fake_daemon):
    fake_daemon.raise_alert("a1", "wan1 above 95 % for 60 s", severity="critical", subject="wan1")
    with harness.webui_server(config_path) as server:
        yield server


def _open(chromium, base_url: str, viewport: dict, **options):
    context = chromium.new_context(viewport=viewport, **options)
    page = context.new_page()
    page.set_default_timeout(10_000)
    browser_login(page, base_url, PASSWORD)
    return context, page


def _visit(page, base_url: str, name: str) -> None:
    path, ready = PAGES[name]
    page.goto(base_url + path)
    page.locator(ready).first.wait_for(state="attached")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280x800", "390x844"])
def test_every_page_has_a_language_a_title_one_heading_and_named_controls(full_webui, chromium, viewport):
    context, page = _open(chromium, full_webui.base_url, viewport)
    try:
        titles = set()
        for name in PAGES:
            _visit(page, full_webui.base_url, name)
            if name == "classes":
                page.get_by_role("button", name="Edit video").click()
            assert page.evaluate("document.documentElement.lang") == "en"
            assert page.locator("h1").count() == 1, name
            assert page.locator("main").count() == 1 and page.get_by_role("navigation", name="Pages").count() == 1
            assert page.evaluate(_UNNAMED_JS) == [], name
            titles.add(page.title())
        assert len(titles) == len(PAGES)  # each page says where you are
    finally:
        context.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280x800", "390x844"])
def test_nothing_but_tables_scrolls_sideways_and_targets_are_large_enough(full_webui, chromium, viewport):
    options = {"is_mobile": True, "has_touch": True} if viewport is PHONE else {}
    context, page = _open(chromium, full_webui.base_url, viewport, **options)
    suffix = "phone" if viewport is PHONE else "desktop"
    try:
        for name in PAGES:
            _visit(page, full_webui.base_url, name)
            overflow = page.evaluate(_OVERFLOW_JS)
            assert overflow["page"] <= 1 and overflow["elements"] == [], (name, overflow)
            assert page.evaluate(_SMALL_TARGETS_JS, MIN_TARGET_PX) == [], name
            # The whole navigation stays reachable: every page link is on screen or scrolls into it.
            for link in page.get_by_role("navigation", name="Pages").get_by_role("link").all():
                link.scroll_into_view_if_needed()
                assert link.is_visible()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"a11y-history-{suffix}.png"), full_page=True)
    finally:
        context.close()


def test_at_1280x800_every_table_fits_without_scrolling_sideways(full_webui, page):
    browser_login(page, full_webui.base_url, PASSWORD)
    for name in PAGES:
        _visit(page, full_webui.base_url, name)
        page.wait_for_timeout(300)
        wide = page.evaluate("""() => [...document.querySelectorAll('.table-scroll')]
            .filter((box) => box.getClientRects().length && box.scrollWidth > box.clientWidth + 1)
            .map((box) => box.querySelector('table').id + ' ' + (box.scrollWidth - box.clientWidth) + 'px')""")
        assert wide == [], name


def _tab_until(page, predicate_js: str, limit: int = 80) -> int:
    for presses in range(1, limit + 1):
        page.keyboard.press("Tab")
        if page.evaluate(predicate_js):
            return presses
    raise AssertionError(f"Tab never reached the control ({predicate_js})")


def test_the_keyboard_alone_edits_a_class_with_a_visible_focus_ring(full_webui, fake_daemon, page):
    browser_login(page, full_webui.base_url, PASSWORD)
    _visit(page, full_webui.base_url, "classes")
    page.locator("#main").focus()
    _tab_until(page, "document.activeElement.getAttribute('aria-label') === 'Edit video'")
    assert page.evaluate(_FOCUS_RING_JS)
    page.keyboard.press("Enter")
    order = [page.evaluate("document.activeElement.name")]
    for _ in range(3):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.name"))
        assert page.evaluate(_FOCUS_RING_JS)
    assert order == ["priority", "min_mbit", "max_mbit", "dscp"]
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Control+A")
    page.keyboard.type("33")
    page.keyboard.press("Enter")                      # submits the editor's form
    page.locator('#classes tr[data-class="video"]', has_text="33.0 Mbit/s").wait_for()
    # Focus returns to the class's Edit button, not to the top of the page.
    page.wait_for_function("document.activeElement.getAttribute('aria-label') === 'Edit video'")
    assert fake_daemon.commands("class.set")[-1]["args"]["max_mbit"] == 33.0


def test_the_keyboard_alone_acknowledges_an_alert_and_adds_a_rule(full_webui, fake_daemon, page):
    browser_login(page, full_webui.base_url, PASSWORD)
    page.goto(full_webui.base_url + "/alerts")
    page.locator("#active-alerts tbody tr[data-alert]").wait_for()
    page.locator("#main").focus()
    _tab_until(page, "document.activeElement.textContent === 'Acknowledge'")
    page.keyboard.press("Enter")
    page.locator("#active-alerts tbody tr", has_text="yes").wait_for()

    page.locator("#main").focus()
    _tab_until(page, "document.activeElement.name === 'name'")
    page.keyboard.type("busy-links")
    fields = []
    while page.evaluate("document.activeElement.type") != "submit":
        page.keyboard.press("Tab")
        fields.append(page.evaluate("document.activeElement.name"))
        if page.evaluate("document.activeElement.name") == "threshold":
            page.keyboard.type("90")
    assert fields[:-1] == ["metric", "summary", "op", "threshold", "for_s", "severity"]
    page.keyboard.press("Enter")
    page.locator("#alert-rules tbody tr", has_text="busy-links").wait_for()
    assert fake_daemon.commands("alert_rules.set")[-1]["args"]["rule"]["name"] == "busy-links"
