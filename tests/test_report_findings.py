"""The findings the chapter's prose rests on, derived from the committed thesis run (``results/cpu``, from
ImageNet) and its from-scratch comparison (``results/cpu-scratch``): each rule checked on the numbers it reads."""

from __future__ import annotations

import pytest

from trashnet.core import settings
from trashnet.report import compare, findings
from trashnet.report.chapter import rejection

CPU = settings.RESULTS_DIR / "cpu"
SCRATCH = settings.RESULTS_DIR / "cpu-scratch"


@pytest.fixture(scope="module")
def data():
    if not (CPU / "logs" / settings.RUN_RECORD).is_file() or not (SCRATCH / "logs" / settings.RUN_RECORD).is_file():
        pytest.skip(f"the committed {CPU.name} and {SCRATCH.name} results are not in this checkout")
    return compare.report_data(settings.Layout.reference(CPU), compare_with=settings.Layout.reference(SCRATCH))


@pytest.fixture(scope="module")
def found(data):
    return findings.derive(data)


def test_equal_epoch_budgets_are_recognised(found):
    assert found.budgets_equal and not found.budgets_unequal
    assert {(b.head_epochs, b.epochs) for b in found.budgets} == {(found.budgets[0].head_epochs, found.budgets[0].epochs)}
    assert found.budgets[0].head_epochs  # LP-FT: a classifier phase before fine-tuning


def test_collapsed_files_predict_one_class(data, found):
    # The committed run has none since qat.py calibrates its ranges (its first QAT files all said "cardboard"):
    # the rule finds exactly the files whose predictions fall in one column, and fires on one that does.
    def one_column(matrix):
        columns = [sum(row[j] for row in matrix) for j in range(len(matrix))]
        return max(columns) >= findings.COLLAPSED_SHARE * sum(columns)

    files = [v for v in data.group("quantized") + data.group("hybrid") if v.scored]
    expected = [v.id for v in files if one_column(v.metrics.test.confusion_matrix)]
    assert (found.collapsed.ids if found.collapsed else []) == expected
    victim = next(v for v in files if ".qat." in f".{v.id}.")
    matrix = victim.metrics.test.confusion_matrix
    saved = [row[:] for row in matrix]
    try:
        for row in matrix:
            row[:] = [sum(row)] + [0] * (len(row) - 1)
        fired = findings.collapsed(data)
    finally:
        matrix[:] = saved
    assert fired is not None and victim.id in fired.ids
    assert fired.qat_only and fired.label == victim.metrics.classes[0]
    assert data.selection.chosen.id not in fired.ids


def test_pruning_is_compared_with_the_scratch_run_by_architecture_and_method(data, found):
    rows = data.comparison.pruning
    assert rows and all(r.method == "prune-2of4" or r.method.startswith("prune") for r in rows)
    for r in rows:  # each side's change is its own run's record against its own dense source
        mine = next(v for v in data.group("pruned") if v.metrics.arch == r.arch and v.id.endswith("." + r.method))
        assert mine.metrics.dense_baseline["accuracy_delta_pp"] == r.this_pp
    P = found.sparsity
    assert P.other_n == sum(r.method == "prune-2of4" for r in rows)
    assert P.two_four_min_pp <= P.two_four_max_pp and P.other_min_pp <= P.other_max_pp


def test_ood_limits_read_the_baselines_and_the_final_model(data, found):
    Lm = found.limits
    baselines = [v.metrics.ood.accuracy for v in data.group("baseline") if v.metrics.ood is not None]
    assert (Lm.ood_baseline_min, Lm.ood_baseline_max) == (min(baselines), max(baselines))
    assert Lm.ood_chosen == data.chosen.metrics.ood.accuracy
    assert Lm.ood_worst_class in data.chosen.metrics.ood.per_class
    assert Lm.machines and Lm.machines[0].cores


def test_the_weakest_class_and_the_most_frequent_confusion(data, found):
    K = found.classes
    scores = data.chosen.metrics.test.per_class
    assert scores[K.weakest].f1 == min(s.f1 for s in scores.values())
    names = data.chosen.metrics.classes
    matrix = data.chosen.metrics.test.confusion_matrix
    assert matrix[names.index(K.confused_true)][names.index(K.confused_predicted)] == K.confused_n


def test_rejection_reasons_are_worded_by_their_code():
    reason = ("duplicate-conflict: identical bytes carry different labels (glass/a.jpg (glass), metal/b.jpg "
              "(metal)); all copies rejected")
    assert rejection("glass/a.jpg", reason) == ("identical bytes under another label; all copies rejected",
                                                "metal/b.jpg (metal)")
    assert rejection("x/c.jpg", "duplicate of x/d.jpg (kept)")[1] == "x/d.jpg"
    assert rejection("x/e.jpg", "some decoder message") == ("some decoder message", "–")


def test_pruning_epochs_name_the_models_that_recovered_longer(data):
    # The method says the usual recovery and names the models that had another (the cpu profile's hybrid chain
    # recovers for 16 epochs); both read from each pruned model's own configuration, extra seeds left out.
    pruned = [v for v in data.variants if v.stage == "prune" and v.metrics is not None]
    usual = findings.method(data).prune_epochs
    assert usual in {v.metrics.config["prune"]["epochs"] for v in pruned}
    longer = {v.id for v in pruned if v.metrics.config["prune"]["epochs"] != usual}
    assert {i for ids in findings.method(data).prune_epochs_other.values() for i in ids} == longer
    first = pruned[0]
    config = {**first.metrics.config, "prune": {**first.metrics.config["prune"], "epochs": 99}}
    provenance = {**first.metrics.provenance, "config": config}
    changed = first.model_copy(update={"metrics": first.metrics.model_copy(update={"provenance": provenance})})
    data = data.model_copy(update={"variants": [changed if v is first else v for v in data.variants]})
    assert findings.method(data).prune_epochs_other[99] == [first.id]
