"""Typed result files: what producers write is what readers parse; bad types fail at write time."""

from __future__ import annotations

import pydantic
import pytest

import results_tree
from trashnet.core import fileio, records, settings
from trashnet.stages import select
from trashnet.core.config import SelectConfig


def test_a_record_round_trips_with_its_extra_keys(tmp_path):
    record = {"variant": "v", "stage": "quantize", "format": "tflite", "classes": ["a", "b"],
              "test": {"n": 2, "accuracy": 0.5, "macro_f1": 0.4,
                       "per_class": {"a": {"precision": 1.0, "recall": 0.5, "f1": 0.6, "support": 1}}},
              "size": {"file": "v.tflite", "raw_bytes": 10, "gzip_bytes": 8},
              "latency_ms": {"tflite_threads1": {"median": 1.5, "p90": 2.0, "mean": 1.6, "runs": 5}},
              "op_census": {"total": 3, "by_op": {"CONV_2D": 3}}, "io": {"input_dtype": "float32"}}
    records.write_metrics(tmp_path, record)
    assert fileio.read_json(tmp_path / settings.METRICS_FILE) == record  # nothing added, nothing lost
    parsed = records.read_metrics(tmp_path)
    assert parsed.test.per_class["a"].support == 1
    assert parsed.latency(("tflite_threads2", "tflite_threads1")) == ("tflite_threads1", 1.5)
    assert parsed.ood is None  # the OOD block is optional: absent = not run


def test_the_ood_block_is_typed(tmp_path):
    ood = {"dataset": "ood-dev", "n": 355, "accuracy": 0.19, "macro_f1": 0.15, "per_class": {},
           "class_map": {"bottle": "plastic"}}
    records.write_metrics(tmp_path, {"variant": "v", "stage": "train", "ood": ood})
    assert records.read_metrics(tmp_path).ood.n == 355
    with pytest.raises(pydantic.ValidationError):
        records.write_metrics(tmp_path, {"variant": "v", "stage": "train", "ood": {"dataset": "x"}})


def test_a_wrong_type_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(pydantic.ValidationError, match="raw_bytes"):
        records.write_metrics(tmp_path, {"variant": "v", "stage": "train",
                                         "size": {"raw_bytes": "big", "gzip_bytes": 1}})
    assert not (tmp_path / settings.METRICS_FILE).exists()
    record, problem = records.try_read(records.read_metrics, tmp_path)
    assert record is None and "missing" in problem


def test_selection_written_by_select_parses(tmp_path):
    results_tree.standard_tree(tmp_path / "models")
    selection = select.select(tmp_path / "models", SelectConfig())
    select.write_selection(selection, tmp_path)
    parsed = records.read_selection(tmp_path)
    assert parsed.chosen.id == parsed.eligible[0] and parsed.chosen.id in parsed.candidates
    assert {row.id for row in parsed.results} >= set(parsed.candidates)
    assert parsed.pareto.size  # the fronts are recorded


def test_an_unreadable_metrics_file_is_a_row_with_a_reason(tmp_path):
    folder = results_tree.write_result(tmp_path / "models", "train", "mobilenet_v3_small",
                                       arch="mobilenet_v3_small", accuracy=0.7, gzip_bytes=1000)
    record = fileio.read_json(folder / settings.METRICS_FILE)
    record["test"]["n"] = "many"
    fileio.write_json(folder / settings.METRICS_FILE, record)
    rows = select.read_results(tmp_path / "models")
    assert rows[0]["status"] == "unreadable" and "n" in rows[0]["error"]
