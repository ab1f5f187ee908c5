"""Is a baseline reproducible? The same variant trained twice with the same seed, in fresh processes.

Trains one baseline variant of a profile (default: ``mobilenet_v3_small`` of ``quick`` on the bundled
sample) ``--repeats`` times in separate processes, once with TensorFlow's default kernels and once with
``tf.config.experimental.enable_op_determinism()``, then compares each run's ``predictions.csv`` and
``metrics.json`` with the first run of the same mode: byte-identical files, per-image agreement,
accuracy difference, and the wall time (the cost of determinism). Writes one JSON file.

    PYTHONPATH=$PWD python benchmarks/bench_determinism.py
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trashnet.core import config, fileio, profiles, provenance, settings
from trashnet.data import prepare

# Runs in a fresh interpreter: TensorFlow's determinism switch is process-wide and cannot be undone.
WORKER = """
import json, sys
spec = json.loads(sys.argv[1])
from trashnet.core.keras_env import tf
if spec["deterministic"]:
    tf.config.experimental.enable_op_determinism()
from trashnet.core import config
from trashnet.stages import train
cfg = config.config_from_dict(spec["config"])
train.run_baseline(cfg, dataset_dir=spec["dataset"], output_dir=spec["output"], cache_dir=spec["cache"],
                   verbose=False)
"""


def predictions(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    column = "predicted" if rows and "predicted" in rows[0] else list(rows[0])[-1]
    return [row[column] for row in rows]


def history_without_time(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def compare(first: Path, other: Path) -> dict:
    a, b = predictions(first / "predictions.csv"), predictions(other / "predictions.csv")
    metrics_a = json.loads((first / "metrics.json").read_text())["test"]
    metrics_b = json.loads((other / "metrics.json").read_text())["test"]
    return {
        "predictions_csv_identical": (first / "predictions.csv").read_bytes() == (other / "predictions.csv").read_bytes(),
        # history.csv carries each epoch's wall seconds; every other column must match.
        "history_identical_but_time": history_without_time(first / "history.csv") == history_without_time(other / "history.csv"),
        "images": len(a),
        "images_predicted_differently": sum(x != y for x, y in zip(a, b)),
        "accuracy_diff_pp": round(100 * (metrics_b["accuracy"] - metrics_a["accuracy"]), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--variant", default="mobilenet_v3_small")
    parser.add_argument("--data", type=Path, default=settings.SAMPLE_DIR)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="override the variant's training epochs (a shorter probe)")
    parser.add_argument("--modes", default="default,op_determinism")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "determinism.json")
    args = parser.parse_args()

    profile = profiles.load_profile(args.profile)
    cfg = profiles.load_variants(profile)[args.variant]
    if args.epochs:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": args.epochs})})
    result: dict = {"profile": profile.name, "variant": cfg.id, "data": str(args.data), "seed": cfg.seed,
                    "epochs": cfg.train.epochs, "image_size": cfg.model.image_size, "modes": {},
                    "provenance": provenance.collect()}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        dataset = scratch / "dataset"
        prepare.prepare(args.data, dataset, split=profile.data.split, seed=profile.data.seed,
                     ratios=tuple(profile.data.ratios))
        for mode in args.modes.split(","):
            runs = []
            for repeat in range(args.repeats):
                output = scratch / mode / str(repeat)
                spec = {"deterministic": mode == "op_determinism", "config": config.config_to_dict(cfg),
                        "dataset": str(dataset), "output": str(output), "cache": str(scratch / f"cache-{mode}-{repeat}")}
                start = time.perf_counter()
                subprocess.run([sys.executable, "-c", WORKER, json.dumps(spec)], check=True, cwd=REPO)
                runs.append({"seconds": round(time.perf_counter() - start, 1), "folder": output})
                print(f"{mode} run {repeat + 1}: {runs[-1]['seconds']} s", flush=True)
            result["modes"][mode] = {
                "seconds": [run["seconds"] for run in runs],
                "against_first_run": [compare(runs[0]["folder"], run["folder"]) for run in runs[1:]],
            }
    fileio.write_json(args.output, result)
    print(json.dumps(result["modes"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
