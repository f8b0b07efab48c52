"""What one task build is asked to do: budget, strategy or --auto, validation and head settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from builder.pipeline.budget import Budget
from builder.pipeline.candidates import DEFAULT_KEEP_FRACTIONS, DEFAULT_SETTINGS
from builder.pipeline.leakage import DEFAULT_THRESHOLD
from builder.pipeline.objective import FleetObjective
from builder.pipeline.select import ParamValue
from builder.pipeline.teacher import TeacherConfig
from plada.encoders import DEFAULT_DEVICE_ENCODER
from plada.head import HeadHyperParams


@dataclass(frozen=True)
class TaskConfig:
    budget: Budget
    strategy: str | None = None  # None: --auto
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    default_device: str = DEFAULT_DEVICE_ENCODER
    temperature: float = 1.0
    num_folds: int = 3
    repeats: int = 1
    # Steadier choice (builder.pipeline.validate): the best `finalists` candidates of the first
    # round are validated on `finalist_repeats` more k-fold splits before the choice.
    finalists: int = 4
    finalist_repeats: int = 2
    # What --auto maximises over the validated device classes (every simulated one)
    objective: FleetObjective = field(default_factory=FleetObjective)
    # --fleet-status: where the device classes came from and the fleet's devices per class (the
    # report shows them; the objective's weights were derived from them)
    fleet_source: str | None = None
    fleet_counts: Mapping[str, int] | None = None
    seed: int = 0
    leakage_threshold: float = DEFAULT_THRESHOLD
    keep_fractions: tuple[float, ...] = DEFAULT_KEEP_FRACTIONS
    settings: tuple[tuple[str, Mapping[str, ParamValue]], ...] = DEFAULT_SETTINGS
    hp: HeadHyperParams = field(default_factory=HeadHyperParams)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    version: int = 1
    task_name: str | None = None
    note: str = ""
    created_at: int | None = None
    # --auto only: propose views from the target's images (builder.pipeline.views) and choose
    # one (or none) with strategy and keep on the train folds
    views: bool = False
    # one proposal keeps a warm build within 1.5x of one without views (digits 8 KiB: 66 s vs
    # 43 s; two: 116 s, 97.7 % instead of 96.7 % of the oracle): README "Views"
    max_views: int = 1
    # issue 16 item 3: search teacher candidates (several encoders' features together, an MLP,
    # augmented train images) by k-fold on train; the winner is validated beside the plain
    # per-encoder teachers (builder.pipeline.teachers)
    teacher_search: bool = False  # off by default: costs 50-210 s warm, no device gain yet
    teacher_augment: bool = True
    # --fine-tune: the first teacher encoder fine-tuned on train joins the teachers (costly)
    fine_tune: bool = False

    @property
    def auto(self) -> bool:
        return self.strategy is None

    @property
    def max_bytes(self) -> int | None:
        """The byte cap of a byte budget, else None."""
        return int(self.budget.value) if self.budget.kind == "bytes" else None
