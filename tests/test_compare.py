"""``cifar-bench compare``: pairing, decisions, warnings and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from record_factory import record, write

from cifar_bench.commands.cli import main
from cifar_bench.results.compare import Settings, compare_runs
from cifar_bench.results.reader import load_runs
from cifar_bench.results.schema import SCHEMA_VERSION

STEADY = [10.0, 10.2, 9.8, 10.1, 9.9]  # five repeats of one job


def side(folder: Path, times=STEADY, **fields) -> Path:
    """A folder of one record per time, all with the same other fields."""
    return write(folder, *(record(train_s=t, **fields) for t in times))


def compare(tmp_path: Path, base: Path, cur: Path, *flags: str, capsys) -> tuple[int, dict, str]:
    """Run the CLI with --format json; returns the exit code, the parsed report and stderr."""
    code = main(["compare", str(base), str(cur), "--format", "json", *flags])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else {}), err


def pairs_by_key(report: dict) -> dict:
    return {(p["recipe"], p["device"], p["variant"]): p for p in report["pairs"]}


# -- decisions and exit codes -----------------------------------------------------------------


def test_identical_code_passes(tmp_path, capsys):
    code, report, _ = compare(tmp_path, side(tmp_path / "a"), side(tmp_path / "b", times=STEADY[::-1]), capsys=capsys)
    assert code == 0 and report["regressions"] == 0
    pair = report["pairs"][0]
    assert pair["verdict"] == "ok" and pair["decision"]["estimate"]["ratio"] == pytest.approx(1.0)


def test_a_consistent_15_percent_slowdown_fails(tmp_path, capsys):
    slower = side(tmp_path / "b", [t * 1.15 for t in STEADY])
    code, report, _ = compare(tmp_path, side(tmp_path / "a"), slower, capsys=capsys)
    assert code == 1
    pair = report["pairs"][0]
    assert pair["verdict"] == "regression" and pair["decision"]["significant"]
    assert pair["decision"]["estimate"]["ratio"] == pytest.approx(1.15)
    assert "15.0% slower" in pair["reasons"][0]


def test_a_slowdown_under_a_raised_threshold_passes(tmp_path, capsys):
    slower = side(tmp_path / "b", [t * 1.15 for t in STEADY])
    code, report, _ = compare(tmp_path, side(tmp_path / "a"), slower, "--max-slowdown", "20%", capsys=capsys)
    assert code == 0 and report["pairs"][0]["verdict"] == "ok"


def test_noise_that_crosses_the_threshold_without_significance_passes(tmp_path, capsys):
    baseline = [9.38, 10.27, 8.59, 10.08, 9.85]
    current = [10.58, 8.0, 15.38, 9.69, 12.8]  # two slow outliers: median pairwise ratio 1.13, ranks mixed
    code, report, _ = compare(tmp_path, side(tmp_path / "a", baseline), side(tmp_path / "b", current), capsys=capsys)
    pair = report["pairs"][0]
    assert code == 0 and pair["verdict"] == "slower"
    assert pair["decision"]["estimate"]["ratio"] > 1.1 and not pair["decision"]["significant"]
    assert "not significant" in pair["reasons"][0]


def test_single_runs_use_the_threshold_alone_and_say_so(tmp_path, capsys):
    base = side(tmp_path / "a", [10.0])
    code, report, _ = compare(tmp_path, base, side(tmp_path / "b", [11.5]), capsys=capsys)
    pair = report["pairs"][0]
    assert code == 1 and pair["decision"]["judged"] is False and pair["decision"]["p_value"] is None
    assert any("too few to judge significance" in r for r in pair["reasons"])
    code, report, _ = compare(tmp_path, base, side(tmp_path / "c", [10.5]), capsys=capsys)
    assert code == 0


# Every seed of a side scores the same here: the difference is exact (no spread), so the threshold decides.
@pytest.mark.parametrize("drop, expected", [(0.01, 1), (0.003, 0)])
def test_accuracy_drop_beyond_the_allowance_fails(tmp_path, capsys, drop, expected):
    code, report, _ = compare(
        tmp_path,
        side(tmp_path / "a", accuracy=0.60),
        side(tmp_path / "b", accuracy=0.60 - drop),
        capsys=capsys,
    )
    assert code == expected
    assert report["pairs"][0]["accuracy_change"] == pytest.approx(-100 * drop)


def test_current_runs_that_fail_where_the_baseline_did_not_are_a_regression(tmp_path, capsys):
    current = side(tmp_path / "b")
    write(current, record(status="diverged", accuracy=None))
    code, report, _ = compare(tmp_path, side(tmp_path / "a"), current, capsys=capsys)
    assert code == 1
    assert "1 of 6 current runs diverged" in report["pairs"][0]["reasons"][0]


# -- pairing ----------------------------------------------------------------------------------


def test_runs_pair_by_recipe_device_and_variant(tmp_path, capsys):
    base = write(
        tmp_path / "a",
        *(record("r1", train_s=t) for t in STEADY),
        *(record("r1", train_s=t, precision="bf16") for t in STEADY),
        record("r2", "cuda"),
    )
    cur = write(
        tmp_path / "b",
        *(record("r1", train_s=t * 1.5, precision="bf16") for t in STEADY),
        *(record("r1", train_s=t, precision="fp32", compile=False) for t in STEADY),
        record("r3"),
    )
    code, report, err = compare(tmp_path, base, cur, capsys=capsys)
    pairs = pairs_by_key(report)
    assert set(pairs) == {("r1", "cpu", "tensor fp32"), ("r1", "cpu", "tensor bf16")}
    assert pairs["r1", "cpu", "tensor fp32"]["verdict"] == "ok"  # absent fields read as the defaults
    assert pairs["r1", "cpu", "tensor bf16"]["verdict"] == "regression"
    assert (
        code == 2 and "not judged: only in baseline: r2 / cuda" in err
    )  # r2 and r3 are on one side only: the gate fails closed
    assert compare(tmp_path, base, cur, "--allow-unjudged", capsys=capsys)[0] == 1  # expected: the regression
    assert any("only in baseline" in n and "r2 / cuda" in n for n in report["notes"])
    assert any("only in current" in n and "r3 / cpu" in n for n in report["notes"])


def test_nothing_in_common_is_bad_input(tmp_path, capsys):
    code = main(["compare", str(side(tmp_path / "a", recipe="x")), str(side(tmp_path / "b", recipe="y"))])
    err = capsys.readouterr().err
    assert code == 2 and "no recipe/device of CURRENT matches" in err and "x / cpu" in err


def test_only_skipped_runs_is_bad_input(tmp_path, capsys):
    code = main(["compare", str(side(tmp_path / "a")), str(side(tmp_path / "b", status="skipped"))])
    err = capsys.readouterr().err
    assert code == 2 and "nothing could be compared" in err and "no ok run on the current side" in err


# -- warnings --------------------------------------------------------------------------------


def test_different_library_versions_are_warned_about(tmp_path, capsys):
    code, report, err = compare(tmp_path, side(tmp_path / "a"), side(tmp_path / "b", torch="2.5.0"), capsys=capsys)
    assert code == 0
    assert any("different torch: baseline 2.4.0; current 2.5.0" in w for w in report["warnings"])
    assert "different torch" in err  # also on stderr, where a CI log shows it


def test_different_hardware_is_warned_about(tmp_path, capsys):
    other_cpu = [record(train_s=t) for t in STEADY]
    for r in other_cpu:
        r["environment"]["cpu"] = "Intel Xeon"
    _, report, _ = compare(tmp_path, side(tmp_path / "a"), write(tmp_path / "b", *other_cpu), capsys=capsys)
    assert any("different cpu: baseline AMD EPYC; current Intel Xeon" in w for w in report["warnings"])


def test_same_environment_gives_no_warnings(tmp_path, capsys):
    _, report, err = compare(tmp_path, side(tmp_path / "a"), side(tmp_path / "b"), capsys=capsys)
    assert report["warnings"] == [] and err == ""


def test_runs_of_one_recipe_that_did_different_work_are_named_and_never_judged(tmp_path, capsys):
    shorter = [record(train_s=t) for t in STEADY]  # the same recipe, one epoch instead of two: twice as fast
    for r in shorter:
        r["hyperparameters"]["epochs"] = 1
    code = main(["compare", str(side(tmp_path / "a")), str(write(tmp_path / "b", *shorter))])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "nothing could be compared" in err and "different work (epochs: 2 vs 1)" in err


def test_another_model_under_the_same_recipe_name_is_named_by_component_and_plugin(tmp_path, capsys):
    swapped = [record(train_s=t * 4.5) for t in STEADY]  # 355% slower: a different model, not a regression
    for r in swapped:
        r["components"]["model"] = {"name": "mini_vgg", "plugin": "userplugin"}
    base = write(tmp_path / "a", *(record(train_s=t) for t in STEADY), *(record("other", train_s=t) for t in STEADY))
    cur = write(tmp_path / "b", *swapped, *(record("other", train_s=t) for t in STEADY))
    code, report, err = compare(tmp_path, base, cur, capsys=capsys)
    assert code == 2 and "not judged: baseline / cpu" in err  # the recipe under test was not judged: fails closed
    assert compare(tmp_path, base, cur, "--allow-unjudged", capsys=capsys)[0] == 0  # "other" is judged and ok
    (different,) = [p for p in report["pairs"] if p["recipe"] == "baseline"]
    assert different["verdict"] == "different work" and different["decision"] is None
    assert "model: net (baseline) vs mini_vgg (userplugin)" in different["reasons"][0]


def test_real_data_against_synthetic_data_is_different_work(tmp_path, capsys):
    real = [record(train_s=t * 1.4) for t in STEADY]
    for r in real:
        r["dataset"].update(name="cifar10", fingerprint="f00d", synthetic=False)
    code = main(["compare", str(side(tmp_path / "a")), str(write(tmp_path / "b", *real))])
    err = capsys.readouterr().err
    assert code == 2 and "data: synthetic abc123 (synthetic) vs cifar10 f00d" in err


# -- schema versions and bad files -----------------------------------------------------------------


def test_a_newer_record_in_a_folder_is_skipped_with_its_name(tmp_path, capsys):
    cur = side(tmp_path / "b")
    newer = record()
    newer["schema_version"] = SCHEMA_VERSION + 1
    (cur / "from-the-future.json").write_text(json.dumps(newer))
    code, report, err = compare(tmp_path, side(tmp_path / "a"), cur, capsys=capsys)
    assert code == 0 and report["pairs"][0]["current_runs"] == 5
    assert "from-the-future.json" in err and "newer" in err


def test_a_newer_record_named_directly_is_bad_input(tmp_path, capsys):
    newer = record()
    newer["schema_version"] = SCHEMA_VERSION + 1
    path = tmp_path / "newer.json"
    path.write_text(json.dumps(newer))
    code = main(["compare", str(side(tmp_path / "a")), str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "newer than this cifar-bench understands" in err and err.count("\n") == 1


def test_an_older_record_missing_timings_compares_without_crashing(tmp_path, capsys):
    old = {k: v for k, v in record().items() if k not in ("timings", "throughput", "metrics", "memory")}
    old["schema_version"] = 1  # the same work, as a first-schema record without any timings
    code = main(["compare", str(side(tmp_path / "a")), str(write(tmp_path / "b", old))])
    err = capsys.readouterr().err
    assert code == 2 and "no train s on the current side" in err


def test_a_bare_older_record_is_different_work_named_field_by_field(tmp_path, capsys):
    old = {"schema_version": 1, "run_id": "old", "status": "ok", "recipe": "baseline", "device": "cpu"}
    code = main(["compare", str(side(tmp_path / "a")), str(write(tmp_path / "b", old))])
    err = capsys.readouterr().err
    assert code == 2 and "different work (model: net (baseline) vs absent" in err and "epochs: 2 vs absent" in err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max-slowdown", "lots"], "expected a percentage"),
        (["--alpha", "2"], "must be above 0 and below 0.5"),
        (["--format", "yaml"], "unknown format 'yaml'"),
        (["--metric", "eval_s"], "unknown metric 'eval_s'"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, flags, message):
    code = main(["compare", str(side(tmp_path / "a")), str(side(tmp_path / "b")), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_a_missing_side_is_bad_input(tmp_path, capsys):
    assert main(["compare", str(side(tmp_path / "a")), str(tmp_path / "nowhere")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


# -- gating on reference ratios ----------------------------------------------------------------


def with_reference(times: list[float], ratios: list[float], **fields) -> list[dict]:
    return [
        record(
            train_s=t,
            reference={"recipe": "ref", "run_id": f"ref-{i}", "train_s": t / q, "total_s": t / q + 1},
            timings_ratio={"train_s": q, "total_s": q},
            **fields,
        )
        for i, (t, q) in enumerate(zip(times, ratios, strict=True))
    ]


def test_ratio_gating_forgives_a_slower_runner(tmp_path, capsys):
    ratios = [1.0, 1.01, 0.99, 1.02, 0.98]
    base = write(tmp_path / "a", *with_reference(STEADY, ratios))
    slow_runner = write(tmp_path / "b", *with_reference([t * 1.3 for t in STEADY], ratios[::-1]))
    code, _, _ = compare(tmp_path, base, slow_runner, capsys=capsys)
    assert code == 1  # in seconds, the slower runner reads as a slower commit
    code, report, _ = compare(tmp_path, base, slow_runner, "--ratio", capsys=capsys)
    assert code == 0 and report["pairs"][0]["decision"]["estimate"]["ratio"] == pytest.approx(1.0)


def test_ratio_gating_catches_a_slower_candidate(tmp_path, capsys):
    ratios = [1.0, 1.01, 0.99, 1.02, 0.98]
    base = write(tmp_path / "a", *with_reference(STEADY, ratios))
    cur = write(tmp_path / "b", *with_reference(STEADY, [q * 1.2 for q in ratios]))
    code, report, _ = compare(tmp_path, base, cur, "--ratio", capsys=capsys)
    assert code == 1 and "train s / reference" in report["pairs"][0]["reasons"][0]


def test_ratio_gating_leaves_out_runs_without_a_reference_and_says_so(tmp_path, capsys):
    base = write(tmp_path / "a", *with_reference(STEADY, [1.0, 1.01, 0.99, 1.02, 0.98]), record(train_s=50.0))
    cur = write(tmp_path / "b", *with_reference(STEADY, [1.0, 1.01, 0.99, 1.02, 0.98]))
    code, report, _ = compare(tmp_path, base, cur, "--ratio", capsys=capsys)
    pair = report["pairs"][0]
    assert code == 0 and pair["decision"]["baseline_runs"] == 5 and pair["baseline_runs"] == 6
    assert "1 baseline run(s) without train s / reference left out" in pair["reasons"]


def test_ratio_gating_judges_the_candidates_not_the_reference_runs(tmp_path, capsys):
    ratios = [1.0, 1.01, 0.99, 1.02, 0.98]
    references = [record("ref", train_s=t, role="reference") for t in STEADY]
    base = write(tmp_path / "a", *with_reference(STEADY, ratios), *references)
    cur = write(tmp_path / "b", *with_reference(STEADY, ratios), *references)
    code, report, _ = compare(tmp_path, base, cur, "--ratio", capsys=capsys)
    assert code == 0 and [p["recipe"] for p in report["pairs"]] == ["baseline"]
    code, report, _ = compare(tmp_path, base, cur, capsys=capsys)
    assert code == 0 and [p["recipe"] for p in report["pairs"]] == ["baseline", "ref"]  # in seconds, both


def test_a_pair_without_times_is_judged_on_accuracy_alone_and_says_so(tmp_path, capsys):
    ratios = [1.0, 1.01, 0.99, 1.02, 0.98]
    base = write(tmp_path / "a", *with_reference(STEADY, ratios), *(record("plain", train_s=t) for t in STEADY))
    cur = write(tmp_path / "b", *with_reference(STEADY, ratios), *(record("plain", train_s=t * 2) for t in STEADY))
    code, report, _ = compare(tmp_path, base, cur, "--ratio", capsys=capsys)
    plain = pairs_by_key(report)["plain", "cpu", "tensor fp32"]
    assert code == 0 and plain["verdict"] == "accuracy only" and plain["decision"] is None
    assert "no train s / reference on the baseline or current side" in plain["reasons"]


def test_ratio_gating_without_reference_records_is_bad_input(tmp_path, capsys):
    code = main(["compare", str(side(tmp_path / "a")), str(side(tmp_path / "b")), "--ratio"])
    err = capsys.readouterr().err
    assert code == 2 and "run --reference" in err


@pytest.mark.parametrize(
    ("key", "value", "warning"),
    [
        ("recipe", "other", "different reference recipes: baseline ref; current other"),
        # the baseline's records carry no "interleave": made before it existed, run by run
        ("interleave", "step", "different interleaving: baseline run; current step"),
    ],
)
def test_ratio_gating_warns_when_the_sides_referenced_differently(tmp_path, capsys, key, value, warning):
    base = with_reference(STEADY, [1.0] * 5)
    cur = with_reference(STEADY, [1.0] * 5)
    for r in cur:
        r["reference"][key] = value
    _, report, _ = compare(
        tmp_path, write(tmp_path / "a", *base), write(tmp_path / "b", *cur), "--ratio", capsys=capsys
    )
    assert any(warning in w for w in report["warnings"])


# -- rendering ----------------------------------------------------------------------------------


def test_markdown_is_a_pull_request_comment(tmp_path, capsys):
    target = tmp_path / "comment.md"
    slower = side(tmp_path / "b", [t * 1.3 for t in STEADY], torch="2.5")
    code = main(["compare", str(side(tmp_path / "a")), str(slower), "--format", "markdown", "--output", str(target)])
    assert code == 1
    text = target.read_text()
    assert text.startswith("### ❌ cifar-bench compare: 1 regression in 1 pair")
    assert "| recipe" in text and "|---" in text and "REGRESSION" in text
    assert "**Warnings**" in text and "- the sides ran with different torch" in text
    assert "different torch" in capsys.readouterr().err


def test_text_output_states_the_rule_and_the_result(tmp_path, capsys):
    settings = Settings(max_slowdown=0.25, alpha=0.01)
    comparison = compare_runs(load_runs([side(tmp_path / "a")]).runs, load_runs([side(tmp_path / "b")]).runs, settings)
    assert not comparison.regressions
    code = main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--max-slowdown", "25", "--alpha", "0.01"])
    out = capsys.readouterr().out
    assert code == 0
    assert "more than 25% slower" in out and "p ≤ 0.01" in out and "98% CI" in out
    assert out.rstrip().endswith("result: no regression in 1 pair")
