"""How faithful the imported ImageNet weights are to Google's TFLite files (trashnet/nets/imagenet.py).

For each imported architecture, on real TrashNet photos (squashed to 224 px, Pillow bilinear):

- per layer, ``--layer-photos`` photos: each Keras block (kernel + folded BatchNorm + fused ReLU) fed the TFLite
  op's own dequantized input, its output compared with the TFLite op's output (cosine; minimum and median
  over photos, then the worst layer);
- end to end, ``--photos`` photos: cosine of the classifier's input features (pooled, penultimate), how often
  the two top-1 classes agree, how often the TFLite top-1 is within the Keras top 5;
- the three ImageNet photos beside the files: each file's top-1 and whether it is in the Keras top 5.

The TFLite files compute with 8-bit activations and the Keras model in float, so the end-to-end numbers
measure that drift as well as the mapping; the per-layer numbers measure the mapping. Writes one JSON file.

    TRASHNET_REAL_DATA=... TRASHNET_WEIGHTS=... PYTHONPATH=$PWD python benchmarks/bench_imagenet_import.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trashnet.core import fileio, provenance, settings
from trashnet.data import imagenet_files
from trashnet.nets import imagenet_check

ARCHS = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large_minimalistic")
PHOTOS = ("cat_720p", "parrot", "hot_dog")


def trashnet_photos(folder: Path, count: int) -> list[Path]:
    """``count`` photos spread evenly over the sorted list of all of them (every class)."""
    paths = sorted(folder.glob("*/*.jpg"))
    return [paths[i] for i in np.linspace(0, len(paths) - 1, count).round().astype(int)]


def measure(arch: str, layer_photos: np.ndarray, photos: np.ndarray, imagenet_photos: np.ndarray,
            labels: list[str]) -> dict:
    start = time.perf_counter()
    cosines = imagenet_check.layer_cosines(arch, layer_photos)
    per_layer = {name: {"min": round(float(v.min()), 5), "median": round(float(np.median(v)), 5)}
                 for name, v in cosines.items()}
    worst = min(per_layer, key=lambda name: per_layer[name]["min"])
    ends = imagenet_check.end_to_end(arch, photos)
    within = [int(t in k) for t, k in zip(ends.tflite_top1, ends.keras_top5)]
    named = imagenet_check.end_to_end(arch, imagenet_photos)
    return {
        "files": list(imagenet_files.SOURCES[arch].files), "weights": imagenet_files.provenance(arch),
        "layers": len(per_layer), "layer_photos": len(layer_photos),
        "worst_layer": {"name": worst, **per_layer[worst]},
        "layers_at_least_0_98": sum(v["min"] >= 0.98 for v in per_layer.values()),
        "per_layer": per_layer,
        "end_to_end": {
            "photos": len(photos),
            "feature_cosine_median": round(float(np.median(ends.feature_cosine)), 4),
            "feature_cosine_min": round(float(ends.feature_cosine.min()), 4),
            "top1_agreement": round(float(np.mean(ends.keras_top5[:, 0] == ends.tflite_top1)), 4),
            "tflite_top1_in_keras_top5": round(float(np.mean(within)), 4),
            "tflite_top1_in_keras_top5_count": int(sum(within)),
        },
        "imagenet_photos": {name: {"tflite_top1": labels[int(t)], "keras_top5": [labels[int(i)] for i in k],
                                   "within_top5": bool(t in k)}
                            for name, t, k in zip(PHOTOS, named.tflite_top1, named.keras_top5)},
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=210, help="end-to-end TrashNet photos")
    parser.add_argument("--layer-photos", type=int, default=20, help="per-layer TrashNet photos")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "bench_imagenet_import.json")
    args = parser.parse_args()
    source = os.environ.get(settings.ENV_REAL_DATA)
    if not source or not os.environ.get(settings.ENV_WEIGHTS):
        sys.exit(f"error: set ${settings.ENV_REAL_DATA} (TrashNet's dataset-resized) and ${settings.ENV_WEIGHTS}")
    paths = trashnet_photos(Path(source), args.photos)
    photos = np.stack([imagenet_check.photo(path) for path in paths])
    layer_photos = photos[np.linspace(0, len(photos) - 1, args.layer_photos).round().astype(int)]
    folder = imagenet_files.weights_folder()
    imagenet_photos = np.stack([imagenet_check.photo(folder / "photos" / f"{name}.jpg") for name in PHOTOS])
    labels = imagenet_files.labels()
    results = {}
    for arch in args.archs:
        results[arch] = measure(arch, layer_photos, photos, imagenet_photos, labels)
        summary = {k: results[arch][k] for k in ("worst_layer", "end_to_end", "seconds")}
        print(arch, summary, flush=True)
    fileio.write_json(args.out, {
        "what": "imported ImageNet weights against Google's TFLite files",
        "photos": [path.relative_to(source).as_posix() for path in paths], "resize": "224x224 squash, bilinear",
        "archs": results, "hardware": provenance.hardware(), "versions": provenance.library_versions(),
        "git_commit": provenance.git_commit()})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
