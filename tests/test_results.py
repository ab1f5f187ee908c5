"""Typed result files: what producers write is what readers parse; bad types fail at write time."""

from __future__ import annotations

import pydantic
import pytest

import results_tree
from trashnet.core import fileio, records, settings
from trashnet.stages import select
from trashnet.core.config import SelectConfig


def test_a_record_round_trips_with_its_stage_keys(tmp_path):
    record = {"variant": "v", "stage": "quantize", "format": "tflite", "classes": ["a", "b"],
              "test": {"n": 2, "accuracy": 0.5, "macro_f1": 0.4,
                       "per_class": {"a": {"precision": 1.0, "recall": 0.5, "f1": 0.6, "support": 1}}},
              "size": {"file": "v.tflite", "raw_bytes": 10, "gzip_bytes": 8},
              "latency_ms": {"tflite_threads1": {"median": 1.5, "p90": 2.0, "mean": 1.6, "runs": 5}},
              "op_census": {"total": 3, "by_op": {"CONV_2D": 3}},
              "io": {"input_dtype": "float32", "output_dtype": "float32", "input_quantization": [0.0, 0]}}
    records.write_metrics(tmp_path, record)
    assert fileio.read_json(tmp_path / settings.METRICS_FILE) == record  # nothing added, nothing lost
    parsed = records.read_metrics(tmp_path)
    assert parsed.test.per_class["a"].support == 1
    assert parsed.latency(("tflite_threads2", "tflite_threads1")) == ("tflite_threads1", 1.5)
    assert parsed.ood is None  # the OOD block is optional: absent = not run
    assert isinstance(parsed, records.QuantizeMetrics)  # the stage picks the model


def test_a_key_no_stage_writes_is_refused(tmp_path):
    with pytest.raises(pydantic.ValidationError, match="dense_baseline"):  # a prune key in a train record
        records.write_metrics(tmp_path, {"variant": "v", "stage": "train", "dense_baseline": {}})
    with pytest.raises(pydantic.ValidationError, match="typo"):
        records.write_metrics(tmp_path, {"variant": "v", "stage": "quantize", "typo": 1})
    with pytest.raises(pydantic.ValidationError):
        records.write_metrics(tmp_path, {"variant": "v", "stage": "deploy"})
    assert not (tmp_path / settings.METRICS_FILE).exists()


COMMITTED = sorted(settings.RESULTS_DIR.glob("**/" + settings.METRICS_FILE))


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(settings.RESULTS_DIR)))
def test_every_committed_result_validates_under_its_stage(path):
    """Results written before the stage rename (stage "baseline", "pruned", "quantized") read as the new
    stages, with every key typed."""
    raw = fileio.read_json(path)
    record = records.read_metrics(path.parent)
    assert record.stage == settings.stage_name(raw["stage"])
    assert type(record) is records.METRICS_MODELS[record.stage]
    assert set(record.dump()) == set(raw)  # nothing dropped, nothing added


def test_committed_results_cover_every_stage():
    assert {records.read_metrics(p.parent).stage for p in COMMITTED} == set(records.METRICS_MODELS)


def test_committed_run_records_validate():
    paths = sorted(settings.RESULTS_DIR.glob("**/" + settings.RUN_RECORD))
    assert paths
    for path in paths:
        run = records.read_run_record(path.parent)
        assert run.variant and {v.stage for v in run.variant.values()} <= set(records.METRICS_MODELS)


def test_runner_files_round_trip_and_refuse_unknown_keys(tmp_path):
    manifest = {"variant": "v", "stage": "baseline", "status": "done", "key": "k", "finished": "now",
                "seconds": 1.5, "notebook": "n.ipynb", "log": "v.log", "files": {"metrics.json": "ab"},
                "inputs": {"code_sha256": "c", "code_modules": ["trashnet/x.py"], "config": {"id": "v"},
                           "lockfile_sha256": None, "data_manifest_sha256": "d", "upstream": {"u": "k2"}}}
    records.write_manifest(tmp_path, manifest)
    assert records.read_manifest(tmp_path).stage == "train"  # a legacy stage name reads as the new one
    failed = {"variant": "v", "stage": "train", "status": "failed", "key": "k", "finished": "now", "seconds": 1.0,
              "error": "E: boom", "error_type": "E", "cell": 3, "traceback": ["line"], "log": "v.log",
              "notebook": None}
    records.write_failed(tmp_path, failed)
    assert records.read_failed(tmp_path).dump() == failed
    with pytest.raises(pydantic.ValidationError):
        records.write_failed(tmp_path, {**failed, "extra": 1})
    with pytest.raises(pydantic.ValidationError):
        records.write_manifest(tmp_path, {**manifest, "status": "failed"})


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
    assert rows[0].status == "unreadable" and "n" in rows[0].error


# --- every result file goes through trashnet.core.records ---------------------------------------------

JSON_CALLS = {("fileio", "read_json"), ("fileio", "write_json"), ("json", "load"), ("json", "loads")}
RECORDS_MODULES = {"trashnet/core/records.py", "trashnet/core/metrics_records.py", "trashnet/core/fileio.py"}
# (module, enclosing function, call): JSON that is not a result file, or a result file not typed in records yet.
NOT_RESULT_FILES = {
    # The docs' number markers name any JSON file by path (benchmark outputs most of all) and read a value by
    # a JSON path: a reader of numbers for the docs, not of a result record.
    ("trashnet/report/docnumbers.py", "_parse", "json.loads"): "any JSON file a doc's number marker names",
    ("trashnet/report/probe.py", "read_rows", "fileio.read_json"): "a benchmark's output (benchmarks/results/"
                                                                    "linear_probe.json), parsed into probe.ProbeRow",
    ("trashnet/runner/worker.py", "worker_main", "fileio.read_json"): "the job spec the scheduler wrote",
    ("trashnet/runner/worker.py", "worker_main", "fileio.write_json"): "the worker's error file (read by finish)",
    ("trashnet/runner/worker.py", "tidy_executed", "json.loads"): "a notebook's papermill metadata",
    ("trashnet/runner/scheduler.py", "launch", "fileio.write_json"): "the job spec",
    ("trashnet/runner/scheduler.py", "finish", "fileio.write_json"): "the worker's error file (contract error)",
    ("trashnet/runner/scheduler.py", "finish", "fileio.read_json"): "the worker's error file",
    ("trashnet/runner/dataprep.py", "prepare_data", "fileio.read_json"): "the prepared data's stamp",
    ("trashnet/runner/dataprep.py", "prepare_data", "fileio.write_json"): "the prepared data's stamp",
    ("trashnet/runner/machine.py", "check", "json.loads"): "a config passed on a command line (source text)",
    ("trashnet/data/prepare.py", "*", "fileio.read_json"): "the prepared data's stamp",
    ("trashnet/data/download.py", "*", "fileio.read_json"): "the download stamp",
    ("trashnet/data/download.py", "*", "fileio.write_json"): "the download stamp",
    ("trashnet/deploy/evaluate.py", "*", "json.loads"): "the model's embedded metadata",
    ("trashnet/deploy/evaluate.py", "*", "fileio.write_json"): "evaluate's own output on a user's folder",
    ("trashnet/deploy/predict.py", "*", "json.loads"): "the model's embedded metadata",
    ("trashnet/deploy/release.py", "*", "json.loads"): "model_card.json inside a release bundle (bytes)",
    ("trashnet/core/litert.py", "*", "json.loads"): "model_card.json inside a release bundle (bytes)",
    ("trashnet/core/owned.py", "*", "json.loads"): "an owned folder's stamp",
    ("trashnet/core/progress.py", "*", "json.loads"): "progress events (typed by progress.Event)",
    ("trashnet/core/provenance.py", "*", "json.loads"): "a notebook file",
    ("trashnet/tools/write_metadata.py", "*", "json.loads"): "the metadata spec and the writer's JSON",
    ("trashnet/nets/parity.py", "opencv_and_mediapipe", "json.loads"): "MediaPipe's helper's stdout (versions, "
                                                                       "refused files)",
    # Result files typed outside records (their models live with their producers):
    ("trashnet/stages/stats.py", "write_stats", "fileio.write_json"): "stats.json (stats.StatsFile)",
    ("trashnet/stages/final.py", "build_final", "fileio.write_json"): "verification.json (final.verify's record)",
}


def _json_calls(path):
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                    and isinstance(child.func.value, ast.Name) and (child.func.value.id, child.func.attr) in JSON_CALLS):
                found.append((function, f"{child.func.value.id}.{child.func.attr}", child.lineno))
            visit(child, name)

    visit(tree, "<module>")
    return found


def _raw_result_io():
    raw = []
    for path in sorted((settings.REPO_ROOT / "trashnet").rglob("*.py")):
        module = path.relative_to(settings.REPO_ROOT).as_posix()
        if module in RECORDS_MODULES:
            continue
        for function, call, line in _json_calls(path):
            if (module, function, call) not in NOT_RESULT_FILES and (module, "*", call) not in NOT_RESULT_FILES:
                raw.append(f"{module}:{line} {function}: {call}")
    return raw


def test_result_files_are_read_and_written_through_records_only():
    """A raw JSON read or write outside records is a result file that skips its model; JSON that is not a
    result file is listed in NOT_RESULT_FILES, with what it is."""
    assert _raw_result_io() == []


def test_the_raw_json_check_can_fail(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("def read(p):\n    return fileio.read_json(p / 'metrics.json')\nx = json.loads('{}')\n")
    assert _json_calls(source) == [("read", "fileio.read_json", 2), ("<module>", "json.loads", 3)]
