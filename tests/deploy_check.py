"""The deployment check: run in an environment with only ai-edge-litert, NumPy and Pillow (no TensorFlow).

    python tests/deploy_check.py --final models/cpu/final --dataset dataset/cpu

Loads ``trashnet.tflite`` with its labels exactly as a deployment app would (``trashnet.deploy.predict``, which
imports nothing beyond those three libraries), re-evaluates it on the prepared test split and checks that
it reproduces the accuracy its model card reports, exactly. Prints a JSON summary; exit status 0 when every
check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's package, not installed

from trashnet.deploy import predict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--final", required=True, help="the models/<profile>/final folder")
    parser.add_argument("--dataset", required=True, help="the prepared dataset folder (manifest.csv)")
    args = parser.parse_args(argv)
    final = Path(args.final)
    card = json.loads((final / "model_card.json").read_text(encoding="utf-8"))
    model_file = final / card["model_file"]
    beside = predict.parse_labels((final / "labels.txt").read_text(encoding="utf-8"))
    embedded = predict.read_labels(model_file)
    evaluation = predict.evaluate_split(model_file, args.dataset, split="test")
    reported = card["metrics"]["test"]
    checks = {
        "tensorflow_absent": importlib.util.find_spec("tensorflow") is None,
        "no_training_stack_loaded": not ({"tensorflow", "tf_keras", "keras", "sklearn"} & set(sys.modules)),
        "embedded_labels_match_card": embedded == card["classes"],
        "labels_file_matches_card": beside == card["classes"],
        "no_unreadable_test_images": not evaluation["errors"],
        "same_test_size": evaluation["n"] == reported["n"],
        "accuracy_reproduced_exactly": evaluation["accuracy"] == reported["accuracy"],
    }
    versions = {name: importlib.metadata.version(name) for name in ("ai-edge-litert", "numpy", "pillow")}
    print(json.dumps({"checks": checks, "reported_accuracy": reported["accuracy"],
                      "reproduced_accuracy": evaluation["accuracy"], "n": evaluation["n"],
                      "python": sys.version.split()[0], "versions": versions}, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
