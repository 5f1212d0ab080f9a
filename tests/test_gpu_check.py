"""benchmarks/gpu_check.sh, end to end on the CPU (its tiny mode), as CI runs it where no GPU is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def check(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "SCRATCH": str(tmp_path / "scratch"), "PYTHON": sys.executable}
    (tmp_path / "scratch").mkdir(exist_ok=True)
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600)


def test_the_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    result = check(tmp_path, "--device", "cpu", "--synthetic")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "out"
    records = {p.parent.name: json.loads(p.read_text()) for p in out.glob("results/*/*.json")}
    assert set(records) == {"baseline", "baseline-graphed", "airbench-94", "narrow-fp32-contiguous-none",
                            "narrow-bf16-channels-last-none"}  # fmt: skip
    assert records["baseline"]["status"] == "ok" and records["baseline"]["device"] == "cpu"
    graphed = records["baseline-graphed"]
    assert graphed["status"] == "skipped" and "CUDA graphs need a CUDA device" in graphed["error"]
    corner = records["narrow-bf16-channels-last-none"]
    assert corner["status"] == "ok" and corner["precision"] == "bf16" and corner["channels_last"] is True
    assert all("reason" in r["energy"] for r in records.values() if r["status"] == "ok")
    report = (out / "report.md").read_text()
    assert "airbench_narrow" in report and "skipped" in report
    summary = (out / "summary.md").read_text()
    assert "| baseline-graphed | skipped (CUDA graphs need a CUDA device, not cpu)" in summary
    assert "baseline: exit 0" in (out / "logs" / "steps.log").read_text()


def test_the_gpu_check_refuses_a_bad_option_in_one_line(tmp_path):
    result = check(tmp_path, "--device", "tpu")
    assert result.returncode == 2
    assert result.stderr.strip() == "gpu_check.sh: --device is cuda or cpu, not tpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run for real")
def test_without_a_gpu_the_cuda_check_stops_and_says_what_to_do(tmp_path):
    result = check(tmp_path, "--synthetic")
    assert result.returncode == 2
    assert "no CUDA device here: run with --device cpu for the tiny check" in result.stdout
