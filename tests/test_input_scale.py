"""``model.input_scale`` (issue 26, docs/deployment-parity.md lever 3): a K x image_size input whose first layer
averages K x K blocks, so that apps' resizers reduce a photo K times less while the network still sees image_size.

- the option is off by default and then absent from config dicts (cache keys of earlier runs stay);
- the K = 3 model is the K = 1 network applied to the 3x3-averaged image (same weights);
- it converts to TFLite (fp32, int8, int16x8) with the K x image_size input;
- the model card's Pillow lines still give exactly predict's input at that size;
- a baseline trains on images decoded at K x image_size (the sample data set, tiny sizes).
"""

from __future__ import annotations

import numpy as np
import pytest

from trashnet.core import config, images, profiles, settings, tflite
from trashnet.core.keras_env import keras
from trashnet.deploy import input_scale
from trashnet.nets import convert, models

SIZE, SCALE = 32, 3  # MobileNet's smallest input: fast, and the pooling is what is tested
PHOTOS = sorted(settings.SAMPLE_DIR.rglob("*.jpg"))[::12]


def test_input_scale_is_off_by_default_and_left_out_of_config_dicts(quick_profile):
    plain = profiles.load_variants(quick_profile)["mobilenet_v3_small"]
    assert plain.model.input_scale == 1 and plain.model.input_size == plain.model.image_size
    assert "input_scale" not in config.config_to_dict(plain)["model"]
    scaled = config.config_from_dict(profiles.deep_merge(config.config_to_dict(plain), {"model": {"input_scale": 3}}))
    assert scaled.model.input_size == 3 * plain.model.image_size
    assert config.config_to_dict(scaled)["model"]["input_scale"] == 3
    with pytest.raises(config.ConfigError, match="input_scale"):
        config.config_from_dict(profiles.deep_merge(config.config_to_dict(plain), {"model": {"input_scale": 0}}))
    # model.head (also left out at its default) and input_scale coexist in one dump.
    both = config.config_from_dict(profiles.deep_merge(config.config_to_dict(plain),
                                                       {"model": {"input_scale": 2, "head": "last_point"}}))
    dumped = config.config_to_dict(both)["model"]
    assert (dumped["input_scale"], dumped["head"]) == (2, "last_point")
    assert config.config_to_dict(config.config_from_dict(config.config_to_dict(both))) == config.config_to_dict(both)


@pytest.fixture(scope="module")
def pair():
    """A K = 3 model and the K = 1 network carrying its weights (matched by layer name)."""
    scaled = models.build_model("mobilenet_v3_small", num_classes=6, image_size=SIZE, input_scale=SCALE)
    # A fresh V3's activations vanish block by block (BatchNorm's initial statistics): give every BatchNorm the
    # statistics of its input on random images, in order, so that the image reaches the classifier.
    batch = np.random.default_rng(3).uniform(0, 255, (8, SCALE * SIZE, SCALE * SIZE, 3)).astype(np.float32)
    for layer in scaled.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            seen = keras.Model(scaled.input, layer.input)(batch, training=False).numpy()
            mean, var = seen.mean(axis=(0, 1, 2)), seen.var(axis=(0, 1, 2))
            layer.set_weights([np.ones_like(mean), np.zeros_like(mean), mean, var])
    plain = models.build_model("mobilenet_v3_small", num_classes=6, image_size=SIZE)
    return scaled, convert.carry_weights(scaled, plain, arch="mobilenet_v3_small")


def test_the_scaled_model_is_the_network_on_the_averaged_image(pair):
    scaled, plain = pair
    assert scaled.input_shape == (None, SCALE * SIZE, SCALE * SIZE, 3) and plain.input_shape == (None, SIZE, SIZE, 3)
    assert models.input_scale(scaled) == SCALE and models.input_scale(plain) == 1
    assert [layer.name for layer in scaled.layers[:3]] == [models.INPUT_NAME, models.INPUT_POOL_NAME,
                                                           models.PREPROCESS_NAME]
    batch = np.random.default_rng(0).uniform(0, 255, (4, SCALE * SIZE, SCALE * SIZE, 3)).astype(np.float32)
    averaged = batch.reshape(4, SIZE, SCALE, SIZE, SCALE, 3).mean(axis=(2, 4))
    features = lambda model: keras.Model(model.input, [model.get_layer("pool").output, model.output])  # noqa: E731
    (ours, ours_p), (theirs, theirs_p) = features(scaled).predict(batch, verbose=0), \
        features(plain).predict(averaged, verbose=0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours_p, theirs_p, atol=1e-5)
    # Not trivially equal: the images give different features and probabilities.
    assert np.abs(ours_p - ours_p[::-1]).max() > 0.05 and np.abs(ours - ours[::-1]).max() > 0.1


@pytest.mark.parametrize("precision", ["fp32", "int8", "int16x8"])
def test_the_scaled_model_converts_with_its_real_input_size(pair, precision):
    scaled, _ = pair
    representative = np.random.default_rng(1).uniform(0, 255, (8, SCALE * SIZE, SCALE * SIZE, 3)).astype(np.float32)
    model = scaled
    if precision == "int16x8":  # hard-swish rebuilt as the quantize stage does, keeping the input scale
        model = convert.int16_compatible(scaled, arch="mobilenet_v3_small", image_size=SIZE, alpha=1.0,
                                          dropout=0.2, input_scale=SCALE)
        assert models.input_scale(model) == SCALE
    content = convert.convert(model, precision, representative=None if precision == "fp32" else representative)
    runner = tflite.TFLiteModel(content)
    assert runner.image_size == SCALE * SIZE
    pooled_as = {"fp32": "float32", "int8": "int8", "int16x8": "int16"}[precision]  # quantized, not left float
    assert tflite.op_census(content)["by_op_dtype"].get(f"AVERAGE_POOL_2D:{pooled_as}", 0) >= 1
    probabilities = runner.predict(representative[:2])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.02)
    if precision == "fp32":  # the file computes the Keras model (a random network is too touchy for int8 numbers)
        np.testing.assert_allclose(probabilities, scaled.predict(representative[:2], verbose=0), atol=1e-5)
        # What the TFLite metadata's input description says (final.write_metadata): the real size, and why.
        text = input_scale.input_description(content, {"input_scale": SCALE})
        assert f"{SCALE * SIZE}x{SCALE * SIZE} px" in text and f"sees {SIZE} px" in text
        assert input_scale.input_description(content, {}) is None  # no scale: tflite-support's default text


@pytest.mark.parametrize("fit", images.FITS)
def test_the_pillow_snippet_gives_predicts_input_at_the_scaled_size(fit):
    size = SCALE * 128  # a 384 px file for the 128 px network: TrashNet's 512x384 photos decode at full size
    code = images.pillow_snippet(size, fit)
    assert f"({size}, {size})" in code
    for path in PHOTOS:
        namespace = {"path": str(path)}
        exec(code, namespace)  # noqa: S102 - the card's snippet, as a user would paste it
        expected = images.load_for_model(path, size, fit).astype(np.float32)[None]
        assert namespace["x"].shape == (1, size, size, 3)
        np.testing.assert_array_equal(namespace["x"], expected)


@pytest.mark.slow
def test_a_baseline_trains_on_images_decoded_at_the_scaled_size(sample_dataset, quick_profile, tmp_path):
    from trashnet.stages import train

    base = config.config_to_dict(profiles.load_variants(quick_profile)["mobilenet_v3_small"])
    small = {"model": {"image_size": SIZE, "input_scale": SCALE}, "train": {"epochs": 1, "batch_size": 16},
             "quantize": {"latency_runs": 2, "latency_warmup": 1}}
    cfg = config.config_from_dict(profiles.deep_merge(base, small))
    out = tmp_path / cfg.id
    record = train.run_baseline(cfg, dataset_dir=sample_dataset, output_dir=out, cache_dir=tmp_path / "cache",
                                verbose=False)
    assert record["image_size"] == SCALE * SIZE and record["input_scale"] == SCALE
    loaded = keras.models.load_model(out / f"{cfg.id}.keras")
    assert loaded.input_shape == (None, SCALE * SIZE, SCALE * SIZE, 3) and models.input_scale(loaded) == SCALE
    assert list((tmp_path / "cache" / "arrays").glob(f"*-{SCALE * SIZE}px-*"))  # decoded at the model's input
