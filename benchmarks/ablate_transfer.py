"""Which transfer-learning recipe keeps ImageNet's advantage on photos that are not TrashNet's?

One model per recipe, trained on the full TrashNet (the authors' official split) from Google's ImageNet
weights (``model.weights: imagenet-tflite``) with the project's own training functions, measured on

- TrashNet's test split, and
- the out-of-distribution dev set (``$TRASHNET_OOD_DATA``, 355 photos of 4 classes, scored over the six
  outputs; a prediction of a class the set lacks counts as wrong).

The recipes (a deliberately small set, since choosing among many recipes on 355 photos overfits them too):

- ``head``: the linear-probe floor: dropout + dense on frozen, cached backbone features (``train.train_head``);
- ``ft``: plain fine-tuning of everything from the ImageNet backbone and a fresh head, BatchNorm frozen;
- ``lpft``: LP-FT (Kumar et al., ICLR 2022): the head first, then everything at a low learning rate,
  BatchNorm frozen (the imported BatchNorm is an identity over the folded bias: inference mode keeps it so);
- ``lpft-bn``: the same with BatchNorm trained, i.e. its statistics re-estimated from TrashNet batches;
- ``lpft-aug``: LP-FT with the crop/colour/background augmentations of the robustness ablation;
- ``lpft-160``, ``lpft-224``: LP-FT at other input sizes, for the accuracy and the cost per epoch;
- ``lpft-160-lastpoint``, ``lpft-224-lastpoint``, ``head-160-lastpoint``, ``head-224-lastpoint``: with
  ``model.head: last_point`` (the ImageNet head's pretrained 960 -> 1280 layer kept between pooling and
  classifier), each against its pooled twin (``lpft-160``, ``lpft-224``, ``head-160``, ``head-224``: the
  last two are the head alone at 160 px and at the 224 px of the issue's linear probe);
- ``wise``: WiSE-FT (Wortsman et al., CVPR 2022), the average of the ``lpft`` and ``head`` weights: free,
  computed from the ``lpft`` run.

The OOD set only measures: it never trains and never picks a checkpoint (last epoch, EMA weights).
Results are written after every recipe (``--out``: JSON and a Markdown table beside it); a rerun skips
recipes already in the file.

    TRASHNET_DATA=... TRASHNET_OOD_DATA=... TRASHNET_WEIGHTS=... PYTHONPATH=$PWD \\
        python benchmarks/ablate_transfer.py --work /tmp/transfer --arch mobilenet_v3_large_minimalistic
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

AUGMENT = {"crop_scale": [0.3, 2.0], "saturation": 0.4, "hue": 0.06, "background": 0.7}
# name -> (image size, head epochs, fine-tune epochs, BatchNorm, augment options)
RECIPES: dict[str, dict[str, Any]] = {
    "head": {"size": 128, "head_epochs": 10, "epochs": 0, "bn": "frozen", "augment": {}},
    "ft": {"size": 128, "head_epochs": 0, "epochs": 10, "bn": "frozen", "augment": {}},
    "lpft": {"size": 128, "head_epochs": 10, "epochs": 10, "bn": "frozen", "augment": {}},
    "lpft-bn": {"size": 128, "head_epochs": 10, "epochs": 10, "bn": "train", "augment": {}},
    "lpft-aug": {"size": 128, "head_epochs": 10, "epochs": 10, "bn": "frozen", "augment": AUGMENT},
    "lpft-160": {"size": 160, "head_epochs": 10, "epochs": 10, "bn": "frozen", "augment": {}},
    "lpft-224": {"size": 224, "head_epochs": 10, "epochs": 6, "bn": "frozen", "augment": {}},
    # model.head: last_point: the ImageNet head's pretrained 1x1 conv (960 -> 1280) kept after pooling
    "lpft-160-lastpoint": {"size": 160, "head_epochs": 10, "epochs": 10, "bn": "frozen", "augment": {},
                           "model_head": "last_point"},
    "lpft-224-lastpoint": {"size": 224, "head_epochs": 10, "epochs": 6, "bn": "frozen", "augment": {},
                           "model_head": "last_point"},
    "head-160": {"size": 160, "head_epochs": 10, "epochs": 0, "bn": "frozen", "augment": {}},  # its control
    # The size of the linear probe (docs/transfer-learning.md) that scored 45.1 % on the 1280-d features:
    "head-224": {"size": 224, "head_epochs": 10, "epochs": 0, "bn": "frozen", "augment": {}},
    "head-224-lastpoint": {"size": 224, "head_epochs": 10, "epochs": 0, "bn": "frozen", "augment": {},
                           "model_head": "last_point"},
    "head-160-lastpoint": {"size": 160, "head_epochs": 10, "epochs": 0, "bn": "frozen", "augment": {},
                           "model_head": "last_point"},
}
WISE_ALPHA = 0.5  # weight of the fine-tuned model in the WiSE-FT average


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("TRASHNET_DATA"), help="TrashNet <class>/<image> folder")
    parser.add_argument("--ood", default=os.environ.get("TRASHNET_OOD_DATA"), help="labelled OOD folder")
    parser.add_argument("--work", required=True, help="scratch folder: prepared data, caches")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--arch", default="mobilenet_v3_large_minimalistic")
    parser.add_argument("--weights", default="imagenet-tflite", help="model.weights value")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ablate_transfer.json"))
    args = parser.parse_args(argv)
    if not args.data or not args.ood:
        parser.error("give --data and --ood (or set $TRASHNET_DATA and $TRASHNET_OOD_DATA)")
    return args


def measure(model, dataset_dir: Path, ood: Path, classes: list[str], size: int, fit: str) -> dict[str, Any]:
    """Accuracy and macro-F1 of a Keras model on the TrashNet test split and the OOD folder."""
    import numpy as np

    from trashnet.nets import scoring
    from trashnet.deploy import evaluate
    from trashnet.core import images
    from trashnet.data import inputs

    _, by_split = inputs.read_accepted(dataset_dir)
    test = by_split["test"]
    folder = evaluate.scan(ood, classes)
    out = {}
    for name, root, files in (("test", dataset_dir, test), ("ood", folder.root, folder.files)):
        pixels = np.stack([images.load_for_model(root / rel, size, fit) for rel, _ in files])
        predicted = scoring.keras_probabilities(model, pixels).argmax(axis=1)
        scored = evaluate.score([label for _, label in files], predicted, classes)
        out[name] = {key: scored[key] for key in ("n", "accuracy", "macro_f1")}
        if name == "ood":
            block = evaluate.ood_block(folder.root.name, scored, folder.class_map, fit=fit)
            out[name]["per_class_recall"] = {c: round(v["recall"], 4) for c, v in block["per_class"].items()}
    return out


def run_recipe(name: str, recipe: dict[str, Any], args, profile, dataset_dir: Path, work: Path) -> dict[str, Any]:
    from trashnet.core import profiles
    from trashnet.data import inputs
    from trashnet.stages import train, training
    from trashnet.core.keras_env import keras, seed_everything

    entry = {"id": f"{args.arch}.transfer-{name}", "stage": "train", "arch": args.arch,
             "model": {"image_size": recipe["size"], "weights": args.weights,
                       "head": recipe.get("model_head", "pooled")},
             "train": {"epochs": max(1, recipe["epochs"]), "head_epochs": recipe["head_epochs"],
                       "augment": recipe["augment"]}}
    cfg = profiles.resolve_variant(profile, entry)
    seed_everything(cfg.seed)
    data = inputs.load_dataset(dataset_dir, cfg.model.input_size, cache_dir=work / ".cache", fit=cfg.model.fit)
    classes = list(data.classes)
    model = train.build(cfg, len(classes))
    result: dict[str, Any] = {"recipe": recipe, "arch": args.arch, "weights": args.weights}
    start = time.perf_counter()
    if recipe["head_epochs"]:
        train.train_head(model, data, cfg, cache_dir=work / ".cache", mixed=False)
    result["head_time_s"] = round(time.perf_counter() - start, 1)
    head_weights = [w.copy() for w in model.get_weights()]
    if recipe["epochs"]:
        if recipe["bn"] == "frozen":
            train.freeze_batchnorm(model)
        rows, _ = training.fit_model(model, data, cfg, phase="finetune", peak_lr=cfg.train.finetune_learning_rate,
                                  epochs=recipe["epochs"], strategy=training.distribution_strategy())
        seconds = [row["seconds"] for row in rows if row["seconds"] is not None]
        result["seconds_per_epoch"] = round(sorted(seconds)[len(seconds) // 2], 1) if seconds else None
        result["history"] = [{k: row[k] for k in ("epoch", "loss", "accuracy", "val_accuracy")} for row in rows]
    result["train_time_s"] = round(time.perf_counter() - start, 1)
    result["scores"] = measure(model, dataset_dir, Path(args.ood), classes, recipe["size"], cfg.model.fit)
    if name == "lpft":  # WiSE-FT from the same run: no training
        tuned = model.get_weights()
        model.set_weights([WISE_ALPHA * t + (1 - WISE_ALPHA) * h for t, h in zip(tuned, head_weights)])
        result["wise"] = {"alpha": WISE_ALPHA,
                          "scores": measure(model, dataset_dir, Path(args.ood), classes, recipe["size"],
                                            cfg.model.fit)}
    keras.backend.clear_session()
    return result


def markdown(results: dict[str, Any]) -> str:
    lines = ["# Transfer-learning recipes on TrashNet, measured on ood-dev", "",
             f"{results['settings']['arch']} from `{results['settings']['weights']}`, seed {results['settings']['seed']}, "
             f"profile `{results['settings']['profile']}` otherwise (AdamW, cosine, label smoothing, EMA, last "
             f"epoch); TrashNet official test split and ood-dev (355 photos, 4 classes, scored over 6 outputs). "
             f"Machine: {results['settings']['machine']}.", "",
             "| recipe | px | head ep | FT ep | BN | TrashNet test acc | macro-F1 | ood-dev acc | ood macro-F1 | "
             "ood recall per class | s/epoch (FT) | train min |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in results["recipes"].items():
        entries = [(name, row["scores"])] + ([("wise (lpft+head)", row["wise"]["scores"])] if "wise" in row else [])
        for label, scores in entries:
            recipe = row["recipe"]
            recall = ", ".join(f"{c} {100 * v:.0f}" for c, v in scores["ood"]["per_class_recall"].items())
            lines.append(f"| {label} | {recipe['size']} | {recipe['head_epochs']} | {recipe['epochs']} | "
                         f"{recipe['bn']} | {100 * scores['test']['accuracy']:.2f} | {scores['test']['macro_f1']:.3f}"
                         f" | {100 * scores['ood']['accuracy']:.2f} | {scores['ood']['macro_f1']:.3f} | {recall} | "
                         f"{row.get('seconds_per_epoch') or '-'} | {row['train_time_s'] / 60:.1f} |")
    lines += ["", f"Recipes compared on ood-dev: {len(results['recipes']) + sum('wise' in r for r in results['recipes'].values())}."
              " Train minutes are wall time on a shared machine (other work ran beside it): compare the seconds "
              "per epoch only within one row's size, and take costs from the timing benchmarks."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from trashnet.core.keras_env import tf  # noqa: F401 - the flavour switch, before anything else imports TF

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    from trashnet.core import fileio, profiles, provenance
    from trashnet.data import prepare

    work = Path(args.work)
    dataset_dir = work / "dataset"
    profile = profiles.load_profile(args.profile)
    if not (dataset_dir / "manifest.csv").is_file():
        prepare.prepare(args.data, dataset_dir, split=profile.data.split, seed=profile.data.seed)
    out = Path(args.out)
    for name in args.recipes:
        results: dict[str, Any] = fileio.read_json(out) if out.is_file() else {"recipes": {}}
        if name in results["recipes"]:
            continue
        print(f"== {name}: {RECIPES[name]}", flush=True)
        row = run_recipe(name, RECIPES[name], args, profile, dataset_dir, work)
        print(f"== {name}: test {row['scores']['test']['accuracy']:.4f}, ood {row['scores']['ood']['accuracy']:.4f}",
              flush=True)
        results = fileio.read_json(out) if out.is_file() else {"recipes": {}}
        results["recipes"][name] = row
        results["settings"] = {"arch": args.arch, "weights": args.weights, "profile": args.profile,
                               "seed": profile.seed, "threads": args.threads,
                               "machine": f"{os.cpu_count()} cores, {provenance.cpu_model()}"}
        results["provenance"] = provenance.collect(seed=profile.seed, profile=args.profile,
                                                   config={"recipes": RECIPES},
                                                   data_manifest=dataset_dir / "manifest.csv")
        fileio.write_json(out, results)
        fileio.atomic_write_text(out.with_suffix(".md"), markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
