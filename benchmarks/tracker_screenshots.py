"""The screenshots of MLflow's and TensorBoard's UIs in the docs: a real baseline run, logged by both trackers.

Trains the ``baseline`` recipe once (on an ImageFolder CIFAR-10 copy with
``--data-dir``, else on synthetic data) in a temporary folder with ``--track
mlflow`` (MLflow's local default store there) and ``--track tensorboard``
(``runs/``), serves both UIs on 127.0.0.1 (``mlflow ui``, ``tensorboard
--logdir``), and captures them with headless Chromium driven by Playwright.
Every request to anything but 127.0.0.1 is blocked and counted: both UIs
ship their assets, so the count must be 0.

    python benchmarks/tracker_screenshots.py --data-dir /tmp/cifar10-jpeg [--output docs/]

Needs ``mlflow``, ``tensorboard``, ``playwright`` and a Chromium (``--chromium``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from cifar_bench.machine import cpu_model

#: The charts shown: the ones a reader compares recipes by.
CHARTS = "^(epoch_loss|running_loss|epoch_accuracy|test_accuracy)$"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run"]  # fmt: skip
SERVER_START_S = 180  # seconds a UI may take to answer
SETTLE_MS = 3000  # milliseconds for charts to draw after their data came


def train(folder: Path, args) -> None:
    data = ["--data-dir", args.data_dir] if args.data_dir else ["--dataset", "synthetic"]
    command = [sys.executable, "-m", "cifar_bench", "run", "baseline", *data, "--limit-train", str(args.limit_train),
               "--limit-test", str(args.limit_test), "--epochs", str(args.epochs), "--target-acc", "0.99",
               "--threads", "1", "--quiet", "--track", "mlflow", "--track", "tensorboard"]  # fmt: skip
    env = {name: value for name, value in os.environ.items() if name != "MLFLOW_TRACKING_URI"}  # MLflow's default
    subprocess.run(command, cwd=folder, check=True, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(command: list[str], url: str, folder: Path):
    """Run a UI server in its own process group until the block ends; yields once ``url`` answers."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    name = Path(command[0]).name
    with open(folder / f"{name}.log", "wb") as log:
        process = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + SERVER_START_S
            while True:
                with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5):
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{name} did not start: {Path(log.name).read_text()[-2000:]}")
                time.sleep(0.5)
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def shoot(browser, url: str, path: Path, steps) -> int:
    """Open ``url``, do ``steps(page)``, save a screenshot; returns how many outside requests were blocked."""
    outside = []

    def only_local(route):
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost") or route.request.url.startswith("data:"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.route("**/*", only_local)
    page.goto(url, wait_until="load", timeout=120_000)
    steps(page)
    page.wait_for_timeout(SETTLE_MS)
    page.screenshot(path=str(path))
    page.close()
    for request in outside:
        print(f"blocked: {request}")
    return len(outside)


def mlflow_steps(run_url: str):
    def steps(page) -> None:
        page.get_by_text("Model training", exact=True).first.click()  # MLflow 3 opens in its GenAI view
        page.locator('button[aria-label="Close"]').first.click()  # the assistant's side panel
        page.goto(f"{run_url}/model-metrics", wait_until="load")
        page.locator("input[placeholder='Search metric charts']").fill(CHARTS)
        page.get_by_text("running_loss", exact=True).first.wait_for()

    return steps


def tensorboard_steps(page) -> None:
    page.get_by_text("running_loss", exact=True).first.wait_for()  # the settings are in place once charts are
    smoothing = page.locator("input.slider-input").first
    smoothing.fill("0")  # smoothing off: the values as logged
    smoothing.press("Enter")
    page.wait_for_timeout(500)
    page.locator('button[aria-label="Close side pane"]').click()
    page.locator("input[placeholder^='Filter tags']").fill(CHARTS)
    page.keyboard.press("Escape")
    page.mouse.click(120, 600)  # closes the tag suggestions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="an ImageFolder CIFAR-10 copy [synthetic data]")
    parser.add_argument("--limit-train", type=int, default=10_000, help="training images [10000]")
    parser.add_argument("--limit-test", type=int, default=2_000, help="test images [2000]")
    parser.add_argument("--epochs", type=int, default=3, help="epochs [3]")
    parser.add_argument("--output", type=Path, default=Path("docs"), help="where the PNGs go [docs/]")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the browser [/usr/bin/chromium]")
    args = parser.parse_args()
    import mlflow
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        folder = Path(tmp)
        train(folder, args)
        client = mlflow.MlflowClient(f"sqlite:///{folder}/mlflow.db")
        (run,) = client.search_runs([client.get_experiment_by_name("baseline").experiment_id])
        browser = p.chromium.launch(executable_path=args.chromium, args=BROWSER_ARGS)
        blocked = 0
        mlflow_port, tensorboard_port = free_port(), free_port()
        bin_dir = Path(sys.executable).parent
        ui = [str(bin_dir / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db", "--host",
              "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"]  # fmt: skip
        with serving(ui, f"http://127.0.0.1:{mlflow_port}/health", folder):
            run_url = f"http://127.0.0.1:{mlflow_port}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
            blocked += shoot(browser, run_url, args.output / "tracker-mlflow.png", mlflow_steps(run_url))
        board = [str(bin_dir / "tensorboard"), "--logdir", "runs", "--host", "127.0.0.1", "--port",
                 str(tensorboard_port)]  # fmt: skip
        with serving(board, f"http://127.0.0.1:{tensorboard_port}/", folder):
            url = f"http://127.0.0.1:{tensorboard_port}/#timeseries"
            blocked += shoot(browser, url, args.output / "tracker-tensorboard.png", tensorboard_steps)
        browser.close()
    accuracy = run.data.metrics["test_accuracy"]
    print(f"run {run.info.run_name}: test accuracy {accuracy:.4f}; requests outside 127.0.0.1: {blocked}")
    print(f"wrote {args.output / 'tracker-mlflow.png'} and {args.output / 'tracker-tensorboard.png'}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {load}")


if __name__ == "__main__":
    main()
