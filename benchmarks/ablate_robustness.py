"""Which training recipe survives photos that are not TrashNet's? One model per recipe, two test sets.

Each recipe is a set of ``train.augment`` options (``config.AugmentConfig``) over a profile (default
``cpu``). For each, one model is trained on the full TrashNet (the profile's split: the authors'
official one) by the project's own ``train.run_baseline`` and measured on

- TrashNet's test split, and
- the out-of-distribution development set (``$TRASHNET_OOD_DATA``: a labelled ``<class>/<image>`` folder
  scored with the model's six outputs; a prediction of a class it lacks counts as wrong),

each with the three test-time fits (squash, centre-crop, pad). The OOD set only measures: it never trains
and never picks a checkpoint (the profile's ``checkpoint: last`` keeps the final weights).

Screening runs are smaller than the profile (``--arch``, ``--image-size``, ``--epochs``) so that several
recipes fit in an afternoon on 2 cores; the output says which settings made each number. Results are
written after every recipe (``--out``: JSON, and a Markdown table beside it), and a rerun skips recipes
whose model is already trained in ``--work``.

    TRASHNET_DATA=... TRASHNET_OOD_DATA=... PYTHONPATH=$PWD python benchmarks/ablate_robustness.py \\
        --work /tmp/ablate --arch mobilenet_v3_small --image-size 96 --epochs 30 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The recipes, cumulative: each adds to the one before. Values are AugmentConfig fields.
CROP_COLOUR = {"crop_scale": [0.3, 2.0], "saturation": 0.4, "hue": 0.06}
BACKGROUND = {**CROP_COLOUR, "background": 0.7}
ALL = {**BACKGROUND, "blur": 0.3, "blur_sigma": 1.5, "noise": 0.04, "jpeg": 0.5, "jpeg_quality": [30, 95],
       "grayscale": 0.1, "mixup": 0.2}
RECIPES: dict[str, dict[str, Any]] = {
    "baseline": {},
    "crop+colour": CROP_COLOUR,
    "crop+colour+background": BACKGROUND,
    "all": ALL,
    "background": {"background": 0.7},  # alone, over the baseline
    "resample": {"resample": 0.5},  # issue 26: random resize filters from a 384 px decode, alone
    # With model.input_scale 3 (a 384 px input) resampling a 384 px decode changes nothing: from 512 px instead.
    "resample-512": {"resample": 0.5, "resample_source": 512},
}
FITS = ("squash", "crop", "pad")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("TRASHNET_DATA"), help="TrashNet <class>/<image> folder")
    parser.add_argument("--ood", default=os.environ.get("TRASHNET_OOD_DATA"), help="labelled OOD folder")
    parser.add_argument("--class-map", help="YAML/JSON class map of the OOD folder (default: folder names)")
    parser.add_argument("--work", required=True, help="scratch folder: prepared data, models, caches")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--arch", default="mobilenet_v3_small")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--input-scale", type=int, default=1, help="model.input_scale: the model takes SCALE x "
                        "--image-size px and averages SCALE x SCALE blocks first (docs/deployment-parity.md)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ablate_robustness.json"))
    args = parser.parse_args(argv)
    if not args.data or not args.ood:
        parser.error("give --data and --ood (or set $TRASHNET_DATA and $TRASHNET_OOD_DATA)")
    return args


def decode_folder(paths: list[Path], size: int, fit: str):
    import numpy as np

    from trashnet.core import images

    return np.stack([images.load_for_model(path, size, fit) for path in paths])


def measure(model, args, dataset_dir: Path, classes: list[str], class_map) -> dict[str, Any]:
    """Test-split and OOD numbers of a Keras model, for every fit (photos decoded at the model's input size)."""
    import numpy as np

    from trashnet.nets import scoring
    from trashnet.deploy import evaluate
    from trashnet.data import inputs

    _, by_split = inputs.read_accepted(dataset_dir)
    test = by_split["test"]
    folder = evaluate.scan(args.ood, classes, class_map)
    results = {}
    size = int(model.input_shape[1])  # image_size x input_scale
    for fit in FITS:
        test_images = decode_folder([dataset_dir / rel for rel, _ in test], size, fit)
        probabilities = scoring.keras_probabilities(model, test_images)
        test_scores = evaluate.score([cls for _, cls in test], probabilities.argmax(axis=1), classes)
        ood_images = decode_folder([folder.root / rel for rel, _ in folder.files], size, fit)
        ood_probabilities = scoring.keras_probabilities(model, ood_images)
        ood = evaluate.score([label for _, label in folder.files], ood_probabilities.argmax(axis=1), classes)
        results[fit] = {"test": {key: test_scores[key] for key in ("n", "accuracy", "macro_f1")},
                        "ood": evaluate.ood_block(folder.root.name, ood, folder.class_map, fit=fit),
                        "ood_predicted_share": dict(zip(classes, np.round(np.bincount(
                            ood_probabilities.argmax(axis=1), minlength=len(classes)) / ood["n"], 3).tolist()))}
    return results


def markdown(results: dict[str, Any]) -> str:
    settings_line = results["settings"]
    lines = [f"# Robustness ablation ({settings_line['kind']})", "",
             f"{settings_line['arch']}, {settings_line['image_size']} px"
             + (f" (input {settings_line['input_scale'] * settings_line['image_size']} px, averaged "
                f"{settings_line['input_scale']}x{settings_line['input_scale']} first)"
                if settings_line.get("input_scale", 1) > 1 else "")
             + f", {settings_line['epochs']} epochs, "
             f"seed {settings_line['seed']}, profile `{settings_line['profile']}` otherwise; "
             f"TrashNet test split ({settings_line['test_images']} images) and OOD-dev "
             f"`{settings_line['ood_dataset']}` ({settings_line['ood_images']} images, scored over 6 outputs). "
             "Squash fit unless the column says otherwise.", "",
             "| recipe | TrashNet test acc | test macro-F1 | OOD acc | OOD macro-F1 | OOD per-class recall | "
             "OOD acc crop / pad | train min |", "|---|---|---|---|---|---|---|---|"]
    order = [name for name in RECIPES if name in results["recipes"]]
    order += [name for name in results["recipes"] if name not in RECIPES]
    for name in order:
        row = results["recipes"][name]
        squash = row["fits"]["squash"]
        recall = ", ".join(f"{c} {100 * v['recall']:.0f}" for c, v in squash["ood"]["per_class"].items())
        other = " / ".join(f"{100 * row['fits'][f]['ood']['accuracy']:.1f}" for f in ("crop", "pad"))
        lines.append(f"| {name} | {100 * squash['test']['accuracy']:.1f} | {squash['test']['macro_f1']:.3f} | "
                     f"{100 * squash['ood']['accuracy']:.1f} | {squash['ood']['macro_f1']:.3f} | {recall} | "
                     f"{other} | {row['train_time_s'] / 60:.1f} |")
    lines += ["", "Augment options per recipe (over the profile's flips, rotation, zoom, brightness, contrast):", ""]
    lines += [f"- `{name}`: `{results['recipes'][name]['augment']}`" for name in order]
    lines += ["", "Train minutes are wall time under different loads (several trainings shared 2 cores), "
              "not a cost comparison."]
    return "\n".join(lines) + "\n"


def evaluate_saved(cfg, run_dir: Path, dataset_dir: Path, cache_dir: Path) -> None:
    """``metrics.json`` of a model that finished training but whose evaluation failed (a wrong $TRASHNET_OOD_DATA):
    the saved model evaluated as ``train.run_baseline`` would have, training time summed from history.csv."""
    import csv

    from trashnet.core.keras_env import keras
    from trashnet.data import inputs
    from trashnet.nets import scoring

    model_file = run_dir / f"{cfg.id}.keras"
    with open(run_dir / scoring.HISTORY_FILE, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    data = inputs.load_dataset(dataset_dir, cfg.model.input_size, cache_dir=cache_dir, fit=cfg.model.fit)
    scoring.write_keras_results(keras.models.load_model(model_file), data, cfg, run_dir, model_path=model_file,
                                dataset_dir=dataset_dir, train_time_s=sum(float(r["seconds"]) for r in rows),
                                extra={"training": {"epochs_run": len(rows), "evaluated": "after training, from "
                                                    "the saved model (the first evaluation failed)"}})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from trashnet.core.keras_env import tf  # noqa: F401 - the flavour switch, before anything else imports TF

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(max(2, args.threads))
    from trashnet.core import fileio, profiles, provenance
    from trashnet.data import prepare
    from trashnet.deploy import evaluate
    from trashnet.stages import train
    from trashnet.core.keras_env import keras

    work = Path(args.work)
    dataset_dir = work / "dataset"
    profile = profiles.load_profile(args.profile)
    if not (dataset_dir / "manifest.csv").is_file():
        prepare.prepare(args.data, dataset_dir, split=profile.data.split, seed=profile.data.seed)
    class_map = evaluate.load_class_map(args.class_map) if args.class_map else None
    out = Path(args.out)
    results: dict[str, Any] = fileio.read_json(out) if out.is_file() else {}
    results.setdefault("recipes", {})
    for name in args.recipes:
        augment = RECIPES[name]
        # Its own id, so that the profile's per-architecture overrides (epochs) do not apply.
        entry = {"id": f"{args.arch}.robust-{name}", "stage": "train", "arch": args.arch,
                 "model": {"image_size": args.image_size,
                           **({"input_scale": args.input_scale} if args.input_scale > 1 else {})},
                 "train": {"epochs": args.epochs, "augment": augment}}
        cfg = profiles.resolve_variant(profile, entry)
        scale = f"-x{args.input_scale}" if args.input_scale > 1 else ""
        run_dir = work / "models" / f"{args.arch}-{args.image_size}px{scale}-{args.epochs}ep" / name
        metrics_file = run_dir / "metrics.json"
        if not metrics_file.is_file() and (run_dir / f"{cfg.id}.keras").is_file() \
                and (run_dir / "history.csv").is_file():
            print(f"== {name}: trained already, evaluating the saved model", flush=True)
            evaluate_saved(cfg, run_dir, dataset_dir, work / ".cache")
        if not metrics_file.is_file():
            print(f"== {name}: training {args.arch} at {args.image_size} px (input {cfg.model.input_size} px) for "
                  f"{args.epochs} epochs", flush=True)
            train.run_baseline(cfg, dataset_dir=dataset_dir, output_dir=run_dir, cache_dir=work / ".cache")
        record = fileio.read_json(metrics_file)
        model = keras.models.load_model(run_dir / f"{cfg.id}.keras")
        start = time.perf_counter()
        fits = measure(model, args, dataset_dir, record["classes"], class_map)
        print(f"== {name}: test {fits['squash']['test']['accuracy']:.4f}, OOD {fits['squash']['ood']['accuracy']:.4f}"
              f" (measured in {time.perf_counter() - start:.0f} s)", flush=True)
        if out.is_file():  # another process of this script may have added recipes meanwhile
            results["recipes"] = {**fileio.read_json(out).get("recipes", {}), **results["recipes"]}
        results["recipes"][name] = {"augment": augment, "train_time_s": record["train_time_s"],
                                    "keras_test_accuracy": record["test"]["accuracy"], "fits": fits,
                                    "history": str(run_dir / "history.csv")}
        first = next(iter(results["recipes"].values()))["fits"]["squash"]
        results["settings"] = {
            "kind": "screening" if (args.arch, args.image_size) != ("mobilenet_v3_large", 128) else "full",
            "profile": args.profile, "arch": args.arch, "image_size": args.image_size, "epochs": args.epochs,
            **({"input_scale": args.input_scale} if args.input_scale > 1 else {}),
            "seed": profile.seed, "threads": args.threads, "test_images": first["test"]["n"],
            "ood_dataset": first["ood"]["dataset"], "ood_images": first["ood"]["n"]}
        results["provenance"] = provenance.collect(seed=profile.seed, profile=args.profile,
                                                   config={"recipes": {k: v for k, v in RECIPES.items()}},
                                                   data_manifest=dataset_dir / "manifest.csv")
        fileio.write_json(out, results)
        fileio.atomic_write_text(out.with_suffix(".md"), markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
