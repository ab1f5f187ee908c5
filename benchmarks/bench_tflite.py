"""TFLite size and latency per architecture x precision, measured in the LiteRT interpreter.

    PYTHONPATH=$PWD python benchmarks/bench_tflite.py --size 224 --runs 50
    PYTHONPATH=$PWD python benchmarks/bench_tflite.py --models-dir models/baseline   # trained models

Without ``--models-dir`` the models have random weights (latency and size do not depend on them, but
16x8 MobileNetV1/V2 files from random weights fail to prepare: recorded as such, see test_quantize.py).
Writes one JSON file to ``benchmarks/results/`` (git-ignored) and prints a table.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trashnet.core import config, fileio, provenance, tflite
from trashnet.nets import models
from trashnet.nets import convert
from trashnet.core.keras_env import keras, seed_everything  # noqa: E402


def load_or_build(arch: str, size: int, models_dir: Path | None) -> tuple[keras.Model, str]:
    if models_dir is not None:
        path = models_dir / arch / f"{arch}.keras"
        if path.is_file():
            model = keras.models.load_model(path, compile=False)
            if model.input_shape[1] == size:
                return model, f"trained:{path}"
    seed_everything(0)
    return models.build_model(arch, num_classes=6, image_size=size), "random"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--archs", nargs="+", default=list(config.ARCHITECTURES))
    parser.add_argument("--precisions", nargs="+", default=list(config.PRECISIONS))
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--calibration", type=int, default=16, help="random images that calibrate int8/16x8")
    parser.add_argument("--models-dir", type=Path, default=None, help="models/baseline: <arch>/<arch>.keras")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tflite.json")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    representative = rng.uniform(0, 255, (args.calibration, args.size, args.size, 3)).astype(np.float32)
    rows = []
    for arch in args.archs:
        model, origin = load_or_build(arch, args.size, args.models_dir)
        for precision in args.precisions:
            if precision == "int16x8-fallback" and not models.get_architecture(arch).uses_hard_swish:
                continue  # identical to int16x8 without hard-swish
            row = {"arch": arch, "precision": precision, "weights": origin, "size_px": args.size}
            started = time.perf_counter()
            try:
                source = model
                if precision == "int16x8" and models.get_architecture(arch).uses_hard_swish:
                    source = convert.int16_compatible(model, arch=arch, image_size=args.size, alpha=1.0,
                                                       dropout=0.2)
                content = convert.convert(source, precision, representative=representative)
                row["convert_s"] = round(time.perf_counter() - started, 2)
                row["raw_bytes"] = len(content)
                row["gzip_bytes"] = len(gzip.compress(content, compresslevel=9, mtime=0))
                census = tflite.op_census(content)
                row["ops"], row["float_compute_ops"] = census["total"], census["float_compute_ops"]
                for threads in args.threads:
                    latency = tflite.TFLiteModel(content, num_threads=threads).latency(
                        runs=args.runs, warmup=args.warmup)
                    row[f"threads{threads}_median_ms"] = round(latency["median"], 3)
                    row[f"threads{threads}_p90_ms"] = round(latency["p90"], 3)
                row["status"] = "ok"
            except Exception as error:  # noqa: BLE001 - a failing combination is a result
                row["status"] = "failed"
                row["error"] = f"{type(error).__name__}: {error}"[:500]
            rows.append(row)
            latency_text = "  ".join(f"{k}={v}" for k, v in row.items() if k.endswith("median_ms"))
            print(f"{arch:<20} {precision:<17} {row['status']:<6} {row.get('raw_bytes', 0):>10,} B "
                  f"{row.get('gzip_bytes', 0):>10,} gz  float_ops={row.get('float_compute_ops', '-')}  "
                  f"{latency_text or row.get('error', '')[:120]}", flush=True)
    result = {"benchmark": "tflite", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "hardware": provenance.hardware(),
              "libraries": provenance.library_versions(), "rows": rows}
    result["load_average_end"] = list(os.getloadavg())
    fileio.write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
