"""The admin server's web pages in a real browser: Debian's chromium, headless, driven
through chromium-driver by selenium (nothing downloaded).  The browser loads the calls
page, sees calls that SIPp makes appear while it watches (the live feed), opens one, and
sees its ladder's arrows and a message's text; with ``--admin-token`` the page asks for
the token once.  With ``SIPRESPONDER_SCREENSHOTS=DIR`` the test saves both pages there
(how ``docs/img/web-calls.png`` and ``docs/img/web-call.png`` were made)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from required import missing
from sipprocs import StartResponder, run_sipp
from test_admin import start

selenium = pytest.importorskip("selenium")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT = 15.0


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        missing("chromium or chromedriver is not installed: make test installs them")
    # Selenium Manager must not look for a browser or a driver on the network.
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",  # as root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()  # stops chromedriver (and its browser) by its own process


def wait(driver: webdriver.Chrome) -> WebDriverWait[webdriver.Chrome]:
    return WebDriverWait(driver, WAIT)


def screenshot(driver: webdriver.Chrome, name: str) -> None:
    folder = os.environ.get("SIPRESPONDER_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


@pytest.mark.sipp
def test_calls_appear_live_and_a_call_shows_its_ladder(
    browser: webdriver.Chrome,
    sipp_binary: str,
    start_responder_with: StartResponder,
    tmp_path: Path,
) -> None:
    server, api = start(start_responder_with)
    assert server.admin_url is not None
    browser.get(server.admin_url + "/")
    state = browser.find_element(By.ID, "state")
    wait(browser).until(lambda d: state.text == "live")
    assert browser.find_elements(By.CSS_SELECTOR, "tr.call") == []

    # Calls made while the page is open appear without a reload.
    for scenario, user, transport in (
        ("uac_busy", "180-486", "udp"),
        ("uac_call", "bob", "tcp"),
        ("uac_options", "alice", "udp"),
    ):
        result = run_sipp(server, scenario, user, transport, tmp_path)
        assert result.returncode == 0, result.report()
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.call")) == 3)
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.call")
    texts = [r.text for r in rows]
    assert "OPTIONS" in texts[0] and "alice" in texts[0]  # newest first
    assert "INVITE" in texts[2] and "180-486" in texts[2] and "486" in texts[2]
    assert "tcp" in texts[1] and "sipp" in texts[1]  # From shown
    wait(browser).until(lambda d: "3 of 3 calls" in d.find_element(By.ID, "count").text)
    screenshot(browser, "web-calls.png")

    # The filters apply at once.
    browser.find_element(By.ID, "f-status").send_keys("486")
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.call")) == 1)

    # Its page: the ladder's arrows, and a message's text on a click.
    browser.find_element(By.CSS_SELECTOR, "tr.call").click()
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".arrow"))
    arrows = browser.find_elements(By.CSS_SELECTOR, ".arrow")
    assert [a.text for a in arrows][:4] == [
        f"INVITE sip:180-486@127.0.0.1:{server.port}",
        "100 Trying",
        "180 Ringing",
        "486 Busy Here",
    ]
    assert arrows[4].text.startswith("ACK ")
    assert "right" in (arrows[0].get_attribute("class") or "")
    assert "cerr" in (arrows[3].get_attribute("class") or "")
    arrows[3].click()
    raw = browser.find_element(By.ID, "raw")
    wait(browser).until(lambda d: raw.text.startswith("SIP/2.0 486 Busy Here"))
    assert "no violation" in browser.find_element(By.ID, "verdicts").text
    screenshot(browser, "web-call.png")

    # The calls page again, clean: the filter was the page's, not the server's.
    browser.get(server.admin_url + "/")
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.call")) == 3)
    assert api.ok("/api/calls")["count"] == 3

    # The answered call had a media session: its ladder has an RTP lane.
    browser.find_elements(By.CSS_SELECTOR, "tr.call")[1].click()
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".rtp"))
    assert "pcmu/8000" in browser.find_element(By.CSS_SELECTOR, ".rtp").text.lower()
    assert "RTP" in browser.find_element(By.CSS_SELECTOR, ".lanes").text
    assert [a.text.split(" ")[0] for a in browser.find_elements(By.CSS_SELECTOR, ".arrow")][:6] == [
        "INVITE",
        "100",
        "180",
        "200",
        "ACK",
        "BYE",
    ]


def test_the_page_asks_for_the_token_once(
    browser: webdriver.Chrome, start_responder_with: StartResponder
) -> None:
    server, _ = start(start_responder_with, "--admin-token", "s3cret")
    assert server.admin_url is not None
    browser.get(server.admin_url + "/")
    alert = wait(browser).until(expected_conditions.alert_is_present())
    assert "token" in alert.text
    alert.send_keys("s3cret")
    alert.accept()
    wait(browser).until(lambda d: d.find_element(By.ID, "state").text == "live")
    # Reloaded, the tab keeps the token: no second question.
    browser.refresh()
    wait(browser).until(lambda d: d.find_element(By.ID, "state").text == "live")
    assert "0 of 0 calls" in browser.find_element(By.ID, "count").text
    browser.execute_script("sessionStorage.clear()")
