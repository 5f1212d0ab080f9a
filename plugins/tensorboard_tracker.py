"""Log each run as TensorBoard event files in ``LOG_DIR/<run_id>``: scalars by step, and its hyperparameters.

``TensorboardTracker(log_dir="runs")`` is an observer object (its methods
are the hooks; see ``_tracking.Tracker`` for the failure rule and the
steps). It writes with PyTorch's ``torch.utils.tensorboard.SummaryWriter``
(the ``tensorboard`` package must be installed):

- **scalars**: ``running_loss`` and ``running_images_per_s`` by global step;
  ``epoch_loss``, ``epoch_train_s``, ``epoch_images_per_s``,
  ``epoch_accuracy`` by epoch; at the end ``test_accuracy``,
  ``per_class_accuracy/CLASS``, ``timings/PHASE_s``, ``throughput/...``,
  ``memory/...`` at the last epoch. TensorBoard keeps scalars as 32-bit floats.
- **hparams** (TensorBoard's HPARAMS tab): the recipe, each component and its
  plugin, every resolved hyperparameter, the seed, device, variant, machine
  and commit, against the final metrics in :data:`HPARAM_METRICS`. Written
  into the run's own folder: ``SummaryWriter.add_hparams`` would put them in
  a new timestamped subfolder, a second "run" in TensorBoard's list.

``tensorboard --logdir runs`` shows them.
"""

from __future__ import annotations

import os
from typing import Any

from cifar_bench import RunInfo, RunRecord

from ._tracking import Point, Tracker, one_line, record_params, record_tags, run_params, text

#: The final metrics shown beside the hyperparameters (those the run has).
HPARAM_METRICS = ("test_accuracy", "epoch_loss", "throughput/train_img_s", "timings/train_s")
#: Seconds between the writer's own flushes while a run goes on (each run's files are flushed at its end).
FLUSH_EVERY_S = 30


class TensorboardTracker(Tracker):
    """Each run as one TensorBoard run, ``log_dir/<run_id>``.

    :param log_dir: the folder TensorBoard is pointed at (``tensorboard --logdir``); made if missing.
    :param stream: where the one warning line goes (None: stderr).
    """

    name = "tensorboard"

    def __init__(self, log_dir: str | os.PathLike = "runs", stream=None) -> None:
        super().__init__(stream)
        self.log_dir = os.fspath(log_dir)
        self.run_dirs: dict[str, str] = {}  # cifar-bench run id -> the folder its events are in
        self._writers: dict[str, Any] = {}  # run id -> its open SummaryWriter
        self._writer_class: Any = None
        self._hparams: Any = None
        if self.enabled:
            self._load()

    def _load(self) -> None:
        """Import the writer now, at start-up, not inside a run."""
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams
        except ImportError as exc:
            self.fail(f"not installed ({one_line(exc)}): pip install 'cifar-bench[tensorboard]'")
            return
        self._writer_class, self._hparams = SummaryWriter, hparams

    # -- the hooks' work (each call under the failure rule: see Tracker._guarded) -----------

    def _open(self, run: RunInfo) -> None:
        self._writer(run.run_id)

    def _write(self, run: RunInfo, points: list[Point]) -> None:
        writer = self._writers.get(run.run_id)
        if writer is not None:
            for p in points:
                writer.add_scalar(p.key, p.value, p.step, walltime=p.wall_s)

    def _finish(self, run: RunInfo, record: RunRecord, points: list[Point]) -> None:
        writer = self._writers.get(record.run_id) or self._writer(record.run_id)  # a skipped run was never opened
        self._write(run, points)
        params = {**record_params(record), **run_params(run), **record_tags(record)}
        logged = {p.key for p in points} | ({"epoch_loss"} if record.metrics.epoch_loss else set())
        self._write_hparams(writer, params, logged)
        writer.close()  # flushes this run's files
        del self._writers[record.run_id]

    def _close(self) -> None:
        for writer in self._writers.values():  # runs that never ended (none, unless the command was cut short)
            writer.close()
        self._writers.clear()

    def _abandon(self) -> None:
        self._close()

    # -- writers ------------------------------------------------------------------------

    def _writer(self, run_id: str) -> Any:
        """A writer for ``log_dir/<run_id>`` (a run id is already a safe file name)."""
        folder = os.path.join(self.log_dir, run_id)
        writer = self._writers[run_id] = self._writer_class(log_dir=folder, flush_secs=FLUSH_EVERY_S)
        self.run_dirs[run_id] = folder
        return writer

    def _write_hparams(self, writer: Any, params: dict[str, Any], logged: set[str]) -> None:
        """The hparams summaries, into the run's own event file (what ``add_hparams`` writes elsewhere)."""
        values = {key: value if _is_number(value) else text(value) for key, value in params.items()}
        metrics = {key: 0.0 for key in HPARAM_METRICS if key in logged}  # the values are the scalars logged
        experiment, session_start, session_end = self._hparams(values, metrics)
        for summary in (experiment, session_start, session_end):
            writer.file_writer.add_summary(summary)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
