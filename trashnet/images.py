"""Photo decoding shared by data preparation, training and deployment: Pillow and NumPy only.

Training, evaluation and ``predict`` all turn a file into a model input with ``load_for_model``, so the
deployed TFLite file sees exactly the pixels the model was trained and evaluated on. TrashNet's 384x512
portrait photos are *squashed* to the square input (resized without cropping or padding): nothing of the
object is cut off, and the same 4:3 distortion is applied everywhere.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Refuse decompression bombs before decoding: 40 megapixels is ~8x a modern phone photo's
# need for a 224 px model, and decodes to 120 MB of RGB.
MAX_PIXELS = 40_000_000
RESAMPLE = Image.Resampling.BILINEAR


class ImageError(ValueError):
    """A file that cannot be used as an image; ``code`` is a short machine-readable reason."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _open_checked(path: str | os.PathLike) -> Image.Image:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ImageError("unreadable", f"cannot read the file ({error.strerror})") from error
    if size == 0:
        raise ImageError("empty-file", "the file has zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except UnidentifiedImageError as error:
        raise ImageError("not-an-image", "Pillow does not recognise it as an image") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError("decompression-bomb", str(error)) from error
    except OSError as error:
        raise ImageError("unreadable", f"cannot open the file ({error})") from error
    pixels = image.width * image.height
    if pixels > MAX_PIXELS:
        image.close()
        raise ImageError(
            "decompression-bomb",
            f"{image.width}x{image.height} = {pixels:,} pixels exceeds the limit of {MAX_PIXELS:,}")
    return image


def _decode(image: Image.Image) -> None:
    try:
        image.load()
    except OSError as error:
        if "truncated" in str(error):
            raise ImageError("truncated", "the image data ends early (truncated file)") from error
        raise ImageError("corrupt", f"the image data cannot be decoded ({error})") from error
    except (SyntaxError, ValueError, EOFError) as error:  # Pillow's plugins raise these on garbage
        raise ImageError("corrupt", f"the image data cannot be decoded ({error})") from error


def to_rgb(image: Image.Image) -> tuple[Image.Image, list[str]]:
    """Apply EXIF orientation and convert any colour mode to 8-bit RGB.

    Returns the image and notes on what was changed (recorded in the data manifest). Transparency is
    composited onto white, TrashNet's posterboard background; 16-bit and float images are rescaled.
    """
    notes: list[str] = []
    orientation = image.getexif().get(0x0112, 1)
    if orientation not in (None, 1):
        image = ImageOps.exif_transpose(image)
        notes.append(f"exif-orientation-{orientation}-applied")
    mode = image.mode
    if mode == "RGB":
        return image, notes
    notes.append(f"converted-from-{mode}")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB"), notes
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        gray = np.clip(np.round(array / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB"), notes
    return image.convert("RGB"), notes


def open_rgb(path: str | os.PathLike, *, draft_size: int | None = None) -> tuple[Image.Image, list[str]]:
    """Open, validate and fully decode an image as 8-bit RGB. Raises ``ImageError`` with a reason.

    ``draft_size`` lets the JPEG decoder scale down by 1/2, 1/4 or 1/8 while decoding (never below
    that size): several times faster for small model inputs, and deterministic.
    """
    image = _open_checked(path)
    if draft_size is not None and image.format == "JPEG":
        image.draft("RGB", (draft_size, draft_size))
    _decode(image)
    return to_rgb(image)


def to_model_input(image: Image.Image, size: int) -> np.ndarray:
    """An RGB image -> uint8 array (size, size, 3): the whole frame squashed to a square."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.mode}")
    resized = image.resize((size, size), RESAMPLE)
    return np.asarray(resized, dtype=np.uint8)


def load_for_model(path: str | os.PathLike, size: int) -> np.ndarray:
    """A file -> the uint8 (size, size, 3) array every model of this project takes (as float32)."""
    image, _ = open_rgb(path, draft_size=size)
    return to_model_input(image, size)
