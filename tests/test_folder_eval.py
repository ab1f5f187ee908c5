"""``python -m trashnet evaluate``: any .tflite on any labelled folder, numbers checked by hand."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from results_tree import CLASSES
from trashnet.deploy import evaluate, predict
from trashnet.core import images, settings

SIZE = 16
RED, GREEN, BLUE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 0)


def colour_tflite() -> bytes:
    """A real .tflite whose answer is known from a photo's colour: red -> cardboard, green -> glass,
    blue -> metal, black -> paper (mean RGB through fixed Dense weights)."""
    from trashnet.core.keras_env import keras, tf

    inputs = keras.Input((SIZE, SIZE, 3), dtype="float32")
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(len(CLASSES), activation="softmax")
    model = keras.Model(inputs, dense(x))
    weights = np.zeros((3, len(CLASSES)), np.float32)
    weights[0, 0] = weights[1, 1] = weights[2, 2] = 10.0 / 255.0
    bias = np.zeros(len(CLASSES), np.float32)
    bias[3] = 3.0
    dense.set_weights([weights, bias])
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32))
    return tf.lite.TFLiteConverter.from_concrete_functions([function], model).convert()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    (folder / "model.tflite").write_bytes(colour_tflite())
    (folder / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    return folder / "model.tflite"


def photo(path: Path, colour, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path, fmt)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Renamed folders (bottles, cans), two merged into one class (cans + tins -> metal), one skipped (misc),
    one under its own name (paper), three classes missing, one broken file."""
    root = tmp_path_factory.mktemp("data") / "photos"
    for i, colour in enumerate([GREEN, GREEN, GREEN, RED, BLACK]):
        photo(root / "bottles" / f"b{i}.png", colour)
    for i, colour in enumerate([BLUE, BLUE, GREEN]):
        photo(root / "cans" / f"c{i}.png", colour)
    (root / "cans" / "broken.jpg").write_bytes(b"not a jpeg at all")
    photo(root / "tins" / "t0.jpg", BLUE, "JPEG")
    photo(root / "tins" / "t1.png", BLACK)
    photo(root / "misc" / "m0.png", RED)
    photo(root / "misc" / "deep" / "m1.png", RED)
    for i, colour in enumerate([BLACK, BLACK, RED]):
        photo(root / "paper" / f"p{i}.png", colour)
    (root / "README.txt").write_text("a file outside any class folder")
    return root


CLASS_MAP = {"bottles": "glass", "cans": "metal", "tins": "metal", "misc": None}


def test_renamed_merged_and_missing_classes_give_the_hand_computed_numbers(model_file, data_dir):
    record = evaluate.evaluate_folder(model_file, data_dir, class_map=CLASS_MAP)
    # By hand. glass: 5 photos, 3 called glass, 1 cardboard, 1 paper. metal: 5 (3 cans + 2 tins; the broken
    # file is left out), 3 called metal, 1 glass, 1 paper. paper: 3, 2 called paper, 1 cardboard.
    assert record["n"] == 13
    assert record["accuracy"] == pytest.approx(8 / 13)
    glass, metal, paper = (record["per_class"][name] for name in ("glass", "metal", "paper"))
    assert (glass["precision"], glass["recall"], glass["n"]) == (pytest.approx(3 / 4), pytest.approx(3 / 5), 5)
    assert glass["f1"] == pytest.approx(2 / 3)  # 2PR/(P+R) = 0.9 / 1.35
    assert (metal["precision"], metal["recall"], metal["f1"], metal["n"]) == (1.0, pytest.approx(0.6),
                                                                                pytest.approx(0.75), 5)
    assert (paper["precision"], paper["recall"], paper["f1"]) == (0.5, pytest.approx(2 / 3), pytest.approx(4 / 7))
    assert record["macro_f1"] == pytest.approx((2 / 3 + 0.75 + 4 / 7) / 3)  # over the 3 classes present
    assert list(record["per_class"]) == ["glass", "metal", "paper"]
    matrix = record["confusion_matrix"]
    assert matrix["rows"] == ["glass", "metal", "paper"] and matrix["columns"] == list(CLASSES)
    assert matrix["counts"] == [[1, 3, 0, 1, 0, 0], [0, 1, 3, 1, 0, 0], [1, 0, 0, 2, 0, 0]]
    # Every file accounted for: 13 scored + 1 unreadable + 2 skipped (misc) = 16; the loose README listed.
    assert record["files"] == 16 and record["skipped_folders"] == {"misc": 2}
    assert record["unreadable"] == [{"path": "cans/broken.jpg", "error": record["unreadable"][0]["error"]}]
    assert record["unreadable"][0]["error"].startswith("not-an-image")
    assert record["loose_files"] == ["README.txt"]
    assert record["class_map"] == {**CLASS_MAP, "paper": "paper"}
    assert record["fit"] == "squash" and len(record["predictions"]) == 13


def test_folder_names_the_map_does_not_cover_are_errors(model_file, data_dir):
    with pytest.raises(evaluate.EvaluationError, match="bottles, cans, misc, tins are not labels"):
        evaluate.evaluate_folder(model_file, data_dir)
    with pytest.raises(evaluate.EvaluationError, match="lacks: bins"):
        evaluate.evaluate_folder(model_file, data_dir, class_map={**CLASS_MAP, "bins": "metal"})
    with pytest.raises(evaluate.EvaluationError, match="maps to steel, not labels"):
        evaluate.evaluate_folder(model_file, data_dir, class_map={**CLASS_MAP, "cans": "steel"})


def test_class_map_files(tmp_path):
    yaml_file = tmp_path / "map.yaml"
    yaml_file.write_text("bottles: glass\nmisc: null\n")
    assert evaluate.load_class_map(yaml_file) == {"bottles": "glass", "misc": None}
    json_file = tmp_path / "map.json"
    json_file.write_text(json.dumps({"cans": "metal"}))
    assert evaluate.load_class_map(json_file) == {"cans": "metal"}
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(evaluate.EvaluationError, match="expected a mapping"):
        evaluate.load_class_map(tmp_path / "bad.yaml")
    (tmp_path / "num.json").write_text('{"cans": 3}')
    with pytest.raises(evaluate.EvaluationError, match="use a model label or null"):
        evaluate.load_class_map(tmp_path / "num.json")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    code = ("import sys; from trashnet import cli; status = cli.main(sys.argv[1:]); "
            "assert 'tensorflow' not in sys.modules, 'evaluate imported TensorFlow'; sys.exit(status)")
    env = {**os.environ, "PYTHONPATH": str(settings.REPO_ROOT), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-c", code, "evaluate", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_writes_json_and_png_without_tensorflow(model_file, data_dir, tmp_path):
    class_map = tmp_path / "map.yaml"
    class_map.write_text("bottles: glass\ncans: metal\ntins: metal\nmisc: null\n")
    done = run_cli("--model", str(model_file), "--data", str(data_dir), "--class-map", str(class_map),
                   "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "13 images, accuracy 61.5 %" in done.stdout
    assert "cans/broken.jpg: not-an-image" in done.stderr and "1 unreadable" in done.stderr
    record = json.loads((tmp_path / "out" / evaluate.RESULT_FILE).read_text())
    assert record["accuracy"] == pytest.approx(8 / 13)
    assert (tmp_path / "out" / evaluate.FIGURE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    done = run_cli("--model", str(model_file), "--data", str(data_dir))
    assert done.returncode == 2 and "error: folders bottles" in done.stderr and "--class-map" in done.stderr
    done = run_cli("--model", str(model_file), "--data", str(tmp_path / "nowhere"), "--class-map", str(class_map))
    assert done.returncode == 2 and "is not a folder" in done.stderr


def test_fits_squash_crop_pad():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 8, 20))  # a blue strip on the left fifth
    squash = images.to_model_input(image, SIZE, "squash")
    crop = images.to_model_input(image, SIZE, "crop")
    pad = images.to_model_input(image, SIZE, "pad")
    assert squash.shape == crop.shape == pad.shape == (SIZE, SIZE, 3)
    assert squash[SIZE // 2, 0, 2] == 255  # squash keeps the left strip
    assert crop[SIZE // 2, 0, 0] == 255 and crop[:, :, 2].max() == 0  # the centre square cuts it off
    assert (pad[0] == 255).all() and (pad[-1] == 255).all()  # white margins above and below
    assert pad[SIZE // 2, 0, 2] == 255  # and the whole frame is still there
    with pytest.raises(ValueError, match="unknown fit"):
        images.to_model_input(image, SIZE, "stretch")


def test_fit_travels_with_the_model(model_file, data_dir, tmp_path):
    from trashnet.stages import final

    content = final.append_zip(model_file.read_bytes(), {
        "labels.txt": ("\n".join(CLASSES) + "\n").encode(), "metadata.json": json.dumps({"fit": "pad"}).encode()})
    carried = tmp_path / "carried.tflite"
    carried.write_bytes(content)
    assert predict.model_fit(content) == "pad"
    assert evaluate.evaluate_folder(carried, data_dir, class_map=CLASS_MAP)["fit"] == "pad"
    assert evaluate.evaluate_folder(carried, data_dir, class_map=CLASS_MAP, fit="crop")["fit"] == "crop"


def test_predict_reads_the_fit_the_model_carries(model_file, tmp_path):
    """A black letterbox photo: squashed it is black (paper); padded, white margins dominate (cardboard)."""
    from trashnet.stages import final

    strip = tmp_path / "strip.png"
    Image.new("RGB", (64, 8), BLACK).save(strip)
    content = final.append_zip(model_file.read_bytes(), {
        "labels.txt": ("\n".join(CLASSES) + "\n").encode(), "metadata.json": json.dumps({"fit": "pad"}).encode()})
    carried = tmp_path / "carried.tflite"
    carried.write_bytes(content)
    assert [r.label for r in predict.predict([strip], model_file)] == ["paper"]
    assert [r.label for r in predict.predict([strip], carried)] == ["cardboard"]
    assert [r.label for r in predict.predict([strip], carried, fit="squash")] == ["paper"]


@pytest.mark.realdata
def test_the_ood_dev_set_is_measured_whole(model_file, ood_data_dir, quick_profile):
    """The real OOD set through measure_ood: every photo decodes and is scored in its class."""
    from trashnet.core.tflite import TFLiteModel

    runner = TFLiteModel(model_file)
    block = evaluate.measure_ood(runner.predict, list(CLASSES), runner.image_size, folder=ood_data_dir,
                                    class_map=dict(quick_profile.ood.class_map))
    assert block["unreadable"] == 0 and block["n"] == sum(row["n"] for row in block["per_class"].values())
    folders = sorted(p.name for p in ood_data_dir.iterdir() if p.is_dir())
    assert sorted(block["per_class"]) == sorted(block["class_map"][f] for f in folders if block["class_map"][f])
    assert 0.0 <= block["accuracy"] <= 1.0 and block["dataset"] == ood_data_dir.name


def test_measure_ood_is_off_without_the_variable(model_file):
    from trashnet.core.tflite import TFLiteModel

    runner = TFLiteModel(model_file)
    assert evaluate.measure_ood(runner.predict, list(CLASSES), runner.image_size) is None  # conftest unset it


@pytest.mark.slow
def test_a_trained_baseline_records_its_ood_block(sample_dataset, quick_profile, tmp_path, monkeypatch):
    """The baseline stage with $TRASHNET_OOD_DATA set: metrics.json gains the block, with the class map."""
    from test_train import variant
    from trashnet.nets import scoring
    from trashnet.stages import train

    ood = tmp_path / "ood"
    for i, colour in enumerate([RED, GREEN, BLUE]):
        photo(ood / "jars" / f"j{i}.png", colour)
        photo(ood / "metal" / f"m{i}.png", colour)
    photo(ood / "other" / "o.png", RED)
    monkeypatch.setenv(settings.ENV_OOD_DATA, str(ood))
    cfg = variant(quick_profile, train={"epochs": 1}, ood={"class_map": {"jars": "glass", "other": None}})
    out = tmp_path / "run"
    record = train.run_baseline(cfg, dataset_dir=sample_dataset, output_dir=out, verbose=False)
    block = scoring.read_metrics(out)["ood"]
    assert block == record["ood"]
    assert block["dataset"] == "ood" and block["n"] == 6 and sorted(block["per_class"]) == ["glass", "metal"]
    assert block["class_map"] == {"jars": "glass", "metal": "metal", "other": None}
    assert block["fit"] == "squash" and block["unreadable"] == 0
    assert sum(map(sum, block["confusion_matrix"]["counts"])) == 6


def test_the_ood_set_joins_the_run_cache_key_only_when_set(data_dir, tmp_path, monkeypatch):
    """A run measured without an OOD set, or on another one, is run again (cache.cache_key)."""
    from trashnet.runner import cache

    assert cache.ood_fingerprint() is None  # unset: cache keys stay as they were
    copy = tmp_path / "ood"
    shutil.copytree(data_dir, copy)
    monkeypatch.setenv(settings.ENV_OOD_DATA, str(copy))
    first = cache.ood_fingerprint()
    assert first is not None and cache.ood_fingerprint() == first
    photo(copy / "paper" / "new.png", RED)
    assert cache.ood_fingerprint() != first


# --- issue 24: every path accounted for; class maps read safely and checked --------------------------------


def test_fifos_dangling_links_and_unlistable_folders_are_listed_not_dropped(model_file, tmp_path, locked_folders):
    root = tmp_path / "photos"
    for i in range(3):
        photo(root / "glass" / f"g{i}.png", GREEN)
        photo(root / "metal" / f"m{i}.png", BLUE)
    os.mkfifo(root / "glass" / "pipe.png")
    (root / "metal" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    photo(root / "metal" / "locked" / "m9.png", BLUE)
    (root / "glass" / "loop").symlink_to("..")
    record = evaluate.evaluate_folder(model_file, root, workers=1)
    errors = {item["path"]: item["error"] for item in record["unreadable"]}
    assert record["n"] == 6 and set(errors) == {"glass/pipe.png", "metal/gone.png", "metal/locked", "glass/loop"}
    assert errors["glass/pipe.png"].startswith("not-a-file") and "Permission denied" in errors["metal/locked"]
    assert "6 scored, 4 unreadable" in "\n".join(evaluate.summary_lines(record))


def test_a_class_map_naming_a_folder_twice_or_a_path_is_refused(tmp_path):
    for name, text in (("twice.yaml", "bottles: glass\nbottles: metal\n"),
                       ("twice.json", '{"bottles": "glass", "bottles": "metal"}'),
                       ("path.yaml", "../x: glass\n"), ("empty.yaml", "bottles: ''\n"), ("list.yaml", "- a\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(evaluate.EvaluationError):
            evaluate.load_class_map(tmp_path / name)


@pytest.mark.timeout(30)
def test_a_class_map_that_is_a_pipe_or_a_device_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "map.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (evaluate.fileio.SMALL_FILE_LIMIT + 1))
    for path, reason in ((tmp_path / "map.yaml", "named pipe"), (tmp_path / "zero.yaml", "character device"),
                         (big, "larger than")):
        result = subprocess.run([sys.executable, "-m", "trashnet", "evaluate", "--model", "m.tflite", "--data", ".",
                                 "--class-map", str(path)], capture_output=True, text=True, timeout=20,
                                env={**os.environ, "PYTHONPATH": str(settings.REPO_ROOT)})
        assert result.returncode == 2 and reason in result.stderr and "Traceback" not in result.stderr, result.stderr
