"""Are the differences real? Intervals, paired tests and seed spread behind every comparison: ``stats.json``.

The test split has a few hundred images, so one accuracy figure carries an interval of several pp; the
compression effects the thesis reports are often smaller. From the result files alone (each variant's
``metrics.json`` and ``predictions.csv``) this module computes:

- **Intervals**: for every finished variant, a seeded bootstrap interval (``scipy.stats.bootstrap``, BCa by
  default) of its test accuracy and macro-F1. Macro-F1 is computed for all resamples at once from confusion
  counts (``macro_f1``, checked against scikit-learn in the tests): scikit-learn's ``f1_score`` takes ~1 ms a
  call, i.e. ~10 s per variant at 9,999 resamples, ~20 s with BCa's jackknife.
- **Paired comparisons** on the same test images (matched by path): the difference in pp with a paired
  bootstrap interval, the exact McNemar test on the discordant images (``statsmodels``) and a Holm correction
  within each *family*. Families come from the source links of the variant graph (``config.load_variants``
  records each variant's ``source`` in its result): ``pruned_vs_dense`` (each pruned variant against its
  source), ``quantized_vs_float`` (each quantized file against the Keras model it was converted from),
  ``baselines`` (the first-seed baselines pairwise) and ``final_vs_reference`` (the chosen file against the
  float baseline the selection names as its reference).
- **Seeds**: per variant, the accuracy and macro-F1 of every seed (``<id>``, ``<id>@seed<N>``), with mean
  and SD (sample SD, n-1; none for a single seed).

Every interval and test records its method; every result that could not be used is listed under
``skipped`` with the reason. Reads files only; imports neither TensorFlow nor any training module.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import statistics
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from trashnet.core import fileio, records, settings
from trashnet.core.records import ResultRow, Selection
from trashnet.core.config import StatsConfig, split_seed_id

STATS_FILE = settings.STATS_FILE
PREDICTIONS_FILE = settings.PREDICTIONS_FILE
METRICS_FILE = settings.METRICS_FILE
FAMILIES = ("pruned_vs_dense", "quantized_vs_float", "baselines", "final_vs_reference")
TEST = "exact McNemar test (two-sided binomial test on the discordant images, statsmodels mcnemar(exact=True))"


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(Record):
    variant: str
    metric: Literal["accuracy", "macro_f1"]
    estimate: float
    low: float
    high: float
    confidence: float
    method: str  # "BCa" or "percentile" (and why, where BCa was asked for but is undefined)
    resamples: int
    seed: int
    n: int


class Comparison(Record):
    family: Literal["pruned_vs_dense", "quantized_vs_float", "baselines", "final_vs_reference"]
    a: str  # diff = a - b: the compressed (or first-named) model minus its reference
    b: str
    diff_pp: float
    low_pp: float
    high_pp: float
    n: int  # test images both were evaluated on
    a_only_correct: int
    b_only_correct: int
    p_value: float
    p_holm: float  # Holm-adjusted within the family
    significant: bool  # p_holm < alpha
    method: str  # of the interval
    test: str = TEST


class SeedSummary(Record):
    variant: str  # the plain id; the seeds' runs are <variant>@seed<N> after the first
    seeds: list[int | None]  # None: the result does not say its seed
    accuracy: list[float]
    macro_f1: list[float | None]
    mean_accuracy: float
    sd_accuracy: float | None  # None with one seed
    mean_macro_f1: float | None
    sd_macro_f1: float | None


class Skipped(Record):
    variant: str
    reason: str


class StatsFile(Record):
    method: dict[str, Any]
    intervals: list[Interval] = []
    comparisons: list[Comparison] = []
    seeds: list[SeedSummary] = []
    skipped: list[Skipped] = []
    tolerance: str | None = None  # what the selection rule's accuracy tolerance means against the intervals


class StatsError(ValueError):
    """A result file cannot be used for statistics; the message says which and why."""


# --- the statistics ------------------------------------------------------------------------------

def macro_f1(labels: np.ndarray, predicted: np.ndarray, n_classes: int, axis: int = -1) -> np.ndarray:
    """Macro-F1 over ``n_classes`` along ``axis``, for any number of resamples at once.

    Same definition as ``sklearn.metrics.f1_score(average="macro", labels=range(n_classes),
    zero_division=0)``: a class with no true and no predicted image scores 0.
    """
    labels = np.moveaxis(np.asarray(labels), axis, -1).astype(np.intp)
    predicted = np.moveaxis(np.asarray(predicted), axis, -1).astype(np.intp)
    shape, size = labels.shape[:-1], labels.shape[-1]
    rows = int(np.prod(shape, dtype=np.intp))
    cell = (np.arange(rows)[:, None] * n_classes + labels.reshape(rows, size)) * n_classes \
        + predicted.reshape(rows, size)
    counts = np.bincount(cell.ravel(), minlength=rows * n_classes * n_classes).reshape(rows, n_classes, n_classes)
    true_pos = np.diagonal(counts, axis1=1, axis2=2)
    denominator = counts.sum(axis=1) + counts.sum(axis=2)  # 2 tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denominator > 0, 2 * true_pos / denominator, 0.0)
    return f1.mean(axis=-1).reshape(shape)


def _bootstrap(data: tuple[np.ndarray, ...], statistic, cfg: StatsConfig, *, paired: bool) -> tuple[float, float, str]:
    """``scipy.stats.bootstrap`` with the configured method; percentile where BCa is undefined."""
    from scipy import stats

    attempts = [cfg.method] if cfg.method == "percentile" else [cfg.method, "percentile"]
    for attempt in attempts:
        with warnings.catch_warnings():
            # A degenerate bootstrap distribution (e.g. no discordant image) makes BCa undefined (nan).
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.bootstrap(data, statistic, paired=paired, vectorized=True, axis=-1,
                                     confidence_level=cfg.confidence, n_resamples=cfg.resamples,
                                     method=attempt, rng=np.random.default_rng(cfg.seed), batch=2000)
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return low, high, (attempt if attempt == cfg.method
                               else f"percentile ({cfg.method} undefined: degenerate resamples)")
    # Every resample gave the same value: the interval is that value.
    value = float(statistic(*data, axis=-1))
    return value, value, "percentile (every resample equal)"


def accuracy_interval(correct: Sequence[bool], cfg: StatsConfig, *, variant: str = "") -> Interval:
    correct = np.asarray(correct, dtype=np.float64)
    if len(correct) < 2:
        raise StatsError(f"{variant}: {len(correct)} test image(s): too few for an interval")
    low, high, method = _bootstrap((correct,), lambda x, axis: x.mean(axis=axis), cfg, paired=False)
    return Interval(variant=variant, metric="accuracy", estimate=float(correct.mean()), low=low, high=high,
                    confidence=cfg.confidence, method=method, resamples=cfg.resamples, seed=cfg.seed,
                    n=len(correct))


def macro_f1_interval(labels: Sequence[int], predicted: Sequence[int], n_classes: int, cfg: StatsConfig, *,
                      variant: str = "") -> Interval:
    labels, predicted = np.asarray(labels, dtype=np.intp), np.asarray(predicted, dtype=np.intp)
    if len(labels) < 2:
        raise StatsError(f"{variant}: {len(labels)} test image(s): too few for an interval")
    low, high, method = _bootstrap((labels, predicted), lambda y, p, axis: macro_f1(y, p, n_classes, axis),
                                   cfg, paired=True)
    return Interval(variant=variant, metric="macro_f1", estimate=float(macro_f1(labels, predicted, n_classes)),
                    low=low, high=high, confidence=cfg.confidence, method=method, resamples=cfg.resamples,
                    seed=cfg.seed, n=len(labels))


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the two discordant counts."""
    from statsmodels.stats.contingency_tables import mcnemar

    return float(mcnemar([[0, a_only], [b_only, 0]], exact=True).pvalue)


def holm(p_values: Sequence[float], alpha: float) -> tuple[list[float], list[bool]]:
    """Holm-adjusted p-values and which reject at ``alpha`` (statsmodels ``multipletests``)."""
    from statsmodels.stats.multitest import multipletests

    if not p_values:
        return [], []
    reject, adjusted, _, _ = multipletests(list(p_values), alpha=alpha, method="holm")
    return [float(p) for p in adjusted], [bool(r) for r in reject]


def paired_comparison(family: str, a: str, b: str, correct_a: Sequence[bool], correct_b: Sequence[bool],
                      cfg: StatsConfig) -> Comparison:
    """Difference a - b in pp on the same images, its paired bootstrap interval and the exact McNemar p.

    ``p_holm`` and ``significant`` are filled in per family by ``adjust``.
    """
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape or len(correct_a) < 2:
        raise StatsError(f"{a} vs {b}: need two equally long per-image vectors of at least 2 images")
    a_only, b_only = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
    low, high, method = _bootstrap((correct_a.astype(np.float64), correct_b.astype(np.float64)),
                                   lambda x, y, axis: 100.0 * (x.mean(axis=axis) - y.mean(axis=axis)),
                                   cfg, paired=True)
    p_value = mcnemar_exact(a_only, b_only)
    return Comparison(family=family, a=a, b=b, diff_pp=100.0 * (correct_a.mean() - correct_b.mean()),
                      low_pp=low, high_pp=high, n=len(correct_a), a_only_correct=a_only, b_only_correct=b_only,
                      p_value=p_value, p_holm=p_value, significant=p_value < cfg.alpha, method=method)


def adjust(comparisons: list[Comparison], alpha: float) -> list[Comparison]:
    """Holm within each family, in place of the raw p-values."""
    out = list(comparisons)
    for family in FAMILIES:
        members = [i for i, c in enumerate(out) if c.family == family]
        adjusted, reject = holm([out[i].p_value for i in members], alpha)
        for i, p_holm, significant in zip(members, adjusted, reject):
            out[i] = out[i].model_copy(update={"p_holm": p_holm, "significant": significant})
    return out


# --- reading result files --------------------------------------------------------------------------

class Predictions:
    """One variant's test predictions: image path -> (true class index, predicted class index)."""

    def __init__(self, variant: str, classes: list[str], rows: dict[str, tuple[int, int]]):
        self.variant, self.classes, self.rows = variant, classes, rows

    @classmethod
    def read(cls, variant: str, variant_dir: Path) -> "Predictions":
        classes = list(records.read_metrics(variant_dir).classes)
        path = variant_dir / PREDICTIONS_FILE
        if not classes:
            raise StatsError(f"{variant_dir / METRICS_FILE} lists no classes")
        if not path.is_file():
            raise StatsError(f"no {PREDICTIONS_FILE}: its stage wrote no per-image predictions")
        index = {name: i for i, name in enumerate(classes)}
        rows: dict[str, tuple[int, int]] = {}
        with open(path, newline="", encoding="utf-8") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    rows[row["path"]] = (index[row["label"]], index[row["predicted"]])
                except KeyError as error:
                    raise StatsError(f"{path}, line {line}: unknown class or missing column {error}") from None
        if not rows:
            raise StatsError(f"{path} has no rows")
        return cls(variant, classes, rows)

    def arrays(self, paths: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        paths = sorted(self.rows) if paths is None else paths
        pairs = np.array([self.rows[p] for p in paths], dtype=np.intp)
        return pairs[:, 0], pairs[:, 1]

    def correct(self, paths: Sequence[str]) -> np.ndarray:
        labels, predicted = self.arrays(paths)
        return labels == predicted


def _paired(a: Predictions, b: Predictions) -> tuple[list[str] | None, str]:
    if a.classes != b.classes:
        return None, f"{a.variant} and {b.variant} have different classes"
    if set(a.rows) != set(b.rows):
        shared = len(set(a.rows) & set(b.rows))
        return None, (f"{a.variant} and {b.variant} were tested on different images ({len(a.rows)} and "
                      f"{len(b.rows)}, {shared} shared): no paired comparison")
    return sorted(a.rows), ""


def family_pairs(rows: list[ResultRow]) -> list[tuple[str, str, str]]:
    """(family, a, b) for every comparison the source links define, in result order."""
    pairs = [("pruned_vs_dense", row.id, row.source) for row in rows if row.stage == "prune" and row.source]
    pairs += [("quantized_vs_float", row.id, row.source) for row in rows if row.stage == "quantize" and row.source]
    baselines = [row.id for row in rows if row.stage == "train" and split_seed_id(row.id)[1] is None]
    pairs += [("baselines", a, b) for a, b in itertools.combinations(baselines, 2)]
    return pairs


# --- the whole file -----------------------------------------------------------------------------------

def _sd(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def seed_summaries(rows: list[ResultRow]) -> list[SeedSummary]:
    """Per plain variant id: every seed's accuracy and macro-F1, mean and SD."""
    groups: dict[str, list[ResultRow]] = {}
    for row in rows:
        groups.setdefault(split_seed_id(row.id)[0], []).append(row)
    summaries = []
    for variant, members in groups.items():
        # The plain id holds the first seed; the others follow in the order of their seeds.
        members.sort(key=lambda r: (split_seed_id(r.id)[1] is not None, r.seed or 0))
        accuracy = [float(r.accuracy) for r in members]
        f1 = [None if r.macro_f1 is None else float(r.macro_f1) for r in members]
        known_f1 = [v for v in f1 if v is not None]
        summaries.append(SeedSummary(
            variant=variant, seeds=[r.seed if isinstance(r.seed, int) else split_seed_id(r.id)[1] for r in members],
            accuracy=accuracy, macro_f1=f1, mean_accuracy=statistics.fmean(accuracy), sd_accuracy=_sd(accuracy),
            mean_macro_f1=statistics.fmean(known_f1) if len(known_f1) == len(f1) else None,
            sd_macro_f1=_sd(known_f1) if len(known_f1) == len(f1) else None))
    return summaries


def method_record(cfg: StatsConfig) -> dict[str, Any]:
    return {
        "interval": f"{cfg.method} bootstrap (scipy.stats.bootstrap), {cfg.resamples} resamples, seed {cfg.seed}, "
                    f"{100 * cfg.confidence:g} % confidence; percentile where {cfg.method} is undefined (recorded)",
        "macro_f1": "macro-F1 over every class (a class never true nor predicted scores 0), per resample",
        "paired_interval": "paired bootstrap of the accuracy difference a - b in pp over the same test images",
        "test": TEST,
        "correction": "Holm within each family (statsmodels multipletests(method='holm'))",
        "alpha": cfg.alpha, "confidence": cfg.confidence, "resamples": cfg.resamples, "seed": cfg.seed,
        "families": {
            "pruned_vs_dense": "each pruned variant against its dense source",
            "quantized_vs_float": "each quantized file against the Keras model it was converted from",
            "baselines": "the first-seed baselines, pairwise",
            "final_vs_reference": "the final model against its float reference (the selection's reference)",
        },
        "seeds": "per variant, every seed's result; mean and sample SD (n-1), no SD for one seed",
    }


def tolerance_text(intervals: list[Interval], tolerance_pp: float, confidence: float) -> str | None:
    """The selection rule's tolerance in words, against this run's accuracy intervals."""
    accuracy = [i for i in intervals if i.metric == "accuracy"]
    if not accuracy:
        return None
    half = statistics.median(100 * (i.high - i.low) / 2 for i in accuracy)
    n = int(statistics.median(i.n for i in accuracy))
    text = (f"The selection rule's accuracy tolerance of {tolerance_pp:g} pp is {tolerance_pp * n / 100:.1f} of "
            f"{n} test images. A single variant's {100 * confidence:g} % interval here is about +/-{half:.1f} pp "
            f"(median half-width), ")
    if half > tolerance_pp:
        text += ("so candidates within the tolerance cannot be told apart from the best by their intervals: the "
                 "tolerance is a stated trade-off of accuracy for size, not a finding that the eligible files are "
                 "equally accurate.")
    else:
        text += "narrower than the tolerance: a difference of that size may well be real."
    return text + " The paired comparisons in stats.json say which differences are significant."


def analyse(rows: list[ResultRow], models_dir: str | os.PathLike, cfg: StatsConfig, *,
            tolerance_pp: float | None = None) -> StatsFile:
    """Intervals, stage-family comparisons and seed summaries for result rows (``select.finished_results``).

    With ``tolerance_pp`` (the selection rule's), ``tolerance`` says what it means against the intervals.
    """
    models_dir = Path(models_dir)
    skipped: list[Skipped] = []
    usable = []
    for row in rows:
        if row.status != "ok":
            skipped.append(Skipped(variant=row.id, reason=f"{row.status}: {row.error or ''}"))
        else:
            usable.append(row)
    predictions: dict[str, Predictions] = {}
    intervals: list[Interval] = []
    for row in usable:
        try:
            found = Predictions.read(row.id, models_dir / row.dir)
            labels, predicted = found.arrays()
            intervals.append(accuracy_interval(labels == predicted, cfg, variant=row.id))
            intervals.append(macro_f1_interval(labels, predicted, len(found.classes), cfg, variant=row.id))
        except (StatsError, OSError, ValueError) as error:
            skipped.append(Skipped(variant=row.id, reason=str(error)))
            continue
        predictions[row.id] = found
    comparisons = []
    for family, a, b in family_pairs(usable):
        comparison = compare(family, a, b, predictions, cfg)
        if isinstance(comparison, str):
            skipped.append(Skipped(variant=a, reason=comparison))
        else:
            comparisons.append(comparison)
    return StatsFile(method=method_record(cfg), intervals=intervals, comparisons=adjust(comparisons, cfg.alpha),
                     seeds=seed_summaries(usable), skipped=skipped,
                     tolerance=None if tolerance_pp is None else tolerance_text(intervals, tolerance_pp,
                                                                                  cfg.confidence))


def compare(family: str, a: str, b: str, predictions: dict[str, Predictions], cfg: StatsConfig) -> Comparison | str:
    """The comparison, or why it cannot be made."""
    for name in (a, b):
        if name not in predictions:
            return f"{family}: {a} vs {b}: {name} has no usable predictions"
    paths, reason = _paired(predictions[a], predictions[b])
    if paths is None:
        return f"{family}: {reason}"
    return paired_comparison(family, a, b, predictions[a].correct(paths), predictions[b].correct(paths), cfg)


def discordant(a: Predictions, b: Predictions) -> tuple[int, int] | str:
    """Images only ``a`` / only ``b`` classified correctly, or why they cannot be paired."""
    paths, reason = _paired(a, b)
    if paths is None:
        return reason
    correct_a, correct_b = a.correct(paths), b.correct(paths)
    return int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())


def add_final(result: StatsFile, selection: Selection, models_dir: str | os.PathLike, cfg: StatsConfig) -> StatsFile:
    """The final model against its float reference (one family of one test), once selection has chosen."""
    chosen, reference = selection.chosen, selection.reference
    comparisons = [c for c in result.comparisons if c.family != "final_vs_reference"]
    skipped = list(result.skipped)
    if not reference:
        skipped.append(Skipped(variant=chosen.id, reason="final_vs_reference: no float reference"))
    else:
        rows = {row.id: row for row in selection.results}
        predictions = {}
        for name in (chosen.id, reference.id):
            try:
                predictions[name] = Predictions.read(name, Path(models_dir) / rows[name].dir)
            except (StatsError, OSError, ValueError, KeyError) as error:
                skipped.append(Skipped(variant=name, reason=f"final_vs_reference: {error}"))
        comparison = compare("final_vs_reference", chosen.id, reference.id, predictions, cfg)
        if isinstance(comparison, str):
            skipped.append(Skipped(variant=chosen.id, reason=comparison))
        else:
            comparisons.append(comparison)
    return result.model_copy(update={"comparisons": adjust(comparisons, cfg.alpha), "skipped": skipped})


def write_stats(result: StatsFile, output_dir: str | os.PathLike) -> Path:
    return fileio.write_json(Path(output_dir) / STATS_FILE, result.model_dump(mode="json"))


def load_stats(path: str | os.PathLike) -> StatsFile:
    return StatsFile.model_validate_json(Path(path).read_text(encoding="utf-8"))


# --- display (notebook) ------------------------------------------------------------------------------

def comparisons_markdown(result: StatsFile) -> str:
    """The paired comparisons as a Markdown table."""
    lines = ["| family | a | b | a - b (pp) | interval (pp) | a only / b only | p | p (Holm) | significant |",
             "|---|---|---|---:|---|---:|---:|---:|:---:|"]
    for c in result.comparisons:
        lines.append(f"| {c.family} | {c.a} | {c.b} | {c.diff_pp:+.2f} | [{c.low_pp:+.2f}, {c.high_pp:+.2f}] | "
                     f"{c.a_only_correct} / {c.b_only_correct} | {c.p_value:.3g} | {c.p_holm:.3g} | "
                     f"{'yes' if c.significant else 'no'} |")
    return "\n".join(lines)
