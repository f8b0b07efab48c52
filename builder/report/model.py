"""report.json's schema: the build report as a pydantic model, written from the pipeline's stage
records and checked again whenever a report is read back (`plada-build report`, the demo).

Only what `plada-build report`, the Markdown and the plots cannot do without is required (the
chosen candidate, its bytes and accuracies, every candidate's row); the rest is optional so older
or hand-made reports still load. Unknown keys are refused, so a typo or a stale writer is named.
Records read like the JSON they are: `report["teacher"]["encoder"]` works as well as
`report.teacher.encoder`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from builder.errors import BuilderError

ParamValue = str | int | float | bool
# What a build comes down to: the numbers the CLIs print (`--json`) and people compare.
KEY_NUMBERS = (
    "strategy",
    "params",
    "num_indices",
    "payload_bytes",
    "teacher_accuracy",
    "device_accuracy",
    "device_oracle_accuracy",
    "leakage_flags",
)


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)


class TargetInfo(Record):
    path: str
    train_images: int
    test_images: int
    train_per_class: list[int]
    test_per_class: list[int]


class CorpusInfo(Record):
    path: str | None = None
    fingerprint: str
    size: int


class TeacherInfo(Record):
    encoder: str
    kind: str | None = None
    l2: float | None = None
    accuracy: float | None = None
    balanced_accuracy: float | None = None
    accuracy_without_leaked: float | None = None  # None: every test image was flagged
    temperature: float | None = None


class DeviceResult(Record):
    encoder: str | None = None
    accuracy: float
    balanced_accuracy: float
    oracle_accuracy: float
    oracle_balanced_accuracy: float
    relative_to_oracle: float | None = None
    balanced_relative_to_oracle: float | None = None


class LeakageExample(Record):
    test_image: str
    reference_index: int
    cosine: float


class LeakageInfo(Record):
    threshold: float
    encoder: str | None = None
    flagged: int | None = None
    examples: list[LeakageExample] = []


class ValidationInfo(Record):
    metric: str
    num_folds: int
    repeats: int
    tie_tolerance: float
    split: str
    finalists: int | None = None  # candidates validated on more splits before the choice
    finalist_repeats: int | None = None  # their extra k-fold splits
    chosen_splits: int | None = None  # splits the chosen candidate was validated on
    chosen_std: float | None = None  # std over those splits of its (default device) score
    objective: str | None = None  # several device classes: what the choice maximised
    objective_mean: float | None = None  # the chosen candidate's, over its splits
    objective_std: float | None = None


class FleetClass(Record):
    """One device class as the fleet choice saw it (validated on train folds) and as the
    simulation measured it (test split)."""

    encoder: str | None = None
    weight: float | None = None  # weighted objective: the class's weight
    val_accuracy: float  # expected: validated balanced accuracy of the chosen candidate
    val_oracle: float  # the class's own oracle on the same folds
    val_ratio: float
    test_accuracy: float | None = None  # simulated on the test split
    test_oracle: float | None = None
    test_ratio: float | None = None


class FleetInfo(Record):
    """Builds validating several device classes: each class and the worst one."""

    objective: str  # worst | weighted
    description: str
    worst_class: str  # lowest validated ratio
    worst_val_ratio: float
    worst_test_class: str | None = None  # lowest simulated (test) ratio
    classes: dict[str, FleetClass]
    source: str | None = None  # --fleet-status: where the classes and counts came from
    fleet_counts: dict[str, int] | None = None  # fleet device class -> devices


class CandidateRow(Record):
    strategy: str
    params: dict[str, ParamValue]
    keep: int
    payload_bytes: int
    val_accuracy: float
    val_std: float | None = None
    test_accuracy: float
    test_balanced_accuracy: float | None = None
    classes_kept: int | None = None
    chosen: bool = False


class EnergyHistogram(Record):
    edges: list[float]
    all: list[float]
    kept: list[float]


class TeacherChoice(Record):
    encoder: str
    val_accuracy: float
    strategy: str
    chosen: bool
    val_score: float | None = None  # what the choice maximised (several classes: the objective)
    kind: str | None = None  # the teacher's kind (issue 16 item 3); absent: softmax regression


class TeacherCandidate(Record):
    """One teacher candidate of the k-fold teacher search (builder.pipeline.teachers.choose)."""

    name: str
    kind: str
    encoders: list[str]
    augment: str | None = None
    hyper: dict[str, float | int] = {}
    val_accuracy: float  # mean balanced accuracy on the held-out train folds
    val_std: float
    test_accuracy: float | None = None  # refitted on the whole train split; never used to choose
    chosen: bool = False  # chosen by the search (the build then validates it against the others)


class TeacherSearchInfo(Record):
    num_folds: int
    candidates: list[TeacherCandidate]
    ran: bool  # False: the choice was a plain one-encoder teacher the build runs anyway
    # its run's validated device score, and the margin it had to beat the plain teachers by
    device_val_accuracy: float | None = None
    device_tie_tolerance: float | None = None


class ViewReport(Record):
    """The payload's view (plada.views): what every device applies to the kept images."""

    ops: list[dict[str, int | str]]
    digest: str
    description: str


class ViewChoice(Record):
    """One candidate view (or none) as validated on the train folds, with its best teacher."""

    view: str  # "none" or the view's description
    digest: str | None = None
    val_accuracy: float
    val_std: float | None = None
    teacher: str
    strategy: str
    keep: int
    chosen: bool
    val_score: float | None = None  # what the choice maximised (several classes: the objective)


class BuildReport(Record):
    """Fields in the order report.json has always listed them."""

    task: str | None = None
    version: int | None = None
    class_names: list[str] = []
    target: TargetInfo | None = None
    corpus: CorpusInfo | None = None
    budget: str | None = None
    budget_kind: str | None = None
    mode: str | None = None
    seed: int | None = None
    teacher: TeacherInfo | None = None
    teacher_accuracy: float
    default_device: str | None = None
    device_accuracy: float
    device_balanced_accuracy: float | None = None
    device_oracle_accuracy: float
    device_oracle_balanced_accuracy: float | None = None
    devices: dict[str, DeviceResult] = {}
    strategy: str
    params: dict[str, ParamValue]
    keep: int | None = None
    num_indices: int
    payload_bytes: int
    accuracy_estimate: float | None = None
    leakage_flags: int
    leakage: LeakageInfo | None = None
    validation: ValidationInfo | None = None
    notes: list[str] = []
    candidates: list[CandidateRow]
    kept_per_class: list[int] = []
    reference_pseudo_label_counts: list[int] = []
    energy_histogram: EnergyHistogram | None = None
    head_hyperparams: dict[str, Any] = {}
    timings_s: dict[str, float] = {}
    total_s: float | None = None
    peak_rss_mb: float | None = None
    teacher_choice: list[TeacherChoice] | None = None  # builds with several teacher encoders
    fleet: FleetInfo | None = None  # builds validating several device classes
    teacher_search: TeacherSearchInfo | None = None  # builds with the teacher search
    view: ViewReport | None = None  # the payload's view; absent: none
    view_choice: list[ViewChoice] | None = None  # --auto with views: every candidate view
    looks: dict[str, dict[str, Any]] | None = None  # target and corpus as measured for views
    payload_file: str | None = None  # set by whoever writes the payload next to the report

    @property
    def chosen_candidate(self) -> CandidateRow | None:
        return next((c for c in self.candidates if c.chosen), None)

    def to_json(self) -> dict[str, Any]:
        """The JSON object report.json holds (keys that were never set are left out)."""
        data: dict[str, Any] = self.model_dump(mode="json", exclude_unset=True)
        return data

    @classmethod
    def parse(cls, data: Any, *, where: str = "report") -> BuildReport:
        """Validate a report (a JSON object); BuilderError names the first bad key."""
        if isinstance(data, BuildReport):
            return data
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise BuilderError(_first_problem(exc, where)) from exc


def _first_problem(exc: ValidationError, where: str) -> str:
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    if error["type"] == "missing":
        if len(loc) == 3 and loc[0] == "candidates":
            return f"{where} candidate {loc[1]} is missing key {loc[2]!r}"
        return f"{where} is missing key {'.'.join(loc)!r}"
    return f"{where} key {'.'.join(loc)!r}: {error['msg']} (got {error.get('input')!r})"
