"""The Dagster UI as a researcher uses it, in headless Chromium: the demo run from the CLI, then `dagster dev`.

Asserts on what the pages show (group names, metadata, a plot image, the CLI run in the job's Runs tab),
refuses a bad filter config in the launchpad and launches the filter stage alone with a good one, which adds
a second filter variant beside the first. Screenshots go to artifacts/browser/ (gitignored).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from selfimprove.resources.warehouse import Warehouse
from selfimprove.variants import current
from tests.browser.conftest import CHROMEDRIVER, CHROMIUM
from tests.test_dagster_dev import REPO, free_port, graphql, start_dev, stop, wait_until_up

ARTIFACTS = REPO / "artifacts" / "browser"
DEMO_TIMEOUT_S = 2400  # about 1 min on an idle 2-core machine; minutes when it is shared
PAGE_TIMEOUT_S = 90
RUN_TIMEOUT_S = 300
CLICK_RETRY_S = 15  # a click that opened nothing by then is made again
LOCATION = "selfimprove.definitions"


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("ui")
    (tmp / "dagster_home").mkdir()
    return {
        **os.environ,
        "DAGSTER_HOME": str(tmp / "dagster_home"),
        "SELFIMPROVE_HOME": str(tmp / "selfimprove_home"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }


@pytest.fixture(scope="module")
def demo_run(homes: dict[str, str]) -> str:
    """The demo run from the CLI; its run id."""
    start = time.monotonic()
    cli = Path(sys.executable).with_name("selfimprove")
    out = subprocess.run(
        [str(cli), "demo"], cwd=REPO, env=homes, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    print(f"demo: {time.monotonic() - start:.0f} s")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "demo.txt").write_text(out.stdout)
    (m,) = re.findall(r"\(run ([0-9a-f-]{36})\)", out.stdout)
    return m


def md_rows(block: str) -> list[dict[str, str]]:
    """The rows of a printed markdown table (the separator line skipped)."""
    lines = [ln.strip().strip("|").split("|") for ln in block.splitlines() if ln.strip().startswith("|")]
    head = [c.strip() for c in lines[0]]
    return [dict(zip(head, (c.strip() for c in ln), strict=True)) for ln in lines[1:] if not set(ln[0]) <= {"-"}]


def test_readme_table_is_what_the_demo_prints(demo_run: str) -> None:
    """Every cell the README's demo table shows equals the demo's output from a fresh state."""
    readme = (REPO / "README.md").read_text()
    shown = md_rows(readme.split("prints a table like this one", 1)[1].split("```", 2)[1])
    printed = {r["round"]: r for r in md_rows((ARTIFACTS / "demo.txt").read_text().split("per-round results", 1)[1])}
    assert [r["round"] for r in shown] == list(printed)
    for row in shown:
        for col, value in row.items():
            if col != "...":
                assert printed[row["round"]][col] == value, (row["round"], col)


@pytest.fixture(scope="module")
def ui(homes: dict[str, str], demo_run: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dagster dev` on loopback, up with the demo's assets loaded; its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("dev") / "dagster_dev.log"
    proc = start_dev(port, homes, log)
    try:
        wait_until_up(proc, port, log)
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        while time.monotonic() < deadline:  # the code location loads after the webserver answers
            nodes = graphql(port, "{ assetNodes { assetKey { path } } }").get("data", {}).get("assetNodes") or []
            if any(n["assetKey"]["path"] == ["demo", "report"] for n in nodes):
                break
            time.sleep(1)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        (ARTIFACTS / "dagster_dev.log").parent.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "dagster_dev.log").write_bytes(log.read_bytes())


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1600,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for errors
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def skip_welcome(driver: object) -> None:
    """Close the UI's one-time "Join the Dagster community" dialog (it covers the page when it shows)."""
    for button in driver.find_elements("xpath", "//*[@role='dialog']//button[normalize-space()='Skip']"):
        button.click()


def wait_for(driver: object, what: str, ok: Callable[[], object], timeout: float = PAGE_TIMEOUT_S) -> object:
    """Poll `ok()` until it is truthy (closing the welcome dialog); fail with a screenshot named after `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            skip_welcome(driver)
            if got := ok():
                return got
        except Exception:  # the page is still rendering: elements come and go
            pass
        time.sleep(0.5)
    driver.save_screenshot(str(ARTIFACTS / f"timeout-{what}.png"))
    pytest.fail(
        f"UI: {what} not shown within {timeout} s; page text: {driver.find_element('tag name', 'body').text[:2000]}"
    )


def text(driver: object) -> str:
    return driver.find_element("tag name", "body").text


def shot(driver: object, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def drawn_groups(driver: object) -> set[str]:
    """The names on the group tiles the lineage draws (Dagster renders only those inside the viewport)."""
    tiles = driver.find_elements("css selector", "svg foreignObject.group")
    return {line.strip() for tile in tiles for line in tile.text.splitlines()[:1]}


def test_lineage_opens_on_the_demo(ui: str, browser: object) -> None:
    """One tile per experiment and study (groups nest at `/`), the demo's drawn in the first view."""
    browser.get(f"{ui}/asset-groups")
    wait_for(browser, "the demo's tile in the lineage's first view", lambda: "demo" in drawn_groups(browser))
    shot(browser, "00-lineage")
    assert not [g for g in drawn_groups(browser) if "round_" in g]  # rounds are inside their experiment's tile
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    (ARTIFACTS / "console.txt").write_text("\n".join(errors))
    assert not [e for e in errors if "Expected a definition" in e], errors


# The lineage filtered to one round's group, expanded: where an asset page's group link leads (expanded here)
ROUND_1 = "/asset-groups~{}/?expanded={}".format(
    quote('group:"demo/round_1"', safe=""), quote("global@global:demo,global@global:demo/round_1", safe="")
)


def test_a_round_group_shows_its_stages(ui: str, browser: object) -> None:
    browser.get(ui + ROUND_1)
    stages = {"generations", "verifications", "filtered", "gap", "checkpoint"}
    wait_for(browser, "round 1's stages in its group", lambda: stages <= set(text(browser).split()))
    assert {"demo", "round_1"} <= drawn_groups(browser)
    shot(browser, "01-round-group")


def test_cli_run_is_in_the_jobs_runs_tab(ui: str, browser: object, demo_run: str) -> None:
    browser.get(f"{ui}/locations/{LOCATION}/jobs/demo_job/runs")
    wait_for(browser, "CLI run in the job's Runs tab", lambda: demo_run[:8] in text(browser))
    shot(browser, "02-job-runs")


def test_asset_page_shows_metadata(ui: str, browser: object, homes: dict[str, str]) -> None:
    wh = Warehouse(Path(homes["SELFIMPROVE_HOME"]) / "warehouse")
    rule = current(wh.read("filtered", "demo", 1)).column("rule")[0].as_py()
    browser.get(f"{ui}/assets/demo/round_1/filtered")
    wait_for(browser, "filtered's rule metadata", lambda: rule in text(browser) and "kept_fraction" in text(browser))
    shot(browser, "03-filtered")


def image_loaded(driver: object, src_prefix: str) -> bool:
    """Whether an image whose data URI starts with `src_prefix` is on the page and decoded."""
    return any(
        (driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) or 0) > 0
        for img in driver.find_elements("css selector", f"img[src^='{src_prefix}']")
    )


def click(driver: object, what: str, xpath: str, shift: bool = False) -> None:
    """Click the element at `xpath` once it is there, finding it again if the page re-rendered it."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    def attempt() -> bool:
        element = driver.find_element("xpath", xpath)
        # into the middle of its scrolled container: a link at the edge of the metadata table's inner scroll
        # area (the report's figure links, in a 1000 px window) took the click elsewhere and opened nothing
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        chain = ActionChains(driver)
        (chain.key_down(Keys.SHIFT).click(element).key_up(Keys.SHIFT) if shift else chain.click(element)).perform()
        return True

    wait_for(driver, what, attempt)


def click_until(driver: object, what: str, xpath: str, shown: Callable[[], object], shift: bool = False) -> object:
    """Click the element at `xpath` until `shown()` is truthy; click again only while no dialog is open
    (a click lost to a re-render is made again; one that opened a dialog is not)."""
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    while time.monotonic() < deadline:
        if not driver.find_elements("xpath", "//*[@role='dialog']"):
            click(driver, what, xpath, shift=shift)
        try:
            return wait_for(driver, f"{what}: what it opens", shown, timeout=CLICK_RETRY_S)
        except pytest.fail.Exception:
            continue
    return wait_for(driver, f"{what}: what it opens", shown, timeout=1)


def test_report_shows_plots(ui: str, browser: object) -> None:
    """The small chart is on the page as it is; a full figure opens from its "[Show Markdown]" link."""
    browser.get(f"{ui}/assets/demo/report")
    wait_for(browser, "the inline chart on the report", lambda: image_loaded(browser, "data:image/svg+xml"))
    assert "None" not in text(browser).split()
    row = browser.find_element("xpath", "//tr[.//*[normalize-space()='heldout_and_gap_by_round']]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
    shot(browser, "04-report")
    click_until(
        browser,
        "the accuracy_gap figure's link",
        "//tr[.//*[normalize-space()='plot_accuracy_gap']]//a",
        lambda: image_loaded(browser, "data:image/png"),
    )
    shot(browser, "05-report-figure")
    click(browser, "the figure dialog's Close button", "//*[@role='dialog']//button[normalize-space()='Close']")


LAUNCH_CONFIG = "ops:\n  demo__round_1__filtered:\n    config:\n      kind: {kind}\n      tau: 0.7\n"
RUNS = "{ runsOrError { ... on Runs { results { runId status assetSelection { path } } } } }"


def codemirror(browser: object, yaml: str) -> None:
    browser.execute_script("document.querySelector('.CodeMirror').CodeMirror.setValue(arguments[0])", yaml)


def test_launchpad_refuses_bad_config_and_runs_the_filter_stage(
    ui: str, browser: object, homes: dict[str, str]
) -> None:
    port = int(ui.rsplit(":", 1)[1])
    before = {r["runId"] for r in graphql(port, RUNS)["data"]["runsOrError"]["results"]}
    browser.get(f"{ui}/assets/demo/round_1/filtered")
    click_until(
        browser,
        "shift-click on Materialize",
        "//button[normalize-space()='Materialize']",
        lambda: browser.find_element("css selector", ".CodeMirror"),
        shift=True,
    )

    codemirror(browser, LAUNCH_CONFIG.format(kind="bogus"))
    wait_for(browser, "the launchpad refusing kind: bogus", lambda: "got bogus" in text(browser))
    shot(browser, "06-launchpad-refuses")

    codemirror(browser, LAUNCH_CONFIG.format(kind="threshold"))
    wait_for(browser, "no config errors", lambda: "No errors" in text(browser) and "got bogus" not in text(browser))
    shot(browser, "07-launchpad-config")
    click(browser, "the launchpad's Materialize button", "//*[@role='dialog']//button[normalize-space()='Materialize']")

    def finished() -> dict | None:
        runs = graphql(port, RUNS)["data"]["runsOrError"]["results"]
        new = [r for r in runs if r["runId"] not in before]
        return new[0] if new and new[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

    run = wait_for(browser, "the launched run to finish", finished, timeout=RUN_TIMEOUT_S)
    assert run["status"] == "SUCCESS", run
    assert run["assetSelection"] == [{"path": ["demo", "round_1", "filtered"]}]
    wh = Warehouse(Path(homes["SELFIMPROVE_HOME"]) / "warehouse")
    filtered = wh.read("filtered", "demo", 1)
    variants = {
        (v, c)
        for v, c in zip(filtered.column("variant").to_pylist(), filtered.column("current").to_pylist(), strict=True)
    }
    assert variants == {("quantile_alpha0.5", False), ("threshold_tau0.7", True)}
