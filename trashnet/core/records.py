"""Typed result files: ``metrics.json``, ``selection.json`` and ``model_card.json`` as pydantic models.

Every stage writes its ``metrics.json`` through ``write_metrics`` (validated against ``Metrics``), and
``select``, ``artifact`` and the report read it through ``read_metrics``. The models type the keys the
readers use; stage-specific extras (a pruned model's per-layer sparsity, a quantized file's op census,
...) are kept as they are (``extra="allow"``) so nothing a producer records is lost. A wrong type in a
typed key is an error at write time, not a blank cell in the report.

Importing this module pulls in pydantic only (no NumPy, no TensorFlow): the reporter and ``predict``
can use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trashnet.core import fileio, settings


class _Record(BaseModel):
    """A result record: typed keys, extra keys kept, written back exactly as given."""

    model_config = ConfigDict(extra="allow")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


# --- metrics.json ---------------------------------------------------------------------------------

class ClassScores(_Record):
    precision: float
    recall: float
    f1: float
    support: int


class Headline(_Record):
    """Accuracy and macro-F1 on one split (fractions in [0, 1])."""

    n: int
    accuracy: float
    macro_f1: float


class TestMetrics(Headline):
    per_class: dict[str, ClassScores] = Field(default_factory=dict)
    confusion_matrix: list[list[int]] | None = None  # rows: true class, columns: predicted (classes order)
    confusion_matrix_normalized: list[list[float]] | None = None


class Size(_Record):
    file: str | None = None
    raw_bytes: int
    gzip_bytes: int


class Latency(_Record):
    """Wall time of one call, in milliseconds."""

    median: float
    p90: float | None = None
    mean: float | None = None
    runs: int | None = None


class Conversion(_Record):
    status: Literal["ok", "failed"]
    seconds: float | None = None
    error: str | None = None


class OOD(_Record):
    """Out-of-distribution evaluation (the ``evaluate`` command); absent = not run."""

    dataset: str
    n: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, Any] = Field(default_factory=dict)
    class_map: dict[str, Any] = Field(default_factory=dict)


class Metrics(_Record):
    """One variant's ``metrics.json`` (every stage; keys absent where they do not apply)."""

    variant: str
    stage: str
    arch: str | None = None
    source: str | None = None
    source_stage: str | None = None

    @field_validator("stage", "source_stage")
    @classmethod
    def _current_stage_name(cls, value: str | None) -> str | None:
        return settings.stage_name(value)  # results written before the stage rename say "baseline", ...
    selected_variant: str | None = None  # the final stage: the variant the rule chose
    precision: str | None = None
    format: Literal["keras", "tflite"] | None = None
    profile: str | None = None
    seed: int | None = None
    weights: str | None = None
    image_size: int | None = None  # the model's input side (image_size x input_scale of its config)
    input_scale: int | None = None  # set only when > 1: the model averages input_scale x input_scale blocks first
    classes: list[str] = Field(default_factory=list)
    test: TestMetrics | None = None
    validation: Headline | None = None
    ood: OOD | None = None
    params: int | None = None
    nonzero_params: int | None = None
    macs: int | None = None
    nonzero_macs: int | None = None
    size: Size | None = None
    sizes: dict[str, Size] | None = None  # pruned: keras, tflite, tflite_sparse, dense source files
    latency_ms: dict[str, Latency] = Field(default_factory=dict)
    train_time_s: float | None = None
    conversion: Conversion | None = None
    delta_accuracy_pp: float | None = None  # quantized: against the float Keras source
    dense_baseline: dict[str, Any] | None = None  # pruned: against the dense source
    sparsity: dict[str, Any] | None = None
    agreement: dict[str, float] | None = None
    op_census: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    notes: list[str] | None = None
    provenance: dict[str, Any] = Field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        """The resolved variant config recorded in the provenance (``{}`` when absent)."""
        return self.provenance.get("config") or {}

    @property
    def converted(self) -> bool:
        return self.conversion is None or self.conversion.status == "ok"

    def latency(self, keys: tuple[str, ...] = ()) -> tuple[str | None, float | None]:
        """The first of ``keys`` measured (else any measurement, by name): (key, median ms)."""
        for key in keys:
            if key in self.latency_ms:
                return key, self.latency_ms[key].median
        for key in sorted(self.latency_ms):
            return key, self.latency_ms[key].median
        return None, None


# --- selection.json -------------------------------------------------------------------------------

class ResultRow(_Record):
    """One result as the selection rule saw it (``select.read_results``)."""

    id: str
    stage: str
    dir: str | None = None

    _current_stage_name = field_validator("stage", "source_stage")(
        classmethod(lambda cls, value: settings.stage_name(value)))  # as in Metrics
    status: str | None = None  # ok, unreadable, conversion-failed, no-test, unfinished, other-profile
    error: str | None = None
    arch: str | None = None
    source: str | None = None
    source_stage: str | None = None
    precision: str | None = None
    format: str | None = None
    weights: str | None = None
    profile: str | None = None
    seed: int | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    test_n: int | None = None
    raw_bytes: int | None = None
    gzip_bytes: int | None = None
    latency_ms: float | None = None
    file: str | None = None
    run_manifest: bool | None = None
    candidate: bool | None = None
    eligible: bool | None = None
    excluded: str | None = None
    front_size: bool | None = None
    front_latency: bool | None = None


class Reference(_Record):
    id: str
    accuracy: float
    weights: str | None = None
    profile: str | None = None
    same_weights: bool
    same_profile: bool


class Fallback(_Record):
    reason: str
    candidates: str


class Fronts(_Record):
    size: list[str] = Field(default_factory=list)
    latency: list[str] = Field(default_factory=list)


class Selection(_Record):
    """``selection.json``: the rule, the candidates, the fronts and the choice (``select.choose``)."""

    rule: str
    config: dict[str, Any] = Field(default_factory=dict)
    family: str | None = None
    fallback: Fallback | None = None
    candidates: list[str]
    best_candidate_accuracy: float
    eligible: list[str]
    size_ties: list[str] = Field(default_factory=list)
    chosen: ResultRow
    reference: Reference | None = None
    accuracy_drop_pp: float | None = None
    meets_target: bool | None = None
    target: str | None = None
    pareto: Fronts = Field(default_factory=Fronts)
    results: list[ResultRow] = Field(default_factory=list)
    models_dir: str | None = None  # written by older runs only (an absolute path of the run machine)
    created: str | None = None


# --- preprocessing parity (benchmarks/bench_parity.py, trashnet.nets.consumers) --------------------------

class ConsumerParity(_Record):
    """One consumer's resize of whole photos against ``predict`` on one data set (fractions in [0, 1])."""

    consumer: str  # a name of trashnet.consumers.CONSUMERS
    n: int
    agreement: float  # same top-1 class as predict
    accuracy: float
    accuracy_delta_pp: float  # accuracy minus predict's, percentage points
    max_abs_prob_diff: float
    agreement_same_file: float | None = None  # input_scale > 1: same top-1 as predict feeding that file


class ParityRecord(_Record):
    """Every consumer on every data set, for one model file."""

    name: str
    model: str
    model_sha256: str
    image_size: int
    input_scale: int = 1  # >1: a simulated file of input_scale * image_size px that averages blocks first
    versions: dict[str, str] = Field(default_factory=dict)  # mediapipe, opencv
    datasets: dict[str, list[ConsumerParity]]
    # per data set: emulated_vs_mediapipe, mediapipe_decoder_vs_pillow (max prob diffs), mediapipe_file_agreement
    mediapipe_checks: dict[str, dict[str, float]] = Field(default_factory=dict)
    mediapipe_refused: dict[str, list[dict[str, str]]] = Field(default_factory=dict)  # files create_from_file refused


# --- model_card.json ------------------------------------------------------------------------------

class CardMetrics(_Record):
    test: dict[str, Any]
    verified_accuracy: float | None = None
    verified: bool


class CardSize(_Record):
    raw_bytes: int
    gzip_bytes: int
    chosen_file_raw_bytes: int | None = None
    chosen_file_gzip_bytes: int | None = None


class _Section(BaseModel):
    """A model-card section ``artifact`` writes: every key typed, no others."""

    model_config = ConfigDict(extra="forbid")


class SplitCount(_Section):
    images: int
    per_class: dict[str, int]


class DataSection(_Section):
    """Training and evaluation data: the prepared data set's counts per split, from its manifest."""

    dataset: str
    source: str
    license: str
    description: str
    split_method: str
    splits: dict[str, SplitCount]
    rejected_files: int
    manifest_sha256: str | None


class ClassWeakness(_Section):
    """One class's test scores and its commonest wrong answer (``most_confused_with``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    name: str = Field(alias="class")
    f1: float
    precision: float
    recall: float
    support: int
    most_confused_with: str | None = None
    confused_count: int | None = None


class OODSection(_Section):
    """The ``ood`` block of the chosen result's metrics.json, or ``measured: False``."""

    measured: bool
    dataset: str | None = None
    n: int | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    per_class: dict[str, Any] | None = None


class ModelCard(_Record):
    """``model_card.json`` of the final artifact (``artifact.model_card``). The model-card convention's
    sections (version to report_a_problem) are absent from cards written before they existed."""

    name: str
    variant: str
    model_file: str
    task: str | None = None
    architecture: str | None = None
    precision: str | None = None
    source: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    output: dict[str, Any] = Field(default_factory=dict)
    classes: list[str]
    metrics: CardMetrics
    size: CardSize
    latency_ms: dict[str, Any] = Field(default_factory=dict)
    weights_origin: str | None = None
    data_manifest_sha256: str | None = None
    verification_data_manifest_sha256: str | None = None
    profile: str | None = None
    seed: int | None = None
    trained: dict[str, Any] = Field(default_factory=dict)
    built: dict[str, Any] = Field(default_factory=dict)
    selection: dict[str, Any] = Field(default_factory=dict)
    embedded: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)
    version: str | None = None
    intended_use: list[str] | None = None
    out_of_scope_use: list[str] | None = None
    training_data: DataSection | None = None
    evaluation_data: str | None = None
    limitations: list[str] | None = None
    out_of_distribution: OODSection | None = None
    per_class_weaknesses: list[ClassWeakness] | None = None
    report_a_problem: str | None = None


# --- reading and writing ----------------------------------------------------------------------------

def _validated(model: type[_Record], value: Any) -> _Record:
    return value if isinstance(value, model) else model.model_validate(value)


def write_metrics(folder: str | os.PathLike, record: Metrics | dict[str, Any]) -> Path:
    """Validate and write ``<folder>/metrics.json``; a wrong type raises ``pydantic.ValidationError``."""
    return fileio.write_json(Path(folder) / settings.METRICS_FILE, _validated(Metrics, record).dump())


def write_selection(folder: str | os.PathLike, selection: Selection | dict[str, Any]) -> Path:
    return fileio.write_json(Path(folder) / settings.SELECTION_FILE, _validated(Selection, selection).dump())


def write_model_card(folder: str | os.PathLike, card: ModelCard | dict[str, Any]) -> Path:
    return fileio.write_json(Path(folder) / settings.MODEL_CARD_FILE, _validated(ModelCard, card).dump())


def read_metrics(folder: str | os.PathLike) -> Metrics:
    """``<folder>/metrics.json``; raises ``OSError`` / ``ValueError`` (incl. pydantic's) when unusable."""
    return Metrics.model_validate(fileio.read_json(Path(folder) / settings.METRICS_FILE))


def read_selection(folder: str | os.PathLike) -> Selection:
    return Selection.model_validate(fileio.read_json(Path(folder) / settings.SELECTION_FILE))


def read_model_card(folder: str | os.PathLike) -> ModelCard:
    return ModelCard.model_validate(fileio.read_json(Path(folder) / settings.MODEL_CARD_FILE))


def try_read(reader, folder: str | os.PathLike) -> tuple[Any, str | None]:
    """``(record, None)``, or ``(None, why)`` when the file is missing or does not match its model."""
    try:
        return reader(folder), None
    except FileNotFoundError as error:
        return None, f"missing: {Path(error.filename or folder).name}"
    except (OSError, ValueError) as error:  # pydantic.ValidationError is a ValueError
        return None, f"{type(error).__name__}: {str(error).splitlines()[0]}"


# --- what a stage read of its config (written by stages.invoke, read by the runner's cache) -------------

class ConfigReads(_Record):
    """The fields of a variant's config its stage read while it ran (dotted paths), and the sections it
    checked for presence (``prune.distill`` may be None): what the variant's cache key covers."""

    model_config = ConfigDict(extra="forbid")

    fields: list[str]
    sections: list[str] = Field(default_factory=list)


def write_config_reads(folder: str | os.PathLike, reads: ConfigReads) -> Path:
    return fileio.write_json(Path(folder) / settings.CONFIG_READS_FILE, reads.model_dump(mode="json"))


def read_config_reads(folder: str | os.PathLike) -> ConfigReads | None:
    """None when the folder has no readable record (a stage that has not run yet, results from before recording,
    or a damaged file, whose folder the manifest check then refuses anyway)."""
    path = Path(folder) / settings.CONFIG_READS_FILE
    try:
        return ConfigReads.model_validate(fileio.read_json(path))
    except (OSError, ValueError):
        return None
