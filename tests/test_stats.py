"""Statistics behind every comparison (trashnet/stages/stats.py): known answers, coverage, determinism, stats.json.

Everything runs on hand-made predictions: no training, no TensorFlow.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from results_tree import CLASSES, write_result

from trashnet.nets import scoring
from trashnet.stages import select, stats
from trashnet.core.config import SelectConfig, StatsConfig

FAST = StatsConfig(resamples=1000)  # plenty for the checks below; the pipeline uses 9,999
LARGE, PRUNED = "mobilenet_v3_large", "mobilenet_v3_large.prune-2of4"


def vectors(a_only: int, b_only: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image correctness of two models with the given 2x2 table."""
    a = np.array([1] * a_only + [0] * b_only + [1] * both + [0] * neither, dtype=bool)
    b = np.array([0] * a_only + [1] * b_only + [1] * both + [0] * neither, dtype=bool)
    return a, b


# --- known answers ---------------------------------------------------------------------------------

def test_exact_mcnemar_on_a_published_table():
    # Fagerland, Lydersen & Laake (2013), "The McNemar test for binary matched-pairs data: mid-p and
    # asymptotic are better than exact conditional", BMC Med Res Methodol 13:91, Table 1 (Bentur et al. 2009,
    # airway hyper-responsiveness before/after): 1 yes/yes, 1 yes/no, 7 no/yes, 12 no/no. Their exact
    # conditional McNemar p-value: 0.070 (= 2 * 9 / 256).
    assert stats.mcnemar_exact(1, 7) == pytest.approx(0.0703125, abs=1e-9)
    assert stats.mcnemar_exact(7, 1) == pytest.approx(0.0703125, abs=1e-9)
    a, b = vectors(a_only=1, b_only=7, both=1, neither=12)
    comparison = stats.paired_comparison("pruned_vs_dense", "a", "b", a, b, FAST)
    assert (comparison.a_only_correct, comparison.b_only_correct, comparison.n) == (1, 7, 21)
    assert comparison.p_value == pytest.approx(0.070, abs=5e-4)
    assert comparison.diff_pp == pytest.approx(100 * (2 - 8) / 21)


def test_exact_mcnemar_matches_the_binomial_test_on_agrestis_table():
    # Agresti (2007), An Introduction to Categorical Data Analysis, 2nd ed., Table 8.1 (presidential approval,
    # 1600 people asked twice): discordant 150 and 86; his McNemar z^2 = 17.36, P < 0.001.
    from scipy.stats import binomtest

    p_value = stats.mcnemar_exact(150, 86)
    assert p_value == pytest.approx(binomtest(86, 236, 0.5).pvalue, rel=1e-9)
    assert p_value < 0.001
    assert stats.mcnemar_exact(0, 0) == 1.0  # no discordant image: no evidence of any difference


def test_holm_on_known_p_values():
    # Holm (1979) by hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04,
    # made monotone: 0.02, 0.03, 0.06, 0.06.
    adjusted, reject = stats.holm([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert reject == [True, False, False, True]
    assert stats.holm([], 0.05) == ([], [])


def test_vectorized_macro_f1_equals_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, size=(40, 60))
    predicted = np.where(rng.random((40, 60)) < 0.7, labels, rng.integers(0, 6, size=(40, 60)))
    labels[0] = np.where(labels[0] == 5, 4, labels[0])  # a class absent from one resample's labels...
    predicted[0] = np.where(predicted[0] == 5, 4, predicted[0])  # ...and from its predictions: F1 0
    expected = [f1_score(y, p, labels=range(6), average="macro", zero_division=0) for y, p in zip(labels, predicted)]
    assert stats.macro_f1(labels, predicted, 6) == pytest.approx(expected, abs=1e-12)
    assert stats.macro_f1(labels.T, predicted.T, 6, axis=0) == pytest.approx(expected, abs=1e-12)


# --- intervals ---------------------------------------------------------------------------------------

def test_accuracy_interval_covers_the_true_accuracy_about_95_percent_of_the_time():
    # 200 simulated test sets of 430 images from a model whose true accuracy is 0.8.
    rng = np.random.default_rng(2026)
    hits = 0
    for _ in range(200):
        interval = stats.accuracy_interval(rng.random(430) < 0.8, FAST)
        hits += interval.low <= 0.8 <= interval.high
        assert interval.low <= interval.estimate <= interval.high
    # Binomial SD of the coverage over 200 sets is 1.5 pp: 0.90-0.99 is a > 3 SD band around 0.95.
    assert 0.90 <= hits / 200 <= 0.99
    # About +/-3.8 pp at n = 430, p = 0.8 (normal approximation 1.96 * sqrt(0.16 / 430)).
    assert 100 * (interval.high - interval.low) / 2 == pytest.approx(3.8, abs=0.6)


def test_paired_difference_interval_covers_the_true_difference():
    # 200 simulated pairs of models on 430 images: 4 % right only by a, 6 % only by b: a - b = -2 pp.
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(200):
        u = rng.random(430)
        a = (u < 0.04) | (u >= 0.25)
        b = ((u >= 0.04) & (u < 0.10)) | (u >= 0.25)
        comparison = stats.paired_comparison("pruned_vs_dense", "a", "b", a, b, FAST)
        hits += comparison.low_pp <= -2.0 <= comparison.high_pp
    assert 0.90 <= hits / 200 <= 0.99


@pytest.mark.slow  # ~5 s: 200 macro-F1 bootstraps with BCa
def test_macro_f1_interval_covers_the_population_macro_f1():
    # TrashNet's class sizes; 80 % right, errors spread evenly: per class TP = 0.8 p_k, FN = 0.2 p_k,
    # FP = 0.04 (1 - p_k), so the population macro-F1 is known exactly.
    prior = np.array([403, 501, 410, 594, 482, 137]) / 2527
    truth = np.mean(2 * 0.8 * prior / (2 * 0.8 * prior + 0.04 * (1 - prior) + 0.2 * prior))
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(200):
        labels = rng.choice(6, 430, p=prior)
        predicted = np.where(rng.random(430) < 0.8, labels, (labels + rng.integers(1, 6, 430)) % 6)
        interval = stats.macro_f1_interval(labels, predicted, 6, FAST)
        hits += interval.low <= truth <= interval.high
    assert 0.90 <= hits / 200 <= 0.99


def test_same_seed_gives_bit_identical_intervals_and_another_seed_does_not():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 6, 300)
    predicted = np.where(rng.random(300) < 0.75, labels, rng.integers(0, 6, 300))
    first = stats.macro_f1_interval(labels, predicted, 6, FAST, variant="x")
    again = stats.macro_f1_interval(labels, predicted, 6, FAST, variant="x")
    assert first.model_dump() == again.model_dump()
    assert stats.accuracy_interval(labels == predicted, FAST) == stats.accuracy_interval(labels == predicted, FAST)
    other = stats.macro_f1_interval(labels, predicted, 6, StatsConfig(resamples=1000, seed=1), variant="x")
    assert (other.low, other.high) != (first.low, first.high)
    assert first.method == "BCa" and first.resamples == 1000 and first.seed == 0 and first.n == 300


def test_degenerate_resamples_fall_back_to_percentile_and_say_so():
    interval = stats.accuracy_interval(np.ones(50, dtype=bool), FAST)
    assert (interval.low, interval.high) == (1.0, 1.0)
    assert interval.method.startswith("percentile")
    a, b = vectors(a_only=0, b_only=0, both=30, neither=10)
    same = stats.paired_comparison("baselines", "a", "b", a, b, FAST)
    assert (same.diff_pp, same.low_pp, same.high_pp, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert "percentile" in same.method
    with pytest.raises(stats.StatsError, match="too few"):
        stats.accuracy_interval([True], FAST)


def test_paired_interval_brackets_the_difference():
    a, b = vectors(a_only=5, b_only=25, both=300, neither=100)
    comparison = stats.paired_comparison("pruned_vs_dense", "a", "b", a, b, FAST)
    assert comparison.diff_pp == pytest.approx(-20 / 430 * 100)
    assert comparison.low_pp < comparison.diff_pp < comparison.high_pp < 0  # clearly worse
    assert comparison.p_value < 0.001


# --- stats.json from result files ----------------------------------------------------------------------

def write_predicted(models_dir, stage, variant, labels, predicted, *, source=None, seed=42, precision=None,
                    paths=None, **kwargs):
    """A finished result folder with metrics.json (accuracy from the predictions) and predictions.csv."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    accuracy = float((labels == predicted).mean())
    folder = write_result(models_dir, stage, variant, arch=LARGE if LARGE in variant else variant.split(".")[0],
                          accuracy=accuracy, source=source, seed=seed, precision=precision,
                          gzip_bytes=kwargs.pop("gzip_bytes", 1_000_000), latency_ms=kwargs.pop("latency_ms", 3.0),
                          **kwargs)
    probabilities = np.eye(len(CLASSES))[predicted]
    paths = paths or [f"{CLASSES[y]}/image_{i:03d}.jpg" for i, y in enumerate(labels)]
    (folder / "predictions.csv").write_text(scoring.predictions_csv(paths, labels, probabilities, CLASSES))
    return folder


def noisy(labels, accuracy, seed):
    rng = np.random.default_rng(seed)
    wrong = (labels + rng.integers(1, len(CLASSES), len(labels))) % len(CLASSES)
    return np.where(rng.random(len(labels)) < accuracy, labels, wrong)


@pytest.fixture()
def tree(tmp_path):
    """Two baselines (V3-Large with three seeds), a pruned chain with two quantized files, one without
    predictions, one unfinished."""
    models = tmp_path / "models"
    labels = np.random.default_rng(0).integers(0, len(CLASSES), 200)
    for seed in (42, 43, 44):
        large = LARGE if seed == 42 else f"{LARGE}@seed{seed}"
        write_predicted(models, "train", large, labels, noisy(labels, 0.8, seed), seed=seed)
    write_predicted(models, "train", "mobilenet_v3_small", labels, noisy(labels, 0.85, 7))
    dense = noisy(labels, 0.8, 42)
    pruned = np.where(np.arange(200) < 20, noisy(labels, 0.3, 1), dense)  # much worse on 20 images
    write_predicted(models, "prune", PRUNED, labels, pruned, source=LARGE)
    write_predicted(models, "quantize", f"{PRUNED}.fp16", labels, pruned, source=PRUNED, precision="fp16",
                    gzip_bytes=1_600_000)
    int16 = pruned.copy()
    int16[100] = (labels[100] + 1) % len(CLASSES)
    write_predicted(models, "quantize", f"{PRUNED}.int16x8", labels, int16, source=PRUNED, precision="int16x8",
                    gzip_bytes=1_200_000)
    write_result(models, "quantize", f"{LARGE}.int8", arch=LARGE, source=LARGE, precision="int8", accuracy=0.7,
                 gzip_bytes=900_000, latency_ms=9.0)  # no predictions.csv
    write_predicted(models, "train", "mobilenet_v2", labels, labels, finished=False)
    return models


def test_stats_file_from_result_files(tree):
    rows = select.finished_results(tree, SelectConfig())
    result = stats.analyse(rows, tree, FAST, tolerance_pp=1.0)
    by_variant = {(i.variant, i.metric): i for i in result.intervals}
    finished = {LARGE, f"{LARGE}@seed43", f"{LARGE}@seed44", "mobilenet_v3_small", PRUNED, f"{PRUNED}.fp16",
                f"{PRUNED}.int16x8"}
    assert {v for v, _ in by_variant} == finished
    for (variant, metric), interval in by_variant.items():
        row = next(r for r in rows if r.id == variant)
        assert interval.estimate == pytest.approx(row.accuracy if metric == "accuracy" else interval.estimate)
        assert interval.low <= interval.estimate <= interval.high and interval.n == 200
    # Every result is accounted for: used, or skipped with the reason.
    skipped: dict[str, str] = {}
    for item in result.skipped:
        skipped[item.variant] = skipped.get(item.variant, "") + item.reason + "; "
    assert "unfinished" in skipped["mobilenet_v2"]
    assert "predictions.csv" in skipped[f"{LARGE}.int8"]
    pairs = {(c.family, c.a, c.b): c for c in result.comparisons}
    assert set(pairs) == {
        ("pruned_vs_dense", PRUNED, LARGE),
        ("quantized_vs_float", f"{PRUNED}.fp16", PRUNED), ("quantized_vs_float", f"{PRUNED}.int16x8", PRUNED),
        ("baselines", LARGE, "mobilenet_v3_small"),  # first seeds only
    }
    pruning = pairs[("pruned_vs_dense", PRUNED, LARGE)]
    assert pruning.b_only_correct > pruning.a_only_correct and pruning.diff_pp < 0
    identical = pairs[("quantized_vs_float", f"{PRUNED}.fp16", PRUNED)]
    assert (identical.diff_pp, identical.p_value, identical.significant) == (0.0, 1.0, False)
    # Holm within the quantized family: two tests, the adjusted p is never below the raw one.
    for c in result.comparisons:
        assert c.p_holm >= c.p_value - 1e-15 and c.significant == (c.p_holm < FAST.alpha)
    seeds = {s.variant: s for s in result.seeds}
    assert seeds[LARGE].seeds == [42, 43, 44] and len(seeds[LARGE].accuracy) == 3
    assert seeds[LARGE].mean_accuracy == pytest.approx(np.mean(seeds[LARGE].accuracy))
    assert seeds[LARGE].sd_accuracy == pytest.approx(np.std(seeds[LARGE].accuracy, ddof=1))
    single = seeds["mobilenet_v3_small"]  # one seed: values, mean, no SD
    assert single.seeds == [42] and single.sd_accuracy is None and single.mean_accuracy == single.accuracy[0]
    assert "1 pp" in result.tolerance and "200 test images" in result.tolerance


def test_stats_json_round_trips_and_names_every_method(tree, tmp_path):
    rows = select.finished_results(tree, SelectConfig())
    result = stats.analyse(rows, tree, FAST)
    selection = select.select(tree, SelectConfig(max_latency_ratio=None), rows=rows, statistics=result)
    result = stats.add_final(result, selection, tree, FAST)
    final = [c for c in result.comparisons if c.family == "final_vs_reference"]
    assert [(c.a, c.b) for c in final] == [(selection.chosen.id, LARGE)]
    assert final[0].p_holm == final[0].p_value  # a family of one
    path = stats.write_stats(result, tmp_path)
    assert stats.load_stats(path) == result
    body = json.loads(path.read_text())
    assert set(body) >= {"method", "intervals", "comparisons", "seeds"}
    assert all(i["method"] for i in body["intervals"]) and all(c["method"] and c["test"] for c in body["comparisons"])
    assert "BCa" in body["method"]["interval"] and "holm" in body["method"]["correction"].lower()
    assert "| pruned_vs_dense |" in stats.comparisons_markdown(result)


def test_images_that_differ_are_not_paired(tmp_path):
    models = tmp_path / "models"
    labels = np.arange(60) % len(CLASSES)
    write_predicted(models, "train", LARGE, labels, labels)
    write_predicted(models, "prune", PRUNED, labels, labels, source=LARGE,
                    paths=[f"{CLASSES[y]}/other_{i:03d}.jpg" for i, y in enumerate(labels)])
    result = stats.analyse(select.finished_results(models, SelectConfig()), models, FAST)
    assert result.comparisons == []
    assert any("different images" in s.reason for s in result.skipped)


# --- selection with seeds and the optional significance rule ------------------------------------------

def test_selection_judges_candidates_on_their_seed_mean_and_says_so(tmp_path):
    models = tmp_path / "models"
    labels = np.arange(300) % len(CLASSES)
    write_predicted(models, "train", LARGE, labels, noisy(labels, 0.8, 0))
    write_predicted(models, "prune", PRUNED, labels, noisy(labels, 0.8, 1), source=LARGE)
    # fp16's first seed is the most accurate, but its extra seed is much worse: its mean falls below int16x8.
    base = noisy(labels, 0.8, 2)
    base[:30] = (labels[:30] + 1) % len(CLASSES)
    fp16, int16 = base.copy(), base.copy()
    fp16[:20], int16[:10] = labels[:20], labels[:10]  # fp16 is 10 images (3.3 pp) ahead on its first seed
    write_predicted(models, "quantize", f"{PRUNED}.fp16", labels, fp16, source=PRUNED, precision="fp16",
                    gzip_bytes=1_600_000)
    write_predicted(models, "quantize", f"{PRUNED}.fp16@seed43", labels, noisy(labels, 0.6, 4), seed=43,
                    source=f"{PRUNED}@seed43", precision="fp16", gzip_bytes=1_600_000)
    write_predicted(models, "quantize", f"{PRUNED}.int16x8", labels, int16, source=PRUNED, precision="int16x8",
                    gzip_bytes=1_700_000)
    config = SelectConfig(accuracy_tolerance_pp=0.0, max_latency_ratio=None)
    by_mean = select.select(models, config)
    assert by_mean.candidates == [f"{PRUNED}.fp16", f"{PRUNED}.int16x8"]  # the extra seed is not one
    assert by_mean.chosen.id == f"{PRUNED}.int16x8"
    assert by_mean.accuracy_basis.startswith("mean over seeds")
    rows = {r.id: r for r in by_mean.results}
    assert rows[f"{PRUNED}.fp16"].seeds == [42, 43]
    assert "extra seed of" in rows[f"{PRUNED}.fp16@seed43"].excluded
    by_first = select.select(models, config.model_copy(update={"seed_accuracy": "first"}))
    assert by_first.chosen.id == f"{PRUNED}.fp16" and by_first.accuracy_basis.startswith("first seed")


def test_not_significantly_worse_eligibility(tmp_path):
    models = tmp_path / "models"
    labels = np.arange(400) % len(CLASSES)
    best = noisy(labels, 0.85, 0)
    close = best.copy()
    close[:4] = (labels[:4] + 1) % len(CLASSES)  # 4 images worse (1 pp): not significant
    far = best.copy()
    far[:60] = (labels[:60] + 1) % len(CLASSES)  # 60 images worse: significant
    for variant, predicted, size in (("fp16", best, 3_000_000), ("int16x8", close, 2_000_000),
                                     ("int8-dynamic", far, 1_000_000)):
        write_predicted(models, "quantize", f"{PRUNED}.{variant}", labels, predicted, source=PRUNED,
                        precision=variant, gzip_bytes=size)
    config = SelectConfig(precisions=("fp16", "int16x8", "int8-dynamic"), source_stage=None,
                          eligibility="not-significantly-worse", max_latency_ratio=None)
    selection = select.select(models, config, stats_config=FAST)
    rows = {r.id: r for r in selection.results}
    assert selection.eligible == [f"{PRUNED}.int16x8", f"{PRUNED}.fp16"]
    assert "significantly less accurate" in rows[f"{PRUNED}.int8-dynamic"].excluded
    assert "not significantly worse" in selection.rule


def test_the_tolerance_sentence_follows_the_interval_width():
    wide = stats.Interval(variant="x", metric="accuracy", estimate=0.8, low=0.76, high=0.84, confidence=0.95,
                          method="BCa", resamples=1000, seed=0, n=430)
    narrow = wide.model_copy(update={"low": 0.798, "high": 0.802, "n": 100_000})
    assert "cannot be told apart" in stats.tolerance_text([wide], 1.0, 0.95)
    assert "4.3 of 430" in stats.tolerance_text([wide], 1.0, 0.95)
    assert "may well be real" in stats.tolerance_text([narrow], 1.0, 0.95)
    assert stats.tolerance_text([], 1.0, 0.95) is None
