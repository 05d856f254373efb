"""The web view in headless Chromium against a live `meshctl serve` with providers, a real Envoy
sidecar and contracts: the graph is drawn, a new contract appears without a reload, the proxy's
sync status shows, and the time slider redraws earlier versions. Saves artifacts/ui.png.

Fails (never skips) when chromium or chromedriver is missing.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from conftest_operators import (
    AGENT_TOKEN,
    CAPABILITY,
    OPERATOR_TOKEN,
    REPO,
    NackingSidecar,
    ServeProcess,
    start_serve,
)
from harness import EnvoyProcess
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from meshctl.xds.resources import ROUTE

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "artifacts"
T = TypeVar("T")

PROVIDERS = [
    ("ga-dublin-a", "eu-west-1a", 200, 18, 0.40, None),
    ("ga-dublin-b", "eu-west-1b", 150, 22, 0.35, None),
    ("ga-frankfurt", "eu-central-1a", 250, 12, 0.30, 120.0),
    ("ga-virginia", "us-east-1a", 1000, 8, 0.10, None),
]


@pytest.fixture
def mesh() -> Iterator[tuple[ServeProcess, httpx.Client]]:
    server = start_serve()
    try:
        agent = server.http(AGENT_TOKEN)
        for i, (pid, zone, cap, p99, cost, ttl) in enumerate(PROVIDERS):
            body: dict[str, Any] = {
                "id": pid,
                "capabilities": [CAPABILITY],
                "zone": zone,
                "endpoints": [{"address": "127.0.0.1", "port": 9300 + i}],
                "labels": {"compliance": ["gdpr"]},
                "capacity_rps": cap,
                "latency_p99_ms": p99,
                "cost_per_1k": cost,
            }
            if ttl:
                body["ttl_s"] = ttl
            agent.post("/v1/providers", json=body).raise_for_status()
        yield server, agent
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)


@pytest.fixture
def sidecar(mesh: tuple[ServeProcess, httpx.Client]) -> Iterator[EnvoyProcess]:
    server, _ = mesh
    proc = EnvoyProcess.for_node(
        "fraud-1", server.xds_port, service="fraud-detection", zone="eu-west-1a", region="eu-west"
    )
    try:
        yield proc.start()
    finally:
        proc.stop()


@pytest.fixture
def nacker(mesh: tuple[ServeProcess, httpx.Client]) -> Iterator[NackingSidecar]:
    """The recommender's proxy: it rejects every route configuration it is sent."""
    server, _ = mesh
    proc = NackingSidecar(server.xds_port, "recommender-1", "recommender", "eu-west-1a", reject=(ROUTE,))
    try:
        yield proc.start()
    finally:
        proc.stop()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            pytest.fail(
                f"{path} is missing: install Debian's chromium and chromium-driver (scripts/system-deps.sh)"
            )
    profile = tempfile.mkdtemp(prefix="meshctl-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--window-size=1600,960",
    ):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        yield driver
    finally:
        driver.quit()  # stops chromedriver and the browser it started
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: WebDriver, fn: Callable[[], T], what: str, timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except WebDriverException as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    logs = "\n".join(str(e) for e in driver.get_log("browser"))
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})\nbrowser console:\n{logs}")


def js(driver: WebDriver, script: str) -> Any:
    return driver.execute_script(f"return (() => {{ const m = window.meshctl; return {script}; }})()")


def propose(agent: httpx.Client, consumer: str, rps: float, p99: float, **extra: Any) -> str:
    r = agent.post(
        "/v1/contracts",
        json={
            "consumer": consumer,
            "consumer_zone": "eu-west-1a",
            "capability": CAPABILITY,
            "sla": {"p99_latency_ms": p99, "rps": rps},
            "max_cost_per_1k": 1.0,
            **extra,
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["contract"]["id"])


def test_web_view_live_updates_and_time_slider(
    mesh: tuple[ServeProcess, httpx.Client], sidecar: EnvoyProcess, nacker: NackingSidecar, browser: WebDriver
) -> None:
    server, agent = mesh
    first = propose(agent, "fraud-detection", 300, 40, labels={"data_class": "pii"})

    browser.get(f"{server.api}/ui/?token={OPERATOR_TOKEN}")
    wait(browser, lambda: js(browser, "m.cy && m.cy.nodes('.provider').length === 4"), "4 providers drawn")
    assert js(browser, "m.cy.nodes('.zone').length") == 8
    assert js(browser, "m.cy.nodes('.region').length") == 3
    assert js(browser, "m.cy.getElementById('provider:ga-frankfurt').parent().id()") == "zone:eu-central-1a"
    assert js(browser, f"m.cy.edges('[contract = \"{first}\"]').length") >= 1
    # Drawn for real: every provider box has a size on screen and the canvas holds painted pixels.
    assert js(browser, "m.cy.nodes('.provider').every((n) => n.renderedBoundingBox().w > 20)")
    painted = js(
        browser,
        "[...document.querySelectorAll('#cy canvas')].reduce((acc, c) => {"
        " if (!c.width || !c.height) return acc;"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 16) if (d[i] > 0) n++; return acc + n; }, 0)",
    )
    assert painted > 1000, painted
    assert browser.find_element(By.ID, "conn").text == "● live"
    row = browser.find_element(By.CSS_SELECTOR, f'#contracts tr[data-contract="{first}"]')
    assert "active" in row.text and "300 rps" in row.text

    # The sidecar's sync status, polled from /v1/proxies with the operator token.
    wait(
        browser,
        lambda: "acked" in browser.find_element(By.CSS_SELECTOR, '#proxies tr[data-node="fraud-1"]').text,
        "the fraud-1 proxy to show as ACKed",
        timeout=25,
    )

    # A newly admitted contract appears without a reload (SSE).
    loads = js(browser, "performance.getEntriesByType('navigation').length")
    second = propose(agent, "recommender", 120, 100)
    wait(
        browser,
        lambda: js(browser, f"m.cy.edges('[contract = \"{second}\"]').length > 0"),
        "the new contract's flow",
    )
    row = wait(
        browser,
        lambda: browser.find_elements(By.CSS_SELECTOR, f'#contracts tr[data-contract="{second}"]'),
        "the new contract's row",
    )[0]
    assert "recommender" in row.text and "120 rps" in row.text
    assert js(browser, "performance.getEntriesByType('navigation').length") == loads
    assert js(browser, "m.following") is True
    # The recommender's proxy NACKed the route that contract brought: status and Envoy's error text.
    nack_row = wait(
        browser,
        lambda: browser.find_elements(By.CSS_SELECTOR, "#proxies tr.nack-row"),
        "the NACK to show in the proxies table",
    )[0]
    assert "route rejected by the test sidecar" in nack_row.text and "NACK" in nack_row.text
    assert "nacked" in browser.find_element(By.CSS_SELECTOR, '#proxies tr[data-node="recommender-1"]').text
    wait(browser, lambda: js(browser, "m.cy.getElementById('consumer:recommender').hasClass('sync-nacked')"),
         "the recommender node marked as NACKed")  # fmt: skip
    assert js(browser, "m.cy.getElementById('consumer:fraud-detection').hasClass('sync-nacked')") is False
    flow_labels = js(browser, f"m.cy.edges('[contract = \"{second}\"]').map((e) => e.data('label'))")
    assert any("rps" in lbl for lbl in flow_labels)

    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "ui.png"))

    # Back in time with the slider (keyboard, like a person): the very first version had no
    # providers and no contracts.
    slider = browser.find_element(By.ID, "slider")
    history = js(browser, "m.history.map((h) => [h.version, h.cause])")
    slider.send_keys(Keys.HOME)
    wait(
        browser, lambda: js(browser, "m.shown && m.shown.version") == history[0][0], "the first version drawn"
    )
    assert js(browser, "m.following") is False
    assert js(browser, "m.cy.nodes('.provider').length") == 0
    assert "no contracts in this version" in browser.find_element(By.ID, "contracts").text
    assert not browser.find_element(By.ID, "back-live").get_attribute("hidden")
    assert f"v{history[0][0]}" in browser.find_element(By.ID, "banner").text

    # Step forward to the version the first contract was admitted in: 4 providers, 1 contract.
    admitted_at = next(i for i, (_, cause) in enumerate(history) if cause == "contract admitted")
    for _ in range(admitted_at):
        slider.send_keys(Keys.ARROW_RIGHT)
    wanted = history[admitted_at][0]
    wait(browser, lambda: js(browser, "m.shown && m.shown.version") == wanted, f"v{wanted} drawn")
    assert js(browser, "m.cy.nodes('.provider').length") == 4
    assert js(browser, f"m.cy.edges('[contract = \"{second}\"]').length") == 0
    assert js(browser, f"m.cy.edges('[contract = \"{first}\"]').length") >= 1
    rows = browser.find_elements(By.CSS_SELECTOR, "#contracts tr[data-contract]")
    assert [r.get_attribute("data-contract") for r in rows] == [first]
    browser.save_screenshot(str(ARTIFACTS / "ui-history.png"))

    # A change while looking at the past extends the slider but does not yank the view.
    third = propose(agent, "fraud-detection", 20, 100)
    wait(browser, lambda: js(browser, "m.live && m.live.contracts.length") == 3, "the live snapshot")
    assert js(browser, "m.shown.version") == wanted

    # Back to live: everything, including the change that came meanwhile.
    browser.find_element(By.ID, "back-live").click()
    wait(
        browser,
        lambda: js(browser, "m.following && m.cy.edges('[contract = \"" + third + "\"]').length > 0"),
        "live again",
    )
    assert js(browser, "m.cy.nodes('.provider').length") == 4
    assert browser.find_element(By.ID, "back-live").get_attribute("hidden") is not None
    # No script error or failed request along the way.
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
