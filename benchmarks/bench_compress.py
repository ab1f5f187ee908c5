"""Issue 16 on real data: does distillation or QAT win back what pruning and INT8 cost?

Runs the pipeline's own stage functions (``prune.run_pruning``, ``quantize.run_quantization``) on the `cpu`
profile's configs, starting from an already trained V3-Large baseline (``train.run_baseline`` with the same
profile), and writes one JSON per group to ``benchmarks/results/bench_compress_<group>.json``: per variant the
test accuracy and macro-F1 against the float V3-Large, the gzipped size, the time, the per-epoch validation
curve and, for QAT files, the op census and the 2:4 check of the int8 kernels. Not a test::

    PYTHONPATH=$PWD python benchmarks/bench_compress.py --dataset prepared/ --baseline run/baseline/ \\
        --work /tmp/compress --group distill [--threads 1]

``--dataset`` is a prepared dataset (``trashnet prepare``, official split for `cpu`), ``--baseline`` the folder
holding ``mobilenet_v3_large.keras`` and its ``metrics.json``. Groups (run side by side with ``--threads 1``):

- ``plain``: 2:4 fine-tune as in variants.yaml, its PTQ int8 and FP16 files, and its PQAT int8;
- ``distill``: the distilled 2:4 fine-tune and its PQAT int8, FP16 and PTQ int8 files;
- ``qat``: PTQ int8 against QAT int8 of the float model;
- ``pqat``, ``pqat-distill``: the PQAT int8 files again, on their own (after ``plain`` / ``distill``);
- ``alpha``: the distilled 2:4 fine-tune at other distillation weights (alpha curve);
- ``unstructured``: 75 % unstructured, plain and distilled.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE = "mobilenet_v3_large"

GROUPS = {
    "plain": [f"{BASE}.prune-2of4", f"{BASE}.prune-2of4.int8", f"{BASE}.prune-2of4.fp16",
              f"{BASE}.prune-2of4.pqat.int8"],
    "distill": [f"{BASE}.prune-2of4-distill", f"{BASE}.prune-2of4-distill.pqat.int8",
                f"{BASE}.prune-2of4-distill.fp16", f"{BASE}.prune-2of4-distill.int8"],
    "qat": [f"{BASE}.int8", f"{BASE}.qat.int8"],
    "pqat": [f"{BASE}.prune-2of4.pqat.int8"],  # after `plain` (its source); alone, to run beside the others
    "pqat-distill": [f"{BASE}.prune-2of4-distill.pqat.int8"],  # after `distill`
    "alpha": [f"{BASE}.prune-2of4-distill@alpha0.9", f"{BASE}.prune-2of4-distill@alpha0.25"],
    "unstructured": [f"{BASE}.prune-75", f"{BASE}.prune-75-distill"],
}


def variant(variants: dict, name: str):
    """A variant of variants.yaml, or ``<id>@alpha<a>``: the same with another distillation weight."""
    from trashnet.core import config

    if "@alpha" not in name:
        return variants[name]
    base, alpha = name.split("@alpha")
    data = config.config_to_dict(variants[base])
    data["id"] = name
    data["prune"]["distill"]["alpha"] = float(alpha)
    return config.config_from_dict(data)


def headline(record: dict, reference: dict, folder: Path) -> dict:
    """What the issue's targets need from one variant's metrics.json."""
    from trashnet.nets import scoring

    test = record.get("test") or {}
    entry = {"variant": record["variant"], "stage": record["stage"],
             "test_accuracy": test.get("accuracy"), "test_macro_f1": test.get("macro_f1"), "n": test.get("n"),
             "accuracy_vs_float_pp": (round(100 * (test["accuracy"] - reference["accuracy"]), 2)
                                      if test else None)}
    if record["stage"] == "prune":
        entry["gzip_bytes"] = record["sizes"]["tflite"]["gzip_bytes"]
        entry["training"] = record["training"]
    else:
        entry["gzip_bytes"] = (record.get("size") or {}).get("gzip_bytes")
        entry["conversion"] = record["conversion"]
        entry["float_compute_ops"] = (record.get("op_census") or {}).get("float_compute_ops")
        if "qat" in record:
            entry["qat"] = {key: value for key, value in record["qat"].items() if key != "history"}
    history = folder / scoring.HISTORY_FILE
    if history.is_file():
        entry["history_csv"] = history.read_text()
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the models (outside the repo)")
    parser.add_argument("--group", choices=sorted(GROUPS), required=True)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = TensorFlow's default)")
    args = parser.parse_args()

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from trashnet.core import fileio, profiles, provenance
    from trashnet.stages import prune, quantize
    from trashnet.core.keras_env import tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    profile = profiles.load_profile(args.profile)
    variants = profiles.load_variants(profile)
    models_dir = args.work / "models"
    baseline_dir = models_dir / "train" / BASE
    if not baseline_dir.is_dir():
        shutil.copytree(args.baseline, baseline_dir)
    reference = fileio.read_json(baseline_dir / "metrics.json")["test"]
    out_file = REPO / "benchmarks" / "results" / f"bench_compress_{args.group}.json"
    result = {"what": f"issue 16, group {args.group}: full TrashNet, profile {args.profile}, seed {profile.seed}; "
                      "accuracy is on the test split, against the float V3-Large baseline",
              "float_reference": {"variant": BASE, "test_accuracy": reference["accuracy"],
                                  "test_macro_f1": reference["macro_f1"], "n": reference["n"]},
              "threads": args.threads or "default", "runs": []}
    for name in GROUPS[args.group]:
        cfg = variant(variants, name)
        source_dir = models_dir / cfg.source_stage / cfg.source
        output_dir = models_dir / cfg.stage / cfg.id
        started = time.perf_counter()
        if cfg.stage == "prune":
            record = prune.run_pruning(cfg, dataset_dir=args.dataset, source_dir=source_dir, output_dir=output_dir,
                                       cache_dir=args.work / ".cache")
        else:
            record = quantize.run_quantization(cfg, dataset_dir=args.dataset, source_dir=source_dir,
                                               output_dir=output_dir, cache_dir=args.work / ".cache")
            print(quantize.format_summary(record), flush=True)
        entry = headline(record, reference, output_dir)
        entry["wall_seconds"] = round(time.perf_counter() - started, 1)
        entry["load_average_at_end"] = os.getloadavg()
        result["runs"].append(entry)
        result["hardware"] = provenance.hardware()
        fileio.write_json(out_file, result)  # after every run: a crash later keeps what was measured
        print(f"== {name}: {entry['test_accuracy']} ({entry['accuracy_vs_float_pp']} pp vs float), "
              f"{entry['gzip_bytes']} B gzip, {entry['wall_seconds']} s", flush=True)


if __name__ == "__main__":
    main()
