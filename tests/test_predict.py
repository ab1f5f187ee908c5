"""``predict`` on files, folders and globs, with unreadable files among them; the CLI; no TensorFlow."""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from results_tree import CLASSES, tiny_tflite

from trashnet.stages import final
from trashnet.core import images, settings
from trashnet.deploy import predict
from trashnet.core.tflite import TFLiteModel

SIZE = 32


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A tiny real .tflite with labels.txt beside it (no embedded labels)."""
    folder = tmp_path_factory.mktemp("model")
    path = folder / "model.tflite"
    path.write_bytes(tiny_tflite(SIZE, len(CLASSES), 0))
    (folder / "labels.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """photos/{a.jpg, b.png, nested/c.jpg, nested/deeper/d.jpg, broken.jpg, empty.jpg, truncated.jpg, notes.txt}"""
    root = tmp_path_factory.mktemp("photos")
    samples = sorted(settings.SAMPLE_DIR.rglob("*.jpg"))
    (root / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(samples[0], root / "a.jpg")
    images.open_rgb(samples[13])[0].save(root / "b.png")
    shutil.copy(samples[30], root / "nested" / "c.jpg")
    shutil.copy(samples[50], root / "nested" / "deeper" / "d.jpg")
    (root / "broken.jpg").write_bytes(b"this is not a JPEG at all")
    (root / "empty.jpg").write_bytes(b"")
    (root / "truncated.jpg").write_bytes(samples[1].read_bytes()[:600])
    (root / "notes.txt").write_text("not an image; skipped when walking a folder")
    return root


def expected_label(model_file: Path, path: Path) -> str:
    probabilities = TFLiteModel(model_file).predict_one(images.load_for_model(path, SIZE))
    return CLASSES[int(np.argmax(probabilities))]


@pytest.mark.slow
def test_files_in_order_with_top_k(model_file, photos):
    files = [photos / "a.jpg", photos / "b.png", photos / "nested" / "c.jpg"]
    results = list(predict.predict(files, model_file, top_k=3))
    assert [r.path for r in results] == [str(f) for f in files]
    for result, path in zip(results, files):
        assert result.ok and len(result.top_k) == 3
        probabilities = [p for _, p in result.top_k]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
        assert {label for label, _ in result.top_k} <= set(CLASSES)
        assert result.label == expected_label(model_file, path)  # the same preprocessing and model as evaluation


@pytest.mark.slow
def test_a_folder_recursively_with_unreadable_files_reported(model_file, photos):
    results = {Path(r.path).name: r for r in predict.predict([photos], model_file)}
    assert set(results) == {"a.jpg", "b.png", "c.jpg", "d.jpg", "broken.jpg", "empty.jpg", "truncated.jpg", "notes.txt"}
    assert results["notes.txt"].skipped.startswith(".txt is not an image format")  # listed, never dropped
    assert all(results[name].ok for name in ("a.jpg", "b.png", "c.jpg", "d.jpg"))
    assert results["broken.jpg"].error.startswith("not-an-image")
    assert results["empty.jpg"].error.startswith("empty-file")
    assert results["truncated.jpg"].error.startswith("truncated")
    assert results["broken.jpg"].to_dict() == {"path": str(photos / "broken.jpg"),
                                               "error": results["broken.jpg"].error}


@pytest.mark.slow
def test_globs_and_names_that_match_nothing(model_file, photos):
    results = list(predict.predict([str(photos / "**" / "*.jpg"), str(photos / "*.gif"), photos / "missing.jpg"],
                                   model_file))
    globbed = [r.path for r in results[:-2]]
    assert globbed == sorted(globbed)  # a pattern's matches come in sorted order
    by_name = {Path(r.path).name: r for r in results}
    assert {"a.jpg", "c.jpg", "d.jpg", "broken.jpg"} <= set(by_name) and "b.png" not in by_name
    assert by_name["*.gif"].error.startswith("no-match")
    assert by_name["missing.jpg"].error.startswith("not-found")
    assert sum(r.ok for r in results) == 3


@pytest.mark.slow
def test_streams_lazily(model_file, photos):
    endless = itertools.cycle([photos / "a.jpg", photos / "broken.jpg"])
    first = list(itertools.islice(predict.predict(endless, model_file, workers=2), 7))
    assert [r.ok for r in first] == [True, False] * 3 + [True]


@pytest.mark.slow
def test_labels_embedded_beside_or_given(model_file, tmp_path):
    embedded = tmp_path / "embedded.tflite"
    names = [f"E{i}" for i in range(len(CLASSES))]
    embedded.write_bytes(final.append_zip(model_file.read_bytes(), {"labels.txt": "\n".join(names).encode()}))
    (tmp_path / "labels.txt").write_text("beside\n" * len(CLASSES))
    assert predict.read_labels(embedded) == names  # embedded wins over labels.txt beside
    assert predict.read_labels(model_file) == list(CLASSES)
    given = tmp_path / "given.txt"
    given.write_text("\n".join(f"G{i}" for i in range(len(CLASSES))))
    assert predict.read_labels(embedded, given)[0] == "G0"
    bare = tmp_path / "bare" / "m.tflite"
    bare.parent.mkdir()
    bare.write_bytes(model_file.read_bytes())
    assert predict.read_labels(bare) is None
    assert predict.load_model(bare)[1][0] == "class_0"
    with pytest.raises(ValueError, match="2 labels for a model with 6 outputs"):
        predict.load_model(model_file, labels=["a", "b"])


def run_cli(*args: str) -> subprocess.CompletedProcess:
    code = ("import sys; from trashnet import cli; status = cli.main(sys.argv[1:]); "
            "assert 'tensorflow' not in sys.modules, 'predict imported TensorFlow'; sys.exit(status)")
    env = {**os.environ, "PYTHONPATH": str(settings.REPO_ROOT)}
    return subprocess.run([sys.executable, "-c", code, "predict", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.slow
def test_cli_json_exit_status_and_no_tensorflow(model_file, photos):
    done = run_cli(str(photos / "a.jpg"), str(photos / "nested"), str(photos / "broken.jpg"), "--model",
                   str(model_file), "--top-k", "2", "--json", "--no-progress")
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(item["path"]).name for item in lines] == ["a.jpg", "c.jpg", "d.jpg", "broken.jpg"]
    assert len(lines[0]["top_k"]) == 2 and lines[0]["label"] == lines[0]["top_k"][0]["label"]
    assert "not-an-image" in lines[-1]["error"]
    assert "broken.jpg: not-an-image" in done.stderr and "3 classified, 1 failed" in done.stderr


@pytest.mark.slow
def test_cli_table_and_usage_errors(model_file, photos, tmp_path):
    done = run_cli(str(photos / "a.jpg"), "--model", str(model_file))
    assert done.returncode == 0, done.stderr
    label = expected_label(model_file, photos / "a.jpg")
    assert done.stdout.startswith(label) and done.stdout.strip().endswith("a.jpg")
    assert run_cli(str(photos / "a.jpg"), "--model", str(tmp_path / "nope.tflite")).returncode == 2
    assert run_cli(str(photos / "a.jpg"), "--model", str(model_file), "--top-k", "0").returncode == 2
    assert run_cli("--model", str(model_file)).returncode == 2  # no PATH
    bad_labels = tmp_path / "two.txt"
    bad_labels.write_text("a\nb\n")
    done = run_cli(str(photos / "a.jpg"), "--model", str(model_file), "--labels", str(bad_labels))
    assert done.returncode == 2 and "2 labels for a model with 6 outputs" in done.stderr


def test_the_deployment_modules_import_no_training_stack():
    code = ("import sys, trashnet.deploy.predict, trashnet.core.litert, trashnet.core.images; "
            "heavy = {'tensorflow', 'tf_keras', 'keras', 'sklearn', 'pydantic', 'yaml'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(settings.REPO_ROOT)})


@pytest.mark.slow
@pytest.mark.realdata
def test_real_trashnet_photos_all_decode(model_file, real_data_dir):
    results = list(predict.predict([str(real_data_dir / "*" / "*1?.jpg")], model_file, top_k=2))
    assert len(results) >= 60 and all(r.ok for r in results), [r.error for r in results if not r.ok][:3]


@pytest.mark.slow
def test_a_full_int8_model_quantizes_inputs_and_breaks_ties_like_argmax(tmp_path, photos, sample_dataset):
    path = tmp_path / "int8.tflite"
    path.write_bytes(tiny_tflite(SIZE, len(CLASSES), 3, int8=True))
    runner = TFLiteModel(path)
    assert runner.input_dtype == np.int8
    files = sorted(sample_dataset.rglob("*.jpg"))[:24]
    for result, file in zip(predict.predict(files, path, top_k=len(CLASSES), labels=list(CLASSES)), files):
        probabilities = runner.predict_one(images.load_for_model(file, SIZE))
        assert result.label == CLASSES[int(np.argmax(probabilities))]  # int8 outputs tie often
        assert [p for _, p in result.top_k] == sorted(probabilities.tolist(), reverse=True)
    evaluation = predict.evaluate_split(path, sample_dataset)
    from trashnet.nets import scoring
    from trashnet.data import inputs

    data = inputs.load_dataset(sample_dataset, SIZE)
    reference = scoring.classification_metrics(data.test.labels, runner.predict(data.test.images), data.classes)
    assert evaluation["accuracy"] == reference["accuracy"] and evaluation["n"] == reference["n"]


# --- issue 24: globs through link loops, non-image files listed -----------------------------------------------


@pytest.mark.timeout(30)
def test_a_glob_through_link_loops_lists_each_photo_once(tmp_path, monkeypatch):
    folder = tmp_path / "d"
    (folder / "sub").mkdir(parents=True)
    for name in ("x.jpg", "sub/y.jpg"):
        (folder / name).write_bytes(b"jpeg")
    (folder / "a").symlink_to(".")
    (folder / "b").symlink_to(".")
    (folder / "sub" / "up").symlink_to("..")
    monkeypatch.chdir(tmp_path)
    assert list(predict.expand(["d/**/*.jpg"])) == [("d/sub/y.jpg", None), ("d/x.jpg", None)]
    entries = dict(predict.expand([str(tmp_path / "d" / "**")]))
    assert sorted(p for p, reason in entries.items() if reason is None) == [
        str(folder / "sub" / "y.jpg"), str(folder / "x.jpg")]
    assert all(entries[str(link)].startswith(predict.SKIPPED + "a link to a folder")
               for link in (folder / "a", folder / "b", folder / "sub" / "up"))


def test_a_folder_lists_every_file_and_says_why_one_is_skipped(tmp_path):
    (tmp_path / "a.jfif").write_bytes(b"x")
    (tmp_path / "b.heic").write_bytes(b"x")
    (tmp_path / "c.JPG").write_bytes(b"x")
    entries = dict(predict.expand([tmp_path]))
    assert entries[str(tmp_path / "a.jfif")] is None and entries[str(tmp_path / "c.JPG")] is None
    assert entries[str(tmp_path / "b.heic")].startswith(predict.SKIPPED + ".heic is not an image format")


def test_an_unlistable_folder_is_an_error_line(tmp_path, locked_folders):
    (tmp_path / "locked").mkdir()
    (tmp_path / "ok.jpg").write_bytes(b"x")
    entries = dict(predict.expand([tmp_path]))
    assert entries[str(tmp_path / "locked")].startswith("unreadable: Permission denied")
    assert entries[str(tmp_path / "ok.jpg")] is None


@pytest.mark.parametrize("metadata, reason", [(b"{not json", "not valid JSON"), (b"[1, 2]", "holds a list"),
                                              (b'{"fit": "stretch"}', "unknown fit"), (b'{"fit": 3}', "unknown fit")])
def test_a_model_with_a_broken_embedded_metadata_json_is_one_line(model_file, photos, tmp_path, metadata, reason):
    import zipfile

    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("metadata.json", metadata)
    model = tmp_path / "model.tflite"
    model.write_bytes(model_file.read_bytes() + packed.getvalue())
    (tmp_path / "labels.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    result = subprocess.run([sys.executable, "-m", "trashnet", "predict", str(photos / "a.jpg"), "--model", str(model)],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(settings.REPO_ROOT)})
    lines = [line for line in result.stderr.splitlines() if not line.startswith("INFO: ")]  # LiteRT's own
    assert result.returncode == 2 and "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and reason in lines[0] and " - " in lines[0]
