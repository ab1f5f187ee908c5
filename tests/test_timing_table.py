"""benchmarks/timing_table.py: a run record and its metrics files become a per-stage and per-variant table."""

from __future__ import annotations

import importlib.util

from trashnet.core import fileio, settings

spec = importlib.util.spec_from_file_location("timing_table", settings.REPO_ROOT / "benchmarks" / "timing_table.py")
timing_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(timing_table)


def test_stage_totals_and_what_each_variant_spent(tmp_path):
    layout = settings.Layout(tmp_path, "cpu")
    fileio.write_json(layout.variant_dir("train", "a") / "metrics.json",
                      {"arch": "mobilenet_v3_small", "train_time_s": 1000.0, "test": {"accuracy": 0.85}})
    fileio.write_json(layout.variant_dir("quantize", "a.fp16") / "metrics.json",
                      {"conversion": {"seconds": 20.0}, "test": {"accuracy": 0.84}})
    record = {"profile": "cpu", "seconds": 1200.0, "jobs": 2, "started": "t", "selected": ["a", "a.fp16", "b"],
              "variant": {
                  "a": {"stage": "train", "status": "done", "seconds": 1100.0, "units": 80,
                        "folder": "models/cpu/train/a", "estimate_s": 1260.0, "estimate_from": "defaults"},
                  "a.fp16": {"stage": "quantize", "status": "done", "seconds": 50.0, "units": 1,
                             "folder": "models/cpu/quantize/a.fp16"},
                  "b": {"stage": "train", "status": "cached", "seconds": 900.0, "units": 45,
                        "folder": "models/cpu/train/b"}}}
    result = timing_table.table(record, tmp_path)
    assert result["stages"]["train"] == {"variants": 1, "seconds": 1100.0, "share": round(1100 / 1150, 3)}
    assert result["stages"]["quantize"]["seconds"] == 50.0
    rows = {row["variant"]: row for row in result["variants"]}
    assert rows["a"]["other_s"] == 100.0 and rows["a"]["seconds_per_unit"] == 13.8
    assert rows["a.fp16"]["other_s"] == 30.0 and rows["a.fp16"]["test_accuracy"] == 0.84
    assert rows["b"]["test_accuracy"] is None  # no metrics file: shown, not guessed
    text = timing_table.markdown(result)
    assert "| train | 1 | 18.3 | 96 % |" in text and "| a | train | done | 18.3 | 80 |" in text
    # Cached variants count only when asked: their time was spent by an earlier run.
    assert timing_table.table(record, tmp_path, include_cached=True)["stages"]["train"]["variants"] == 2
