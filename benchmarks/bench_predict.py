"""Throughput of ``trashnet.deploy.predict`` on a folder of TrashNet JPEGs: images per second, end to end.

    python benchmarks/bench_predict.py [--model FILE|BUNDLE.zip] [--images DIR] [--limit N] [--cores 2]

End to end = what ``python -m trashnet predict DIR --model FILE`` does per image: walk, decode with Pillow on
the thread pool, resize, run the interpreter, top-k. The model is loaded before the clock starts. Decoding
alone and inference alone are timed too, to say which one bounds the rate. Target (issues 6 and 15): >= 150
images/s on 2 cores for the 128 px final model. ``--model`` takes a .tflite or a release bundle (through
``litert.load``, as ``predict`` and ``evaluate`` do). Without it (and no final model), an untrained
MobileNetV3-Large at ``--image-size`` (default 128) in ``--precision`` (default fp16, as the final hybrid) is
converted once (TensorFlow) and cached: weights do not change its speed.
Writes ``benchmarks/results/bench_predict.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trashnet.core import fileio, images, litert, settings
from trashnet.deploy import predict

RESULTS = Path(__file__).resolve().parent / "results"


def default_images() -> Path:
    value = os.environ.get(settings.ENV_REAL_DATA)
    return Path(value) if value else settings.SAMPLE_DIR


def untrained_model(size: int, cache: Path, precision: str = "fp16") -> Path:
    """MobileNetV3-Large, random weights, FP32 or FP16 TFLite, converted from a concrete function (docs/toolchain-facts.md)."""
    path = cache / f"mobilenet_v3_large-untrained-{size}px-{precision}.tflite"
    if not path.is_file():
        from trashnet.nets import models
        from trashnet.core.keras_env import tf

        model = models.build_model("mobilenet_v3_large", num_classes=6, image_size=size)
        function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
            tf.TensorSpec((1, size, size, 3), tf.float32))
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
        if precision == "fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        fileio.atomic_write_bytes(path, converter.convert())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a .tflite file or bundle (default: models/<profile>/final/trashnet.tflite, "
                                        "else an untrained "
                                        "MobileNetV3-Large)")
    parser.add_argument("--profile", default="cpu", help="whose final model to time by default (cpu: 128 px)")
    parser.add_argument("--image-size", type=int, default=128, help="for the untrained model")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp16", help="for the untrained model")
    parser.add_argument("--images", type=Path, default=None, help="folder of images (default: $TRASHNET_REAL_DATA, "
                                                                  "else the bundled sample)")
    parser.add_argument("--limit", type=int, default=600, help="images per timed pass (the folder is cycled)")
    parser.add_argument("--cores", type=int, default=2, help="pin the process to this many CPU cores (0 = all)")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4], help="decode threads to try")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="interpreter threads to try")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_predict.json")
    args = parser.parse_args(argv)

    if args.cores and hasattr(os, "sched_setaffinity"):
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, available[:args.cores])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    layout = settings.Layout.default(args.profile)
    final = layout.variant_dir("final", "final") / "trashnet.tflite"
    model_path = Path(args.model) if args.model else final if final.is_file() else untrained_model(
        args.image_size, layout.cache / "bench", args.precision)
    folder = args.images or default_images()
    files = list(itertools.islice(itertools.cycle([p for p, _ in predict.expand([folder])]), args.limit))
    if not files:
        parser.error(f"no images under {folder}")

    size = litert.load(model_path).image_size
    runs = []
    for threads in args.threads:
        runner, names = predict.load_model(model_path, num_threads=threads)
        list(predict.predict(files[:20], runner, labels=names, workers=2))  # warm-up: caches, XNNPack packing
        image = images.load_for_model(files[0], size)
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(50):
            runner.predict_one(image)
        inference = 50 / (time.perf_counter() - start)
        inference_cpu = (time.process_time() - cpu_start) / 50
        for workers in args.workers:
            start, cpu_start = time.perf_counter(), time.process_time()
            results = list(predict.predict(files, runner, labels=names, workers=workers))
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            failed = sum(not r.ok for r in results)
            # CPU seconds per image hardly depend on other processes; wall time does. On `cores` idle cores
            # the rate is bounded by the total CPU work spread over the cores, and by the interpreter's
            # own CPU work spread over its threads (it runs one image at a time).
            cpu_per_image = cpu / len(files)
            projected = min(cores / cpu_per_image, min(threads, cores) / inference_cpu)
            runs.append({"interpreter_threads": threads, "decode_workers": workers, "images": len(files),
                         "failed": failed, "seconds": elapsed, "images_per_s": len(files) / elapsed,
                         "cpu_ms_per_image": 1000 * cpu_per_image,
                         "inference_cpu_ms_per_image": 1000 * inference_cpu,
                         "upper_bound_images_per_s_idle_cores": projected,
                         "inference_only_images_per_s": inference})
            print(f"threads={threads} workers={workers}: {len(files) / elapsed:.1f} images/s, "
                  f"{1000 * cpu_per_image:.1f} CPU ms/image (upper bound on {cores} idle cores: "
                  f"{projected:.0f}/s; inference alone {inference:.1f}/s, {1000 * inference_cpu:.1f} CPU ms)",
                  file=sys.stderr)
    for workers in args.workers:
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(lambda p: images.load_for_model(p, size), files):
                pass
        decode = len(files) / (time.perf_counter() - start)
        runs.append({"decode_only_workers": workers, "images": len(files), "decode_only_images_per_s": decode})
        print(f"decode only, workers={workers}: {decode:.1f} images/s", file=sys.stderr)

    best = max(r["images_per_s"] for r in runs if "images_per_s" in r)
    record = {
        "benchmark": "predict", "model": str(model_path), "model_sha256": fileio.sha256_file(model_path),
        "model_input": size, "images_dir": str(folder), "images": len(files), "cores": cores,
        "load_average": os.getloadavg(), "cpu": platform.processor() or platform.machine(),
        "best_images_per_s": best, "target_images_per_s": 150, "meets_target": best >= 150,
        "best_upper_bound_images_per_s_idle_cores": max(r["upper_bound_images_per_s_idle_cores"] for r in runs
                                                      if "upper_bound_images_per_s_idle_cores" in r),
        "note": "images_per_s is wall-clock on this machine as loaded (see load_average); the upper bound is "
                "min(cores / CPU time per image, interpreter threads / interpreter CPU time per image)",
        "runs": runs,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        from trashnet.core import provenance

        record["cpu"] = provenance.cpu_model()
    except ImportError:
        pass
    fileio.write_json(args.out, record)
    print(json.dumps({k: record[k] for k in ("best_images_per_s", "best_upper_bound_images_per_s_idle_cores",
                                             "meets_target", "cores", "load_average")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
