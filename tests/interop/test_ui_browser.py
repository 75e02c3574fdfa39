"""The web UI in a real browser: Debian's chromium (headless) through its chromium-driver,
driven by selenium. Signing in answers the pages' Basic challenge with credentials in the
URL, as a user typing them into the browser's prompt would; token mode, so that the pages'
Basic sign-in is the one that differs from the API's.

Set OCINEST_SCREENSHOT_DIR to keep the tree page's screenshot there (the README's
docs/img/ui-tree.png is made so)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from interop_helpers import require
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from tests.client.helpers import SIG_TYPE, Tree
from tests.conftest import Server
from tests.uikit import PARENT, SECRET, USERS, secured_server

# The flags this machine's closed network needs (no first-run, sync, component or QUIC
# traffic), and a fixed window for the screenshot.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,400",
]
PAGE_LOAD_SECONDS = 20

Browser = Callable[[str], WebDriver]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """Start chromium for a user: each has a profile (and so an auth cache) of its own."""
    chromium, chromedriver = require("chromium"), require("chromedriver")
    os.environ["SE_OFFLINE"] = "true"  # selenium must never look for a driver or a browser
    drivers: list[WebDriver] = []

    def start(user: str) -> WebDriver:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / ('profile-' + user)}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(chromedriver))
        driver.set_page_load_timeout(PAGE_LOAD_SECONDS)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[Server, Tree]]:
    srv, tree = secured_server(tmp_path, "token")
    yield srv, tree
    srv.stop()


def sign_in(driver: WebDriver, srv: Server, user: str) -> None:
    driver.get(f"http://{user}:{USERS[user]}@{srv.host}/ui/")
    assert f"signed in as {user}" in driver.find_element(By.TAG_NAME, "header").text


def test_browse_a_signed_tree(browser: Browser, secured: tuple[Server, Tree]) -> None:
    srv, tree = secured
    driver = browser("alice")
    sign_in(driver, srv, "alice")
    # The catalog: the parent, with its children below it.
    driver.find_element(By.LINK_TEXT, PARENT).click()
    assert driver.find_element(By.TAG_NAME, "h1").text == PARENT
    driver.find_element(By.LINK_TEXT, "tree").click()
    assert driver.title.startswith(f"tree of {PARENT}:v1")

    # app2 (an index of two platforms) is folded; opening it shows its children.
    amd = tree.manifests["amd"][1]
    child = driver.find_element(By.CSS_SELECTOR, f'a.d[href$="/-/manifest/{amd}"]')
    assert not child.is_displayed()
    app2 = driver.find_element(By.CSS_SELECTOR, "li li details.n")
    app2.find_element(By.CSS_SELECTOR, "summary > span.d").click()
    assert child.is_displayed() and app2.get_attribute("open") is not None
    assert "linux/amd64" in app2.text and "linux/arm64" in app2.text
    png = driver.get_screenshot_as_png()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    keep = os.environ.get("OCINEST_SCREENSHOT_DIR")
    if keep:
        Path(keep, "ui-tree.png").write_bytes(png)

    # Follow the child app1 into its own repository, then to its signature.
    driver.find_element(By.LINK_TEXT, f"{PARENT}/app1").click()
    assert driver.find_element(By.TAG_NAME, "h1").text == f"{PARENT}/app1"
    driver.find_element(By.LINK_TEXT, "latest").click()
    referrers = driver.find_element(By.CSS_SELECTOR, "table.referrers")
    assert SIG_TYPE in referrers.text
    assert tree.signature is not None and tree.signature[0][:19] in referrers.text
    commands = driver.find_elements(By.CSS_SELECTOR, ".cmd input")
    assert any((c.get_attribute("value") or "").startswith("podman pull") for c in commands)


def test_a_user_sees_nothing_hidden(browser: Browser, secured: tuple[Server, Tree]) -> None:
    srv, tree = secured
    driver = browser("bob")
    sign_in(driver, srv, "bob")
    names = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "ul.repos a")]
    assert names == [PARENT]
    assert SECRET not in driver.page_source

    # Through the parent bob sees the whole tree by digest, but not the children's tags.
    driver.get(f"{srv.url}/ui/{PARENT}/-/tree/v1")
    for _, digest, _ in tree.manifests.values():
        assert digest[:19] in driver.page_source
    app1 = driver.find_element(By.LINK_TEXT, f"{PARENT}/app1")
    assert app1.get_attribute("href").endswith(f"/-/manifest/{tree.manifests['app1'][1]}")
    app1.click()
    assert "Referrers (1)" in driver.page_source  # the child's signature, as the API lists it

    for url in (f"/ui/{SECRET}", f"/ui/{SECRET}/-/manifest/v1", f"/ui/{PARENT}/app1"):
        driver.get(srv.url + url)
        heading = driver.find_element(By.TAG_NAME, "h1").text
        assert heading.startswith(("401", "403")), url
        assert "sha256:" not in driver.page_source, url
