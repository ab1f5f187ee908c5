"""How apps that load the model turn a whole photo into its input: one function per consumer, shared by
``benchmarks/bench_parity.py``, the tests and the model card (docs/deployment-parity.md says why each matters).

Every function takes the decoded, upright 8-bit RGB photo at full resolution (``decode``) and returns the
(size, size, 3) model input, RGB in [0, 255]. Only ``predict`` decodes the file itself: it is the project's own
path (``images.load_for_model``: JPEG draft decoding, then Pillow's bilinear filter, which widens with the
scale factor, i.e. antialiases). The others resize the full photo as the named library does by default:

- ``mediapipe``: MediaPipe Tasks' CPU ``ImageToTensorCalculator`` (``image_to_tensor_converter_opencv.cc``):
  an OpenCV warp from the photo's corners to the tensor's corners, ``INTER_LINEAR``, border replicate.
  Bilinear from the 4 nearest pixels, no antialiasing, corners aligned (not pixel centres).
  The real MediaPipe is run by the benchmark in its own venv; this emulation is checked against it there.
- ``pillow_bicubic`` / ``pillow_bilinear``: ``Image.resize`` (bicubic is its default), both antialiased.
- ``opencv_linear`` / ``opencv_area``: ``cv2.resize``; ``INTER_LINEAR`` (OpenCV's default) does not
  antialias, ``INTER_AREA`` averages every source pixel.
- ``tf_bilinear``: ``tf.image.resize(..., "bilinear")``, ``antialias=False`` (its default); float output.

OpenCV and TensorFlow are imported inside the functions that need them: this module needs only NumPy and
Pillow, so it also runs in MediaPipe's tool venv (OpenCV there, no TensorFlow) and beside ``predict``.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
from PIL import Image

from trashnet.core import images

PREDICT = "predict"
MEDIAPIPE = "mediapipe"


def decode(path: str | os.PathLike) -> Image.Image:
    """The whole photo as an app holds it: full resolution, EXIF orientation applied, 8-bit RGB."""
    image, _ = images.open_rgb(path)
    return image


def predict_input(path: str | os.PathLike, size: int, fit: str = images.DEFAULT_FIT) -> np.ndarray:
    """The project's own path (``python -m trashnet predict``), from the file; ``fit`` as the model's metadata
    says (the other consumers squash the whole photo whatever the model was trained with)."""
    return images.load_for_model(path, size, fit)


def pillow(image: Image.Image, size: int, resample: Image.Resampling | None = None) -> np.ndarray:
    """``Image.resize((size, size))``; ``resample=None`` is Pillow's default (bicubic for RGB)."""
    resized = image.resize((size, size)) if resample is None else image.resize((size, size), resample)
    return np.asarray(resized, dtype=np.uint8)


def opencv(image: Image.Image, size: int, interpolation: int | None = None) -> np.ndarray:
    """``cv2.resize`` of the RGB array; ``interpolation=None`` is OpenCV's default, ``INTER_LINEAR``."""
    import cv2

    array = np.asarray(image, dtype=np.uint8)
    if interpolation is None:
        return cv2.resize(array, (size, size))
    return cv2.resize(array, (size, size), interpolation=interpolation)


def mediapipe_emulated(image: Image.Image, size: int) -> np.ndarray:
    """MediaPipe's CPU resize of the whole photo (no region of interest, no aspect ratio kept): the photo's
    corners mapped onto the tensor's corners, bilinear from the 4 nearest pixels, border replicate.

    The published source calls ``cv2.warpPerspective`` with that mapping; the mediapipe 1.2.3 wheel gives
    bit for bit OpenCV's classic fixed-point ``warpAffine`` (``_fixed_point_warp``; checked on real photos at
    128 and 320 px: tests/test_consumers.py). The ``cv2.warpAffine`` of the OpenCV wheel beside it (5.x) computes
    source coordinates in floating point instead: the same wherever they fall on the 1/32-pixel grid (a 384x512
    photo to 128 px: factors 3 and 4), one grey level off on ~4 % of pixels elsewhere (to 320 px: 1.2 and 1.6)."""
    array = np.asarray(image, dtype=np.uint8)
    height, width = array.shape[:2]
    scale = np.array([[size / width, 0.0, 0.0], [0.0, size / height, 0.0]])  # corner (0, 0) and (w, h) to (S, S)
    return _fixed_point_warp(array, scale, size)


def _fixed_point_warp(array: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """``cv2.warpAffine(array, matrix, (size, size), INTER_LINEAR, BORDER_REPLICATE)`` as OpenCV 4 computes it
    (imgwarp.cpp ``WarpAffineInvoker``): each output pixel's source position in 1/1024 px (``cvRound``, half to
    even), cut to 1/32 px, then OpenCV's fixed-point bilinear tables (``cv2.remap`` with 16-bit maps)."""
    import cv2

    inverse = cv2.invertAffineTransform(matrix)
    ab_bits, tab_bits = 10, 5  # AB_BITS, INTER_BITS
    ab_scale, index = 1 << ab_bits, np.arange(size, dtype=np.float64)
    round_delta = ab_scale >> tab_bits >> 1  # half a 1/32 step: the cut rounds
    column_x = np.rint(inverse[0, 0] * index * ab_scale).astype(np.int64)
    column_y = np.rint(inverse[1, 0] * index * ab_scale).astype(np.int64)
    row_x = np.rint((inverse[0, 1] * index + inverse[0, 2]) * ab_scale).astype(np.int64) + round_delta
    row_y = np.rint((inverse[1, 1] * index + inverse[1, 2]) * ab_scale).astype(np.int64) + round_delta
    source_x = (row_x[:, None] + column_x[None, :]) >> (ab_bits - tab_bits)  # in 1/32 px
    source_y = (row_y[:, None] + column_y[None, :]) >> (ab_bits - tab_bits)
    whole = np.stack([source_x >> tab_bits, source_y >> tab_bits], -1).astype(np.int16)
    fraction = ((source_y & 31) << tab_bits | (source_x & 31)).astype(np.uint16)
    return cv2.remap(array, whole, fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def tf_bilinear(image: Image.Image, size: int) -> np.ndarray:
    """``tf.image.resize(photo, (size, size))``: bilinear, no antialiasing, float32 (not rounded)."""
    from trashnet.core.keras_env import tf  # the one place that imports TensorFlow

    return tf.image.resize(np.asarray(image, dtype=np.uint8)[None], (size, size), method="bilinear",
                           antialias=False)[0].numpy()


def _cv2_flag(name: str) -> Callable[[Image.Image, int], np.ndarray]:
    def resize(image: Image.Image, size: int) -> np.ndarray:
        import cv2

        return opencv(image, size, getattr(cv2, name))
    return resize


# Consumer name -> resize of the decoded photo. ``predict`` (from the file) and real MediaPipe (in its own venv)
# are not in it; ``mediapipe_emulated`` stands for MediaPipe wherever its venv is not at hand.
RESIZERS: dict[str, Callable[[Image.Image, int], np.ndarray]] = {
    "pillow_bicubic": lambda image, size: pillow(image, size),
    "pillow_bilinear": lambda image, size: pillow(image, size, Image.Resampling.BILINEAR),
    "opencv_linear": lambda image, size: opencv(image, size),
    "opencv_area": _cv2_flag("INTER_AREA"),
    "tf_bilinear": tf_bilinear,
    "mediapipe_emulated": mediapipe_emulated,
}
OPENCV_RESIZERS = ("opencv_linear", "opencv_area", "mediapipe_emulated")  # need cv2 (MediaPipe's venv has it)
# Every consumer the parity benchmark measures, in the order its tables show them.
CONSUMERS = (PREDICT, MEDIAPIPE, "mediapipe_emulated", "pillow_bicubic", "pillow_bilinear", "opencv_linear",
             "opencv_area", "tf_bilinear")
