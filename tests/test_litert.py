"""The TF-free LiteRT runner on small converted models: batching, int8 input/output, census, latency."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from trashnet.core import settings, tflite

SIZE = 32
NUM_CLASSES = 4


@pytest.fixture(scope="module")
def color_model():
    """A tiny classifier whose prediction depends strongly on the image's mean colour.

    Raw pixels -> the project's Rescaling -> GAP -> fixed Dense -> softmax: an int8 file that got its
    input scale or zero point wrong would visibly disagree with the float model.
    """
    from trashnet.nets import models
    from trashnet.core.keras_env import keras

    inputs = keras.Input((SIZE, SIZE, 3), name=models.INPUT_NAME)
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=models.PREPROCESS_NAME)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name=models.OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) * (4.0 if w.ndim == 2 else 1.0)
                       for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def images():
    # Flat-ish colour images with noise: the mean colour, hence the class, varies image to image.
    rng = np.random.default_rng(1)
    colours = rng.uniform(0, 255, (40, 1, 1, 3))
    return np.clip(colours + rng.normal(0, 20, (40, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(color_model, images):
    from trashnet.nets import convert

    representative = convert.representative_images(images, 20, seed=0)
    return {precision: convert.convert(color_model, precision, representative=representative)
            for precision in ("fp32", "int8")}


def test_litert_does_not_import_tensorflow():
    code = "import sys, trashnet.core.litert; sys.exit('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=settings.REPO_ROOT, capture_output=True)
    assert result.returncode == 0, "trashnet.core.litert pulled in TensorFlow"


@pytest.mark.slow
def test_fp32_file_matches_keras_and_batches_match_single_images(color_model, files, images):
    runner = tflite.TFLiteModel(files["fp32"])
    assert runner.batchable and runner.image_size == SIZE and runner.num_classes == NUM_CLASSES
    expected = color_model.predict(images.astype(np.float32), verbose=0)
    batched = runner.predict(images, batch_size=16)  # 40 = 16 + 16 + 8 (padded)
    single = np.stack([runner.predict_one(image) for image in images])
    np.testing.assert_allclose(batched, expected, atol=1e-5)
    np.testing.assert_allclose(single, batched, atol=1e-6)
    assert len(set(expected.argmax(1))) > 1, "the test model should not predict a single class"


@pytest.mark.slow
def test_int8_input_and_output_are_quantized_with_the_tensors_scale(files, images):
    float_probs = tflite.TFLiteModel(files["fp32"]).predict(images)
    runner = tflite.TFLiteModel(files["int8"])
    assert runner.input_dtype == np.int8 and np.dtype(runner.output["dtype"]) == np.int8
    scale, zero_point = runner.input["quantization"]
    # Calibrated on [0, 255] pixels: one step per grey level, 0 at -128.
    assert scale == pytest.approx(1.0, rel=0.05) and zero_point == -128
    probs = runner.predict(images)
    # Stated threshold: >= 90 % top-1 agreement and probabilities within 0.1 of the float file.
    agreement = (probs.argmax(1) == float_probs.argmax(1)).mean()
    assert agreement >= 0.9
    assert np.abs(probs - float_probs).max() < 0.1
    # Ignoring the zero point (pixels clipped into int8) would be visibly wrong.
    raw = np.clip(images.astype(np.int16), -128, 127).astype(np.int8)
    runner._set_batch(len(images))  # noqa: SLF001 - drive the interpreter directly for the negative case
    runner.interpreter.set_tensor(runner.input["index"], raw)
    runner.interpreter.invoke()
    wrong = runner._dequantize_output(runner.interpreter.get_tensor(runner.output["index"]))  # noqa: SLF001
    assert np.abs(wrong - float_probs).max() > np.abs(probs - float_probs).max()


@pytest.mark.slow
def test_op_census_counts_ops_by_type_and_dtype(files):
    fp32 = tflite.op_census(files["fp32"])
    assert fp32["by_op"]["CONV_2D"] == 1 and fp32["float_compute_ops"] == fp32["total"]
    int8 = tflite.op_census(files["int8"])
    assert int8["float_compute_ops"] == 0
    assert int8["by_op_dtype"]["CONV_2D:int8"] == 1


@pytest.mark.slow
def test_latency_reports_median_and_p90(files):
    latency = tflite.TFLiteModel(files["fp32"], num_threads=1).latency(runs=5, warmup=1)
    assert latency["runs"] == 5 and 0 < latency["median"] <= latency["p90"]


@pytest.mark.slow
def test_wrong_image_shape_is_a_clear_error(files):
    runner = tflite.TFLiteModel(files["fp32"])
    with pytest.raises(ValueError, match="expected images of shape"):
        runner.predict(np.zeros((2, SIZE + 1, SIZE, 3), np.uint8))
    with pytest.raises(ValueError, match="expected images of shape"):
        runner.predict_one(np.zeros((SIZE, SIZE), np.uint8))


@pytest.mark.slow
def test_parallel_interpreters_give_the_same_predictions_in_order(files, images):
    single = tflite.TFLiteModel(files["int8"]).predict(images)
    parallel = tflite.predict_parallel(files["int8"], images, workers=3, num_threads=1, batch_size=4)
    np.testing.assert_array_equal(parallel, single)
