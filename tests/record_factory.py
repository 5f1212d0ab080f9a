"""Run records built in memory, for tests of everything that reads records (report, compare, plot)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from cifar_bench.results.schema import (
    ComponentRef,
    DatasetInfo,
    Environment,
    InstructionsInfo,
    Metrics,
    RunRecord,
    Throughput,
    Timings,
)

_counter = iter(range(10**6))


def record(
    recipe: str = "baseline",
    device: str = "cpu",
    *,
    train_s: float = 10.0,
    accuracy: float | None = 0.5,
    status: str = "ok",
    torch: str = "2.4.0",
    **extra,
) -> dict:
    """A record dict as the runner writes it; ``extra`` sets top-level fields (precision ...)."""
    run = RunRecord(
        run_id=f"run-{next(_counter)}",
        status=status,
        recipe=recipe,
        components={"model": ComponentRef("net", "baseline")},
        hyperparameters={"epochs": 2, "batch_size": 4, "lr": 0.001},
        seed=0,
        device=device,
        loader="tensor",
        dataset=DatasetInfo("synthetic", "abc123", 1000, 200, [f"c{i}" for i in range(10)], synthetic=True),
        metrics=Metrics(test_accuracy=accuracy, epoch_loss=[2.3, 2.0]),
        timings=Timings(train_s=train_s, eval_s=0.5, total_s=train_s + 1, epoch_train_s=[train_s / 2] * 2),
        throughput=Throughput(train_img_s=2000 / train_s, eval_img_s=400.0),
        environment=Environment("3.11.7", torch, "0.19.0", "Linux", "AMD EPYC", 2, "AMD EPYC"),
    ).to_dict()
    run.update(extra)
    return run


def counted(per_step: float, *, valgrind: str = "3.19.0", steps: int = 5, **extra) -> dict:
    """A record of a counted run (``run --measure instructions``): ``per_step`` instructions a training step, and
    ``extra`` as for :func:`record` (``train_s`` is valgrind's time there)."""
    info = InstructionsInfo(tool="callgrind", valgrind=valgrind, mechanism="callgrind client requests", arch="x86_64",
                            steps=steps, train=round(per_step * steps), per_step=per_step, eval_images=32,
                            eval=19_000_000, per_eval_image=19_000_000 / 32)  # fmt: skip
    return record(instructions=asdict(info), **extra)


def write(folder: Path, *records: dict) -> Path:
    """Each record as ``<run_id>.json`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for r in records:
        (folder / f"{r['run_id']}.json").write_text(json.dumps(r))
    return folder
