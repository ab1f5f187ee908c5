"""The final artifact: built from real (tiny) TFLite results on the sample; card and SHA256SUMS match the files."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from results_tree import evaluated_tree

from trashnet.stages import card as model_card, final, stats
from trashnet.core import config, fileio, images, litert, profiles, records, registry, settings
from trashnet.deploy import predict
from trashnet.core.tflite import TFLiteModel
from trashnet.nets import consumers, parity

pytestmark = pytest.mark.slow  # converts two tiny Keras models (~10 s)


@pytest.fixture(scope="module")
def final_config(quick_profile):
    return profiles.load_variants(quick_profile)["final"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, sample_dataset, final_config):
    root = tmp_path_factory.mktemp("final")
    models_dir = evaluated_tree(root / "models", sample_dataset)
    output_dir = root / "models" / "final"
    result = final.build_final(final_config, dataset_dir=sample_dataset, models_dir=models_dir,
                                  output_dir=output_dir, cache_dir=root / ".cache")
    return result, models_dir, output_dir


def test_the_artifact_files_and_checksums(built):
    result, _, output_dir = built
    expected = {"trashnet.tflite", "labels.txt", "model_card.json", "model_card.md", "selection.json",
                "stats.json", "verification.json", "metrics.json", "SHA256SUMS"}
    assert expected <= {p.name for p in output_dir.iterdir()}
    assert set(result["files"]) == expected
    sums = final.check_sums(output_dir)
    assert set(sums) == expected - {"SHA256SUMS"} and all(sums.values())
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=output_dir, check=True)
    (output_dir / "labels.txt").write_text("tampered\n")
    assert final.check_sums(output_dir)["labels.txt"] is False
    (output_dir / "labels.txt").write_text("".join(f"{c}\n" for c in result["card"]["classes"]))
    assert all(final.check_sums(output_dir).values())


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
    assert "squash" in card["input"]["preprocessing"] and "antialiased" in card["input"]["preprocessing"]
    assert card["input"]["fit"] == "squash" and card["input"]["color_order"] == "RGB"
    assert card["input"]["pillow_snippet"] == images.pillow_snippet(32, "squash")  # tests/test_consumers.py runs it
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
    assert card["input"]["pillow_snippet"].rstrip() in markdown
    final_metrics = json.loads((output_dir / "metrics.json").read_text())
    assert final_metrics["selected_variant"] == chosen["id"] and final_metrics["stage"] == "final"


def test_the_file_carries_labels_and_still_runs_like_the_chosen_one(built, sample_dataset):
    result, models_dir, output_dir = built
    model_file = output_dir / "trashnet.tflite"
    original = (models_dir / result["selection"].chosen.file).read_bytes()
    with zipfile.ZipFile(model_file) as archive:
        assert archive.namelist() == ["labels.txt", "metadata.json"]  # the files the metadata records
        assert archive.read("labels.txt").decode().split() == result["card"]["classes"]
        info = json.loads(archive.read("metadata.json"))
        assert info["source_sha256"] == fileio.sha256_bytes(original) and info["version"] == result["card"]["version"]
        # MediaPipe refuses a compressed appendix; fixed timestamps give stable bytes.
        assert all(i.compress_type == zipfile.ZIP_STORED and i.date_time == final.ZIP_DATE
                   for i in archive.infolist())
    metadata = litert.read_metadata(model_file.read_bytes())
    assert metadata["normalization"] == {"mean": [0.0], "std": [1.0]} and metadata["color_space"] == "RGB"
    assert metadata["associated_files"] == ["labels.txt"] and metadata["model_files"] == ["metadata.json"]
    assert metadata["version"] == result["card"]["version"]
    assert predict.embedded_metadata(model_file) == info
    assert predict.read_labels(model_file) == result["card"]["classes"]
    assert predict.model_fit(model_file) == "squash"  # the profile's model.fit, read by predict and evaluate
    image = images.load_for_model(next((sample_dataset / "test").rglob("*.jpg")), 32)
    np.testing.assert_array_equal(TFLiteModel(model_file).predict_one(image), TFLiteModel(original).predict_one(image))


def test_verification_reproduces_the_reported_accuracy(built):
    result, models_dir, output_dir = built
    verification = json.loads((output_dir / "verification.json").read_text())
    assert verification["passed"] is True and verification["accuracy_reproduced_exactly"] is True
    assert verification["reproduced"]["accuracy"] == verification["reported"]["accuracy"]
    assert verification["prediction_mismatches"] == 0
    assert verification["embedded_vs_original_max_abs_diff"] == 0.0
    # The chosen file, named inside the results folder: no machine's folder in a committed result.
    assert not Path(verification["original_file"]).is_absolute()
    assert (models_dir / verification["original_file"]).is_file()


MAIN_VENV_CONSUMERS = ["predict", "pillow_bicubic", "pillow_bilinear", "tf_bilinear"]


def test_the_final_metrics_record_the_shipped_files_parity(built, sample_dataset):
    """metrics.json's parity block: every consumer either measured on the test photos or named as not measured;
    ``predict`` is the project's own path, so it reproduces the verified accuracy; the card shows the same."""
    result, _, output_dir = built
    metrics = records.read_metrics(output_dir)
    record = metrics.parity
    assert record is not None and record.model == "trashnet.tflite" and record.image_size == 32
    assert record.model_sha256 == fileio.sha256_file(output_dir / "trashnet.tflite")
    assert set(record.datasets) == {parity.FINAL_TEST}  # no OOD folder set
    rows = {row.consumer: row for row in record.datasets[parity.FINAL_TEST]}
    assert set(rows) | set(record.unmeasured) == set(consumers.CONSUMERS) and not set(rows) & set(record.unmeasured)
    assert set(MAIN_VENV_CONSUMERS) <= set(rows) and "pillow" in record.versions and "tensorflow" in record.versions
    _, entries = predict.read_split(sample_dataset, "test")
    assert {row.n for row in rows.values()} == {len(entries)}
    assert rows["predict"].agreement == 1.0 and rows["predict"].max_abs_prob_diff == 0.0
    assert rows["predict"].accuracy == result["verification"]["reproduced"]["accuracy"]
    assert all(row.accuracy_delta_pp == round(100 * (row.accuracy - rows["predict"].accuracy), 2)
               for row in rows.values())
    card = records.read_model_card(output_dir)
    assert card.parity == record
    text = (output_dir / "model_card.md").read_text()
    assert "preprocessing parity" in text and "| tf_bilinear |" in text and "97 % agreement" in text
    assert ("Not measured: " in text) == bool(record.unmeasured)
    # A metrics.json written before the parity block still parses.
    old = {key: value for key, value in metrics.dump().items() if key != "parity"}
    assert records.parse_metrics(old).parity is None


def test_without_mediapipes_venv_the_final_stage_names_what_it_did_not_measure(
        built, sample_dataset, final_config, monkeypatch, tmp_path):
    """The degraded path (the stage called without run_all.sh's tool venv, or a broken one) never fails: it
    measures this venv's consumers and says which others are missing and why. With an OOD folder set, that
    set is measured too."""
    result, _, output_dir = built
    labels = result["card"]["classes"]
    model = output_dir / "trashnet.tflite"
    ood = shutil.copytree(sample_dataset / "test", tmp_path / "ood")
    (ood / labels[0] / "notes.jpg").write_bytes(b"not a photo")  # listed by the scan, given to no consumer
    monkeypatch.setenv(settings.ENV_OOD_DATA, str(ood))
    monkeypatch.setenv(settings.ENV_MEDIAPIPE_PYTHON, str(tmp_path / "absent" / "python"))
    missing = final.measure_parity(model, sample_dataset, labels, final_config)
    assert set(missing.unmeasured) == set(parity.TOOL_VENV_CONSUMERS) == {"mediapipe", "mediapipe_emulated",
                                                                        "opencv_linear", "opencv_area"}
    reason = missing.unmeasured["mediapipe"]
    assert "run_all.sh" in reason and settings.ENV_MEDIAPIPE_PYTHON in reason
    assert set(missing.datasets) == {parity.FINAL_TEST, parity.FINAL_OOD}
    for rows in missing.datasets.values():
        assert [row.consumer for row in rows] == MAIN_VENV_CONSUMERS
    assert missing.datasets[parity.FINAL_OOD][0].n == len(list(ood.rglob("*.*"))) - 1
    assert missing.mediapipe_checks == {} and "mediapipe" not in missing.versions
    shipped = {row.consumer: row for row in records.read_metrics(output_dir).parity.datasets[parity.FINAL_TEST]}
    assert missing.datasets[parity.FINAL_TEST] == [shipped[name] for name in MAIN_VENV_CONSUMERS]
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'no module named mediapipe' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv(settings.ENV_MEDIAPIPE_PYTHON, str(broken))
    monkeypatch.delenv(settings.ENV_OOD_DATA)
    failed = final.measure_parity(model, sample_dataset, labels, final_config)
    assert set(failed.unmeasured) == set(parity.TOOL_VENV_CONSUMERS)
    assert "helper failed" in failed.unmeasured["opencv_area"]
    assert "no module named mediapipe" in failed.unmeasured["mediapipe"]
    assert failed.datasets[parity.FINAL_TEST] == missing.datasets[parity.FINAL_TEST]
    assert "Not measured: mediapipe, mediapipe_emulated, opencv_area, opencv_linear" in "\n".join(
        model_card.parity_markdown(failed.dump()))


def test_a_file_that_does_not_reproduce_its_accuracy_is_refused(tmp_path, sample_dataset, final_config):
    models_dir = evaluated_tree(tmp_path / "models", sample_dataset)
    for metrics in (models_dir / "quantize").glob("*/metrics.json"):
        record = json.loads(metrics.read_text())
        if "test" in record:
            record["test"]["accuracy"] += 0.01 if record["test"]["accuracy"] < 0.5 else -0.01
            metrics.write_text(json.dumps(record))
    with pytest.raises(final.ArtifactError, match="does not reproduce"):
        final.build_final(final_config, dataset_dir=sample_dataset, models_dir=models_dir,
                             output_dir=tmp_path / "models" / "final")
    verification = json.loads((tmp_path / "models" / "final" / "verification.json").read_text())
    assert verification["passed"] is False and verification["accuracy_reproduced_exactly"] is False
    assert not (tmp_path / "models" / "final" / "SHA256SUMS").exists()


def test_the_final_notebook_runs(tmp_path, sample_dataset, final_config, monkeypatch):
    import nbformat
    import papermill

    monkeypatch.setenv("MPLBACKEND", "Agg")  # as the pipeline runs it: the Pareto figure must still appear

    models_dir = evaluated_tree(tmp_path / "models", sample_dataset)
    output_dir = tmp_path / "models" / "final"
    output_dir.mkdir()
    executed = output_dir / "final.ipynb"
    papermill.execute_notebook(
        str(registry.get("final").notebook), str(executed), kernel_name="python3", progress_bar=False,
        parameters={"variant_id": "final", "config": config.config_to_dict(final_config),
                    "dataset_dir": str(sample_dataset), "models_dir": str(models_dir),
                    "output_dir": str(output_dir), "cache_dir": str(tmp_path / ".cache")})
    assert all(final.check_sums(output_dir).values())
    text = executed.read_text()
    assert "**Chosen:**" in text and "Model card: trashnet" in text
    assert records.read_metrics(output_dir).parity.datasets["test"]  # the parity block, from the notebook's kernel
    pareto = [c for c in nbformat.read(executed, as_version=4).cells if "pareto_selection" in c.source]
    assert pareto and any("image/png" in output.get("data", {}) for output in pareto[0].outputs)


def test_a_trained_mobilenet_v3_large_fp16_file_reproduces_exactly(tmp_path, sample_dataset, final_config,
                                                                     trained_model_factory):
    from results_tree import convert_keras, write_evaluated

    content = convert_keras(trained_model_factory("mobilenet_v3_large", 48), "fp16")
    variant = "mobilenet_v3_large.prune-2of4.fp16"
    write_evaluated(tmp_path / "models", sample_dataset, variant, content, arch="mobilenet_v3_large",
                    source="mobilenet_v3_large.prune-2of4", precision="fp16")
    result = final.build_final(final_config, dataset_dir=sample_dataset, models_dir=tmp_path / "models",
                                  output_dir=tmp_path / "models" / "final")
    assert result["selection"].chosen.id == variant
    assert result["verification"]["passed"] and result["verification"]["prediction_mismatches"] == 0
    assert result["card"]["input"]["shape"] == [1, 48, 48, 3]


def test_the_metadata_gives_the_same_bytes_for_the_same_inputs(built):
    _, models_dir, output_dir = built
    original = next((models_dir / "quantize").glob("*.fp16/*.tflite")).read_bytes()
    labels = (output_dir / "labels.txt").read_text().split()
    first = final.write_metadata(original, labels, version="0.2.0+quick.gtest", info={"seed": 1})
    assert final.write_metadata(original, labels, version="0.2.0+quick.gtest", info={"seed": 1}) == first
    assert final.write_metadata(original, labels, version="0.2.0+quick.gother", info={"seed": 1}) != first
    assert final.write_metadata(original, labels, version="0.2.0+quick.gtest", info={"seed": 2}) != first


def test_the_model_card_has_the_convention_sections(built, sample_dataset):
    result, _, output_dir = built
    card = json.loads((output_dir / "model_card.json").read_text())
    assert records.ModelCard.model_validate(card).version == card["version"] == card["metadata"]["version"]
    assert card["intended_use"] and card["out_of_scope_use"] and card["report_a_problem"]
    accepted = [line for line in (sample_dataset / "manifest.csv").read_text().splitlines()[1:] if ",accepted," in line]
    splits = card["training_data"]["splits"]
    assert sum(split["images"] for split in splits.values()) == len(accepted)
    assert splits["test"]["images"] == card["metrics"]["test"]["n"]
    weak = card["per_class_weaknesses"]
    assert [row["f1"] for row in weak] == sorted(row["f1"] for row in weak)
    assert {row["class"] for row in weak} == set(card["classes"])
    assert card["out_of_distribution"] == {"measured": False}
    assert any("not measured" in line for line in card["limitations"])
    intervals = json.loads((output_dir / "stats.json").read_text())["intervals"]
    chosen = [i for i in intervals if i["variant"] == card["variant"] and i["metric"] == "accuracy"]
    if chosen:  # the card states stats.json's interval, not a second one
        assert any(f"({chosen[0]['method']}) is {100 * chosen[0]['low']:.1f}-" in line for line in card["limitations"])
    markdown = (output_dir / "model_card.md").read_text()
    for heading in ("Intended use", "Out-of-scope use", "Training and evaluation data", "Known limitations",
                    "Per-class weaknesses", "How to report a problem"):
        assert f"## {heading}" in markdown


def test_weaknesses_and_the_ood_block_from_hand_made_metrics():
    labels = ["a", "b", "c"]
    test = {"per_class": {"a": {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 10},
                          "b": {"precision": 0.5, "recall": 0.6, "f1": 0.55, "support": 10},
                          "c": {"precision": 0.7, "recall": 0.7, "f1": 0.70, "support": 10}},
            "confusion_matrix": [[8, 1, 1], [3, 6, 1], [0, 3, 7]]}
    weak = model_card.class_weaknesses(test, labels)
    assert [(w.name, w.most_confused_with, w.confused_count) for w in weak] == [
        ("b", "a", 3), ("c", "b", 3), ("a", "b", 1)]  # a ties b/c at 1: the lower index wins
    ood = model_card.ood_section({"ood": {"dataset": "ood-dev", "n": 355, "accuracy": 0.2, "macro_f1": 0.15,
                                        "per_class": {"a": {"f1": 0.1, "support": 5}}, "class_map": {}}})
    assert ood.measured and ood.n == 355
    assert any("ood-dev, 355 photos: accuracy 20.0 %" in line for line in model_card.limitations(test, ood))
    # 80 of 100 right: Wilson 95 % interval 71.1-86.7 % (z = 1.96).
    lines = model_card.limitations({"n": 100, "accuracy": 0.8}, records.OODSection(measured=False))
    assert any("100 photos: the 95 % interval of the test accuracy (Wilson) is 71.1-86.7 %" in l for l in lines)
    given = {"low": 0.7, "high": 0.9, "confidence": 0.9, "method": "bootstrap"}
    lines = model_card.limitations({"n": 100, "accuracy": 0.8}, records.OODSection(measured=False), given)
    assert any("the 90 % interval of the test accuracy (bootstrap) is 70.0-90.0 %" in l for l in lines)
    assert "20.0 %" in model_card.out_of_scope({"accuracy": 0.8})[0]
