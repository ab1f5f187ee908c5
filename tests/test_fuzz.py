"""Fuzz-style robustness of ``prepare`` and ``predict`` (issue 17): a few hundred hostile files, fixed seed.

Random bytes, truncated and bit-flipped JPEG/PNG files, images in every odd colour mode and size Pillow can
write, zero-byte files, named pipes, a socket, links to devices and to nowhere. Each file must get exactly
one manifest row (``prepare``) and one result or error line (``predict``); neither command may crash or
hang (a pytest timeout turns a hang into a failure).
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from results_tree import CLASSES, tiny_tflite

from trashnet import cli
from trashnet.data import prepare
from trashnet.core import settings

SEED = 20261204
CLASSES_USED = ("glass", "paper", "metal")
# (mode, format, suffix) Pillow writes; prepare must accept (converting) or reject each, with a reason.
ODD_MODES = [("CMYK", "JPEG", ".jpg"), ("CMYK", "TIFF", ".tif"), ("P", "PNG", ".png"), ("P", "GIF", ".gif"),
             ("P", "BMP", ".bmp"), ("LA", "PNG", ".png"), ("I;16", "PNG", ".png"), ("1", "PNG", ".png"),
             ("1", "BMP", ".bmp"), ("F", "TIFF", ".tif"), ("I;16", "TIFF", ".tif"), ("I", "TIFF", ".tif"),
             ("RGBA", "PNG", ".png"), ("RGBA", "WEBP", ".webp"), ("L", "JPEG", ".jpg"), ("YCbCr", "JPEG", ".jpg"),
             ("RGB", "PNG", ".png"), ("RGB", "JPEG", ".jpg"), ("LAB", "TIFF", ".tif"), ("RGBX", "TIFF", ".tif")]


def _odd_image(rng: random.Random, mode: str, fmt: str) -> bytes:
    width, height = rng.choice([(1, 1), (1, 300), (300, 1), (7, 5), (33, 64), (64, 48)])
    pixels = np.random.default_rng(rng.randrange(2 ** 32)).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode in ("I;16", "I", "F"):  # 16-bit, 32-bit and float grey, values beyond 0-255 and negative
        values = pixels[..., 0].astype(np.float32) * rng.choice([1.0, 257.0, -3.5])
        if mode == "I;16":
            image = Image.fromarray(np.clip(values, 0, 65535).astype(np.uint16))
        else:
            image = Image.fromarray(values)
            image = image.convert("I") if mode == "I" else image
    elif mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def build_hostile_folder(root: Path, rng: random.Random) -> list[Path]:
    """Every file written (including the special ones); each class also gets real photos so it is usable."""
    photos = sorted(p for cls in CLASSES_USED for p in (settings.SAMPLE_DIR / cls).iterdir())
    jpeg = photos[0].read_bytes()
    png = io.BytesIO()
    Image.open(photos[1]).save(png, format="PNG")
    png = png.getvalue()
    files: list[Path] = []

    def put(name: str, content: bytes) -> None:
        path = root / rng.choice(CLASSES_USED) / name
        path.write_bytes(content)
        files.append(path)

    for cls in CLASSES_USED:
        (root / cls).mkdir(parents=True)
        for photo in [p for p in photos if p.parent.name == cls][:3]:
            (root / cls / photo.name).write_bytes(photo.read_bytes())
            files.append(root / cls / photo.name)
    for i in range(100):
        put(f"random{i}{rng.choice(['.jpg', '.png', '.gif', '.txt', ''])}",
            rng.randbytes(rng.choice([1, 2, 8, 100, 1000, 5000])))
    for i in range(40):  # a real header followed by garbage, or cut anywhere
        source = rng.choice([jpeg, png])
        suffix = ".jpg" if source is jpeg else ".png"
        put(f"cut{i}{suffix}", source[:rng.randrange(1, len(source))])
    for i in range(40):
        source = bytearray(rng.choice([jpeg, png]))
        for _ in range(rng.choice([1, 5, 50])):
            source[rng.randrange(len(source))] = rng.randrange(256)
        put(f"flipped{i}.jpg", bytes(source))
    for i in range(80):
        mode, fmt, suffix = ODD_MODES[i % len(ODD_MODES)]
        content = _odd_image(rng, mode, fmt)
        put(f"mode{i}-{mode.replace(';', '')}{suffix}", content)
        if i % 4 == 0:
            put(f"mode{i}-cut{suffix}", content[:max(1, len(content) // 2)])
    for i in range(10):
        put(f"zero{i}.jpg", b"")
    for i in range(4):
        path = root / rng.choice(CLASSES_USED) / f"fifo{i}.jpg"
        os.mkfifo(path)
        files.append(path)
    sock = root / "paper" / "socket.jpg"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock))
    files.append(sock)
    for name, target in (("zero-device.jpg", "/dev/zero"), ("null-device.png", "/dev/null"),
                         ("dangling.jpg", str(root / "nowhere.jpg"))):
        (root / "glass" / name).symlink_to(target)
        files.append(root / "glass" / name)
    return files


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("hostile") / "source"
    return root, build_hostile_folder(root, random.Random(SEED))


@pytest.mark.timeout(120)
def test_prepare_gives_every_hostile_file_a_manifest_row(hostile, tmp_path, capsys):
    root, files = hostile
    assert len(files) >= 300
    status = cli.main(["prepare", "--source", str(root), "--out", str(tmp_path / "d"), "--seed", "1"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    with open(tmp_path / "d" / settings.MANIFEST_NAME, newline="", encoding="utf-8") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {path.relative_to(root).as_posix() for path in files}, "one row for every file"
    for path, row in rows.items():
        assert row["status"] in ("accepted", "rejected"), row
        if row["status"] == "rejected":
            assert prepare.reason_code(row["reason"]), row
        else:  # what prepare wrote is an 8-bit RGB image
            with Image.open(tmp_path / "d" / row["output"]) as image:
                image.load()
                assert image.mode == "RGB", row
    for special in ("fifo0.jpg", "socket.jpg", "zero-device.jpg", "null-device.png"):
        row = next(r for p, r in rows.items() if p.endswith("/" + special))
        assert prepare.reason_code(row["reason"]) == "not-a-file", row
    accepted_modes = {p.split("-", 1)[1].rsplit(".", 1)[0] for p, r in rows.items()
                      if "/mode" in p and "-cut" not in p and r["status"] == "accepted"}
    assert {"CMYK", "P", "LA", "I16", "1", "F", "I", "RGBA"} <= accepted_modes  # odd modes are converted


@pytest.mark.timeout(120)
def test_predict_gives_every_hostile_file_a_result_or_an_error_line(hostile, tmp_path, capsys):
    root, files = hostile
    model = tmp_path / "model.tflite"
    model.write_bytes(tiny_tflite(32, len(CLASSES), 0))
    (tmp_path / "labels.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    status = cli.main(["predict", *map(str, files), "--model", str(model), "--json", "--no-progress",
                       "--workers", "2"])
    captured = capsys.readouterr()
    assert status == 1 and "Traceback" not in captured.err
    results = [json.loads(line) for line in captured.out.splitlines()]
    assert [item["path"] for item in results] == list(map(str, files)), "one result per file, in order"
    failed = [item for item in results if "error" in item]
    assert all(("label" in item) != ("error" in item) for item in results)
    assert len(failed) == sum(": " in line for line in captured.err.splitlines()[:-1])  # an error line each
    assert f"{len(results) - len(failed)} classified, {len(failed)} failed" in captured.err
    by_name = {Path(item["path"]).name: item for item in results}
    for special in ("fifo0.jpg", "socket.jpg", "zero-device.jpg"):
        assert by_name[special]["error"].startswith("not-a-file"), by_name[special]


# --- issue 24: random edits of every member of a release bundle --------------------------------------------

BUNDLE_CASES = 300


def _edit(rng: random.Random, data: bytes) -> bytes | None:
    """One random edit of a member's bytes; None: the member is left out of the zip."""
    kind = rng.choice(["flip", "truncate", "append", "drop", "empty", "insert", "swap-lines"])
    if kind == "flip" and data:
        at = rng.randrange(len(data))
        return data[:at] + bytes([data[at] ^ rng.randrange(1, 256)]) + data[at + 1:]
    if kind == "truncate" and data:
        return data[:rng.randrange(len(data))]
    if kind == "append":
        return data + rng.randbytes(rng.randrange(1, 64))
    if kind == "drop":
        return None
    if kind == "insert":
        at = rng.randrange(len(data) + 1)
        return data[:at] + rng.choice([b"\n", b" ", b"x", b"\x00", b"  labels.txt\n"]) + data[at:]
    if kind == "swap-lines" and data.count(b"\n") > 1:
        lines = data.split(b"\n")
        i, j = rng.sample(range(len(lines)), 2)
        lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines)
    return b""


def test_random_edits_of_any_bundle_member_are_refused_or_change_nothing(tmp_path):
    """Every edited bundle is either refused with a ModelError (one line) or, when the edit did not change
    what the bundle means (e.g. a hex digit's case in SHA256SUMS), loads exactly as the original."""
    import zipfile

    from test_release import synthetic_final

    from trashnet.core import litert
    from trashnet.deploy import release

    bundle = release.build(synthetic_final(tmp_path / "final", tiny_tflite(32)), tmp_path / "dist")
    original = litert.load(bundle)
    with zipfile.ZipFile(bundle) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    rng = random.Random(SEED)
    refused = loaded = 0
    for case in range(BUNDLE_CASES):
        victim = rng.choice(sorted(members))
        edited = dict(members)
        edited[victim] = _edit(rng, members[victim])
        if edited[victim] == members[victim]:
            continue
        path = tmp_path / f"case{case}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for name, content in edited.items():
                if content is not None:
                    archive.writestr(name, content)
        try:
            model = litert.load(path)
        except litert.ModelError as error:
            assert "\n" not in str(error), (victim, error)
            refused += 1
        else:
            loaded += 1
            assert (model.labels, model.preprocessing, model.runner.content) == (
                original.labels, original.preprocessing, original.runner.content), victim
        path.unlink()
    assert refused >= BUNDLE_CASES * 0.9, (refused, loaded)


# --- issue 24: random YAML values in a profile -------------------------------------------------------------

CONFIG_CASES = 300
ODD_VALUES = ["2024-01-01", "2024-01-01T10:00:00", "~", "null", "''", '""', "../x", "/abs", ".hidden", "-1", "0",
              "1e309", ".nan", ".inf", "-.inf", "yes", "no", "on", "0x1F", "0o17", "1_000", "[]", "{}", "[1, [2]]",
              "{a: {b: c}}", "!!binary aGk=", "!!set {a: null}", "!!python/object:os.system {}", "&a [*a]", "*undefined",
              "'a\\x00b'", "\"\\u0000\"", "é", "x" * 300, "[" * 50, "- a", "|\n  multi\n  line", "!!str 12", "!!int '7'",
              "!!float '1.5'", "!!timestamp 2024-01-01", "!!omap [a: 1]", "!!pairs [a: 1]", "? [1]\n: 2", "@bad",
              "`bad`", "%TAG", "{a: 1, a: 2}"]
CONFIG_KEYS = ["name", "description", "seed", "seeds", "variants", "extends", "overrides", "data", "data.split",
               "data.ratios", "data.seed", "train.epochs", "train.batch_size", "model.image_size", "select",
               "quantize.calibration_images", "unknown_key", "stats.alpha"]


def test_random_yaml_values_in_a_profile_are_accepted_or_one_config_error(tmp_path):
    """Every profile with a random odd value at a random key either loads (a valid value) or raises
    ConfigError with a message that names the file - never another exception."""
    from trashnet.core import config, profiles

    rng = random.Random(SEED)
    outcomes = {"loaded": 0, "refused": 0}
    for case in range(CONFIG_CASES):
        lines = []
        for _ in range(rng.randint(1, 3)):
            key, value = rng.choice(CONFIG_KEYS), rng.choice(ODD_VALUES)
            head, _, tail = key.partition(".")
            lines.append(f"{head}:\n  {tail}: {value}" if tail else f"{head}: {value}")
        path = tmp_path / f"case{case}.yaml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            profile = profiles.load_profile(path)
        except config.ConfigError as error:
            assert str(path) in str(error), (lines, error)
            outcomes["refused"] += 1
        else:
            settings.check_profile_name(profile.name)  # whatever loaded can name a folder
            outcomes["loaded"] += 1
    assert outcomes["refused"] > CONFIG_CASES / 2 and outcomes["loaded"] > 0, outcomes
