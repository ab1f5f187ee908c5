"""The selection rule on hand-made result files (no training, no TensorFlow)."""

from __future__ import annotations

import json

import pytest
from results_tree import standard_tree, write_result

from trashnet.stages import select
from trashnet.core.config import SelectConfig

LARGE, PRUNED = "mobilenet_v3_large", "mobilenet_v3_large.prune-2of4"


def results_by_id(selection):
    return {row.id: row for row in selection.results}


def test_without_a_latency_ratio_the_smallest_hybrid_within_tolerance_wins(tmp_path):
    selection = select.select(standard_tree(tmp_path), SelectConfig(max_latency_ratio=None))
    assert selection.fallback is None
    assert selection.candidates == [f"{PRUNED}.fp16", f"{PRUNED}.int16x8"]
    assert selection.chosen.id == f"{PRUNED}.int16x8"
    assert selection.chosen.file == f"quantize/{PRUNED}.int16x8/{PRUNED}.int16x8.tflite"
    assert selection.best_candidate_accuracy == pytest.approx(0.795)
    # The float V3-Large baseline is the reference: 0.800 - 0.790 = 1 pp, over the 0.5 pp target.
    assert selection.reference.id == LARGE
    assert selection.accuracy_drop_pp == pytest.approx(1.0)
    assert selection.meets_target is False
    assert "1 pp of the best" in selection.rule
    rows = results_by_id(selection)
    assert rows[f"{PRUNED}.int16x8-fallback"].status == "conversion-failed"
    assert "16x8" in rows[f"{PRUNED}.int16x8-fallback"].excluded
    assert "outside the hybrid family" in rows[f"{PRUNED}.int8"].excluded
    assert "outside the hybrid family" in rows[f"{LARGE}.fp16"].excluded  # baseline source
    assert "not a TFLite result" in rows[LARGE].excluded


def test_default_rule_drops_a_small_file_that_runs_many_times_slower(tmp_path):
    selection = select.select(standard_tree(tmp_path), SelectConfig())
    assert selection.chosen.id == f"{PRUNED}.fp16"  # int16x8 is smaller but ~40 ms on reference kernels
    assert "3x the fastest eligible" in results_by_id(selection)[f"{PRUNED}.int16x8"].excluded
    assert "at most 3x the fastest" in selection.rule
    assert selection.eligible == [f"{PRUNED}.fp16"]


def test_a_tighter_tolerance_changes_the_choice(tmp_path):
    selection = select.select(standard_tree(tmp_path), SelectConfig(accuracy_tolerance_pp=0.3))
    assert selection.chosen.id == f"{PRUNED}.fp16"
    assert selection.eligible == [f"{PRUNED}.fp16"]
    assert "more than 0.3 pp below" in results_by_id(selection)[f"{PRUNED}.int16x8"].excluded
    assert selection.accuracy_drop_pp == pytest.approx(0.5)
    assert selection.meets_target is True


def test_nothing_is_hard_coded_the_family_comes_from_the_config(tmp_path):
    config = SelectConfig(architecture="mobilenet_v3_small", source_stage=None, precisions=())
    selection = select.select(standard_tree(tmp_path), config)
    assert selection.chosen.id == "mobilenet_v3_small.int8"
    assert selection.reference.id == "mobilenet_v3_small"
    assert selection.accuracy_drop_pp == pytest.approx(2.0)


def test_equal_sizes_are_broken_by_latency_then_id(tmp_path):
    for name, latency in (("a", 5.0), ("b", 3.0), ("c", 3.0)):
        write_result(tmp_path, "quantize", f"{PRUNED}.{name}", arch=LARGE, source=PRUNED, precision="fp16",
                     accuracy=0.9, gzip_bytes=1000, latency_ms=latency)
    write_result(tmp_path, "prune", PRUNED, arch=LARGE, source=LARGE, accuracy=0.9, gzip_bytes=10)
    selection = select.select(tmp_path, SelectConfig())
    assert selection.chosen.id == f"{PRUNED}.b"
    assert selection.size_ties == [f"{PRUNED}.b", f"{PRUNED}.c", f"{PRUNED}.a"]
    assert selection.reference is None and selection.meets_target is None


def test_missing_latency_loses_a_tie(tmp_path):
    write_result(tmp_path, "quantize", "x.fp16", arch=LARGE, source=PRUNED, precision="fp16", accuracy=0.9,
                 gzip_bytes=1000, source_stage="prune")
    write_result(tmp_path, "quantize", "y.fp16", arch=LARGE, source=PRUNED, precision="fp16", accuracy=0.9,
                 gzip_bytes=1000, latency_ms=50.0, source_stage="prune")
    assert select.select(tmp_path, SelectConfig()).chosen.id == "y.fp16"


def test_fallback_to_every_tflite_result_is_recorded(tmp_path):
    write_result(tmp_path, "train", LARGE, arch=LARGE, accuracy=0.8, gzip_bytes=11_000_000)
    write_result(tmp_path, "quantize", f"{LARGE}.int8", arch=LARGE, source=LARGE, precision="int8",
                 accuracy=0.78, gzip_bytes=3_000_000, latency_ms=9.0)
    write_result(tmp_path, "quantize", f"{LARGE}.fp16", arch=LARGE, source=LARGE, precision="fp16",
                 accuracy=0.80, gzip_bytes=6_000_000, latency_ms=3.0)
    write_result(tmp_path, "quantize", f"{PRUNED}.int16x8", arch=LARGE, source=PRUNED, precision="int16x8",
                 failed="RuntimeError: boom")
    selection = select.select(tmp_path, SelectConfig(accuracy_tolerance_pp=1.0))
    assert selection.fallback.candidates == "every usable TFLite result"
    assert "no usable result of the hybrid family" in selection.fallback.reason
    assert selection.candidates == [f"{LARGE}.fp16", f"{LARGE}.int8"]
    assert selection.chosen.id == f"{LARGE}.fp16"  # int8 is 2 pp below: not eligible
    assert "Fallback used" in select.summary_markdown(selection)


def test_unusable_results_are_tolerated_and_explained(tmp_path):
    write_result(tmp_path, "quantize", f"{PRUNED}.fp16", arch=LARGE, source=PRUNED, precision="fp16",
                 accuracy=0.9, gzip_bytes=100, write_model=False, source_stage="prune")
    write_result(tmp_path, "quantize", f"{PRUNED}.int16x8", arch=LARGE, source=PRUNED, precision="int16x8",
                 gzip_bytes=200, source_stage="prune")  # no test metrics
    partial = tmp_path / "quantize" / f".{PRUNED}.int8.partial-123"  # the runner's unfinished copy
    partial.mkdir(parents=True)
    (partial / "metrics.json").write_text("{}", encoding="utf-8")
    broken = tmp_path / "quantize" / "broken"
    broken.mkdir(parents=True)
    (broken / "metrics.json").write_text("{not json", encoding="utf-8")
    write_result(tmp_path, "quantize", "ok.int8", arch="mobilenet_v2", source="mobilenet_v2", precision="int8",
                 accuracy=0.5, gzip_bytes=300, latency_ms=1.0)
    selection = select.select(tmp_path, SelectConfig())
    rows = results_by_id(selection)
    assert rows[f"{PRUNED}.fp16"].excluded == "model file missing"
    assert rows[f"{PRUNED}.int16x8"].status == "no-test"
    assert rows["broken"].status == "unreadable"
    assert not any(".partial-" in name for name in rows)
    assert selection.fallback is not None and selection.chosen.id == "ok.int8"


def test_no_usable_result_is_an_error_that_names_them(tmp_path):
    write_result(tmp_path, "quantize", f"{PRUNED}.int16x8", arch=LARGE, source=PRUNED, precision="int16x8",
                 failed="RuntimeError: boom")
    with pytest.raises(select.SelectionError, match="boom"):
        select.select(tmp_path, SelectConfig())
    with pytest.raises(select.SelectionError, match="no metrics.json"):
        select.select(tmp_path / "empty", SelectConfig())


def test_pareto_front():
    points = [("a", 0.80, 10.0), ("b", 0.79, 5.0), ("c", 0.78, 6.0), ("d", 0.80, 12.0), ("e", 0.70, 1.0),
              ("f", 0.79, 5.0)]
    # c is beaten by b; d by a; b and f tie exactly, so neither dominates the other.
    assert select.pareto_front(points) == ["e", "b", "f", "a"]


def test_fronts_table_and_selection_file(tmp_path):
    selection = select.select(standard_tree(tmp_path / "models"), SelectConfig())
    assert selection.pareto.size == ["mobilenet_v3_small.int8", f"{PRUNED}.int8", f"{PRUNED}.int16x8",
                                           f"{PRUNED}.fp16", f"{LARGE}.fp16"]
    assert selection.pareto.latency == [f"{LARGE}.fp16"]
    table = select.table_markdown(selection)
    assert f"| {PRUNED}.int16x8 |" in table and "**chosen**" in table
    path = select.write_selection(selection, tmp_path / "final")
    assert json.loads(path.read_text())["chosen"]["id"] == f"{PRUNED}.fp16"


def test_a_latency_limit_excludes_slow_candidates(tmp_path):
    selection = select.select(standard_tree(tmp_path), SelectConfig(max_latency_ms=10.0))
    assert selection.chosen.id == f"{PRUNED}.fp16"  # int16x8 (40 ms) is smaller but too slow
    assert "over the 10 ms limit" in results_by_id(selection)[f"{PRUNED}.int16x8"].excluded
    assert "at most 10 ms" in selection.rule


def test_unfinished_and_other_profile_results_are_set_aside(tmp_path):
    models = standard_tree(tmp_path)
    # The winner's run crashed after writing metrics.json: no manifest.json, so it cannot be chosen.
    (models / "quantize" / f"{PRUNED}.fp16" / "manifest.json").unlink()
    write_result(models, "quantize", f"{PRUNED}.int8-dynamic", arch=LARGE, source=PRUNED,
                 precision="int8-dynamic", accuracy=0.9, gzip_bytes=10, latency_ms=1.0, profile="cpu",
                 source_stage="prune")
    selection = select.select(models, SelectConfig(precisions=()), profile="quick")
    rows = results_by_id(selection)
    assert "runner did not finish" in rows[f"{PRUNED}.fp16"].excluded
    assert "profile 'cpu'" in rows[f"{PRUNED}.int8-dynamic"].excluded
    assert selection.chosen.id not in (f"{PRUNED}.fp16", f"{PRUNED}.int8-dynamic")
