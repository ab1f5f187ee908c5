"""Post-training quantization: a trained Keras model -> a .tflite file, evaluated in LiteRT.

Precisions (``config.PRECISIONS``):

- ``fp32``: the float reference; ``fp16``: float16 weights (dequantized on load, float compute);
- ``int8-dynamic``: int8 weights, activations quantized on the fly;
- ``int8``: full integer, int8 input and output, ranges calibrated on train-split images;
- ``int16x8``: int16 activations, int8 weights, *no* float fallback. MobileNetV3 is rebuilt with a
  hard-swish the converter does not fuse into HARD_SWISH (which 16x8 cannot quantize), keeping its weights;
- ``int16x8-fallback``: 16x8 with float built-ins allowed, MobileNetV3's HARD_SWISH ops stay float.

``int8`` with ``quantize.qat.method`` ``qat`` / ``pqat`` fine-tunes the model with tfmot's fake quantization
first (``trashnet/qat.py``, docs/compression.md) and converts with the trained ranges instead of calibrated ones.

Conversion starts from a frozen concrete function of the model (``training=False``) with no trackable
object: 1-2 s for a 48 px MobileNetV3-Small on 2 cores, against 30-70 s through ``from_keras_model`` (or
``from_concrete_functions`` given the model), which first re-save the model as a SavedModel. The input
keeps a free batch dimension so evaluation runs batches; the file's default shape is batch 1.

Which graphs 16x8 accepts (checked by tests/test_quantize.py): Keras' hard-swish ``x * relu6(x + 3) / 6``
(also written ``x * min(max(x + 3, 0), 6) / 6``) is fused into HARD_SWISH and refused without fallback;
``(x / 6) * relu6(x + 3)`` and ``x * clip_by_value(x / 6 + 0.5, 0, 1)`` are not fused and become int16
MUL/ADD(/MINIMUM/RELU) ops; ``models.int16_hard_swish`` uses the first (3 ops instead of 5). The
squeeze-excite hard-sigmoid ``relu6(x + 3) / 6`` needs no rewrite: it quantizes to int16 as is.
16x8 MobileNetV1/V2 files from *random* weights fail to
prepare (``no_integer_overflow_from_quantization``): untrained BatchNorm lets activations shrink layer
by layer, a deep RELU6 output is calibrated to a scale below 6 / 2**31 and its int32 clamp overflows.
With trained weights (even 2 epochs on the sample) the same conversion loads and runs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from trashnet import evaluate, fileio, folder_eval, inputs, litert, models, progress, provenance, settings
from trashnet.config import VariantConfig, config_to_dict
from trashnet.keras_env import keras, seed_everything, tf

CALIBRATED_PRECISIONS = ("int8", "int16x8", "int16x8-fallback")
REWRITE_CHECK_IMAGES = 64  # test images on which a rebuilt MobileNetV3 must match the original


def representative_images(images: np.ndarray, count: int, *, seed: int) -> np.ndarray:
    """``count`` images (fewer if the split is smaller) drawn without replacement, as float32 [0, 255].

    The models carry their preprocessing, so calibration data is raw pixels, exactly what the file takes.
    """
    if len(images) == 0:
        raise ValueError("no images to calibrate with: the train split is empty")
    order = np.random.default_rng(seed).permutation(len(images))[:count]
    return images[np.sort(order)].astype(np.float32)


def _dataset_gen(images: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    def generate() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [image[None].astype(np.float32)]
    return generate


def frozen_function(model: keras.Model):
    """The model's inference graph as a concrete function with a free batch dimension."""
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=models.INPUT_NAME)
    forward = tf.function(lambda x: model(x, training=False))
    return forward.get_concrete_function(spec)


def convert(model: keras.Model, precision: str, *, representative: np.ndarray | None = None,
            sparse: bool = False, quantization_aware: bool = False) -> bytes:
    """``model`` as a .tflite flatbuffer at ``precision``.

    ``representative``: float32 images in [0, 255], (N, H, W, 3); required for ``int8`` and the 16x8 modes.
    ``sparse`` adds ``Optimize.EXPERIMENTAL_SPARSITY``: kernels sparse enough are stored in TFLite's sparse
    format, which XNNPack's sparse inference can use (the pruning stage measures it).
    For ``int16x8`` pass a MobileNetV3 already rebuilt with ``int16_compatible`` (``prepare_model`` does).
    ``quantization_aware``: ``model`` came out of tfmot QAT (``qat.train``); its fake-quantization ranges
    replace calibration. TF 2.21's converter still refuses int8 input/output without a representative
    dataset (it checks before it looks at the graph), so pass a few images: the file is byte-identical
    whichever images are given (checked in tests/test_qat.py).
    """
    # No trackable object: given one, the converter first re-saves the whole Keras model as a
    # SavedModel (tracing every layer), ~20-50x slower than converting the frozen graph directly.
    # TF 2.21 logs that this path is deprecated; it is the one that works fast (re-check on upgrades).
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen_function(model)])
    if precision == "fp32":
        pass
    elif precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8-dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8" and quantization_aware:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        if representative is not None:
            converter.representative_dataset = _dataset_gen(representative)
    elif precision in CALIBRATED_PRECISIONS:
        if representative is None or len(representative) == 0:
            raise ValueError(f"precision {precision!r} needs representative images for calibration")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _dataset_gen(representative)
        if precision == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        else:
            ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            if precision == "int16x8-fallback":
                ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
            converter.target_spec.supported_ops = ops
    else:
        raise ValueError(f"unknown precision {precision!r}")
    if quantization_aware and precision != "int8":
        raise ValueError(f"a quantization-aware model converts to 'int8' only, not {precision!r}")
    if sparse:
        converter.optimizations = [*converter.optimizations, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return converter.convert()


def int16_compatible(model: keras.Model, *, arch: str, image_size: int, alpha: float,
                     dropout: float) -> keras.Model:
    """A MobileNetV3 rebuilt with ``models.int16_hard_swish`` carrying ``model``'s weights, layer by layer.

    Weighted layers are matched by name (the rewrite touches only weightless layers); a layer missing
    or shaped differently is an error.
    """
    with models.int16_hard_swish():
        rebuilt = models.build_model(arch, num_classes=int(model.output_shape[-1]), image_size=image_size,
                                     alpha=alpha, dropout=dropout)
    return carry_weights(model, rebuilt, arch=arch)


def carry_weights(model: keras.Model, rebuilt: keras.Model, *, arch: str) -> keras.Model:
    """Copy every weighted layer of ``model`` into the same-named layer of ``rebuilt`` (returned); both
    must have exactly the same weighted layers."""
    source = {layer.name: layer for layer in model.layers if layer.weights}
    target = [layer for layer in rebuilt.layers if layer.weights]
    missing = sorted({layer.name for layer in target} ^ set(source))
    if missing:
        raise ValueError(f"cannot carry weights over to the rebuilt {arch}: layers differ: {missing[:10]}")
    for layer in target:
        layer.set_weights(source[layer.name].get_weights())
    return rebuilt


def float_outputs_unchanged(original: keras.Model, rebuilt: keras.Model, images: np.ndarray) -> dict[str, float]:
    """Largest differences between two float models on ``images``: probabilities and pooled features.

    The pooled features (before the classifier) are compared too: a barely trained model's softmax can
    be flat enough to hide a real difference.
    """
    def both(model: keras.Model) -> list[np.ndarray]:
        outputs = keras.Model(model.input, [model.get_layer("pool").output, model.output])
        return outputs.predict(images.astype(np.float32), batch_size=64, verbose=0)

    (features, probabilities), (new_features, new_probabilities) = both(original), both(rebuilt)
    feature_diff = float(np.abs(features - new_features).max())
    return {"float_max_abs_diff": float(np.abs(probabilities - new_probabilities).max()),
            "feature_max_abs_diff": feature_diff,
            "feature_max_rel_diff": feature_diff / (float(np.abs(features).max()) or 1.0)}


def prepare_model(model: keras.Model, cfg: VariantConfig) -> tuple[keras.Model, dict[str, Any] | None]:
    """The model to convert at ``cfg.precision`` and, when it had to be rebuilt, what was changed.

    Only ``int16x8`` of a hard-swish architecture is rebuilt (``int16_compatible``); the fallback mode
    keeps the Keras graph on purpose, to show what the float fallback costs.
    """
    if cfg.precision != "int16x8" or not models.get_architecture(cfg.arch).uses_hard_swish:
        return model, None
    rebuilt = int16_compatible(model, arch=cfg.arch, image_size=cfg.model.image_size, alpha=cfg.model.alpha,
                               dropout=cfg.model.dropout)
    return rebuilt, {"hard_swish": "(x / 6) * relu6(x + 3)",
                     "replaces": "x * relu6(x + 3) / 6 (fused by the converter into HARD_SWISH)"}


def _source_record(source_dir: Path) -> dict[str, Any]:
    path = source_dir / evaluate.METRICS_FILE
    return fileio.read_json(path) if path.is_file() else {}


def run_quantization(cfg: VariantConfig, *, dataset_dir: str | os.PathLike, source_dir: str | os.PathLike,
                     output_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Convert ``<source_dir>/<source>.keras`` to ``cfg.precision``, write ``<id>.tflite`` and evaluate the
    file itself in LiteRT on the test split; writes ``metrics.json`` and ``predictions.csv``.

    A conversion that fails (or a file LiteRT cannot load) is a result, not a crash: ``metrics.json`` then
    has ``conversion.status == "failed"`` with the error, and no ``test``.
    """
    if cfg.stage != "quantized" or cfg.precision is None or cfg.source is None:
        raise ValueError(f"variant {cfg.id!r} is not a quantized variant (stage {cfg.stage!r})")
    dataset_dir, source_dir, output_dir = Path(dataset_dir), Path(source_dir), Path(output_dir)
    source_path = source_dir / f"{cfg.source}.keras"
    if not source_path.is_file():
        raise FileNotFoundError(f"{source_path} not found: run the {cfg.source_stage} stage for {cfg.source!r}")
    seed_everything(cfg.seed)
    source_record = _source_record(source_dir)
    data = inputs.load_dataset(dataset_dir, cfg.model.image_size, cache_dir=cache_dir, fit=cfg.model.fit)
    model = keras.models.load_model(source_path, compile=False)
    source_sha = fileio.sha256_file(source_path)
    reference = _float_reference(model, data, source_sha, cache_dir)
    weights = source_record.get("weights") or models.weights_origin(cfg.model.weights, cfg.arch)
    record: dict[str, Any] = {
        "variant": cfg.id, "stage": "quantized", "arch": cfg.arch, "source": cfg.source,
        "precision": cfg.precision, "format": "tflite", "profile": cfg.profile, "seed": cfg.seed,
        "weights": weights, "image_size": cfg.model.image_size, "classes": list(data.classes),
        "source_model": {"file": source_path.name, "sha256": source_sha,
                         "float_test": _headline(evaluate.classification_metrics(
                             data.test.labels, reference, data.classes))},
    }
    for key in ("params", "nonzero_params", "macs", "nonzero_macs"):
        if key in source_record:
            record[key] = source_record[key]
    sparsity = source_record.get("sparsity")
    if isinstance(sparsity, dict):  # a pruned source: its summary, not the per-layer table
        record["sparsity"] = {key: sparsity[key] for key in ("method", "total", "m_by_n_verified")
                              if key in sparsity}

    tflite_path = output_dir / f"{cfg.id}.tflite"
    for stale in (tflite_path, output_dir / evaluate.PREDICTIONS_FILE,  # from an earlier run of this variant
                  output_dir / evaluate.HISTORY_FILE):
        stale.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        converted, rewrite = prepare_model(model, cfg)
        if rewrite is not None:
            # The proof that the rebuilt float model is the same function, on the first test images
            # (two float passes of the whole split would cost more than the conversion).
            check_started = time.perf_counter()
            check = data.test.images[:REWRITE_CHECK_IMAGES]
            rewrite.update(float_outputs_unchanged(model, converted, check), images=len(check))
            rewrite["seconds"] = round(time.perf_counter() - check_started, 2)
            record["rewrite"] = rewrite
            started += rewrite["seconds"]  # conversion time excludes the check
        representative = None
        if cfg.precision in CALIBRATED_PRECISIONS:
            representative = representative_images(
                data.train.images, cfg.quantize.representative_samples, seed=cfg.seed)
        if cfg.quantize.qat.method == "none":
            content = convert(converted, cfg.precision, representative=representative)
        else:
            content = _quantization_aware(model, data, cfg, record, representative, source_record, output_dir)
            started += record["qat"]["seconds"]  # conversion time excludes the training
        fileio.atomic_write_bytes(tflite_path, content)
        runner = litert.TFLiteModel(content)  # loads, or says why not
    except Exception as error:  # noqa: BLE001 - any converter/LiteRT failure is this variant's result
        record["conversion"] = {"status": "failed", "seconds": round(time.perf_counter() - started, 2),
                                "error": f"{type(error).__name__}: {error}".strip()}
        if tflite_path.is_file():  # converted, but LiteRT refused it: keep the file and say why
            record["size"] = evaluate.file_size(tflite_path)
            record["conversion"]["smallest_activation_scale"] = litert.smallest_activation_scale(tflite_path)
        _finish(record, cfg, dataset_dir)
        evaluate.write_results(output_dir, record)
        return record
    record["conversion"] = {"status": "ok", "seconds": round(time.perf_counter() - started, 2), "error": None}
    progress.report("step", "converted", 1, 1, record["conversion"]["seconds"])  # evaluation follows

    workers, threads = _evaluation_parallelism(cfg)
    started = time.perf_counter()
    probabilities = litert.predict_parallel(content, data.test.images, workers=workers, num_threads=threads,
                                            batch_size=cfg.quantize.eval_batch_size)
    record["evaluation"] = {"engine": "ai_edge_litert", "split": "test", "workers": workers, "threads": threads,
                            "batch_size": cfg.quantize.eval_batch_size,
                            "seconds": round(time.perf_counter() - started, 2)}
    record["test"] = evaluate.classification_metrics(data.test.labels, probabilities, data.classes)
    record["agreement"] = evaluate.agreement(reference, probabilities)
    ood = folder_eval.measure_ood(
        lambda images: litert.predict_parallel(content, images, workers=workers, num_threads=threads,
                                               batch_size=cfg.quantize.eval_batch_size),
        list(data.classes), runner.image_size, fit=cfg.model.fit, class_map=dict(cfg.ood.class_map))
    if ood is not None:
        record["ood"] = ood
    record["delta_accuracy_pp"] = round(
        100.0 * (record["test"]["accuracy"] - record["source_model"]["float_test"]["accuracy"]), 4)
    record["size"] = evaluate.file_size(tflite_path)
    record["latency_ms"] = {
        f"tflite_threads{threads}": litert.TFLiteModel(content, num_threads=threads).latency(
            runs=cfg.quantize.latency_runs, warmup=cfg.quantize.latency_warmup)
        for threads in cfg.quantize.latency_threads}
    record["op_census"] = litert.op_census(content)
    record["io"] = {"input_dtype": runner.input_dtype.name, "output_dtype": np.dtype(runner.output["dtype"]).name,
                    "input_quantization": list(runner.input["quantization"])}
    _finish(record, cfg, dataset_dir)
    evaluate.write_results(output_dir, record, paths=data.test.paths, labels=data.test.labels,
                           probabilities=probabilities)
    return record


def _quantization_aware(model: keras.Model, data: inputs.Dataset, cfg: VariantConfig, record: dict[str, Any],
                        representative: np.ndarray, source_record: dict[str, Any], output_dir: Path) -> bytes:
    """QAT (or PQAT) of ``model``, then its int8 file; fills ``record["qat"]``, writes ``history.csv``.

    PQAT of a 2:4-pruned source must keep the pattern in the file's int8 kernels: else ``SparsityError``.
    """
    from trashnet import qat, train  # noqa: PLC0415 - tfmot and the training loop only when needed
    from trashnet.prune import SparsityError  # noqa: PLC0415

    qat_model, qat_record = qat.train(model, data, cfg, check_images=data.test.images[:REWRITE_CHECK_IMAGES])
    fileio.atomic_write_text(output_dir / evaluate.HISTORY_FILE, train.history_csv(qat_record.pop("history")))
    record["qat"] = qat_record
    content = convert(qat_model, "int8", representative=representative, quantization_aware=True)
    source_method = (source_record.get("sparsity") or {}).get("method")
    if cfg.quantize.qat.method == "pqat" and source_method == "2of4":
        check = qat.int8_m_by_n(content)
        qat_record["m_by_n_int8"] = check
        if not check["holds"]:
            raise SparsityError(f"PQAT lost the 2:4 pattern in the int8 file: {check['violating']}")
    return content


def _float_reference(model: keras.Model, data: inputs.Dataset, source_sha: str,
                     cache_dir: str | os.PathLike | None) -> np.ndarray:
    """The float Keras model's test probabilities, cached per source file and data: every precision of
    one source compares against the same reference, computed once."""
    if cache_dir is None:
        return evaluate.keras_probabilities(model, data.test.images)
    # The source file, the data, how pixels are decoded, the evaluation code and TensorFlow (the lockfile).
    key = fileio.sha256_bytes(" ".join([inputs.decoder_key(), fileio.sha256_file(evaluate.__file__),
                                        provenance.lockfile_hash()]).encode())[:12]
    path = (Path(cache_dir) / "quantize" /
            f"{source_sha[:16]}-{data.manifest_sha256[:16]}-{key}-{data.image_size}px-test-probabilities.npy")
    if path.is_file():
        return np.load(path)
    reference = evaluate.keras_probabilities(model, data.test.images)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(temp, reference)
    fileio.replace_file(temp, path)
    return reference


def _evaluation_parallelism(cfg: VariantConfig) -> tuple[int, int]:
    """(interpreters, threads each) for the test split: XNNPack uses threads, 16x8 reference kernels don't."""
    cores = os.cpu_count() or 1
    single_threaded = cfg.precision.startswith("int16x8")
    workers = cfg.quantize.eval_workers or (cores if single_threaded else 1)
    threads = cfg.quantize.eval_threads or max(1, cores // workers)
    return workers, threads


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"n": metrics["n"], "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def _finish(record: dict[str, Any], cfg: VariantConfig, dataset_dir: Path) -> None:
    record["provenance"] = provenance.collect(
        seed=cfg.seed, profile=cfg.profile, config=config_to_dict(cfg),
        data_manifest=dataset_dir / settings.MANIFEST_NAME, weights=record["weights"])


def format_summary(record: dict[str, Any]) -> str:
    """A few plain-text lines of a quantized variant's result (for the notebook)."""
    conversion = record["conversion"]
    lines = [f"{record['variant']}: {record['precision']} from {record['source']} ({record['weights']})",
             f"conversion: {conversion['status']} in {conversion['seconds']:.1f} s"]
    if conversion["status"] != "ok":
        lines.append(f"error: {conversion['error']}")
        return "\n".join(lines)
    test, reference = record["test"], record["source_model"]["float_test"]
    lines += [
        f"test accuracy {test['accuracy']:.4f} (float Keras {reference['accuracy']:.4f}, "
        f"{record['delta_accuracy_pp']:+.2f} pp), macro-F1 {test['macro_f1']:.4f}, n={test['n']}",
        f"agreement with float: {record['agreement']['top1_agreement_pct']:.2f} % top-1, "
        f"max |p - p_float| {record['agreement']['max_abs_prob_diff']:.4g}",
        f"size: {record['size']['raw_bytes']:,} bytes raw, {record['size']['gzip_bytes']:,} gzipped",
    ]
    for name, latency in record["latency_ms"].items():
        lines.append(f"latency {name}: median {latency['median']:.2f} ms, p90 {latency['p90']:.2f} ms "
                     f"({latency['runs']} runs)")
    census = record["op_census"]
    lines.append(f"ops: {census['total']}, float compute ops: {census['float_compute_ops']} "
                 f"{census['float_compute_by_op'] or ''}".rstrip())
    if "qat" in record:
        qat_record = record["qat"]
        lines.append(f"{qat_record['method']}: {qat_record['epochs']} epochs ({qat_record['scheme']}), "
                     f"{qat_record['seconds']:.0f} s; annotatable rebuild differs from the float model by at most "
                     f"{qat_record['rebuild']['float_max_abs_diff']:.2g} (probabilities)")
        if "m_by_n_int8" in qat_record:
            check = qat_record["m_by_n_int8"]
            lines.append(f"2:4 in the int8 file: {'holds' if check['holds'] else 'BROKEN'} "
                         f"({check['kernels_checked']} kernels checked)")
    if "rewrite" in record:
        rewrite = record["rewrite"]
        lines.append(f"hard-swish rewritten as {rewrite['hard_swish']}; on {rewrite['images']} test images the "
                     f"float Keras outputs differ by at most {rewrite['float_max_abs_diff']:.2g} (probabilities), "
                     f"{rewrite['feature_max_rel_diff']:.2g} (pooled features, relative)")
    return "\n".join(lines)


def format_census(record: dict[str, Any]) -> str:
    """The op census as ``op:dtype count`` lines."""
    census = record.get("op_census")
    if not census:
        return "(no op census: the conversion failed)"
    return "\n".join(f"{name:<32} {count}" for name, count in census["by_op_dtype"].items())
