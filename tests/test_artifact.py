"""The final artifact: built from real (tiny) TFLite results on the sample; card and SHA256SUMS match the files."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
from results_tree import evaluated_tree

from trashnet import artifact, config, fileio, images, predict, stats
from trashnet.litert import TFLiteModel

pytestmark = pytest.mark.slow  # converts two tiny Keras models (~10 s)


@pytest.fixture(scope="module")
def final_config(quick_profile):
    return config.load_variants(quick_profile)["final"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, sample_dataset, final_config):
    root = tmp_path_factory.mktemp("final")
    models_dir = evaluated_tree(root / "models", sample_dataset)
    output_dir = root / "models" / "final"
    result = artifact.build_final(final_config, dataset_dir=sample_dataset, models_dir=models_dir,
                                  output_dir=output_dir, cache_dir=root / ".cache")
    return result, models_dir, output_dir


def test_the_artifact_files_and_checksums(built):
    result, _, output_dir = built
    expected = {"trashnet.tflite", "labels.txt", "model_card.json", "model_card.md", "selection.json",
                "stats.json", "verification.json", "metrics.json", "SHA256SUMS"}
    assert expected <= {p.name for p in output_dir.iterdir()}
    assert set(result["files"]) == expected
    sums = artifact.check_sums(output_dir)
    assert set(sums) == expected - {"SHA256SUMS"} and all(sums.values())
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=output_dir, check=True)
    (output_dir / "labels.txt").write_text("tampered\n")
    assert artifact.check_sums(output_dir)["labels.txt"] is False
    (output_dir / "labels.txt").write_text("".join(f"{c}\n" for c in result["card"]["classes"]))
    assert all(artifact.check_sums(output_dir).values())


def test_stats_json_sits_next_to_selection_json_and_accounts_for_every_result(built):
    result, _, output_dir = built
    stats_file = stats.load_stats(output_dir / "stats.json")
    selection = json.loads((output_dir / "selection.json").read_text())
    assert stats_file == result["statistics"]
    # The two evaluated candidates have predictions: intervals; the hand-made results have none: skipped.
    assert {i.variant for i in stats_file.intervals} == {c for c in selection["candidates"]}
    accounted = {i.variant for i in stats_file.intervals} | {s.variant for s in stats_file.skipped}
    assert accounted >= {row["id"] for row in selection["results"]}
    assert selection["statistics"]["file"] == "stats.json" and "pp" in selection["statistics"]["tolerance"]
    assert selection["accuracy_basis"]


def test_the_model_card_matches_the_files(built):
    result, models_dir, output_dir = built
    card = json.loads((output_dir / "model_card.json").read_text())
    selection = json.loads((output_dir / "selection.json").read_text())
    chosen = selection["chosen"]
    record = fileio.read_json(models_dir / chosen["dir"] / "metrics.json")
    model_file = output_dir / "trashnet.tflite"
    labels = (output_dir / "labels.txt").read_text().split()
    assert card["variant"] == chosen["id"] and card["model_file"] == "trashnet.tflite"
    assert card["classes"] == labels == record["classes"]
    assert card["input"]["shape"] == [1, 32, 32, 3] and card["input"]["dtype"] == "float32"
    assert "squash" in card["input"]["preprocessing"]
    assert card["metrics"]["test"]["accuracy"] == record["test"]["accuracy"]
    assert card["size"]["raw_bytes"] == model_file.stat().st_size
    assert card["size"]["gzip_bytes"] == fileio.gzip_size(model_file)
    assert card["size"]["chosen_file_gzip_bytes"] == record["size"]["gzip_bytes"]
    assert card["weights_origin"] == "none" and card["profile"] == "quick" and card["seed"] == 42
    assert card["data_manifest_sha256"] == card["verification_data_manifest_sha256"]
    assert card["built"]["git_commit"] and card["built"]["libraries"]["numpy"]
    assert card["latency_ms"]["reported"] == record["latency_ms"]
    assert card["selection"]["reference"]["id"] == "mobilenet_v3_large"
    markdown = (output_dir / "model_card.md").read_text()
    assert chosen["id"] in markdown and f"{100 * record['test']['accuracy']:.2f} %" in markdown
    final_metrics = json.loads((output_dir / "metrics.json").read_text())
    assert final_metrics["selected_variant"] == chosen["id"] and final_metrics["stage"] == "final"


def test_the_file_carries_labels_and_still_runs_like_the_chosen_one(built, sample_dataset):
    result, models_dir, output_dir = built
    model_file = output_dir / "trashnet.tflite"
    original = (models_dir / result["selection"]["chosen"]["file"]).read_bytes()
    content = model_file.read_bytes()
    assert content.startswith(original) and len(content) > len(original)
    with zipfile.ZipFile(model_file) as archive:
        assert sorted(archive.namelist()) == ["labels.txt", "metadata.json"]
        assert archive.read("labels.txt").decode().split() == result["card"]["classes"]
        assert json.loads(archive.read("metadata.json"))["source_sha256"] == fileio.sha256_bytes(original)
    assert predict.read_labels(model_file) == result["card"]["classes"]
    image = images.load_for_model(next((sample_dataset / "test").rglob("*.jpg")), 32)
    np.testing.assert_array_equal(TFLiteModel(model_file).predict_one(image), TFLiteModel(original).predict_one(image))


def test_verification_reproduces_the_reported_accuracy(built):
    result, _, output_dir = built
    verification = json.loads((output_dir / "verification.json").read_text())
    assert verification["passed"] is True and verification["accuracy_reproduced_exactly"] is True
    assert verification["reproduced"]["accuracy"] == verification["reported"]["accuracy"]
    assert verification["prediction_mismatches"] == 0
    assert verification["embedded_vs_original_max_abs_diff"] == 0.0


def test_a_file_that_does_not_reproduce_its_accuracy_is_refused(tmp_path, sample_dataset, final_config):
    models_dir = evaluated_tree(tmp_path / "models", sample_dataset)
    for metrics in (models_dir / "quantized").glob("*/metrics.json"):
        record = json.loads(metrics.read_text())
        if "test" in record:
            record["test"]["accuracy"] += 0.01 if record["test"]["accuracy"] < 0.5 else -0.01
            metrics.write_text(json.dumps(record))
    with pytest.raises(artifact.ArtifactError, match="does not reproduce"):
        artifact.build_final(final_config, dataset_dir=sample_dataset, models_dir=models_dir,
                             output_dir=tmp_path / "models" / "final")
    verification = json.loads((tmp_path / "models" / "final" / "verification.json").read_text())
    assert verification["passed"] is False and verification["accuracy_reproduced_exactly"] is False
    assert not (tmp_path / "models" / "final" / "SHA256SUMS").exists()


def test_the_final_notebook_runs(tmp_path, sample_dataset, final_config, monkeypatch):
    import nbformat
    import papermill

    from trashnet import settings

    monkeypatch.setenv("MPLBACKEND", "Agg")  # as the pipeline runs it: the Pareto figure must still appear

    models_dir = evaluated_tree(tmp_path / "models", sample_dataset)
    output_dir = tmp_path / "models" / "final"
    output_dir.mkdir()
    executed = output_dir / "final.ipynb"
    papermill.execute_notebook(
        str(settings.NOTEBOOKS["final"]), str(executed), kernel_name="python3", progress_bar=False,
        parameters={"variant_id": "final", "config": config.config_to_dict(final_config),
                    "dataset_dir": str(sample_dataset), "models_dir": str(models_dir),
                    "output_dir": str(output_dir), "cache_dir": str(tmp_path / ".cache")})
    assert all(artifact.check_sums(output_dir).values())
    text = executed.read_text()
    assert "**Chosen:**" in text and "Model card: trashnet" in text
    pareto = [c for c in nbformat.read(executed, as_version=4).cells if "pareto_selection" in c.source]
    assert pareto and any("image/png" in output.get("data", {}) for output in pareto[0].outputs)


def test_a_trained_mobilenet_v3_large_fp16_file_reproduces_exactly(tmp_path, sample_dataset, final_config,
                                                                     trained_model_factory):
    from results_tree import convert_keras, write_evaluated

    content = convert_keras(trained_model_factory("mobilenet_v3_large", 48), "fp16")
    variant = "mobilenet_v3_large.prune-2of4.fp16"
    write_evaluated(tmp_path / "models", sample_dataset, variant, content, arch="mobilenet_v3_large",
                    source="mobilenet_v3_large.prune-2of4", precision="fp16")
    result = artifact.build_final(final_config, dataset_dir=sample_dataset, models_dir=tmp_path / "models",
                                  output_dir=tmp_path / "models" / "final")
    assert result["selection"]["chosen"]["id"] == variant
    assert result["verification"]["passed"] and result["verification"]["prediction_mismatches"] == 0
    assert result["card"]["input"]["shape"] == [1, 48, 48, 3]
