"""One side of ``cifar-bench ab``: this install's runs, each taking turns with the other install's.

The side runs its plan with the in-process backend and a ``turn`` callback (:class:`Turns`) that hands the
baton to the coordinator after every training step. When a run ends, the side tells the coordinator its
summary, learns its partner's, and stores the partner and the per-step-paired ratio in the record before
the one write (``execute``'s ``complete`` step). See ``ab.py`` for the protocol.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..hooks.manager import register_inline
from ..hooks.specs import hookimpl
from ..results.schema import PartnerInfo
from ..training.session import Session
from ..training.state import RunResult
from ..version import __version__
from .ab_protocol import PROTOCOL, Channel, ProtocolError, paired_ratio
from .inprocess import InProcess
from .plan import Plan, PlannedRun, execute


class Turns:
    """The ``turn`` callback of one side's runs, and the hooks that start and time them."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.steps: list[float | None] = []
        self.resumed: float | None = None
        self.workload: dict[str, Any] = {}

    def begin(self, planned: PlannedRun) -> None:
        """A run is about to start: its steps are timed afresh, and what it computes is noted."""
        config = planned.config
        self.steps, self.resumed = [], None
        self.workload = {"device": config.device, "loader": config.variant.loader, "seed": config.seed,
                         "precision": config.variant.precision, "channels_last": config.variant.channels_last,
                         "compile": config.variant.compile, "threads": torch.get_num_threads()}  # fmt: skip

    def wait_go(self) -> None:
        message = self.channel.receive()
        if message["type"] == "abort":
            raise SystemExit(f"cifar-bench: stopped by the coordinator: {message.get('reason', '')}")
        if message["type"] != "go":
            raise ProtocolError(f"expected 'go', got {message['type']!r}")

    def __call__(self) -> None:
        """After each training step: hand the baton over and wait for it to come back."""
        now = time.perf_counter()
        self.steps.append(now - self.resumed if self.resumed is not None else None)
        self.channel.send("turn")
        self.wait_go()
        self.resumed = time.perf_counter()

    @hookimpl
    def run_start(self, run) -> None:
        """Setup and warm-up are done: say what this run computes, then wait for the first turn."""
        workload = {**self.workload, "dataset": run.dataset, "train_size": run.train_size,
                    "test_size": run.test_size, "steps_per_epoch": run.steps_per_epoch, "epochs": run.epochs,
                    "batch_size": run.hyperparameters.get("batch_size")}  # fmt: skip
        self.channel.send("start", workload=workload)
        self.wait_go()
        self.resumed = None  # the first step of an epoch follows hooks and timers, not a step: left unpaired

    @hookimpl
    def epoch_end(self, run, epoch) -> None:
        self.resumed = None

    def exchange(self, result: RunResult) -> None:
        """The run has ended: trade summaries with the partner, and keep its partner and paired ratio."""
        record = result.record
        summary = {"run_id": record.run_id, "status": record.status, "train_s": record.timings.train_s,
                   "total_s": record.timings.total_s, "steps": self.steps,
                   "fingerprint": record.dataset.fingerprint if record.dataset else None,
                   "git_commit": record.environment.git_commit}  # fmt: skip
        self.channel.send("done", summary=summary)
        message = self.channel.receive()
        if message["type"] != "partner":
            raise SystemExit(f"cifar-bench: stopped by the coordinator: {message.get('reason', message['type'])}")
        partner, hello = message["summary"], message.get("hello") or {}
        record.partner = PartnerInfo(side=message.get("side"), run_id=partner.get("run_id"),
                                     status=partner.get("status"), train_s=partner.get("train_s"),
                                     version=hello.get("version"), install=hello.get("install"),
                                     git_commit=partner.get("git_commit"), protocol=PROTOCOL)  # fmt: skip
        if record.status == partner.get("status") == "ok":
            record.paired_ratio = paired_ratio(self.steps, partner.get("steps") or [])


def serve(channel: Channel, session: Session, plan: Plan, *, loader: str) -> int:
    """Say hello, take the shared core if offered, then run ``plan`` taking turns; returns the exit code."""
    channel.send("hello", protocol=PROTOCOL, version=__version__, runs=len(plan.runs),
                 threads=torch.get_num_threads(), loader=loader, install=str(Path(__file__).resolve().parents[1]),
                 python=sys.executable)  # fmt: skip
    welcome = channel.receive()
    if welcome["type"] != "welcome":
        raise SystemExit(f"cifar-bench: stopped by the coordinator: {welcome.get('reason', welcome['type'])}")
    if welcome.get("core") is not None:
        os.sched_setaffinity(0, {int(welcome["core"])})  # this (the training) thread, beside the other side's
    turns = Turns(channel)
    register_inline(session.plugins, turns, "ab-turns")
    backend = InProcess(session, turn=turns, announce=turns.begin)
    execute(plan, backend, session, complete=turns.exchange,
            written=lambda result, path: channel.send("written", path=str(path)))  # fmt: skip
    channel.send("bye")
    return 0
