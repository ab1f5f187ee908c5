"""The Keras training loop that train, prune and qat share: targets, loss, optimizer, per-epoch judge, fit.

AdamW with no weight decay on BatchNorm or biases, linear warm-up then cosine decay, an optional exponential
moving average (EMA) of the weights, one-hot targets with label smoothing and per-sample class weights, MixUp
or CutMix after them. ``ValidationJudge`` validates the weights that would be kept (the EMA when on) each
epoch; ``fit_model`` runs the whole recipe. The stages (``train``, ``prune``, ``qat``) decide what to train.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from trashnet.core import fileio, progress
from trashnet.core.config import VariantConfig
from trashnet.core.keras_env import keras, tf
from trashnet.data import inputs
from trashnet.nets import scoring

HISTORY_COLUMNS = ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1",
                   "learning_rate", "seconds")
# EMA horizon as a fraction of all training steps (momentum = 1 - 1/horizon): ~5 %, i.e. about the last
# 3 epochs of a 60-epoch run; clipped so that very short runs still move away from the initial weights.
EMA_HORIZON_FRACTION = 0.05
EMA_MOMENTUM_RANGE = (0.9, 0.999)
PREDICT_BATCH = 64


# --- devices --------------------------------------------------------------------------------------

def use_mixed_precision(mode: str) -> bool:
    """``auto``: float16 compute on a GPU (its tensor cores), float32 on a CPU (float16 is slower there)."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"mixed_precision must be auto, on or off, got {mode!r}")
    if mode == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return mode == "on"


def distribution_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over all GPUs when there are several, else the default (one device)."""
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


# --- data -----------------------------------------------------------------------------------------

def training_pipeline(split: inputs.Split, cfg: VariantConfig, num_classes: int):
    """(augmented images, one-hot labels, per-sample class weights): one-hot for label smoothing."""
    pipeline = inputs.make_pipeline(split, batch_size=cfg.train.batch_size, training=True, seed=cfg.seed,
                                    augment=cfg.train.augment)
    pipeline = with_targets(pipeline, split.labels, num_classes, cfg.train.class_weights)
    augment = cfg.train.augment
    if augment.mixup > 0 or augment.cutmix > 0:  # needs the one-hot targets, so it comes after them
        seeds = tf.data.Dataset.random(seed=cfg.seed + 1, rerandomize_each_iteration=True).batch(2)
        pipeline = tf.data.Dataset.zip((pipeline, seeds)).map(
            lambda batch, s: inputs.mix_batch(*batch, s, mixup=augment.mixup, cutmix=augment.cutmix),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return pipeline


def with_targets(dataset, labels: np.ndarray, num_classes: int, class_weights: str):
    """Map a dataset of (x, int label) to (x, one-hot, sample weight); ``labels`` give the class counts."""
    if class_weights == "balanced":
        table = inputs.class_weights(labels, num_classes)
        weights = tf.constant([table[i] for i in range(num_classes)], tf.float32)
    else:
        weights = tf.ones([num_classes], tf.float32)
    return dataset.map(lambda x, y: (x, tf.one_hot(y, num_classes), tf.gather(weights, y)),
                       num_parallel_calls=tf.data.AUTOTUNE)


def loss_function(cfg: VariantConfig) -> keras.losses.Loss:
    """Cross-entropy on one-hot targets (tf_keras' sparse loss has no label smoothing)."""
    return keras.losses.CategoricalCrossentropy(label_smoothing=cfg.train.label_smoothing)


# --- optimisation ---------------------------------------------------------------------------------

def lr_schedule(peak: float, *, total_steps: int, warmup_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then cosine decay to 0."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup_steps, 1)
    if warmup_steps:
        return keras.optimizers.schedules.CosineDecay(0.0, decay_steps, warmup_target=peak,
                                                      warmup_steps=warmup_steps)
    return keras.optimizers.schedules.CosineDecay(peak, decay_steps)


def no_decay_variables(model: keras.Model) -> list[tf.Variable]:
    """BatchNorm scales/offsets and every bias: weight decay on them only hurts."""
    variables = []
    for layer in model.layers:
        layer = getattr(layer, "layer", layer)  # inside a tfmot wrapper (quantization-aware training)
        if isinstance(layer, keras.layers.BatchNormalization):
            variables.extend(layer.trainable_weights)
        elif getattr(layer, "bias", None) is not None and layer.trainable:
            variables.append(layer.bias)
    return variables


def ema_momentum(total_steps: int) -> float:
    low, high = EMA_MOMENTUM_RANGE
    return float(np.clip(1.0 - 1.0 / max(EMA_HORIZON_FRACTION * total_steps, 1.0), low, high))


def make_optimizer(model: keras.Model, schedule, *, weight_decay: float, total_steps: int,
                   ema: bool) -> keras.optimizers.Optimizer:
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay, use_ema=ema,
                                       ema_momentum=ema_momentum(total_steps))
    optimizer.exclude_from_weight_decay(var_list=no_decay_variables(model))
    return optimizer


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)  # under mixed precision: a LossScaleOptimizer


def ema_averages(model: keras.Model) -> list[tf.Variable] | None:
    """The optimizer's moving averages, aligned with ``model.trainable_variables`` (None without EMA).

    tf_keras keeps them in a private list; there is no public accessor in Keras 2.
    """
    optimizer = _inner(model.optimizer)
    if not getattr(optimizer, "use_ema", False) or not hasattr(optimizer, "_model_variables_moving_average"):
        return None
    return [optimizer._model_variables_moving_average[optimizer._index_dict[optimizer._var_key(var)]]
            for var in model.trainable_variables]


# --- the per-epoch judge --------------------------------------------------------------------------

class ValidationJudge(keras.callbacks.Callback):
    """Validates the weights that would be kept (the EMA when on), keeps the best, logs each epoch.

    Adds ``val_loss`` (plain cross-entropy), ``val_accuracy`` and ``val_macro_f1`` to the epoch logs, so
    Keras' ``EarlyStopping`` and ``History`` placed after it see them.
    """

    def __init__(self, split: inputs.Split, classes, *, phase: str, first_epoch: int, epochs: int,
                 schedule, verbose: bool = True):
        super().__init__()
        self.split, self.classes, self.phase = split, list(classes), phase
        self.first_epoch, self.epochs, self.schedule, self.verbose = first_epoch, epochs, schedule, verbose
        self.rows: list[dict[str, Any]] = []
        self.best: tuple[float, float] | None = None  # (accuracy, -loss)
        self.best_epoch: int | None = None
        self.best_weights: list[np.ndarray] | None = None
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        averages = ema_averages(self.model)
        raw = None
        if averages is not None:
            raw = [var.numpy() for var in self.model.trainable_variables]
            for var, average in zip(self.model.trainable_variables, averages):
                var.assign(average)
        try:
            probabilities = scoring.keras_probabilities(self.model, self.split.images, batch_size=PREDICT_BATCH)
            metrics = scoring.classification_metrics(self.split.labels, probabilities, self.classes)
            picked = probabilities[np.arange(len(self.split)), self.split.labels]
            loss = float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))) if len(self.split) else 0.0
            score = (metrics["accuracy"], -loss)
            if self.best is None or score > self.best:
                self.best, self.best_epoch = score, self.first_epoch + epoch
                self.best_weights = self.model.get_weights()
        finally:
            if raw is not None:
                for var, value in zip(self.model.trainable_variables, raw):
                    var.assign(value)
        logs.update(val_loss=loss, val_accuracy=metrics["accuracy"], val_macro_f1=metrics["macro_f1"])
        row = {"epoch": self.first_epoch + epoch, "phase": self.phase,
               "loss": float(logs.get("loss", float("nan"))), "accuracy": float(logs.get("accuracy", float("nan"))),
               "val_loss": loss, "val_accuracy": metrics["accuracy"], "val_macro_f1": metrics["macro_f1"],
               "learning_rate": float(self.schedule(_inner(self.model.optimizer).iterations)),
               "seconds": round(time.perf_counter() - self._start, 2)}
        self.rows.append(row)
        progress.report("epoch", self.phase, epoch + 1, self.epochs, row["seconds"])  # the run's progress line
        if self.verbose:
            print(f"[{self.phase}] epoch {epoch + 1}/{self.epochs}: loss {row['loss']:.3f} acc {row['accuracy']:.3f}"
                  f" | val loss {loss:.3f} acc {metrics['accuracy']:.3f} macro-F1 {metrics['macro_f1']:.3f}"
                  f" | lr {row['learning_rate']:.2e} | {row['seconds']:.0f} s", flush=True)


def fit_model(model: keras.Model, data: inputs.Dataset, cfg: VariantConfig, *, phase: str, peak_lr: float,
              epochs: int, strategy: tf.distribute.Strategy, first_epoch: int = 1,
              verbose: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train the whole (trainable part of the) model with the recipe; returns history rows and a summary.

    On return the model holds the weights ``cfg.train.checkpoint`` asks for (EMA-averaged when on).
    """
    train = cfg.train
    num_classes = len(data.classes)
    steps = math.ceil(len(data.train) / train.batch_size)
    total_steps = steps * epochs
    schedule = lr_schedule(peak_lr, total_steps=total_steps, warmup_steps=steps * train.warmup_epochs)
    with strategy.scope():
        optimizer = make_optimizer(model, schedule, weight_decay=train.weight_decay, total_steps=total_steps,
                                   ema=train.ema)
        model.compile(optimizer=optimizer, loss=loss_function(cfg), metrics=["accuracy"])
    judge = ValidationJudge(data.validation, data.classes, phase=phase, first_epoch=first_epoch, epochs=epochs,
                            schedule=schedule,
                            verbose=verbose)
    callbacks: list[keras.callbacks.Callback] = [judge]
    if train.early_stopping_patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max",
                                                       patience=train.early_stopping_patience))
    model.fit(training_pipeline(data.train, cfg, num_classes), epochs=epochs, callbacks=callbacks, verbose=0)
    if train.ema:
        _inner(model.optimizer).finalize_variable_values(model.trainable_variables)  # idempotent
    if train.checkpoint == "best" and judge.best_weights is not None:
        model.set_weights(judge.best_weights)
    summary = {"phase": phase, "epochs": epochs, "epochs_run": len(judge.rows), "steps_per_epoch": steps,
               "peak_learning_rate": peak_lr, "checkpoint": train.checkpoint,
               "best_epoch": judge.best_epoch, "best_val_accuracy": judge.best[0] if judge.best else None,
               "ema": train.ema, "ema_momentum": ema_momentum(total_steps) if train.ema else None}
    return judge.rows, summary


# --- outputs ---------------------------------------------------------------------------------------

def save_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """``.keras`` file, written beside the target and moved into place (no optimizer state)."""
    path = Path(path)
    temp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(temp)
        fileio.replace_file(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def history_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if row.get(key) is None else row[key]) for key in HISTORY_COLUMNS})
    return buffer.getvalue()
