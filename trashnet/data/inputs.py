"""Model inputs: the prepared data set as arrays, and the tf.data pipelines that feed training.

Images are decoded once with Pillow (``images.load_for_model``, the same function the deployment path
uses), stacked into a uint8 array per split and cached as ``.npy`` under ``<out>/.cache/arrays/``, keyed
by the data manifest's hash and the input size. tf.data then shuffles, augments whole batches with
stateless random ops (deterministic under the seed, different every epoch) and prefetches.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trashnet.core import fileio, images, settings
from trashnet.core.config import AugmentConfig


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8, (N, size, size, 3)
    labels: np.ndarray  # int32, (N,)
    paths: tuple[str, ...]  # relative to the dataset folder
    sources: np.ndarray | None = None  # uint8 (N, S, S, 3) larger decodes for `augment.resample`, else None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    classes: tuple[str, ...]
    train: Split
    validation: Split
    test: Split
    image_size: int
    manifest_sha256: str

    def split(self, name: str) -> Split:
        if name not in settings.SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(settings.SPLITS)}")
        return getattr(self, name)


def read_accepted(dataset_dir: str | os.PathLike) -> tuple[tuple[str, ...], dict[str, list[tuple[str, str]]]]:
    """Classes (sorted) and, per split, ``(file relative to dataset_dir, class)`` of accepted images."""
    manifest = Path(dataset_dir) / settings.MANIFEST_NAME
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest} not found: prepare the data first (python -m trashnet prepare --out {dataset_dir})")
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["status"] == "accepted"]
    classes = tuple(sorted({row["class"] for row in rows}))
    by_split: dict[str, list[tuple[str, str]]] = {name: [] for name in settings.SPLITS}
    for row in rows:
        by_split[row["split"]].append((row["output"], row["class"]))
    return classes, by_split


def _load_split(dataset_dir: Path, entries: list[tuple[str, str]], classes: tuple[str, ...],
                size: int, fit: str = images.DEFAULT_FIT) -> Split:
    index = {name: i for i, name in enumerate(classes)}
    paths = [dataset_dir / rel for rel, _ in entries]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # Pillow releases the GIL
        arrays = list(pool.map(lambda p: images.load_for_model(p, size, fit), paths))
    stacked = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
    labels = np.array([index[cls] for _, cls in entries], dtype=np.int32)
    return Split(stacked, labels, tuple(rel for rel, _ in entries))


def decoder_key() -> str:
    """Short hash of the decoding code (``images.py``): part of every cache key over decoded pixels."""
    return fileio.sha256_file(images.__file__)[:12]


def load_dataset(dataset_dir: str | os.PathLike, image_size: int, *,
                 cache_dir: str | os.PathLike | None = None, fit: str = images.DEFAULT_FIT,
                 source_size: int | None = None) -> Dataset:
    """Every accepted image of a prepared data set, decoded at ``image_size`` with ``fit`` (squash/crop/pad).

    ``source_size``: the training split is also decoded at that size (``Split.sources``), for
    ``augment.resample`` to resize in the training graph."""
    dataset_dir = Path(dataset_dir)
    classes, by_split = read_accepted(dataset_dir)
    manifest_sha = fileio.sha256_file(dataset_dir / settings.MANIFEST_NAME)
    splits: dict[str, Split] = {}
    for name in settings.SPLITS:
        cached = None
        if cache_dir is not None:
            # Keyed on the decoding code and the fit too: arrays decoded otherwise are not these arrays.
            cached = (Path(cache_dir) / "arrays"
                      / f"{manifest_sha[:16]}-{decoder_key()}-{image_size}px-{fit}-{name}.npz")
            if cached.is_file():
                with np.load(cached) as data:
                    splits[name] = Split(data["images"], data["labels"], tuple(data["paths"].tolist()))
                continue
        splits[name] = _load_split(dataset_dir, by_split[name], classes, image_size, fit)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            temp = cached.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(temp, images=splits[name].images, labels=splits[name].labels,
                     paths=np.array(splits[name].paths))
            fileio.replace_file(temp, cached)
    if source_size is not None:
        larger = load_dataset(dataset_dir, source_size, cache_dir=cache_dir, fit=fit).train
        splits["train"] = dataclasses.replace(splits["train"], sources=larger.images)
    return Dataset(classes, splits["train"], splits["validation"], splits["test"], image_size, manifest_sha)


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """'Balanced' weights n / (k * count): each class contributes equally to the loss."""
    counts = np.bincount(labels, minlength=num_classes)
    total = counts.sum()
    return {i: float(total / (num_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def _affine(batch_size, size, rotation, zoom, seed):
    """Per-image rotation (fraction of a turn) and zoom, as ImageProjectiveTransform parameters."""
    from trashnet.core.keras_env import tf

    angle = tf.random.stateless_uniform([batch_size], seed, -rotation, rotation) * 2.0 * math.pi
    scale = 1.0 + tf.random.stateless_uniform([batch_size], seed + 1, -zoom, zoom)
    center = (size - 1) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # Output pixel p reads input pixel center + R(angle) (p - center) / scale.
    a2 = center - cos * center + sin * center
    b2 = center - sin * center - cos * center
    zeros = tf.zeros_like(cos)
    return tf.stack([cos, -sin, a2, sin, cos, b2, zeros, zeros], axis=1)


def _uniform(shape, seed, low=0.0, high=1.0):
    from trashnet.core.keras_env import tf

    return tf.random.stateless_uniform(shape, seed, low, high)


def random_resized_crop(batch, seed, scale: tuple[float, float], ratio: tuple[float, float]):
    """Per image, a window of random area (``scale``, fraction of the image) and aspect ratio, resized
    back to the input size. Areas above 1 zoom out: the frame around the photo is white, like the board."""
    from trashnet.core.keras_env import tf

    n, size = tf.shape(batch)[0], tf.shape(batch)[1]
    area = _uniform([n], seed, scale[0], scale[1])
    aspect = tf.exp(_uniform([n], seed + 1, math.log(ratio[0]), math.log(ratio[1])))
    height, width = tf.sqrt(area / aspect), tf.sqrt(area * aspect)  # fractions of the side
    top = _uniform([n], seed + 2) * (1.0 - height)  # a window larger than the frame gets a negative offset
    left = _uniform([n], seed + 3) * (1.0 - width)
    boxes = tf.stack([top, left, top + height, left + width], axis=1)
    return tf.image.crop_and_resize(batch, boxes, tf.range(n), tf.stack([size, size]), extrapolation_value=255.0)


def color_jitter(batch, seed, *, saturation: float, hue: float):
    """Per-image saturation factor in [1 - saturation, 1 + saturation] and hue shift in [-hue, hue] turns."""
    from trashnet.core.keras_env import tf

    n = tf.shape(batch)[0]
    h, s, v = tf.unstack(tf.image.rgb_to_hsv(tf.clip_by_value(batch, 0.0, 255.0) / 255.0), axis=-1)
    if hue > 0:
        h = tf.math.floormod(h + _uniform([n, 1, 1], seed, -hue, hue), 1.0)
    if saturation > 0:
        s = tf.clip_by_value(s * _uniform([n, 1, 1], seed + 1, 1.0 - saturation, 1.0 + saturation), 0.0, 1.0)
    return tf.image.hsv_to_rgb(tf.stack([h, s, v], axis=-1)) * 255.0


def random_grayscale(batch, seed, probability: float):
    from trashnet.core.keras_env import tf

    chosen = _uniform([tf.shape(batch)[0], 1, 1, 1], seed) < probability
    gray = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(batch))
    return tf.where(chosen, gray, batch)


def gaussian_blur(batch, sigma: float):
    """A Gaussian blur of the whole batch (reflected edges), ``sigma`` in pixels."""
    from trashnet.core.keras_env import tf

    radius = max(1, math.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    padded = tf.pad(batch, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    rows = tf.constant(np.tile(taps.reshape(-1, 1, 1, 1), (1, 1, 3, 1)))  # separable: vertical ...
    cols = tf.constant(np.tile(taps.reshape(1, -1, 1, 1), (1, 1, 3, 1)))  # ... then horizontal
    blurred = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(blurred, cols, [1, 1, 1, 1], "VALID")


def random_blur(batch, seed, probability: float, sigma: float):
    """With ``probability``, blend each image with its ``sigma`` blur by a random weight: a range of strengths."""
    from trashnet.core.keras_env import tf

    n = tf.shape(batch)[0]
    weight = _uniform([n, 1, 1, 1], seed) * tf.cast(_uniform([n, 1, 1, 1], seed + 1) < probability, tf.float32)
    return batch + weight * (gaussian_blur(batch, sigma) - batch)


def random_noise(batch, seed, max_std: float):
    """Gaussian pixel noise, each image with its own std in [0, max_std * 255]."""
    from trashnet.core.keras_env import tf

    std = _uniform([tf.shape(batch)[0], 1, 1, 1], seed, 0.0, max_std * 255.0)
    return batch + tf.random.stateless_normal(tf.shape(batch), seed + 1) * std


def random_jpeg(batch, seed, probability: float, quality: tuple[int, int]):
    """With ``probability``, each image JPEG-encoded and decoded at a random quality in ``quality``."""
    from trashnet.core.keras_env import tf

    n = tf.shape(batch)[0]
    seeds = tf.random.stateless_uniform([n, 2], seed, minval=0, maxval=2**31 - 1, dtype=tf.int64)
    scaled = tf.clip_by_value(batch, 0.0, 255.0) / 255.0

    def encode(pair):
        image, image_seed = pair
        return tf.image.stateless_random_jpeg_quality(image, quality[0], quality[1], image_seed)

    encoded = tf.map_fn(encode, (scaled, seeds), fn_output_signature=tf.float32) * 255.0
    chosen = _uniform([n, 1, 1, 1], seed + 1) < probability
    return tf.where(chosen, tf.reshape(encoded, tf.shape(batch)), batch)


def random_texture(n, size, seed):
    """Random backgrounds in [0, 255]: a smooth colour field, mid-scale blotches and grain, per image."""
    from trashnet.core.keras_env import tf

    shape = tf.stack([size, size])
    coarse = tf.image.resize(_uniform([n, 3, 3, 3], seed, 0.0, 255.0), shape)
    blotches = tf.image.resize(_uniform([n, 12, 12, 3], seed + 1, -1.0, 1.0), shape) * _uniform(
        [n, 1, 1, 1], seed + 2, 0.0, 80.0)
    grain = tf.random.stateless_normal(tf.stack([n, size, size, 3]), seed + 3) * _uniform(
        [n, 1, 1, 1], seed + 4, 0.0, 25.0)
    return tf.clip_by_value(coarse + blotches + grain, 0.0, 255.0)


def board_mask(batch, *, value: int, saturation: float):
    """1 where a pixel looks like TrashNet's white board (bright and nearly grey), softened at the edges."""
    from trashnet.core.keras_env import tf

    brightest = tf.reduce_max(batch, axis=-1, keepdims=True)
    darkest = tf.reduce_min(batch, axis=-1, keepdims=True)
    chroma = (brightest - darkest) / tf.maximum(brightest, 1.0)
    mask = tf.cast((brightest >= value) & (chroma <= saturation), tf.float32)
    return tf.nn.avg_pool2d(mask, 3, 1, "SAME")


def replace_background(batch, seed, config: AugmentConfig):
    """With ``config.background``, key out the board and composite the object onto ``random_texture``.

    Images whose keyed area exceeds ``background_max_fraction`` are left alone: there the object itself is
    white (paper, clear plastic) and would be replaced with it.
    """
    from trashnet.core.keras_env import tf

    n, size = tf.shape(batch)[0], tf.shape(batch)[1]
    mask = board_mask(batch, value=config.background_value, saturation=config.background_saturation)
    keyed = tf.reduce_mean(mask, axis=[1, 2, 3], keepdims=True)
    chosen = (_uniform([n, 1, 1, 1], seed) < config.background) & (keyed <= config.background_max_fraction)
    composite = mask * random_texture(n, size, seed + 1) + (1.0 - mask) * batch
    return tf.where(chosen, composite, batch)


# The filters apps resize with (trashnet.nets.consumers): tf.image.resize method and antialias.
RESAMPLE_FILTERS = (("bilinear", False), ("bilinear", True), ("bicubic", False), ("bicubic", True),
                    ("area", False), ("nearest", False))


def random_resample(batch, sources, seed, probability: float):
    """With ``probability``, each image replaced by its larger decode resized with a random filter of
    ``RESAMPLE_FILTERS`` (float32 [0, 255], like ``batch``)."""
    from trashnet.core.keras_env import tf

    size = tf.shape(batch)[1:3]
    n = tf.shape(batch)[0]
    sources = tf.cast(sources, tf.float32)
    resized = tf.stack([tf.image.resize(sources, size, method=method, antialias=antialias)
                        for method, antialias in RESAMPLE_FILTERS])  # (filters, n, s, s, 3)
    pick = tf.random.stateless_uniform([n], seed, 0, len(RESAMPLE_FILTERS), dtype=tf.int32)
    chosen = tf.gather_nd(resized, tf.stack([pick, tf.range(n)], axis=1))
    use = tf.random.stateless_uniform([n, 1, 1, 1], seed + 1) < probability
    return tf.where(use, tf.clip_by_value(chosen, 0.0, 255.0), batch)


def augment_batch(batch, seed, config: AugmentConfig):
    """Every augmentation ``config`` turns on, on a float32 batch in [0, 255] (training graph only).

    Order: crop (zooming out adds white board), background replacement (keys out that board too),
    flips, rotation and zoom, brightness and contrast, hue and saturation, grayscale, blur, noise, JPEG.
    """
    from trashnet.core.keras_env import tf

    size = tf.shape(batch)[1]
    n = tf.shape(batch)[0]
    seed = tf.cast(seed, tf.int64)
    if config.crop_scale is not None:
        batch = random_resized_crop(batch, seed + 10, config.crop_scale, config.crop_ratio)
    if config.background > 0:
        batch = replace_background(batch, seed + 20, config)
    if config.flip:
        flip_lr = tf.random.stateless_uniform([n, 1, 1, 1], seed + 2) < 0.5
        flip_ud = tf.random.stateless_uniform([n, 1, 1, 1], seed + 3) < 0.5
        batch = tf.where(flip_lr, tf.reverse(batch, axis=[2]), batch)
        batch = tf.where(flip_ud, tf.reverse(batch, axis=[1]), batch)
    if config.rotation > 0 or config.zoom > 0:
        transforms = _affine(n, tf.cast(size, tf.float32), config.rotation, config.zoom, seed + 4)
        batch = tf.raw_ops.ImageProjectiveTransformV3(
            images=batch, transforms=transforms, output_shape=tf.shape(batch)[1:3], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="REFLECT")
    if config.brightness > 0:
        delta = tf.random.stateless_uniform([n, 1, 1, 1], seed + 6, -1.0, 1.0) * config.brightness * 255.0
        batch = batch + delta
    if config.contrast > 0:
        factor = tf.random.stateless_uniform([n, 1, 1, 1], seed + 7, 1 - config.contrast, 1 + config.contrast)
        mean = tf.reduce_mean(batch, axis=[1, 2, 3], keepdims=True)
        batch = (batch - mean) * factor + mean
    if config.saturation > 0 or config.hue > 0:
        batch = color_jitter(batch, seed + 30, saturation=config.saturation, hue=config.hue)
    if config.grayscale > 0:
        batch = random_grayscale(batch, seed + 40, config.grayscale)
    if config.blur > 0:
        batch = random_blur(batch, seed + 50, config.blur, config.blur_sigma)
    if config.noise > 0:
        batch = random_noise(batch, seed + 60, config.noise)
    batch = tf.clip_by_value(batch, 0.0, 255.0)
    if config.jpeg > 0:
        batch = random_jpeg(batch, seed + 70, config.jpeg, config.jpeg_quality)
    return batch


def mix_batch(images, targets, weights, seed, *, mixup: float = 0.0, cutmix: float = 0.0):
    """MixUp or CutMix of a batch with its own reverse (the batch is already shuffled).

    Each image gets its own Beta(a, a) share ``lam``; one-hot targets and sample weights mix by the same
    share (for CutMix, the share of pixels actually kept). Nothing happens when both are 0.
    """
    from trashnet.core.keras_env import tf

    alpha = mixup or cutmix
    if alpha <= 0:
        return images, targets, weights
    n, size = tf.shape(images)[0], tf.shape(images)[1]
    seed = tf.cast(seed, tf.int64)
    first = tf.random.stateless_gamma([n], seed, alpha)
    second = tf.random.stateless_gamma([n], seed + 1, alpha)
    lam = first / tf.maximum(first + second, 1e-12)
    partner = tf.reverse(images, axis=[0])
    if cutmix > 0:
        side = tf.cast(size, tf.float32)
        cut = tf.sqrt(1.0 - lam) * side  # a square patch of area (1 - lam)
        cy, cx = _uniform([n], seed + 2, 0.0, side), _uniform([n], seed + 3, 0.0, side)
        coords = tf.cast(tf.range(size), tf.float32) + 0.5
        inside_y = tf.abs(coords[None, :] - cy[:, None]) < cut[:, None] / 2  # (n, size)
        inside_x = tf.abs(coords[None, :] - cx[:, None]) < cut[:, None] / 2
        patch = tf.cast(inside_y[:, :, None] & inside_x[:, None, :], tf.float32)[..., None]
        images = images * (1.0 - patch) + partner * patch
        lam = 1.0 - tf.reduce_mean(patch, axis=[1, 2, 3])
    else:
        images = lam[:, None, None, None] * images + (1.0 - lam[:, None, None, None]) * partner
    targets = lam[:, None] * targets + (1.0 - lam[:, None]) * tf.reverse(targets, axis=[0])
    weights = lam * weights + (1.0 - lam) * tf.reverse(weights, axis=[0])
    return images, targets, weights


def make_pipeline(split: Split, *, batch_size: int, training: bool, seed: int,
                  augment: AugmentConfig | None = None):
    """A tf.data pipeline of (float32 images in [0, 255], int labels).

    Training: reshuffled every epoch and augmented per batch, both from ``seed``, so a rerun with the
    same seed sees the same batches. Evaluation: in order, no augmentation.
    """
    from trashnet.core.keras_env import tf

    resample = training and augment is not None and augment.resample > 0
    if resample and split.sources is None:
        raise ValueError("augment.resample needs the larger decodes: load_dataset(..., source_size=...)")
    dataset = tf.data.Dataset.from_tensor_slices(
        ((split.images, split.sources) if resample else split.images, split.labels))
    if training:
        dataset = dataset.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if resample:
        seeds = tf.data.Dataset.random(seed=seed + 7, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            lambda xy, s: (random_resample(tf.cast(xy[0][0], tf.float32), xy[0][1], s, augment.resample), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment is not None:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            lambda xy, s: (augment_batch(xy[0], s, augment), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
