"""Training throughput and Keras inference latency per architecture, at a profile's input size.

For every architecture, two ways of training on the same data, batch size and input size, one after the
other in one process:

- ``project``: the project's path (``inputs.make_pipeline``: decoded once into a uint8 array, batch
  augmentation, one-hot + class weights) and ``train.fit``'s optimizer (AdamW, no decay on BN/bias, EMA);
- ``naive``: ``keras.utils.image_dataset_from_directory`` (decodes and resizes every JPEG every epoch) and
  the same augmentations as Keras preprocessing layers mapped over it, the usual tutorial pipeline.

Both use the same model, loss, optimizer (AdamW + EMA), class weights, batch and input size, so the
difference is the input pipeline alone.

Images/s is measured over ``--steps`` training steps after ``--warmup`` untimed ones (graph tracing). Then
the Keras inference latency (batch 1 and 32, median) of each architecture. Writes one JSON file.

    PYTHONPATH=$PWD python benchmarks/bench_train.py --profile cpu --steps 10
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

from trashnet.core import fileio, profiles, provenance, settings
from trashnet.data import inputs, prepare
from trashnet.nets import models, scoring
from trashnet.stages import train, training
from trashnet.core.keras_env import keras, seed_everything, tf  # noqa: E402


def timed_fit(model, dataset, *, steps: int, warmup: int, batch_size: int) -> dict[str, float]:
    """Images/s of ``model.fit`` on an endless dataset: ``warmup`` steps untimed, then ``steps`` timed."""
    dataset = dataset.repeat()
    model.fit(dataset, epochs=1, steps_per_epoch=warmup, verbose=0)
    start = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    seconds = time.perf_counter() - start
    return {"images_per_s": round(steps * batch_size / seconds, 2), "seconds": round(seconds, 3), "steps": steps}


def compiled_model(arch: str, cfg, num_classes: int, total_steps: int):
    seed_everything(cfg.seed)
    model = train.build(cfg.model_copy(update={"arch": arch}), num_classes)
    schedule = training.lr_schedule(cfg.train.learning_rate, total_steps=total_steps, warmup_steps=0)
    optimizer = training.make_optimizer(model, schedule, weight_decay=cfg.train.weight_decay, total_steps=total_steps,
                                     ema=cfg.train.ema)
    model.compile(optimizer=optimizer, loss=training.loss_function(cfg), metrics=["accuracy"])
    return model


def naive_pipeline(dataset_dir: Path, labels, cfg, num_classes: int):
    """JPEGs decoded per epoch + Keras augmentation layers: what most tutorials do."""
    size, augment = cfg.model.input_size, cfg.train.augment
    layers = keras.Sequential([
        keras.layers.RandomFlip("horizontal_and_vertical", seed=cfg.seed),
        keras.layers.RandomRotation(augment.rotation, fill_mode="reflect", seed=cfg.seed),
        keras.layers.RandomZoom(augment.zoom, fill_mode="reflect", seed=cfg.seed),
        keras.layers.RandomBrightness(augment.brightness, value_range=(0, 255), seed=cfg.seed),
        keras.layers.RandomContrast(augment.contrast, seed=cfg.seed),
    ])
    dataset = keras.utils.image_dataset_from_directory(
        dataset_dir / "train", image_size=(size, size), batch_size=cfg.train.batch_size, shuffle=True,
        seed=cfg.seed, label_mode="int")
    dataset = dataset.map(lambda x, y: (layers(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return training.with_targets(dataset, labels, num_classes, cfg.train.class_weights).prefetch(tf.data.AUTOTUNE)


def bench_arch(arch: str, cfg, dataset_dir: Path, split: inputs.Split, num_classes: int, *, steps: int,
               warmup: int, latency_runs: int) -> dict:
    size, batch = cfg.model.input_size, cfg.train.batch_size
    result: dict = {"arch": arch, "image_size": size, "batch_size": batch}
    total = steps + warmup
    model = compiled_model(arch, cfg, num_classes, total)
    result["project"] = timed_fit(model, training.training_pipeline(split, cfg, num_classes), steps=steps,
                                  warmup=warmup, batch_size=batch)
    result["latency_ms"] = scoring.keras_latency(model, size, runs=latency_runs, warmup=2)
    result["params"] = model.count_params()
    result["macs"] = models.count_macs(model)
    model = compiled_model(arch, cfg, num_classes, total)
    result["naive"] = timed_fit(model, naive_pipeline(dataset_dir, split.labels, cfg, num_classes), steps=steps,
                                warmup=warmup, batch_size=batch)
    result["speedup"] = round(result["project"]["images_per_s"] / result["naive"]["images_per_s"], 3)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu", help="profile whose image size, batch and recipe to use")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="a prepared dataset folder; default: the bundled sample, prepared to a temp folder")
    parser.add_argument("--arch", action="append", choices=list(models.REGISTRY), help="repeatable; default all")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing)")
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "bench_train.json")
    args = parser.parse_args(argv)

    profile = profiles.load_profile(args.profile)
    cfg = next(v for v in profiles.load_variants(profile).values() if v.stage == "train")
    with tempfile.TemporaryDirectory() as scratch:
        dataset_dir = args.dataset
        if dataset_dir is None:
            dataset_dir = Path(scratch) / "dataset"
            prepare.prepare(settings.SAMPLE_DIR, dataset_dir)
        loaded = inputs.load_dataset(dataset_dir, cfg.model.input_size)
        results = []
        for arch in args.arch or list(models.REGISTRY):
            print(f"{arch} ...", flush=True)
            row = bench_arch(arch, cfg, Path(dataset_dir), loaded.train, len(loaded.classes), steps=args.steps,
                             warmup=args.warmup, latency_runs=args.latency_runs)
            print(f"  project {row['project']['images_per_s']:.1f} img/s, naive {row['naive']['images_per_s']:.1f}"
                  f" img/s, latency b1 {row['latency_ms']['keras_batch1']['median']:.1f} ms", flush=True)
            results.append(row)
    epoch_images = len(loaded.train)
    for row in results:  # what one epoch of this training split costs at the measured speed
        row["project"]["epoch_s_estimate"] = round(epoch_images / row["project"]["images_per_s"], 1)
    record = {"benchmark": "train", "profile": profile.name, "dataset": str(args.dataset or "bundled sample"),
              "train_images": epoch_images, "steps": args.steps, "warmup": args.warmup,
              "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                          "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
              "load_average": [round(x, 2) for x in os.getloadavg()],
              "results": results, "provenance": provenance.collect(seed=cfg.seed, profile=profile.name)}
    fileio.write_json(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
