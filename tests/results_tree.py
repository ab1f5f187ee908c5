"""Hand-made result trees for tests: ``models/<stage>/<id>/metrics.json`` (+ model file) as the stages write them.

The records follow the ``metrics.json`` schema of ``trashnet/nets/scoring.py``, with only the keys selection and
the final artifact read, so selection can be tested without training or converting anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typing import Any

from trashnet.core import records, settings

CLASSES = ("cardboard", "glass", "metal", "paper", "plastic", "trash")


def write_result(models_dir: Path, stage: str, variant: str, *, arch: str, accuracy: float | None = None,
                 gzip_bytes: int | None = None, raw_bytes: int | None = None, latency_ms: float | None = None,
                 precision: str | None = None, source: str | None = None, fmt: str | None = None,
                 weights: str = "none", profile: str = "quick", seed: int = 42, image_size: int = 32,
                 failed: str | None = None, model_bytes: bytes | None = None, write_model: bool = True,
                 extra: dict[str, Any] | None = None, finished: bool = True,
                 source_stage: str | None = None) -> Path:
    """One variant folder, its ``metrics.json`` built through its stage's model (``records.METRICS_MODELS``). ``failed`` = a conversion
    error: no test, no model file. ``finished`` = the runner's ``manifest.json`` is there."""
    fmt = fmt or ("keras" if stage in ("train", "prune") else "tflite")
    folder = models_dir / stage / variant
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".tflite" if fmt == "tflite" else ".keras"
    record = records.METRICS_MODELS[settings.stage_name(stage)](
        variant=variant, stage=stage, arch=arch, format=fmt, profile=profile, seed=seed, weights=weights,
        image_size=image_size, classes=list(CLASSES),
        provenance={"git_commit": "0" * 40, "seed": seed, "profile": profile, "weights": weights,
                    "data_manifest_sha256": "d" * 64, "libraries": {"numpy": "2.4.6"},
                    **({"config": {"source_stage": source_stage}} if source_stage else {})})
    if source is not None:
        record.source = source
    if precision is not None:
        record.precision = precision
    if failed is not None:
        record.conversion = records.Conversion(status="failed", error=failed)
    else:
        if fmt == "tflite":
            record.conversion = records.Conversion(status="ok")
        if accuracy is not None:
            record.test = records.TestMetrics(n=100, accuracy=accuracy, macro_f1=accuracy - 0.01)
        if gzip_bytes is not None:
            record.size = records.Size(file=variant + suffix, raw_bytes=raw_bytes or 2 * gzip_bytes,
                                       gzip_bytes=gzip_bytes)
        if latency_ms is not None:
            record.latency_ms = {"tflite_threads1": records.Latency(median=latency_ms, p90=latency_ms * 1.1,
                                                                    mean=latency_ms, runs=5)}
        if write_model:
            (folder / (variant + suffix)).write_bytes(model_bytes if model_bytes is not None else b"model")
    if extra:
        record = records.parse_metrics({**record.dump(), **extra})
    records.write_metrics(folder, record)
    if finished:
        mark_finished(folder)
    return folder


def mark_finished(folder: Path) -> None:
    """A stand-in for the runner's done marker (select only reads finished variants)."""
    records.write_manifest(folder, {"variant": folder.name, "stage": folder.parent.name, "status": "done",
                                    "key": "stand-in", "finished": "2026-01-01T00:00:00+00:00", "seconds": 0.0,
                                    "files": {}})


def standard_tree(models_dir: Path) -> Path:
    """A plausible set of results (fractions, bytes, ms), including a failed conversion.

    Hybrid candidates: mobilenet_v3_large.prune-2of4.{fp16, int16x8}. With the default 1 pp tolerance the
    int16x8 file (0.790, 1.2 MB) wins over fp16 (0.795, 1.6 MB); int8 is smaller but not in the family.
    """
    large, pruned = "mobilenet_v3_large", "mobilenet_v3_large.prune-2of4"
    write_result(models_dir, "train", large, arch=large, accuracy=0.800, gzip_bytes=11_000_000,
                 latency_ms=None)
    write_result(models_dir, "train", "mobilenet_v3_small", arch="mobilenet_v3_small", accuracy=0.760,
                 gzip_bytes=4_000_000)
    write_result(models_dir, "prune", pruned, arch=large, source=large, accuracy=0.797, gzip_bytes=6_500_000)
    q = "quantize"
    write_result(models_dir, q, f"{large}.fp16", arch=large, source=large, precision="fp16", accuracy=0.801,
                 gzip_bytes=5_500_000, latency_ms=3.3)
    write_result(models_dir, q, f"{pruned}.fp16", arch=large, source=pruned, precision="fp16", accuracy=0.795,
                 gzip_bytes=1_600_000, latency_ms=3.4)
    write_result(models_dir, q, f"{pruned}.int16x8", arch=large, source=pruned, precision="int16x8",
                 accuracy=0.790, gzip_bytes=1_200_000, latency_ms=40.0)
    write_result(models_dir, q, f"{pruned}.int8", arch=large, source=pruned, precision="int8", accuracy=0.780,
                 gzip_bytes=900_000, latency_ms=9.8)
    write_result(models_dir, q, f"{pruned}.int16x8-fallback", arch=large, source=pruned,
                 precision="int16x8-fallback", failed="RuntimeError: Quantization to 16x8-bit not yet supported")
    write_result(models_dir, q, "mobilenet_v3_small.int8", arch="mobilenet_v3_small", source="mobilenet_v3_small",
                 precision="int8", accuracy=0.740, gzip_bytes=500_000, latency_ms=4.5)
    return models_dir


def tiny_tflite(image_size: int = 32, num_classes: int = len(CLASSES), seed: int = 0, int8: bool = False) -> bytes:
    """A real, small float TFLite classifier with the project's input contract (RGB [0, 255], softmax).

    Random weights (seeded): predictions are arbitrary but deterministic, which is all predict and artifact
    tests need. Converted from a frozen concrete function, as the quantize stage does (docs/toolchain-facts.md).
    """
    key = (image_size, num_classes, seed, int8)
    if key not in _TINY:
        from trashnet.core.keras_env import keras, tf

        keras.utils.set_random_seed(seed)
        inputs = keras.Input((image_size, image_size, 3), dtype="float32", name="image")
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
        x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
        model = keras.Model(inputs, outputs)
        function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
            tf.TensorSpec((1, image_size, image_size, 3), tf.float32))
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
        if int8:  # full integer, int8 input and output: predict must (de)quantize with the tensors' scales
            rng = np.random.default_rng(seed)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: (
                [rng.uniform(0, 255, (1, image_size, image_size, 3)).astype(np.float32)] for _ in range(8))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        _TINY[key] = converter.convert()
    return _TINY[key]


_TINY: dict[tuple[int, int, int, bool], bytes] = {}


def evaluated_tree(models_dir: Path, dataset_dir: Path, *, image_size: int = 32) -> Path:
    """Results of real (tiny) TFLite files, evaluated on a prepared data set the way the quantize stage does
    (``inputs.load_dataset`` + ``tflite.TFLiteModel`` + ``evaluate``), so an artifact built from them must
    reproduce their accuracy exactly. Two hybrid candidates (different seeds), a float baseline, a failed
    conversion.
    """
    from trashnet.nets import scoring
    from trashnet.data import inputs
    from trashnet.core.tflite import TFLiteModel

    data = inputs.load_dataset(dataset_dir, image_size)
    large, pruned = "mobilenet_v3_large", "mobilenet_v3_large.prune-2of4"
    write_result(models_dir, "train", large, arch=large, accuracy=0.5, gzip_bytes=10_000_000,
                 image_size=image_size)
    write_result(models_dir, "prune", pruned, arch=large, source=large, accuracy=0.5, gzip_bytes=5_000_000,
                 image_size=image_size)
    write_result(models_dir, "quantize", f"{pruned}.int16x8-fallback", arch=large, source=pruned,
                 precision="int16x8-fallback", failed="RuntimeError: not yet supported for op: 'HARD_SWISH'")
    for seed, precision in ((0, "fp16"), (1, "int16x8")):
        variant = f"{pruned}.{precision}"
        folder = models_dir / "quantize" / variant
        folder.mkdir(parents=True, exist_ok=True)
        model_file = folder / f"{variant}.tflite"
        model_file.write_bytes(tiny_tflite(image_size, len(data.classes), seed))
        runner = TFLiteModel(model_file)
        probabilities = runner.predict(data.test.images)
        record = {
            "variant": variant, "stage": "quantize", "arch": large, "source": pruned, "precision": precision,
            "format": "tflite", "profile": "quick", "seed": 42, "weights": "none", "image_size": image_size,
            "classes": list(data.classes), "conversion": {"status": "ok"},
            "test": scoring.classification_metrics(data.test.labels, probabilities, data.classes),
            "size": scoring.file_size(model_file),
            "latency_ms": {"tflite_threads1": runner.latency(runs=3, warmup=1)},
            "provenance": {"git_commit": "0" * 40, "seed": 42, "profile": "quick", "weights": "none",
                           "data_manifest_sha256": data.manifest_sha256, "libraries": {"numpy": "2.4.6"}},
        }
        scoring.write_results(folder, record, paths=data.test.paths, labels=data.test.labels,
                               probabilities=probabilities)
        mark_finished(folder)
    return models_dir


def convert_keras(keras_path: Path, precision: str = "fp16") -> bytes:
    """A saved Keras model -> TFLite bytes (fp32 or fp16), from a frozen concrete function."""
    from trashnet.core.keras_env import keras, tf

    model = keras.models.load_model(keras_path, compile=False)
    size = int(model.input_shape[1])
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, size, size, 3), tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision != "fp32":
        raise ValueError(f"convert_keras makes fp32 or fp16 only, not {precision}")
    return converter.convert()


def write_evaluated(models_dir: Path, dataset_dir: Path, variant: str, content: bytes, *, arch: str, source: str,
                    precision: str) -> Path:
    """A quantized-stage result for ``content``, evaluated as that stage does (arrays, LiteRT, sklearn)."""
    from trashnet.nets import scoring
    from trashnet.data import inputs
    from trashnet.core.tflite import TFLiteModel

    folder = models_dir / "quantize" / variant
    folder.mkdir(parents=True, exist_ok=True)
    model_file = folder / f"{variant}.tflite"
    model_file.write_bytes(content)
    runner = TFLiteModel(model_file)
    data = inputs.load_dataset(dataset_dir, runner.image_size)
    probabilities = runner.predict(data.test.images)
    record = {
        "variant": variant, "stage": "quantize", "arch": arch, "source": source,
        "precision": precision, "format": "tflite", "profile": "quick", "seed": 42, "weights": "none",
        "image_size": runner.image_size, "classes": list(data.classes), "conversion": {"status": "ok"},
        "test": scoring.classification_metrics(data.test.labels, probabilities, data.classes),
        "size": scoring.file_size(model_file),
        "latency_ms": {"tflite_threads1": runner.latency(runs=3, warmup=1)},
        "provenance": {"git_commit": "0" * 40, "seed": 42, "profile": "quick", "weights": "none",
                       "data_manifest_sha256": data.manifest_sha256, "config": {"source_stage": "prune"}},
    }
    scoring.write_results(folder, record, paths=data.test.paths, labels=data.test.labels,
                           probabilities=probabilities)
    mark_finished(folder)
    return folder


def built_final(root: Path, dataset: Path, profile) -> Path:
    """The real final stage run over ``evaluated_tree``: the folder holding trashnet.tflite and its card."""
    from trashnet.stages import final
    from trashnet.core import profiles

    models_dir = evaluated_tree(root / "models", dataset)
    output = root / "models" / "final"
    final.build_final(profiles.load_variants(profile)["final"], dataset_dir=dataset, models_dir=models_dir,
                         output_dir=output)
    return output
