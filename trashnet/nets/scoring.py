"""The evaluation every stage shares: the same metrics and the same result-file layout for Keras
models and TFLite files.

A variant's folder holds ``metrics.json`` (one record, schema below), ``predictions.csv`` (one row per
test image) and whatever model files it made. The report and the final-model selection read only
these files. Metrics come from scikit-learn; nothing here imports TensorFlow at module level.

``metrics.json`` keys (absent where they do not apply; typed per stage by ``trashnet.core.records`` (``parse_metrics``), which
``write_results`` validates against before writing):
    variant, stage, arch, source, precision ("fp32", "fp16", ...), format ("keras" | "tflite"),
    profile, seed, weights, image_size, classes,
    test: {n, accuracy, macro_f1, per_class: {cls: {precision, recall, f1, support}},
           confusion_matrix: [[int]], confusion_matrix_normalized: [[float]]},
    params, nonzero_params, macs, nonzero_macs,
    size: {file, raw_bytes, gzip_bytes},
    latency_ms: {<name>: {median, p90, mean, runs}}   e.g. keras_batch1, keras_batch32, tflite_threads1,
    train_time_s, sparsity, agreement, op_census, notes, provenance,
    validation: {n, accuracy, macro_f1}   (Keras models: the validation split, same preprocessing),
    ood: {dataset, n, accuracy, macro_f1, per_class: {cls: {precision, recall, f1, n}}, confusion_matrix,
          class_map, unreadable, fit}   (the $TRASHNET_OOD_DATA set, ``evaluate.measure_ood``; absent =
          not measured; scored over every model output, over the classes the set has),
    training: {...}   (training stages: phases, epochs run, best epoch, checkpoint, EMA, precision, devices)

Keras models get all of the above from ``evaluate_keras_model`` / ``write_keras_results`` (the baseline
and pruning stages share them), so every stage measures the same way.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from trashnet.core import fileio, records, settings
from trashnet.nets import models

METRICS_FILE = settings.METRICS_FILE
PREDICTIONS_FILE = settings.PREDICTIONS_FILE
HISTORY_FILE = settings.HISTORY_FILE


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray,
                           classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1 and confusion matrices (counts, row-normalised)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = np.asarray(labels)
    predicted = np.asarray(probabilities).argmax(axis=1)
    indices = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=indices, zero_division=0)
    matrix = confusion_matrix(labels, predicted, labels=indices)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = np.nan_to_num(matrix / matrix.sum(axis=1, keepdims=True))
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)) if len(labels) else 0.0,
        "macro_f1": float(f1_score(labels, predicted, labels=indices, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(classes)
        },
        "confusion_matrix": matrix.astype(int).tolist(),
        "confusion_matrix_normalized": np.round(normalized, 4).tolist(),
    }


def agreement(reference: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """How closely a converted model follows its float original on the same images."""
    reference, probabilities = np.asarray(reference), np.asarray(probabilities)
    same = reference.argmax(axis=1) == probabilities.argmax(axis=1)
    return {"top1_agreement_pct": float(100.0 * same.mean()) if len(same) else 0.0,
            "max_abs_prob_diff": float(np.abs(reference - probabilities).max()) if len(same) else 0.0}


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)), "mean": float(ms.mean()),
            "runs": int(len(ms))}


def time_calls(call: Callable[[], Any], *, runs: int, warmup: int) -> dict[str, float]:
    """Median/p90 wall time of ``call()`` over ``runs`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return latency_summary(samples)


def file_size(path: str | os.PathLike) -> dict[str, Any]:
    """Raw and gzipped size: tfmot's zeros only show once compressed."""
    path = Path(path)
    return {"file": path.name, "raw_bytes": path.stat().st_size, "gzip_bytes": fileio.gzip_size(path)}


def predictions_csv(paths: Sequence[str], labels: np.ndarray, probabilities: np.ndarray,
                    classes: Sequence[str]) -> str:
    """One row per image: path, true class, predicted class, confidence, every class probability."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "predicted", "confidence", *[f"p_{name}" for name in classes]])
    for path, label, probs in zip(paths, labels, probabilities):
        best = int(np.argmax(probs))
        writer.writerow([path, classes[int(label)], classes[best], f"{probs[best]:.6f}",
                         *[f"{p:.6f}" for p in probs]])
    return buffer.getvalue()


def write_results(out_dir: str | os.PathLike, record: dict[str, Any], *, paths: Sequence[str] | None = None,
                  labels: np.ndarray | None = None, probabilities: np.ndarray | None = None) -> Path:
    """Write ``metrics.json`` (validated by its stage's model, ``records.parse_metrics``; and ``predictions.csv`` when predictions are
    given) into ``out_dir``."""
    out_dir = Path(out_dir)
    record = records.parse_metrics(fileio.to_jsonable(record))  # a wrong type fails before any write
    if probabilities is not None:
        fileio.atomic_write_text(out_dir / PREDICTIONS_FILE,
                                 predictions_csv(paths, labels, probabilities, record.classes))
    return records.write_metrics(out_dir, record)


def read_metrics(variant_dir: str | os.PathLike) -> dict[str, Any]:
    return records.read_metrics(variant_dir).dump()


# --- Keras models -------------------------------------------------------------------------------

def keras_probabilities(model, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Softmax outputs of a Keras model on uint8/float images in [0, 255] (no augmentation)."""
    if len(images) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    return np.asarray(models.predict_chunked(model, images, batch_size=batch_size))


def keras_latency(model, image_size: int, *, runs: int = 30, warmup: int = 3,
                  batch_sizes: Sequence[int] = (1, 32)) -> dict[str, dict[str, float]]:
    """Inference latency of the Keras model (graph mode, ``training=False``) per batch size."""
    from trashnet.core.keras_env import tf

    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    results = {}
    for batch in batch_sizes:
        x = tf.random.uniform((batch, image_size, image_size, 3), 0, 255, seed=0)
        results[f"keras_batch{batch}"] = time_calls(lambda: forward(x).numpy(), runs=runs, warmup=warmup)
    return results


def parameter_counts(model) -> dict[str, int]:
    """All parameters and those that are non-zero (what pruning removes)."""
    weights = model.get_weights()
    return {"params": int(sum(w.size for w in weights)),
            "nonzero_params": int(sum(np.count_nonzero(w) for w in weights))}


def evaluate_keras_model(model, data, cfg, *, model_path: str | os.PathLike, dataset_dir: str | os.PathLike,
                         train_time_s: float | None = None,
                         extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """The ``metrics.json`` record of a Keras model, and its test-split probabilities.

    ``data`` is an ``inputs.Dataset`` at the model's input size, ``cfg`` the variant's ``VariantConfig``
    (ids, seed, profile, weights and latency settings come from it), ``model_path`` the saved ``.keras``
    file (its size is measured). ``extra`` keys are added last and may replace any default (a pruned
    variant passes its own ``weights`` origin, ``sparsity`` ...).
    """
    from trashnet.deploy import evaluate
    from trashnet.nets import imagenet, models
    from trashnet.core import provenance, settings
    from trashnet.core.config import config_to_dict

    classes = list(data.classes)
    probabilities = keras_probabilities(model, data.test.images)
    ood = evaluate.measure_ood(lambda images: keras_probabilities(model, images), classes,
                                  int(model.input_shape[1]), fit=cfg.model.fit, class_map=dict(cfg.ood.class_map))
    validation = classification_metrics(data.validation.labels, keras_probabilities(model, data.validation.images),
                                        classes)
    weights = imagenet.weights_origin(cfg.model.weights, cfg.arch)
    record: dict[str, Any] = {
        "variant": cfg.id, "stage": cfg.stage, "arch": cfg.arch, "source": cfg.source, "precision": "fp32",
        "format": "keras", "profile": cfg.profile, "seed": cfg.seed, "weights": weights,
        "image_size": int(model.input_shape[1]), "classes": classes,
        "input_scale": models.input_scale(model) if models.input_scale(model) > 1 else None,
        "test": classification_metrics(data.test.labels, probabilities, classes),
        "validation": {key: validation[key] for key in ("n", "accuracy", "macro_f1")},
        "ood": ood,
        **parameter_counts(model),
        "macs": models.count_macs(model), "nonzero_macs": models.count_macs(model, nonzero=True),
        "size": file_size(model_path),
        "latency_ms": keras_latency(model, int(model.input_shape[1]), runs=cfg.quantize.latency_runs,
                                    warmup=cfg.quantize.latency_warmup),
    }
    if train_time_s is not None:
        record["train_time_s"] = round(float(train_time_s), 2)
    record.update(extra or {})
    record = {key: value for key, value in record.items() if value is not None}
    record["provenance"] = provenance.collect(
        seed=cfg.seed, profile=cfg.profile, config=config_to_dict(cfg),
        data_manifest=Path(dataset_dir) / settings.MANIFEST_NAME, weights=record.get("weights", weights))
    return record, probabilities


def write_keras_results(model, data, cfg, output_dir: str | os.PathLike, *, model_path: str | os.PathLike,
                        dataset_dir: str | os.PathLike, train_time_s: float | None = None,
                        extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``evaluate_keras_model`` then ``metrics.json`` and ``predictions.csv`` in ``output_dir``."""
    record, probabilities = evaluate_keras_model(model, data, cfg, model_path=model_path, dataset_dir=dataset_dir,
                                                 train_time_s=train_time_s, extra=extra)
    write_results(output_dir, record, paths=data.test.paths, labels=data.test.labels, probabilities=probabilities)
    return record
