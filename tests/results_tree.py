"""Hand-made result trees for tests: ``models/<stage>/<id>/metrics.json`` (+ model file) as the stages write them.

The records follow the ``metrics.json`` schema of ``trashnet/evaluate.py``, with only the keys selection and
the final artifact read, so selection can be tested without training or converting anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CLASSES = ("cardboard", "glass", "metal", "paper", "plastic", "trash")


def write_result(models_dir: Path, stage: str, variant: str, *, arch: str, accuracy: float | None = None,
                 gzip_bytes: int | None = None, raw_bytes: int | None = None, latency_ms: float | None = None,
                 precision: str | None = None, source: str | None = None, fmt: str | None = None,
                 weights: str = "none", profile: str = "quick", seed: int = 42, image_size: int = 32,
                 failed: str | None = None, model_bytes: bytes | None = None, write_model: bool = True,
                 extra: dict[str, Any] | None = None) -> Path:
    """One variant folder. ``failed`` = a conversion error: no test, no model file."""
    fmt = fmt or ("keras" if stage in ("baseline", "pruned") else "tflite")
    folder = models_dir / stage / variant
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".tflite" if fmt == "tflite" else ".keras"
    record: dict[str, Any] = {
        "variant": variant, "stage": stage, "arch": arch, "format": fmt, "profile": profile, "seed": seed,
        "weights": weights, "image_size": image_size, "classes": list(CLASSES),
        "provenance": {"git_commit": "0" * 40, "seed": seed, "profile": profile, "weights": weights,
                       "data_manifest_sha256": "d" * 64, "libraries": {"numpy": "2.4.6"}},
    }
    if source is not None:
        record["source"] = source
    if precision is not None:
        record["precision"] = precision
    if failed is not None:
        record["conversion"] = {"status": "failed", "error": failed}
    else:
        if fmt == "tflite":
            record["conversion"] = {"status": "ok"}
        if accuracy is not None:
            record["test"] = {"n": 100, "accuracy": accuracy, "macro_f1": accuracy - 0.01}
        if gzip_bytes is not None:
            record["size"] = {"file": variant + suffix, "raw_bytes": raw_bytes or 2 * gzip_bytes,
                              "gzip_bytes": gzip_bytes}
        if latency_ms is not None:
            record["latency_ms"] = {"tflite_threads1": {"median": latency_ms, "p90": latency_ms * 1.1,
                                                        "mean": latency_ms, "runs": 5}}
        if write_model:
            (folder / (variant + suffix)).write_bytes(model_bytes if model_bytes is not None else b"model")
    if extra:
        record.update(extra)
    (folder / "metrics.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return folder


def standard_tree(models_dir: Path) -> Path:
    """A plausible set of results (fractions, bytes, ms), including a failed conversion.

    Hybrid candidates: mobilenet_v3_large.prune-2of4.{fp16, int16x8}. With the default 1 pp tolerance the
    int16x8 file (0.790, 1.2 MB) wins over fp16 (0.795, 1.6 MB); int8 is smaller but not in the family.
    """
    large, pruned = "mobilenet_v3_large", "mobilenet_v3_large.prune-2of4"
    write_result(models_dir, "baseline", large, arch=large, accuracy=0.800, gzip_bytes=11_000_000,
                 latency_ms=None)
    write_result(models_dir, "baseline", "mobilenet_v3_small", arch="mobilenet_v3_small", accuracy=0.760,
                 gzip_bytes=4_000_000)
    write_result(models_dir, "pruned", pruned, arch=large, source=large, accuracy=0.797, gzip_bytes=6_500_000)
    q = "quantized"
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
