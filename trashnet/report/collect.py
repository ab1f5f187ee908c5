"""Collect: every result file the report shows, read once into one typed ``ReportData``.

Reads only files (``logs/run.json``, each variant's ``metrics.json`` / ``manifest.json`` / ``failed.json`` /
``history.csv`` / ``predictions.csv``, the final folder's ``selection.json`` / ``model_card.json`` /
``stats.json`` / ``SHA256SUMS``, ``dataset/manifest.csv``) through ``trashnet.core.records``. It never imports a
training, pruning or quantization module. A file that is missing or does not parse is recorded as such,
never guessed at.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from trashnet.core import fileio, provenance, records, settings
from trashnet.nets import parity as consumer_parity
from trashnet.report import figures
from trashnet.report.i18n import N_

GROUPS = ("baseline", "pruned", "quantized", "hybrid")  # model families, as the thesis names them
# Single-image latency, in order of preference, for the format a row's size is of (one thread first:
# comparable across machines).
LATENCY_KEYS = {"keras": ("keras_batch1",), "tflite": ("tflite_threads1", "tflite_threads2", "tflite")}
# Words shown from the result files (a variant's status, a checksum's check): translated in the report.
SHOWN_WORDS = (N_("done"), N_("cached"), N_("failed"), N_("skipped"), N_("missing"), N_("ok"), N_("mismatch"))
GALLERY_LIMIT = 24  # misclassified thumbnails shown (the rest are counted)
EXAMPLES_PER_CLASS = 4


class Variant(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: str
    stage: str
    folder: Path
    status: str  # done, cached, failed, skipped, missing
    reason: str = ""
    metrics: records.Metrics | None = None
    problem: str | None = None  # why metrics.json could not be read
    failure: dict[str, Any] = Field(default_factory=dict)
    seconds: float | None = None
    history: list[dict[str, str]] = Field(default_factory=list)
    notebook: Path | None = None  # the executed notebook (HTML) in the run folder

    @property
    def group(self) -> str:
        """The model family the report groups by: baseline (train stage), pruned, quantized (from a baseline),
        hybrid (quantized from a pruned model) or final."""
        if self.stage == "quantize" and self.metrics is not None:
            source_stage = settings.stage_name(self.metrics.config.get("source_stage"))
            if source_stage == "prune" or (not source_stage and ".prune" in (self.metrics.source or "")):
                return "hybrid"
        return figures.STAGE_GROUPS.get(self.stage, self.stage)

    @property
    def scored(self) -> bool:
        return self.metrics is not None and self.metrics.test is not None

    def value(self, name: str) -> float | None:
        """One number of this variant, in base units (fraction, bytes, ms, count, s)."""
        m = self.metrics
        if m is None:
            return None
        values = {
            "accuracy": m.test.accuracy if m.test else None,
            "macro_f1": m.test.macro_f1 if m.test else None,
            "raw_bytes": m.size.raw_bytes if m.size else None,
            "gzip_bytes": m.size.gzip_bytes if m.size else None,
            "latency_ms": self.latency()[1],
            "latency_keras_ms": m.latency(("keras_batch1",))[1] if "keras_batch1" in m.latency_ms else None,
            "latency_litert_ms": m.latency(("tflite_threads1",))[1] if "tflite_threads1" in m.latency_ms else None,
            "params": m.params,
            "nonzero_params": m.nonzero_params if m.nonzero_params is not None else m.params,
            "macs": m.macs,
            "nonzero_macs": m.nonzero_macs if m.nonzero_macs is not None else m.macs,
            "train_time_s": getattr(m, "train_time_s", None),  # the Keras stages only
            "ood_accuracy": m.ood.accuracy if m.ood else None,
            "ood_macro_f1": m.ood.macro_f1 if m.ood else None,
        }
        value = values.get(name)
        return float(value) if value is not None else None

    def latency(self) -> tuple[str | None, float | None]:
        m = self.metrics
        if m is None:
            return None, None
        fmt = m.format or ("tflite" if self.stage in ("quantize", "final") else "keras")
        return m.latency(LATENCY_KEYS.get(fmt, ()))


class DataSummary(BaseModel):
    present: bool = False
    classes: list[str] = Field(default_factory=list)
    splits: list[str] = Field(default_factory=list)
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)  # class -> split -> accepted images
    rejected_by_class: dict[str, int] = Field(default_factory=dict)
    rejected: list[dict[str, str]] = Field(default_factory=list)  # path, class, reason
    near_groups: int = 0
    near_images: int = 0
    near_across_splits: int = 0
    total_files: int = 0
    examples: dict[str, list[Path]] = Field(default_factory=dict)


class Misclassified(BaseModel):
    path: Path
    name: str
    true: str
    predicted: str
    confidence: float


class SeedsDropped(BaseModel):
    """A ``--seeds-from`` entry left out of the report: the seeds run made the variant, or a model it was made
    from (along ``source``), with another setting than this run (``compare.recipe_difference``)."""

    variant: str  # the entry of the seeds run's stats.json "seeds"
    model: str  # that variant or the ancestor whose recorded config differs
    setting: str  # the first differing setting, dotted ("prune.epochs"); "variant" when one run lacks the model
    theirs: str  # its value in the seeds run
    mine: str  # its value in this run

    @property
    def own(self) -> bool:
        """The variant's own settings differ (not only those of a model it was made from)."""
        return self.model == self.variant


class ReportData(BaseModel):
    """Everything the report shows; the renderer formats it and adds nothing."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    root: Path
    report_dir: Path
    profile: str
    sample: bool = False
    data_source: str | None = None
    run: dict[str, Any] = Field(default_factory=dict)
    variants: list[Variant]
    final: Variant | None = None
    selection: records.Selection | None = None
    selection_problem: str | None = None
    card: records.ModelCard | None = None
    stats: dict[str, Any] | None = None  # trashnet/stages/stats.py's stats.json (agreed shape); None = not run
    seed_stats: list[dict[str, Any]] = Field(default_factory=list)  # stats.json "seeds" of a multi-seed run
    seeds_source: str | None = None  # that run's profile (``--seeds-from``)
    seeds_dropped: list[SeedsDropped] = Field(default_factory=list)  # its entries of another recipe, not shown
    comparison: Any = None  # trashnet.report.compare.Comparison with another run (``--compare-with``)
    probe: Any = None  # trashnet.report.probe.Probe: the baselines beside their linear probe (``--probe-from``)
    data: DataSummary
    misclassified: list[Misclassified] = Field(default_factory=list)
    misclassified_total: int = 0
    provenance: dict[str, Any] = Field(default_factory=dict)
    checksums: list[dict[str, Any]] = Field(default_factory=list)

    def group(self, name: str) -> list[Variant]:
        return [v for v in self.variants if v.group == name]

    def by_id(self, variant_id: str | None) -> Variant | None:
        return next((v for v in self.variants if v.id == variant_id), None)

    @property
    def chosen(self) -> Variant | None:
        return self.by_id(self.selection.chosen.id) if self.selection else None

    @property
    def has_ood(self) -> bool:
        return any(v.metrics is not None and v.metrics.ood is not None for v in self.variants)

    @property
    def parity(self) -> records.ParityRecord | None:
        """The shipped file's preprocessing parity: final's ``metrics.json``, else its card; None before #26."""
        found = getattr(self.final.metrics, "parity", None) if self.final is not None else None
        return found if found is not None or self.card is None else self.card.parity

    @property
    def parity_sets(self) -> list[dict[str, Any]]:
        """Per data set of ``parity``: whether every measured consumer meets the targets, and the one that
        agrees least with ``predict`` (the report's sentence on the 97 % target)."""
        record = self.parity
        if record is None:
            return []
        found = []
        for dataset, rows in record.datasets.items():
            lowest = min(rows, key=lambda row: row.agreement)
            found.append({"dataset": dataset, "label": PARITY_SETS.get(dataset, dataset), "n": rows[0].n,
                          "met": consumer_parity.meets_targets(rows), "lowest": lowest.agreement,
                          "consumer": lowest.consumer, "target": consumer_parity.AGREEMENT_TARGET,
                          "target_pp": consumer_parity.ACCURACY_TARGET_PP})
        return found


PARITY_SETS = {consumer_parity.FINAL_TEST: N_("test split"),
               consumer_parity.FINAL_OOD: N_("out-of-distribution photos")}


# --- reading ------------------------------------------------------------------------------------------

def _record(reader, folder: Path) -> dict[str, Any]:
    """A runner file (``records.read_manifest``, ``read_failed``, ``read_run_record``) as a dict; ``{}`` when
    it is missing or does not match its model."""
    record = records.read_or_none(reader, folder)
    return {} if record is None else record.dump()


def _csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _entries(layout: settings.Layout, run: dict[str, Any]) -> list[tuple[str, str, Path, dict[str, Any]]]:
    """(id, stage, folder, run entry) of the last run (``logs/run.json``), else of every variant folder."""
    if run.get("variant"):
        order = [v for v in run.get("selected") or [] if v in run["variant"]]
        order += sorted(set(run["variant"]) - set(order))
        # The folder from the layout, not the record: a published results/<profile>/ has no profile level.
        folders = {folder.name: folder for _, folder in settings.result_folders(layout.models)}
        stages = {vid: settings.stage_name(run["variant"][vid].get("stage", "")) for vid in order}
        return [(vid, stages[vid], folders.get(vid) or layout.variant_dir(stages[vid], vid), run["variant"][vid])
                for vid in order]
    entries = [(folder.name, stage, folder, {}) for stage, folder in settings.result_folders(layout.models)]
    if layout.stage_dir("final").is_dir():
        entries.append(("final", "final", layout.variant_dir("final", "final"), {}))
    return entries


def read_variant(variant_id: str, stage: str, folder: Path, entry: dict[str, Any]) -> Variant:
    manifest = _record(records.read_manifest, folder)
    failure = _record(records.read_failed, folder)
    if manifest.get("status") == "done" or (manifest and not failure and not entry):
        status = entry.get("status") if entry.get("status") in ("done", "cached") else "done"
    elif failure:
        status = "failed"
    elif entry.get("status") in ("done", "cached") and (folder / settings.METRICS_FILE).is_file():
        status = entry["status"]  # a published results folder keeps metrics.json, not the run manifest
    else:
        status = entry.get("status") or "missing"
        if status in ("done", "cached"):
            status = "missing"  # the run said done, but the folder has since lost its manifest
    variant = Variant(id=variant_id, stage=stage, folder=folder, status=status, reason=entry.get("reason") or "",
                      failure=failure, seconds=manifest.get("seconds") or failure.get("seconds"))
    if status in ("done", "cached"):
        variant.metrics, variant.problem = records.try_read(records.read_metrics, folder)
        variant.history = _csv(folder / settings.HISTORY_FILE)
    notebook = folder / f"{variant_id}.html"
    variant.notebook = notebook if notebook.is_file() else None
    return variant


def data_summary(dataset: Path) -> DataSummary:
    rows = _csv(dataset / settings.MANIFEST_NAME)
    if not rows:
        return DataSummary()
    accepted = [r for r in rows if r.get("status") == "accepted"]
    rejected = [r for r in rows if r.get("status") != "accepted"]
    classes = sorted({r.get("class", "") for r in rows})
    splits = [s for s in settings.SPLITS if any(r.get("split") == s for r in accepted)]
    counts = {c: {s: sum(1 for r in accepted if r.get("class") == c and r.get("split") == s) for s in splits}
              for c in classes}
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in accepted:
        if row.get("near_duplicate_group"):
            groups[row["near_duplicate_group"]].append(row)
    examples: dict[str, list[Path]] = {}
    for name in classes:  # the first few training images of each class, in manifest order
        mine = [r for r in accepted if r.get("class") == name and r.get("output")]
        mine.sort(key=lambda r: (r.get("split") != "train", r["output"]))
        examples[name] = [dataset / r["output"] for r in mine[:EXAMPLES_PER_CLASS]]
    return DataSummary(
        present=True, classes=classes, splits=splits, counts=counts,
        rejected_by_class=dict(Counter(r.get("class", "") for r in rejected)),
        rejected=[{"path": r.get("path", ""), "class": r.get("class", ""), "reason": r.get("reason", "")}
                  for r in rejected],
        near_groups=len(groups), near_images=sum(len(g) for g in groups.values()),
        near_across_splits=sum(1 for g in groups.values() if len({m.get("split") for m in g}) > 1),
        total_files=len(rows), examples=examples)


def misclassified(variant: Variant | None, dataset: Path) -> tuple[list[Misclassified], int]:
    """The variant's wrong test predictions (``predictions.csv``), most confident first."""
    if variant is None:
        return [], 0
    wrong = [r for r in _csv(variant.folder / settings.PREDICTIONS_FILE) if r.get("label") != r.get("predicted")]
    wrong.sort(key=lambda r: (-float(r.get("confidence") or 0), r.get("path", "")))
    shown = [Misclassified(path=dataset / r["path"], name=r["path"], true=r["label"], predicted=r["predicted"],
                           confidence=float(r.get("confidence") or 0)) for r in wrong[:GALLERY_LIMIT]]
    return shown, len(wrong)


def provenance_summary(variants: list[Variant], layout: settings.Layout) -> dict[str, Any]:
    records = [v.metrics.provenance for v in variants if v.metrics is not None]

    def distinct(name: str) -> list[str]:
        return sorted({str(r[name]) for r in records if r.get(name) is not None})

    libraries: dict[str, set[str]] = defaultdict(set)
    hardware: set[str] = set()
    machines: set[tuple[str, str, str]] = set()  # (cpu, cores, gpus): worded by the report in its language
    for record in records:
        for name, version in (record.get("libraries") or {}).items():
            libraries[name].add(str(version))
        if record.get("hardware"):
            hw = record["hardware"]
            gpus = ", ".join(hw.get("gpus") or [])
            hardware.add(f"{hw.get('cpu', '?')} ({hw.get('cpu_count', '?')} cores), GPU: {gpus or '-'}")
            machines.add((str(hw.get("cpu", "?")), str(hw.get("cpu_count", "?")), gpus))
    weights: dict[str, list[str]] = defaultdict(list)
    for variant in variants:
        if variant.metrics is not None and variant.metrics.weights:
            weights[variant.metrics.weights].append(variant.id)
    data_sha = distinct("data_manifest_sha256")
    if not data_sha and layout.data_manifest.exists():
        data_sha = [fileio.sha256_file(layout.data_manifest)]
    return {"git_commit": distinct("git_commit"), "lockfile_sha256": distinct("lockfile_sha256"),
            "data_manifest_sha256": data_sha,
            "seeds": sorted({str(v.metrics.seed) for v in variants if v.metrics and v.metrics.seed is not None}),
            "libraries": {name: sorted(values) for name, values in sorted(libraries.items())},
            "hardware": sorted(hardware),
            "machines": [{"cpu": c, "cores": n, "gpus": g} for c, n, g in sorted(machines)], "weights": dict(sorted(weights.items())),
            "report_git_commit": provenance.git_commit()}


def checksums(final_dir: Path) -> list[dict[str, Any]]:
    """``SHA256SUMS`` of the final folder, each line checked against its file."""
    sums = final_dir / settings.SUMS_FILE
    entries = []
    if sums.is_file():
        for line in sums.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            digest, _, name = line.partition("  ")
            name = name.strip().lstrip("*")
            path = final_dir / name
            actual = fileio.sha256_file(path) if path.is_file() else None
            entries.append({"name": name, "sha256": digest.strip(), "bytes": path.stat().st_size if actual else None,
                            "check": "ok" if actual == digest.strip() else "missing" if actual is None
                            else "mismatch"})
    return entries


def read_stats(final_dir: Path) -> dict[str, Any] | None:
    """``stats.json`` through ``trashnet.stages.stats``' model (None when absent: the report says "not run")."""
    from trashnet.stages import stats

    path = final_dir / settings.STATS_FILE
    if not path.is_file():
        return None
    return stats.load_stats(path).model_dump(mode="json")  # a malformed file is an error, not "not run"


def seed_runs(layout: settings.Layout | None) -> tuple[list[dict[str, Any]], str | None]:
    """The multi-seed summaries (more than one seed) of another run's ``stats.json`` and that run's profile."""
    if layout is None:
        return [], None
    stats = read_stats(layout.variant_dir("final", "final"))
    if stats is None:
        from trashnet.core.errors import UsageError

        raise UsageError(f"{layout.models} has no final/{settings.STATS_FILE}",
                         "pass --seeds-from the results folder of a finished multi-seed run")
    return [s for s in stats.get("seeds") or [] if len(s.get("seeds") or []) > 1], layout.profile


def collect(where: str | Path | settings.Layout, profile: str | None = None, *,
            seeds_from: settings.Layout | None = None) -> ReportData:
    """Everything the report shows of one profile: from ``settings.Layout`` or an output root and a profile;
    ``seeds_from`` another run (the same recipe, several seeds) whose mean and SD replace single-seed values
    (``trashnet.report.compare.report_data`` checks that recipe and adds another run's baselines)."""
    if isinstance(where, settings.Layout):
        layout = where
    else:
        if profile is None:
            raise ValueError("collect needs the profile of the output root's results")
        layout = settings.Layout(Path(where).resolve(), profile)
    run = _record(records.read_run_record, layout.logs)
    variants = [read_variant(*entry) for entry in _entries(layout, run)]
    final = next((v for v in variants if v.stage == "final"), None)
    final_dir = layout.variant_dir("final", "final")
    selection = card = stats = None
    selection_problem = None
    if final is not None and final.status in ("done", "cached"):
        selection, selection_problem = records.try_read(records.read_selection, final_dir)
        card, _ = records.try_read(records.read_model_card, final_dir)
        stats = read_stats(final_dir)
    seed_stats, seeds_source = seed_runs(seeds_from)
    if not seeds_from and stats:  # this run's own repeated seeds, where it has any
        seed_stats = [s for s in stats.get("seeds") or [] if len(s.get("seeds") or []) > 1]
        seeds_source = layout.profile if seed_stats else None
    report_variants = [v for v in variants if v.stage != "final"]
    chosen = next((v for v in report_variants if selection and v.id == selection.chosen.id), None)
    shown, total = misclassified(chosen, layout.dataset)
    profiles = sorted({v.metrics.profile for v in report_variants if v.metrics and v.metrics.profile})
    return ReportData(
        root=layout.root, report_dir=layout.report,
        profile=run.get("profile") or layout.profile or ", ".join(profiles) or "unknown",
        sample=bool(run.get("sample")), data_source=run.get("data_source"), run=run,
        variants=report_variants, final=final, selection=selection, selection_problem=selection_problem,
        card=card, stats=stats, data=data_summary(layout.dataset), misclassified=shown,
        misclassified_total=total, provenance=provenance_summary(report_variants, layout),
        checksums=checksums(final_dir), seed_stats=seed_stats, seeds_source=seeds_source)
