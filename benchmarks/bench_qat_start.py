"""Does QAT of the ImageNet MobileNetV3-Large learn? One short QAT run of a trained baseline, then its INT8 file.

In the ImageNet thesis run (profile ``cpu``) every QAT/PQAT variant of V3-Large (minimalistic, ``input_scale``
2) sat at loss ln 6 from its first epoch: tfmot's activation ranges start at [-6, 6] (the input pooling's raw
pixels and activations up to ~300 were clipped) and its depthwise kernels got one range for all channels
(the folded ImageNet kernels lost their small channels). ``stages.qat`` now calibrates the ranges on float
activations and quantizes depthwise kernels per channel. This runs ``qat.train`` (the stage's own code, the
profile's recipe with ``--epochs``) on ``--train`` training images spread over the split, converts to INT8
and scores the file in LiteRT on the whole test split, beside the float baseline.

    PYTHONPATH=$PWD python benchmarks/bench_qat_start.py --dataset RUN/dataset/cpu \\
        --model RUN/models/cpu/train/mobilenet_v3_large/mobilenet_v3_large.keras --out /tmp/bench_qat_start.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np

from trashnet.core import config as config_lib, profiles, tflite
from trashnet.core.keras_env import keras
from trashnet.data import inputs
from trashnet.nets import convert, models, scoring
from trashnet.stages import qat


def _spread(entries: list, count: int) -> list:
    return entries[::max(1, len(entries) // count)][:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--variant", default="mobilenet_v3_large.qat.int8")
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--validation", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    variant = config_lib.config_to_dict(profiles.load_variants(profiles.load_profile(args.profile))[args.variant])
    variant["quantize"]["qat"]["epochs"] = args.epochs
    cfg = config_lib.config_from_dict(variant)
    model = keras.models.load_model(args.model, compile=False)
    side = int(model.input_shape[1])
    classes, by_split = inputs.read_accepted(args.dataset)
    load = lambda entries: inputs._load_split(Path(args.dataset), entries, classes, side)  # noqa: E731
    data = inputs.Dataset(classes, load(_spread(by_split["train"], args.train)),
                          load(_spread(by_split["validation"], args.validation)), load(by_split["test"]),
                          side // models.input_scale(model), "subset")
    float_probabilities = scoring.keras_probabilities(model, data.test.images)
    qat_model, record = qat.train(model, data, cfg, check_images=data.test.images[:8], verbose=False)
    content = convert.convert(qat_model, "int8", representative=data.train.images[:4].astype(np.float32),
                              quantization_aware=True)
    int8_probabilities = tflite.TFLiteModel(content).predict(data.test.images)
    result = {"variant": args.variant, "method": cfg.quantize.qat.method, "epochs": args.epochs,
              "learning_rate": cfg.quantize.qat.learning_rate, "train_images": len(data.train),
              "validation_images": len(data.validation), "test_images": len(data.test),
              "float_test_accuracy": float((float_probabilities.argmax(1) == data.test.labels).mean()),
              "qat_int8_test_accuracy": float((int8_probabilities.argmax(1) == data.test.labels).mean()),
              "history": record["history"], "calibration": record["calibration"],
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    last = result["history"][-1]
    out.with_suffix(".md").write_text(
        "| variant | train images | epochs | last loss | float test acc | QAT INT8 test acc (LiteRT) |\n"
        "|---|---|---|---|---|---|\n"
        f"| {args.variant} | {len(data.train)} | {args.epochs} | {last['loss']:.3f} | "
        f"{result['float_test_accuracy']:.3f} | {result['qat_int8_test_accuracy']:.3f} |\n")
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
