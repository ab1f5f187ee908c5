"""Photo decoding shared by data preparation, training and deployment: Pillow and NumPy only.

Data preparation validates every file with ``inspect`` (decode, orientation, colour mode, a perceptual hash)
and re-encodes non-RGB files with ``open_rgb``. Training, evaluation and ``predict`` all turn a file into a
model input with ``load_for_model``, so the
deployed TFLite file sees exactly the pixels the model was trained and evaluated on. By default TrashNet's
384x512 photos are *squashed* to the square input (resized without cropping or padding): nothing of the
object is cut off, and the same 4:3 distortion is applied everywhere. ``fit="crop"`` (centred square) and
``fit="pad"`` (white margins) are the alternatives; the choice travels with the model (``metadata.json``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from trashnet.core import fileio

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
        info = path.stat()
    except OSError as error:
        raise ImageError("unreadable", f"cannot read the file ({error.strerror})") from error
    if not stat.S_ISREG(info.st_mode):  # opening a named pipe or a device would block or never end
        raise ImageError("not-a-file", f"{fileio.file_kind(info.st_mode)}, not a regular file; not read")
    size = info.st_size
    if size == 0:
        raise ImageError("empty-file", "the file has zero bytes")
    try:
        # Pillow itself refuses images over 2 x Image.MAX_IMAGE_PIXELS (~179 M); the stricter MAX_PIXELS
        # check below refuses the rest before any pixel is decoded. (warnings.catch_warnings is not
        # thread-safe, and data preparation opens files from several threads.)
        image = Image.open(path)
    except UnidentifiedImageError as error:
        raise ImageError("not-an-image", "Pillow does not recognise it as an image") from error
    except Image.DecompressionBombError as error:
        raise ImageError("decompression-bomb", f"refused to decode an image of more than {MAX_PIXELS:,} "
                                               f"pixels ({error})") from error
    except PermissionError as error:
        raise ImageError("unreadable", f"cannot read the file ({error.strerror})") from error
    except OSError as error:
        if "truncated" in str(error).lower():
            raise ImageError("truncated", "the file ends inside the image header (truncated file)") from error
        raise ImageError("corrupt", f"the image header cannot be parsed ({error})") from error
    except (SyntaxError, ValueError, EOFError, IndexError, TypeError) as error:  # plugins' parse errors
        raise ImageError("corrupt", f"the image header cannot be parsed ({error})") from error
    pixels = image.width * image.height
    if pixels > MAX_PIXELS:
        image.close()
        raise ImageError(
            "decompression-bomb",
            f"refused to decode {image.width}x{image.height} = {pixels:,} pixels, more than the limit of "
            f"{MAX_PIXELS:,} (images.MAX_PIXELS): a decompression bomb or not a photo")
    return image


def _decode(image: Image.Image) -> None:
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # WeasyPrint's import relaxes Pillow process-wide: undo it, a
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # truncated photo must fail here, not decode half grey
    try:
        image.load()
    except OSError as error:
        if "truncated" in str(error):
            raise ImageError("truncated", "the image data ends early (truncated file)") from error
        raise ImageError("corrupt", f"the image data cannot be decoded ({error})") from error
    except (SyntaxError, ValueError, EOFError, IndexError, TypeError) as error:  # plugins' errors on garbage
        raise ImageError("corrupt", f"the image data cannot be decoded ({error})") from error
    except Image.DecompressionBombError as error:
        raise ImageError("decompression-bomb", f"refused to decode an image of more than {MAX_PIXELS:,} "
                                               f"pixels ({error})") from error


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
    with _open_checked(path) as image:
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        _decode(image)
        rgb, notes = _to_rgb_checked(image)
        if rgb is image:  # keep the pixels when the file closes
            rgb = image.copy()
    return rgb, notes


def _to_rgb_checked(image: Image.Image) -> tuple[Image.Image, list[str]]:
    try:
        return to_rgb(image)
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError("corrupt", f"the image cannot be converted to RGB ({error})") from error


FITS = ("squash", "crop", "pad")  # how a photo of any shape becomes the square model input
DEFAULT_FIT = "squash"  # what every model so far was trained and evaluated with
PAD_COLOUR = (255, 255, 255)  # pad with TrashNet's white board


def to_model_input(image: Image.Image, size: int, fit: str = DEFAULT_FIT) -> np.ndarray:
    """An RGB image -> uint8 array (size, size, 3).

    ``fit``: ``squash`` resizes the whole frame to the square (aspect ratio lost, nothing cut off);
    ``crop`` keeps the aspect ratio and cuts the longer side to a centred square; ``pad`` keeps the
    aspect ratio and the whole frame, and fills the margins with white.
    """
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.mode}")
    if fit == "squash":
        resized = image.resize((size, size), RESAMPLE)
    elif fit == "crop":
        resized = ImageOps.fit(image, (size, size), RESAMPLE)
    elif fit == "pad":
        resized = ImageOps.pad(image, (size, size), RESAMPLE, color=PAD_COLOUR)
    else:
        raise ValueError(f"unknown fit {fit!r}; expected one of {', '.join(FITS)}")
    return np.asarray(resized, dtype=np.uint8)


def load_for_model(path: str | os.PathLike, size: int, fit: str = DEFAULT_FIT) -> np.ndarray:
    """A file -> the uint8 (size, size, 3) array every model of this project takes (as float32)."""
    image, _ = open_rgb(path, draft_size=size)
    return to_model_input(image, size, fit)


# Formats copied byte for byte into a prepared data set when already 8-bit RGB and upright; any other file
# is decoded, oriented, converted to RGB and written as PNG (lossless) by data preparation.
COPY_FORMATS = ("JPEG", "PNG")
_SWAPS_AXES = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees


@dataclass(frozen=True)
class Inspection:
    """What ``inspect`` learnt about a valid image file."""

    format: str
    mode: str
    width: int  # after EXIF orientation: the size the model sees before resizing
    height: int
    notes: tuple[str, ...]  # what conversion the file needs (recorded in the data manifest)
    phash: str  # perceptual hash (hex) of the upright RGB image
    needs_conversion: bool  # True: re-encode (open_rgb + PNG) instead of copying the file as it is


def perceptual_hash(image: Image.Image, hash_size: int = 16) -> str:
    """imagehash's DCT perceptual hash as hex; ``hash_size`` 16 gives 256 bits."""
    import imagehash

    return str(imagehash.phash(image, hash_size=hash_size))


def inspect(path: str | os.PathLike, *, hash_size: int = 16, draft_size: int | None = None) -> Inspection:
    """Validate a file by decoding all of it; raise ``ImageError`` (with a reason code) when unusable.

    JPEGs are decoded with libjpeg's DCT scaling (``draft``) to at least ``draft_size`` (default: the
    perceptual hash's 4 x ``hash_size`` working size): every byte of the entropy-coded data is still read,
    so truncation is detected, at a fraction of the cost. The perceptual hash is taken from that upright,
    RGB-converted image.
    """
    draft_size = draft_size or 4 * hash_size
    with _open_checked(path) as image:
        fmt, mode = image.format or "unknown", image.mode
        width, height = image.size
        if fmt == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        _decode(image)
        rgb, notes = _to_rgb_checked(image)
        orientation = image.getexif().get(0x0112, 1)
        digest = perceptual_hash(rgb, hash_size)
    if orientation in _SWAPS_AXES:
        width, height = height, width
    needs_conversion = bool(notes) or fmt not in COPY_FORMATS
    if fmt not in COPY_FORMATS:
        notes.append(f"re-encoded-from-{fmt}")
    return Inspection(fmt, mode, width, height, tuple(notes), digest, needs_conversion)


# Five lines that give exactly predict's input (``load_for_model``) for an RGB photo file, per fit:
# JPEG draft decoding (libjpeg scales by 1/2, 1/4 or 1/8, never below the input size), EXIF orientation,
# RGB, Pillow's bilinear filter (antialiased), float32 0-255. The model card prints it (tests run it).
_FIT_LINE = {
    "squash": "image.resize(({size}, {size}), Image.Resampling.BILINEAR)",
    "crop": "ImageOps.fit(image, ({size}, {size}), Image.Resampling.BILINEAR)",
    "pad": "ImageOps.pad(image, ({size}, {size}), Image.Resampling.BILINEAR, color=(255, 255, 255))",
}
PILLOW_SNIPPET = """from PIL import Image, ImageOps
import numpy as np
image = Image.open(path); image.draft("RGB", ({size}, {size}))  # JPEG: decode at 1/2, 1/4, 1/8 scale, >= {size} px
image = ImageOps.exif_transpose(image).convert("RGB")
x = np.asarray({resize}, np.float32)[None]  # (1, {size}, {size}, 3), RGB, 0-255
"""


def pillow_snippet(size: int, fit: str = DEFAULT_FIT) -> str:
    """Python that sets ``x``, the model input of the photo file ``path``, exactly as ``predict`` makes it."""
    if fit not in _FIT_LINE:
        raise ValueError(f"unknown fit {fit!r}; expected one of {', '.join(FITS)}")
    return PILLOW_SNIPPET.format(size=size, resize=_FIT_LINE[fit].format(size=size))
