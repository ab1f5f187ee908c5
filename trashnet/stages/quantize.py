"""Post-training quantization: a trained Keras model -> a .tflite file, evaluated in LiteRT.

Precisions (``config.PRECISIONS``):

- ``fp32``: the float reference; ``fp16``: float16 weights (dequantized on load, float compute);
- ``int8-dynamic``: int8 weights, activations quantized on the fly;
- ``int8``: full integer, int8 input and output, ranges calibrated on train-split images;
- ``int16x8``: int16 activations, int8 weights, *no* float fallback. MobileNetV3 is rebuilt with a
  hard-swish the converter does not fuse into HARD_SWISH (which 16x8 cannot quantize), keeping its weights;
- ``int16x8-fallback``: 16x8 with float built-ins allowed, MobileNetV3's HARD_SWISH ops stay float.

``int8`` with ``quantize.qat.method`` ``qat`` / ``pqat`` fine-tunes the model with tfmot's fake quantization
first (``trashnet/stages/qat.py``, docs/compression.md) and converts with the trained ranges instead of calibrated ones.

The conversion itself, and the 16x8-compatible rebuild of MobileNetV3, are ``trashnet.nets.convert``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from trashnet.nets import convert, imagenet, models, scoring, sparsity
from trashnet.core import fileio, progress, provenance, records, settings, tflite
from trashnet.deploy import evaluate
from trashnet.data import inputs
from trashnet.core.config import VariantConfig, config_to_dict
from trashnet.core.keras_env import keras, seed_everything

REWRITE_CHECK_IMAGES = 64  # test images on which a rebuilt MobileNetV3 must match the original


def prepare_model(model: keras.Model, cfg: VariantConfig) -> tuple[keras.Model, dict[str, Any] | None]:
    """The model to convert at ``cfg.precision`` and, when it had to be rebuilt, what was changed.

    Only ``int16x8`` of a hard-swish architecture is rebuilt (``convert.int16_compatible``); the fallback mode
    keeps the Keras graph on purpose, to show what the float fallback costs.
    """
    if cfg.precision != "int16x8" or not models.get_architecture(cfg.arch).uses_hard_swish:
        return model, None
    rebuilt = convert.int16_compatible(model, arch=cfg.arch, image_size=cfg.model.image_size, alpha=cfg.model.alpha,
                               dropout=cfg.model.dropout, head=cfg.model.head,
                               input_scale=cfg.model.input_scale)
    return rebuilt, {"hard_swish": "(x / 6) * relu6(x + 3)",
                     "replaces": "x * relu6(x + 3) / 6 (fused by the converter into HARD_SWISH)"}


def _source_record(source_dir: Path) -> dict[str, Any]:
    path = source_dir / scoring.METRICS_FILE
    return records.read_metrics(source_dir).dump() if path.is_file() else {}


def run(cfg: VariantConfig, *, dataset_dir: str | os.PathLike, models_dir: str | os.PathLike,
        output_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
        verbose: bool = False) -> dict[str, Any]:
    """The stage's entry (``stages.invoke``): the source is ``models_dir/<source_stage>/<source>/``."""
    return run_quantization(cfg, dataset_dir=dataset_dir, source_dir=Path(models_dir) / cfg.source_stage / cfg.source,
                            output_dir=output_dir, cache_dir=cache_dir)


def run_quantization(cfg: VariantConfig, *, dataset_dir: str | os.PathLike, source_dir: str | os.PathLike,
                     output_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Convert ``<source_dir>/<source>.keras`` to ``cfg.precision``, write ``<id>.tflite`` and evaluate the
    file itself in LiteRT on the test split; writes ``metrics.json`` and ``predictions.csv``.

    A conversion that fails (or a file LiteRT cannot load) is a result, not a crash: ``metrics.json`` then
    has ``conversion.status == "failed"`` with the error, and no ``test``.
    """
    if cfg.stage != "quantize" or cfg.precision is None or cfg.source is None:
        raise ValueError(f"variant {cfg.id!r} is not a quantized variant (stage {cfg.stage!r})")
    dataset_dir, source_dir, output_dir = Path(dataset_dir), Path(source_dir), Path(output_dir)
    source_path = source_dir / f"{cfg.source}.keras"
    if not source_path.is_file():
        raise FileNotFoundError(f"{source_path} not found: run the {cfg.source_stage} stage for {cfg.source!r}")
    seed_everything(cfg.seed)
    source_record = _source_record(source_dir)
    data = inputs.load_dataset(dataset_dir, cfg.model.input_size, cache_dir=cache_dir, fit=cfg.model.fit)
    model = keras.models.load_model(source_path, compile=False)
    source_sha = fileio.sha256_file(source_path)
    reference = _float_reference(model, data, source_sha, cache_dir)
    weights = source_record.get("weights") or imagenet.weights_origin(cfg.model.weights, cfg.arch)
    record: dict[str, Any] = {
        "variant": cfg.id, "stage": cfg.stage, "arch": cfg.arch, "source": cfg.source,
        "precision": cfg.precision, "format": "tflite", "profile": cfg.profile, "seed": cfg.seed,
        "weights": weights, "image_size": cfg.model.input_size, "classes": list(data.classes),
        **({"input_scale": cfg.model.input_scale} if cfg.model.input_scale > 1 else {}),
        "source_model": {"file": source_path.name, "sha256": source_sha,
                         "float_test": _headline(scoring.classification_metrics(
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
    for stale in (tflite_path, output_dir / scoring.PREDICTIONS_FILE,  # from an earlier run of this variant
                  output_dir / scoring.HISTORY_FILE):
        stale.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        converted, rewrite = prepare_model(model, cfg)
        if rewrite is not None:
            # The proof that the rebuilt float model is the same function, on the first test images
            # (two float passes of the whole split would cost more than the conversion).
            check_started = time.perf_counter()
            check = data.test.images[:REWRITE_CHECK_IMAGES]
            rewrite.update(convert.float_outputs_unchanged(model, converted, check), images=len(check))
            rewrite["seconds"] = round(time.perf_counter() - check_started, 2)
            record["rewrite"] = rewrite
            started += rewrite["seconds"]  # conversion time excludes the check
        representative = None
        if cfg.precision in convert.CALIBRATED_PRECISIONS:
            representative = convert.representative_images(
                data.train.images, cfg.quantize.representative_samples, seed=cfg.seed)
        if cfg.quantize.qat.method == "none":
            content = convert.convert(converted, cfg.precision, representative=representative)
        else:
            content = _quantization_aware(model, data, cfg, record, representative, source_record, output_dir)
            started += record["qat"]["seconds"]  # conversion time excludes the training
        fileio.atomic_write_bytes(tflite_path, content)
        runner = tflite.TFLiteModel(content)  # loads, or says why not
    except Exception as error:  # noqa: BLE001 - any converter/LiteRT failure is this variant's result
        record["conversion"] = {"status": "failed", "seconds": round(time.perf_counter() - started, 2),
                                "error": f"{type(error).__name__}: {error}".strip()}
        if tflite_path.is_file():  # converted, but LiteRT refused it: keep the file and say why
            record["size"] = scoring.file_size(tflite_path)
            record["conversion"]["smallest_activation_scale"] = tflite.smallest_activation_scale(tflite_path)
        _finish(record, cfg, dataset_dir)
        scoring.write_results(output_dir, record)
        return record
    record["conversion"] = {"status": "ok", "seconds": round(time.perf_counter() - started, 2), "error": None}
    progress.report("step", "converted", 1, 1, record["conversion"]["seconds"])  # evaluation follows

    workers, threads = _evaluation_parallelism(cfg)
    started = time.perf_counter()
    probabilities = tflite.predict_parallel(content, data.test.images, workers=workers, num_threads=threads,
                                            batch_size=cfg.quantize.eval_batch_size)
    record["evaluation"] = {"engine": "ai_edge_litert", "split": "test", "workers": workers, "threads": threads,
                            "batch_size": cfg.quantize.eval_batch_size,
                            "seconds": round(time.perf_counter() - started, 2)}
    record["test"] = scoring.classification_metrics(data.test.labels, probabilities, data.classes)
    record["agreement"] = scoring.agreement(reference, probabilities)
    ood = evaluate.measure_ood(
        lambda images: tflite.predict_parallel(content, images, workers=workers, num_threads=threads,
                                               batch_size=cfg.quantize.eval_batch_size),
        list(data.classes), runner.image_size, fit=cfg.model.fit, class_map=dict(cfg.ood.class_map))
    if ood is not None:
        record["ood"] = ood
    record["delta_accuracy_pp"] = round(
        100.0 * (record["test"]["accuracy"] - record["source_model"]["float_test"]["accuracy"]), 4)
    record["size"] = scoring.file_size(tflite_path)
    record["latency_ms"] = {
        f"tflite_threads{threads}": tflite.TFLiteModel(content, num_threads=threads).latency(
            runs=cfg.quantize.latency_runs, warmup=cfg.quantize.latency_warmup)
        for threads in cfg.quantize.latency_threads}
    record["op_census"] = tflite.op_census(content)
    record["io"] = {"input_dtype": runner.input_dtype.name, "output_dtype": np.dtype(runner.output["dtype"]).name,
                    "input_quantization": list(runner.input["quantization"])}
    _finish(record, cfg, dataset_dir)
    scoring.write_results(output_dir, record, paths=data.test.paths, labels=data.test.labels,
                           probabilities=probabilities)
    return record


def _quantization_aware(model: keras.Model, data: inputs.Dataset, cfg: VariantConfig, record: dict[str, Any],
                        representative: np.ndarray, source_record: dict[str, Any], output_dir: Path) -> bytes:
    """QAT (or PQAT) of ``model``, then its int8 file; fills ``record["qat"]``, writes ``history.csv``.

    PQAT of a 2:4-pruned source must keep the pattern in the file's int8 kernels: else ``SparsityError``.
    """
    from trashnet.stages import qat, train
    from trashnet.nets.sparsity import SparsityError  # noqa: PLC0415

    qat_model, qat_record = qat.train(model, data, cfg, check_images=data.test.images[:REWRITE_CHECK_IMAGES])
    fileio.atomic_write_text(output_dir / scoring.HISTORY_FILE, train.history_csv(qat_record.pop("history")))
    record["qat"] = qat_record
    content = convert.convert(qat_model, "int8", representative=representative, quantization_aware=True)
    source_method = (source_record.get("sparsity") or {}).get("method")
    if cfg.quantize.qat.method == "pqat" and source_method == "2of4":
        check = sparsity.int8_m_by_n(content)
        qat_record["m_by_n_int8"] = check
        if not check["holds"]:
            raise SparsityError(f"PQAT lost the 2:4 pattern in the int8 file: {check['violating']}")
    return content


def _float_reference(model: keras.Model, data: inputs.Dataset, source_sha: str,
                     cache_dir: str | os.PathLike | None) -> np.ndarray:
    """The float Keras model's test probabilities, cached per source file and data: every precision of
    one source compares against the same reference, computed once."""
    if cache_dir is None:
        return scoring.keras_probabilities(model, data.test.images)
    # The source file, the data, how pixels are decoded, the evaluation code and TensorFlow (the lockfile).
    key = fileio.sha256_bytes(" ".join([inputs.decoder_key(), fileio.sha256_file(evaluate.__file__),
                                        provenance.lockfile_hash()]).encode())[:12]
    path = (Path(cache_dir) / "quantize" /
            f"{source_sha[:16]}-{data.manifest_sha256[:16]}-{key}-{data.image_size}px-test-probabilities.npy")
    if path.is_file():
        return np.load(path)
    reference = scoring.keras_probabilities(model, data.test.images)
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
