"""What a Ray task runs on a worker: one planned run, its record sent back to the driver as a dict.

Each task builds its own session (the plugins' modules are imported once per worker process, so this
costs little) and takes the driver's decoded data from the node's object store: nothing is kept in the
worker process from one task to the next, so a task's run depends on its own inputs only.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import UsageError
from ..hooks import manager
from ..hooks.components import Dataset
from ..hooks.registry import collect
from ..training.data import TensorSplit
from ..training.session import Session
from .inprocess import InProcess
from .plan import PlannedRun
from .torchrun import Torchrun


def tracker_class() -> type:
    """Which runs have started, and where: tasks tell it as they start, the driver asks (a Ray actor).

    Made inside a function so that Ray ships the class itself: the actor's
    process then needs only Ray, not cifar-bench and torch, and starts fast.
    """

    class Tracker:
        def __init__(self) -> None:
            self.started: dict[str, str] = {}

        def start(self, key: str, node: str) -> None:
            self.started[key] = node

        def snapshot(self) -> dict[str, str]:
            return dict(self.started)

    return Tracker


def execute(spec: dict[str, Any], tracker) -> dict[str, Any]:
    """One run on a worker; returns its record as a dict. A run that fails is a record, not an exception."""
    import ray

    planned = PlannedRun.from_dict(spec["run"])
    config = planned.config
    tracker.start.remote(config.suite_key, ray.util.get_node_ip_address())
    start = time.perf_counter()
    try:
        plugins = manager.build(spec["plugins"], autoload=spec["autoload"])
        plugins.check_broken()
        session = Session(plugins, collect(plugins))
        if config.processes > 1:
            return _execute_distributed(planned, spec, session)
        data = spec["data"]
        if data is not None:
            session.provide_data(data["entry"], data["source"], *_unpack(ray.get(data["ref"][0])))
        if config.threads is None:
            torch.set_num_threads(1)  # the one CPU a task asks for unless the suite sets threads
        (result,) = InProcess(session).run_one(planned, keep_going=True)
        return result.record.to_dict()
    except UsageError as exc:  # a plugin this node lacks, say: the run fails, the suite goes on
        return {"unstarted": str(exc), "seconds": time.perf_counter() - start}


def _execute_distributed(planned: PlannedRun, spec: dict[str, Any], session: Session) -> dict[str, Any]:
    """A data-parallel run: torchrun on this node, its record read back."""
    start = time.perf_counter()
    if not spec["autoload"]:
        os.environ[manager.AUTOLOAD_ENV] = "1"  # the ranks load the plugins the driver loaded
    backend = Torchrun(session, spec["plugins"], autoload=spec["autoload"], quiet=True)
    with _stdout_to_null():  # rank 0's own lines would reach the driver's terminal through Ray's log forwarding
        outcome = backend.run_one(planned, None)
    if outcome.results:  # its record, or the failed one made when it wrote none
        return outcome.results[0].record.to_dict()
    return {"unstarted": "torchrun was interrupted", "seconds": time.perf_counter() - start}


@contextmanager
def _stdout_to_null() -> Iterator[None]:
    """This process's standard output, and so its children's, to /dev/null for a while."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _unpack(payload: dict[str, Any]) -> tuple[Dataset, TensorSplit, TensorSplit]:
    """The driver's decoded data as this process's own tensors (the store's arrays are read-only)."""
    train, test = (TensorSplit(torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y)))
                   for x, y in (payload["splits"]["train"], payload["splits"]["test"]))  # fmt: skip
    dataset = Dataset(
        name=payload["name"],
        classes=payload["classes"],
        train=DecodedImages(train),
        test=DecodedImages(test),
        fingerprint=payload["fingerprint"],
        synthetic=payload["synthetic"],
        source=payload["source"],
    )
    return dataset, train, test


class DecodedImages(torch.utils.data.Dataset):
    """``(PIL image, label)`` pairs from a decoded split: what the ``dataloader`` loader reads on a worker.

    The same pixels the dataset's own images decode to, so both loaders give
    the same results on a worker as on the driver's machine.
    """

    def __init__(self, split: TensorSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return Image.fromarray(self.split.images[i].permute(1, 2, 0).numpy()), int(self.split.labels[i])
