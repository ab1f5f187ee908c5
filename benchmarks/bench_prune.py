"""Measure the pruning stage once on real data: MobileNetV3-Large 2:4 at the cpu profile's input size.

Times the fine-tuning epochs on the full TrashNet and the whole stage (conversions, evaluation, latency),
and records the gzip size reduction against the dense source. Not a test: run it by hand on a quiet
machine, it writes ``benchmarks/results/bench_prune.json``::

    PYTHONPATH=$PWD python benchmarks/bench_prune.py --data /path/to/dataset-resized [--source model.keras]

Without ``--source`` it prunes a freshly initialised (untrained) MobileNetV3-Large: epoch times do not
depend on the weights, sizes and sparsity barely do, accuracy figures then mean nothing (the JSON says so).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def xnnpack_latency(*, arch: str, image_size: int, sparsity: float, runs: int, out: str) -> dict:
    """Issue point 4 without training: does LiteRT run a sparse-format MobileNetV3 faster?

    Latency does not depend on what the weights learned, only on where the zeros are, so this zeroes the
    smallest ``sparsity`` of every 1x1 conv kernel (what tfmot's magnitude pruning converges to, layer by
    layer) in the XNNPack layout, and times the stock dense model, the XNNPack layout dense, and the pruned
    XNNPack layout stored dense and stored sparse (``EXPERIMENTAL_SPARSITY``), 1 and 2 threads.
    """
    import numpy as np

    from trashnet.nets import sparsity
    from trashnet.core import fileio, provenance
    from trashnet.nets import models, xnnpack
    from trashnet.stages import prune
    from trashnet.core.tflite import TFLiteModel, op_census

    stock = models.build_model(arch, num_classes=6, image_size=image_size)
    layout = xnnpack.build_xnnpack_mobilenet_v3(arch, num_classes=6, image_size=image_size)
    xnnpack.transfer_weights(stock, layout)
    dense_layout = prune.to_tflite(layout)
    for name in sparsity.prunable_layer_names(layout, "xnnpack"):
        layer = layout.get_layer(name)
        kernel, *rest = layer.get_weights()
        threshold = np.quantile(np.abs(kernel), sparsity)
        layer.set_weights([np.where(np.abs(kernel) > threshold, kernel, 0.0), *rest])
    files = {"stock_dense": prune.to_tflite(stock), "xnnpack_layout_dense": dense_layout,
             "pruned_stored_dense": prune.to_tflite(layout),
             "pruned_stored_sparse": prune.to_tflite(layout, sparse=True)}
    result = {"what": f"{arch} {image_size} px, 1x1 convs {sparsity:.0%} zero (magnitude, untrained weights), "
                      f"median of {runs} LiteRT invocations after 10 warm-up",
              "sparsity": sparsity.sparsity_report(layout, "xnnpack")["total"], "files": {}}
    for key, content in files.items():
        entry = {"raw_bytes": len(content), "densify_ops": op_census(content)["by_op"].get("DENSIFY", 0)}
        for threads in (1, 2):
            entry[f"threads{threads}_ms"] = TFLiteModel(content, num_threads=threads).latency(
                runs=runs, warmup=10)["median"]
        result["files"][key] = entry
    result["load_average_at_end"] = os.getloadavg()
    result["hardware"] = provenance.hardware()
    fileio.write_json(out, result)
    print(fileio.dumps_json(result))
    return result


def gzip_check(source: str, out: str) -> dict:
    """The size half of the 2:4 target on a trained model, without data or fine-tuning: apply the 2:4
    magnitude mask once (what tfmot does at its first step), verify it, convert dense and masked to FP32
    TFLite, and compare raw and gzipped sizes. Fine-tuning moves the kept weights, not the zeros' count."""
    import gzip

    import numpy as np

    from trashnet.core import fileio
    from trashnet.core.keras_env import keras
    from trashnet.nets import sparsity
    from trashnet.stages import prune

    model = keras.models.load_model(source, compile=False)
    dense = prune.to_tflite(model)
    for name in sparsity.prunable_layer_names(model, "2of4"):
        layer = model.get_layer(name)
        kernel, *rest = layer.get_weights()
        rows = np.moveaxis(kernel, -2, -1)
        shape = rows.shape
        blocks = rows.reshape(-1, 4)  # input channels are a multiple of 4 for every prunable layer
        order = np.argsort(np.abs(blocks), axis=1)
        np.put_along_axis(blocks, order[:, :2], 0.0, axis=1)
        layer.set_weights([np.moveaxis(blocks.reshape(shape), -1, -2), *rest])
    sparsity.check_m_by_n(model)
    masked = prune.to_tflite(model)
    sparse = prune.to_tflite(model, sparse=True)

    def sizes(content):
        return {"raw_bytes": len(content), "gzip_bytes": len(gzip.compress(content, 9, mtime=0))}

    result = {"source": Path(source).name, "sha256": fileio.sha256_file(source),
              "sparsity": sparsity.sparsity_report(model, "2of4")["total"],
              "dense": sizes(dense), "masked_2of4": sizes(masked), "masked_2of4_sparse_format": sizes(sparse)}
    for key in ("masked_2of4", "masked_2of4_sparse_format"):
        for kind in ("raw", "gzip"):
            result[f"{key}_{kind}_reduction_pct"] = round(
                100 * (1 - result[key][f"{kind}_bytes"] / result["dense"][f"{kind}_bytes"]), 2)
    fileio.write_json(out, result)
    print(fileio.dumps_json(result))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TRASHNET_REAL_DATA"),
                        help="TrashNet's dataset-resized folder (default: $TRASHNET_REAL_DATA)")
    parser.add_argument("--source", help="a trained mobilenet_v3_large .keras at --image-size (default: untrained)")
    parser.add_argument("--arch", default="mobilenet_v3_large")
    parser.add_argument("--method", default="2of4", choices=("2of4", "unstructured", "xnnpack"))
    parser.add_argument("--image-size", type=int, default=128, help="the cpu profile's input size")
    parser.add_argument("--epochs", type=int, default=2, help="measured epochs (the first includes tracing)")
    parser.add_argument("--profile-epochs", type=int, default=10, help="epochs to extrapolate the stage to")
    parser.add_argument("--work", help="scratch folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_prune.json"))
    parser.add_argument("--latency-only", action="store_true",
                        help="only the XNNPack sparse-inference latency check (no data, no training)")
    parser.add_argument("--latency-size", type=int, default=224)
    parser.add_argument("--latency-sparsity", type=float, default=0.75)
    parser.add_argument("--latency-runs", type=int, default=100)
    parser.add_argument("--gzip-check", metavar="KERAS",
                        help="only the 2:4 size check on this trained .keras (no data, no training)")
    args = parser.parse_args(argv)
    if args.gzip_check:
        gzip_check(args.gzip_check, str(Path(args.out).with_name("bench_prune_gzip.json")))
        return 0
    if args.latency_only:
        out = str(Path(args.out).with_name("bench_prune_xnnpack_latency.json"))
        xnnpack_latency(arch=args.arch, image_size=args.latency_size, sparsity=args.latency_sparsity,
                        runs=args.latency_runs, out=out)
        return 0
    if not args.data:
        parser.error("no data: pass --data or set $TRASHNET_REAL_DATA")

    from trashnet.core import fileio, profiles, provenance
    from trashnet.data import inputs, prepare
    from trashnet.nets import models
    from trashnet.stages import prune

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_prune-"))
    started = time.perf_counter()
    dataset_dir = work / "dataset"
    if not (dataset_dir / "manifest.csv").is_file():
        prepare.prepare(args.data, dataset_dir, split="stratified", seed=42)
    prepare_s = time.perf_counter() - started

    source_id = args.arch
    source_dir = work / "models" / "train" / source_id
    source_dir.mkdir(parents=True, exist_ok=True)
    if args.source:
        shutil.copyfile(args.source, source_dir / f"{source_id}.keras")
        weights_note = f"trained source {Path(args.source).name}"
    else:
        model = models.build_model(args.arch, num_classes=6, image_size=args.image_size)
        model.save(source_dir / f"{source_id}.keras")
        weights_note = "untrained source (random init): accuracy figures are meaningless"

    profile = profiles.load_profile("quick")
    entry = {"id": f"{source_id}.prune-{args.method}", "stage": "prune", "arch": args.arch, "source": source_id,
             "source_stage": "train", "model": {"image_size": args.image_size},
             "train": {"batch_size": 32}, "prune": {"method": args.method, "epochs": args.epochs,
                                                    "end_fraction": 0.7},
             "quantize": {"latency_runs": 30, "latency_warmup": 5}}
    cfg = profiles.resolve_variant(profile, entry, where="bench_prune")
    output_dir = work / "models" / "prune" / cfg.id
    stage_start = time.perf_counter()
    record = prune.run_pruning(cfg, dataset_dir=dataset_dir, source_dir=source_dir, output_dir=output_dir,
                               cache_dir=work / ".cache")
    stage_s = time.perf_counter() - stage_start

    epochs = record["epoch_seconds"]
    steady = epochs[1:] or epochs
    steady_epoch = sum(steady) / len(steady)
    overhead = stage_s - sum(epochs)  # loading, tracing beyond epoch 1, conversions, evaluation, latency
    result = {
        "what": f"{args.arch} {args.method} at {args.image_size} px, batch 32, full TrashNet (stratified 70/15/15)",
        "weights": weights_note,
        "images": {split: len(rows) for split, rows in inputs.read_accepted(dataset_dir)[1].items()},
        "prepare_s": round(prepare_s, 1),
        "epoch_seconds": epochs,
        "steady_epoch_s": round(steady_epoch, 1),
        "stage_s": round(stage_s, 1),
        "stage_overhead_s": round(overhead, 1),
        "extrapolated_stage_s": {
            f"{args.profile_epochs}_epochs": round(epochs[0] + steady_epoch * (args.profile_epochs - 1) + overhead, 1)},
        "sizes": record["sizes"],
        "dense_baseline": record["dense_baseline"],
        "sparsity_total": record["sparsity"]["total"],
        "latency_ms": {k: v["median"] for k, v in record["latency_ms"].items()},
        "test_accuracy": record["test"]["accuracy"],
        "load_average_at_end": os.getloadavg(),
        "hardware": provenance.hardware(),
    }
    fileio.write_json(args.out, result)
    print(fileio.dumps_json(result))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
