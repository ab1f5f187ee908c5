"""How much of a pretrained network's accuracy does 2:4 pruning keep, by recovery recipe?

In the ImageNet thesis run (profile ``cpu``) the 2:4-pruned MobileNetV3-Large (minimalistic) with
distillation fell from 92.3 % to 86.7 % on TrashNet's test split and from 34.4 % to 27.3 % on ood-dev,
with its training accuracy still rising after 8 epochs. This prunes that run's dense baseline again with the
project's own pruning stage (``stages.prune.run_pruning``: tfmot 2:4, BatchNorm kept frozen, the dense
source as teacher), once per recipe, changing only the ``prune`` block of the variant:

- ``d8``: the thesis run's recipe (8 epochs at 5e-4, distillation T 4, alpha 0.5), measured again here;
- ``d16``: twice the recovery epochs;
- ``d16-a09``: twice the epochs, and the loss 90 % the teacher's softened outputs (alpha 0.9): the pruned
  net is pulled toward the pretrained network's answers rather than TrashNet's labels.

ood-dev only measures (``$TRASHNET_OOD_DATA``, scored by the stage like every variant); it never picks a
checkpoint (last epoch, EMA off in pruning as in the stage). Results are written after every recipe
(``--out``: JSON and a Markdown table beside it); a rerun skips recipes already in the file.

    TRASHNET_OOD_DATA=... TRASHNET_WEIGHTS=... PYTHONPATH=$PWD python benchmarks/ablate_prune.py \\
        --dataset RUN/dataset/cpu --source RUN/models/cpu/train/mobilenet_v3_large --work /tmp/ablate-prune
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

VARIANT = "mobilenet_v3_large.prune-2of4-distill"
# name -> the variant's prune block over the profile's (epochs, learning rate, distillation alpha)
RECIPES: dict[str, dict[str, Any]] = {
    "d8": {"epochs": 8, "learning_rate": 5e-4, "alpha": 0.5},
    "d16": {"epochs": 16, "learning_rate": 5e-4, "alpha": 0.5},
    "d16-a09": {"epochs": 16, "learning_rate": 5e-4, "alpha": 0.9},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="a prepared data set (a run's dataset/<profile>/)")
    parser.add_argument("--source", required=True, help="the dense baseline's result folder (its .keras and "
                        "metrics.json), from a finished run of --profile")
    parser.add_argument("--work", required=True, help="scratch folder: one result folder per recipe, caches")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ablate_prune.json"))
    return parser.parse_args(argv)


def recipe_config(variant, recipe: dict[str, Any]):
    """The thesis profile's variant with only its prune block changed."""
    distill = variant.prune.distill.model_copy(update={"alpha": recipe["alpha"]})
    prune = variant.prune.model_copy(update={"epochs": recipe["epochs"], "learning_rate": recipe["learning_rate"],
                                             "distill": distill})
    return variant.model_copy(update={"prune": prune})


def summarise(record: dict[str, Any], history: list[dict[str, str]], seconds: float) -> dict[str, Any]:
    ood = record.get("ood") or {}
    per_epoch = [float(row["seconds"]) for row in history if row.get("seconds")]
    return {
        "test": {"accuracy": record["test"]["accuracy"], "macro_f1": record["test"]["macro_f1"]},
        "ood": {"accuracy": ood.get("accuracy"), "macro_f1": ood.get("macro_f1"),
                "per_class_recall": {c: round(v["recall"], 4) for c, v in (ood.get("per_class") or {}).items()}},
        "dense_delta_pp": (record.get("dense_baseline") or {}).get("accuracy_delta_pp"),
        "train_accuracy_by_epoch": [round(float(row["accuracy"]), 4) for row in history if row.get("accuracy")],
        "val_accuracy_by_epoch": [round(float(row["val_accuracy"]), 4) for row in history if row.get("val_accuracy")],
        "seconds_per_epoch": sorted(per_epoch)[len(per_epoch) // 2] if per_epoch else None,
        "stage_minutes": round(seconds / 60, 1),
    }


def markdown(results: dict[str, Any]) -> str:
    settings = results["settings"]
    lines = ["# 2:4 pruning of the ImageNet MobileNetV3-Large: recovery recipes", "",
             f"`{VARIANT}` of profile `{settings['profile']}` (2:4 with distillation from the dense source, "
             f"BatchNorm frozen), its `prune` block changed only; the dense source is the thesis run's baseline "
             f"({_pct(settings['dense_test'])} on TrashNet test, {_pct(settings['dense_ood'])} on ood-dev). "
             f"Machine: {settings['machine']}.", "",
             "| recipe | epochs | LR | alpha | TrashNet test | macro-F1 | ood-dev | ood recall per class | "
             "train / val acc, last epoch | s/epoch |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in results["recipes"].items():
        recipe, scores = row["recipe"], row["scores"]
        recall = ", ".join(f"{c} {100 * v:.0f}" for c, v in scores["ood"]["per_class_recall"].items())
        tail = f"{100 * scores['train_accuracy_by_epoch'][-1]:.1f} / {100 * scores['val_accuracy_by_epoch'][-1]:.1f}"
        lines.append(f"| {name} | {recipe['epochs']} | {recipe['learning_rate']:g} | {recipe['alpha']} | "
                     f"{_pct(scores['test']['accuracy'])} | {scores['test']['macro_f1']:.3f} | "
                     f"{_pct(scores['ood']['accuracy'])} | {recall} | {tail} | {scores['seconds_per_epoch'] or '-'} |")
    lines += ["", f"Recipes compared on ood-dev: {len(results['recipes'])}. Seconds per epoch are wall time on a "
              "shared machine (other work ran beside it): not a cost measurement."]
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from trashnet.core.keras_env import tf  # noqa: F401 - the flavour switch, before anything else imports TF

    import csv

    from trashnet.core import fileio, profiles, provenance, records
    from trashnet.stages import prune

    source, work, out = Path(args.source), Path(args.work), Path(args.out)
    variant = profiles.load_variants(profiles.load_profile(args.profile))[VARIANT]
    dense = records.read_metrics(source).dump()
    for name in args.recipes:
        results: dict[str, Any] = fileio.read_json(out) if out.is_file() else {"recipes": {}}
        results["settings"] = {"profile": args.profile, "variant": VARIANT, "seed": variant.seed,
                               "dense_test": dense["test"]["accuracy"],
                               "dense_ood": (dense.get("ood") or {}).get("accuracy"),
                               "machine": f"{os.cpu_count()} cores, {provenance.cpu_model()}, "
                                          f"load {os.getloadavg()[0]:.1f} at the start of the last recipe"}
        results["provenance"] = provenance.collect(seed=variant.seed, profile=args.profile, config={"recipes": RECIPES},
                                                   data_manifest=Path(args.dataset) / "manifest.csv")
        if name in results["recipes"]:
            continue
        print(f"== {name}: {RECIPES[name]}", flush=True)
        output = work / name
        start = time.perf_counter()
        record = prune.run_pruning(recipe_config(variant, RECIPES[name]), dataset_dir=args.dataset,
                                   source_dir=source, output_dir=output, cache_dir=work / ".cache", verbose=False)
        with open(output / "history.csv", newline="") as handle:
            history = list(csv.DictReader(handle))
        results["recipes"][name] = {"recipe": RECIPES[name],
                                    "scores": summarise(record, history, time.perf_counter() - start)}
        fileio.write_json(out, results)
        out.with_suffix(".md").write_text(markdown(results), encoding="utf-8")
        scores = results["recipes"][name]["scores"]
        print(f"== {name}: test {scores['test']['accuracy']:.4f}, ood {scores['ood']['accuracy']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
