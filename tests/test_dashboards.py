"""The dashboards as a battery engineer sees them: a real ``prefect server start`` with its UI on a throwaway
PostgreSQL, two nights of ``fleet_refit`` over three cells (a second test moves every cell's diffusivity by +30 %),
then headless Chromium opens the fleet view, follows a cell's link to its report, and opens its history and the
flow runs list. Screenshots are kept under the test's tmp dir, and copied to ``$IONWORKS_PREFECT_SCREENSHOTS``
when it is set."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.wait import WebDriverWait

from ionworks_prefect import CellTarget, upload_measurement
from ionworks_prefect.refit_pipeline import DN

from .live_prefect import ROOT, LivePrefect
from .measurement_frames import unique
from .test_flows_nightly_refit import TRUE_DN, discharge

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]  # uploads' events go to the test server

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
#: What works as root on a closed network: no sandbox, no GPU, and none of the browser's own network traffic.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage")
WIDTH, HEIGHT = 1440, 900  # a laptop screen
CELLS = ("cell-1", "cell-2", "cell-3")
DRIFT = 1.3
START = datetime(2026, 9, 1, 9, 0, tzinfo=timezone.utc)
PARAMETERS = {DN: {"initial_value": 2e-14, "bounds": [1e-14, 1e-13]}}

#: Every table on the page: its cells' text and links, and whether it (or a box around it) scrolls sideways.
TABLES_JS = """
return [...document.querySelectorAll("table")].map(t => {
  let overflow = false;
  for (let e = t; e && e !== document.body; e = e.parentElement) overflow ||= e.scrollWidth > e.clientWidth + 1;
  return {overflow, rows: [...t.rows].map(r => [...r.cells].map(c => c.innerText.trim())),
          links: [...t.querySelectorAll("a")].map(a => [a.innerText.trim(), a.href])};
});"""
PLOTS_JS = """
return [...document.images].filter(i => i.src.startsWith("data:image/png")).map(i => ({
  alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth, shownWidth: i.getBoundingClientRect().width}));"""


def _sci(value: float) -> str:
    """4 significant figures, as a person reads the value."""
    return f"{value:.3e}"


def _percent(new: float, old: float) -> str:
    return f"{100 * (new / old - 1):+.1f} %"


def _upload(specification: str, test: str, days: int, dn: float, seed: int) -> None:
    for i, cell in enumerate(CELLS):
        upload_measurement.fn(discharge(dn, seed=seed + i), CellTarget(specification=specification, instance=cell),
                              f"{test} 1C", tags=[f"rpt:{test}", f"efc:{2 * days}"],
                              start_time=START + timedelta(days=days))


class Nights:
    """``tests.fleet_refit_process``: one process that runs a fleet refit each time it is asked (a night)."""

    def __init__(self, prefect: LivePrefect, specification: str) -> None:
        self.log = open(prefect.log.with_name("fleet-refit.log"), "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fleet_refit_process", specification, json.dumps(PARAMETERS)],
            cwd=ROOT, env=prefect.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)

    def run(self) -> dict:
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"the fleet refit process ended ({self.process.wait()}); see {self.log.name}"
        return {c["cell"].rpartition("/")[2]: c for c in json.loads(line)["cells"]}

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


class Browser:
    """Headless Chromium driven through ChromeDriver; waits for what a page shows, screenshots whole pages."""

    def __init__(self, profile: Path, shots: Path) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)

    def open(self, url: str, text: str) -> str:
        """Go to ``url`` and wait until the page shows ``text`` (the UI is a single-page app: content comes late)."""
        self.driver.get(url)
        return self.wait_for_text(text)

    def wait_for_text(self, text: str) -> str:
        shown = self.until(lambda: (body := self.js("return document.body.innerText")) and text in body and body,
                           f"{text!r} on {self.driver.current_url}")
        assert "Can't connect to Server API" not in shown
        return shown

    def until(self, condition, what: str, timeout: float = 60):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.25).until(
            lambda _: condition(), message=f"waited {timeout:g} s for {what}")

    def js(self, script: str):
        return self.driver.execute_script(script)

    def tables(self) -> list[dict]:
        return self.js(TABLES_JS)

    def screenshot(self, name: str) -> Path:
        """The whole page: the window is made as tall as the page for the shot, then put back."""
        chrome = HEIGHT - self.js("return window.innerHeight")
        height = self.js("return document.documentElement.scrollHeight")
        self.driver.set_window_size(WIDTH, min(height + chrome, 8000))
        self.driver.execute_async_script("requestAnimationFrame(() => requestAnimationFrame(arguments[0]))")
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(WIDTH, HEIGHT)
        if target := os.environ.get("IONWORKS_PREFECT_SCREENSHOTS"):
            Path(target).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(target) / path.name)
        return path

    def close(self) -> None:
        self.driver.quit()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if not (CHROMIUM and CHROMEDRIVER):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip("needs Debian's chromium and chromium-driver, which cannot be installed here "
                        "(installing takes root and apt-get)")
        pytest.fail("chromium or chromedriver is missing: apt-get install chromium chromium-driver (.ci/run does)")
    opened = Browser(tmp_path / "chromium-profile", tmp_path / "screenshots")
    try:
        yield opened
    finally:
        opened.close()


def test_fleet_report_history_and_runs_show_the_fitted_values(sandbox, prefect_database, tmp_path, browser):
    spec = unique("NMC811")
    prefect = LivePrefect(tmp_path / "prefect-home", {**sandbox.client_env(), **prefect_database}, ui=True)
    nights = Nights(prefect, spec)  # starts (imports) while the first test is uploaded
    try:
        _upload(spec, "RPT 0", 0, TRUE_DN, seed=60)
        first = nights.run()
        _upload(spec, "RPT 1", 30, DRIFT * TRUE_DN, seed=70)
        second = nights.run()
    finally:
        nights.close()
    assert [second[c]["verdict"] for c in CELLS] == ["drifted"] * 3
    before = {c: first[c]["values"][DN] for c in CELLS}
    after = {c: second[c]["values"][DN] for c in CELLS}
    for cell in CELLS:
        assert after[cell] == pytest.approx(DRIFT * before[cell], rel=0.05)

    try:
        _look_at_the_dashboards(prefect, browser, spec, before, after)
    finally:
        prefect.close()


def _latest_ids(prefect: LivePrefect, keys: list[str]) -> dict[str, str]:
    found = prefect.request("POST", "/artifacts/latest/filter", json={"artifacts": {"key": {"any_": keys}}}).json()
    return {a["key"]: a["latest_id"] for a in found}


def _look_at_the_dashboards(prefect: LivePrefect, browser: Browser, spec: str, before: dict, after: dict) -> None:
    slug = spec.lower()
    fleet_key, report_key, history_key = (f"fleet-{slug}", f"fitted-parameters-{slug}-cell-1-report",
                                          f"fitted-parameters-{slug}-cell-1-history")
    ids = _latest_ids(prefect, [fleet_key, report_key, history_key,
                                *(f"fitted-parameters-{slug}-{c}-report" for c in CELLS)])
    browser.open(f"{prefect.ui}/", "Dashboard")
    location = browser.until(lambda: (path := browser.js("return location.href")).rstrip("/").split("?")[0].endswith(
        "/dashboard") and path, "the UI to land on its dashboard")
    ui = location.split("?")[0].rstrip("/").removesuffix("/dashboard")  # the UI the server shows by default

    browser.open(f"{ui}/artifacts/artifact/{ids[fleet_key]}", f"Fleet: {spec}")
    browser.until(lambda: browser.tables(), "the fleet table")
    browser.screenshot("fleet")
    (fleet,) = browser.tables()
    header, *rows = fleet["rows"]
    assert header == ["Cell", "Test", "Verdict", "RMSE [mV]", "Negative particle diffusivity [m2.s-1]"]
    assert [row[0] for row in rows] == list(CELLS), "the fleet shows the three cells"
    for cell, test, verdict, rmse, value in rows:
        assert (test, verdict) == ("RPT 1 (2026-10-01)", "drifted")
        assert 0 < float(rmse) < 3, "RMSE near the 1 mV noise"
        assert value == f"{_sci(after[cell])} ({_percent(after[cell], before[cell])})"
    assert not fleet["overflow"], "the fleet table fits beside the details panel"
    links = dict(fleet["links"])
    assert links == {c: f"{ui}/artifacts/artifact/{ids[f'fitted-parameters-{slug}-{c}-report']}" for c in CELLS}

    browser.driver.find_element("link text", "cell-1").click()  # the cell's link opens its newest report
    browser.wait_for_text(f"Fitted parameters: {spec}/cell-1, RPT 1")
    assert browser.driver.current_url.split("?")[0] == links["cell-1"]
    plots = browser.until(lambda: (shown := browser.js(PLOTS_JS)) and all(p["complete"] for p in shown) and shown,
                          "the report's plots to load")
    browser.screenshot("report")
    assert len(plots) == 2 and all(p["naturalWidth"] > 0 for p in plots), plots
    assert all(p["shownWidth"] >= 0.9 * p["naturalWidth"] for p in plots), "plots drawn at the width shown"
    values, history_in_report = browser.tables()
    assert values["rows"][0] == ["Parameter", "Value", "Unit", "vs previous", "vs baseline", "Bounds"]
    change = _percent(after["cell-1"], before["cell-1"])
    assert values["rows"][1] == ["Negative particle diffusivity", _sci(after["cell-1"]), "m2.s-1", change, change,
                                 "1.000e-14 – 1.000e-13"]
    assert not values["overflow"] and not history_in_report["overflow"]

    browser.open(f"{ui}/artifacts/artifact/{ids[history_key]}", "2 fitted test(s)")
    browser.until(lambda: any(len(t["rows"]) == 3 for t in browser.tables()), "the history table's rows")
    browser.screenshot("history")
    (history,) = browser.tables()
    header, rpt0, rpt1 = history["rows"]
    assert header == ["Test", "Date", "Verdict", "RMSE [mV]", "Negative particle diffusivity [m2.s-1]", "Pipeline"]
    assert rpt0[:3] == ["RPT 0", "2026-09-01", "baseline"] and rpt0[4] == _sci(before["cell-1"])
    assert rpt1[:3] == ["RPT 1", "2026-10-01", "drifted"] and rpt1[4] == f"{_sci(after['cell-1'])} ({change})"
    assert all(0 < float(row[3]) < 3 for row in (rpt0, rpt1))
    assert not history["overflow"], "the history table fits beside the details panel"

    shown = browser.open(f"{ui}/runs", f"refit {spec}/cell-3")
    browser.screenshot("flow-runs")
    for cell in CELLS:
        assert shown.count(f"refit {spec}/{cell}\n") == 2, f"one run of {cell} a night, named after it"
        assert f"cell:{spec}/{cell}" in shown, "each run tagged with its cell (the badge cuts long tags short)"
    assert shown.count(f"fleet refit {spec}") == 2
