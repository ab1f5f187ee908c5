"""Findings: what the chapter says about the numbers, derived from ``ReportData`` by stated rules.

Nothing here is typed by hand: which network answers the research question, whether the design's hybrid
is dominated, what 16x8 and 2:4 sparsity do on this runtime, which differences are significant, and what
limits the results, are each one rule over the result files. The template phrases the typed records in
each language, so the text stays true when the results are regenerated.
"""

from __future__ import annotations

import math
import statistics as pystats
from collections import Counter, defaultdict

from trashnet.core.config import SEED_MARK
from trashnet.report.collect import ReportData
from trashnet.report.finding_records import (  # noqa: F401 - the records are part of this module's API
    Point,
    Test,
    Answer,
    LatencyFinding,
    SparsityFinding,
    Collapsed,
    ClassFinding,
    SignificanceFinding,
    Budget,
    Method,
    Machine,
    Limits,
    Findings,
)

Z95 = 1.959964  # the normal quantile of a two-sided 95 % interval: the binomial half-width of one split
CONFOUND_RATIO = 1.2  # epoch budgets that differ by more than this are an unequal-budget confound
SLOW_RATIO = 2.0  # a precision at least this many times slower than FP32 is called slow
FASTER_RATIO = 1.25  # a pruned file at least this many times faster than its dense source is called faster
COLLAPSED_SHARE = 0.95  # a file that gives one class for at least this share of the test images has collapsed


# --- rules ----------------------------------------------------------------------------------------------

def wilson(p: float, n: int) -> tuple[float, float]:
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(round(p * n), n, alpha=0.05, method="wilson")
    return float(low), float(high)


def _intervals(data: ReportData) -> dict[str, tuple[float, float]]:
    return {i["variant"]: (i["low"], i["high"]) for i in (data.stats or {}).get("intervals") or []
            if i.get("metric") == "accuracy" and i.get("low") is not None}


def points(data: ReportData) -> list[Point]:
    if data.selection is None:
        return []
    intervals = _intervals(data)
    found = []
    for r in data.selection.results:
        if r.status != "ok" or not r.latency_ms or not r.gzip_bytes or r.accuracy is None:
            continue
        low, high = intervals.get(r.id) or (wilson(r.accuracy, r.test_n) if r.test_n else (None, None))
        found.append(Point(id=r.id, precision=r.precision, accuracy=r.accuracy, low=low, high=high,
                           gzip_bytes=r.gzip_bytes, latency_ms=r.latency_ms, front_size=bool(r.front_size),
                           front_latency=bool(r.front_latency)))
    return found


def dominates(a: Point, b: Point) -> bool:
    """``a`` is at least as accurate, as small and as fast as ``b``, and better in at least one."""
    at_least = a.accuracy >= b.accuracy and a.gzip_bytes <= b.gzip_bytes and a.latency_ms <= b.latency_ms
    better = a.accuracy > b.accuracy or a.gzip_bytes < b.gzip_bytes or a.latency_ms < b.latency_ms
    return at_least and better


def _stored_test(data: ReportData, a: str, b: str) -> Test | None:
    for c in (data.stats or {}).get("comparisons") or []:
        if {c.get("a"), c.get("b")} == {a, b} and c.get("p_holm") is not None:
            sign = 1 if c["a"] == a else -1
            low, high = sign * c["low_pp"], sign * c["high_pp"]
            return Test(a=a, b=b, diff_pp=sign * c["diff_pp"], low_pp=min(low, high), high_pp=max(low, high),
                        p=c["p_holm"], significant=bool(c.get("significant")), adjusted=True)
    return None


def paired_test(data: ReportData, a: str, b: str) -> Test | None:
    """a vs b from stats.json when it holds the pair, else one exact McNemar test on predictions.csv."""
    stored = _stored_test(data, a, b)
    if stored is not None:
        return stored
    from trashnet.stages import stats
    from trashnet.core.config import StatsConfig

    variants = {v.id: v for v in data.variants}
    try:
        predictions = {name: stats.Predictions.read(name, variants[name].folder) for name in (a, b)}
    except (KeyError, OSError, ValueError, stats.StatsError):
        return None
    cfg = StatsConfig()
    # The final model against another file: the family of stats.json closest to it (the record is not stored).
    result = stats.compare("final_vs_reference", a, b, predictions, cfg)
    if isinstance(result, str):
        return None
    return Test(a=a, b=b, diff_pp=result.diff_pp, low_pp=result.low_pp, high_pp=result.high_pp,
                p=result.p_value, significant=result.p_value < cfg.alpha, adjusted=False)


def answer(data: ReportData) -> Answer | None:
    """The research question's answer, by a rule stated in the chapter: of the results no other result beats
    in accuracy, size and latency at once (the three-way Pareto front), those whose accuracy lies inside the
    95 % interval of the most accurate one cannot be told apart on this test split; of them the one with the
    smallest gzipped file (ties: the faster) is the network for a phone. Size decides because it carries over
    to a phone as measured; the latency here is a server CPU's. The shipped file is judged against it."""
    found = points(data)
    chosen = next((p for p in found if data.selection and p.id == data.selection.chosen.id), None)
    front = [p for p in found if not any(dominates(q, p) for q in found)]
    if chosen is None or not front:
        return None
    top = max(front, key=lambda p: (p.accuracy, -p.gzip_bytes, -p.latency_ms))
    floor = top.low if top.low is not None else top.accuracy
    tied = [p for p in front if p.accuracy >= floor]
    best = min(tied, key=lambda p: (p.gzip_bytes, p.latency_ms))
    dominating = [p for p in found if dominates(p, chosen)]
    by = max(dominating, key=lambda p: (p.accuracy, -p.gzip_bytes), default=None)
    return Answer(most_accurate=top, best=best, chosen=chosen, chosen_is_best=best.id == chosen.id,
                  chosen_dominated=bool(dominating), dominated_by=by, dominators=len(dominating),
                  test=None if best.id == chosen.id else paired_test(data, best.id, chosen.id),
                  considered=len(found), front=[p.id for p in sorted(front, key=lambda p: -p.accuracy)],
                  tied=[p.id for p in sorted(tied, key=lambda p: p.gzip_bytes)])


def latency(data: ReportData) -> LatencyFinding | None:
    by: dict[str, list[float]] = defaultdict(list)
    census: dict[str, list[int]] = defaultdict(list)
    for v in data.group("quantized") + data.group("hybrid"):
        if v.metrics is None or not v.metrics.precision:
            continue
        key, ms = v.latency()
        if key == "tflite_threads1" and ms:
            by[v.metrics.precision].append(ms)
        if v.metrics.op_census:
            census[v.metrics.precision].append(int(v.metrics.op_census.get("float_compute_ops") or 0))
    if not by:
        return None
    medians = {p: pystats.median(values) for p, values in sorted(by.items())}
    finding = LatencyFinding(by_precision=medians, fp32=medians.get("fp32"))
    finding.slowest = max(medians, key=medians.get)
    finding.slowest_ms = medians[finding.slowest]
    if finding.fp32:
        finding.slowest_ratio = finding.slowest_ms / finding.fp32
        finding.slow = finding.slowest_ratio >= SLOW_RATIO
    if census.get(finding.slowest):
        finding.slowest_float_ops = max(census[finding.slowest])
    return finding


def sparsity(data: ReportData) -> SparsityFinding | None:
    pruned = [v for v in data.group("pruned") if v.metrics is not None and v.metrics.dense_baseline]
    if not pruned:
        return None
    speedups = [v.metrics.dense_baseline.get("tflite_threads1_speedup") for v in pruned]
    speedups = [s for s in speedups if s]
    gzip = [v.metrics.dense_baseline.get("tflite_gzip_reduction_pct") for v in pruned]
    gzip = [g for g in gzip if g is not None]
    raw = [v.metrics.dense_baseline.get("tflite_raw_reduction_pct") for v in pruned]
    raw = [r for r in raw if r is not None]
    finding = SparsityFinding(speedup_min=min(speedups, default=None), speedup_max=max(speedups, default=None),
                              gzip_reduction_min=min(gzip, default=None), gzip_reduction_max=max(gzip, default=None),
                              raw_reduction_max=max(raw, default=None))
    finding.faster = bool(speedups) and max(speedups) >= FASTER_RATIO
    two_four = [v.metrics.dense_baseline.get("accuracy_delta_pp") for v in pruned
                if v.id.endswith(".prune-2of4") and v.metrics.dense_baseline.get("accuracy_delta_pp") is not None]
    if two_four:
        finding.two_four_min_pp, finding.two_four_max_pp, finding.two_four_n = min(two_four), max(two_four), len(two_four)
    comparison = getattr(data, "comparison", None)
    other = [r.other_pp for r in (comparison.pruning if comparison is not None else []) if r.method == "prune-2of4"]
    if other:
        finding.other_run, finding.other_weights = comparison.other, comparison.other_weights
        finding.other_min_pp, finding.other_max_pp, finding.other_n = min(other), max(other), len(other)
    tests = [(v, _stored_test(data, v.id, v.metrics.dense_baseline.get("source") or "")) for v in pruned]
    tests = [(v, t) for v, t in tests if t is not None]
    if tests:
        v, worst = min(tests, key=lambda item: item[1].diff_pp)
        total = (v.metrics.sparsity or {}).get("total")
        finding.biggest_drop = worst
        finding.biggest_drop_sparsity = total.get("sparsity") if isinstance(total, dict) else None
    return finding


def significance(data: ReportData) -> SignificanceFinding | None:
    comparisons = (data.stats or {}).get("comparisons") or []
    if not comparisons:
        return None
    families: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    significant = []
    for c in comparisons:
        families[c["family"]][1] += 1
        if c.get("significant"):
            families[c["family"]][0] += 1
            significant.append(Test(a=c["a"], b=c["b"], diff_pp=c["diff_pp"], low_pp=c.get("low_pp"),
                                    high_pp=c.get("high_pp"), p=c["p_holm"], significant=True, adjusted=True))
    return SignificanceFinding(total=len(comparisons), significant=significant,
                               families={k: (v[0], v[1]) for k, v in families.items()})


def budgets(data: ReportData) -> list[Budget]:
    found = []
    for v in data.group("baseline"):
        config = v.metrics.config if v.metrics is not None else {}
        if config:
            train = config.get("train") or {}
            pretrained = str((config.get("model") or {}).get("weights", "none")) not in ("none", "None")
            found.append(Budget(arch=v.id, epochs=train.get("epochs"),
                                head_epochs=train.get("head_epochs") if pretrained else None))
    return found


def classes(data: ReportData) -> ClassFinding | None:
    chosen = data.chosen
    if chosen is None or not chosen.scored or not chosen.metrics.test.per_class:
        return None
    scores = chosen.metrics.test.per_class
    weakest = min(scores, key=lambda c: scores[c].f1)
    found = ClassFinding(weakest=weakest, weakest_f1=scores[weakest].f1, weakest_support=scores[weakest].support,
                         smallest=min(scores, key=lambda c: scores[c].support))
    matrix, names = chosen.metrics.test.confusion_matrix, chosen.metrics.classes
    if matrix and names:
        n, i, j = max((matrix[i][j], i, j) for i in range(len(matrix)) for j in range(len(matrix)) if i != j)
        if n:
            found.confused_true, found.confused_predicted, found.confused_n = names[i], names[j], n
    return found


def collapsed(data: ReportData) -> Collapsed | None:
    """The quantized files whose test predictions go to one class for at least ``COLLAPSED_SHARE`` of the
    images (the column sums of their confusion matrix)."""
    found = Collapsed()
    labels: list[str] = []
    methods = []
    for v in data.group("quantized") + data.group("hybrid"):
        if not v.scored or not v.metrics.test.confusion_matrix:
            continue
        matrix = v.metrics.test.confusion_matrix
        columns = [sum(row[j] for row in matrix) for j in range(len(matrix[0]))]
        if sum(columns) and max(columns) >= COLLAPSED_SHARE * sum(columns):
            found.ids.append(v.id)
            labels.append(v.metrics.classes[columns.index(max(columns))] if v.metrics.classes else "")
            found.accuracy = max(found.accuracy or 0.0, v.value("accuracy") or 0.0)
            methods.append(".qat." in f".{v.id}." or ".pqat." in f".{v.id}.")
    if not found.ids:
        return None
    found.label = max(set(labels), key=labels.count) or None
    found.qat_only = all(methods)
    return found


def method(data: ReportData) -> Method:
    found = Method()
    baseline = next((v for v in data.group("baseline") if v.metrics is not None and v.metrics.config), None)
    if baseline is not None:
        config = baseline.metrics.config
        train, model, split = config.get("train") or {}, config.get("model") or {}, config.get("data") or {}
        found.split, found.seed = split.get("split"), config.get("seed")
        found.image_size, found.batch_size = model.get("image_size"), train.get("batch_size")
        found.learning_rate, found.weight_decay = train.get("learning_rate"), train.get("weight_decay")
        found.label_smoothing = train.get("label_smoothing")
        weights = str(model.get("weights", "none"))
        if weights not in ("none", "None"):
            found.weights = weights
            found.head_epochs, found.head_learning_rate = train.get("head_epochs"), train.get("head_learning_rate")
            found.finetune_epochs = train.get("epochs")
            found.finetune_learning_rate = train.get("finetune_learning_rate")
        found.input_scale = int(model.get("input_scale") or 1)
        training = baseline.metrics.training or {}
        found.images = {k: training[f"{k}_images"] for k in ("train", "validation", "test")
                        if training.get(f"{k}_images")}
        found.libraries = {k: str(v) for k, v in sorted((baseline.metrics.provenance.get("libraries") or {}).items())}
    for v in data.group("baseline"):
        if v.metrics is None:
            continue
        if (v.metrics.arch or "").endswith("_minimalistic"):
            found.minimalistic.append(v.id)
        weights = str(v.metrics.weights or "")
        if "transplanted" in weights:
            found.transplanted.append(v.id)
        found.dequantized = found.dequantized or "dequantized" in weights
    prune_epochs: dict[str, int] = {}
    for v in data.variants:
        config = v.metrics.config if v.metrics is not None else {}
        if v.stage == "prune" and config.get("prune"):
            prune = config["prune"]
            if prune.get("method") and prune["method"] not in found.prune_methods:
                found.prune_methods.append(prune["method"])
            if prune.get("epochs") and SEED_MARK not in v.id:
                prune_epochs[v.id] = prune["epochs"]
            found.distill = found.distill or prune.get("distill")
        qat = (config.get("quantize") or {}).get("qat") if v.stage == "quantize" else None
        if qat:
            if qat.get("method") not in (None, "none") and qat["method"] not in found.qat_methods:
                found.qat_methods.append(qat["method"])
            found.qat_epochs = found.qat_epochs or qat.get("epochs")
        if v.stage == "quantize" and v.metrics is not None and v.metrics.precision \
                and v.metrics.precision not in found.precisions:
            found.precisions.append(v.metrics.precision)
    if prune_epochs:  # the usual recovery, and the models that had another (the cpu profile's hybrid chain)
        counts = Counter(prune_epochs.values())
        found.prune_epochs = max(sorted(counts), key=counts.__getitem__)
        for variant_id, epochs in prune_epochs.items():
            if epochs != found.prune_epochs:
                found.prune_epochs_other.setdefault(epochs, []).append(variant_id)
    return found


def limits(data: ReportData, best: Point | None) -> Limits:
    scored = [v for v in data.variants if v.scored]
    found = Limits()
    if scored:
        found.test_n = scored[0].metrics.test.n
        p = best.accuracy if best else max(v.value("accuracy") for v in scored)
        found.half_width_pp = 100 * Z95 * math.sqrt(p * (1 - p) / found.test_n)
    found.weights = sorted({str((v.metrics.config.get("model") or {}).get("weights", v.metrics.weights))
                            for v in data.variants if v.metrics is not None and v.metrics.config})
    found.scratch = any(w in ("none", "None") for w in found.weights)
    found.hardware = list(data.provenance.get("hardware") or [])
    found.machines = [Machine(**m) for m in data.provenance.get("machines") or []]
    ood = [v for v in data.variants if v.metrics is not None and v.metrics.ood is not None]
    if ood:
        first = ood[0].metrics.ood
        found.ood_n = first.n
        found.ood_classes = len(first.per_class) or len(set(first.class_map.values())) or None
        found.ood_min = min(v.metrics.ood.accuracy for v in ood)
        found.ood_max = max(v.metrics.ood.accuracy for v in ood)
        base = [v for v in ood if v.group == "baseline" and v.scored]
        if base:
            found.ood_baseline_min = min(v.metrics.ood.accuracy for v in base)
            found.ood_baseline_max = max(v.metrics.ood.accuracy for v in base)
            found.ood_gap_pp = 100 * pystats.mean(v.value("accuracy") - v.metrics.ood.accuracy for v in base)
        chosen = data.chosen if data.chosen is not None and data.chosen.metrics is not None else None
        if chosen is not None and chosen.metrics.ood is not None:
            found.ood_chosen = chosen.metrics.ood.accuracy
            recalls = {c: s.get("recall") for c, s in (chosen.metrics.ood.per_class or {}).items()
                       if s.get("recall") is not None}
            if recalls:
                found.ood_worst_class = min(recalls, key=recalls.get)
                found.ood_worst_recall = recalls[found.ood_worst_class]
        if found.ood_classes:
            found.ood_chance = 1 / found.ood_classes
            # "near chance": the best OOD accuracy is within the binomial half-width of guessing
            half = Z95 * math.sqrt(found.ood_chance * (1 - found.ood_chance) / first.n)
            found.ood_near_chance = found.ood_max <= found.ood_chance + 2 * half
    sds = [s.get("sd_accuracy") for s in data.seed_stats if s.get("sd_accuracy") is not None]
    found.single_seed = not sds
    found.seed_sd_max_pp = 100 * max(sds) if sds else None
    return found


def derive(data: ReportData) -> Findings:
    found = Findings(answer=answer(data), latency=latency(data), sparsity=sparsity(data),
                     significance=significance(data), method=method(data), budgets=budgets(data))
    epochs = [b.epochs for b in found.budgets if b.epochs]
    found.budgets_unequal = bool(epochs) and max(epochs) > CONFOUND_RATIO * min(epochs)
    found.budgets_equal = len(found.budgets) > 1 and len({(b.head_epochs, b.epochs) for b in found.budgets}) == 1 \
        and bool(epochs)
    found.collapsed = collapsed(data)
    found.classes = classes(data)
    found.limits = limits(data, found.answer.best if found.answer else None)
    return found
