"""Cost of ``stats.json`` on a realistic run: 30 variants x the 430 images of TrashNet's official test split.

    python benchmarks/bench_stats.py [--variants 30] [--resamples 9999] [--repeat 2]

Writes a result tree like the pipeline's (``metrics.json``, ``predictions.csv``, the runner's done marker)
into a temporary folder: 4 baselines, 6 pruned variants, 20 quantized files, linked by ``source`` as in
``experiments/variants.yaml``, with synthetic predictions (about 80 % correct; a derived model disagrees with
its source on about 5 % of the images). Then times what the final stage does: read the results, bootstrap
accuracy and macro-F1 intervals for every variant, the paired comparisons of every family, Holm, the seed
summaries, the final-vs-reference test and writing the file. Also times one scikit-learn ``f1_score`` call,
the per-resample cost ``stats.macro_f1`` avoids. Writes ``benchmarks/results/bench_stats.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trashnet.nets import scoring
from trashnet.core import fileio, settings
from trashnet.stages import select, stats
from trashnet.core.config import SelectConfig, StatsConfig  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]
ARCHS = ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"]


def official_test_split() -> tuple[list[str], np.ndarray]:
    """The 430 test images of TrashNet's official split: paths as the dataset folder names them, labels."""
    paths, labels = [], []
    for line in (settings.OFFICIAL_SPLITS_DIR / "test.txt").read_text().split("\n"):
        if line.strip():
            name = line.split()[0]
            cls = re.match(r"[a-z]+", name).group(0)  # "paper70.jpg" -> paper
            paths.append(f"{cls}/{name}")
            labels.append(CLASSES.index(cls))
    return paths, np.array(labels)


def plan(count: int) -> list[tuple[str, str, str | None, str | None]]:
    """(stage, id, source, precision) for ``count`` variants, sources first."""
    variants = [("train", arch, None, None) for arch in ARCHS]
    variants += [("prune", f"{arch}.prune-2of4", arch, None) for arch in ARCHS]
    variants += [("prune", f"mobilenet_v3_large.prune-{s}", "mobilenet_v3_large", None) for s in ("50", "75")]
    sources = [v[1] for v in variants]
    for precision in ("fp32", "fp16", "int8-dynamic", "int8", "int16x8"):
        for source in sources:
            variants.append(("quantize", f"{source}.{precision}", source, precision))
            if len(variants) == count:
                return variants
    return variants[:count]


def write_tree(models: Path, count: int, paths: list[str], labels: np.ndarray, rng) -> None:
    predicted: dict[str, np.ndarray] = {}
    for stage, variant, source, precision in plan(count):
        if source is None:
            wrong = (labels + rng.integers(1, len(CLASSES), len(labels))) % len(CLASSES)
            guess = np.where(rng.random(len(labels)) < 0.8, labels, wrong)
        else:
            guess = predicted[source].copy()
            flip = rng.random(len(labels)) < 0.05
            guess[flip] = rng.integers(0, len(CLASSES), int(flip.sum()))
        predicted[variant] = guess
        folder = models / stage / variant
        folder.mkdir(parents=True)
        record = {"variant": variant, "stage": stage, "arch": variant.split(".")[0], "source": source,
                  "precision": precision or "fp32", "format": "tflite" if stage == "quantize" else "keras",
                  "profile": "bench", "seed": 42, "classes": CLASSES,
                  "test": scoring.classification_metrics(labels, np.eye(len(CLASSES))[guess], CLASSES),
                  "size": {"file": f"{variant}.tflite", "raw_bytes": 4_000_000, "gzip_bytes": 3_000_000},
                  "latency_ms": {"tflite_threads1": {"median": 3.0}}}
        if stage == "quantize":  # a key of the quantize stage's record only (records.QuantizeMetrics)
            record["conversion"] = {"status": "ok"}
        scoring.write_results(folder, record, paths=paths, labels=labels, probabilities=np.eye(len(CLASSES))[guess])
        (folder / f"{variant}.tflite").write_bytes(b"model")
        (folder / settings.RUN_MANIFEST_NAME).write_text("{}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=30)
    parser.add_argument("--resamples", type=int, default=StatsConfig().resamples)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs (the median is reported)")
    args = parser.parse_args(argv)
    cfg = StatsConfig(resamples=args.resamples)
    select_cfg = SelectConfig(architecture=None, source_stage=None, precisions=(), max_latency_ratio=None)
    paths, labels = official_test_split()
    timings, cpu, result = [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        write_tree(models, args.variants, paths, labels, np.random.default_rng(0))
        for _ in range(args.repeat):
            start, start_cpu = time.perf_counter(), time.process_time()
            rows = select.finished_results(models, select_cfg, profile="bench")
            analysis = stats.analyse(rows, models, cfg, tolerance_pp=select_cfg.accuracy_tolerance_pp)
            selection = select.select(models, select_cfg, profile="bench", rows=rows, statistics=analysis)
            analysis = stats.add_final(analysis, selection, models, cfg)
            written = stats.write_stats(analysis, Path(tmp))
            timings.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)  # CPU seconds: less sensitive to other load
            result = analysis
        size = written.stat().st_size
    from sklearn.metrics import f1_score

    guess = np.where(np.random.default_rng(1).random(len(labels)) < 0.8, labels, 0)
    start = time.perf_counter()
    for _ in range(200):
        f1_score(labels, guess, labels=range(len(CLASSES)), average="macro", zero_division=0)
    sklearn_ms = (time.perf_counter() - start) / 200 * 1000
    families = {}
    for comparison in result.comparisons:
        families[comparison.family] = families.get(comparison.family, 0) + 1
    report = {
        "variants": args.variants, "test_images": len(labels), "resamples": cfg.resamples, "method": cfg.method,
        "seconds_median": float(np.median(timings)), "seconds_each": [round(t, 3) for t in timings],
        "cpu_seconds_each": [round(t, 3) for t in cpu],
        "intervals": len(result.intervals), "comparisons": families, "skipped": len(result.skipped),
        "stats_json_bytes": size,
        "sklearn_f1_score_ms_per_call": round(sklearn_ms, 3),
        "sklearn_estimate_s_per_variant_percentile": round(sklearn_ms * cfg.resamples / 1000, 1),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_1min": os.getloadavg()[0]},
    }
    RESULTS.mkdir(exist_ok=True)
    fileio.write_json(RESULTS / "bench_stats.json", report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
