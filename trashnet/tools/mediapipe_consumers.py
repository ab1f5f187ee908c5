"""MediaPipe's answer on whole photos, and the OpenCV consumers' inputs: runs in MediaPipe's tool venv.

    python mediapipe_consumers.py MODEL SIZE OUT.npz IMAGE...

MediaPipe Tasks' ``ImageClassifier`` gets each whole photo as a Python app gives it: decoded to RGB with
Pillow (``trashnet.consumers.decode``), an ``mp.Image``; MediaPipe resizes it. Its scores go to ``OUT.npz`` as
``mediapipe`` (N, classes, columns in the order of ``mediapipe_labels``); ``mediapipe_file`` holds the scores
when MediaPipe decodes the file itself (``mp.Image.create_from_file``; NaN where it refuses the file, listed
in the printed JSON). The inputs of the consumers that need OpenCV (``trashnet.consumers.OPENCV_RESIZERS``,
OpenCV comes with MediaPipe's wheel) go there too, one uint8 (N, S, S, 3) array each, for LiteRT to run in
the main venv (``benchmarks/bench_parity.py``). Prints JSON: the MediaPipe and OpenCV versions, the refused files.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # trashnet.nets.consumers: NumPy and Pillow only

import cv2  # noqa: E402
import mediapipe as mp  # noqa: E402
import numpy as np  # noqa: E402
from mediapipe.tasks.python import vision  # noqa: E402
from mediapipe.tasks.python.core.base_options import BaseOptions  # noqa: E402

from trashnet.nets import consumers


def scores(classifier: vision.ImageClassifier, image: mp.Image) -> dict[str, float]:
    return {c.category_name: c.score for c in classifier.classify(image).classifications[0].categories}


def main(model: str, size: int, out: str, paths: list[str]) -> int:
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=-1)
    create = vision.ImageClassifier.create_from_options
    arrays: dict[str, list[np.ndarray]] = {name: [] for name in consumers.OPENCV_RESIZERS}
    decoded, from_file, refused = [], [], []
    classifier, file_classifier = create(options), create(options)
    for path in paths:
        photo = consumers.decode(path)
        decoded.append(scores(classifier, mp.Image(image_format=mp.ImageFormat.SRGB, data=np.asarray(photo))))
        try:  # MediaPipe's own decoder: a grayscale JPEG comes out with one channel, which the model refuses
            from_file.append(scores(file_classifier, mp.Image.create_from_file(path)))
        except ValueError as error:  # and the graph stays broken: start a new one
            refused.append({"path": path, "error": str(error).split(" failed: ")[-1].splitlines()[0][:240]})
            from_file.append({name: np.nan for name in decoded[-1]})
            file_classifier = create(options)
        for name in consumers.OPENCV_RESIZERS:
            arrays[name].append(consumers.RESIZERS[name](photo, size))
    labels = sorted(decoded[0]) if decoded else []
    np.savez(out, mediapipe=np.array([[s[name] for name in labels] for s in decoded], np.float32),
             mediapipe_file=np.array([[s[name] for name in labels] for s in from_file], np.float32),
             mediapipe_labels=np.array(labels), **{name: np.stack(a) for name, a in arrays.items() if a})
    print(json.dumps({"versions": {"mediapipe": importlib.metadata.version("mediapipe"), "opencv": cv2.__version__},
                      "refused": refused}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]))
