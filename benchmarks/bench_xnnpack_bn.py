"""Why MobileNetV3-Large pruned for XNNPack (75 %) fell to chance, and whether the fix brings it back.

The XNNPack layout is rebuilt from Keras' MobileNetV3 code, whose BatchNormalization layers use momentum
0.999, and the trained weights are copied into it by name. The profiles train with momentum 0.99, so the
pruning fine-tune ran at 0.999: after 560 steps 57 % of the dense model's moving statistics were still
in them (0.999^560) while pruning changed every 1x1 conv's output. Training accuracy stayed ~69 %,
validation fell to 26 %. ``xnnpack.transfer_weights`` now copies the momentum too.

This script runs the real pruning stage (``prune.run_pruning``, the cpu profile's
``mobilenet_v3_large.prune-xnnpack-75`` settings) on a trained dense MobileNetV3-Large, once per arm:

- ``fixed``: the code as it is (the source's momentum);
- ``old``: momentum reset to Keras' 0.999 after the transfer (the defect, reproduced).

Not a test (minutes per arm on 2 cores). It writes ``benchmarks/results/bench_xnnpack_bn.json``::

    PYTHONPATH=$PWD python benchmarks/bench_xnnpack_bn.py --data /path/to/dataset-resized \\
        --source-dir models/cpu/train/mobilenet_v3_large --out /tmp/xnnpack-bn [--arms fixed,old]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANT = "mobilenet_v3_large.prune-xnnpack-75"


def run_arm(arm: str, *, data: Path, source_dir: Path, out: Path) -> dict:
    from trashnet.core import profiles
    from trashnet.nets import xnnpack
    from trashnet.stages import prune
    from trashnet.core.keras_env import keras

    cfg = profiles.load_variants(profiles.load_profile("cpu"))[VARIANT]
    original = xnnpack.transfer_weights

    def transfer_at_keras_momentum(source, target):
        copied = original(source, target)
        for layer in target.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.999
        return copied

    xnnpack.transfer_weights = transfer_at_keras_momentum if arm == "old" else original
    try:
        start = time.perf_counter()
        record = prune.run_pruning(cfg, dataset_dir=data, source_dir=source_dir, output_dir=out / arm,
                                   cache_dir=out / ".cache", verbose=False)
    finally:
        xnnpack.transfer_weights = original
    with (out / arm / "history.csv").open() as f:
        history = [{key: row[key] for key in ("epoch", "accuracy", "val_accuracy")} for row in csv.DictReader(f)]
    return {"test_accuracy": record["test"]["accuracy"], "test_macro_f1": record["test"]["macro_f1"],
            "validation_accuracy": record["validation"]["accuracy"],
            "dense_accuracy": record["dense_baseline"]["dense_accuracy"],
            "delta_pp": record["dense_baseline"]["accuracy_delta_pp"],
            "pruned_kernel_sparsity": record["sparsity"]["total"]["pruned_kernels"]["sparsity"],
            "history": history,
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--source-dir", type=Path, required=True,
                        help="folder with mobilenet_v3_large.keras and its metrics.json")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arms", default="fixed", help="comma-separated: fixed, old")
    args = parser.parse_args()

    from trashnet.core import fileio, provenance

    source = args.source_dir / "mobilenet_v3_large.keras"
    result = {"what": f"{VARIANT} (cpu profile settings) pruned from the dense model below, per arm",
              "source_model_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
              "arms": {arm: run_arm(arm, data=args.data, source_dir=args.source_dir, out=args.out)
                       for arm in args.arms.split(",")},
              "load_average_at_end": os.getloadavg(), "hardware": provenance.hardware()}
    fileio.write_json(REPO / "benchmarks" / "results" / "bench_xnnpack_bn.json", result)
    for arm, entry in result["arms"].items():
        print(f"{arm}: test {entry['test_accuracy']:.2%} (dense {entry['dense_accuracy']:.2%}), "
              f"{entry['seconds']:.0f} s")


if __name__ == "__main__":
    main()
