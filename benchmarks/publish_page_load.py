"""How fast the pages of ``cifar-bench publish`` load: 1,000 records, opened from ``file://`` in Chromium.

Writes ``--records`` synthetic run records (50 commits x 20 runs by default, all one workload, so
that every one of them is a point on the same page: the worst case), builds the site, then opens
the index and the workload page ``--loads`` times each in headless Chromium (Playwright driving the
system's browser) and prints, per page, the median and worst time from navigation start to

* the first contentful paint (the browser's own ``first-contentful-paint`` entry: the header, before
  the rest of the page has arrived);
* the ``load`` event (the whole page parsed and laid out; the charts are inline SVG in it, with no
  script to run and nothing else to fetch but the stylesheet);
* "charts painted": the first frame after the ``load`` event, taken as a ``requestAnimationFrame``
  callback plus a task queued from it, which runs once that frame, with every chart in it, has been
  painted (the usual double-callback measure; the page itself has no script, so the benchmark adds
  this one before the page loads).

    python benchmarks/publish_page_load.py [--records 1000] [--loads 5] [--chromium /usr/bin/chromium]

Needs playwright (the test extra) and a Chromium (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cifar_bench.results.publish.history import build_history
from cifar_bench.results.publish.site import write_site
from cifar_bench.results.reader import load_runs
from cifar_bench.results.schema import ComponentRef, DatasetInfo, Environment, Metrics, RunRecord, Throughput, Timings

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def make_records(folder: Path, count: int, per_commit: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        commit, seed = divmod(i, per_commit)
        train_s = 40.0 * (1.3 if commit % 17 == 5 else 1.0) * (1 + 0.01 * (seed % 7))  # some planted slowdowns
        record = RunRecord(
            run_id=f"run-{i:05d}", status="ok", recipe="baseline",
            components={"model": ComponentRef("net", "baseline")},
            hyperparameters={"epochs": 2, "batch_size": 4, "lr": 0.001, "momentum": 0.9},
            seed=seed, device="cpu", loader="tensor",
            dataset=DatasetInfo("cifar10", "abc123", 50000, 10000, [f"c{k}" for k in range(10)]),
            metrics=Metrics(test_accuracy=0.53 + 0.001 * (seed % 5), epoch_loss=[1.9, 1.5]),
            timings=Timings(train_s=train_s, eval_s=0.4, total_s=train_s + 2, epoch_train_s=[train_s / 2] * 2),
            throughput=Throughput(train_img_s=100000 / train_s, eval_img_s=25000.0),
            environment=Environment("3.11.7", "2.14.1", "0.29.1", "Linux", "AMD EPYC", 2, "AMD EPYC",
                                    git_commit=f"{commit:040x}"),
            started_at=f"2026-01-01T{commit // 60:02d}:{commit % 60:02d}:{seed:02d}+00:00",
        )  # fmt: skip
        (folder / f"{record.run_id}.json").write_text(json.dumps(record.to_dict()))


# Runs before the page's own content: notes the end of the first frame painted after the load event.
PAINTED_AFTER_LOAD = """
addEventListener("load", () => requestAnimationFrame(() => setTimeout(() => {
  window.benchmarkPaintedAt = performance.now();
})));
"""


def measure(browser, url: str, loads: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"first contentful paint": [], "load event": [], "charts painted": []}
    for _ in range(loads):
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.add_init_script(PAINTED_AFTER_LOAD)
        errors: list[str] = []
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
        page.goto(url, wait_until="load")
        page.wait_for_function("window.benchmarkPaintedAt !== undefined", timeout=60_000)
        page.wait_for_function("performance.getEntriesByName('first-contentful-paint').length > 0")
        times["first contentful paint"].append(
            page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")
        )
        times["load event"].append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))
        times["charts painted"].append(page.evaluate("window.benchmarkPaintedAt"))
        if errors:
            sys.exit(f"page errors on {url}: {errors}")
        page.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--per-commit", type=int, default=20, help="runs per commit [20]")
    parser.add_argument("--loads", type=int, default=5, help="loads of each page [5]")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        records, site = Path(tmp) / "records", Path(tmp) / "site"
        make_records(records, args.records, args.per_commit)
        start = time.perf_counter()
        history = build_history(load_runs([records], report=None).runs)
        write_site(history, site)
        build_s = time.perf_counter() - start
        (page,) = (site / "workloads").glob("*.html")
        index_kb, page_kb = ((site / "index.html").stat().st_size / 1e3, page.stat().st_size / 1e3)
        css_kb = (site / "assets" / "style.css").stat().st_size / 1e3
        print(f"{args.records} records, {len(history.commits)} commits, 1 workload: site built in {build_s:.1f} s; "
              f"workload page {page_kb:.0f} kB, index {index_kb:.0f} kB, style.css {css_kb:.1f} kB; "
              "no script")  # fmt: skip
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=ARGS)
            index = measure(browser, (site / "index.html").as_uri(), args.loads)
            workload = measure(browser, page.as_uri(), args.loads)
            browser.close()
    rows = [(f"index: {k}", v) for k, v in index.items() if k != "charts painted"]  # the index has no chart
    rows += [(f"workload page: {k}", v) for k, v in workload.items()]
    for name, times in rows:
        print(f"{name:36} median {statistics.median(times):6.0f} ms, worst {max(times):6.0f} ms ({args.loads} loads)")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
