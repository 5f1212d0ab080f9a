"""Shared fixtures: an isolated environment for every test, and small datasets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_bench.commands import cli

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_ARCHIVE = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


def isolate(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No installed third-party plugins, and a cache of this test session's own."""
    monkeypatch.setenv("CIFAR_BENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("CIFAR_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("CIFAR_BENCH_TUNE_S", "0.02")  # CPU tuning picks from short timings: tests check what, not speed


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory, monkeypatch):
    isolate(tmp_path_factory, monkeypatch)


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[-500:]!r}, err={self.err[-500:]!r})"


@pytest.fixture
def run_cli(capsys):
    """Run ``cifar-bench ARGS`` in this process; returns exit code, stdout and stderr."""

    def run(*args: str) -> CliResult:
        code = cli.main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def make_image_folder(root: Path, classes=("cat", "dog", "frog"), train_per_class=8, test_per_class=4) -> Path:
    """A tiny ImageFolder copy: each class a colour, so a model can learn it."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 80, (32, 32, 3)) + np.array([80 * c, 40, 200 - 80 * c])
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "images")


@pytest.fixture(scope="session")
def offline_cifar10(tmp_path_factory) -> Path:
    """The real CIFAR-10 (JPEG copy) from ../shared, extracted once per test session."""
    if not OFFLINE_ARCHIVE.exists():
        pytest.skip(f"offline CIFAR-10 copy not found at {OFFLINE_ARCHIVE}")
    target = tmp_path_factory.mktemp("offline")
    subprocess.run(["tar", "xzf", str(OFFLINE_ARCHIVE), "-C", str(target)], check=True)
    return target / "cifar10-jpeg"


@pytest.fixture
def no_network(monkeypatch):
    """Make any download fail the way it does on a machine without network."""
    import urllib.error

    import torchvision.datasets.utils as tv_utils

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(tv_utils, "download_url", refuse)
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", refuse)
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", refuse)


@pytest.fixture
def smoke() -> tuple[str, ...]:
    """Flags for the quickest real run: synthetic data, a subset, one epoch, no bar."""
    return (
        "--dataset",
        "synthetic",
        "--limit-train",
        "200",
        "--limit-test",
        "50",
        "--epochs",
        "1",
        "--quiet",
    )
