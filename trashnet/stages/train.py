"""Baseline training: one recipe for a MobileNet from scratch or from pretrained weights.

    record = run_baseline(cfg, dataset_dir="dataset", output_dir="models/train/mobilenet_v3_large",
                          cache_dir=".cache")

From scratch (``model.weights: none``): AdamW (no weight decay on BatchNorm or biases), linear warm-up then
cosine decay, label smoothing, balanced class weights (as per-sample weights), batch augmentation
(``inputs.augment_batch``) and an exponential moving average (EMA) of the weights. BatchNorm momentum comes
from the config (0.99: tf_keras' 0.999 for V3 never catches up on ~1,800 images, docs/toolchain-facts.md).

Pretrained (``imagenet``, ``imagenet-tflite`` or a weights file): first the classifier alone on the backbone's
pooled features, computed once in inference mode and cached (the frozen-backbone phase then costs seconds),
then the whole model fine-tuned at ``finetune_learning_rate``, BatchNorm frozen or, with
``finetune_batchnorm: reestimate``, its statistics first re-estimated on the training images and then trained
(docs/imagenet.md: folded BatchNorm arrives as an identity whose statistics describe nothing).

Every epoch is judged on the validation split with the weights that would be kept (the EMA when on);
``checkpoint: best`` keeps the best of them, ``last`` the final ones; early stopping is optional.
Mixed precision is used on a GPU (``mixed_precision: auto``), ``tf.distribute.MirroredStrategy`` with more
than one GPU. The saved model is always a plain float32 copy, whatever trained it.

Outputs in ``output_dir``: ``<id>.keras``, ``metrics.json`` (``evaluate`` schema), ``predictions.csv``,
``history.csv``. The training loop itself (optimizer, schedule, EMA, per-epoch judge, fit) is
``trashnet.stages.training``, shared with prune and qat.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from trashnet.nets import imagenet, models, scoring
from trashnet.core import fileio, settings
from trashnet.data import inputs
from trashnet.core.config import VariantConfig
from trashnet.core.keras_env import keras, seed_everything, tf
from trashnet.stages.training import (PREDICT_BATCH, distribution_strategy, fit_model, history_csv, loss_function,
                                      lr_schedule, make_optimizer, save_model, use_mixed_precision, with_targets)

# --- pretrained: classifier on cached features, then fine-tuning -----------------------------------

def backbone_features(model: keras.Model, data: inputs.Dataset, cfg: VariantConfig, *,
                      cache_dir: str | os.PathLike | None, mixed: bool) -> dict[str, np.ndarray]:
    """The classifier's input features (inference mode: pooled, or the last-point layer's output with
    ``model.head: last_point``) of the train and validation splits, cached on disk."""
    extra = {} if cfg.model.head == "pooled" else {"head": cfg.model.head}  # pooled keys stay as they were
    key = hashlib.sha256(json.dumps({**extra,
        "arch": cfg.arch, "alpha": cfg.model.alpha, "size": cfg.model.input_size, "mixed": mixed,
        "weights": imagenet.weights_origin(cfg.model.weights, cfg.arch), "manifest": data.manifest_sha256,
        # What else the features depend on: the decoded pixels, the network's code, the TensorFlow version.
        "decoder": inputs.decoder_key(), "models": fileio.sha256_file(models.__file__),
        "lockfile": fileio.sha256_file(settings.LOCK_FILE) if settings.LOCK_FILE.exists() else "missing",
    }, sort_keys=True).encode()).hexdigest()[:16]
    extractor = keras.Model(model.input, model.get_layer("head_dropout").input)  # the frozen part's output
    features = {}
    for name in ("train", "validation"):
        path = Path(cache_dir) / "features" / f"{cfg.arch}-{key}-{name}.npy" if cache_dir is not None else None
        if path is not None and path.is_file():
            features[name] = np.load(path)
            continue
        split = data.split(name)
        features[name] = np.asarray(models.predict_chunked(extractor, split.images, batch_size=PREDICT_BATCH),
                                    dtype=np.float32)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
            np.save(temp, features[name])
            fileio.replace_file(temp, path)
    return features


def train_head(model: keras.Model, data: inputs.Dataset, cfg: VariantConfig, *, cache_dir, mixed: bool,
               verbose: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The frozen-backbone phase: dropout + dense trained on cached features, copied into ``model``."""
    train = cfg.train
    features = backbone_features(model, data, cfg, cache_dir=cache_dir, mixed=mixed)
    num_classes = len(data.classes)
    dense = model.get_layer(models.OUTPUT_NAME)
    head_inputs = keras.Input((features["train"].shape[1],), dtype="float32")
    x = keras.layers.Dropout(cfg.model.dropout)(head_inputs)
    head_dense = keras.layers.Dense(num_classes, activation="softmax", dtype="float32")
    head = keras.Model(head_inputs, head_dense(x))
    head_dense.set_weights(dense.get_weights())
    steps = math.ceil(len(data.train) / train.batch_size)
    schedule = lr_schedule(train.head_learning_rate, total_steps=steps * train.head_epochs, warmup_steps=0)
    optimizer = make_optimizer(head, schedule, weight_decay=train.weight_decay,
                               total_steps=steps * train.head_epochs, ema=False)
    head.compile(optimizer=optimizer, loss=loss_function(cfg), metrics=["accuracy"])
    pipeline = tf.data.Dataset.from_tensor_slices((features["train"], data.train.labels)).shuffle(
        len(data.train), seed=cfg.seed, reshuffle_each_iteration=True).batch(train.batch_size)
    pipeline = with_targets(pipeline, data.train.labels, num_classes, train.class_weights)
    validation = (features["validation"], keras.utils.to_categorical(data.validation.labels, num_classes))
    start = time.perf_counter()
    history = head.fit(pipeline, validation_data=validation, epochs=train.head_epochs, verbose=0).history
    dense.set_weights(head_dense.get_weights())
    rows = [{"epoch": i + 1, "phase": "head", "loss": history["loss"][i], "accuracy": history["accuracy"][i],
             "val_loss": history["val_loss"][i], "val_accuracy": history["val_accuracy"][i],
             "val_macro_f1": None, "learning_rate": float(schedule((i + 1) * steps)), "seconds": None}
            for i in range(len(history["loss"]))]
    if verbose and rows:
        print(f"[head] {len(rows)} epochs on cached features in {time.perf_counter() - start:.1f} s: "
              f"val acc {rows[-1]['val_accuracy']:.3f}", flush=True)
    return rows, {"phase": "head", "epochs": train.head_epochs, "epochs_run": len(rows),
                  "peak_learning_rate": train.head_learning_rate, "feature_dim": int(features["train"].shape[1])}


def freeze_batchnorm(model: keras.Model) -> None:
    """Fine-tuning: BatchNorm layers keep their (pretrained) statistics and scales (inference mode)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def reestimate_batchnorm(model: keras.Model, images: np.ndarray, *, batch_size: int = PREDICT_BATCH) -> None:
    """Give every BatchNorm the mean and variance of its input on ``images`` (inference mode), with gamma and
    beta changed so that the model computes exactly what it computed before.

    Imported TFLite weights arrive with BatchNorm folded away (mean 0, variance 1: statistics that describe
    nothing), so in training mode the batch statistics would differ wildly from the moving ones. After this,
    training-mode and inference-mode outputs agree and BatchNorm can be trained.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    probe = keras.Model(model.input, [layer.input for layer in norms])
    sums = [np.zeros(layer.input_shape[-1]) for layer in norms]
    squares = [np.zeros(layer.input_shape[-1]) for layer in norms]
    count = [0] * len(norms)
    for start in range(0, len(images), batch_size):
        outputs = probe(images[start:start + batch_size].astype(np.float32), training=False)
        for i, value in enumerate(outputs if len(norms) > 1 else [outputs]):
            flat = np.asarray(value, np.float64).reshape(-1, sums[i].shape[0])
            sums[i] += flat.sum(0)
            squares[i] += np.square(flat).sum(0)
            count[i] += len(flat)
    for i, layer in enumerate(norms):
        gamma, beta, old_mean, old_var = layer.get_weights()
        mean = sums[i] / count[i]
        var = np.maximum(squares[i] / count[i] - np.square(mean), 0.0)
        scale = gamma / np.sqrt(old_var + layer.epsilon)  # what the layer multiplies by now
        layer.set_weights([(scale * np.sqrt(var + layer.epsilon)).astype(np.float32),
                           (beta + scale * (mean - old_mean)).astype(np.float32),
                           mean.astype(np.float32), var.astype(np.float32)])


# --- the whole stage ------------------------------------------------------------------------------

def build(cfg: VariantConfig, num_classes: int, *, weights: str | None = None) -> keras.Model:
    model = cfg.model
    weights = model.weights if weights is None else weights
    return models.build_model(cfg.arch, num_classes=num_classes, image_size=model.image_size, alpha=model.alpha,
                              weights=imagenet.resolve_weights(weights, cfg.arch), dropout=model.dropout,
                              bn_momentum=model.bn_momentum, head=model.head,
                              last_point=imagenet.head_weights(weights, cfg.arch, model.head),
                              input_scale=model.input_scale)


def float32_copy(model: keras.Model, cfg: VariantConfig, num_classes: int) -> keras.Model:
    """A fresh float32, single-device, all-trainable model with ``model``'s weights, layer by layer."""
    keras.mixed_precision.set_global_policy("float32")
    copy = build(cfg, num_classes, weights="none")
    # By position: the same builder makes the same layers in the same order (auto-named ones such as
    # `tf.__operators__.add_27` get a new suffix in every build, so names cannot be matched).
    if len(copy.layers) != len(model.layers):
        raise ValueError(f"{cfg.arch}: rebuilt model has {len(copy.layers)} layers, trained {len(model.layers)}")
    for source, target in zip(model.layers, copy.layers):
        if type(source) is not type(target):
            raise ValueError(f"layer mismatch while copying weights: {source.name} vs {target.name}")
        target.set_weights(source.get_weights())
    return copy


def run(cfg: VariantConfig, *, dataset_dir: str | os.PathLike, models_dir: str | os.PathLike,
        output_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
        verbose: bool = False) -> dict[str, Any]:
    """The stage's entry (``stages.invoke``): a baseline has no source, so ``models_dir`` is not read."""
    return run_baseline(cfg, dataset_dir=dataset_dir, output_dir=output_dir, cache_dir=cache_dir, verbose=verbose)


def run_baseline(cfg: VariantConfig, *, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
                 cache_dir: str | os.PathLike | None = None, verbose: bool = True) -> dict[str, Any]:
    """Train, save and evaluate one baseline variant; returns its ``metrics.json`` record."""
    if cfg.stage != "train" or cfg.arch is None:
        raise ValueError(f"run_baseline needs a baseline variant with an arch, got {cfg.id!r} ({cfg.stage})")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # Importing ImageNet TFLite weights into the cache builds models (draws random numbers): before seeding.
    imagenet.resolve_weights(cfg.model.weights, cfg.arch)
    seed_everything(cfg.seed)
    augment = cfg.train.augment
    data = inputs.load_dataset(dataset_dir, cfg.model.input_size, cache_dir=cache_dir, fit=cfg.model.fit,
                               source_size=augment.resample_source if augment.resample > 0 else None)
    num_classes = len(data.classes)
    pretrained = cfg.model.weights != "none"
    mixed = use_mixed_precision(cfg.train.mixed_precision)
    strategy = distribution_strategy()
    rows: list[dict[str, Any]] = []
    phases: list[dict[str, Any]] = []
    start = time.perf_counter()
    try:
        keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
        with strategy.scope():
            model = build(cfg, num_classes)
        if pretrained:
            if cfg.train.head_epochs:
                head_rows, summary = train_head(model, data, cfg, cache_dir=cache_dir, mixed=mixed, verbose=verbose)
                rows += head_rows
                phases.append(summary)
            if cfg.train.finetune_batchnorm == "reestimate":
                reestimate_batchnorm(model, data.train.images)
            else:
                freeze_batchnorm(model)
            fit_rows, summary = fit_model(model, data, cfg, phase="finetune", strategy=strategy,
                                          peak_lr=cfg.train.finetune_learning_rate, epochs=cfg.train.epochs,
                                          first_epoch=len(rows) + 1, verbose=verbose)
        else:
            fit_rows, summary = fit_model(model, data, cfg, phase="scratch", strategy=strategy,
                                          peak_lr=cfg.train.learning_rate, epochs=cfg.train.epochs,
                                          verbose=verbose)
        rows += fit_rows
        phases.append(summary)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    train_time = time.perf_counter() - start
    final = float32_copy(model, cfg, num_classes)
    model_path = save_model(final, output_dir / f"{cfg.id}.keras")
    fileio.atomic_write_text(output_dir / scoring.HISTORY_FILE, history_csv(rows))
    training = {"phases": phases, "mixed_precision": mixed, "replicas": strategy.num_replicas_in_sync,
                "devices": [d.name for d in tf.config.list_logical_devices() if d.device_type in ("CPU", "GPU")],
                "train_images": len(data.train), "validation_images": len(data.validation),
                "test_images": len(data.test)}
    record = scoring.write_keras_results(final, data, cfg, output_dir, model_path=model_path,
                                          dataset_dir=dataset_dir, train_time_s=train_time,
                                          extra={"training": training})
    if verbose:
        test = record["test"]
        print(f"{cfg.id}: test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f} "
              f"({test['n']} images), trained in {train_time:.0f} s", flush=True)
    return record


def warmup_epoch_seconds(cfg: VariantConfig, train_images: int, *, steps: int = 5, untimed: int = 2,
                         num_classes: int = 6) -> float:
    """Seconds one training epoch of ``cfg`` would take on this machine, from ``steps`` timed training steps
    on random images (after ``untimed`` ones that build the graph): the machine check before a long run.
    Random initial weights whatever ``cfg`` asks (nothing to download); the head's size barely matters."""
    seed_everything(cfg.seed)
    model = build(cfg, num_classes, weights="none")
    batch, size = cfg.train.batch_size, cfg.model.input_size
    schedule = lr_schedule(cfg.train.learning_rate, total_steps=1000, warmup_steps=0)
    model.compile(optimizer=make_optimizer(model, schedule, weight_decay=cfg.train.weight_decay, total_steps=1000,
                                           ema=cfg.train.ema),
                  loss=loss_function(cfg), metrics=["accuracy"])
    rng = np.random.default_rng(cfg.seed)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    targets = keras.utils.to_categorical(rng.integers(0, num_classes, batch), num_classes)
    times = []
    for _ in range(untimed + steps):
        start = time.perf_counter()
        model.train_on_batch(images, targets)
        times.append(time.perf_counter() - start)
    return float(np.median(times[untimed:])) * math.ceil(train_images / batch)
