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
from test_publish import SLOW, history_records

from cifar_bench.cli import main

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


def test_index_link_opens_a_workload_page_with_its_charts_drawn(browser, site):
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    watched = Watched(context)
    page = watched.page
    page.goto((site / "index.html").as_uri())
    assert page.locator("table.workloads tbody tr").count() == 2  # cpu and cuda: two series, never one
    page.locator("table.workloads a", has_text="baseline").first.click()
    page.wait_for_selector("body[data-charts=drawn]", timeout=60_000)
    assert "/workloads/" in page.url and page.title().startswith("baseline on cpu")

    train = page.locator("#chart-train_s")
    # Every run is a point, plus one per commit median and one regression mark.
    assert train.locator(".scatterlayer path.point").count() == RUNS + COMMITS + 1
    assert train.locator(".shapelayer path").count() == 1  # the shaded regression commit
    assert "regression" in train.locator(".annotation-text").first.text_content()
    ticks = train.locator(".xtick text").all_text_contents()
    assert len(ticks) == COMMITS
    assert page.locator("#chart-comparison .scatterlayer .trace").count() == 2  # cpu and cuda medians

    # Hovering a run shows its id, commit, seed and hyperparameters.
    point = train.locator(".scatterlayer .trace").nth(3).locator("path.point").first
    box = point.bounding_box()  # plotly's drag layer takes the events, so move the mouse rather than hover the node
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    hover = page.locator(".hoverlayer .hovertext").first
    hover.wait_for(timeout=10_000)
    text = hover.text_content()
    assert "run run-" in text and "seed 0" in text and "lr=0.001" in text

    assert not_blank(train.screenshot()) > 0.03
    assert not_blank(page.screenshot(full_page=True)) > 0.03
    regression_row = page.locator("table.history tbody tr").nth(SLOW)
    assert "REGRESSION" in regression_row.inner_text()
    assert watched.errors == [] and watched.requests == []
    context.close()


def test_without_javascript_the_tables_still_say_it_all(browser, site):
    context = browser.new_context(java_script_enabled=False)
    watched = Watched(context)
    page = watched.page
    page.goto((site / "index.html").as_uri())
    page.locator("table.workloads a").first.click()
    page.wait_for_load_state()
    assert page.locator("table.history tbody tr").count() == COMMITS
    assert not page.locator("#chart-train_s").is_visible()  # an empty chart box would only take room
    assert page.locator("#chart-train_s .scatterlayer").count() == 0
    assert watched.errors == [] and watched.requests == []
    context.close()
