"""The per-stage models of ``metrics.json`` (re-exported by ``trashnet.core.records``, which reads and
writes every result file): one model per stage, chosen by the record's ``stage`` (``parse_metrics``).

Importing this module pulls in pydantic only (no NumPy, no TensorFlow).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, field_validator

from trashnet.core import settings


class _Record(BaseModel):
    """A result record: typed keys, written back exactly as given (only the keys that were set)."""

    model_config = ConfigDict(extra="allow")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


# --- metrics.json ---------------------------------------------------------------------------------
# One model per stage, chosen by the record's ``stage`` (``parse_metrics``); every key typed, no others
# (``extra="forbid"``): a key a stage starts writing must be added here. Results written before the stage
# rename say "baseline", "pruned", "quantized": read as train, prune, quantize (``settings.LEGACY_STAGES``).

class _Block(_Record):
    """A block of ``metrics.json`` (or of the runner's files): every key typed, no others."""

    model_config = ConfigDict(extra="forbid")


class ClassScores(_Block):
    precision: float
    recall: float
    f1: float
    support: int


class Headline(_Block):
    """Accuracy and macro-F1 on one split (fractions in [0, 1])."""

    n: int
    accuracy: float
    macro_f1: float


class TestMetrics(Headline):
    per_class: dict[str, ClassScores] = Field(default_factory=dict)
    confusion_matrix: list[list[int]] | None = None  # rows: true class, columns: predicted (classes order)
    confusion_matrix_normalized: list[list[float]] | None = None


class Size(_Block):
    file: str | None = None
    raw_bytes: int
    gzip_bytes: int


class Latency(_Block):
    """Wall time of one call, in milliseconds."""

    median: float
    p90: float | None = None
    mean: float | None = None
    runs: int | None = None


class ActivationScale(_Block):
    """``tflite.smallest_activation_scale``: why a 16x8 file could not be prepared."""

    scale: float
    op: str
    node: int
    tensor: str


class Conversion(_Block):
    status: Literal["ok", "failed"]
    seconds: float | None = None
    error: str | None = None
    # converted, but LiteRT refused the file: the quantized output with the smallest scale (tflite.py)
    smallest_activation_scale: ActivationScale | None = None


class OOD(_Block):
    """Out-of-distribution evaluation (``evaluate.ood_block``); absent = not run."""

    dataset: str
    n: int
    accuracy: float
    macro_f1: float
    # Plain mappings, as the report reads them: per class {precision, recall, f1, n}; the confusion matrix
    # {rows: the classes the set has, columns: every model output, counts}.
    per_class: dict[str, dict[str, float | int]] = Field(default_factory=dict)
    confusion_matrix: dict[str, list[str] | list[list[int]]] | None = None
    class_map: dict[str, str | None] = Field(default_factory=dict)
    unreadable: int | None = None
    fit: str | None = None


class Evaluation(_Block):
    """How a TFLite file was evaluated on the test split."""

    engine: str
    split: str
    workers: int
    threads: int
    batch_size: int | None = None
    seconds: float


class TensorIO(_Block):
    input_dtype: str
    output_dtype: str
    input_quantization: list[float]


class SourceModel(_Block):
    """The Keras file a prune or quantize stage started from."""

    file: str
    sha256: str
    float_test: Headline | None = None  # quantize: the float source on the same test split


class ConvertedCopy(_Block):
    """prune: one of its TFLite files, scored on the test split against the pruned Keras model."""

    file: str
    test: Headline
    agreement: dict[str, float]
    op_census: dict[str, Any] | None = None


class _MetricsBase(_Block):
    """What every stage's ``metrics.json`` has (keys absent where they do not apply)."""

    variant: str
    stage: str
    arch: str | None = None
    source: str | None = None
    precision: str | None = None
    format: Literal["keras", "tflite"] | None = None
    profile: str | None = None
    seed: int | None = None
    weights: str | None = None
    image_size: int | None = None  # the model's input side (image_size x input_scale of its config)
    input_scale: int | None = None  # written only when > 1: the model averages input_scale x input_scale blocks first
    classes: list[str] = Field(default_factory=list)
    test: TestMetrics | None = None
    ood: OOD | None = None
    params: int | None = None
    nonzero_params: int | None = None
    macs: int | None = None
    nonzero_macs: int | None = None
    size: Size | None = None
    latency_ms: dict[str, Latency] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)  # provenance.collect

    @field_validator("stage", mode="before")
    @classmethod
    def _current_stage_name(cls, value: Any) -> Any:
        return settings.stage_name(value) if isinstance(value, str) else value

    @property
    def config(self) -> dict[str, Any]:
        """The resolved variant config recorded in the provenance (``{}`` when absent)."""
        return self.provenance.get("config") or {}

    @property
    def converted(self) -> bool:
        conversion = getattr(self, "conversion", None)
        return conversion is None or conversion.status == "ok"

    def latency(self, keys: tuple[str, ...] = ()) -> tuple[str | None, float | None]:
        """The first of ``keys`` measured (else any measurement, by name): (key, median ms)."""
        for key in keys:
            if key in self.latency_ms:
                return key, self.latency_ms[key].median
        for key in sorted(self.latency_ms):
            return key, self.latency_ms[key].median
        return None, None


class _Trained(_Block):
    """The Keras stages (train, prune): the validation split and the training run."""

    validation: Headline | None = None
    train_time_s: float | None = None
    training: dict[str, Any] | None = None  # phases, epochs, images per split, devices, ...


class _Pruned(_Block):
    agreement: dict[str, float] | None = None  # top1_agreement_pct, max_abs_prob_diff (scoring.agreement)
    source_model: SourceModel | None = None
    sparsity: dict[str, Any] | None = None  # sparsity.sparsity_report (+ schedule, m_by_n_*)
    tflite: ConvertedCopy | None = None
    tflite_sparse: ConvertedCopy | None = None
    sizes: dict[str, Size] | None = None  # keras, tflite, tflite_sparse, dense source files
    dense_baseline: dict[str, Any] | None = None  # prune._comparison: against the dense source
    notes: list[str] | None = None


class _Quantized(_Block):
    agreement: dict[str, float] | None = None
    source_model: SourceModel | None = None
    sparsity: dict[str, Any] | None = None  # a pruned source's summary: method, total, m_by_n_verified
    conversion: Conversion | None = None
    evaluation: Evaluation | None = None
    delta_accuracy_pp: float | None = None  # against the float Keras source
    op_census: dict[str, Any] | None = None  # litert.op_census
    io: TensorIO | None = None
    rewrite: dict[str, Any] | None = None  # int16x8 of a hard-swish model: the rebuilt graph and its check
    qat: dict[str, Any] | None = None  # quantization-aware training (qat.train)


class TrainMetrics(_MetricsBase, _Trained):
    stage: Literal["train"]


class PruneMetrics(_MetricsBase, _Trained, _Pruned):
    stage: Literal["prune"]


class QuantizeMetrics(_MetricsBase, _Quantized):
    stage: Literal["quantize"]


# --- preprocessing parity (trashnet.nets.parity: benchmarks/bench_parity.py, final) --------------------------

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
    unmeasured: dict[str, str] = Field(default_factory=dict)  # consumer -> why it has no row (no MediaPipe venv)


class FinalMetrics(_MetricsBase, _Trained, _Pruned, _Quantized):
    """The chosen variant's record (of any stage) as the final stage copies it, plus the choice."""

    stage: Literal["final"]
    selected_variant: str
    parity: ParityRecord | None = None  # the shipped file, every consumer on whole photos (absent before #26)


METRICS_MODELS: dict[str, type[_MetricsBase]] = {
    "train": TrainMetrics, "prune": PruneMetrics, "quantize": QuantizeMetrics, "final": FinalMetrics}

Metrics = TrainMetrics | PruneMetrics | QuantizeMetrics | FinalMetrics  # any stage's record


def _stage_tag(value: Any) -> str | None:
    stage = value.get("stage") if isinstance(value, dict) else getattr(value, "stage", None)
    return settings.stage_name(stage) if isinstance(stage, str) else None


_METRICS = TypeAdapter(Annotated[
    Annotated[TrainMetrics, Tag("train")] | Annotated[PruneMetrics, Tag("prune")]
    | Annotated[QuantizeMetrics, Tag("quantize")] | Annotated[FinalMetrics, Tag("final")],
    Discriminator(_stage_tag)])


def parse_metrics(value: Any) -> Metrics:
    """A ``metrics.json`` record as its stage's model; raises ``pydantic.ValidationError`` (a ``ValueError``)."""
    if isinstance(value, _MetricsBase):
        if type(value) is METRICS_MODELS.get(value.stage):
            return value
        value = value.dump()  # a record copied into another stage (final): checked as that stage's
    return _METRICS.validate_python(value)
