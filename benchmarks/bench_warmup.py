"""How well the machine check's warm-up (trashnet/runner/machine.py) predicts a real training epoch.

For each architecture, in one process, one after the other: ``train.warmup_epoch_seconds`` (the timed
training steps on one random batch that ``run`` does before a long run, scaled to an epoch), then a real
``training.fit_model`` of ``--epochs`` epochs with the profile's recipe on a prepared data set, whose per-epoch
seconds (the ones the kernel reports to the progress line) are compared with it: the ratio real / warm-up,
median over the epochs after the first (which also traces the graph). Run it on an idle machine to learn a
correction; under changing load it shows how rough the warm-up is.

    TF_NUM_INTRAOP_THREADS=1 PYTHONPATH=$PWD python benchmarks/bench_warmup.py \\
        --data $TRASHNET_REAL_DATA --arch mobilenet_v1 --arch mobilenet_v3_small
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trashnet.core import fileio, profiles, provenance
from trashnet.data import inputs, prepare
from trashnet.runner import machine
from trashnet.nets import models
from trashnet.stages import train, training
from trashnet.core.keras_env import keras  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a <class>/<image> folder (the full TrashNet)")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--arch", action="append", choices=list(models.REGISTRY), help="repeatable")
    parser.add_argument("--epochs", type=int, default=3, help="real epochs per architecture (the first traces)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "warmup_cpu.json")
    args = parser.parse_args(argv)

    profile = profiles.load_profile(args.profile)
    variants = profiles.load_variants(profile)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        dataset_dir = Path(scratch) / "dataset"
        prepare.prepare(args.data, dataset_dir, split=profile.data.split, seed=profile.data.seed)
        for arch in args.arch or ["mobilenet_v1"]:
            cfg = variants[arch]
            loaded = inputs.load_dataset(dataset_dir, cfg.model.image_size, fit=cfg.model.fit)
            predicted = train.warmup_epoch_seconds(cfg, len(loaded.train))
            keras.backend.clear_session()
            model = train.build(cfg, len(loaded.classes))
            history, _ = training.fit_model(model, loaded, cfg, phase="scratch", peak_lr=cfg.train.learning_rate,
                                         epochs=args.epochs, strategy=training.distribution_strategy(), verbose=False)
            seconds = [row["seconds"] for row in history]
            later = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
            row = {"arch": arch, "image_size": cfg.model.image_size, "train_images": len(loaded.train),
                   "warmup_epoch_s": round(predicted, 2), "epoch_s": seconds,
                   "ratio_real_over_warmup": round(later / predicted, 3)}
            print(row, flush=True)
            rows.append(row)
            keras.backend.clear_session()
    record = {"benchmark": "warmup", "profile": profile.name, "machine": machine.describe(),
              "intra_op_threads": os.environ.get("TF_NUM_INTRAOP_THREADS", "default"),
              "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "epoch_over_steps_median": round(statistics.median(r["ratio_real_over_warmup"] for r in rows), 3),
              "results": rows, "provenance": provenance.collect(profile=profile.name)}
    fileio.write_json(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
