"""MediaPipe's answer on whole photos, and the OpenCV consumers' inputs: runs in MediaPipe's tool venv.

    python mediapipe_consumers.py MODEL SIZE OUT.npz IMAGE...

MediaPipe Tasks' ``ImageClassifier`` gets each whole photo as a Python app gives it: decoded to RGB with
Pillow (``trashnet.consumers.decode``), an ``mp.Image``; MediaPipe resizes it. Its scores go to ``OUT.npz`` as
``mediapipe`` (N, classes, columns in the order of ``mediapipe_labels``); ``mediapipe_file`` holds the scores
when MediaPipe decodes the file itself (``mp.Image.create_from_file``; NaN where its decoder gives a one-channel
image, which its classifier refuses: ``file_scores``; listed in the printed JSON). The inputs of the consumers that need OpenCV (``trashnet.consumers.OPENCV_RESIZERS``,
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


def file_scores(classifier: vision.ImageClassifier, path: str, refused: list[dict]) -> dict[str, float] | None:
    """MediaPipe's scores when it decodes the file itself; None, and the file in ``refused``, when it cannot.

    MediaPipe's decoder turns a grayscale JPEG into a one-channel image. Its classifier refuses that for a
    three-channel model ("TfLiteTensor and Tensor sizes do not match") and then stays broken for every later
    image; a broken classifier cannot even be closed ("Task runner is currently not running"), and its __del__
    can hang the process (see ``main``). So such an image is never given to it: refused here, with the reason."""
    image = mp.Image.create_from_file(path)
    if image.channels not in (3, 4):  # SRGB, SRGBA: what the classifier converts to the model's RGB input
        refused.append({"path": path, "error": f"MediaPipe decodes it to {mp.ImageFormat(image.image_format).name} "
                        f"({image.channels} channel): its ImageClassifier refuses that (TfLiteTensor and Tensor "
                        "sizes do not match) and stays broken, so it is not given the image"})
        return None
    return scores(classifier, image)


def main(model: str, size: int, out: str, paths: list[str]) -> int:
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=-1)
    create = vision.ImageClassifier.create_from_options
    arrays: dict[str, list[np.ndarray]] = {name: [] for name in consumers.OPENCV_RESIZERS}
    decoded, from_file, refused = [], [], []
    # Both classifiers are closed here, never by their __del__: a classifier sits in a reference cycle, and when the
    # cyclic GC finalizes one inside another's call, its close() submits to an executor while that thread already
    # holds concurrent.futures' global lock: the process hangs (it did, after the first refused file, on ood-dev).
    with create(options) as classifier, create(options) as file_classifier:
        for path in paths:
            photo = consumers.decode(path)
            decoded.append(scores(classifier, mp.Image(image_format=mp.ImageFormat.SRGB, data=np.asarray(photo))))
            from_file.append(file_scores(file_classifier, path, refused) or {name: np.nan for name in decoded[-1]})
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
