"""Records: atomic writes, safe names, and refusing what cannot be read."""

import json
import os

import pytest

from cifar_bench.files import write_json_atomic
from cifar_bench.results.schema import SCHEMA_VERSION
from cifar_bench.results.store import RecordError, new_run_id, read_record, safe_name


def test_atomic_write_leaves_only_the_finished_file(tmp_path):
    path = write_json_atomic(tmp_path / "r.json", {"schema_version": 1, "x": [1, 2]})
    assert json.loads(path.read_text()) == {"schema_version": 1, "x": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    path = write_json_atomic(tmp_path / "r.json", {"schema_version": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"schema_version": 1, "bad": float("nan")})  # NaN is not JSON
    assert json.loads(path.read_text()) == {"schema_version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.parametrize("name", ["../../etc/passwd", "/abs/path", "a/b", "..", ".hidden", "", "x" * 5 + "\0"])
def test_safe_names_cannot_leave_the_folder(name):
    cleaned = safe_name(name)
    assert "/" not in cleaned and "\0" not in cleaned and not cleaned.startswith(".") and cleaned


def test_run_ids_differ_even_within_one_second():
    ids = {new_run_id("baseline", "cpu") for _ in range(200)}
    assert len(ids) == 200


def test_newer_schema_is_refused_with_upgrade_advice(tmp_path):
    path = tmp_path / "future.json"
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(RecordError, match="upgrade cifar-bench"):
        read_record(path)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"run_id": "x"}', ""])
def test_non_records_are_refused_naming_the_file(tmp_path, content):
    path = tmp_path / "junk.json"
    path.write_text(content)
    with pytest.raises(RecordError, match=r"junk\.json"):
        read_record(path)


def test_a_written_record_reads_back(tmp_path, run_cli, smoke):
    assert run_cli("run", "baseline", *smoke, "--results-dir", tmp_path).code == 0
    (path,) = tmp_path.glob("*.json")
    record = read_record(path)
    assert record["run_id"] == path.stem and os.path.getsize(path) > 0
