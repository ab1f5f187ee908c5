"""publish (a run's small outputs into results/<profile>/) and verify (a reproduction against them)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import standin
from trashnet.core import fileio, settings
from trashnet.runner import pipeline, verify


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, Path]:
    """A finished stand-in run (with its report) and its published reference folder."""
    out = standin.copy_run(standin.completed_run(tmp_path_factory), tmp_path_factory.mktemp("verify") / "out")
    layout = settings.Layout(out, "quick")
    from trashnet.report import build as report

    report.build(out, "quick", pdf=False, log=lambda message: None)
    reference = verify.publish(layout, out.parent / "results" / "quick", log=lambda message: None)
    return out, reference


@pytest.mark.slow
def test_publish_copies_only_the_small_outputs(published):
    out, reference = published
    files = {path.relative_to(reference).as_posix() for path in reference.rglob("*") if path.is_file()}
    assert "logs/run.json" in files and "report/index.html" in files and "report/id/index.html" in files
    assert "models/final/trashnet.tflite" in files and "models/final/SHA256SUMS" in files
    assert "models/final/selection.json" in files and "models/final/labels.txt" in files
    for variant_id in standin.SELECTED[:-1]:
        stage = next(p for p in files if f"/{variant_id}/metrics.json" in p)
        assert stage.replace("metrics.json", "predictions.csv") in files
    assert "models/train/mobilenet_v3_large/history.csv" in files
    assert not [f for f in files if f.endswith(".keras") or f.endswith("manifest.json")]
    assert not [f for f in files if f.endswith(".ipynb") and not f.startswith("report/notebooks/")]
    assert [f for f in files if f.endswith(".tflite")] == ["models/final/trashnet.tflite"]
    # The report's links resolve inside the published folder: executed notebooks and exports come along.
    assert "report/notebooks/mobilenet_v3_large.ipynb" in files
    assert any(f.startswith("report/exports/id/") and f.endswith(".tex") for f in files)
    assert not [f for f in files if f.endswith(".png")]
    html = (reference / "report" / "en" / "index.html").read_text()
    links = re.findall(r'href="\.\./(notebooks/[^"]+)"', html)
    assert "notebooks/mobilenet_v3_large.ipynb" in links
    for link in links:
        assert (reference / "report" / link).is_file(), link
    # No path of the machine that ran it.
    run_record = fileio.read_json(reference / "logs" / "run.json")
    assert "/" not in run_record["data_source"]
    # The model is a byte copy.
    layout = settings.Layout(out, "quick")
    assert (reference / "models/final/trashnet.tflite").read_bytes() == \
        (layout.variant_dir("final", "final") / "trashnet.tflite").read_bytes()


@pytest.mark.slow
def test_publish_refuses_more_than_the_limit_and_keeps_the_old_folder(published, monkeypatch):
    out, reference = published
    before = sorted(p.name for p in reference.rglob("*"))
    monkeypatch.setattr(verify, "MAX_PUBLISHED_BYTES", 1000)
    with pytest.raises(verify.VerifyError, match="more than the"):
        verify.publish(settings.Layout(out, "quick"), reference)
    assert sorted(p.name for p in reference.rglob("*")) == before


@pytest.mark.slow
def test_a_reproduction_of_itself_verifies(published):
    out, reference = published
    lines: list[str] = []
    assert verify.verify_and_print(reference, settings.Layout(out, "quick"), log=lines.append) == 0
    text = "\n".join(lines)
    assert "0 outside, 0 variants missing" in text and "OUTSIDE" not in text
    assert "agreement" in text and "100.00%" in text


@pytest.mark.slow
def test_outside_tolerance_and_missing_variants_fail(published, tmp_path):
    out, reference = published
    copy = standin.copy_run(out, tmp_path / "out")
    layout = settings.Layout(copy, "quick")
    metrics_path = layout.variant_dir("train", "mobilenet_v3_large") / "metrics.json"
    metrics = fileio.read_json(metrics_path)
    metrics["test"]["accuracy"] += 0.05  # 5 pp: outside the 2 pp tolerance
    metrics_path.chmod(0o644)
    fileio.write_json(metrics_path, metrics)
    missing = layout.variant_dir("quantize", "mobilenet_v3_small.fp16")
    for path in missing.iterdir():
        path.chmod(0o644)
    (missing / "metrics.json").unlink()
    lines: list[str] = []
    assert verify.verify_and_print(reference, layout, log=lines.append) == 1
    text = "\n".join(lines)
    assert any("mobilenet_v3_large" in line and "accuracy" in line and "OUTSIDE" in line for line in lines), text
    assert "MISSING mobilenet_v3_small.fp16" in text and "--variants mobilenet_v3_small.fp16" in text
    # The command line: the same verdict as an exit status.
    result = subprocess.run([sys.executable, "-m", "trashnet", "verify", str(reference), "--out", str(copy)],
                            capture_output=True, text=True, cwd=settings.REPO_ROOT)
    assert result.returncode == 1 and "OUTSIDE" in result.stdout
    # A partial reproduction is compared on the variants it names only.
    result = subprocess.run([sys.executable, "-m", "trashnet", "verify", str(reference), "--out", str(copy),
                             "--variants", "mobilenet_v3_small"], capture_output=True, text=True,
                            cwd=settings.REPO_ROOT)
    assert result.returncode == 0 and "verify: 1 variants" in result.stdout, result.stdout + result.stderr


@pytest.mark.slow
def test_other_data_is_not_compared(published, tmp_path):
    out, reference = published
    copy = standin.copy_run(out, tmp_path / "out")
    layout = settings.Layout(copy, "quick")
    record = fileio.read_json(layout.logs / "run.json")
    record["data_manifest_sha256"] = "0" * 64
    fileio.write_json(layout.logs / "run.json", record)
    with pytest.raises(verify.VerifyError, match="other data"):
        verify.verify(reference, layout)
    with pytest.raises(verify.VerifyError, match="not a reference folder"):
        verify.verify(tmp_path, layout)


@pytest.mark.slow
def test_run_verifies_against_a_committed_reference(published, tmp_path, standin_env, monkeypatch):
    out, reference = published
    results = tmp_path / "results"
    results.mkdir()
    (results / "quick").symlink_to(reference)
    monkeypatch.setattr(settings, "RESULTS_DIR", results)
    copy = standin.copy_run(out, tmp_path / "out")
    lines: list[str] = []
    status = pipeline.run(out=copy, variants=standin.SELECTION, report=False, log=lines.append)
    text = "\n".join(lines)
    assert status == 0, text
    assert "verify: comparing with the committed reference" in text and "0 outside" in text


# --- fast: hand-written result files -------------------------------------------------------------------

def _variant(folder: Path, accuracy: float, predicted: list[str], gzip_bytes: int = 1000) -> None:
    folder.mkdir(parents=True)
    fileio.write_json(folder / "metrics.json", {"variant": folder.name, "stage": folder.parent.name,
                                                "test": {"n": 20, "accuracy": accuracy, "macro_f1": accuracy - 0.02},
                                                "size": {"raw_bytes": 4000, "gzip_bytes": gzip_bytes}})
    rows = "".join(f"img{i}.jpg,glass,{label}\n" for i, label in enumerate(predicted))
    (folder / "predictions.csv").write_text("path,label,predicted\n" + rows)


def test_tolerances_on_hand_written_results(tmp_path):
    reference, out = tmp_path / "results" / "cpu", tmp_path / "out"
    layout = settings.Layout(out, "cpu")
    same = ["glass"] * 18 + ["paper"] * 2
    _variant(reference / "models" / "train" / "a", 0.90, same)
    _variant(layout.variant_dir("train", "a"), 0.91, same[:-1] + ["glass"])  # +1 pp, 19/20 agree
    _variant(reference / "models" / "quantize" / "a.fp16", 0.90, same, gzip_bytes=1000)
    _variant(layout.variant_dir("quantize", "a.fp16"), 0.90, ["metal"] * 20, gzip_bytes=1200)
    checks, missing = verify.verify(reference, layout)
    verdict = {(c.variant, c.what): c.ok for c in checks}
    assert missing == []
    assert verdict[("a", "accuracy")] and verdict[("a", "agreement")] and verdict[("a", "gzip_bytes")]
    assert not verdict[("a.fp16", "agreement")] and not verdict[("a.fp16", "gzip_bytes")]
    assert verdict[("a.fp16", "raw_bytes")]
    # Only the variants asked for are compared; one the reproduction lacks is named.
    _variant(reference / "models" / "prune" / "a.prune-2of4", 0.88, same)
    checks, missing = verify.verify(reference, layout, ["a", "a.prune-2of4"])
    assert {c.variant for c in checks} == {"a"} and missing == ["a.prune-2of4"]
