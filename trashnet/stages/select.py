"""Choosing the final model from the result files, by a stated rule.

Reads every ``metrics.json`` under ``models/{train,prune,quantize}/``, draws the Pareto fronts
(test accuracy against gzipped size and against latency) over all of them, then applies the rule:

1. **Candidates** are the TFLite results of the research's *hybrid* family (``SelectConfig``): by default
   MobileNetV3-Large, quantized from the *pruned* model, in FP16 or INT16 (16x8). A result whose
   conversion failed, that has no test metrics or whose model file is missing is never a candidate.
   If no hybrid result exists, every usable TFLite result is a candidate instead, and ``fallback`` in
   ``selection.json`` says so and why.
2. Take the best test accuracy among the candidates; every candidate within ``accuracy_tolerance_pp``
   of it is **eligible**.
   An eligible candidate more than ``max_latency_ratio`` times slower than the fastest eligible one is
   dropped: size alone would otherwise pick a file that runs on slow reference kernels.
3. The final model is the eligible one with the **smallest gzipped file**; ties go to the lower
   latency (``latency_ms[SelectConfig.latency].median``), then to the variant id.

Nothing about the choice is fixed in code: change the results or the config and the choice follows.
The float baseline of the chosen architecture is recorded as the *reference*, with the accuracy drop and
whether it meets ``max_drop_pp``. Reads files only; imports neither TensorFlow nor any training module.
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trashnet.core import records, settings
from trashnet.core.records import ResultRow, Selection
from trashnet.core.pareto import pareto_front  # the one front, also drawn by trashnet.report.figures
from trashnet.core.config import SelectConfig, StatsConfig, split_seed_id

SELECTION_FILE = settings.SELECTION_FILE
RUN_MANIFEST = settings.RUN_MANIFEST_NAME
METRICS_FILE = settings.METRICS_FILE


class SelectionError(ValueError):
    """No result can be the final model; the message says what is missing."""


def rule_text(config: SelectConfig) -> str:
    """The rule in words, with this run's numbers, as written into ``selection.json``."""
    family = describe_family(config)
    limit = (f" and a {config.latency} median latency of at most {config.max_latency_ms:g} ms"
             if config.max_latency_ms is not None else "")
    ratio = (f" and whose {config.latency} median latency is at most {config.max_latency_ratio:g}x the fastest "
             "such candidate's" if config.max_latency_ratio is not None else "")
    basis = ("test accuracy (the mean over its seeds where a candidate ran with several)"
             if config.seed_accuracy == "mean" else "test accuracy (its first seed's)")
    eligible = (f"within {config.accuracy_tolerance_pp:g} pp of the best candidate's"
                if config.eligibility == "tolerance" else
                "not significantly worse than the best candidate's (exact McNemar, Holm over the candidates)")
    return (f"Candidates: the TFLite results of the hybrid family ({family}) whose conversion succeeded and "
            f"that have test metrics and a model file{limit}; if there are none, every such TFLite result "
            f"(recorded as a fallback); a variant's extra seeds count in its mean, never as candidates of their "
            f"own. Eligible: candidates whose {basis} is {eligible}{ratio}. Final: the eligible candidate with the "
            f"smallest gzipped file; ties broken by the lower {config.latency} median latency, then by id.")


def describe_family(config: SelectConfig) -> str:
    parts = [f"architecture {config.architecture}" if config.architecture else "any architecture",
             f"quantized from a {config.source_stage} model" if config.source_stage else "from any source",
             f"precision in {', '.join(config.precisions)}" if config.precisions else "any precision"]
    return "; ".join(parts)


# --- reading results ------------------------------------------------------------------------------

def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _row(stage: str, variant_dir: Path, models_dir: Path, latency_key: str) -> ResultRow:
    """One result file flattened to what selection and the tables need."""
    row = ResultRow(id=variant_dir.name, stage=stage, dir=str(variant_dir.relative_to(models_dir)))
    record, problem = records.try_read(records.read_metrics, variant_dir)
    if record is None:
        return row.set(status="unreadable", error=f"{METRICS_FILE}: {problem}")
    config = record.config
    test, size = record.test, record.size
    latency = record.latency_ms.get(latency_key)
    row.set(
        id=record.variant,
        arch=record.arch or config.get("arch"),
        source=record.source or config.get("source"),
        source_stage=settings.stage_name(config.get("source_stage")),  # else read_results looks it up
        precision=record.precision,
        format=record.format,
        weights=record.weights or record.provenance.get("weights"),
        profile=record.profile or record.provenance.get("profile"),
        seed=record.seed if record.seed is not None else record.provenance.get("seed"),
        accuracy=_number(test.accuracy) if test else None,
        macro_f1=_number(test.macro_f1) if test else None,
        test_n=test.n if test else None,
        raw_bytes=size.raw_bytes if size else None,
        gzip_bytes=size.gzip_bytes if size else None,
        latency_ms=_number(latency.median) if latency else None,
    )
    file_name = (size.file if size else None) or (f"{row.id}.tflite" if row.format == "tflite" else None)
    if file_name and (variant_dir / file_name).is_file():
        row.file = str((variant_dir / file_name).relative_to(models_dir))
    if not record.converted:
        row.set(status="conversion-failed", error=str(record.conversion.error or ""))
    elif row.accuracy is None:
        row.set(status="no-test", error="metrics.json has no test accuracy")
    else:
        row.status = "ok"
    return row


def read_results(models_dir: str | os.PathLike, *, latency_key: str = "tflite_threads1") -> list[ResultRow]:
    """Every ``models/<stage>/<id>/metrics.json`` of the result stages, in stage then id order."""
    models_dir = Path(models_dir)
    rows = []
    for stage, variant_dir in settings.result_folders(models_dir):
        if (variant_dir / METRICS_FILE).is_file():
            row = _row(stage, variant_dir, models_dir, latency_key)
            row.run_manifest = (variant_dir / RUN_MANIFEST).is_file()  # the runner's "done" marker
            rows.append(row)
    # A quantized result says its source's id; where it does not say the source's stage, look it up.
    stage_of = {row.id: row.stage for row in rows}
    for row in rows:
        if row.source and not row.source_stage:
            row.source_stage = stage_of.get(row.source)
    return rows


# --- Pareto fronts -------------------------------------------------------------------------------

def fronts(rows: list[ResultRow]) -> records.Fronts:
    usable = [r for r in rows if r.status == "ok"]
    return records.Fronts(
        size=pareto_front((r.id, r.accuracy, r.gzip_bytes) for r in usable if r.gzip_bytes is not None),
        latency=pareto_front((r.id, r.accuracy, r.latency_ms) for r in usable if r.latency_ms is not None))


# --- the rule ------------------------------------------------------------------------------------

def _unusable(row: ResultRow) -> str | None:
    """Why a result can never be the final model, or None."""
    if row.status != "ok":
        return f"{row.status}: {row.error or ''}".rstrip(": ")
    if row.format != "tflite":
        return f"not a TFLite result (format {row.format})"
    if not row.file:
        return "model file missing"
    if row.gzip_bytes is None:
        return "no gzipped size"
    return None


def _outside_family(row: ResultRow, config: SelectConfig) -> str | None:
    if config.architecture and row.arch != config.architecture:
        return f"architecture {row.arch} is not {config.architecture}"
    if config.source_stage and row.source_stage != config.source_stage:
        return f"source stage {row.source_stage} is not {config.source_stage}"
    if config.precisions and row.precision not in config.precisions:
        return f"precision {row.precision} is not one of {', '.join(config.precisions)}"
    return None


def _too_slow(row: ResultRow, config: SelectConfig) -> str | None:
    if config.max_latency_ms is None:
        return None
    if row.latency_ms is None:
        return f"no {config.latency} latency to compare with the {config.max_latency_ms:g} ms limit"
    if row.latency_ms > config.max_latency_ms:
        return f"latency {row.latency_ms:.2f} ms is over the {config.max_latency_ms:g} ms limit"
    return None


def _reference(rows: list[ResultRow], chosen: ResultRow) -> records.Reference | None:
    """The float baseline of the chosen architecture, preferring the same weights origin and profile."""
    baselines = [r for r in rows if r.stage == "train" and r.status == "ok" and r.arch == chosen.arch]
    if not baselines:
        return None
    baselines.sort(key=lambda r: (r.weights != chosen.weights, r.profile != chosen.profile, r.id))
    ref = baselines[0]
    return records.Reference(id=ref.id, accuracy=ref.accuracy, weights=ref.weights, profile=ref.profile,
                             same_weights=ref.weights == chosen.weights, same_profile=ref.profile == chosen.profile)


def _rule_accuracy(rows: list[ResultRow], candidates: list[ResultRow], config: SelectConfig) -> str:
    """Set each candidate's ``rule_accuracy`` (and ``seeds``); returns the basis, in words, for selection.json."""
    runs: dict[str, list[ResultRow]] = {}
    for row in rows:
        if row.status == "ok" and row.accuracy is not None:
            runs.setdefault(split_seed_id(row.id)[0], []).append(row)
    several = False
    for row in candidates:
        group = runs.get(row.id, [row]) if config.seed_accuracy == "mean" else [row]
        row.seeds = [r.seed for r in group]
        row.rule_accuracy = sum(r.accuracy for r in group) / len(group)
        several = several or len(group) > 1
    if config.seed_accuracy == "first":
        return "first seed: each candidate's own test accuracy (extra seeds are not used)"
    if several:
        return "mean over seeds: each candidate's mean test accuracy over its finished seeds (see seeds)"
    return "mean over seeds, here a single seed each: each candidate's own test accuracy"


def _not_significantly_worse(candidates: list[ResultRow], best: ResultRow, models_dir: str | os.PathLike | None,
                             stats_config: StatsConfig) -> list[ResultRow]:
    """Candidates the exact McNemar test (Holm over them) does not find less accurate than ``best``."""
    from trashnet.stages import stats

    if models_dir is None:
        raise SelectionError("the 'not-significantly-worse' eligibility needs the models folder (predictions)")
    predictions = {}
    for row in candidates:
        try:
            predictions[row.id] = stats.Predictions.read(row.id, Path(models_dir) / row.dir)
        except (stats.StatsError, OSError, ValueError) as error:
            row.set(p_holm_vs_best=None, untested=str(error))
    tested = []  # (row, images only it got right, images only the best got right)
    for row in candidates:
        if row is best or row.id not in predictions:
            continue
        if best.id not in predictions:
            row.set(p_holm_vs_best=None, untested=f"the best candidate {best.id} has no predictions")
            continue
        counts = stats.discordant(predictions[row.id], predictions[best.id])
        if isinstance(counts, str):
            row.set(p_holm_vs_best=None, untested=counts)
        else:
            tested.append((row, *counts))
    adjusted, _ = stats.holm([stats.mcnemar_exact(a, b) for _, a, b in tested], stats_config.alpha)
    keep = [best]
    for (row, only_row, only_best), p_holm in zip(tested, adjusted):
        row.p_holm_vs_best = p_holm
        if not (p_holm < stats_config.alpha and only_row < only_best):
            keep.append(row)
    return keep


def _candidates(rows: list[ResultRow], config: SelectConfig) -> tuple[list[ResultRow], records.Fallback | None]:
    """The hybrid family's usable results (each other row says why it is not one), or every usable result
    with the fallback that says so."""
    usable, hybrid = [], []
    for row in rows:
        row.unset("excluded")
        base, seed = split_seed_id(row.id)
        reason = _unusable(row) or _too_slow(row, config) or (
            None if seed is None else f"extra seed of {base}: counted in its mean, not a candidate by itself")
        if reason:
            row.excluded = reason
            continue
        usable.append(row)
        outside = _outside_family(row, config)
        if outside:
            row.excluded = f"outside the hybrid family: {outside}"
        else:
            hybrid.append(row)
    if hybrid:
        return hybrid, None
    if not usable:
        problems = "; ".join(f"{r.id}: {r.excluded}" for r in rows) or "no metrics.json found"
        raise SelectionError(f"no TFLite result can be the final model ({problems})")
    for row in usable:
        row.unset("excluded")
    return usable, records.Fallback(reason=f"no usable result of the hybrid family ({describe_family(config)})",
                                    candidates="every usable TFLite result")


def _excluded_candidate(row: ResultRow, best: ResultRow, config: SelectConfig, slow: dict[int, str]) -> str | None:
    """Why a candidate is not eligible (None: it is)."""
    if id(row) in slow:
        return slow[id(row)]
    if row.eligible:
        return None
    if config.eligibility == "tolerance":
        return (f"accuracy {100 * row.rule_accuracy:.2f} % is more than {config.accuracy_tolerance_pp:g} pp below "
                f"the best candidate ({100 * best.rule_accuracy:.2f} %)")
    if row.p_holm_vs_best is None:
        return f"could not be tested against the best candidate: {row.untested}"
    return (f"significantly less accurate than the best candidate {best.id} "
            f"(Holm-adjusted McNemar p = {row.p_holm_vs_best:.3g})")


CHOSEN_KEYS = ("id", "stage", "arch", "source", "source_stage", "precision", "file", "accuracy", "macro_f1", "test_n",
               "raw_bytes", "gzip_bytes", "latency_ms", "weights", "profile", "seed", "seeds", "rule_accuracy", "dir")


def choose(rows: list[ResultRow], config: SelectConfig, *, models_dir: str | os.PathLike | None = None,
           stats_config: StatsConfig | None = None) -> Selection:
    """Apply the rule to result rows (``read_results``); returns the selection record.

    ``models_dir`` and ``stats_config`` are needed only by the ``not-significantly-worse`` eligibility, which
    compares per-image predictions.
    """
    candidates, fallback = _candidates(rows, config)
    basis = _rule_accuracy(rows, candidates, config)
    best_row = max(candidates, key=lambda r: (r.rule_accuracy, -r.gzip_bytes))
    best = best_row.rule_accuracy
    if config.eligibility == "tolerance":
        floor = best - config.accuracy_tolerance_pp / 100.0
        accurate = [r for r in candidates if r.rule_accuracy >= floor - 1e-12]
    else:
        accurate = _not_significantly_worse(candidates, best_row, models_dir, stats_config or StatsConfig())
    slow: dict[int, str] = {}
    timed = [r.latency_ms for r in accurate if r.latency_ms is not None]
    if config.max_latency_ratio is not None and timed:
        limit = config.max_latency_ratio * min(timed)
        for row in accurate:
            if row.latency_ms is not None and row.latency_ms > limit + 1e-12:
                slow[id(row)] = (f"latency {row.latency_ms:.2f} ms is more than {config.max_latency_ratio:g}x "
                                 f"the fastest eligible candidate's ({min(timed):.2f} ms)")
    eligible = [r for r in accurate if id(r) not in slow]
    eligible_ids = {id(r) for r in eligible}
    for row in candidates:
        row.set(candidate=True, eligible=id(row) in eligible_ids)
        reason = _excluded_candidate(row, best_row, config, slow)
        if reason:
            row.excluded = reason
    ranked = sorted(eligible, key=lambda r: (r.gzip_bytes, r.latency_ms if r.latency_ms is not None else math.inf,
                                             r.id))
    chosen = ranked[0]
    ties = [r.id for r in ranked if r.gzip_bytes == chosen.gzip_bytes]
    reference = _reference(rows, chosen)
    drop = None if reference is None else 100.0 * (reference.accuracy - chosen.accuracy)
    front = fronts(rows)
    for row in rows:
        row.set(front_size=row.id in front.size, front_latency=row.id in front.latency)
    return Selection(
        rule=rule_text(config), config=config.model_dump(mode="json"), family=describe_family(config),
        fallback=fallback, candidates=[r.id for r in candidates], best_candidate_accuracy=best,
        accuracy_basis=basis, eligible=[r.id for r in ranked], size_ties=ties if len(ties) > 1 else [],
        chosen=ResultRow(**{key: getattr(chosen, key) for key in CHOSEN_KEYS}), reference=reference,
        accuracy_drop_pp=drop, meets_target=None if drop is None else bool(drop <= config.max_drop_pp + 1e-9),
        target=f"accuracy >= float {chosen.arch} accuracy - {config.max_drop_pp:g} pp", pareto=front, results=rows)


def finished_results(models_dir: str | os.PathLike, config: SelectConfig, *,
                     profile: str | None = None) -> list[ResultRow]:
    """``read_results``, with unfinished variants and other profiles' results marked as such.

    Only finished variants count (the runner's ``manifest.json`` is there: a variant that crashed after
    writing ``metrics.json`` does not). With ``profile``, results of another profile left in ``models/``
    by an earlier run are set aside too.
    """
    rows = read_results(models_dir, latency_key=config.latency)
    for row in rows:
        if row.status != "ok":
            continue
        if not row.run_manifest:
            row.set(status="unfinished", error="no manifest.json: the runner did not finish this variant")
        elif profile is not None and row.profile != profile:
            row.set(status="other-profile", error=f"from profile {row.profile!r}, not {profile!r}")
    return rows


def select(models_dir: str | os.PathLike, config: SelectConfig, *, profile: str | None = None,
           rows: list[ResultRow] | None = None, statistics=None,
           stats_config: StatsConfig | None = None) -> Selection:
    """Read the result files under ``models_dir`` (or take ``finished_results`` rows) and apply the rule.

    ``statistics`` (a ``stats.StatsFile`` of the same rows) adds what the tolerance means against its
    intervals; ``stats_config`` sets the test of the ``not-significantly-worse`` eligibility.
    """
    rows = finished_results(models_dir, config, profile=profile) if rows is None else rows
    selection = choose(rows, config, models_dir=models_dir, stats_config=stats_config)
    if statistics is not None:
        from trashnet.stages import stats

        selection.statistics = records.SelectionStatistics(file=stats.STATS_FILE, tolerance=statistics.tolerance)
    selection.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return selection


def write_selection(selection: Selection, output_dir: str | os.PathLike) -> Path:
    return records.write_selection(output_dir, selection)


def chosen_path(selection: Selection, models_dir: str | os.PathLike) -> Path:
    """The chosen model file on disk (selection.json records paths relative to ``models_dir`` only, so a
    published result names no folder of the machine that ran it)."""
    return Path(models_dir) / selection.chosen.file


# --- displays (notebook, report) -------------------------------------------------------------------

def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.2f}"
    if kind == "mb":
        return f"{value / 1e6:,.2f}"
    if kind == "ms":
        return f"{value:.2f}"
    return str(value)


def table_markdown(selection: Selection) -> str:
    """Every result as a Markdown table: accuracy, sizes (MB = 10^6 bytes), latency, fronts, and why it was (not)
    chosen."""
    chosen = selection.chosen.id
    lines = ["| variant | stage | precision | test acc. % | gzip MB | raw MB | latency ms | front (size/latency) "
             "| selection |", "|---|---|---|---:|---:|---:|---:|:---:|---|"]
    for row in selection.results:
        front = ("S" if row.front_size else "-") + "/" + ("L" if row.front_latency else "-")
        verdict = "**chosen**" if row.id == chosen else "eligible" if row.eligible else row.excluded or ""
        lines.append(f"| {row.id} | {row.stage} | {row.precision or '-'} | {_fmt(row.accuracy, 'pct')} | "
                     f"{_fmt(row.gzip_bytes, 'mb')} | {_fmt(row.raw_bytes, 'mb')} | {_fmt(row.latency_ms, 'ms')} | "
                     f"{front} | {verdict.replace('|', '/')} |")
    return "\n".join(lines)


def summary_markdown(selection: Selection) -> str:
    chosen, ref = selection.chosen, selection.reference
    lines = [f"**Rule.** {selection.rule}", ""]
    if selection.fallback:
        lines += [f"**Fallback used:** {selection.fallback.reason}; candidates = {selection.fallback.candidates}.", ""]
    lines.append(f"**Chosen:** `{chosen.id}`: test accuracy {100 * chosen.accuracy:.2f} %, "
                 f"{chosen.gzip_bytes / 1e6:.2f} MB gzipped, latency {_fmt(chosen.latency_ms, 'ms')} ms "
                 f"({len(selection.candidates)} candidates, {len(selection.eligible)} eligible).")
    if ref:
        lines.append(f"Reference float `{ref.id}`: {100 * ref.accuracy:.2f} %; drop "
                     f"{selection.accuracy_drop_pp:+.2f} pp; target ({selection.target}) "
                     f"{'met' if selection.meets_target else 'NOT met'}"
                     + ("" if ref.same_weights and ref.same_profile else
                        " (the reference differs in weights origin or profile)") + ".")
    else:
        lines.append("No float baseline of the chosen architecture was found: no reference accuracy.")
    return "\n".join(lines)
