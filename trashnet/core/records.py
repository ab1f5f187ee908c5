"""Typed result files and their one reader and writer each: ``metrics.json`` (one model per stage, in
``trashnet.core.metrics_records``), ``selection.json``, ``model_card.json``, and the runner's
``manifest.json``, ``failed.json`` and ``logs/<profile>/run.json``.

Every stage writes its ``metrics.json`` through ``write_metrics`` (validated against its stage's model,
``parse_metrics``), and ``select``, ``final``, ``stats``, ``verify`` and the report read it through
``read_metrics``. The metrics and runner models forbid unknown keys: a key a producer starts writing is
added to its model, and a wrong type is an error at write time, not a blank cell in the report.
``tests/test_results.py`` fails when code reads or writes one of these files around this module.

Importing this module pulls in pydantic only (no NumPy, no TensorFlow): the reporter and ``predict``
can use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trashnet.core import fileio, settings
from trashnet.core.metrics_records import (  # noqa: F401 - records is where every result model is imported from
    METRICS_MODELS, OOD, ClassScores, ConsumerParity, Conversion, ConvertedCopy, Evaluation, FinalMetrics, Headline,
    Latency, Metrics, ParityRecord, PruneMetrics, QuantizeMetrics, Size, SourceModel, TensorIO,
    TestMetrics, TrainMetrics, _Block, _Record, parse_metrics)


# --- selection.json -------------------------------------------------------------------------------

class ResultRow(_Block):
    """One result as the selection rule saw it: ``select.read_results`` fills it from a ``metrics.json``,
    ``select.choose`` adds the verdict. Only the keys set are written (``dump``)."""

    id: str
    stage: str
    dir: str | None = None
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
    seeds: list[int | None] | None = None  # the candidate's runs the rule's accuracy is over
    rule_accuracy: float | None = None  # the accuracy the rule judged it by (its seeds' mean, or its own)
    p_holm_vs_best: float | None = None  # not-significantly-worse eligibility: against the best candidate
    untested: str | None = None  # ... or why it could not be tested

    @field_validator("stage", "source_stage", mode="before")
    @classmethod
    def _current_stage_name(cls, value: Any) -> Any:
        return settings.stage_name(value) if isinstance(value, str) else value

    def set(self, **values: Any) -> "ResultRow":
        """Set keys (each one then written, also when None); returns the row."""
        for name, value in values.items():
            setattr(self, name, value)
        return self

    def unset(self, name: str) -> None:
        """Back to its default and no longer written (as if never set)."""
        setattr(self, name, type(self).model_fields[name].default)
        self.__pydantic_fields_set__.discard(name)


class Reference(_Block):
    id: str
    accuracy: float
    weights: str | None = None
    profile: str | None = None
    same_weights: bool
    same_profile: bool


class Fallback(_Block):
    reason: str
    candidates: str


class Fronts(_Block):
    size: list[str] = Field(default_factory=list)
    latency: list[str] = Field(default_factory=list)


class SelectionStatistics(_Block):
    file: str  # stats.json, beside selection.json
    tolerance: str | None = None  # what the rule's tolerance means against the intervals (None: not asked)


class Selection(_Block):
    """``selection.json``: the rule, the candidates, the fronts and the choice (``select.choose``)."""

    rule: str
    config: dict[str, Any] = Field(default_factory=dict)
    family: str | None = None
    fallback: Fallback | None = None
    candidates: list[str]
    best_candidate_accuracy: float
    accuracy_basis: str | None = None
    eligible: list[str]
    size_ties: list[str] = Field(default_factory=list)
    chosen: ResultRow
    reference: Reference | None = None
    accuracy_drop_pp: float | None = None
    meets_target: bool | None = None
    target: str | None = None
    pareto: Fronts = Field(default_factory=Fronts)
    results: list[ResultRow] = Field(default_factory=list)
    statistics: SelectionStatistics | None = None
    models_dir: str | None = None  # written by older runs only (an absolute path of the run machine)
    created: str | None = None


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
    parity: ParityRecord | None = None  # every consumer's resize of whole photos against predict (cards since #26)


# --- the runner's files: manifest.json, failed.json (a variant folder), run.json (logs/<profile>/) ----

class _RunnerRecord(_Block):
    @field_validator("stage", mode="before", check_fields=False)
    @classmethod
    def _current_stage_name(cls, value: Any) -> Any:
        return settings.stage_name(value) if isinstance(value, str) else value


class ManifestInputs(_Block):
    """What the variant's cache key was made of (``cache.cache_key``)."""

    code_sha256: str | None = None
    code_modules: list[str] | dict[str, Any] | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    lockfile_sha256: str | None = None
    data_manifest_sha256: str | None = None
    upstream: dict[str, str | None] = Field(default_factory=dict)  # dependency -> its key (or its status)


class RunManifest(_RunnerRecord):
    """``manifest.json``: written last into a finished variant folder, its "done" marker (``scheduler.finish``)."""

    variant: str
    stage: str
    status: Literal["done"]
    key: str
    finished: str
    seconds: float
    notebook: str | None = None
    log: str | None = None
    files: dict[str, str]  # relative path -> sha256, every file but this one
    inputs: ManifestInputs = Field(default_factory=ManifestInputs)


class FailedRecord(_RunnerRecord):
    """``failed.json``: in place of ``manifest.json`` when the notebook raised (``scheduler.finish``)."""

    variant: str
    stage: str
    status: Literal["failed"]
    key: str | None = None
    finished: str | None = None
    seconds: float | None = None
    error: str
    error_type: str | None = None
    cell: int | None = None
    traceback: list[str] = Field(default_factory=list)
    log: str | None = None
    notebook: str | None = None


class RunVariant(_RunnerRecord):
    """One variant of ``run.json`` (``Runner.record``)."""

    stage: str
    arch: str | None = None
    status: str  # pending, done, cached, failed, skipped, ...
    reason: str | None = None
    units: float | None = None
    estimate_s: float | None = None
    estimate_from: str | None = None
    key: str | None = None
    seconds: float | None = None
    folder: str | None = None
    log: str | None = None
    error: str | None = None


class RunRecord(_Block):
    """``logs/<profile>/run.json``: what the last run did (``pipeline.run``), for the report and the ETA."""

    started: str
    finished: str
    seconds: float
    profile: str
    machine: dict[str, Any] | None = None
    data_source: str | None = None
    sample: bool | None = None
    data_manifest_sha256: str | None = None
    jobs: int | None = None
    force: bool | None = None
    selected: list[str] = Field(default_factory=list)
    variant: dict[str, RunVariant] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)


# --- reading and writing ----------------------------------------------------------------------------

def _validated(model: type[_Record], value: Any) -> _Record:
    return value if isinstance(value, model) else model.model_validate(value)


def write_metrics(folder: str | os.PathLike, record: Metrics | dict[str, Any]) -> Path:
    """Validate (as its stage's model) and write ``<folder>/metrics.json``; a wrong type or an unknown key
    raises ``pydantic.ValidationError``."""
    return fileio.write_json(Path(folder) / settings.METRICS_FILE, parse_metrics(record).dump())


def write_selection(folder: str | os.PathLike, selection: Selection | dict[str, Any]) -> Path:
    return fileio.write_json(Path(folder) / settings.SELECTION_FILE, _validated(Selection, selection).dump())


def write_model_card(folder: str | os.PathLike, card: ModelCard | dict[str, Any]) -> Path:
    return fileio.write_json(Path(folder) / settings.MODEL_CARD_FILE, _validated(ModelCard, card).dump())


def write_manifest(folder: str | os.PathLike, manifest: RunManifest | dict[str, Any]) -> Path:
    return fileio.write_json(Path(folder) / settings.RUN_MANIFEST_NAME, _validated(RunManifest, manifest).dump())


def write_failed(folder: str | os.PathLike, record: FailedRecord | dict[str, Any]) -> Path:
    return fileio.write_json(Path(folder) / settings.FAILED_FILE, _validated(FailedRecord, record).dump())


def write_run_record(logs_dir: str | os.PathLike, record: RunRecord | dict[str, Any]) -> Path:
    return fileio.write_json(Path(logs_dir) / settings.RUN_RECORD, _validated(RunRecord, record).dump())


def read_metrics(folder: str | os.PathLike) -> Metrics:
    """``<folder>/metrics.json``; raises ``OSError`` / ``ValueError`` (incl. pydantic's) when unusable."""
    return parse_metrics(fileio.read_json(Path(folder) / settings.METRICS_FILE))


def read_selection(folder: str | os.PathLike) -> Selection:
    return Selection.model_validate(fileio.read_json(Path(folder) / settings.SELECTION_FILE))


def read_model_card(folder: str | os.PathLike) -> ModelCard:
    return ModelCard.model_validate(fileio.read_json(Path(folder) / settings.MODEL_CARD_FILE))


def read_manifest(folder: str | os.PathLike) -> RunManifest:
    return RunManifest.model_validate(fileio.read_json(Path(folder) / settings.RUN_MANIFEST_NAME))


def read_failed(folder: str | os.PathLike) -> FailedRecord:
    return FailedRecord.model_validate(fileio.read_json(Path(folder) / settings.FAILED_FILE))


def read_run_record(logs_dir: str | os.PathLike) -> RunRecord:
    return RunRecord.model_validate(fileio.read_json(Path(logs_dir) / settings.RUN_RECORD))


def try_read(reader, folder: str | os.PathLike) -> tuple[Any, str | None]:
    """``(record, None)``, or ``(None, why)`` when the file is missing or does not match its model."""
    try:
        return reader(folder), None
    except FileNotFoundError as error:
        return None, f"missing: {Path(error.filename or folder).name}"
    except (OSError, ValueError) as error:  # pydantic.ValidationError is a ValueError
        return None, f"{type(error).__name__}: {str(error).splitlines()[0]}"


def read_or_none(reader, folder: str | os.PathLike) -> Any:
    """The record, or None when the file is missing, unreadable or does not match its model."""
    return try_read(reader, folder)[0]


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
