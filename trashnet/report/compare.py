"""Two runs of the study from different starting weights, side by side (issue 27): ``report --compare-with``.

The baselines (train stage, first seed) of the report's run and of another run are matched by architecture
(``arch`` in ``metrics.json``: one variant id may name different nets in two profiles, e.g. ``mobilenet_v3_large``
is the minimalistic net in the ImageNet ``cpu`` profile and the full one in ``cpu-scratch``), and the chapter gets
one table and one figure of TrashNet test accuracy and out-of-distribution accuracy per architecture, with each
run's starting weights (``weights`` in ``metrics.json``). ``check_seeds`` keeps ``--seeds-from`` to a seeds run
of the same recipe (starting weights and image size of the baselines), and ``same_recipe`` leaves out each of its
seeds entries whose model, or a model it was made from, the seeds run made with other settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from pydantic import BaseModel

from trashnet.core import records, settings
from trashnet.core.errors import UsageError
from trashnet.report import collect, figures, probe
from trashnet.report.i18n import N_
from trashnet.report.items import Chapter, Column, Figure, Table

TABLE_KEY = "compare"
FIGURE_KEY = "compare-accuracy"
# What a ``weights`` record starts with (trashnet.nets.imagenet.weights_origin) -> its name in the report.
WEIGHTS_NAMES = {"none": N_("from scratch"), "imagenet": N_("from ImageNet"), "imagenet-tflite": N_("from ImageNet"),
                 "file": N_("from a weights file")}
COLOURS = ("#1f77b4", "#ff7f0e")  # this run, the compared run
THIS_RUN, RUN = N_("this run"), N_("run")  # the figure's legend
MISSING = object()  # a setting one run's config does not have


def origin(weights: str | None) -> str:
    """The kind of starting point of a ``weights`` record: none, imagenet, imagenet-tflite, file (or ?)."""
    return (weights or "?").split(":", 1)[0]


def weights_name(kinds: Iterable[str]) -> str:
    """The starting points of a run's baselines as the report names them (a gettext message when one)."""
    names = sorted({WEIGHTS_NAMES.get(kind, kind) for kind in kinds})
    return names[0] if len(names) == 1 else ", ".join(names) or "–"


def baselines(variants: Iterable[collect.Variant]) -> list[collect.Variant]:
    """The scored baselines of a run, first seed only (extra seeds are ``<id>@seed<n>``)."""
    return [v for v in variants if v.stage == "train" and v.scored and "@" not in v.id]


def read_baselines(layout: settings.Layout) -> list[collect.Variant]:
    """The scored baselines of a run's output root or published results folder, read as the report reads them."""
    run = collect._record(records.read_run_record, layout.logs)
    return baselines(collect.read_variant(*entry) for entry in collect._entries(layout, run) if entry[1] == "train")


def read_pruned(layout: settings.Layout) -> list[collect.Variant]:
    """The scored pruned models of a run (first seed only), read as the report reads them."""
    run = collect._record(records.read_run_record, layout.logs)
    return [v for v in (collect.read_variant(*entry) for entry in collect._entries(layout, run) if entry[1] == "prune")
            if v.scored and "@" not in v.id and v.metrics.dense_baseline]


def recipe(variants: Iterable[collect.Variant]) -> set[tuple[str, int | None]]:
    """(starting point, input side in px) of a run's baselines: what a seeds run must share with the report's."""
    return {(origin(v.metrics.weights), v.metrics.image_size) for v in baselines(variants)}


def describe(found: set[tuple[str, int | None]]) -> str:
    return "; ".join(f"weights {kind} at {size} px" for kind, size in sorted(found, key=str)) or "no baselines"


def check_seeds(variants: list[collect.Variant], root: Path, seeds: settings.Layout) -> None:
    """Refuse a ``--seeds-from`` run whose baselines started from other weights or at another image size than
    the report's run: its mean and SD would describe another recipe (e.g. a from-scratch run under ImageNet)."""
    mine, theirs = recipe(variants), recipe(read_baselines(seeds))
    if mine and theirs and not theirs <= mine:
        raise UsageError(f"--seeds-from {seeds.root} ({describe(theirs)}) is not the recipe of {root} "
                         f"({describe(mine)})", "pass the seeds run of the same profile's recipe, or leave "
                         "--seeds-from out")


# What two runs of one recipe may hold differently in a variant's recorded config (``provenance.config``): what
# names the run (id, profile, seed, seeds), the final stage's rules (select, stats), the sections a stage does not
# read to make its model (a baseline's config carries the profile's prune settings it never used) and what only
# measures a model (latency and evaluation threads), not what makes it.
PER_RUN = ("id", "profile", "seed", "seeds", "select", "stats")
UNREAD = {"train": ("prune", "quantize"), "prune": ("quantize",), "quantize": ("prune",)}
MEASURING = ("quantize.latency_runs", "quantize.latency_warmup", "quantize.latency_threads",
             "quantize.eval_batch_size", "quantize.eval_threads", "quantize.eval_workers")


def read_variants(layout: settings.Layout) -> dict[str, collect.Variant]:
    """Every variant of a run with a readable ``metrics.json``, by id, read as the report reads them."""
    run = collect._record(records.read_run_record, layout.logs)
    found = (collect.read_variant(*entry) for entry in collect._entries(layout, run))
    return {v.id: v for v in found if v.metrics is not None}


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _shown(value: Any) -> str:
    return "–" if value is MISSING else value if isinstance(value, str) else json.dumps(value)


def _first_difference(mine: records.Metrics, theirs: records.Metrics) -> tuple[str, str, str] | None:
    """(setting, their value, my value) of the first setting that makes the model and differs, else None."""
    ignored = PER_RUN + UNREAD.get(mine.stage, ()) + MEASURING
    a, b = _flat(mine.config), _flat(theirs.config)
    for key in [*a, *(k for k in b if k not in a)]:
        if key.split(".")[0] in ignored or key in ignored:
            continue
        if a.get(key, MISSING) != b.get(key, MISSING):
            return key, _shown(b.get(key, MISSING)), _shown(a.get(key, MISSING))
    return None


def recipe_difference(variant_id: str, mine: Mapping[str, collect.Variant],
                      theirs: Mapping[str, collect.Variant]) -> collect.SeedsDropped | None:
    """Why the seeds run's ``variant_id`` is not this run's recipe: the first setting of the variant, or of a
    model it was made from along ``source``, that differs between the two runs' recorded configs; None when
    they agree all the way to the baseline."""
    model: str | None = variant_id
    seen: set[str] = set()
    while model and model not in seen:
        seen.add(model)
        a, b = mine.get(model), theirs.get(model)
        if a is None or b is None:  # one run lacks it: nothing shows the two were made alike
            return collect.SeedsDropped(variant=variant_id, model=model, setting="variant",
                                        theirs=model if b else "–", mine=model if a else "–")
        found = _first_difference(a.metrics, b.metrics)
        if found:
            return collect.SeedsDropped(variant=variant_id, model=model, setting=found[0], theirs=found[1],
                                        mine=found[2])
        model = getattr(a.metrics, "source", None)  # a baseline's record has none
    return None


def same_recipe(seed_stats: list[dict[str, Any]], variants: list[collect.Variant],
                seeds: settings.Layout) -> tuple[list[dict[str, Any]], list[collect.SeedsDropped]]:
    """``seed_stats`` split into the entries whose variant the seeds run made with this run's recipe and the
    reasons the others are left out (``recipe_difference``)."""
    mine, theirs = {v.id: v for v in variants if v.metrics is not None}, read_variants(seeds)
    found = {s.get("variant"): recipe_difference(str(s.get("variant")), mine, theirs) for s in seed_stats}
    return [s for s in seed_stats if found[s.get("variant")] is None], [d for d in found.values() if d]


# --- the comparison ------------------------------------------------------------------------------------------

class Side(BaseModel):
    id: str
    weights: str  # origin kind
    accuracy: float | None
    ood_accuracy: float | None
    image_size: int | None = None  # the model's input side in pixels


class Row(BaseModel):
    arch: str
    this: Side
    other: Side

    @staticmethod
    def _diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else 100 * (a - b)

    @property
    def diff_pp(self) -> float | None:
        return self._diff(self.this.accuracy, self.other.accuracy)

    @property
    def ood_diff_pp(self) -> float | None:
        return self._diff(self.this.ood_accuracy, self.other.ood_accuracy)


class PruneRow(BaseModel):
    """One pruning method on one architecture in both runs: its accuracy change against its own dense source."""

    arch: str
    method: str  # the variant id after the architecture: "prune-2of4", "prune-2of4-distill", ...
    this_pp: float
    other_pp: float


class Comparison(BaseModel):
    """The report's run against another run, per architecture of their baselines."""

    other: str  # how the chapter names the compared run: its results folder, or its profile
    other_root: str
    this_weights: str  # weights_name of each run
    other_weights: str
    rows: list[Row]
    pruning: list[PruneRow] = []  # the pruned models both runs made, matched by architecture and method

    @property
    def has_ood(self) -> bool:
        return any(r.this.ood_accuracy is not None and r.other.ood_accuracy is not None for r in self.rows)

    def sizes(self, side: str) -> list[int]:
        """The input sides (px) of one side's baselines ("this" or "other")."""
        return sorted({getattr(r, side).image_size for r in self.rows if getattr(r, side).image_size})

    def mean(self, name: str) -> float | None:
        values = [getattr(r, name) for r in self.rows if getattr(r, name) is not None]
        return sum(values) / len(values) if values else None


def _side(variant: collect.Variant) -> Side:
    return Side(id=variant.id, weights=origin(variant.metrics.weights), accuracy=variant.value("accuracy"),
                ood_accuracy=variant.value("ood_accuracy"), image_size=variant.metrics.image_size)


def compare(variants: list[collect.Variant], other: settings.Layout) -> Comparison:
    """The baselines of ``variants`` (the report's run) and of run ``other`` with the same architecture."""
    theirs = read_baselines(other)
    if not theirs:
        raise UsageError(f"--compare-with {other.root} has no scored baselines (models/.../train or baseline)",
                         "pass a published results folder (e.g. results/cpu-scratch) or the output root of a "
                         "finished run")
    mine = baselines(variants)
    rows = [Row(arch=a.metrics.arch, this=_side(a), other=_side(b))
            for a in sorted(mine, key=lambda v: (v.metrics.arch or "", v.id))
            for b in sorted(theirs, key=lambda v: v.id) if a.metrics.arch and a.metrics.arch == b.metrics.arch]
    if not rows:
        raise UsageError(f"--compare-with {other.root}: none of its baselines' architectures "
                         f"({', '.join(sorted({v.metrics.arch or '?' for v in theirs}))}) is in this run",
                         "compare two runs of the same study")
    run = collect._record(records.read_run_record, other.logs)
    pruning = prune_rows([v for v in variants if v.stage == "prune"], read_pruned(other))
    name = other.root.name if other.flat else (run.get("profile") or other.profile)
    return Comparison(other=name, other_root=str(other.root), rows=rows, pruning=pruning,
                      this_weights=weights_name(origin(v.metrics.weights) for v in mine),
                      other_weights=weights_name(origin(v.metrics.weights) for v in theirs))


def _prune_key(variant: collect.Variant) -> tuple[str, str] | None:
    method = variant.id.split(".", 1)[1] if "." in variant.id else None
    return (variant.metrics.arch, method) if variant.metrics and variant.metrics.arch and method else None


def prune_rows(mine: list[collect.Variant], theirs: list[collect.Variant]) -> list[PruneRow]:
    """Each pruned model of this run beside the other run's of the same architecture and method, by the accuracy
    each lost against its own dense source (``dense_baseline.accuracy_delta_pp``)."""
    other = {_prune_key(v): v for v in theirs if _prune_key(v)}
    rows = []
    for v in sorted(mine, key=lambda v: v.id):
        match = other.get(_prune_key(v)) if v.scored and v.metrics.dense_baseline else None
        this_pp = (v.metrics.dense_baseline or {}).get("accuracy_delta_pp") if match else None
        other_pp = (match.metrics.dense_baseline or {}).get("accuracy_delta_pp") if match else None
        if this_pp is not None and other_pp is not None:
            rows.append(PruneRow(arch=v.metrics.arch, method=_prune_key(v)[1], this_pp=this_pp, other_pp=other_pp))
    return rows


# --- the chapter's table and figure --------------------------------------------------------------------------

def report_data(where: str | Path | settings.Layout, profile: str | None = None, *,
                seeds_from: settings.Layout | None = None,
                compare_with: settings.Layout | None = None, probe_from: Path | None = None) -> collect.ReportData:
    """``collect.collect``, refused when ``seeds_from`` is a run of another recipe (``check_seeds``) and without
    its seeds entries of models made otherwise (``same_recipe``), with ``compare_with``'s baselines set beside
    this run's (``compare``) and the linear probe of ``probe_from`` beside them (``probe.match``)."""
    data = collect.collect(where, profile, seeds_from=seeds_from)
    if seeds_from is not None:
        check_seeds(data.variants, data.root, seeds_from)
        kept, dropped = same_recipe(data.seed_stats, data.variants, seeds_from)
        data = data.model_copy(update={"seed_stats": kept, "seeds_dropped": dropped})
    if compare_with is not None:
        data = data.model_copy(update={"comparison": compare(data.variants, compare_with)})
    if probe_from is not None:
        found = probe.match(baselines(data.variants), probe.read_rows(probe_from), probe_from)
        data = data.model_copy(update={"probe": found})
    return data


def section(chapter: Chapter, data: collect.ReportData) -> None:
    """The comparison table and figure, when the report was asked for one (``data.comparison``)."""
    comparison: Comparison | None = data.comparison
    if comparison is None:
        return
    columns = [Column("arch", N_("Architecture")), Column("id", N_("Model, this run")),
               Column("other_id", N_("Model, compared run")), Column("weights", N_("Weights, this run")),
               Column("other_weights", N_("Weights, compared run")),
               Column("accuracy", N_("TrashNet, this run"), "pct", "%"),
               Column("other_accuracy", N_("TrashNet, compared run"), "pct", "%"),
               Column("delta", N_("Δ TrashNet"), "pp", "pp")]
    if comparison.has_ood:
        columns += [Column("ood", N_("OOD, this run"), "pct", "%"),
                    Column("other_ood", N_("OOD, compared run"), "pct", "%"),
                    Column("ood_delta", N_("Δ OOD"), "pp", "pp")]
    rows = [[r.arch, r.this.id, r.other.id, WEIGHTS_NAMES.get(r.this.weights, r.this.weights),
             WEIGHTS_NAMES.get(r.other.weights, r.other.weights), r.this.accuracy, r.other.accuracy, r.diff_pp,
             r.this.ood_accuracy, r.other.ood_accuracy, r.ood_diff_pp][:len(columns)] for r in comparison.rows]
    args = {"this": comparison.this_weights, "other": comparison.other, "other_weights": comparison.other_weights}
    chapter.add_table(Table(TABLE_KEY, N_("Baselines of this run (%(this)s) against those of run %(other)s "
                                          "(%(other_weights)s) with the same architecture (test split; Δ = this "
                                          "run − compared run)"), columns, rows, args))
    chapter.add_figure(Figure(FIGURE_KEY, N_("Accuracy of the baselines per architecture, this run (%(this)s) "
                                             "against run %(other)s (%(other_weights)s)"),
                              lambda text, c=comparison: draw(c, text=text), args))


def draw(comparison: Comparison, text: Mapping[str, str]):
    """Grouped horizontal bars per architecture: TrashNet test accuracy (and OOD accuracy beside it) of both runs."""
    panels = [("accuracy", N_("TrashNet test accuracy (%)"))]
    if comparison.has_ood:
        panels.append(("ood_accuracy", N_("out-of-distribution accuracy (%)")))
    rows = comparison.rows
    figure = figures._figure(3.6 * len(panels) + 1.2, 0.55 * len(rows) + 1.6)
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    labels = [f"{text.get(THIS_RUN)} ({text.get(comparison.this_weights)})",
              f"{text.get(RUN)} {comparison.other} ({text.get(comparison.other_weights)})"]
    height = 0.38
    for axis, (key, title) in zip(axes, panels):
        for index, (side, label, colour) in enumerate(zip(("this", "other"), labels, COLOURS)):
            values = [100 * (getattr(getattr(r, side), key) or 0.0) for r in rows]
            positions = [y + (index - 0.5) * height for y in range(len(rows))]
            # No value labels: matplotlib would print them with a decimal point in Indonesian too (the table has them).
            axis.barh(positions, values, height=height, color=colour, label=label)
        axis.set_xlabel(text.get(title))
        axis.set_xlim(0, 105)
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(rows)), [r.arch for r in rows], fontsize=8)
    axes[0].invert_yaxis()
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=8)
    return figure

