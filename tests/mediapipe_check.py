"""Classify images with MediaPipe Tasks' ImageClassifier: run in the venv of requirements-mediapipe.lock.

    python tests/mediapipe_check.py MODEL IMAGE...

Images are decoded as everywhere in the project (``trashnet.images.load_for_model``: Pillow, squashed to the
model's input size), so MediaPipe gets the same pixels as LiteRT and resizes nothing. Prints JSON: for each
image the scores by category name, and the MediaPipe version.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # trashnet.core.images: Pillow and NumPy only

import mediapipe as mp  # noqa: E402
from mediapipe.tasks.python import vision  # noqa: E402
from mediapipe.tasks.python.core.base_options import BaseOptions  # noqa: E402

from trashnet.core import images


def main(model: str, paths: list[str], size: int) -> int:
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=-1)
    results = {}
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for path in paths:
            array = images.load_for_model(path, size)
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=array))
            results[path] = {c.category_name: c.score for c in result.classifications[0].categories}
    print(json.dumps({"mediapipe": importlib.metadata.version("mediapipe"), "scores": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[3:], int(sys.argv[2])))
