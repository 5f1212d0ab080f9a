"""Data-parallel runs: two CPU ranks with gloo under torchrun, checked against one process.

The torchrun runs are real (subprocesses, each with a timeout so that a hang
fails the test instead of stalling CI); the sharding rules are checked
directly, without a process group.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from cifar_bench.execution.torchrun import first_error
from cifar_bench.training.batches import TensorBatches
from cifar_bench.training.data import TensorSplit
from cifar_bench.training.world import World

# 192 images = 24 global batches of 8: every rank gets 4 images of each, nothing is dropped.
SMALL = ("--dataset", "synthetic", "--limit-train", "192", "--limit-test", "50", "--epochs", "2",
         "--batch-size", "8", "--set", "lr=0.01", "--threads", "1", "--quiet")  # fmt: skip
TIMEOUT_S = 120


def cifar_bench(*args, **env_vars: str) -> subprocess.CompletedProcess:
    """``cifar-bench ARGS`` in a fresh process (torchrun needs one), one thread per rank."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CIFAR_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1", **env_vars}
    command = [sys.executable, "-m", "cifar_bench", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False)


def records(folder) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One 2-rank run of the baseline, shared by the tests that read its output."""
    results = tmp_path_factory.mktemp("two-ranks")
    return cifar_bench("run", "baseline", *SMALL, "--nproc", "2", "--results-dir", results), results


def test_two_ranks_finish_and_rank_0_writes_one_record(two_ranks):
    done, results = two_ranks
    assert done.returncode == 0, done.stderr[-2000:]
    (record,) = records(results)
    assert record["status"] == "ok"
    assert record["distributed"] == {
        "world_size": 2,
        "backend": "gloo",
        "global_batch_size": 8,
        "per_rank_batch_size": 4,
        "dropped_per_epoch": 0,
        "padded_per_epoch": 0,
    }
    assert record["hyperparameters"]["batch_size"] == 8  # the global batch, as the user gave it
    assert (record["dataset"]["train_size"], record["dataset"]["test_size"]) == (192, 50)
    # Only rank 0 speaks: one result block and one table, not one per rank.
    assert done.stdout.count("Accuracy on test images:") == 1
    assert done.stdout.count("record: ") == 1


def test_two_ranks_match_one_process_at_the_same_global_batch(two_ranks, run_cli, tmp_path):
    done, results = two_ranks
    assert done.returncode == 0, done.stderr[-2000:]
    (parallel,) = records(results)
    single = run_cli("run", "baseline", *SMALL, "--results-dir", tmp_path)
    assert single.code == 0, single
    (one,) = records(tmp_path)
    assert one["distributed"] is None
    assert parallel["metrics"]["epoch_loss"] == pytest.approx(one["metrics"]["epoch_loss"], rel=1e-4)
    # The loss moved, so the match is not two untrained models agreeing.
    assert abs(one["metrics"]["epoch_loss"][1] - one["metrics"]["epoch_loss"][0]) > 1e-3
    # Sharded evaluation sums to the same counts (one image of slack for float near-ties).
    assert parallel["metrics"]["test_accuracy"] == pytest.approx(one["metrics"]["test_accuracy"], abs=1 / 50)


def test_a_rank_that_raises_fails_the_command_with_its_error(tmp_path):
    plugin = tmp_path / "fail_on_rank_1.py"
    plugin.write_text(
        "import os\n"
        "from cifar_bench import hookimpl\n\n"
        "@hookimpl\n"
        "def train_progress(run, progress):\n"
        "    if int(os.environ['RANK']) == 1:\n"
        "        raise RuntimeError('rank 1 gave up')\n"
    )
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = cifar_bench("run", "baseline", "-p", plugin, *SMALL, "--nproc", "2", "--results-dir", tmp_path / "r",
                       TMPDIR=str(temp))  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]  # and within TIMEOUT_S, or cifar_bench() raised
    expected = "cifar-bench: error: rank 1 of 2 failed: plugin 'fail_on_rank_1' failed in train_progress: RuntimeError"
    assert expected in done.stderr and "rank 1 gave up" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").iterdir())
    assert list(temp.iterdir()) == []  # the launcher's and the ranks' temporary files went with them


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--nproc", "0"), "must be at least 1"),
        (("--nproc", "2", "--batch-size", "7"), "batch_size 7 is the global batch and must divide evenly among 2"),
        (("--nproc", "2", "--device", "cpu,cuda"), "--nproc runs on one device"),
        (("--nproc", "2", "--device", "mps"), "data-parallel runs need cpu or cuda"),
        (("--nproc", "2", "--device", "cuda:1"), "each rank uses its own GPU"),
    ],
)
def test_bad_data_parallel_input_is_one_line_before_torchrun_starts(run_cli, tmp_path, args, message):
    result = run_cli("run", "baseline", "--dataset", "synthetic", *args, "--results-dir", tmp_path)
    assert result.code == 2, result
    assert len(result.err.strip().splitlines()) == 1 and message in result.err, result.err


# -- the sharding rules, without a process group ---------------------------------------------


def split_of(n: int) -> TensorSplit:
    return TensorSplit(torch.arange(n).view(n, 1, 1, 1).expand(n, 3, 1, 1).contiguous(), torch.arange(n))


@pytest.mark.parametrize(("n", "batch", "world"), [(24, 8, 2), (30, 8, 2), (29, 8, 2), (25, 6, 3), (5, 8, 2)])
def test_ranks_split_each_global_batch_of_one_permutation_into_equal_blocks(n, batch, world):
    def batches(world: World) -> TensorBatches:
        return TensorBatches(split_of(n), batch, torch.Generator().manual_seed(3), world)  # one seed: one permutation

    single = list(batches(World()))
    ranks = [list(batches(World(rank=r, size=world))) for r in range(world)]
    lengths = {len(batches(World(rank=r, size=world))) for r in range(world)}
    assert lengths == {len(ranks[0])}  # every rank makes the same number of steps, or DDP would hang
    for k, (_, labels) in enumerate(single):
        if k == len(ranks[0]):  # the last global batch was too small to share: dropped
            assert len(labels) < world
            break
        shards = [ranks[r][k][1] for r in range(world)]
        assert len({len(s) for s in shards}) == 1  # equal shards: the gradient average is the global mean
        kept = len(labels) - len(labels) % world  # what splits evenly; the rest is dropped (and recorded)
        assert torch.equal(torch.cat(shards), labels[:kept])


def test_the_record_says_what_an_uneven_split_drops_or_pads():
    world = World(rank=0, size=2, backend="gloo")
    assert world.describe(8, 29, "tensor").dropped_per_epoch == 1  # 29 % 8 = 5 -> 4 shared, 1 dropped
    assert world.describe(8, 29, "dataloader").padded_per_epoch == 1  # DistributedSampler repeats one
    assert World().describe(8, 29, "tensor") is None


def test_the_launcher_reports_the_earliest_rank_error(tmp_path):
    for rank, when, message in ((0, 20.0, "connection closed by peer"), (1, 10.0, "RuntimeError: the cause")):
        error = {"rank": rank, "size": 2, "message": message, "code": 1, "time": when}
        (tmp_path / f"rank-{rank}.json").write_text(json.dumps(error))
    assert first_error(tmp_path) == ("rank 1 of 2 failed: RuntimeError: the cause", 1)
    assert first_error(tmp_path / "none") is None
