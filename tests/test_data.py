"""Data preparation (trashnet/data/prepare.py) on real files: the bundled sample, a folder with every defect the
tests can build, the fatal cases, the CLI, and the full TrashNet when $TRASHNET_REAL_DATA is set."""

from __future__ import annotations

import csv
import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trashnet import cli
from trashnet.data import inputs, prepare
from trashnet.core import fileio, settings


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): fileio.sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def read_manifest(out: Path) -> dict[str, dict[str, str]]:
    with open(out / settings.MANIFEST_NAME, newline="", encoding="utf-8") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def sample(cls: str, index: int) -> Path:
    return sorted((settings.SAMPLE_DIR / cls).iterdir())[index]


# ---------------------------------------------------------------------------------------------- sample


@pytest.fixture(scope="module")
def prepared_sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "dataset"
    before = tree_hashes(settings.SAMPLE_DIR)
    report = prepare.prepare(settings.SAMPLE_DIR, out, split="stratified", seed=42)
    assert tree_hashes(settings.SAMPLE_DIR) == before, "the source folder must never be modified"
    return report


def test_sample_is_split_per_class_and_every_file_is_in_the_manifest(prepared_sample):
    report, out = prepared_sample, prepared_sample.out
    rows = read_manifest(out)
    assert len(rows) == 72 == report.accepted and report.rejected == 0
    assert tuple(next(iter(rows.values())).keys()) == prepare.MANIFEST_COLUMNS
    for split, expected in zip(settings.SPLITS, (8, 2, 2)):  # 12 a class at 70/15/15
        assert set(report.counts()[split].values()) == {expected}
    for row in rows.values():
        assert (out / row["output"]).is_file()
        assert fileio.sha256_file(out / row["output"]) == row["sha256"]  # RGB JPEGs copied byte for byte
        assert row["output"] == f"{row['split']}/{row['path']}"
    classes, by_split = inputs.read_accepted(out)
    assert len(classes) == 6 and sum(len(v) for v in by_split.values()) == 72
    assert sorted(p.name for p in out.parent.iterdir()) == ["dataset"], "no temporary folder left beside"


def test_rerun_is_skipped_and_a_forced_rebuild_is_byte_identical(prepared_sample, tmp_path):
    out = prepared_sample.out
    manifest = (out / settings.MANIFEST_NAME).read_bytes()
    again = prepare.prepare(settings.SAMPLE_DIR, out, split="stratified", seed=42)
    assert again.skipped and again.rows == prepared_sample.rows
    rebuilt = prepare.prepare(settings.SAMPLE_DIR, tmp_path / "other", split="stratified", seed=42, force=True)
    assert not rebuilt.skipped
    assert (rebuilt.out / settings.MANIFEST_NAME).read_bytes() == manifest
    assert tree_hashes(rebuilt.out) == tree_hashes(out)
    other_seed = prepare.prepare(settings.SAMPLE_DIR, tmp_path / "seed7", split="stratified", seed=7)
    assert (other_seed.out / settings.MANIFEST_NAME).read_bytes() != manifest


def test_changed_options_rebuild_in_place(prepared_sample, tmp_path):
    out = tmp_path / "dataset"
    shutil.copytree(prepared_sample.out, out)
    report = prepare.prepare(settings.SAMPLE_DIR, out, split="stratified", seed=42, ratios=(0.5, 0.25, 0.25))
    assert not report.skipped and report.counts()["train"]["glass"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


# ------------------------------------------------------------------------------------- bad-input folder


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def build_bad_folder(root: Path) -> dict[str, str]:
    """A source folder with every defect; returns {path: expected status or reason code}."""
    expected = {}
    for cls in ("glass", "paper", "metal"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            shutil.copyfile(sample(cls, i), root / cls / f"{cls}{i}.jpg")
            expected[f"{cls}/{cls}{i}.jpg"] = "accepted"
    photo = Image.open(sample("metal", 7)).convert("RGB")
    jpeg = sample("glass", 8).read_bytes()
    defects = {
        "glass/zero.jpg": (b"", "empty-file"),
        "glass/truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "glass/notes.txt": (b"just some text\n", "not-an-image"),
        "glass/fake.jpg": (b"<html>not a jpeg</html>", "not-an-image"),
        "glass/bomb.png": (png_claiming(20_000, 20_000), "decompression-bomb"),
        "glass/.DS_Store": (b"\0\0\0\1Bud1", "hidden"),
        "paper/._paper0.jpg": (jpeg, "hidden"),
        "paper/sub/deeper.jpg": (jpeg, "nested-folder"),
        "README.txt": (b"about this folder", "no-class"),
    }
    if os.path.supports_unicode_filenames is False and sys.platform.startswith("linux"):
        # Linux file names are bytes: one that is not UTF-8 is recorded (readably) and rejected.
        (root / "paper" / os.fsdecode(b"caf\xe9.jpg")).write_bytes(jpeg)
        expected["paper/caf\ufffd.jpg"] = "bad-name"
    (root / "paper" / "link-to-glass").symlink_to(root / "glass", target_is_directory=True)
    expected["paper/link-to-glass"] = "nested-folder"
    (root / "paper" / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    expected["paper/dangling.jpg"] = "unreadable"
    for rel, (content, code) in defects.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
        expected[rel] = code
    # Colour modes and formats that must be converted to RGB (and written as PNG).
    photo.convert("RGBA").save(root / "metal" / "rgba.png")
    photo.convert("L").save(root / "metal" / "gray.jpg")
    photo.convert("P").save(root / "metal" / "palette.png")
    photo.convert("CMYK").save(root / "metal" / "cmyk.jpg")
    Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257).save(root / "metal" / "deep16.png")
    exif = Image.Exif()
    exif[0x0112] = 8
    photo.transpose(Image.Transpose.ROTATE_270).save(root / "paper" / "rotated.jpg", exif=exif)
    for rel in ("metal/rgba.png", "metal/gray.jpg", "metal/palette.png", "metal/cmyk.jpg", "metal/deep16.png",
                "paper/rotated.jpg"):
        expected[rel] = "accepted"
    # Exact duplicates: same label (later copy rejected) and conflicting labels (all copies rejected).
    shutil.copyfile(root / "glass" / "glass0.jpg", root / "glass" / "zz-copy-of-glass0.jpg")
    expected["glass/zz-copy-of-glass0.jpg"] = "duplicate"
    shutil.copyfile(root / "paper" / "paper1.jpg", root / "metal" / "paper-in-metal.jpg")
    expected["paper/paper1.jpg"] = expected["metal/paper-in-metal.jpg"] = "duplicate-conflict"
    # A near-duplicate: the same photo re-encoded a little brighter.
    Image.open(root / "glass" / "glass2.jpg").point(lambda v: min(255, v + 3)).save(
        root / "glass" / "glass2-bright.jpg", quality=80)
    expected["glass/glass2-bright.jpg"] = "accepted"
    return expected


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("bad") / "source"
    return root, build_bad_folder(root)


def test_every_defect_is_recorded_and_the_counts_reconcile(bad_folder, tmp_path):
    source, expected = bad_folder
    before = tree_hashes(source)
    report = prepare.prepare(source, tmp_path / "dataset", split="stratified", seed=1)
    assert tree_hashes(source) == before
    rows = read_manifest(report.out)
    assert set(rows) == set(expected), "one manifest row for every file seen"
    assert report.accepted + report.rejected == len(rows) == len(expected)
    for path, want in expected.items():
        row = rows[path]
        got = "accepted" if row["status"] == "accepted" else prepare.reason_code(row["reason"])
        assert got == want, f"{path}: {row['status']} {row['reason']}"
        assert (row["status"] == "accepted") == bool(row["output"])
    assert rows["glass/zz-copy-of-glass0.jpg"]["reason"] == "duplicate of glass/glass0.jpg (kept)"
    assert "duplicate-conflict" in rows["paper/paper1.jpg"]["reason"]
    assert "metal/paper-in-metal.jpg" in rows["paper/paper1.jpg"]["reason"]
    assert "40,000,000" in rows["glass/bomb.png"]["reason"]


def test_converted_images_are_rgb_png_upright(bad_folder, tmp_path):
    source, _ = bad_folder
    report = prepare.prepare(source, tmp_path / "dataset", split="stratified", seed=1)
    rows = read_manifest(report.out)
    for rel in ("metal/rgba.png", "metal/gray.jpg", "metal/palette.png", "metal/cmyk.jpg", "metal/deep16.png",
                "paper/rotated.jpg"):
        row = rows[rel]
        assert row["output"].endswith(".png") and "written-as-png" in row["notes"], row
        with Image.open(report.out / row["output"]) as image:
            assert image.format == "PNG" and image.mode == "RGB"
            assert image.size == (int(row["width"]), int(row["height"])) == (192, 256)
    assert "exif-orientation-8-applied" in rows["paper/rotated.jpg"]["notes"]
    assert "converted-from-CMYK" in rows["metal/cmyk.jpg"]["notes"]
    # The rotated file was stored sideways with an EXIF rotation: upright it matches its source photo.
    upright = np.asarray(Image.open(report.out / rows["paper/rotated.jpg"]["output"]), np.float32)
    original = np.asarray(Image.open(sample("metal", 7)).convert("RGB"), np.float32)
    assert np.abs(upright - original).mean() < 4


def test_near_duplicates_are_kept_reported_and_split_together(bad_folder, tmp_path):
    source, _ = bad_folder
    for seed in range(4):
        report = prepare.prepare(source, tmp_path / f"seed{seed}", split="stratified", seed=seed)
        rows = read_manifest(report.out)
        pair = rows["glass/glass2.jpg"], rows["glass/glass2-bright.jpg"]
        assert pair[0]["near_duplicate_group"] == pair[1]["near_duplicate_group"] == "glass/glass2-bright.jpg"
        assert pair[0]["status"] == pair[1]["status"] == "accepted"
        assert pair[0]["split"] == pair[1]["split"]


def test_cli_prints_the_summary(bad_folder, tmp_path, capsys):
    source, _ = bad_folder
    status = cli.main(["prepare", "--source", str(source), "--out", str(tmp_path / "d"), "--seed", "3"])
    printed = capsys.readouterr().out
    assert status == 0
    for text in ("train", "validation", "test", "rejected", "duplicate-conflict 2", "empty-file 1",
                 "decompression-bomb 1", "glass/truncated.jpg: truncated", "Near-duplicates"):
        assert text in printed, text


# ------------------------------------------------------------------------------------------ fatal cases


def fatal(args: list[str], capsys) -> str:
    status = cli.main(["prepare", *args])
    assert status != 0
    return capsys.readouterr().err


def make_classes(root: Path, *names: str, images: int = 2) -> Path:
    for cls in names:
        (root / cls).mkdir(parents=True)
        for i in range(images):
            shutil.copyfile(sample("glass", i), root / cls / f"{i}.jpg")
    return root


def test_missing_source(tmp_path, capsys):
    err = fatal(["--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")], capsys)
    assert "does not exist" in err and "--source" in err


def test_source_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert "not a folder" in fatal(["--source", str(tmp_path / "file"), "--out", str(tmp_path / "d")], capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder whatever its permissions")
def test_unreadable_source(tmp_path, capsys):
    source = make_classes(tmp_path / "src", "a", "b")
    source.chmod(0)
    try:
        assert "not readable" in fatal(["--source", str(source), "--out", str(tmp_path / "d")], capsys)
    finally:
        source.chmod(0o755)


def test_fewer_than_two_classes(tmp_path, capsys):
    source = make_classes(tmp_path / "src", "glass")
    (source / ".hidden").mkdir()
    err = fatal(["--source", str(source), "--out", str(tmp_path / "d")], capsys)
    assert "1 class folder" in err and "at least two" in err


def test_empty_class_folder(tmp_path, capsys):
    source = make_classes(tmp_path / "src", "glass", "paper")
    (source / "metal").mkdir()
    (source / "metal" / ".DS_Store").write_bytes(b"x")
    err = fatal(["--source", str(source), "--out", str(tmp_path / "d")], capsys)
    assert "without any image file: metal" in err and "remove" in err
    assert not (tmp_path / "d").exists()


def test_class_with_only_unusable_files(tmp_path, capsys):
    source = make_classes(tmp_path / "src", "glass", "paper")
    (source / "metal").mkdir()
    (source / "metal" / "broken.jpg").write_bytes(b"")
    err = fatal(["--source", str(source), "--out", str(tmp_path / "d")], capsys)
    assert "no usable image" in err and "metal: 1 empty-file" in err


def test_official_split_naming_missing_images(tmp_path, capsys, prepared_sample):
    out = tmp_path / "dataset"
    shutil.copytree(prepared_sample.out, out)
    before = tree_hashes(out)
    err = fatal(["--source", str(settings.SAMPLE_DIR), "--out", str(out), "--split", "official"], capsys)
    assert "official split names 2455 image(s) that are not in" in err and "--split stratified" in err
    assert tree_hashes(out) == before, "a failed run leaves the previous dataset untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


def test_out_must_be_a_dataset_or_empty_and_outside_the_source(tmp_path, capsys):
    source = make_classes(tmp_path / "src", "glass", "paper")
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("do not delete")
    assert "not made by" in fatal(["--source", str(source), "--out", str(other)], capsys)
    assert (other / "thesis.tex").read_text() == "do not delete"
    assert "must not contain each other" in fatal(["--source", str(source), "--out", str(source / "d")], capsys)


def test_bad_ratios(tmp_path, capsys):
    source = make_classes(tmp_path / "src", "glass", "paper")
    err = fatal(["--source", str(source), "--out", str(tmp_path / "d"), "--ratios", "0.8", "0.3", "0.1"], capsys)
    assert "summing to 1" in err


# ------------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_full_trashnet_official_split(real_data_dir, tmp_path):
    report = prepare.prepare(real_data_dir, tmp_path / "dataset", split="official")
    assert (len(report.rows), report.accepted, report.rejected) == (2527, 2521, 6)
    counts = report.counts()
    assert [sum(counts[s].values()) for s in settings.SPLITS] == [1764, 327, 430]
    rows = read_manifest(report.out)
    for a, b in (("glass/glass389.jpg", "plastic/plastic332.jpg"), ("glass/glass115.jpg", "metal/metal91.jpg"),
                 ("glass/glass176.jpg", "plastic/plastic152.jpg")):
        for path in (a, b):
            assert rows[path]["status"] == "rejected" and "duplicate-conflict" in rows[path]["reason"]
            assert rows[path]["split"] == rows[path]["output"] == ""
        assert rows[a]["sha256"] == rows[b]["sha256"]
    assert report.rejected_by_reason() == {"duplicate-conflict": 6}
    assert len(report.near_duplicate_groups()) >= 20  # reported, kept
    rebuilt = prepare.prepare(real_data_dir, tmp_path / "again", split="official", force=True)
    assert (rebuilt.out / "manifest.csv").read_bytes() == (report.out / "manifest.csv").read_bytes()
