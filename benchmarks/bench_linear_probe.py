"""The linear probe of every ImageNet baseline: what the frozen features are worth before any training here.

Issue 27 judges each ImageNet baseline against the linear probe of its own weights. This script measures that
probe with the project's own code, so the comparison rests on a result file in the repository:

- the backbone of each baseline of a profile (``cpu``: V1, V2, V3-Small, V3-Large minimalistic and the full
  V3-Large filled from it), built by ``models.build_model`` from ``model.weights: imagenet-tflite`` and frozen;
- its feature vector: the pooled features (V1 1024-d, V2 1280-d) or, for MobileNetV3, the ImageNet head's
  "last point" layer after pooling (V3-Small 1024-d, V3-Large 1280-d), the features Google's classifier reads;
- a logistic regression on standardised features with class-balanced weights (scikit-learn), fitted on the
  prepared official train + validation lists, scored on the test list and on ood-dev (``$TRASHNET_OOD_DATA``,
  4 classes, scored over the six outputs: a prediction of a class the set lacks counts as wrong);
- at two inputs: the weights' own 224 px, and the profile's input (``cpu``: 320 px, averaged 2x2 in the model
  to 160 px), which is what the baselines were fine-tuned on.

No augmentation, no fine-tuning, no choice on ood-dev (one fixed regulariser, C = 1). Writes JSON and a
Markdown table after every row; a rerun skips rows already in the file.

    TRASHNET_DATA=... TRASHNET_OOD_DATA=... TRASHNET_WEIGHTS=... PYTHONPATH=$PWD \\
        python benchmarks/bench_linear_probe.py --work /tmp/probe
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BASELINES = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v3_large_full")
C = 1.0  # the logistic regression's inverse regularisation: scikit-learn's default, not tuned
OUT = REPO / "benchmarks" / "results" / "linear_probe.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TRASHNET_DATA") or os.environ.get("TRASHNET_REAL_DATA"),
                        help="TrashNet's dataset-resized folder")
    parser.add_argument("--ood", default=os.environ.get("TRASHNET_OOD_DATA"), help="labelled OOD folder")
    parser.add_argument("--work", required=True, help="scratch folder: the prepared data set, decoded arrays")
    parser.add_argument("--profile", default="cpu", help="whose baselines and input size (default: cpu)")
    parser.add_argument("--variants", nargs="+", default=list(BASELINES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    if not args.data or not args.ood:
        parser.error("give --data and --ood (or set $TRASHNET_DATA and $TRASHNET_OOD_DATA)")
    return args


def feature_model(cfg, image_size: int, input_scale: int):
    """The variant's network up to its classifier's input, from the imported ImageNet weights, frozen."""
    from trashnet.core.keras_env import keras
    from trashnet.nets import imagenet, models

    arch = cfg.arch
    head = "last_point" if arch.startswith("mobilenet_v3") else "pooled"
    model = models.build_model(arch, num_classes=6, image_size=image_size, alpha=cfg.model.alpha,
                               weights=imagenet.resolve_weights(imagenet.WEIGHTS_VALUE, arch), head=head,
                               last_point=imagenet.head_weights(imagenet.WEIGHTS_VALUE, arch, head),
                               input_scale=input_scale)
    return keras.Model(model.input, model.get_layer("head_dropout").input), head


def features(model, paths: list[Path], size: int, fit: str) -> np.ndarray:
    from trashnet.core import images
    from trashnet.nets import models

    pixels = np.stack([images.load_for_model(path, size, fit) for path in paths])
    return np.asarray(models.predict_chunked(model, pixels, batch_size=32), np.float32)


def probe_row(cfg, image_size: int, input_scale: int, sets: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from trashnet.deploy import evaluate
    from trashnet.nets import imagenet

    start = time.perf_counter()
    model, head = feature_model(cfg, image_size, input_scale)
    size = image_size * input_scale
    feats = {name: features(model, paths, size, cfg.model.fit) for name, (paths, _) in sets.items()}
    extract_s = time.perf_counter() - start
    train_labels = np.array([classes.index(label) for label in sets["fit"][1]])
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=5000))
    probe.fit(feats["fit"], train_labels)
    scores = {}
    for name in ("test", "ood"):
        scored = evaluate.score(sets[name][1], probe.predict(feats[name]), classes)
        scores[name] = {key: scored[key] for key in ("n", "accuracy", "macro_f1")}
        scores[name]["per_class_recall"] = {c: round(v["recall"], 4) for c, v in scored["per_class"].items()}
    return {"variant": cfg.id, "arch": cfg.arch, "head": head, "features": int(feats["fit"].shape[1]),
            "image_size": image_size, "input_scale": input_scale, "input_px": size, "fit": cfg.model.fit,
            "weights": imagenet.weights_origin(imagenet.WEIGHTS_VALUE, cfg.arch), "scores": scores,
            "extract_seconds": round(extract_s, 1), "seconds": round(time.perf_counter() - start, 1)}


def markdown(results: dict[str, Any]) -> str:
    lines = ["# Linear probe of the ImageNet baselines' frozen features", "",
             f"Logistic regression (C = {C}, class-balanced, standardised features) on each frozen backbone, fitted on "
             "TrashNet's prepared official train + validation lists; TrashNet test list and ood-dev (4 classes, scored "
             "over 6 outputs). Written by `benchmarks/bench_linear_probe.py`; provenance in the JSON beside this file.",
             "", "| variant | arch | features | input | TrashNet test acc | macro-F1 | ood-dev acc | ood macro-F1 | "
             "ood recall per class | s |", "|---|---|---|---|---:|---:|---:|---:|---|---:|"]
    order = {variant: i for i, variant in enumerate(BASELINES)}
    rows = sorted(results["rows"].values(),
                  key=lambda r: (order.get(r["variant"], len(order)), r["variant"], r["input_px"]))
    for row in rows:
        s = row["scores"]
        recall = ", ".join(f"{c} {100 * v:.0f}" for c, v in s["ood"]["per_class_recall"].items())
        pooled = f" (/{row['input_scale']} = {row['image_size']})" if row["input_scale"] > 1 else ""
        size = f"{row['input_px']} px{pooled}"
        lines.append(f"| {row['variant']} | {row['arch']} | {row['features']}-d ({row['head']}) | {size} | "
                     f"{100 * s['test']['accuracy']:.2f} | {100 * s['test']['macro_f1']:.2f} | "
                     f"{100 * s['ood']['accuracy']:.2f} | {100 * s['ood']['macro_f1']:.2f} | {recall} | "
                     f"{row['seconds']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from trashnet.core.keras_env import tf  # noqa: F401 - the flavour switch, before anything else imports TF

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    from trashnet.core import fileio, profiles, provenance
    from trashnet.data import inputs, prepare
    from trashnet.deploy import evaluate

    dataset_dir = Path(args.work) / "dataset"
    profile = profiles.load_profile(args.profile)
    # prepare reuses an intact earlier copy made from the same files, and makes it again when they changed
    prepare.prepare(args.data, dataset_dir, split=profile.data.split, seed=profile.data.seed)
    classes, by_split = inputs.read_accepted(dataset_dir)
    classes = list(classes)
    fit_entries = by_split["train"] + by_split["validation"]
    ood = evaluate.scan(args.ood, classes, profile.ood.class_map)
    sets = {"fit": ([dataset_dir / rel for rel, _ in fit_entries], [label for _, label in fit_entries]),
            "test": ([dataset_dir / rel for rel, _ in by_split["test"]], [label for _, label in by_split["test"]]),
            "ood": ([ood.root / rel for rel, _ in ood.files], [label for _, label in ood.files])}
    variants = profiles.load_variants(profile)
    out = Path(args.out)
    for variant in args.variants:
        cfg = variants[variant]
        for image_size, scale in ((224, 1), (cfg.model.image_size, cfg.model.input_scale)):
            key = f"{variant}@{image_size * scale}px"
            results: dict[str, Any] = fileio.read_json(out) if out.is_file() else {"rows": {}}
            if key in results["rows"]:
                continue
            row = probe_row(cfg, image_size, scale, sets, classes)
            print(f"== {key}: test {row['scores']['test']['accuracy']:.4f}, ood {row['scores']['ood']['accuracy']:.4f} "
                  f"({row['seconds']} s)", flush=True)
            results["rows"][key] = row
            results["settings"] = {"profile": args.profile, "C": C, "threads": args.threads,
                                   "fit_images": len(fit_entries), "test_images": len(by_split["test"]),
                                   "ood_images": len(ood.files),
                                   "machine": f"{os.cpu_count()} cores, {provenance.cpu_model()}"}
            results["provenance"] = provenance.collect(profile=args.profile, config={"C": C},
                                                       data_manifest=dataset_dir / "manifest.csv")
            fileio.write_json(out, results)
            fileio.atomic_write_text(out.with_suffix(".md"), markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
