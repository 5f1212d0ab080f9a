"""The Python API: what a notebook or a script calls, and what the command line calls too."""

from __future__ import annotations

import os

import pytest
from record_factory import record, write

import cifar_bench
from cifar_bench.results.compare import Comparison

TINY = {"dataset": "synthetic", "epochs": 1, "limit_train": 64, "limit_test": 32, "threads": 1}


def test_run_returns_its_record_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record = cifar_bench.run("baseline", **TINY)
    assert isinstance(record, cifar_bench.RunRecord) and record.status == "ok"
    assert 0 <= record.metrics.test_accuracy <= 1 and record.dataset.train_size == 64
    assert os.listdir(tmp_path) == []  # no results folder, no record


def test_runs_writes_where_asked_and_the_command_line_agrees(tmp_path, run_cli):
    records = cifar_bench.runs("baseline", **TINY, seeds=[3, 4], results_dir=tmp_path / "api")
    assert [r.seed for r in records] == [3, 4] and len(list((tmp_path / "api").glob("*.json"))) == 2
    flags = ("--dataset", "synthetic", "--epochs", "1", "--limit-train", "64", "--limit-test", "32", "--threads", "1")
    assert run_cli("run", "baseline", *flags, "--seed", "3", "--quiet", "--results-dir", tmp_path / "cli").code == 0
    cli = cifar_bench.load_runs(tmp_path / "cli").iloc[0]
    assert cli.test_accuracy == records[0].metrics.test_accuracy  # the same run, the same numbers
    assert list(cli.epoch_loss) == records[0].metrics.epoch_loss


def test_an_option_that_is_none_of_runs_is_refused_with_the_closest(tmp_path):
    with pytest.raises(cifar_bench.UsageError, match="unknown run option 'limit_trian': did you mean 'limit_train'"):
        cifar_bench.run("baseline", limit_trian=10)
    with pytest.raises(cifar_bench.UsageError, match="epochs must be a whole number of at least 1"):
        cifar_bench.run("baseline", epochs=0)
    with pytest.raises(cifar_bench.UsageError, match=r"use cifar_bench\.runs"):
        cifar_bench.run("baseline", **TINY, seeds=[0, 1])


def test_load_runs_and_compare_read_records_as_report_and_compare_do(tmp_path):
    base = write(tmp_path / "b", *(record(train_s=10.0 + i / 10) for i in range(5)))
    current = write(tmp_path / "c", *(record(train_s=20.0 + i / 10) for i in range(5)))
    runs = cifar_bench.load_runs(base, current)
    assert len(runs) == 10 and {"recipe", "train_s", "test_accuracy", "workload"} <= set(runs.columns)
    verdict = cifar_bench.compare(base, current)
    assert isinstance(verdict, Comparison) and [p.verdict for p in verdict.pairs] == ["regression"]
    assert verdict.pairs[0].decision.estimate.ratio == pytest.approx(2.0, rel=0.02)
    assert cifar_bench.compare(runs[runs.train_s < 15], runs[runs.train_s > 15], max_slowdown=2.0).regressions == []
