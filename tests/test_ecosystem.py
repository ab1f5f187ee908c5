"""The final .tflite loads where users load it, each in a fresh venv with its own hashed lock:

- MediaPipe Tasks' ImageClassifier (requirements-mediapipe.lock) agrees with LiteRT on every test image;
- tflite-support's MetadataDisplayer (requirements-metadata.lock, the writer's own venv) shows the labels and
  the normalization, and tflite-support's own MetadataWriter writes the same bytes as the project's
  schema-only writer (these two need tflite-support's native extension: Debian's libusb-1.0-0, CI installs it).
(ai-edge-litert alone reproducing the reported accuracy: tests/test_deploy_venv.py.)
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from results_tree import built_final
from toolvenv import clean_env, tool_python

from trashnet.stages import final
from trashnet.core import images, litert, profiles, settings, tflite
from trashnet.deploy import predict
from trashnet.nets import consumers, parity

pytestmark = pytest.mark.slow  # venvs (cached by lock hash) and a tiny final artifact


@pytest.fixture(scope="module")
def final_dir(tmp_path_factory, sample_dataset, quick_profile):
    return built_final(tmp_path_factory.mktemp("ecosystem"), sample_dataset, quick_profile)


def test_mediapipe_image_classifier_agrees_with_litert_on_every_test_image(final_dir, sample_dataset):
    python = tool_python(settings.REPO_ROOT / "requirements-mediapipe.lock")
    model = litert.load(final_dir / "trashnet.tflite")
    _, entries = predict.read_split(sample_dataset, "test")
    paths = [str(sample_dataset / rel) for rel, _ in entries]
    done = subprocess.run([str(python), str(settings.REPO_ROOT / "tests" / "mediapipe_check.py"),
                           str(final_dir / "trashnet.tflite"), str(model.image_size), *paths],
                          capture_output=True, text=True, env=clean_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["mediapipe"] == "1.2.3"
    litert_probs = model.predict(np.stack([images.load_for_model(p, model.image_size) for p in paths]))
    for path, probs in zip(paths, litert_probs):
        scores = report["scores"][path]
        assert set(scores) == set(model.labels)  # category names come from the metadata's label file
        mediapipe = np.array([scores[name] for name in model.labels])
        assert model.labels[int(mediapipe.argmax())] == model.labels[int(probs.argmax())], path
        np.testing.assert_allclose(mediapipe, probs, atol=1e-5)
    assert len(paths) == len(entries) > 0
    assert len(set(litert_probs.argmax(1))) > 1, "a model that predicts one class would make agreement trivial"


def test_the_final_stage_measures_mediapipe_and_opencv_parity_in_mediapipes_venv(
        final_dir, sample_dataset, quick_profile, monkeypatch):
    """With MediaPipe's venv (run_all.sh's .venv-mediapipe, here the tests' cached one) every consumer has a
    row: the real MediaPipe, its emulation (bit-exact), OpenCV; nothing is left unmeasured."""
    python = tool_python(settings.REPO_ROOT / "requirements-mediapipe.lock")
    monkeypatch.setenv(settings.ENV_MEDIAPIPE_PYTHON, str(python))
    labels = (final_dir / "labels.txt").read_text().split()
    record = final.measure_parity(final_dir / "trashnet.tflite", sample_dataset, labels,
                                  profiles.load_variants(quick_profile)["final"])
    assert record.unmeasured == {} and record.versions["mediapipe"] == "1.2.3" and record.versions["opencv"]
    rows = {row.consumer: row for row in record.datasets[parity.FINAL_TEST]}
    assert list(rows) == list(consumers.CONSUMERS)
    assert record.mediapipe_checks[parity.FINAL_TEST]["emulated_vs_mediapipe"] <= 1e-5
    assert rows["mediapipe"].agreement == rows["mediapipe_emulated"].agreement
    assert rows["predict"].agreement == 1.0 and all(0.0 <= row.agreement <= 1.0 for row in rows.values())


def test_metadata_displayer_shows_the_labels_and_the_normalization(final_dir):
    python = final.metadata_python()
    if not python.is_file():
        pytest.fail(f"{python} is missing: ./run_all.sh --setup-only creates the metadata tool venv")
    done = subprocess.run([str(python), str(final.WRITER_SCRIPT), "display", str(final_dir / "trashnet.tflite")],
                          capture_output=True, text=True, env=clean_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    shown = json.loads(done.stdout)
    card = json.loads((final_dir / "model_card.json").read_text())
    meta = shown["metadata"]
    assert meta["name"] == "trashnet" and meta["version"] == card["version"] and meta["author"] and meta["license"]
    tensor = meta["subgraph_metadata"][0]["input_tensor_metadata"][0]
    assert tensor["content"]["content_properties"]["color_space"] == "RGB"
    assert tensor["process_units"] == [{"options_type": "NormalizationOptions",
                                        "options": {"mean": [0.0], "std": [1.0]}}]
    output = meta["subgraph_metadata"][0]["output_tensor_metadata"][0]
    assert output["associated_files"][0]["name"] == "labels.txt"
    assert output["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
    assert meta["associated_files"] == [{"name": "metadata.json", "type": "DESCRIPTIONS",
                                         "description": meta["associated_files"][0]["description"]}]
    assert shown["packed_files"] == ["labels.txt", "metadata.json"]
    assert shown["files"]["labels.txt"].split() == card["classes"]
    assert json.loads(shown["files"]["metadata.json"])["version"] == card["version"]
    # The project's own TF-free reader sees the same fields.
    ours = litert.read_metadata((final_dir / "trashnet.tflite").read_bytes())
    assert ours["normalization"] == tensor["process_units"][0]["options"]
    assert ours["version"] == meta["version"] and ours["associated_files"] == ["labels.txt"]
    assert ours["model_files"] == ["metadata.json"]


def test_load_applies_a_non_trivial_normalization_from_the_metadata(final_dir, tmp_path):
    """A file whose metadata says mean 127.5, std 127.5: ``litert.load`` feeds (x - 127.5) / 127.5."""
    python = final.metadata_python()
    original = next(final_dir.parent.glob("quantize/*.fp16/*.tflite"))
    labels = (final_dir / "labels.txt").read_text().split()
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    spec = {"model": str(original), "labels": str(tmp_path / "labels.txt"), "output": str(tmp_path / "m.tflite"),
            "name": "n", "version": "v", "description": "d", "author": "a", "license": "l",
            "mean": [127.5], "std": [127.5]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run([str(python), str(final.WRITER_SCRIPT), "write", str(tmp_path / "spec.json")],
                          capture_output=True, text=True, env=clean_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    model = litert.load(tmp_path / "m.tflite")
    assert model.preprocessing.source == "tflite-metadata" and model.preprocessing.mean == (127.5,)
    assert model.labels == labels
    pixels = np.random.default_rng(0).integers(0, 256, (4, model.image_size, model.image_size, 3)).astype(np.float32)
    raw = tflite.TFLiteModel(original)
    np.testing.assert_allclose(model.predict(pixels), raw.predict((pixels - 127.5) / 127.5), rtol=1e-6, atol=1e-7)


@pytest.mark.realdata
def test_mediapipe_agrees_with_litert_on_real_trashnet_photos(final_dir, real_data_dir):
    """The same check on 120 real TrashNet photos (every 21st file), decoded from their original JPEGs."""
    python = tool_python(settings.REPO_ROOT / "requirements-mediapipe.lock")
    model = litert.load(final_dir / "trashnet.tflite")
    paths = [str(p) for p in sorted(real_data_dir.rglob("*.jpg"))[::21]]
    done = subprocess.run([str(python), str(settings.REPO_ROOT / "tests" / "mediapipe_check.py"),
                           str(final_dir / "trashnet.tflite"), str(model.image_size), *paths],
                          capture_output=True, text=True, env=clean_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    scores = json.loads(done.stdout.splitlines()[-1])["scores"]
    probs = model.predict(np.stack([images.load_for_model(p, model.image_size) for p in paths]))
    mediapipe = np.array([[scores[p][name] for name in model.labels] for p in paths])
    assert (mediapipe.argmax(1) == probs.argmax(1)).all()
    np.testing.assert_allclose(mediapipe, probs, atol=1e-5)
    assert len(paths) >= 100 and len(set(probs.argmax(1))) > 1


def test_the_writer_writes_what_tflite_supports_own_writer_writes(final_dir, tmp_path):
    """The schema-only writer (no native code) against tflite-support's MetadataWriter, byte for byte."""
    python = final.metadata_python()
    original = next(final_dir.parent.glob("quantize/*.fp16/*.tflite"))
    (tmp_path / "labels.txt").write_text((final_dir / "labels.txt").read_text())
    (tmp_path / "metadata.json").write_text('{"variant": "x"}')
    writers = {"ours": [str(final.WRITER_SCRIPT), "write"],
               "reference": [str(settings.REPO_ROOT / "tests" / "metadata_reference.py")]}
    outputs = {}
    for name, command in writers.items():
        spec = {"model": str(original), "labels": str(tmp_path / "labels.txt"),
                "output": str(tmp_path / f"{name}.tflite"), "name": "trashnet", "version": "1.2.3",
                "description": "d", "author": "a", "license": "MIT", "mean": [0.0], "std": [1.0],
                "model_files": [{"path": str(tmp_path / "metadata.json"), "description": "m"}]}
        (tmp_path / f"{name}.json").write_text(json.dumps(spec))
        done = subprocess.run([str(python), *command, str(tmp_path / f"{name}.json")], capture_output=True,
                              text=True, env=clean_env(), timeout=300)
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
        outputs[name] = final.restamp_zip((tmp_path / f"{name}.tflite").read_bytes())
    assert outputs["ours"] == outputs["reference"]
