"""Post-training quantization on small trained models (48 px, the bundled sample): every precision
converts and runs in LiteRT, MobileNetV3's 16x8 file has no float ops, the hard-swish rewrite keeps the
float model's outputs, and ``run_quantization`` writes its result files (also when conversion fails)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from trashnet.core import config, profiles, progress, registry, settings, tflite

SIZE = 48
V3 = "mobilenet_v3_small"
# Stated thresholds against the float Keras model on the sample's test images.
MIN_AGREEMENT_PCT = 90.0
MAX_PROB_DIFF = {"fp32": 1e-5, "fp16": 1e-3, "int8-dynamic": 0.02, "int8": 0.05, "int16x8": 0.01,
                 "int16x8-fallback": 0.01}


@pytest.fixture(scope="module")
def sample_arrays(sample_dataset):
    from trashnet.data import inputs

    return inputs.load_dataset(sample_dataset, SIZE)


def _load(path: Path):
    from trashnet.core.keras_env import keras

    return keras.models.load_model(path, compile=False)


@pytest.fixture(scope="module")
def v3_model(trained_model_factory):
    return _load(trained_model_factory(V3, SIZE))


@pytest.fixture(scope="module")
def representative(sample_arrays):
    from trashnet.nets import convert

    return convert.representative_images(sample_arrays.train.images, 8, seed=0)


@pytest.fixture(scope="module")
def v3_files(v3_model, representative):
    """Every precision of the trained MobileNetV3-Small, converted once."""
    from trashnet.nets import convert

    files = {}
    for precision in config.PRECISIONS:
        model = v3_model
        if precision == "int16x8":
            model = convert.int16_compatible(v3_model, arch=V3, image_size=SIZE, alpha=1.0, dropout=0.2)
        files[precision] = convert.convert(model, precision, representative=representative)
    return files


def _variant(precision: str, source: str = V3, **quantize_section) -> config.VariantConfig:
    """The quick profile's quantized variant at 48 px (the trained fixtures' size)."""
    variants = profiles.load_variants(profiles.load_profile("quick"))
    data = config.config_to_dict(variants[f"{source}.{precision}"])
    data["model"]["image_size"] = SIZE
    data["quantize"].update(quantize_section)
    return config.config_from_dict(data)


@pytest.mark.slow
@pytest.mark.parametrize("precision", config.PRECISIONS)
def test_each_precision_runs_in_litert_and_follows_the_float_model(precision, v3_model, v3_files, sample_arrays):
    images = sample_arrays.test.images
    reference = v3_model.predict(images.astype(np.float32), verbose=0)
    runner = tflite.TFLiteModel(v3_files[precision])
    probabilities = runner.predict(images)
    assert probabilities.shape == reference.shape
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.02)
    # Top-1 agreement only where the float model is decided: a briefly trained model's near-flat
    # softmax can flip its arg-max under one int8 output step (1/256).
    top2 = np.sort(reference, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > 2.0 / 256
    if decided.any():
        agreement = 100.0 * (probabilities.argmax(1) == reference.argmax(1))[decided].mean()
        assert agreement >= MIN_AGREEMENT_PCT
    assert np.abs(probabilities - reference).max() <= MAX_PROB_DIFF[precision]
    expected_input = np.int8 if precision == "int8" else np.float32
    assert runner.input_dtype == expected_input


@pytest.mark.slow
def test_sizes_shrink_with_precision(v3_files):
    sizes = {precision: len(content) for precision, content in v3_files.items()}
    assert sizes["fp16"] < 0.6 * sizes["fp32"]
    assert sizes["int8"] < 0.4 * sizes["fp32"] and sizes["int8-dynamic"] < 0.4 * sizes["fp32"]


@pytest.mark.slow
def test_op_census_finds_float_hard_swish_only_in_the_fallback_file(v3_files):
    fallback = tflite.op_census(v3_files["int16x8-fallback"])
    assert fallback["float_compute_by_op"].get("HARD_SWISH", 0) > 0
    assert fallback["by_op"]["DEQUANTIZE"] > 1  # float islands wrapped in (de)quantize ops
    for precision in ("int16x8", "int8"):
        census = tflite.op_census(v3_files[precision])
        assert census["float_compute_ops"] == 0, (precision, census["float_compute_by_op"])
        assert "HARD_SWISH" not in census["by_op"] or precision == "int8"
    int16 = tflite.op_census(v3_files["int16x8"])
    activations = {key.split(":")[1] for key in int16["by_op_dtype"] if not key.startswith("DEQUANTIZE")}
    assert activations == {"int16"}


@pytest.mark.slow
def test_keras_hard_swish_is_fused_and_refused_without_fallback(v3_model, representative):
    """The relu6 form Keras builds becomes HARD_SWISH, which the 16x8 mode cannot quantize (docs/toolchain-facts.md)."""
    from trashnet.nets import convert

    with pytest.raises(Exception, match="HARD_SWISH"):
        convert.convert(v3_model, "int16x8", representative=representative)


HARD_SWISH_FORMS = {  # name -> (build(x, keras, tf), fused into HARD_SWISH by the converter?)
    "keras x*relu6(x+3)*(1/6)": (
        lambda x, keras, tf: keras.layers.Multiply()([x, keras.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)]), True),
    "x*min(max(x+3,0),6)/6": (lambda x, keras, tf: x * tf.minimum(tf.maximum(x + 3.0, 0.0), 6.0) / 6.0, True),
    "(x/6)*relu6(x+3)": (
        lambda x, keras, tf: keras.layers.Multiply()([x * (1.0 / 6.0), keras.layers.ReLU(6.0)(x + 3.0)]), False),
    "x*clip(x/6+0.5,0,1)": (lambda x, keras, tf: x * tf.clip_by_value(x * (1.0 / 6.0) + 0.5, 0.0, 1.0), False),
}


@pytest.mark.slow
@pytest.mark.parametrize("form", HARD_SWISH_FORMS)
def test_which_hard_swish_forms_the_converter_fuses(form):
    """Relu6/min-max forms become HARD_SWISH (refused by 16x8); the two forms used instead do not."""
    from trashnet.nets import convert
    from trashnet.core.keras_env import keras, tf

    build, fused = HARD_SWISH_FORMS[form]
    inputs = keras.Input((16, 16, 3))
    x = build(keras.layers.Conv2D(8, 3)(inputs), keras, tf)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    representative = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype(np.float32)
    assert ("HARD_SWISH" in tflite.op_census(convert.convert(model, "fp32"))["by_op"]) == fused
    if fused:
        with pytest.raises(Exception, match="HARD_SWISH"):
            convert.convert(model, "int16x8", representative=representative)
    else:
        census = tflite.op_census(convert.convert(model, "int16x8", representative=representative))
        assert census["float_compute_ops"] == 0


@pytest.mark.slow  # trains (trained_model_factory)
@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "mobilenet_v3_large"])
def test_rewritten_hard_swish_keeps_the_float_outputs(arch, trained_model_factory, sample_arrays):
    from trashnet.nets import convert
    from trashnet.core.keras_env import keras

    model = _load(trained_model_factory(arch, SIZE))
    rebuilt = convert.int16_compatible(model, arch=arch, image_size=SIZE, alpha=1.0, dropout=0.2)
    multiplies = [layer for layer in rebuilt.layers if isinstance(layer, keras.layers.Multiply)]
    assert len(multiplies) == len([layer for layer in model.layers if isinstance(layer, keras.layers.Multiply)])
    rng = np.random.default_rng(0)
    images = np.concatenate([sample_arrays.test.images, rng.integers(0, 256, (8, SIZE, SIZE, 3), np.uint8)])
    diff = convert.float_outputs_unchanged(model, rebuilt, images)
    assert diff["float_max_abs_diff"] < 1e-5
    assert diff["feature_max_rel_diff"] < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mobilenet_v1", "mobilenet_v2"])
def test_int16x8_v1_v2_load_with_trained_weights_not_random_ones(arch, trained_model_factory, representative):
    """docs/toolchain-facts.md records 16x8 V1/V2 fail to prepare (`no_integer_overflow_from_quantization`) with random weights.

    The cause: untrained BatchNorm statistics let activations shrink layer after layer, the calibrated
    int16 scale of a deep RELU6 output drops below 6 / 2**31, and the kernel's int32 clamp at 6 / scale
    overflows. Trained weights keep activations O(1): the same conversion loads and runs.
    """
    from trashnet.nets import models
    from trashnet.nets import convert
    from trashnet.core.keras_env import seed_everything

    trained = convert.convert(_load(trained_model_factory(arch, SIZE)), "int16x8", representative=representative)
    runner = tflite.TFLiteModel(trained)
    assert runner.predict(representative[:2]).shape == (2, 6)
    assert tflite.smallest_activation_scale(trained)["scale"] > 1e-7

    seed_everything(0)
    untrained = models.build_model(arch, num_classes=6, image_size=SIZE)
    random_file = convert.convert(untrained, "int16x8", representative=representative)
    with pytest.raises(RuntimeError, match="no_integer_overflow_from_quantization"):
        tflite.TFLiteModel(random_file)
    assert tflite.smallest_activation_scale(random_file)["scale"] < 6.0 / 2**31


def _source_dir(tmp_path: Path, model_path: Path, source: str) -> Path:
    source_dir = tmp_path / "models" / "train" / source
    source_dir.mkdir(parents=True)
    shutil.copyfile(model_path, source_dir / f"{source}.keras")
    (source_dir / "metrics.json").write_text(json.dumps({"variant": source, "stage": "train", "weights": "none",
                                                         "params": 123}))
    return source_dir


@pytest.mark.slow
def test_run_quantization_writes_the_file_and_its_evaluation(tmp_path, trained_model_factory, sample_dataset,
                                                             monkeypatch):
    from trashnet.stages import quantize

    # The test split's own <class>/<image> folder as the OOD set: its block must repeat the test numbers.
    monkeypatch.setenv(settings.ENV_OOD_DATA, str(sample_dataset / "test"))
    cfg = _variant("int16x8")
    source_dir = _source_dir(tmp_path, trained_model_factory(V3, SIZE), V3)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv(settings.ENV_PROGRESS, str(tmp_path / settings.PROGRESS_FILE))  # as `run` sets it
    record = quantize.run_quantization(cfg, dataset_dir=sample_dataset, source_dir=source_dir, output_dir=out,
                                       cache_dir=tmp_path / "cache")
    assert (out / "mobilenet_v3_small.int16x8.tflite").is_file()
    [converted] = progress.Tail(tmp_path / settings.PROGRESS_FILE).read()  # the progress line's step
    assert (converted.kind, converted.phase) == ("step", "converted")
    assert converted.seconds == record["conversion"]["seconds"]
    written = json.loads((out / "metrics.json").read_text())
    assert written["conversion"]["status"] == "ok" and written["precision"] == "int16x8"
    assert written["weights"] == "none" and written["params"] == 123  # carried over from the source
    assert written["provenance"]["config"]["id"] == cfg.id
    assert written["test"]["n"] == record["test"]["n"] > 0
    assert np.asarray(written["test"]["confusion_matrix"]).shape == (6, 6)
    assert written["op_census"]["float_compute_ops"] == 0
    assert written["rewrite"]["feature_max_rel_diff"] < 1e-5
    assert set(written["latency_ms"]) == {"tflite_threads1", "tflite_threads2"}
    assert written["size"]["gzip_bytes"] < written["size"]["raw_bytes"]
    assert 0 <= written["agreement"]["top1_agreement_pct"] <= 100
    rows = (out / "predictions.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + written["test"]["n"]
    assert "float compute ops: 0" in quantize.format_summary(record)
    ood = written["ood"]
    assert ood["dataset"] == "test" and ood["n"] == written["test"]["n"] and ood["unreadable"] == 0
    assert ood["accuracy"] == written["test"]["accuracy"]
    assert ood["macro_f1"] == pytest.approx(written["test"]["macro_f1"])


@pytest.mark.slow
def test_a_failed_conversion_is_a_result(tmp_path, sample_dataset):
    """Random-weight MobileNetV1 in 16x8: converts, but LiteRT refuses the file; metrics.json says why."""
    from trashnet.nets import models
    from trashnet.stages import quantize
    from trashnet.core.keras_env import seed_everything

    seed_everything(0)
    model_path = tmp_path / "untrained.keras"
    models.build_model("mobilenet_v1", num_classes=6, image_size=SIZE).save(model_path)
    cfg = _variant("int16x8", source="mobilenet_v1")
    out = tmp_path / "out"
    out.mkdir()
    record = quantize.run_quantization(cfg, dataset_dir=sample_dataset,
                                       source_dir=_source_dir(tmp_path, model_path, "mobilenet_v1"),
                                       output_dir=out, cache_dir=None)
    written = json.loads((out / "metrics.json").read_text())
    assert written["conversion"]["status"] == "failed"
    assert "no_integer_overflow_from_quantization" in written["conversion"]["error"]
    assert written["conversion"]["smallest_activation_scale"]["scale"] < 6.0 / 2**31
    assert "test" not in written and "provenance" in written
    assert "error:" in quantize.format_summary(record)


def test_notebook_is_thin_and_committed_without_outputs():
    import nbformat

    notebook = nbformat.read(registry.get("quantize").notebook, as_version=4)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    names = [line.split(":")[0] for line in tagged[0].source.splitlines() if line and not line.startswith("#")]
    assert names == ["variant_id", "config", "dataset_dir", "models_dir", "output_dir", "cache_dir"]
    for before, cell in zip(notebook.cells, notebook.cells[1:]):
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None
            assert "def " not in cell.source and "class " not in cell.source
            assert before.cell_type == "markdown", cell.source


@pytest.mark.slow
def test_notebook_runs_under_papermill(tmp_path, trained_model_factory, sample_dataset):
    import papermill

    cfg = _variant("int8")
    _source_dir(tmp_path, trained_model_factory(V3, SIZE), V3)
    out = tmp_path / "models" / "quantize" / cfg.id
    out.mkdir(parents=True)
    papermill.execute_notebook(
        str(registry.get("quantize").notebook), str(out / f"{cfg.id}.ipynb"), kernel_name="python3",
        progress_bar=False, parameters={
            "variant_id": cfg.id, "config": config.config_to_dict(cfg), "dataset_dir": str(sample_dataset),
            "models_dir": str(tmp_path / "models"), "output_dir": str(out), "cache_dir": str(tmp_path / "cache")})
    written = json.loads((out / "metrics.json").read_text())
    assert written["conversion"]["status"] == "ok" and written["io"]["input_dtype"] == "int8"
    assert (out / f"{cfg.id}.tflite").is_file()
