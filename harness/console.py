"""The console observer: progress bar, the tutorial's loss log, and each run's results.

An inline plugin (registered by the CLI, not by entry point), built on the
same lifecycle hooks any observer uses.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from .hooks.events import EpochResult, RunInfo, TrainProgress
from .hooks.specs import hookimpl
from .results import evaluations
from .results.schema import RunRecord

#: Seconds between progress lines when stderr is not a terminal (a CI log): lines, not a redrawn bar.
PLAIN_PROGRESS_EVERY_S = 30.0


class Console:
    def __init__(self, *, progress: bool = True, stream=None, bar: bool | None = None) -> None:
        # progress=False (--quiet): no bar and no loss log; results are still printed.
        self.progress = progress
        self.stream = stream or sys.stdout
        # A bar redraws itself with carriage returns: only for a terminal. A log gets a line now and then.
        self.bar = sys.stderr.isatty() if bar is None else bar
        self._bars: dict[str, tqdm] = {}  # one per run: runs in lockstep each show theirs
        self._last_line: dict[str, float] = {}  # run id -> when its last progress line was printed

    def _print(self, line: str) -> None:
        if self._bars:
            tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream)

    @hookimpl
    def run_start(self, run: RunInfo) -> None:
        hp = ", ".join(f"{k}={v}" for k, v in run.hyperparameters.items())
        self._print(
            f"{run.recipe} on {run.device} ({run.loader} loader): {run.dataset}, "
            f"{run.train_size:,} train / {run.test_size:,} test images; {hp}"
        )
        if run.cpu_settings:
            self._print(f"CPU settings: {run.cpu_settings}")

    @hookimpl
    def train_progress(self, run: RunInfo, progress: TrainProgress) -> None:
        if self.progress and not self.bar:
            now = time.monotonic()
            if now - self._last_line.setdefault(run.run_id, now) >= PLAIN_PROGRESS_EVERY_S:
                self._last_line[run.run_id] = now
                print(
                    f"{run.recipe} epoch {progress.epoch}/{run.epochs}: step {progress.step:,}/"
                    f"{progress.steps_per_epoch:,}, loss {progress.running_loss:.3f}, "
                    f"{progress.images_per_s:,.0f} img/s",
                    file=sys.stderr,
                    flush=True,
                )
        elif self.progress:
            bar = self._bars.get(run.run_id)
            if bar is None:
                bar = self._bars[run.run_id] = tqdm(
                    total=progress.steps_per_epoch,
                    desc=f"{run.recipe} epoch {progress.epoch}/{run.epochs}",
                    unit="step",
                    file=sys.stderr,
                    leave=False,
                    dynamic_ncols=True,
                    position=len(self._bars),
                )
            bar.update(progress.step - bar.n)
            bar.set_postfix(loss=f"{progress.running_loss:.3f}", img_s=f"{progress.images_per_s:,.0f}", refresh=False)
        if progress.log_loss is not None and self.progress:
            # The tutorial's line, character for character.
            self._print(f"[{progress.epoch}, {progress.step:5d}] loss: {progress.log_loss:.3f}")

    @hookimpl
    def epoch_end(self, run: RunInfo, epoch: EpochResult) -> None:
        bar = self._bars.pop(run.run_id, None)
        if bar is not None:
            bar.close()
        self._print(
            f"epoch {epoch.epoch}: mean loss {epoch.mean_loss:.3f}, "
            f"{epoch.train_s:.1f} s, {epoch.images / epoch.train_s if epoch.train_s else 0:,.0f} img/s"
        )

    @hookimpl
    def run_end(self, run: RunInfo, record: RunRecord) -> None:
        m, t, tp = record.metrics, record.timings, record.throughput
        self._last_line.pop(record.run_id, None)
        if m.test_accuracy is None:
            return
        role = " (reference)" if record.role == "reference" else ""
        self._print(f"{record.recipe} on {record.device}{role}:")  # runs in lockstep end one after the other
        self._print(f"Accuracy on test images: {100 * m.test_accuracy:.2f}%")
        width = max(len(c) for c in m.per_class_accuracy) if m.per_class_accuracy else 0
        for name, acc in m.per_class_accuracy.items():
            shown = "   n/a (no test images)" if acc is None else f"{100 * acc:5.1f}%"
            self._print(f"  {name:<{width}}  {shown}")
        self._print(
            f"train {t.train_s:.1f} s ({tp.train_img_s:,.0f} img/s), "
            f"eval {t.eval_s:.2f} s ({tp.eval_img_s:,.0f} img/s), setup {t.setup_s:.1f} s"
        )
        for line in evaluations.summary_lines(record):  # run --evaluate: metrics, then each table
            self._print(line)
        # Where the rest of the command's time went, so that seconds outside training are never a mystery.
        phases = t.setup_s + t.warmup_s + t.train_s + t.eval_s + t.epoch_eval_s + t.evaluation_s
        startup = f"start-up {t.startup_s:.1f} s (imports, plugins), " if t.startup_s is not None else ""
        evaluated = f"evaluations {t.evaluation_s:.1f} s, " if record.evaluations else ""
        self._print(
            f"whole run: {startup}setup {t.setup_s:.1f} s, warm-up {t.warmup_s:.1f} s, train {t.train_s:.1f} s, "
            f"eval {t.eval_s + t.epoch_eval_s:.1f} s, {evaluated}other {t.total_s - phases:.1f} s"
        )
