"""Fine-tuning from imported ImageNet weights: BatchNorm frozen, or its statistics re-estimated first.

The TFLite files carry BatchNorm folded into the kernels, so every BatchNorm arrives as an identity
(mean 0, variance 1) whose statistics describe nothing. Two ways to fine-tune from there
(``train.finetune_batchnorm``):

- ``frozen``: BatchNorm stays in inference mode (the identity with the folded bias), only kernels train;
- ``reestimate``: each BatchNorm gets the mean/variance of its input on the training images (the model's
  function unchanged), then trains in training mode like any BatchNorm.

Both run the project's pretrained recipe (``train.run_baseline``: classifier on cached features, then the
whole model) from the same imported weights, the same seed, on TrashNet's official split; the recipe is the
profile's (default ``cpu``) with ``--epochs`` fine-tuning epochs. Writes one JSON file.

    TRASHNET_REAL_DATA=... TRASHNET_WEIGHTS=... [TRASHNET_OOD_DATA=...] \\
        PYTHONPATH=$PWD python benchmarks/bench_imagenet_bn.py --arch mobilenet_v1 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trashnet.core import config, fileio, profiles, provenance, settings
from trashnet.data import prepare
from trashnet.stages import train

MODES = ("frozen", "reestimate")


def variant(profile: str, arch: str, *, image_size: int, epochs: int, mode: str) -> config.VariantConfig:
    base = profiles.load_variants(profiles.load_profile(profile))[arch]
    values = config.config_to_dict(base)
    values["model"].update(image_size=image_size, weights="imagenet-tflite")
    values["train"].update(epochs=epochs, warmup_epochs=min(values["train"]["warmup_epochs"], 1),
                           finetune_batchnorm=mode)
    return config.config_from_dict(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenet_v1")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/results/bench_imagenet_bn_<arch>.json")
    args = parser.parse_args()
    out = args.out or REPO / "benchmarks" / "results" / f"bench_imagenet_bn_{args.arch}.json"
    source = os.environ.get(settings.ENV_REAL_DATA)
    if not source or not os.environ.get(settings.ENV_WEIGHTS):
        sys.exit(f"error: set ${settings.ENV_REAL_DATA} (TrashNet's dataset-resized) and ${settings.ENV_WEIGHTS}")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_imagenet_bn-"))
    os.environ[settings.ENV_OUT] = str(work / "out")  # the imported weights' cache
    dataset = work / "dataset"
    if not (dataset / settings.MANIFEST_NAME).is_file():
        prepare.prepare(source, dataset, split="official")
    runs = {}
    for mode in MODES:
        cfg = variant(args.profile, args.arch, image_size=args.image_size, epochs=args.epochs, mode=mode)
        start = time.perf_counter()
        record = train.run_baseline(cfg, dataset_dir=dataset, output_dir=work / mode, cache_dir=work / ".cache")
        history = [row for row in fileio.read_text(work / mode / "history.csv").splitlines()[1:]]
        runs[mode] = {
            "test_accuracy": record["test"]["accuracy"], "test_macro_f1": record["test"]["macro_f1"],
            "validation_accuracy": record["validation"]["accuracy"],
            "ood_accuracy": (record.get("ood") or {}).get("accuracy"),
            "seconds": round(time.perf_counter() - start, 1), "history_csv": history,
        }
        print(mode, {k: v for k, v in runs[mode].items() if k != "history_csv"}, flush=True)
    fileio.write_json(out, {
        "what": "fine-tuning from imported ImageNet TFLite weights: BatchNorm frozen vs re-estimated",
        "arch": args.arch, "profile": args.profile, "image_size": args.image_size, "finetune_epochs": args.epochs,
        "weights": record["weights"], "split": "official", "seed": cfg.seed,
        "config": config.config_to_dict(cfg), "runs": runs,
        "hardware": provenance.hardware(), "versions": provenance.library_versions(),
        "git_commit": provenance.git_commit()})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
