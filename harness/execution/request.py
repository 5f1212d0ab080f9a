"""What a ``run`` asks for, checked and turned into a plan: devices x seeds, each run with its reference.

``cifar-bench run``'s flags and ``cifar_bench.run(...)``'s options both become a :class:`RunRequest`;
:func:`preflight` checks what can be checked before anything trains (the results folder, the seeds, the
devices), and :meth:`RunRequest.plan` lays out the runs in order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import PluginError, UsageError
from ..results.store import prepare_results_dir
from ..training.config import MAX_SEED, RunConfig
from ..training.devices import parse_devices, unavailable_reason
from .inprocess import reference_config
from .plan import INTERLEAVES, Plan, PlannedRun


@dataclass(frozen=True)
class RunRequest:
    """Runs of one recipe: ``base`` on each of ``devices`` with each of ``seeds``, each beside its reference."""

    base: RunConfig  # device, seed and repeat are set per run
    devices: str = "cpu"  # cpu, cuda, cuda:N, mps, a list (cpu,cuda) or all
    seeds: tuple[int, ...] = (0,)
    reference: str | None = None  # a recipe run beside each run (time ratios for noise-aware gating)
    interleave: str | None = None  # with a reference: step or run (see plan.INTERLEAVES); chosen when None
    reference_epochs: int | None = None  # the reference's epochs, when the command set the candidate's
    results_dir: Path | None = None  # None: write nothing

    def device_list(self) -> list[str]:
        return parse_devices(self.devices)

    def interleave_mode(self, *, across_processes: bool) -> str | None:
        """How a reference run is interleaved (None without one): step by step in one process, else run by run."""
        if self.reference is None:
            if self.interleave:
                raise UsageError(
                    "--interleave says how a --reference run takes turns: add --reference RECIPE or drop it"
                )
            return None
        if self.interleave is not None and self.interleave not in INTERLEAVES:
            raise UsageError(f"--interleave must be one of {', '.join(INTERLEAVES)}, got {self.interleave!r}")
        if self.interleave == "step" and across_processes:
            raise UsageError("--interleave step takes turns within one process: use --interleave run with --nproc")
        return self.interleave or ("run" if across_processes else "step")

    def plan(self, *, across_processes: bool = False) -> Plan:
        """Devices x seeds, in that order, each with its reference if one is asked for."""
        interleave = self.interleave_mode(across_processes=across_processes)
        runs = []
        for device in self.device_list():
            for repeat, seed in enumerate(self.seeds):
                config = replace(self.base, device=device, seed=seed, repeat=repeat)
                reference = None
                if self.reference is not None:
                    reference = reference_config(config, self.reference, self.reference_epochs)
                runs.append(PlannedRun(config, reference, interleave or "step"))
        return Plan(tuple(runs), self.results_dir)


def seeds_from(seed: int, repeats: int) -> tuple[int, ...]:
    """``--seed S --repeats N``: seeds S, S+1, ..., S+N-1."""
    if seed + repeats - 1 > MAX_SEED:
        raise UsageError(f"--seed {seed} with --repeats {repeats} runs past the largest seed, 2**63-1")
    return tuple(range(seed, seed + repeats))


def preflight(request: RunRequest) -> None:
    """What a run can check before anything is loaded: its hyperparameters' names, its devices.

    Each failure is bad input (exit 2) now rather than a lost or empty run later.
    """
    if "num_classes" in request.base.hyperparameters:
        raise UsageError("num_classes comes from the dataset's classes: drop --set num_classes")
    if request.devices.strip() != "all":  # 'all' means whatever is here
        reasons = {device: unavailable_reason(device) for device in request.device_list()}
        if all(reasons.values()):
            why = "; ".join(f"{device}: {reason}" for device, reason in reasons.items())
            raise UsageError(f"no requested device is available ({why}): use --device cpu, or --device all")


@contextmanager
def results_folder(folder: Path | None, *, writes: bool = True) -> Iterator[None]:
    """Prove ``folder`` can take records before anything trains (exit 2 if not), for the time of the runs.

    A command refused as bad input meanwhile (a typo found at set-up, say) leaves no empty folder of its
    own making behind. ``writes``: this process writes the records (a data-parallel rank other than 0 does
    not).
    """
    made = writes and folder is not None and not folder.exists()
    if writes and folder is not None:
        prepare_results_dir(folder)
    try:
        yield
    except (UsageError, PluginError):
        if made:
            with contextlib.suppress(OSError):  # not empty (a record was written), or gone: left as it is
                folder.rmdir()
        raise
