"""The robustness augmentations (issue 18): shape, range, determinism under a seed, and what each changes."""

from __future__ import annotations

import numpy as np
import pytest

from trashnet.data import inputs
from trashnet.core.config import AugmentConfig, ConfigError
from trashnet.core.profiles import resolve_variant
from trashnet.core.keras_env import tf

SIZE = 32
SEED = tf.constant([3, 7], tf.int64)
OFF = AugmentConfig(flip=False, rotation=0.0, zoom=0.0, brightness=0.0, contrast=0.0)  # nothing at all


def synthetic_batch(n: int = 4) -> np.ndarray:
    """A dark red square object on a light grey board (TrashNet's look), as float32 in [0, 255]."""
    batch = np.full((n, SIZE, SIZE, 3), 215.0, np.float32)
    batch[:, 8:24, 8:24] = (150.0, 30.0, 20.0)
    return batch


def run(config: AugmentConfig, seed=SEED, batch=None) -> np.ndarray:
    batch = synthetic_batch() if batch is None else batch
    return inputs.augment_batch(tf.constant(batch), seed, config).numpy()


OPTIONS = {
    "crop": {"crop_scale": (0.3, 1.6)},
    "colour": {"saturation": 0.5, "hue": 0.2},
    "blur": {"blur": 1.0, "blur_sigma": 2.0},
    "noise": {"noise": 0.1},
    "jpeg": {"jpeg": 1.0, "jpeg_quality": (10, 30)},
    "grayscale": {"grayscale": 1.0},
    "background": {"background": 1.0},
}


@pytest.mark.parametrize("name", OPTIONS)
def test_each_option_changes_the_batch_deterministically(name):
    config = OFF.model_copy(update=OPTIONS[name])
    first, again = run(config), run(config)
    other = run(config, seed=tf.constant([4, 9], tf.int64))
    assert first.shape == (4, SIZE, SIZE, 3) and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 255.0
    np.testing.assert_array_equal(first, again)  # same seed, same pixels
    assert not np.allclose(first, synthetic_batch(), atol=0.5)  # it does something
    if name != "grayscale":  # grayscale at probability 1 is the same for every seed
        assert not np.array_equal(first, other)


def test_all_off_leaves_the_batch_alone():
    np.testing.assert_array_equal(run(OFF), synthetic_batch())


def test_grayscale_makes_channels_equal_and_keeps_brightness():
    out = run(OFF.model_copy(update={"grayscale": 1.0}))
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-4)
    np.testing.assert_allclose(out[..., 1], out[..., 2], atol=1e-4)
    assert abs(out[0, 0, 0, 0] - 215.0) < 1.0  # grey board stays the same grey


def test_background_replacement_changes_the_board_and_keeps_the_object():
    out = run(OFF.model_copy(update={"background": 1.0}))
    board = np.ones((SIZE, SIZE), bool)
    board[7:25, 7:25] = False  # the object plus the one-pixel soft edge of the mask
    inner = np.zeros((SIZE, SIZE), bool)
    inner[9:23, 9:23] = True
    source = synthetic_batch()
    assert np.abs(out[:, board] - source[:, board]).mean() > 20.0  # the board is replaced ...
    np.testing.assert_allclose(out[:, inner], source[:, inner], atol=1e-3)  # ... the object is not
    assert not np.allclose(out[0, board], out[1, board])  # a different texture per image


def test_background_replacement_leaves_an_all_white_image_alone():
    """Keyed area over background_max_fraction: the object is white itself (paper), nothing is replaced."""
    white = np.full((2, SIZE, SIZE, 3), 220.0, np.float32)
    out = run(OFF.model_copy(update={"background": 1.0}), batch=white)
    np.testing.assert_array_equal(out, white)


def test_zoom_out_crop_adds_white_board_around_the_photo():
    config = OFF.model_copy(update={"crop_scale": (3.0, 3.0), "crop_ratio": (1.0, 1.0)})
    out = run(config, batch=np.zeros((2, SIZE, SIZE, 3), np.float32))
    assert out[:, 0, 0].min() == 255.0 or out[:, -1, -1].min() == 255.0  # a corner lies outside the photo
    assert (out == 0.0).mean() == pytest.approx(1 / 3, abs=0.06)  # the photo covers ~1/3 of the area


def test_zoom_in_crop_keeps_only_photo_pixels():
    config = OFF.model_copy(update={"crop_scale": (0.2, 0.5)})
    out = run(config, batch=np.zeros((2, SIZE, SIZE, 3), np.float32))
    assert out.max() == 0.0  # no white frame: the window lies inside the image


def test_blur_preserves_a_flat_image_and_softens_edges():
    flat = np.full((2, SIZE, SIZE, 3), 100.0, np.float32)
    np.testing.assert_allclose(inputs.gaussian_blur(tf.constant(flat), 2.0).numpy(), flat, atol=1e-3)
    blurred = inputs.gaussian_blur(tf.constant(synthetic_batch(1)), 2.0).numpy()
    assert 20.0 < blurred[0, 16, 8, 1] < 215.0  # the edge pixel is now between object and board


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_mix_batch_mixes_images_targets_and_weights_by_the_same_share(mode):
    images = tf.constant(np.stack([np.zeros((SIZE, SIZE, 3)), np.full((SIZE, SIZE, 3), 100.0)]).astype(np.float32))
    targets = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    weights = tf.constant([1.0, 3.0])
    x, y, w = (t.numpy() for t in inputs.mix_batch(images, targets, weights, SEED, **{mode: 1.0}))
    again = inputs.mix_batch(images, targets, weights, SEED, **{mode: 1.0})
    np.testing.assert_array_equal(x, again[0].numpy())
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-6)
    share_of_second = x[0].mean() / 100.0  # image 0 is black, so its mean says how much of image 1 it got
    np.testing.assert_allclose(y[0, 1], share_of_second, atol=1e-5)
    np.testing.assert_allclose(w[0], 1.0 + 2.0 * share_of_second, atol=1e-4)
    if mode == "cutmix":
        assert set(np.unique(x[0])) <= {0.0, 100.0}  # pasted pixels, not blended ones


def test_mix_batch_off_returns_the_batch():
    images, targets, weights = tf.zeros((2, 4, 4, 3)), tf.eye(2), tf.ones(2)
    x, y, w = inputs.mix_batch(images, targets, weights, SEED)
    assert x is images and y is targets and w is weights


def test_config_defaults_are_off_and_bad_values_are_errors(quick_profile):
    defaults = AugmentConfig()
    assert defaults.crop_scale is None and defaults.background == 0 and defaults.mixup == 0
    assert defaults.jpeg == 0 and defaults.blur == 0 and defaults.noise == 0 and defaults.grayscale == 0
    entry = {"id": "mobilenet_v3_small", "stage": "train", "arch": "mobilenet_v3_small"}
    with pytest.raises(ConfigError, match="crop_scale"):
        resolve_variant(quick_profile, {**entry, "train": {"augment": {"crop_scale": [0.8, 0.2]}}})
    with pytest.raises(ConfigError, match="MixUp or CutMix"):
        resolve_variant(quick_profile, {**entry, "train": {"augment": {"mixup": 0.2, "cutmix": 1.0}}})
    cfg = resolve_variant(quick_profile, {**entry, "train": {"augment": {"crop_scale": [0.3, 1.5]}}})
    assert cfg.train.augment.crop_scale == (0.3, 1.5)


def test_training_pipeline_with_every_option(sample_dataset, quick_profile):
    """The real tf.data path: every option on, MixUp after the one-hot targets, same batches on a rerun."""
    from trashnet.stages import training

    augment = {"crop_scale": [0.4, 1.5], "saturation": 0.4, "hue": 0.05, "blur": 0.3, "noise": 0.05,
               "jpeg": 0.5, "grayscale": 0.1, "background": 0.5, "mixup": 0.2}
    entry = {"id": "mobilenet_v3_small", "stage": "train", "arch": "mobilenet_v3_small",
             "model": {"image_size": SIZE}, "train": {"augment": augment, "batch_size": 8}}
    cfg = resolve_variant(quick_profile, entry)
    data = inputs.load_dataset(sample_dataset, SIZE)
    x, y, w = next(iter(training.training_pipeline(data.train, cfg, len(data.classes))))
    again = next(iter(training.training_pipeline(data.train, cfg, len(data.classes))))
    assert x.shape == (8, SIZE, SIZE, 3) and y.shape == (8, len(data.classes)) and w.shape == (8,)
    np.testing.assert_array_equal(x.numpy(), again[0].numpy())
    np.testing.assert_allclose(y.numpy().sum(axis=1), 1.0, atol=1e-5)
    assert 0.0 <= x.numpy().min() and x.numpy().max() <= 255.0


def test_random_resample_draws_each_image_from_a_filter_of_its_larger_decode():
    """Issue 26: each image is one of RESAMPLE_FILTERS applied to its own larger decode, or left alone."""
    rng = np.random.default_rng(0)
    sources = rng.integers(0, 256, (16, 4 * SIZE, 4 * SIZE, 3)).astype(np.uint8)
    batch = np.zeros((16, SIZE, SIZE, 3), np.float32)
    out = inputs.random_resample(tf.constant(batch), tf.constant(sources), SEED, 1.0).numpy()
    candidates = [tf.clip_by_value(tf.image.resize(sources.astype(np.float32), (SIZE, SIZE), method=m, antialias=a),
                                   0, 255).numpy() for m, a in inputs.RESAMPLE_FILTERS]
    picked = [next(i for i, c in enumerate(candidates) if np.array_equal(out[k], c[k])) for k in range(16)]
    assert len(set(picked)) > 2  # several filters, not one
    np.testing.assert_array_equal(out, inputs.random_resample(tf.constant(batch), tf.constant(sources), SEED,
                                                              1.0).numpy())
    untouched = inputs.random_resample(tf.constant(batch), tf.constant(sources), SEED, 0.0).numpy()
    np.testing.assert_array_equal(untouched, batch)


def test_the_training_pipeline_resamples_from_the_larger_decodes(sample_dataset, quick_profile):
    from trashnet.stages import training

    entry = {"id": "mobilenet_v3_small", "stage": "train", "arch": "mobilenet_v3_small",
             "model": {"image_size": SIZE},
             "train": {"augment": {**OFF.model_dump(), "resample": 1.0, "resample_source": 64}, "batch_size": 8}}
    cfg = resolve_variant(quick_profile, entry)
    with pytest.raises(ValueError, match="source_size"):
        training.training_pipeline(inputs.load_dataset(sample_dataset, SIZE).train, cfg, 6)
    data = inputs.load_dataset(sample_dataset, SIZE, source_size=64)
    assert data.train.sources.shape == (len(data.train), 64, 64, 3) and data.test.sources is None
    x, _, _ = next(iter(training.training_pipeline(data.train, cfg, len(data.classes))))
    assert x.shape == (8, SIZE, SIZE, 3)
    index = {image.tobytes(): i for i, image in enumerate(data.train.images)}
    assert not any(image.astype(np.uint8).tobytes() in index for image in x.numpy())  # not Pillow's inputs
