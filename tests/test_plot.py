"""``cifar-bench plot``: three panels, headless, PNG or SVG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from record_factory import record as make_record
from record_factory import write

from cifar_bench.commands.cli import main
from cifar_bench.results.plot import draw
from cifar_bench.results.reader import load_runs


def record(recipe: str, device: str, train_s: float, accuracy: float, **extra) -> dict:
    return make_record(recipe, device, train_s=train_s, accuracy=accuracy, **extra)


@pytest.fixture
def results(tmp_path) -> Path:
    runs = [
        record("baseline", "cpu", 100, 0.52),
        record("baseline", "cpu", 104, 0.53),
        record("baseline", "cuda", 10, 0.52),
        record("fast", "cpu", 20, 0.80),
        record("fast", "cuda", 1, 0.91, precision="bf16"),
        record("fast", "cuda", 1.2, 0.90),
        record("broken", "cpu", 1, 0.0, status="failed"),
    ]
    return write(tmp_path / "results", *runs)


def test_the_figure_has_the_three_charts_with_one_mark_per_run(results):
    runs = load_runs([results]).runs
    ok = runs[runs.status == "ok"]
    fig = draw(ok)
    loss, accuracy, throughput = fig.axes
    assert "loss per epoch" in loss.get_title()
    assert "accuracy against training time" in accuracy.get_title()
    assert "throughput per device" in throughput.get_title()
    assert len(loss.lines) == len(ok) == 6  # one loss line per run
    assert sum(len(c.get_offsets()) for c in accuracy.collections) == 6  # one point per run
    assert [t.get_text() for t in throughput.get_xticklabels()] == ["cpu", "cuda"]
    assert accuracy.get_xscale() == "log"  # 1 s to 104 s spans more than 30x
    legend = {t.get_text() for t in fig.legends[0].get_texts()}
    # "fast" ran two variants, so its colours name them; devices get markers
    assert {"baseline", "fast [tensor bf16]", "fast [tensor fp32]", "cpu", "cuda"} <= legend


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_writes_png_and_svg_without_a_display(results, tmp_path, capsys, monkeypatch, suffix, magic):
    monkeypatch.delenv("DISPLAY", raising=False)
    target = tmp_path / f"charts{suffix}"
    assert main(["plot", str(results), "--output", str(target)]) == 0
    assert target.read_bytes().startswith(magic)
    out, err = capsys.readouterr()
    assert str(target) in out and "left out 1 run(s)" in err


@pytest.mark.parametrize(
    "output, message",
    [("charts.pdf", "must end in .png or .svg"), ("missing/charts.png", "no such folder")],
)
def test_bad_output_paths_are_usage_errors(results, tmp_path, capsys, output, message):
    assert main(["plot", str(results), "--output", str(tmp_path / output)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_no_ok_run_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "r.json").write_text(json.dumps(record("x", "cpu", 1, 0.1, status="diverged")))
    assert main(["plot", str(tmp_path), "--output", str(tmp_path / "c.png")]) == 2
    assert "nothing to plot" in capsys.readouterr().err
