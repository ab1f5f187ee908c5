"""Image validation and decoding (trashnet/core/images.py) on real files written by the tests."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from trashnet.core import images, settings

PHOTO = settings.SAMPLE_DIR / "glass" / "glass1.jpg"  # 192x256 RGB JPEG


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    with Image.open(PHOTO) as image:
        return image.convert("RGB")


def png_with_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("mode, fmt", [("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"),
                                       ("LA", "PNG"), ("I;16", "PNG"), ("RGB", "WEBP"), ("P", "GIF")])
def test_every_colour_mode_becomes_rgb(tmp_path, photo, mode, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    if mode == "I;16":
        gray = np.asarray(photo.convert("L")).astype(np.uint16) * 257
        Image.fromarray(gray).save(path, format=fmt)
    else:
        photo.convert(mode).save(path, format=fmt)
    info = images.inspect(path)
    assert (info.width, info.height) == photo.size
    assert info.needs_conversion
    assert info.notes  # says what was converted
    image, _ = images.open_rgb(path)
    assert image.mode == "RGB" and image.size == photo.size
    # The content survives the conversion (16-bit rescaled to 8 bits, not clipped to white).
    assert abs(np.asarray(image, np.float32).mean() - np.asarray(photo.convert("L"), np.float32).mean()) < 12


def test_upright_rgb_jpeg_is_copied_as_is(photo):
    info = images.inspect(PHOTO)
    assert (info.format, info.mode, info.needs_conversion, info.notes) == ("JPEG", "RGB", False, ())
    assert len(info.phash) == 64  # 256 bits


def test_exif_orientation_is_applied(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    photo.save(path, exif=exif)
    info = images.inspect(path)
    assert (info.width, info.height) == (photo.height, photo.width)
    assert "exif-orientation-6-applied" in info.notes and info.needs_conversion
    assert images.open_rgb(path)[0].size == (photo.height, photo.width)


@pytest.mark.parametrize("name, content, code", [
    ("empty.jpg", b"", "empty-file"),
    ("text.jpg", b"this is not an image\n", "not-an-image"),
    ("truncated.jpg", "half", "truncated"),
    ("header-only.jpg", "header", ("truncated", "corrupt")),
    ("corrupt.png", "bad-png", "corrupt"),
])
def test_unusable_files_raise_with_a_reason(tmp_path, name, content, code):
    data = PHOTO.read_bytes()
    if content == "half":
        content = data[: len(data) // 2]
    elif content == "header":
        content = data[:300]
    elif content == "bad-png":
        buffer = tmp_path / "ok.png"
        Image.open(PHOTO).save(buffer)
        raw = bytearray(buffer.read_bytes())
        raw[60:400] = bytes(340)  # wipe the compressed pixel data
        content = bytes(raw)
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(images.ImageError) as caught:
        images.inspect(path)
    assert caught.value.code in (code if isinstance(code, tuple) else (code,)), str(caught.value)


@pytest.mark.parametrize("width, height", [(8000, 6000), (100_000, 100_000)])
def test_decompression_bombs_are_refused_before_decoding(tmp_path, width, height):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_size(width, height))
    with pytest.raises(images.ImageError) as caught:
        images.inspect(path)
    assert caught.value.code == "decompression-bomb"
    assert "40,000,000" in str(caught.value)
    with pytest.raises(images.ImageError):
        images.load_for_model(path, 32)


def test_load_for_model_squashes_to_square():
    array = images.load_for_model(PHOTO, 48)
    assert array.shape == (48, 48, 3) and array.dtype == np.uint8


def test_phash_is_close_for_a_recompressed_copy_and_far_for_another_photo(tmp_path, photo):
    copy = tmp_path / "copy.jpg"
    photo.point(lambda v: min(255, v + 4)).save(copy, quality=70)
    other = settings.SAMPLE_DIR / "paper" / "paper1.jpg"
    bits = lambda h: np.unpackbits(np.frombuffer(bytes.fromhex(h), np.uint8))  # noqa: E731
    base = bits(images.inspect(PHOTO).phash)
    assert (base != bits(images.inspect(copy).phash)).sum() <= 20
    assert (base != bits(images.inspect(other).phash)).sum() > 52
