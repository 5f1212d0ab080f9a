"""``cifar-bench publish`` in a real browser: headless Chromium opens the site from ``file://``.

Playwright drives the system's Chromium (Debian's ``chromium`` package; ``.ci/run`` installs it), so
nothing downloads a browser. Without one the tests skip and say why, unless ``CIFAR_BENCH_REQUIRE_BROWSER=1``
(set by ``.ci/run``) says the browser must be there: then they fail.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from record_factory import write
from test_publish import COMMITS as HASHES
from test_publish import SLOW, history_records

from cifar_bench.commands.cli import main

BROWSER_ENV = "CIFAR_BENCH_BROWSER"  # a Chromium to use instead of the one on PATH
REQUIRE_ENV = "CIFAR_BENCH_REQUIRE_BROWSER"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# Headless, and nothing that would reach out to the network on its own.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
RUNS, COMMITS = 20, 5  # what history_records() makes per series


def chromium_path() -> str | None:
    named = os.environ.get(BROWSER_ENV)
    if named:
        return named if Path(named).is_file() else None
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright, reason = None, "playwright is not installed (pip install -e '.[test]')"
    path = chromium_path()
    if sync_playwright and not path:
        reason = f"no Chromium found (apt-get install chromium, or set {BROWSER_ENV}=/path/to/chromium)"
    if sync_playwright is None or not path:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("publish")
    records = write(folder / "results", *history_records(), *history_records(device="cuda"))
    assert main(["publish", str(records), "--output", str(folder / "site")]) == 0
    return folder / "site"


class Watched:
    """A page, with every console error, uncaught exception and non-file request it caused."""

    def __init__(self, context) -> None:
        self.page = context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: None if r.url.startswith("file:") else self.requests.append(r.url))


def not_blank(png: bytes) -> float:
    """The share of pixels that are not the background white."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    histogram = image.histogram()
    return 1 - sum(histogram[250:]) / (image.width * image.height)


def chart_points(chart, measure: str) -> int:
    """The points the chart of ``measure`` draws: runs, medians and regression marks."""
    return sum(chart.locator(f"#{measure}-{kind} use").count() for kind in ("runs", "medians", "marks"))


def check_charts(page) -> None:
    """What a workload page's charts must show, read from the DOM (the same with JavaScript on or off)."""
    train = page.locator("#chart-train_s")
    assert train.is_visible() and train.locator("svg").bounding_box()["width"] > 1000  # as wide as the page
    assert chart_points(train, "train_s") == RUNS + COMMITS + 1  # every run, each commit's median, one mark
    for measure in ("train_img_s", "test_accuracy_pct"):
        assert page.locator(f"#{measure}-runs use").count() == RUNS, measure
    # The shaded regression commit is the one above its tick label.
    (shaded,) = train.locator('g[id^="train_s-regression-"]:not([id*="label"])').all()
    assert shaded.get_attribute("id") == f"train_s-regression-{SLOW}"
    ticks = train.locator('g[id^="train_s-xtick_"] text')
    assert ticks.all_text_contents() == [c[:8] for c in HASHES]  # oldest first
    box, tick = shaded.bounding_box(), ticks.nth(SLOW).bounding_box()
    assert box["x"] < tick["x"] + tick["width"] / 2 < box["x"] + box["width"]
    assert train.locator(f"#train_s-regression-label-{SLOW}").text_content().strip() == "regression"
    comparison = page.locator("#chart-comparison")
    assert comparison.locator("g.points").count() == 2  # cpu and cuda medians, a line each
    assert comparison.locator("g.points").nth(1).locator("use").count() == COMMITS
    # Every run's point holds its details as a tooltip: id, commit, seed and hyperparameters.
    title = train.locator("#train_s-runs use title").first.text_content()
    assert title.startswith("10 train s\nrun run-") and f"commit {HASHES[0][:12]}, seed 0" in title
    assert "lr=0.001" in title
    regression_row = page.locator("table.history tbody tr").nth(SLOW)
    assert "REGRESSION" in regression_row.inner_text()


def test_index_link_opens_a_workload_page_with_its_charts_drawn(browser, site):
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    watched = Watched(context)
    page = watched.page
    page.goto((site / "index.html").as_uri())
    assert page.locator("table.workloads tbody tr").count() == 2  # cpu and cuda: two series, never one
    page.locator("table.workloads a", has_text="baseline").first.click()
    page.wait_for_load_state()
    assert "/workloads/" in page.url and page.title().startswith("baseline on cpu")
    assert page.locator("script").count() == 0  # the charts are drawn already: nothing to run
    check_charts(page)

    # Hovering a run's point shows it is the one (the browser's tooltip holds the <title>, which headless
    # Chromium does not draw, so the test checks the highlight the stylesheet gives it).
    point = page.locator("#train_s-runs use").first
    fill = "getComputedStyle(element).fill"
    before = point.evaluate(f"element => {fill}")
    point.hover()
    assert point.evaluate(f"element => {fill}") == "rgb(255, 127, 14)" != before

    train = page.locator("#chart-train_s")
    assert not_blank(train.screenshot()) > 0.03
    assert not_blank(page.screenshot(full_page=True)) > 0.03
    assert watched.errors == [] and watched.requests == []
    context.close()


def test_without_javascript_the_page_still_says_it_all(browser, site):
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1300, "height": 900})
    watched = Watched(context)
    page = watched.page
    page.goto((site / "index.html").as_uri())
    page.locator("table.workloads a").first.click()
    page.wait_for_load_state()
    assert page.locator("table.history tbody tr").count() == COMMITS
    check_charts(page)  # drawn when the site was built: JavaScript has nothing to do with them
    assert not_blank(page.locator("#chart-train_s").screenshot()) > 0.03
    assert watched.errors == [] and watched.requests == []
    context.close()


def test_runs_made_outside_any_repository_are_a_site_that_shows_them(browser, tmp_path):
    # `cifar-bench run` outside a git repository records no commit: each run is placed by its start time.
    records = history_records()  # 4 runs at each of 5 "commits", the third 50% slower
    for r in records:
        r["environment"]["git_commit"] = None
    site = tmp_path / "site"
    assert main(["publish", str(write(tmp_path / "results", *records)), "--output", str(site)]) == 0
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    watched = Watched(context)
    page = watched.page
    page.goto((site / "index.html").as_uri())
    row = page.locator("table.workloads tbody tr")
    assert row.count() == 1 and "no commit" in row.inner_text()
    row.locator("a").click()
    page.wait_for_load_state()
    train = page.locator("#chart-train_s")
    assert train.locator("#train_s-runs use").count() == RUNS  # every run drawn, none dropped
    ticks = train.locator('g[id^="train_s-xtick_"] text').all_text_contents()
    assert ticks.count("no commit") == RUNS // 2 and "01-01 10:00" in ticks  # every other run labelled, with its time
    assert page.locator("table.history tbody tr").count() == RUNS
    assert page.locator("table.history tbody .no-commit").count() == RUNS
    # The slow stretch (runs 9-12) is found as a change up and a change back, marked on the chart and listed.
    assert train.locator('g[id^="train_s-change-"]:not([id*="label"]):not([id*="range"])').count() == 2
    listed = [row.locator("td").all_inner_texts()[:2] for row in page.locator("section.changes tbody tr").all()]
    assert [cells for cells in listed if cells[0] == "train s"] == [
        ["train s", "no commit (#13)"],
        ["train s", "no commit (#9)"],
    ]  # newest first
    assert not_blank(train.screenshot()) > 0.03
    assert watched.errors == [] and watched.requests == []
    context.close()
