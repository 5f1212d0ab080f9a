"""The result of a run, as typed records: the one definition of the record's layout.

One run makes one :class:`RunRecord`, written as one JSON file (see ``store.py``). Every section is a
dataclass here; ``typed.py`` derives from these same types what a sane record holds, and fills what an
older record lacks with these defaults, so the layout is written down once.

A record is complete when it is made: the harness builds it in one place (``training.state``), the
execution layer adds what only the pairing of runs knows (a reference's ratios, an ``ab`` partner) before
``run_end`` observers see it, and then it is written once. Nobody edits it afterwards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .variant import Variant

#: Bumped whenever the layout changes incompatibly; every older version is migrated on reading (store.py).
#: 1: the first layout. 2: variant fields (precision, channels_last, compile, deterministic), memory,
#: role/reference/timings_ratio, warm-up and per-epoch evaluation timings, epoch accuracy and time to target.
SCHEMA_VERSION = 2

#: Statuses a run ends with; only ``ok`` runs count in reports by default.
STATUSES = ("ok", "skipped", "failed", "diverged", "interrupted")


@dataclass
class ComponentRef:
    """Which registered component a run used, and the plugin that provided it."""

    name: str
    plugin: str


@dataclass
class DatasetInfo:
    name: str
    fingerprint: str
    train_size: int
    test_size: int
    classes: list[str]
    synthetic: bool = False
    source: str = ""


@dataclass
class Metrics:
    test_accuracy: float | None = None  # fraction of the test set, 0..1
    per_class_accuracy: dict[str, float | None] = field(default_factory=dict)  # None: no test images
    epoch_loss: list[float] = field(default_factory=list)  # mean training loss per epoch
    epoch_accuracy: list[float] = field(default_factory=list)  # after each epoch, with --target-acc
    target_acc: float | None = None
    time_to_target_s: float | None = None  # train seconds when target_acc was first reached
    diverged_at: dict[str, int] | None = None  # {"epoch", "step"} for a diverged run


@dataclass
class Timings:
    """Seconds per phase; each edge waits for the device, so no work leaks across."""

    setup_s: float = 0.0  # data preparation and model build
    warmup_s: float = 0.0  # one step per batch shape, then state restored; torch.compile compiles here
    train_s: float = 0.0  # training steps only
    eval_s: float = 0.0  # the final test-set evaluation
    epoch_eval_s: float = 0.0  # evaluations after each epoch for --target-acc, not in train_s
    total_s: float = 0.0  # wall time of the whole run, setup included
    epoch_train_s: list[float] = field(default_factory=list)
    # From the process's start to this run's start: interpreter, imports, plugins, registry (and earlier runs
    # of the same command); with total_s and the write, what the whole command took. None where unknown.
    startup_s: float | None = None
    evaluation_s: float = 0.0  # the evaluations after training (run --evaluate), together; each's own in evaluations


@dataclass
class Throughput:
    train_img_s: float = 0.0  # training images per second of train_s
    eval_img_s: float = 0.0  # test images per second of eval_s


@dataclass
class Memory:
    device_peak_bytes: int | None = None  # CUDA max allocated during the run
    host_peak_rss_bytes: int | None = None  # the process's peak resident set so far


@dataclass
class Environment:
    """The hardware and software a result came from."""

    python: str
    torch: str
    torchvision: str
    platform: str
    cpu: str
    threads: int
    device_name: str
    git_commit: str | None = None
    hostname: str = ""


@dataclass
class Overrides:
    """What the user changed of the recipe (flags, or a suite's keys)."""

    components: dict[str, str] = field(default_factory=dict)  # kind -> name
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    limit_train: int | None = None
    limit_test: int | None = None


@dataclass
class ReferenceInfo:
    """The reference run this one was interleaved with (``run --reference``)."""

    recipe: str
    run_id: str
    train_s: float | None = None
    total_s: float | None = None
    interleave: str = "run"  # "step": the two took turns step by step; "run": one after the other


@dataclass
class TimeRatios:
    """This run's times over its reference's."""

    train_s: float | None = None
    total_s: float | None = None


@dataclass
class DistributedInfo:
    """How a data-parallel run was split (see training/world.py); absent for one process."""

    world_size: int
    backend: str | None
    global_batch_size: int
    per_rank_batch_size: int
    dropped_per_epoch: int | None = 0  # tensor loader: images of a last uneven global batch left out
    padded_per_epoch: int | None = 0  # dataloader: images repeated by the DistributedSampler


@dataclass
class CpuInfo:
    """The CPU settings a run trained with, and whether it measured them or kept an earlier decision."""

    threads: int
    onednn: bool
    tuned_ms_per_step: dict[str, float] | None = None  # candidate label -> median ms per step
    decision: str | None = None  # "measured", "kept", or None (not tuned)
    measured_at: str | None = None
    others_cpu_share: float | None = None  # share of the machine's CPU other work took while tuning measured
    busy: bool = False  # that share was above cpu_tuning.BUSY_SHARE
    key: str | None = None  # the machine and step the decision belongs to
    check: dict[str, Any] | None = None  # the first epoch's step time against what tuning measured


@dataclass
class WorkloadInfo:
    """The work a run did (see workload.py): only runs with equal keys are compared or summarised together."""

    key: str
    components: dict[str, str] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    variant: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1
    measure: dict[str, Any] | None = None  # instruction counts: how they were counted (None: a timed run)
    evaluations: dict[str, Any] = field(default_factory=dict)  # name -> {"plugin", "settings"}; see workload.py


@dataclass
class PartnerInfo:
    """The run of another install this one took turns with, step by step (``cifar-bench ab``)."""

    side: str | None = None
    run_id: str | None = None
    status: str | None = None
    train_s: float | None = None
    version: str | None = None
    install: str | None = None
    git_commit: str | None = None
    protocol: int | None = None


@dataclass
class PairedRatio:
    """This run's paired steps over its partner's same steps; set only when both runs ended ok."""

    train_s: float
    step_median: float  # median of the per-step ratios
    steps: int  # steps paired


@dataclass
class CudaInfo:
    """What a CUDA run did to be fast, and its phases timed by CUDA events."""

    cudnn_benchmark: bool | None = None
    cuda_graph: bool = False
    graphed_shapes: list[list[int]] = field(default_factory=list)
    eager_steps: int | None = None
    event_s: dict[str, float] = field(default_factory=dict)


@dataclass
class EnergyInfo:
    """Joules per phase where the hardware tells (NVML, RAPL); otherwise ``source`` None and the reason."""

    source: str | None = None  # "nvml" or "rapl"
    reason: str | None = None  # why not measured
    scope: str | None = None  # what the counter covers
    phase_j: dict[str, float] | None = None
    run_j: float | None = None
    train_img_per_j: float | None = None
    mean_utilization_pct: dict[str, float] | None = None


@dataclass
class InstructionsInfo:
    """Instructions counted under valgrind (``run --measure instructions``): the same work counts the same.

    Counts compare only with counts of the same measurement (tool, valgrind version, architecture, steps):
    those are part of the run's workload, so ``compare`` pairs nothing else with them.
    """

    tool: str  # the valgrind tool that counted: "callgrind"
    valgrind: str | None  # its version, e.g. "3.19.0"
    mechanism: str  # how the counted regions were delimited
    arch: str  # the machine architecture: counts differ between instruction sets
    steps: int  # training steps counted, after as many uncounted ones
    train: int  # instructions of those steps together
    per_step: float  # train / steps: what the gate compares
    eval_images: int = 0  # test images evaluated in the counted evaluation pass
    eval: int | None = None  # instructions of that pass
    per_eval_image: float | None = None
    malloc: str = ""  # the glibc malloc settings the process ran with (counts depend on them)


@dataclass
class EvaluationResult:
    """One evaluation of the trained model (``run --evaluate NAME``), stored under its name in ``evaluations``.

    ``plugin`` and ``settings`` say what was measured (they are part of the workload); ``metrics`` are the
    few numbers report, compare, plot and publish show; ``tables`` are rows x columns of numbers; ``details``
    anything else the evaluation kept. An evaluation the run never reached has no metrics.
    """

    plugin: str
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    tables: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # its own phase, after the final evaluation: never inside train_s or eval_s


@dataclass
class RunRecord:
    run_id: str
    status: str  # see STATUSES
    recipe: str
    components: dict[str, ComponentRef]
    hyperparameters: dict[str, Any]
    seed: int
    device: str
    loader: str
    dataset: DatasetInfo | None
    metrics: Metrics
    timings: Timings
    throughput: Throughput
    environment: Environment
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    memory: Memory = field(default_factory=Memory)
    overrides: Overrides = field(default_factory=Overrides)
    error: str | None = None  # why a run was skipped, failed, diverged or was interrupted
    started_at: str = ""
    role: str = "candidate"  # or "reference": a run interleaved with --reference
    reference: ReferenceInfo | None = None
    timings_ratio: TimeRatios | None = None
    schema_version: int = SCHEMA_VERSION
    distributed: DistributedInfo | None = None
    suite_key: str | None = None  # which run of a suite this is (see execution/suite.py); lets a suite resume
    cpu: CpuInfo | None = None
    workload: WorkloadInfo | None = None
    partner: PartnerInfo | None = None
    paired_ratio: PairedRatio | None = None
    cuda_graph: bool = False  # the step's forward and backward replayed as CUDA graphs
    cuda: CudaInfo | None = None
    energy: EnergyInfo | None = None
    instructions: InstructionsInfo | None = None  # counted under valgrind instead of timed
    evaluations: dict[str, EvaluationResult] = field(default_factory=dict)  # by evaluation name, in run order

    @property
    def variant(self) -> Variant:
        return Variant(loader=self.loader, precision=self.precision, channels_last=self.channels_last,
                       compile=self.compile, cuda_graph=self.cuda_graph, deterministic=self.deterministic)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # schema_version first: the one key a reader must see before trusting the rest.
        return {"schema_version": data.pop("schema_version"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """A record of the current schema back from its JSON form (as a run in another process sent it)."""
        from .typed import build

        return build(cls, data)
