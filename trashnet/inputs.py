"""Model inputs: the prepared data set as arrays, and the tf.data pipelines that feed training.

Images are decoded once with Pillow (``images.load_for_model``, the same function the deployment path
uses), stacked into a uint8 array per split and cached as ``.npy`` under ``<out>/.cache/arrays/``, keyed
by the data manifest's hash and the input size. tf.data then shuffles, augments whole batches with
stateless random ops (deterministic under the seed, different every epoch) and prefetches.
"""

from __future__ import annotations

import csv
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trashnet import fileio, images, settings
from trashnet.config import AugmentConfig


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8, (N, size, size, 3)
    labels: np.ndarray  # int32, (N,)
    paths: tuple[str, ...]  # relative to the dataset folder

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
                size: int) -> Split:
    index = {name: i for i, name in enumerate(classes)}
    paths = [dataset_dir / rel for rel, _ in entries]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # Pillow releases the GIL
        arrays = list(pool.map(lambda p: images.load_for_model(p, size), paths))
    stacked = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
    labels = np.array([index[cls] for _, cls in entries], dtype=np.int32)
    return Split(stacked, labels, tuple(rel for rel, _ in entries))


def decoder_key() -> str:
    """Short hash of the decoding code (``images.py``): part of every cache key over decoded pixels."""
    return fileio.sha256_file(images.__file__)[:12]


def load_dataset(dataset_dir: str | os.PathLike, image_size: int, *,
                 cache_dir: str | os.PathLike | None = None) -> Dataset:
    """Every accepted image of a prepared data set, decoded at ``image_size``."""
    dataset_dir = Path(dataset_dir)
    classes, by_split = read_accepted(dataset_dir)
    manifest_sha = fileio.sha256_file(dataset_dir / settings.MANIFEST_NAME)
    splits: dict[str, Split] = {}
    for name in settings.SPLITS:
        cached = None
        if cache_dir is not None:
            # Keyed on the decoding code too: arrays decoded by an older images.py are not these arrays.
            cached = Path(cache_dir) / "arrays" / f"{manifest_sha[:16]}-{decoder_key()}-{image_size}px-{name}.npz"
            if cached.is_file():
                with np.load(cached) as data:
                    splits[name] = Split(data["images"], data["labels"], tuple(data["paths"].tolist()))
                continue
        splits[name] = _load_split(dataset_dir, by_split[name], classes, image_size)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            temp = cached.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(temp, images=splits[name].images, labels=splits[name].labels,
                     paths=np.array(splits[name].paths))
            os.replace(temp, cached)
    return Dataset(classes, splits["train"], splits["validation"], splits["test"], image_size, manifest_sha)


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """'Balanced' weights n / (k * count): each class contributes equally to the loss."""
    counts = np.bincount(labels, minlength=num_classes)
    total = counts.sum()
    return {i: float(total / (num_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def _affine(batch_size, size, rotation, zoom, seed):
    """Per-image rotation (fraction of a turn) and zoom, as ImageProjectiveTransform parameters."""
    from trashnet.keras_env import tf

    angle = tf.random.stateless_uniform([batch_size], seed, -rotation, rotation) * 2.0 * math.pi
    scale = 1.0 + tf.random.stateless_uniform([batch_size], seed + 1, -zoom, zoom)
    center = (size - 1) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # Output pixel p reads input pixel center + R(angle) (p - center) / scale.
    a2 = center - cos * center + sin * center
    b2 = center - sin * center - cos * center
    zeros = tf.zeros_like(cos)
    return tf.stack([cos, -sin, a2, sin, cos, b2, zeros, zeros], axis=1)


def augment_batch(batch, seed, config: AugmentConfig):
    """Random flips, rotation, zoom, brightness and contrast on a float32 batch in [0, 255]."""
    from trashnet.keras_env import tf

    size = tf.shape(batch)[1]
    n = tf.shape(batch)[0]
    seed = tf.cast(seed, tf.int64)
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
    return tf.clip_by_value(batch, 0.0, 255.0)


def make_pipeline(split: Split, *, batch_size: int, training: bool, seed: int,
                  augment: AugmentConfig | None = None):
    """A tf.data pipeline of (float32 images in [0, 255], int labels).

    Training: reshuffled every epoch and augmented per batch, both from ``seed``, so a rerun with the
    same seed sees the same batches. Evaluation: in order, no augmentation.
    """
    from trashnet.keras_env import tf

    dataset = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
    if training:
        dataset = dataset.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(
        lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment is not None:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            lambda xy, s: (augment_batch(xy[0], s, augment), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
