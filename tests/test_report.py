"""``cifar-bench report`` and the record loading that compare and plot share."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from record_factory import record, write

from cifar_bench.commands.cli import main
from cifar_bench.errors import UsageError
from cifar_bench.results.reader import load_runs
from cifar_bench.results.report import render, summarize
from cifar_bench.results.schema import SCHEMA_VERSION


def run_cli(*argv: str, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- loading ------------------------------------------------------------------------


def test_a_bad_file_in_a_folder_is_named_and_the_rest_are_read(tmp_path, capsys):
    folder = write(tmp_path / "results", record(), record())
    (folder / "notes.json").write_text("{not json")
    newer = record()
    newer["schema_version"] = SCHEMA_VERSION + 1
    (folder / "newer.json").write_text(json.dumps(newer))

    loaded = load_runs([folder])

    assert len(loaded.runs) == 2
    err = capsys.readouterr().err
    assert "notes.json" in err and "newer.json" in err and "newer than this cifar-bench" in err
    assert len(loaded.problems) == 2


def test_an_unreadable_file_named_directly_is_an_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    code, _, err = run_cli("report", bad, capsys=capsys)
    assert code == 2
    assert err.count("\n") == 1 and "bad.json" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda tmp: tmp / "missing", "no such file or folder"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no run records found"),
    ],
)
def test_missing_or_empty_paths_are_usage_errors(tmp_path, capsys, setup, message):
    code, _, err = run_cli("report", setup(tmp_path), capsys=capsys)
    assert code == 2 and message in err


def test_a_record_of_an_older_schema_reads_with_defaults(tmp_path):
    old = {
        "schema_version": 1,
        "run_id": "old",
        "status": "ok",
        "recipe": "baseline",
        "device": "cpu",
        "timings": {"train_s": 12.0},
        "metrics": "garbled",
    }
    runs = load_runs([write(tmp_path, old)]).runs
    row = runs.iloc[0]
    assert row["train_s"] == 12.0
    assert row["variant"] == "tensor fp32"  # loader, precision, channels_last, compile defaulted
    assert pd.isna(row["test_accuracy"]) and pd.isna(row["train_img_s"]) and row["epoch_loss"] == []
    assert "tensor fp32" in render(summarize(runs), "text")


def test_a_record_written_by_the_first_schema_reads_and_reports(tmp_path, capsys):
    """tests/data/record_v1.json is a real file from the first record layout."""
    v1 = Path(__file__).parent / "data" / "record_v1.json"
    row = load_runs([v1]).runs.iloc[0]
    assert row["schema_version"] == 2  # migrated on reading
    assert row["variant"] == "tensor fp32" and row["role"] == "candidate"
    assert row["train_s"] > 0 and 0 <= row["test_accuracy"] <= 1
    code, out, _ = run_cli("report", v1, "--format", "csv", capsys=capsys)
    assert code == 0 and pd.read_csv(io.StringIO(out))["runs"].tolist() == [1]


def test_a_record_without_recipe_is_reported_not_crashed_on(tmp_path, capsys):
    folder = write(tmp_path, record(), {"schema_version": 1, "run_id": "x", "status": "ok"})
    assert len(load_runs([folder]).runs) == 1
    assert "needs recipe, device and status" in capsys.readouterr().err


def test_variant_fields_split_groups_and_default_when_absent(tmp_path):
    folder = write(
        tmp_path,
        record(),
        record(precision="fp32", channels_last=False, compile=False),  # the defaults, spelled out
        record(precision="bf16", channels_last=True),
        record(precision="bf16", channels_last=True, compile=True),
        record(deterministic=True),
        record(distributed={"world_size": 2, "backend": "gloo"}),  # data-parallel: never pooled with 1 process
        record(distributed={"world_size": 1}),
    )
    table = summarize(load_runs([folder]).runs)
    assert dict(zip(table["variant"], table["runs"], strict=True)) == {
        "tensor fp32": 3,
        "tensor fp32 2 processes": 1,
        "tensor bf16 channels_last": 1,
        "tensor bf16 channels_last compile": 1,
        "tensor fp32 deterministic": 1,
    }


def test_one_recipe_name_covering_two_workloads_is_two_rows_saying_what_differs(tmp_path):
    swapped = [record(train_s=40.0), record(train_s=41.0)]
    for r in swapped:
        r["components"]["model"] = {"name": "resnet18", "plugin": "resnet"}
    folder = write(tmp_path, record(), record(), *swapped, record("other"))
    table = summarize(load_runs([folder]).runs)
    rows = {(r.recipe, r.differs): r.runs for r in table.itertuples()}
    assert rows == {
        ("baseline", "model=net (baseline)"): 2,
        ("baseline", "model=resnet18 (resnet)"): 2,
        ("other", ""): 1,
    }


def test_synthetic_and_real_data_or_other_epochs_are_never_one_row(tmp_path):
    real, short = record(), record()
    real["dataset"].update(name="cifar10", fingerprint="f00d", synthetic=False)
    short["hyperparameters"]["epochs"] = 1
    table = summarize(load_runs([write(tmp_path, record(), real, short)]).runs)
    assert len(table) == 3 and all(table["runs"] == 1)
    assert "epochs=1" in " ".join(table["differs"]) and "(synthetic)" in " ".join(table["differs"])


def test_group_by_a_component_kind_or_a_hyperparameter(tmp_path, capsys):
    fast = record(train_s=5.0)
    fast["components"]["model"] = {"name": "resnet18", "plugin": "resnet"}
    fast["hyperparameters"]["lr"] = 0.01
    folder = write(tmp_path, record(), record(), fast)
    code, out, _ = run_cli("report", folder, "--group-by", "model,lr", "--format", "csv", capsys=capsys)
    assert code == 0
    rows = pd.read_csv(io.StringIO(out))
    groups = sorted(zip(rows["model"], rows["lr"], rows["runs"], strict=True))
    assert groups == [("net", 0.001, 2), ("resnet18", 0.01, 1)]


# -- the summary ----------------------------------------------------------------------


def test_median_and_iqr_of_known_samples(tmp_path):
    folder = write(
        tmp_path,
        *(record(train_s=t, accuracy=a) for t, a in [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4), (5, 0.5)]),
    )
    row = summarize(load_runs([folder]).runs).iloc[0]
    assert row["runs"] == 5
    assert row["train s"] == 3 and row["train s IQR"] == 2  # quartiles 2 and 4
    assert row["test acc %"] == pytest.approx(30) and row["test acc % IQR"] == pytest.approx(20)
    assert row["train img/s"] == pytest.approx(2000 / 3)


def test_runs_that_did_not_finish_ok_are_left_out_unless_asked(tmp_path, capsys):
    folder = write(
        tmp_path,
        record(train_s=10),
        record(train_s=0.1, status="failed", accuracy=None),
        record(status="skipped"),
    )
    code, out, err = run_cli("report", folder, "--format", "csv", capsys=capsys)
    assert code == 0
    table = pd.read_csv(io.StringIO(out))
    assert list(table["runs"]) == [1] and table["train s"][0] == 10
    assert "left out 2 run(s)" in err and "1 failed" in err and "1 skipped" in err

    code, out, _ = run_cli("report", folder, "--format", "csv", "--include-failed", capsys=capsys)
    table = pd.read_csv(io.StringIO(out))
    assert sorted(table["status"]) == ["failed", "ok", "skipped"]  # each status in its own row


def test_only_failed_runs_is_a_usage_error(tmp_path, capsys):
    code, _, err = run_cli("report", write(tmp_path, record(status="failed")), capsys=capsys)
    assert code == 2 and "no run finished ok" in err


# -- formats, grouping, sorting, output ----------------------------------------------------


@pytest.fixture
def two_recipes(tmp_path) -> Path:
    return write(
        tmp_path / "runs",
        record("slow", train_s=20),
        record("slow", train_s=22),
        record("fast", train_s=5),
        record("fast", "cuda", train_s=1),
    )


@pytest.mark.parametrize(
    "fmt, marker",
    [
        ("text", "------"),
        ("github", "|--"),
        ("markdown", "|:--"),
        ("latex", "\\toprule"),
        ("html", "<table>"),
    ],
)
def test_every_table_format_renders_every_group(two_recipes, capsys, fmt, marker):
    code, out, _ = run_cli("report", two_recipes, "--format", fmt, capsys=capsys)
    assert code == 0 and marker in out
    for name in ("slow", "fast", "cuda", "train img/s"):
        assert name in out


def test_machine_formats_keep_full_precision(two_recipes, capsys):
    _, out, _ = run_cli("report", two_recipes, "--format", "json", capsys=capsys)
    rows = {(r["recipe"], r["device"]): r for r in json.loads(out)}
    assert rows["slow", "cpu"]["train s"] == 21 and rows["slow", "cpu"]["runs"] == 2
    _, out, _ = run_cli("report", two_recipes, "--format", "csv", capsys=capsys)
    assert set(pd.read_csv(io.StringIO(out))["recipe"]) == {"slow", "fast"}


def test_group_by_sort_and_output(two_recipes, tmp_path, capsys):
    target = tmp_path / "table.csv"
    argv = ("report", two_recipes, "--group-by", "recipe", "--sort", "train_s:desc", "--format", "csv")
    code, out, _ = run_cli(*argv, "--output", target, capsys=capsys)
    assert code == 0 and out == ""
    table = pd.read_csv(target)
    assert list(table.columns[:2]) == ["recipe", "runs"]
    assert list(table["recipe"]) == ["slow", "fast"] and list(table["runs"]) == [2, 2]
    code, out, _ = run_cli(
        "report",
        two_recipes,
        "--group-by",
        "recipe",
        "--sort",
        "train img/s",
        "--format",
        "csv",
        capsys=capsys,
    )
    assert list(pd.read_csv(io.StringIO(out))["recipe"]) == ["slow", "fast"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--format", "yaml"], "unknown format 'yaml'"),
        (["--group-by", "colour"], "cannot group by colour"),
        (["--sort", "speed"], "cannot sort by 'speed'"),
        (["--sort", "train_s:sideways"], "must be asc or desc"),
        (["--output", "/nonexistent/folder/out.txt"], "cannot write"),
    ],
)
def test_bad_options_are_one_line_usage_errors(two_recipes, capsys, flags, message):
    code, _, err = run_cli("report", two_recipes, *flags, capsys=capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_render_refuses_an_unknown_format():
    with pytest.raises(UsageError, match="unknown format"):
        render(pd.DataFrame({"a": [1]}), "yaml")
