"""The results chapter's numbered tables and figures, built from ``ReportData`` in reading order.

Tables hold raw values (fractions, bytes, ms) and say how each column is shown; figures hold a drawing
function that takes the translated labels (the item types: ``trashnet.report.items``). Numbers
("Table 4.3", "Figure 4.5") are given here, in the order the chapter shows them, so the text can cite an
item before it appears. Captions and headers are gettext messages (``N_``), translated when the chapter
is rendered.
"""

from __future__ import annotations

import re
from typing import Any

from trashnet.data.scan import reason_code
from trashnet.report import compare, figures, probe
from trashnet.report.collect import PARITY_SETS, ReportData, Variant
from trashnet.report.i18n import N_
from trashnet.report.items import Chapter, Column, Figure, Table
from trashnet.report.weights_text import weights_cell

ACC = Column("accuracy", N_("Accuracy"), "pct", "%", "max")
F1 = Column("macro_f1", N_("Macro-F1"), "pct", "%", "max")
RAW = Column("raw_bytes", N_("Size"), "mb", "MB", "min")
GZIP = Column("gzip_bytes", N_("Size (gzip)"), "mb", "MB", "min")
# One latency backend per column, named in its header: Keras batch 1 and LiteRT 1 thread are not comparable.
LATENCY_KERAS = Column("latency_keras_ms", N_("Latency, Keras batch 1"), "ms", "ms", "min")
LATENCY = Column("latency_litert_ms", N_("Latency, LiteRT 1 thread"), "ms", "ms", "min")
OOD = Column("ood_accuracy", N_("OOD accuracy"), "pct", "%")  # near chance: no value is marked "best"
MODEL = Column("id", N_("Model"))
SPARSITY_LAYERS = 24  # per-layer sparsity charts show the layers holding the most weights, to fit a page
FAMILY_NAMES = {"pruned_vs_dense": N_("pruned vs. dense"), "quantized_vs_float": N_("quantized vs. float"),
                "baselines": N_("between baselines"), "final_vs_reference": N_("final vs. reference")}
METRIC_NAMES = {"accuracy": N_("accuracy"), "macro_f1": N_("macro-F1")}
SPLIT_NAMES = {"train": N_("train"), "validation": N_("validation"), "test": N_("test")}


def _values(variant: Variant, columns: list[Column]) -> list[Any]:
    return [variant.id if c.key == "id" else variant.value(c.key) for c in columns]


def _with_ood(columns: list[Column], data: ReportData) -> list[Column]:
    return columns + [OOD] if data.has_ood else columns


# --- sections ---------------------------------------------------------------------------------------

def summary(chapter: Chapter, data: ReportData) -> None:
    chosen = data.chosen
    if chosen is None or not chosen.scored:
        return
    rows = [chosen]
    reference = data.by_id(data.selection.reference.id) if data.selection.reference else None
    if reference is not None:
        rows.append(reference)
    best_baseline = max((v for v in data.group("baseline") if v.scored), key=lambda v: v.value("accuracy"),
                        default=None)
    if best_baseline is not None and best_baseline not in rows:
        rows.append(best_baseline)
    columns = _with_ood([MODEL, ACC, F1, GZIP, LATENCY_KERAS, LATENCY], data)
    chapter.add_table(Table("headline", N_("The final model against its float reference and the most accurate "
                                           "baseline (test split, %(n)s images)"),
                            columns, [_values(v, columns) for v in rows], {"n": chosen.metrics.test.n},
                            highlight={0}))


def data_section(chapter: Chapter, data: ReportData) -> None:
    d = data.data
    if not d.present:
        return
    columns = [Column("class", N_("Class"))] + [Column(s, SPLIT_NAMES.get(s, s), "int") for s in d.splits] + \
        [Column("total", N_("Total"), "int"), Column("rejected", N_("Rejected"), "int")]
    rows = [[name, *[d.counts[name][s] for s in d.splits], sum(d.counts[name].values()),
             d.rejected_by_class.get(name, 0)] for name in d.classes]
    rows.append([N_("All classes"), *[sum(d.counts[c][s] for c in d.classes) for s in d.splits],
                 sum(sum(v.values()) for v in d.counts.values()), len(d.rejected)])
    chapter.add_table(Table("data", N_("Images per class and split after validation (%(files)s files examined)"),
                            columns, rows, {"files": d.total_files}))
    if d.rejected:
        chapter.add_table(Table("rejected", N_("Rejected files and the reason for each"),
                                [Column("path", N_("File")), Column("class", N_("Class")),
                                 Column("reason", N_("Reason")), Column("same", N_("Same bytes as"))],
                                [[r["path"], r["class"], *rejection(r["path"], r["reason"])] for r in d.rejected]))
    if any(d.examples.values()):
        chapter.add_figure(Figure("examples", N_("Example training images, one row per class"),
                                  lambda text, ex=d.examples: figures.example_grid(ex), wide=False))


# The manifest's reasons (trashnet/data: English, "<code>: <detail>") -> a translated phrase, by their code.
REJECTIONS = {"duplicate-conflict": N_("identical bytes under another label; all copies rejected"),
              "duplicate": N_("an exact copy of another file (the first copy is kept)"),
              "bad-name": N_("the file or folder name is not valid UTF-8"),
              "hidden": N_("a hidden or system file"), "no-class": N_("not inside a class folder"),
              "nested-folder": N_("inside a sub-folder of a class folder"), "unreadable": N_("cannot be read"),
              "decompression-bomb": N_("decoding ran out of memory"),
              "not-in-split": N_("not listed in the official split files"),
              "not-a-file": N_("not a regular file"), "empty-file": N_("an empty file"),
              "not-an-image": N_("not an image"), "truncated": N_("a truncated image file"),
              "corrupt": N_("a damaged image header")}


def rejection(path: str, reason: str) -> tuple[str, str]:
    """(translatable reason, the other files with the same bytes) of one rejected file; an unknown reason (a
    decoder's own message) is kept as written."""
    code = reason_code(reason)
    if code not in REJECTIONS:
        return reason, "–"
    if code == "duplicate-conflict":
        others = [f"{other} ({label})" for other, label in re.findall(r"([^\s,(]+) \((\w+)\)", reason) if other != path]
    elif code == "duplicate":
        others = re.findall(r"duplicate of (\S+)", reason)
    else:
        others = []
    return REJECTIONS[code], ", ".join(others) or "–"


def _config_rows(config: dict[str, Any], sections: tuple[str, ...]) -> list[list[Any]]:
    rows = []
    for section in sections:
        for key, value in (config.get(section) or {}).items():
            if isinstance(value, (list, tuple)):
                value = ", ".join(str(v) for v in value) or "–"
            rows.append([f"{section}.{key}", "–" if value is None else str(value)])
    return rows


def configuration(chapter: Chapter, data: ReportData) -> None:
    """The resolved configuration and the environment, for the appendix (the method section is prose)."""
    baseline = next((v for v in data.group("baseline") if v.metrics is not None), None)
    if baseline is not None and baseline.metrics.config:
        chapter.add_table(Table("recipe", N_("Training recipe of %(id)s, from the resolved configuration"),
                                [Column("key", N_("Setting")), Column("value", N_("Value"))],
                                _config_rows(baseline.metrics.config, ("model", "train", "data")),
                                {"id": baseline.id}))
    compression = []
    pruned = next((v for v in data.group("pruned") if v.metrics is not None and v.metrics.config), None)
    quantized = next((v for v in data.group("quantized") + data.group("hybrid")
                      if v.metrics is not None and v.metrics.config), None)
    if pruned is not None:
        compression += _config_rows(pruned.metrics.config, ("prune",))
    if quantized is not None:
        compression += _config_rows(quantized.metrics.config, ("quantize",))
    if data.selection is not None:
        compression += [[f"select.{k}", ", ".join(map(str, v)) if isinstance(v, list) else str(v)]
                        for k, v in data.selection.config.items()]
    if compression:
        chapter.add_table(Table("compression", N_("Pruning, quantization and selection settings"),
                                [Column("key", N_("Setting")), Column("value", N_("Value"))], compression))
    p = data.provenance
    rows = [row for m in p.get("machines") or [] for row in
            ([N_("Processor"), m["cpu"]], [N_("CPU cores"), m["cores"]], [N_("GPU"), m["gpus"] or N_("none")])]
    rows = rows or [[N_("Hardware"), "–"]]
    rows += [[name, ", ".join(versions)] for name, versions in (p.get("libraries") or {}).items()]
    rows += [[N_("Initial weights"), weights_cell(origin, ids)] for origin, ids in (p.get("weights") or {}).items()]
    chapter.add_table(Table("environment", N_("Hardware, software versions and initial weights"),
                            [Column("key", N_("Item")), Column("value", N_("Value"))], rows))


def baselines(chapter: Chapter, data: ReportData) -> None:
    group = [v for v in data.group("baseline") if v.metrics is not None]
    if not group:
        return
    columns = _with_ood([MODEL, ACC, F1, Column("train_time_s", N_("Training time"), "min", "min", "min"),
                         LATENCY_KERAS, RAW, GZIP, Column("params", N_("Parameters"), "mega", "M", "min"),
                         Column("macs", N_("MACs"), "mega", "M", "min")], data)
    chapter.add_table(Table("baselines", N_("Baselines: float Keras models trained with the profile's recipe "
                                            "(test split)"),
                            columns, [_values(v, columns) for v in group]))
    for variant in group:
        if variant.history:
            chapter.add_figure(Figure(f"history-{variant.id}", N_("Training curves of %(id)s"),
                                      lambda text, v=variant: figures.history(v.history, text=text),
                                      {"id": variant.id}))


def pruning(chapter: Chapter, data: ReportData) -> None:
    group = [v for v in data.group("pruned") if v.metrics is not None]
    if not group:
        return
    columns = [MODEL, ACC, Column("delta", N_("Δ accuracy"), "pp", "pp", "max"),
               Column("sparsity", N_("Sparsity"), "pct", "%"),
               Column("nonzero_params", N_("Non-zero parameters"), "mega", "M", "min"),
               Column("tflite_gzip", N_("TFLite FP32 (gzip)"), "mb", "MB", "min"),
               Column("reduction", N_("Smaller than dense (gzip)"), "pct", "%", "max")]
    rows = []
    for v in group:
        m = v.metrics
        dense = m.dense_baseline or {}
        total = (m.sparsity or {}).get("total")
        sparsity = total.get("sparsity") if isinstance(total, dict) else None
        tflite = (m.sizes or {}).get("tflite")
        reduction = dense.get("tflite_gzip_reduction_pct")
        rows.append([v.id, v.value("accuracy"), dense.get("accuracy_delta_pp"), sparsity, v.value("nonzero_params"),
                     tflite.gzip_bytes if tflite else None, None if reduction is None else reduction / 100])
    chapter.add_table(Table("pruning", N_("Pruned models against their dense source (Δ in percentage points)"),
                            columns, rows))
    methods: set[str] = set()
    for v in group:  # one chart per pruning method: the variants of one method look alike
        layers = (v.metrics.sparsity or {}).get("layers")
        method = str((v.metrics.config.get("prune") or {}).get("method"))
        if isinstance(layers, dict) and layers and method not in methods:
            methods.add(method)
            shown = figures.largest_layers(layers, SPARSITY_LAYERS)
            weights = sum(int(layers[n].get("weights") or 0) for n in layers) or 1
            share = sum(int(layers[n].get("weights") or 0) for n in shown) / weights
            grey = any(not layers[n].get("pruned") for n in shown)
            caption = (N_("Sparsity of the %(shown)s layers of %(id)s with the most weights (%(share)s of its "
                          "%(total)s kernel layers' weights; layers without a bar are not pruned)") if grey else
                       N_("Sparsity of the %(shown)s layers of %(id)s with the most weights (%(share)s of its "
                          "%(total)s kernel layers' weights)"))
            chapter.add_figure(Figure(f"sparsity-{v.id}", caption,
                                      lambda text, layers=layers: figures.sparsity_per_layer(
                                          layers, text=text, limit=SPARSITY_LAYERS),
                                      {"id": v.id, "shown": len(shown), "total": len(layers),
                                       "share": f"{round(100 * share)}%"}))


def quantization(chapter: Chapter, data: ReportData) -> None:
    group = [v for v in data.group("quantized") + data.group("hybrid") if v.metrics is not None]
    if not group:
        return
    precisions = sorted({v.metrics.precision or "?" for v in group})
    columns = _with_ood([MODEL, Column("source", N_("Source")), ACC,
                         Column("delta", N_("Δ accuracy"), "pp", "pp", "max"),
                         Column("agreement", N_("Top-1 agreement"), "ratio", "%", "max"), RAW, GZIP, LATENCY], data)
    for precision in precisions:
        rows = []
        for v in (v for v in group if (v.metrics.precision or "?") == precision):
            m = v.metrics
            values = {"id": v.id, "source": m.source or "–", "delta": m.delta_accuracy_pp,
                      "agreement": (m.agreement or {}).get("top1_agreement_pct")}
            rows.append([values[c.key] if c.key in values else v.value(c.key) for c in columns])
        chapter.add_table(Table(f"quantized-{precision}", N_("TFLite files in precision %(precision)s, evaluated "
                                                            "with LiteRT"),
                                columns, rows, {"precision": precision}))
    census = [v for v in group if v.metrics.op_census]
    sixteen = [v for v in census if "int16" in (v.metrics.precision or "")]
    census = sixteen or census  # the 16-bit files, whose latency the discussion explains, when there are any
    if census:
        rows = []
        for v in census:
            c = v.metrics.op_census
            by_op = c.get("by_op") or {}
            rows.append([v.id, c.get("total"), c.get("float_compute_ops"), by_op.get("QUANTIZE", 0),
                         by_op.get("DEQUANTIZE", 0), ", ".join(sorted((c.get("float_compute_by_op") or {}))) or "–"])
        chapter.add_table(Table("census", N_("Operator census of the TFLite files") if not sixteen else
                                N_("Operator census of the 16-bit TFLite files"),
                                [MODEL, Column("total", N_("Operators"), "int"),
                                 Column("float", N_("Float compute ops"), "int", None, "min"),
                                 Column("quantize", "QUANTIZE", "int"), Column("dequantize", "DEQUANTIZE", "int"),
                                 Column("float_ops", N_("Float operator types"))], rows))


# select.py's exclusion reasons (English sentences with numbers) -> a short translated verdict, by their opening.
VERDICTS = (("outside the hybrid family: architecture", N_("other architecture")),
            ("outside the hybrid family: precision", N_("other precision")),
            ("outside the hybrid family: source stage", N_("not from a pruned model")),
            ("outside the hybrid family", N_("outside the hybrid family")),
            ("not a TFLite result", N_("not a TFLite file")),
            ("latency", N_("too slow")), ("no ", N_("not measured")),
            ("accuracy", N_("below the accuracy tolerance")),
            ("significantly less accurate", N_("significantly less accurate")),
            ("could not be tested", N_("not testable")),
            ("extra seed", N_("extra seed")))


def verdict_of(reason: str) -> str:
    return next((verdict for opening, verdict in VERDICTS if reason.startswith(opening)), reason)


def final(chapter: Chapter, data: ReportData) -> None:
    selection = data.selection
    if selection is None:
        return
    group_of = {v.id: v.group for v in data.variants}
    rows = [r for r in selection.results if r.status == "ok"]
    for key, label, scale in (("gzip_bytes", N_("gzipped file size (MB, log scale)"), 1e-6),
                              ("latency_ms", N_("latency, 1 thread, batch 1 (ms, log scale)"), 1.0)):
        points = [(r.id, group_of.get(r.id, figures.STAGE_GROUPS.get(r.stage, r.stage)), getattr(r, key) * scale if getattr(r, key) else None,
                   r.accuracy) for r in rows]
        chapter.add_figure(Figure(f"pareto-{key}", N_("Test accuracy against %(axis)s; the line is the Pareto "
                                                      "front, the circle the final model"),
                                  lambda text, p=points, label=label: figures.pareto(
                                      p, xlabel=text.get(label, label), chosen=selection.chosen.id, text=text),
                                  {"axis": label}))
    table_rows = []
    for r in selection.results:
        verdict = (N_("chosen") if r.id == selection.chosen.id else N_("eligible, not the smallest") if r.eligible
                   else verdict_of(r.excluded) if r.excluded else r.status or "")
        fronts = ("S" if r.front_size else "") + ("L" if r.front_latency else "")
        table_rows.append([r.id, r.precision or "–", r.accuracy, r.gzip_bytes, r.latency_ms, fronts or "–", verdict])
    chosen_index = {i for i, r in enumerate(selection.results) if r.id == selection.chosen.id}
    chapter.add_table(Table("selection", N_("Every result the selection rule considered (front: S = size, "
                                            "L = latency)"),
                            [MODEL, Column("precision", N_("Precision")), ACC, GZIP, LATENCY,
                             Column("front", N_("Front")), Column("verdict", N_("Verdict"))], table_rows,
                            highlight=chosen_index))


def parity(chapter: Chapter, data: ReportData) -> None:
    """The shipped file given whole photos the way other apps resize them, against ``predict`` (its parity)."""
    record = data.parity
    if record is None or not record.datasets:
        return
    rows = [[PARITY_SETS.get(dataset, dataset), row.consumer, row.agreement, row.accuracy, row.accuracy_delta_pp]
            for dataset, group in record.datasets.items() for row in group]
    chapter.add_table(Table("parity", N_("Preprocessing parity of the shipped file: whole photos resized as each "
                                         "library does by default, against predict (agreement: the same top-1 "
                                         "class)"),
                            [Column("dataset", N_("Data")), Column("consumer", N_("Consumer")),
                             Column("agreement", N_("Agreement"), "pct", "%"), Column("accuracy", N_("Accuracy"),
                                                                                      "pct", "%"),
                             Column("accuracy_delta_pp", N_("Difference"), "pp", "pp")], rows))


def significance(chapter: Chapter, data: ReportData) -> None:
    if data.seed_stats:
        chapter.add_table(Table("seeds", N_("Repeated training with several seeds (run %(run)s): mean and "
                                            "standard deviation"),
                                [MODEL, Column("seeds", N_("Seeds")),
                                 Column("mean_accuracy", N_("Mean accuracy"), "pct", "%", "max"),
                                 Column("sd_accuracy", N_("SD accuracy"), "sd", "pp"),
                                 Column("mean_macro_f1", N_("Mean macro-F1"), "pct", "%", "max"),
                                 Column("sd_macro_f1", N_("SD macro-F1"), "sd", "pp")],
                                [[s.get("variant"), ", ".join(map(str, s.get("seeds") or [])), s.get("mean_accuracy"),
                                  s.get("sd_accuracy"), s.get("mean_macro_f1"), s.get("sd_macro_f1")]
                                 for s in data.seed_stats], {"run": data.seeds_source or "–"}))


def appendix(chapter: Chapter, data: ReportData) -> None:
    """Long reference tables, numbered after the body's: intervals of every result, every seed's run, and the
    resolved configuration."""
    stats = data.stats or {}
    if stats.get("intervals"):
        first = stats["intervals"][0]
        chapter.add_table(Table("intervals", N_("Confidence intervals of test accuracy and macro-F1 (%(level)s, "
                                                "%(method)s bootstrap, n = %(n)s)"),
                                [MODEL, Column("metric", N_("Metric")), Column("estimate", N_("Estimate"), "pct", "%"),
                                 Column("low", N_("Lower bound"), "pct", "%"),
                                 Column("high", N_("Upper bound"), "pct", "%")],
                                [[i.get("variant"), METRIC_NAMES.get(i.get("metric"), i.get("metric")),
                                  i.get("estimate"), i.get("low"), i.get("high")] for i in stats["intervals"]],
                                {"level": f"{round(100 * first.get('confidence', 0.95))}%",
                                 "method": first.get("method") or "–", "n": first.get("n")}))
    if stats.get("comparisons"):
        chapter.add_table(Table("comparisons", N_("Paired comparisons (accuracy difference a − b, McNemar test, "
                                                  "Holm-adjusted p)"),
                                [Column("family", N_("Family")), Column("a", "a"), Column("b", "b"),
                                 Column("diff_pp", N_("Difference"), "ratio", "pp"),
                                 Column("low_pp", N_("Lower bound"), "ratio", "pp"),
                                 Column("high_pp", N_("Upper bound"), "ratio", "pp"),
                                 Column("p_holm", N_("p (Holm)"), "p"),
                                 Column("significant", N_("Significant"))],
                                [[FAMILY_NAMES.get(c.get("family"), c.get("family")), c.get("a"), c.get("b"),
                                  c.get("diff_pp"), c.get("low_pp"), c.get("high_pp"), c.get("p_holm"),
                                  N_("yes") if c.get("significant") else N_("no")] for c in stats["comparisons"]]))
    if data.seed_stats:
        chapter.add_table(Table("seed_runs", N_("Test accuracy and macro-F1 of every seed"),
                                [MODEL, Column("seed", N_("Seed"), "int"), ACC, F1],
                                [[s.get("variant"), seed, accuracy, f1]
                                 for s in data.seed_stats
                                 for seed, accuracy, f1 in zip(s.get("seeds") or [], s.get("accuracy") or [],
                                                               s.get("macro_f1") or [])]))
    configuration(chapter, data)


def per_class(chapter: Chapter, data: ReportData) -> None:
    chosen = data.chosen
    shown = [v for v in data.group("baseline") if v.scored and v.metrics.test.confusion_matrix]
    if chosen is not None and chosen.scored and chosen.metrics.test.confusion_matrix and chosen not in shown:
        shown.append(chosen)
    for v in shown:
        m = v.metrics
        chapter.add_figure(Figure(f"confusion-{v.id}", N_("Confusion matrix of %(id)s on the test split (colour: "
                                                          "share of the true class)"),
                                  lambda text, m=m: figures.confusion(m.classes, m.test.confusion_matrix, text=text),
                                  {"id": v.id}, wide=False))
    scored = [v for v in shown if v.metrics.test.per_class]
    if scored:
        classes = scored[0].metrics.classes
        scores = {v.id: {c: s.f1 for c, s in v.metrics.test.per_class.items()} for v in scored}
        chapter.add_figure(Figure("f1", N_("F1 per class"),
                                  lambda text: figures.per_class_f1(scores, classes, text=text)))
    if chosen is not None and chosen.scored and chosen.metrics.test.per_class:
        chapter.add_table(Table("per-class", N_("Per-class scores of the final model %(id)s"),
                                [Column("class", N_("Class")), Column("precision", N_("Precision"), "pct", "%", "max"),
                                 Column("recall", N_("Recall"), "pct", "%", "max"),
                                 Column("f1", "F1", "pct", "%", "max"), Column("support", N_("Images"), "int")],
                                [[c, s.precision, s.recall, s.f1, s.support]
                                 for c, s in chosen.metrics.test.per_class.items()], {"id": chosen.id}))
    if data.misclassified:
        rows = [(m.path, m.true, m.predicted, m.confidence) for m in data.misclassified]
        chapter.add_figure(Figure("misclassified", N_("Misclassified test images of the final model (true → "
                                                      "predicted, confidence); %(shown)s of %(total)s shown"),
                                  lambda text: figures.misclassified_gallery(rows, text=text),
                                  {"shown": len(rows), "total": data.misclassified_total}))


def robustness(chapter: Chapter, data: ReportData) -> None:
    group = [v for v in data.variants if v.metrics is not None and v.metrics.ood is not None]
    if not group:
        return
    chapter.add_table(Table("ood", N_("Out-of-distribution evaluation: %(n)s real-world photos that are not from "
                                      "TrashNet"),
                            [MODEL, Column("in", N_("TrashNet test accuracy"), "pct", "%", "max"), OOD,
                             Column("ood_macro_f1", N_("OOD macro-F1"), "pct", "%")],
                            [[v.id, v.value("accuracy"), v.value("ood_accuracy"), v.value("ood_macro_f1")]
                             for v in group if v.group in ("baseline", "pruned") or v is data.chosen],
                            {"n": group[0].metrics.ood.n}))
    chosen = data.chosen if data.chosen is not None and data.chosen.metrics.ood is not None else group[0]
    ood = chosen.metrics.ood
    if ood.per_class:
        chapter.add_table(Table("ood-per-class", N_("Out-of-distribution scores per class of %(id)s"),
                                [Column("class", N_("Class")), Column("precision", N_("Precision"), "pct", "%"),
                                 Column("recall", N_("Recall"), "pct", "%"), Column("f1", "F1", "pct", "%"),
                                 Column("support", N_("Images"), "int")],
                                [[c, s.get("precision"), s.get("recall"), s.get("f1"), s.get("n")]
                                 for c, s in ood.per_class.items()], {"id": chosen.id}))
    matrix = getattr(ood, "confusion_matrix", None) or {}
    if matrix.get("counts"):
        chapter.add_figure(Figure("ood-confusion", N_("Confusion matrix of %(id)s on the out-of-distribution "
                                                      "photos (rows: true class, columns: predicted)"),
                                  lambda text, m=matrix: figures.confusion(m["rows"], m["counts"], text=text,
                                                                           columns=m["columns"]),
                                  {"id": chosen.id}, wide=False))


def build(data: ReportData) -> Chapter:
    chapter = Chapter()
    for section in (summary, data_section, baselines, compare.section, probe.section, pruning, quantization, final,
                    parity, significance, per_class, robustness, appendix):
        section(chapter, data)
    return chapter
