"""The server's web page in a real browser: Debian's headless Chromium, driven by selenium through
Debian's chromedriver, against a real server (SQLite, API token) after a real agent shipped three
versions over HTTP. It walks what a person does — fleet, environment, a diff between versions,
one object and its history — asserting on what is visible, and saves a screenshot of each page;
then what is broken (collection errors, the health view) and how fresh each environment is
(snapshot age, its agent's data budget).

Screenshots go to $SNAPSYNC_SCREENSHOTS when set, else to pytest's tmp_path/screenshots; the
path is printed (pytest -s, or the captured output of a failure). Chromium runs with background
networking off: this machine's network is closed, and the page needs nothing outside loopback.
Without Chromium the test skips, except under CI=true, where it fails (.ci/browser.sh installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snapsync.agent import Agent, HttpTransport
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import build_snapshot, rfc3339
from snapsync.collect import FileCollector
from snapsync.kubeview import parse_time
from snapsync.protocol import AgentConfig, Intervals
from snapsync.protocol.budget import BudgetConfig
from snapsync.protocol.messages import BudgetReport
from snapsync.protocol.pacing import SPENT
from snapsync.server import ServerSettings
from snapsync.server.environments import AgentSecrets, enroll
from snapsync.server.store import open_store
from snapsync.sim.sample_cluster import SampleCluster
from tests.support_broken import COLLECTED, broken_objects, real, ship_once
from tests.support_kube import emulator_fixture, kubeconfig_fixture  # noqa: F401 (fixtures)
from tests.support_server import live_server
from tools.kube_emulator import KubeEmulator

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "browser-test-token"
WAIT = 30.0  # an upper bound for a page to load on a busy machine, never a measured time


def _missing() -> str:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() or shutil.which(Path(path).name)):
            return f"{path} is missing (bash .ci/browser.sh installs Debian's chromium)"
    return ""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser test under CI: {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-default-apps",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


class Clock:
    """Real time plus an offset the test moves forward, so each step is due at once."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A server whose SQLite store holds three versions of 'Shop 5', shipped by a real agent."""
    store = open_store(str(tmp_path / "server.db"))
    made = enroll(store.registry, "Shop 5", time.time(), group="eu", tags=("retail",))
    edge = made.registration.edge_id
    cluster = SampleCluster(objects=120, shape="application", seed=7)
    dump = tmp_path / "dump.json"
    settings = ServerSettings(
        secrets=AgentSecrets(store.registry, None), stores=store, api_token=TOKEN
    )
    with live_server(settings) as url:
        clock = Clock()
        agent = Agent(
            FileCollector([dump]),
            HttpTransport(url, edge, made.token.encode(), timeout=20),
            tmp_path / "agent-state",
            AgentConfig(intervals=Intervals(jitter=0.0)),
            environment_id=edge,
            clock=clock,
            seed=1,
        )
        for version in range(3):
            if version:
                cluster.step(churn="busy", minutes=5)
                clock.offset += 61
            dump.write_text(json.dumps(cluster.list_document()))
            assert agent.step().in_sync
        agent.close()
        assert [v.seq for v in store.queries.versions(edge)] == [3, 2, 1]
        yield url
    store.close()


def sign_in(driver: Any, url: str, token: str = TOKEN) -> None:
    """What a person does: open a page, land on the sign-in form, type the token, submit."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    field = driver.find_element(By.NAME, "token")
    field.send_keys(token)
    field.submit()
    WebDriverWait(driver, WAIT).until(
        lambda d: (
            (
                d.execute_script("return document.readyState") == "complete"
                and "/login" not in d.current_url
            )
            or d.find_elements(By.CSS_SELECTOR, "p.error")
        )
    )


def follow(driver: Any, link: Any, url_part: str) -> None:
    """Click a link and wait until the page it leads to has loaded."""
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    link.click()
    wait = WebDriverWait(driver, WAIT)
    wait.until(ec.url_contains(url_part))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def screenshots_folder(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SNAPSYNC_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


def test_browse_fleet_environment_diff_and_object_history(
    browser: Any, server: str, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    shots = screenshots_folder(tmp_path)

    def text() -> str:
        return str(driver.find_element(By.TAG_NAME, "body").text)

    # 1. the fleet, after signing in (the page holds no script: the stylesheet still applies
    # under the Content-Security-Policy, which allows styles from this server only)
    sign_in(driver, server + "/")
    assert driver.current_url == server + "/"
    header = driver.find_element(By.TAG_NAME, "header")
    assert header.value_of_css_property("background-color") == "rgba(17, 24, 39, 1)"
    assert driver.find_element(By.TAG_NAME, "h1").text == "Environments"
    row = driver.find_element(By.XPATH, "//tr[td/a[text()='Shop 5']]")
    cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
    assert cells[1] == "eu" and "retail" in cells[2] and cells[3] == "fresh" and cells[7] == "3"
    driver.save_screenshot(str(shots / "01-environments.png"))

    # 2. one environment: its objects by kind and its versions
    follow(driver, row.find_element(By.LINK_TEXT, "Shop 5"), "/env/")
    assert driver.find_element(By.TAG_NAME, "h1").text.startswith("Shop 5")
    assert "Recent versions" in text()
    kinds = driver.find_elements(By.CSS_SELECTOR, "nav.side a:not(.ns)")
    assert kinds[0].text.startswith("All kinds") and len(kinds) > 2
    objects = driver.find_elements(By.XPATH, "//section/table[1]//td[3]/a")
    assert objects, "the environment page lists no object"
    versions = driver.find_elements(By.XPATH, "//section/table[2]//tr[td]")
    assert [v.find_element(By.TAG_NAME, "td").text for v in versions] == ["3", "2", "1"]
    driver.save_screenshot(str(shots / "02-environment.png"))

    # 3. what changed between version 2 and 3
    follow(driver, versions[0].find_element(By.LINK_TEXT, "diff"), "/diff")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Shop 5: version 2 → 3"
    changed = driver.find_elements(By.XPATH, "//tr[td/span[text()='changed']]")
    assert changed, "the busy churn changed no object between versions 2 and 3"
    assert changed[0].find_elements(By.CSS_SELECTOR, ".op"), "a changed object shows no operation"
    driver.save_screenshot(str(shots / "03-diff.png"))

    # 4. one of those objects: its current state and its history, the change included
    link = changed[0].find_element(By.TAG_NAME, "a")
    key = link.text
    follow(driver, link, "/object/")
    name = key.rsplit("/", 1)[-1]
    assert name in driver.find_element(By.TAG_NAME, "h1").text
    assert (
        "Current" in text() and f"  name: {name}\n" in driver.find_element(By.TAG_NAME, "pre").text
    )
    history = driver.find_elements(By.XPATH, "//h2[text()='History']/following-sibling::table//tr")
    assert history[0].find_element(By.TAG_NAME, "td").text == "v3"
    assert any("changed" in h.text for h in history)
    driver.save_screenshot(str(shots / "04-object.png"))
    section = driver.find_element(By.XPATH, "//h2[text()='History']/parent::section")
    section.screenshot(str(shots / "05-object-history.png"))

    for name in ("01-environments", "02-environment", "03-diff", "04-object", "05-object-history"):
        assert (shots / f"{name}.png").stat().st_size > 5_000, name  # not a blank page


def test_without_the_token_the_page_asks_for_it_and_signs_out(browser: Any, server: str) -> None:
    """A wrong token shows the form again with what went wrong and none of the fleet; the right
    one leads back to the page asked for; signing out ends the session in this browser."""
    from selenium.webdriver.common.by import By

    sign_in(browser, server + "/env/shop-5", token="not-the-token")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "That is not the API token." in body and "Shop 5" not in body
    sign_in(browser, server + "/env/shop-5")
    assert browser.current_url == server + "/env/shop-5"
    cookie = browser.get_cookie("snapsync_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    browser.find_element(By.CSS_SELECTOR, "form.account button").click()
    browser.get(server + "/")
    assert "/login" in browser.current_url
    assert "Shop 5" not in browser.find_element(By.TAG_NAME, "body").text


def test_object_history_is_beside_the_object_not_off_screen(browser: Any, server: str) -> None:
    # the sample cluster's ConfigMaps hold whole files on one JSON line
    sign_in(browser, server + "/env/shop-5/object/ConfigMap/shop/scheduler-config")
    left = browser.execute_script(
        "return document.evaluate(\"//h2[text()='History']\", document, null, 9, null)"
        ".singleNodeValue.getBoundingClientRect().left"
    )
    assert left < browser.execute_script("return window.innerWidth")


# ----- what is broken: collection errors in the fleet, the health view -------------------------


@pytest.fixture(name="kube_objects")
def kube_objects_fixture() -> list[dict[str, Any]]:
    """The emulator serves the broken cluster of support_broken and one Secret; its Events are
    moved to the last hour, as the agent collects now."""
    objects = broken_objects()
    shift = time.time() - COLLECTED
    for obj in objects:
        if obj["kind"] == "Event":
            for field in ("firstTimestamp", "lastTimestamp"):
                obj[field] = rfc3339(parse_time(obj[field]) + shift)  # type: ignore[operator]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db-password", "namespace": "shop"},
        "data": {"password": "aHVudGVyMg=="},
    }
    return [*objects, secret]


@pytest.fixture
def broken_fleet(emulator: KubeEmulator, kubeconfig: Path, tmp_path: Path) -> Iterator[str]:
    """Shop 17: shipped by a real agent from the API emulator with Secrets forbidden (403) and
    pods, a Deployment, a node and a claim broken; Shop 18: healthy; Shop 19: never heard from."""
    store = open_store(str(tmp_path / "server.db"))
    now = time.time()
    made = enroll(store.registry, "Shop 17", now, group="eu", tags=("retail",))
    enroll(store.registry, "Shop 18", now, group="eu", tags=("retail",))
    enroll(store.registry, "Shop 19", now, group="us")
    healthy = [real(name) for name in ("pod", "deployment", "node", "service", "configmap")]
    snapshot = build_snapshot(healthy, load_profile("default"), collected_at=rfc3339(now - 90))
    store.commit("shop-18", snapshot, b"frame", None, now - 60)
    store.seen("shop-18", now - 60, snapshot.digest, 0)
    emulator.state.forbid("Secret", "list")
    settings = ServerSettings(
        secrets=AgentSecrets(store.registry, None), stores=store, api_token=TOKEN
    )
    with live_server(settings) as url:
        edge = made.registration.edge_id
        ship_once(kubeconfig, url, edge, made.token.encode(), tmp_path / "agent")
        yield url
    store.close()


def test_fleet_flags_collection_errors_and_health_lists_what_is_broken(
    browser: Any, broken_fleet: str, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    shots = screenshots_folder(tmp_path)

    def whole_page(name: str) -> None:
        """The page's full height in one picture (bounded), then back to the usual window."""
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        driver.set_window_size(1280, min(max(height + 140, 900), 3000))
        driver.save_screenshot(str(shots / name))
        driver.set_window_size(1280, 900)

    # 1. the fleet: Shop 17 is failing and flagged for the kind it could not collect
    sign_in(driver, broken_fleet + "/")
    row = driver.find_element(By.XPATH, "//tr[td/a[text()='Shop 17']]")
    health_cell = row.find_elements(By.TAG_NAME, "td")[4]
    assert health_cell.find_element(By.CSS_SELECTOR, "a.badge").text == "failing"
    flag = health_cell.find_element(By.CSS_SELECTOR, "a.badge.errors")
    assert flag.text == "1 kind not collected" and "Secret: forbidden" in flag.get_attribute(
        "title"
    )
    other = driver.find_element(By.XPATH, "//tr[td/a[text()='Shop 18']]")
    assert other.find_elements(By.TAG_NAME, "td")[4].text == "ok"
    unknown = driver.find_element(By.XPATH, "//tr[td/a[text()='Shop 19']]")
    assert unknown.find_elements(By.TAG_NAME, "td")[4].text == "unknown"
    whole_page("06-fleet-collection-error.png")

    # 2. the flag leads to the environment, which says which kind is missing and why
    follow(driver, flag, "/env/shop-17")
    alert = driver.find_element(By.ID, "errors")
    assert "1 kind could not be collected" in alert.text
    assert "Secret" in alert.text and "forbidden" in alert.text
    alert.screenshot(str(shots / "07-environment-collection-error.png"))
    assert not driver.find_elements(By.XPATH, "//nav//a/span[text()='Secret']")

    # 3. the health view: each broken thing, linked to its object
    follow(driver, driver.find_element(By.CSS_SELECTOR, "h1 a.badge"), "/health")
    assert driver.find_element(By.TAG_NAME, "h1").text.startswith("Shop 17: health")
    pods = driver.find_elements(By.XPATH, "//h2[@id='pods']/following-sibling::table[1]//tr[td]")
    cells = [c.text for c in pods[0].find_elements(By.TAG_NAME, "td")]
    assert cells[1:5] == ["checkout-6c9f7d5b8-crash", "0/1", "CrashLoopBackOff", "14"]
    for section, name in (
        ("workloads", "payments"),
        ("nodes", "worker-3"),
        ("claims", "data-postgres-0"),
        ("events", "checkout-6c9f7d5b8-q7w2x"),
    ):
        table = driver.find_element(By.XPATH, f"//h2[@id='{section}']/following-sibling::table[1]")
        assert table.find_elements(By.LINK_TEXT, name), section
    whole_page("08-health.png")

    # 4. a link leads to the object, shown as YAML with JSON one click away
    follow(driver, pods[0].find_element(By.LINK_TEXT, "checkout-6c9f7d5b8-crash"), "/object/")
    shown = driver.find_element(By.TAG_NAME, "pre").text
    assert shown.startswith("apiVersion: v1\nkind: Pod\n") and "CrashLoopBackOff" in shown
    follow(driver, driver.find_element(By.LINK_TEXT, "JSON"), "format=json")
    assert driver.find_element(By.TAG_NAME, "pre").text.startswith("{")
    driver.save_screenshot(str(shots / "09-object-json.png"))

    for name in ("06-fleet-collection-error", "07-environment-collection-error", "08-health"):
        assert (shots / f"{name}.png").stat().st_size > 5_000, name


# ----- freshness: each environment's snapshot age and its agent's budget (#18) ------------------


@pytest.fixture
def paced_fleet(tmp_path: Path) -> Iterator[str]:
    """Shop 20: a real agent on a paced 500 MB budget ships two versions a minute apart and then
    pings (server and agent share a clock the test moves on); Shop 21: its newest snapshot was
    collected 40 min ago and its agent reported the period spent; Shop 22: never heard from."""
    store = open_store(str(tmp_path / "server.db"))
    clock = Clock()
    now = float(int(clock()))  # whole seconds, as a collection time is written
    made = enroll(store.registry, "Shop 20", now, group="eu", tags=("retail",))
    enroll(store.registry, "Shop 21", now, group="eu", tags=("retail",))
    enroll(store.registry, "Shop 22", now, group="us")
    shown = now + 2 * 61  # the clock when the page is read, after the agent's two minutes
    old = build_snapshot([real("node")], load_profile(), collected_at=rfc3339(shown - 2400))
    store.commit("shop-21", old, b"frame", None, shown - 2370)
    spent = BudgetReport(10_000_000, 10_000_000, 0, 2400, SPENT)
    store.seen("shop-21", shown - 30, old.digest, 180_000, spent)
    cluster = SampleCluster(objects=120, shape="application", seed=7)
    dump = tmp_path / "dump.json"
    settings = ServerSettings(
        secrets=AgentSecrets(store.registry, None), stores=store, api_token=TOKEN, clock=clock
    )
    budget = BudgetConfig(limit=500_000_000, policy="paced")
    with live_server(settings) as url:
        agent = Agent(
            FileCollector([dump]),
            HttpTransport(url, made.registration.edge_id, made.token.encode(), timeout=20),
            tmp_path / "agent-state",
            AgentConfig(intervals=Intervals(ping=60.0, jitter=0.0), budget=budget),
            environment_id=made.registration.edge_id,
            clock=clock,
            seed=1,
        )
        for _ in range(2):
            dump.write_text(json.dumps(cluster.list_document()))
            assert agent.step().in_sync
            cluster.step(churn="busy", minutes=1)
            clock.offset += 61
        agent.step()  # nothing new: a ping, which reports the budget
        agent.close()
        yield url
    store.close()


def test_fleet_and_environment_show_snapshot_age_and_budget(
    browser: Any, paced_fleet: str, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    shots = screenshots_folder(tmp_path)
    sign_in(driver, paced_fleet + "/")
    headers = [h.text for h in driver.find_elements(By.TAG_NAME, "th")]
    age_at, budget_at = headers.index("SNAPSHOT AGE"), headers.index("BUDGET")

    def cells(name: str) -> list[Any]:
        return driver.find_elements(By.XPATH, f"//tr[td/a[text()='{name}']]/td")

    shop20, shop21, shop22 = cells("Shop 20"), cells("Shop 21"), cells("Shop 22")
    assert shop20[age_at].text in ("1 min", "2 min")  # collected a minute before the ping
    assert shop20[budget_at].text.split(" / ")[1].startswith("500.0 MB")
    assert shop20[budget_at].find_element(By.TAG_NAME, "meter").get_attribute("max") == "500000000"
    old = shop21[age_at].find_element(By.CSS_SELECTOR, "span.age")
    assert old.text == "40 min" and "stored 30 s later" in old.get_attribute("title")
    assert old.value_of_css_property("color") == "rgba(197, 48, 48, 1)"  # --offline: past 30 min
    assert "period spent, 180.0 kB waiting" in shop21[budget_at].text
    assert (shop22[age_at].text, shop22[budget_at].text) == ("\u2013", "not reported")
    driver.save_screenshot(str(shots / "10-fleet-freshness.png"))

    follow(driver, shop20[0].find_element(By.LINK_TEXT, "Shop 20"), "/env/")
    cards = driver.find_element(By.CSS_SELECTOR, "div.cards")
    for label in ("SNAPSHOT AGE", "COLLECTED → STORED", "BUDGET THIS PERIOD", "PACE", "B/S"):
        assert label in cards.text.upper(), label
    cards.screenshot(str(shots / "11-environment-freshness.png"))
    for name in ("10-fleet-freshness", "11-environment-freshness"):
        assert (shots / f"{name}.png").stat().st_size > 5_000, name
