"""What one run is asked to do: :class:`RunConfig`, the one description every way of running builds.

The command line, a suite file, the Python API, ``ab`` sides and the pytest fixtures all make a RunConfig;
data-parallel ranks and Ray workers receive one serialized (:meth:`RunConfig.to_dict`). Everything a record
says about the run's identity that the run itself cannot know (its suite key, its role beside a reference)
travels in the config, so the record is complete when it is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..cache import default_cache_dir
from ..hooks.components import DataSource
from ..results.variant import Variant

#: Hyperparameters every recipe has; a recipe's own values override these.
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {
    "eval_batch_size": 1000,  # test images per forward pass; does not change accuracy
    "log_every": 2000,  # steps between loss-log lines
}

#: Hyperparameters the harness itself reads (the loop, the loaders, the schedule and the model's output size).
HARNESS_KEYS = frozenset({"batch_size", "epochs", "eval_batch_size", "log_every", "lr", "schedule_per", "num_classes"})

#: Steps between train_progress events: cheap, yet smooth for a progress bar. The loss is read back from the
#: device only this often, so a GPU is not made to wait after every step.
PROGRESS_EVERY = 50

#: Seeds torch accepts for every generator a run seeds (weights, batch order, augmentation per rank).
MAX_SEED = 2**63 - 1

#: A run's role: on its own (or the run being judged), or the reference interleaved with it.
ROLES = ("candidate", "reference")


@dataclass(frozen=True)
class RunConfig:
    """Everything the user chose for one run; the recipe supplies the rest."""

    recipe: str
    device: str = "cpu"
    seed: int = 0
    variant: Variant = field(default_factory=Variant)
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)  # overrides of the recipe's
    components: Mapping[str, str] = field(default_factory=dict)  # kind -> name, overrides of the recipe's
    dataset: str | None = None  # overrides the recipe's dataset
    source: DataSource = field(default_factory=DataSource)
    limit_train: int | None = None  # class-balanced subset sizes
    limit_test: int | None = None
    cache_dir: Path | None = field(default_factory=default_cache_dir)  # None: decode afresh, cache nothing
    target_acc: float | None = None  # evaluate after each epoch and note when this is reached
    stop_at_target: bool = False
    cpu_tune: bool = True  # train with the CPU settings measured fastest for this step on this machine
    retune: bool = False  # measure the CPU settings again instead of keeping this machine's earlier decision
    threads: int | None = None  # fix the CPU threads (tuning then only picks the kernels)
    repeat: int = 0  # which repeat of the command this run is, from 0
    processes: int = 1  # a data-parallel run's ranks (torchrun starts them)
    suite_key: str | None = None  # which run of a suite this is (see execution/suite.py): stored in the record
    role: str = "candidate"  # see ROLES
    count_steps: int | None = None  # measure in instructions: this many training steps counted under valgrind
    evaluations: tuple[str, ...] | None = None  # run --evaluate: evaluation names; None: the recipe's own

    def to_dict(self) -> dict[str, Any]:
        """This config as JSON values (how a data-parallel rank or another process receives it)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(
            variant=self.variant.to_dict(),
            hyperparameters=dict(self.hyperparameters),
            components=dict(self.components),
            source={"root": self.source.root, "data_dir": self.source.data_dir, "download": self.source.download},
            cache_dir=None if self.cache_dir is None else str(self.cache_dir),
        )
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        data = dict(data)
        data.update(
            variant=Variant(**data["variant"]),
            source=DataSource(**data["source"]),
            cache_dir=None if data["cache_dir"] is None else Path(data["cache_dir"]),
        )
        if data.get("evaluations") is not None:
            data["evaluations"] = tuple(data["evaluations"])
        return cls(**data)
