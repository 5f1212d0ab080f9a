"""``cifar-bench publish``: series, commit order, regression marks, pages that need no network or JavaScript."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from record_factory import counted, record, write

from cifar_bench.commands.cli import main
from cifar_bench.errors import UsageError
from cifar_bench.results.compare import Settings, judge_pair
from cifar_bench.results.publish.history import build_history, series_key, workload_of
from cifar_bench.results.publish.site import SITE_MARKER
from cifar_bench.results.reader import load_runs

COMMITS = ["e0" * 20, "b1" * 20, "d2" * 20, "a3" * 20, "c4" * 20]  # 5 commits, whose hashes do not sort by time
SLOW = 2  # the commit with the planted slowdown


SVG = "{http://www.w3.org/2000/svg}"


def charts(page: str) -> dict[str, ET.Element]:
    """The page's inline SVG charts by their figure's id (chart-train_s ...), parsed as XML."""
    found = re.findall(r'<figure class="chart" id="([^"]+)">(<svg.*?</svg>)</figure>', page, flags=re.DOTALL)
    return {target: ET.fromstring(svg) for target, svg in found}


def group(chart: ET.Element, gid: str) -> ET.Element | None:
    return chart.find(f".//{SVG}g[@id='{gid}']")


def points(chart: ET.Element, gid: str) -> list[str]:
    """The tooltip of every point the artist ``gid`` drew, in data order."""
    found = group(chart, gid)
    return [] if found is None else [use.findtext(f"{SVG}title") for use in found.iter(f"{SVG}use")]


def texts(element: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in element.iter(f"{SVG}text")]


def at(commit: int, seed: int, *, train_s: float, cpu: str = "AMD EPYC", device: str = "cpu", **extra) -> dict:
    r = record("baseline", device, train_s=train_s, seed=seed, **extra)
    r["environment"].update(git_commit=COMMITS[commit], cpu=cpu, device_name=cpu if device == "cpu" else "GPU X")
    r["started_at"] = f"2026-01-0{commit + 1}T10:00:0{seed}+00:00"
    return r


def history_records(cpu: str = "AMD EPYC", device: str = "cpu") -> list[dict]:
    """4 runs at each of 5 commits; the third commit is 50% slower, the fourth puts it back."""
    runs = []
    for commit in range(5):
        base = 15.0 if commit == SLOW else 10.0
        runs += [at(commit, seed, train_s=base + 0.1 * seed, cpu=cpu, device=device) for seed in range(4)]
    return runs


@pytest.fixture
def results(tmp_path) -> Path:
    return write(tmp_path / "results", *history_records())


def test_an_older_record_without_a_workload_field_joins_the_series_of_the_same_work(tmp_path):
    new, old, other = at(0, 0, train_s=10.0), at(1, 1, train_s=10.0), at(1, 2, train_s=10.0)
    old.pop("workload", None)  # written before records named their work
    other["hyperparameters"]["epochs"] = 3
    runs = load_runs([write(tmp_path / "r", new, old, other)]).runs
    assert workload_of(runs.iloc[0]) == workload_of(runs.iloc[1]) != workload_of(runs.iloc[2])


def test_runs_are_grouped_by_the_workload_column_when_records_have_one(results):
    runs = load_runs([results]).runs
    # The same recipe, variant, data and epochs, but two named workloads (say, different learning rates).
    named = runs.assign(workload=["w-lr1" if seed % 2 else "w-lr2" for seed in runs["seed"]])
    history = build_history(named)
    assert sorted(s.key[0] for s in history.series) == ["w-lr1", "w-lr2"]
    assert all(len(s.runs) == 10 for s in history.series)
    assert len(build_history(runs).series) == 1  # as loaded: one workload


def test_commits_are_in_time_order_and_the_planted_slowdown_alone_is_marked(results):
    history = build_history(load_runs([results]).runs)
    assert history.commits == COMMITS  # by the time of their runs, not by hash or file order
    (series,) = history.series
    assert [c.commit for c in series.commits] == COMMITS
    verdicts = [c.versus_previous.verdict if c.versus_previous else None for c in series.commits]
    assert verdicts == [None, "ok", "regression", "faster", "ok"]
    assert [c.regression for c in series.commits] == [False, False, True, False, False]


def test_the_mark_is_compare_s_own_verdict(results):
    runs = load_runs([results]).runs
    (series,) = build_history(runs, Settings(max_slowdown=0.6)).series  # 50% slower is within a 60% allowance
    assert not any(c.regression for c in series.commits)
    slow, before = (runs[runs.git_commit == COMMITS[i]] for i in (SLOW, SLOW - 1))
    assert judge_pair(("baseline", "cpu", "tensor fp32"), before, slow, Settings()).regression


def test_machines_devices_and_variants_are_never_one_series(tmp_path):
    runs = history_records() + history_records(cpu="Intel Xeon") + history_records(device="cuda")
    runs += [at(i, 0, train_s=5.0, precision="bf16") for i in range(5)]
    history = build_history(load_runs([write(tmp_path, *runs)]).runs)
    labels = sorted((s.device, s.variant, s.machine) for s in history.series)
    assert labels == [("cpu", "tensor bf16", "AMD EPYC"), ("cpu", "tensor fp32", "AMD EPYC"),
                      ("cpu", "tensor fp32", "Intel Xeon"), ("cuda", "tensor fp32", "GPU X (AMD EPYC)")]  # fmt: skip
    for s in history.series:
        assert len({series_key(r) for r in s.runs.to_dict("records")}) == 1
    assert len({s.slug for s in history.series}) == 4


def test_site_links_work_and_nothing_comes_from_the_internet(results, tmp_path, capsys):
    site = tmp_path / "site"
    assert main(["publish", str(results), "--output", str(site)]) == 0
    assert "1 workload(s), 20 run(s), 5 commit(s)" in capsys.readouterr().out
    index = (site / "index.html").read_text()
    (link,) = re.findall(r'href="(workloads/[^"]+\.html)"', index)
    page = (site / link).read_text()
    assert sorted(p.name for p in (site / "assets").iterdir()) == ["style.css"]  # no script to ship
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids)) > 100  # four charts inline, and no id twice
    for html in (index, page):
        assert "<script" not in html
        for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
            if ref.startswith("#"):  # a marker or clip path of the same page's SVG
                assert ref[1:] in ids, ref
                continue
            assert not re.match(r"[a-z]+:", ref), ref  # relative: works from file:// and any host
            target = (site / link).parent / ref if html is page else site / ref
            assert target.resolve().exists(), ref
        assert not re.search(r"url\((?!#)", html)  # nothing drawn from elsewhere either


def test_pages_say_everything_in_tables_without_javascript(results, tmp_path):
    site = tmp_path / "site"
    assert main(["publish", str(results), "--output", str(site)]) == 0
    index = (site / "index.html").read_text()
    assert "<script" not in index  # the index is plain HTML
    row = re.search(r"<tbody>\s*(<tr.*?</tr>)", index, flags=re.DOTALL).group(1)
    assert ">10.15<" in row  # latest median train s: runs of 10.0, 10.1, 10.2 and 10.3 s
    page = next((site / "workloads").glob("*.html")).read_text()
    history = re.search(r'<table class="history">.*?</table>', page, flags=re.DOTALL).group(0)
    rows = re.findall(r"<tr( class=\"regression\")?><td>(\d)</td>", history)
    assert [(n, bool(mark)) for mark, n in rows] == [(str(i + 1), i == SLOW) for i in range(5)]
    assert re.search(r"15\.15 \[15\.0[78]–15\.2[23]\]", history)  # the slow commit's median [IQR]
    assert "+49.3% train s" in history  # 15.15 s against 10.15 s


def test_charts_hold_every_run_with_its_details(results, tmp_path):
    site = tmp_path / "site"
    main(["publish", str(results), "--output", str(site)])
    page = next((site / "workloads").glob("*.html")).read_text()
    found = charts(page)
    assert list(found) == ["chart-train_s", "chart-train_img_s", "chart-test_accuracy_pct"]  # one recipe, one device
    train = found["chart-train_s"]
    assert "Train time" in texts(train) and "train s" in texts(train)
    runs = points(train, "train_s-runs")
    assert len(runs) == 20
    # Runs in commit order, then by seed: 10.0 s at seed 0 of the first commit, 15.3 s at seed 3 of the slow one.
    assert runs[0].startswith("10 train s\nrun ") and runs[4 * SLOW + 3].startswith("15.3 train s")
    first = runs[0]
    assert "commit e0e0e0e0e0e0, seed 0" in first and "AMD EPYC" in first and "lr=0.001" in first
    medians = points(train, "train_s-medians")
    assert [re.search(r"median (\S+)", m).group(1) for m in medians] == ["10.15", "10.15", "15.15", "10.15", "10.15"]
    assert "4 run(s)" in medians[SLOW] and "regression vs previous commit" in medians[SLOW]
    (mark,) = points(train, "train_s-marks")
    assert mark.startswith("regression vs previous commit: ")
    # The shaded commit: a group of its own, its tooltip naming the commit, labelled on the chart.
    shaded = group(train, f"train_s-regression-{SLOW}")
    assert shaded.findtext(f"{SVG}title").startswith(f"commit {COMMITS[SLOW][:12]}: regression")
    assert texts(group(train, f"train_s-regression-label-{SLOW}")) == ["regression"]
    assert [g.get("id") for g in train.iter(f"{SVG}g") if re.fullmatch(r"train_s-regression-\d+", g.get("id", ""))] == [
        f"train_s-regression-{SLOW}"
    ]
    ticks = [texts(g)[0] for g in train.iter(f"{SVG}g") if re.fullmatch(r"train_s-text_\d+", g.get("id", ""))]
    assert ticks[:5] == [c[:8] for c in COMMITS]  # the commit axis, oldest first, short hashes


def test_the_commit_axis_thins_its_labels_when_commits_are_many(tmp_path):
    hashes = [f"{i:02d}" + "f" * 38 for i in range(60)]
    runs = []
    for i, commit in enumerate(hashes):
        r = at(0, 0, train_s=10.0 + i % 3)
        r["environment"]["git_commit"] = commit
        r["started_at"] = f"2026-01-01T10:{i:02d}:00+00:00"
        runs.append(r)
    site = tmp_path / "site"
    main(["publish", str(write(tmp_path / "r", *runs)), "--output", str(site)])
    train = charts(next((site / "workloads").glob("*.html")).read_text())["chart-train_s"]
    labels = [t for t in texts(train) if re.fullmatch(r"\d\dffffff", t)]
    assert 8 <= len(labels) <= 20  # some, not all 60 side by side
    step = int(labels[1][:2]) - int(labels[0][:2])
    assert labels == [h[:8] for h in hashes[::step]]  # oldest first, evenly spaced
    assert f"commit (oldest first), a label every {step} commits" in texts(train)
    assert len(points(train, "train_s-runs")) == 60


def test_a_recipe_on_two_devices_compares_them_on_each_page(tmp_path):
    site = tmp_path / "site"
    main(["publish", str(write(tmp_path / "r", *history_records(), *history_records(device="cuda"))),
          "--output", str(site)])  # fmt: skip
    pages = sorted((site / "workloads").glob("*.html"))
    assert len(pages) == 2
    for page in pages:
        text = page.read_text()
        assert "Devices, variants and machines" in text
        other = next(p for p in pages if p != page)
        assert f'href="{other.name}"' in text
        comparison = charts(text)["chart-comparison"]
        lines = [points(comparison, f"comparison-{k}") for k in range(3)]
        assert [len(line) for line in lines] == [5, 5, 0]  # cpu and cuda, a median per commit each
        assert lines[0][SLOW].startswith("cpu, tensor fp32, AMD EPYC\ncommit ") and "15.15 train s" in lines[0][SLOW]
        assert lines[1][0].startswith("cuda, tensor fp32, GPU X (AMD EPYC)\n")


def test_bad_records_are_skipped_and_runs_without_a_commit_kept_with_a_note(results, tmp_path, capsys):
    (results / "junk.json").write_text("{not json")
    loose = at(4, 9, train_s=10.0)
    loose["environment"]["git_commit"] = None
    loose["started_at"] = "2026-01-09T10:00:00+00:00"  # after the five commits
    write(results, loose, at(0, 0, train_s=1.0, device="mps", status="failed"))
    site = tmp_path / "site"
    assert main(["publish", str(results), "--output", str(site)]) == 0
    err = capsys.readouterr().err
    assert "junk.json" in err and "1 run(s) record no git commit: each is placed by its start time" in err
    assert "1 workload(s) none of whose runs finished ok" in err
    index = (site / "index.html").read_text()
    assert "3 note(s) from loading" in index and "junk.json" in index
    assert index.count("<tr><td><a href=") == 1  # the failed mps workload has no row
    assert '<span class="no-commit">no commit</span>' in index  # the newest place in the history: the loose run
    page = next((site / "workloads").glob("*.html")).read_text()
    rows = re.findall(r"<tr(?: class=\"regression\")?><td>(\d)</td><td>(.*?)</td>", page)
    assert [n for n, _ in rows] == ["1", "2", "3", "4", "5", "6"] and "no commit" in rows[5][1]
    labels = texts(charts(page)["chart-train_s"])  # matplotlib writes each line of a tick label as a <text>
    assert [t for t in labels if t.startswith(("no commit", "e0e0"))] == ["e0e0e0e0", "no commit"]
    assert labels[labels.index("no commit") + 1] == "01-09 10:00"  # under it, when the run started


def test_rebuilds_replace_an_old_site_but_never_another_folder(results, tmp_path, capsys):
    site = tmp_path / "site"
    assert main(["publish", str(results), "--output", str(site)]) == 0
    (site / "workloads" / "stale.html").write_text("old")
    assert main(["publish", str(results), "--output", str(site)]) == 0
    assert not (site / "workloads" / "stale.html").exists() and (site / SITE_MARKER).exists()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    capsys.readouterr()
    assert main(["publish", str(results), "--output", str(other)]) == 2
    err = capsys.readouterr().err
    assert "holds something else" in err and err.count("\n") == 1
    assert (other / "notes.txt").read_text() == "keep me"


def test_no_ok_run_with_a_commit_is_a_usage_error(tmp_path, capsys):
    failed = at(0, 0, train_s=1.0, status="failed")
    assert main(["publish", str(write(tmp_path / "r", failed)), "--output", str(tmp_path / "site")]) == 2
    assert "nothing to publish" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()


def test_the_cross_goes_on_the_chart_of_what_regressed(tmp_path):
    runs = [
        at(c, seed, train_s=10.0 + 0.1 * seed, accuracy=0.40 if c == SLOW else 0.50)
        for c in range(5)
        for seed in range(4)
    ]
    site = tmp_path / "site"
    main(["publish", str(write(tmp_path / "r", *runs)), "--output", str(site)])
    page = next((site / "workloads").glob("*.html")).read_text()
    found = charts(page)
    crossed = [name for name, chart in found.items() if points(chart, f"{name.removeprefix('chart-')}-marks")]
    assert crossed == ["chart-test_accuracy_pct"]  # time held; accuracy fell 10 points
    for name, chart in found.items():  # the commit is shaded on every chart
        assert group(chart, f"{name.removeprefix('chart-')}-regression-{SLOW}") is not None, name
    assert "accuracy" in points(found["chart-test_accuracy_pct"], "test_accuracy_pct-marks")[0]
    assert "-10.00 pts acc" in page


def test_counted_runs_get_a_chart_of_their_instructions_with_its_change_point(tmp_path):
    runs = []
    for c in range(6):
        per_step = 7_663_841 * (1.02 if c >= 3 else 1.0)  # 2% more work from the fourth commit on
        for seed in range(4):
            r = counted(per_step, train_s=80.0 + seed, seed=seed)
            r["environment"].update(git_commit=f"{c:x}" * 40, cpu="AMD EPYC", device_name="AMD EPYC")
            r["started_at"] = f"2026-01-0{c + 1}T10:00:0{seed}+00:00"
            runs.append(r)
    site = tmp_path / "site"
    assert main(["publish", str(write(tmp_path / "r", *runs)), "--output", str(site)]) == 0
    page = next((site / "workloads").glob("*.html")).read_text()
    found = charts(page)
    assert next(iter(found)) == "chart-instructions_per_step" and "chart-train_s" in found
    assert len(points(found["chart-instructions_per_step"], "instructions_per_step-runs")) == 24
    assert "instr/step" in page and "+2.0%" in page  # the change point, listed
    assert "instructions per step (counted runs) up more than 1%" in page
    # A timed series has no such chart.
    timed = tmp_path / "timed"
    main(["publish", str(write(tmp_path / "t", *history_records())), "--output", str(timed)])
    assert "chart-instructions_per_step" not in charts(next((timed / "workloads").glob("*.html")).read_text())


ODD_FIELDS = [("seed",), ("started_at",), ("hyperparameters",), ("environment", "git_commit"), ("environment", "cpu"),
              ("environment", "device_name"), ("timings", "train_s"), ("metrics", "test_accuracy"),
              ("throughput", "train_img_s"), ("run_id",), ("precision",), ("workload",)]  # fmt: skip
odd_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=4), st.integers(), max_size=3)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(ODD_FIELDS), value=odd_values)
@example(field=("metrics", "test_accuracy"), value=1.8961503816218354e152)  # its variance overflowed a float
@example(field=("metrics", "test_accuracy"), value=-3)
def test_odd_values_in_a_record_never_crash_publish(tmp_path_factory, field, value):
    runs = [at(commit, seed, train_s=10.0 + seed) for commit in range(2) for seed in range(2)]
    target = runs[-1]
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    folder = tmp_path_factory.mktemp("odd")
    try:  # --traceback: anything but a clean usage error fails the test with its traceback
        main(["--traceback", "publish", str(write(folder / "r", *runs)), "--output", str(folder / "site")])
    except UsageError as exc:
        assert "\n" not in str(exc)
    else:
        assert (folder / "site" / "index.html").is_file()
