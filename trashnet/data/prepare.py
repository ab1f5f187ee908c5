"""Data preparation: validate every file of a ``<class>/<image>`` folder, split it, write a manifest.

``python -m trashnet prepare --source DIR --out DIR [--split official|stratified] [--seed N]`` or
``prepare(source, out, split=..., seed=..., ratios=...)`` reads any folder of ``<class>/<image>`` files
(TrashNet's ``dataset-resized`` layout), never writes to it, and builds::

    OUT/{train,validation,test}/<class>/<image>   the accepted images
    OUT/manifest.csv                             one row for EVERY file seen, accepted or rejected
    OUT/prepare.json                             options, counts and the fingerprint of the inputs

Policy (also in ``trashnet/resources/README.md``):

- **Validation.** Every file is hashed (sha256) and fully decoded. Zero-byte, non-image, truncated and
  corrupt files, decompression bombs (``images.MAX_PIXELS``), hidden files (``.DS_Store``, ``._x.jpg``),
  files outside a class folder or in a sub-folder of one are *rejected* with a reason; the run goes on
  and ``accepted + rejected = files seen``.
- **Conversion.** An upright 8-bit RGB JPEG or PNG is copied byte for byte. Anything else (grayscale,
  palette, RGBA/LA, CMYK, 16-bit, an EXIF rotation, another format such as WebP or GIF) is decoded, turned
  upright, converted to 8-bit RGB (transparency on white) and written as PNG, lossless, under the same
  stem (``x.png``); the ``notes`` column says what was done.
- **Exact duplicates** (same sha256): when all copies carry the same label the first (by path) is kept
  and each later copy is rejected as ``duplicate of <kept path>``. When the copies carry *different*
  labels, no label can be trusted: ALL copies are rejected as ``duplicate-conflict``, so the same photo
  never lands in two splits or two classes. (TrashNet has three such pairs.)
- **Near-duplicates**: imagehash's perceptual hash (``hash_size=16``, 256 bits) within Hamming distance
  ``NEAR_DUPLICATE_DISTANCE`` (52) links images into groups (transitively). They are kept, reported in the
  ``near_duplicate_group`` column (the group's first path) and the summary. The stratified split puts a
  whole group into one split; the official split is kept as published and the summary counts the groups
  it splits apart.
- **Splits.** ``official``: the TrashNet authors' lists (``resources/trashnet_splits``); an accepted file
  that they do not list is rejected (``not-in-split``), a listed file missing from the source is an
  error. ``stratified``: per class, ``ratios`` (default 70/15/15) by largest remainder; near-duplicate
  groups, shuffled by ``seed``, are placed largest first into the split that most lacks their classes.
- **Reproducible and atomic.** Rows are sorted by path and nothing time-dependent is written, so the same
  inputs and options give a byte-identical manifest. The dataset is built in a temporary folder beside
  ``OUT`` and swapped in by renames; when ``OUT`` already holds a dataset prepared from identical inputs
  (file checksums, options, split files, this code), the work is skipped.
- Fatal problems (missing or unreadable source, fewer than two class folders, an empty class folder or
  one with no usable image, a split file naming a missing image) raise ``DataError`` whose message says
  what to fix; the CLI prints it and exits 1.

This module runs the steps and writes the data set; the steps live in ``trashnet.data.scan`` (reading and
validating), ``trashnet.data.duplicates`` and ``trashnet.data.splits``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from trashnet.core import fileio, images, owned, settings
from trashnet.core.errors import os_error_hint, os_error_text
from trashnet.data import duplicates, scan, splits
from trashnet.data.scan import MANIFEST_COLUMNS, DataError, reason_code

SPLIT_METHODS = ("official", "stratified")
DEFAULT_SEED = 42
DEFAULT_RATIOS = (0.70, 0.15, 0.15)
STAMP_NAME = "prepare.json"
FORMAT_VERSION = 2  # bump when the output layout or manifest meaning changes (2: output checksums, stamp)
OWNED_KIND = "dataset"  # owned.stamp kind: the only folders `prepare` ever replaces
_MAX_LISTED = 20  # rejected files listed one by one in the summary
_WORKERS = max(1, min(8, os.cpu_count() or 1))


@dataclass
class PrepareReport:
    out: Path
    rows: list[dict[str, str]] = field(default_factory=list)
    skipped: bool = False  # True: an identical prepared dataset already existed
    split: str = ""
    seed: int = DEFAULT_SEED
    seconds: float = 0.0

    @property
    def accepted(self) -> int:
        return sum(row["status"] == "accepted" for row in self.rows)

    @property
    def rejected(self) -> int:
        return sum(row["status"] == "rejected" for row in self.rows)

    def counts(self) -> dict[str, dict[str, int]]:
        """Accepted images per split and class."""
        table: dict[str, dict[str, int]] = {name: {} for name in settings.SPLITS}
        for row in self.rows:
            if row["status"] == "accepted":
                table[row["split"]][row["class"]] = table[row["split"]].get(row["class"], 0) + 1
        return {name: dict(sorted(by_class.items())) for name, by_class in table.items()}

    def rejected_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(reason_code(r["reason"]) for r in self.rows if r["status"] == "rejected").items()))

    def near_duplicate_groups(self) -> dict[str, list[dict[str, str]]]:
        groups: dict[str, list[dict[str, str]]] = defaultdict(list)
        for row in self.rows:
            if row["near_duplicate_group"]:
                groups[row["near_duplicate_group"]].append(row)
        return dict(groups)

    def summary(self) -> str:
        """The on-screen summary: counts per split and class, rejections with reasons, duplicates."""
        lines = [f"{'Reused' if self.skipped else 'Prepared'} {self.out} ({self.split} split"
                 + (f", seed {self.seed}" if self.split == "stratified" else "") + f", {self.seconds:.1f} s)"
                 + (": identical inputs and options, nothing to do" if self.skipped else "")]
        counts = self.counts()
        classes = sorted({row["class"] for row in self.rows if row["status"] == "accepted"})
        width = max([len(c) for c in classes] + [10])
        lines.append(f"  {'class':<{width}} " + " ".join(f"{s:>10}" for s in settings.SPLITS) + f" {'total':>7}")
        for cls in classes:
            per = [counts[s].get(cls, 0) for s in settings.SPLITS]
            lines.append(f"  {cls:<{width}} " + " ".join(f"{n:>10}" for n in per) + f" {sum(per):>7}")
        totals = [sum(counts[s].values()) for s in settings.SPLITS]
        lines.append(f"  {'total':<{width}} " + " ".join(f"{n:>10}" for n in totals) + f" {sum(totals):>7}")
        lines.append(f"Files seen: {len(self.rows)} = {self.accepted} accepted + {self.rejected} rejected")
        reasons = self.rejected_by_reason()
        if reasons:
            lines.append("Rejected by reason: " + ", ".join(f"{code} {n}" for code, n in reasons.items()))
            rejected = [row for row in self.rows if row["status"] == "rejected"]
            for row in rejected[:_MAX_LISTED]:
                lines.append(f"  {row['path']}: {row['reason']}")
            if len(rejected) > _MAX_LISTED:
                lines.append(f"  ... and {len(rejected) - _MAX_LISTED} more (see manifest.csv)")
        later_copies = reasons.get("duplicate", 0)
        conflicts = reasons.get("duplicate-conflict", 0)
        lines.append(f"Exact duplicates: {later_copies} later copies rejected; {conflicts} files with conflicting "
                     f"labels rejected (all copies)")
        groups = self.near_duplicate_groups()
        crossing = sum(len({r["split"] for r in members}) > 1 for members in groups.values())
        mixed = sum(len({r["class"] for r in members}) > 1 for members in groups.values())
        lines.append(f"Near-duplicates (phash, Hamming <= {duplicates.NEAR_DUPLICATE_DISTANCE}): {len(groups)} groups, "
                     f"{sum(len(m) for m in groups.values())} images kept"
                     + (f"; {crossing} groups span more than one split" if crossing else "")
                     + (f"; {mixed} groups mix labels (check them)" if mixed else ""))
        outside = sum(scan.LINK_OUTSIDE_NOTE in row["notes"].split(";") for row in self.rows)
        if outside:
            lines.append(f"Links leaving the source, followed: {outside} files (notes: {scan.LINK_OUTSIDE_NOTE})")
        lines.append(f"Manifest: {self.out / settings.MANIFEST_NAME}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- output


def _assign_outputs(rows: list[dict[str, str]], infos: dict[str, images.Inspection]) -> None:
    used: set[str] = set()
    for row in rows:
        if row["status"] != "accepted":
            continue
        name = row["path"].split("/", 1)[1]
        base, dot, ext = name.rpartition(".")
        base, suffix = (base, f".{ext}") if dot and base else (name, "")
        if infos[row["path"]].needs_conversion:
            suffix = ".png"
            row["notes"] = ";".join(filter(None, [row["notes"], "written-as-png"]))
        folder = f"{row['split']}/{row['class']}"
        candidate, n = f"{folder}/{base}{suffix}", 1
        while candidate.lower() in used:  # unique on case-insensitive file systems too
            n += 1
            candidate = f"{folder}/{base}-{n}{suffix}"
        used.add(candidate.lower())
        row["output"] = candidate


def _write_one(source: Path, target: Path, convert: bool) -> str:
    """Write one accepted image; returns the sha256 of what was written (prepare.json vouches for it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if convert:
        image, _ = images.open_rgb(source)
        image.save(target, format="PNG")
    else:
        with fileio.open_regular(source) as reader, open(target, "wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
    return fileio.sha256_file(target)


def _manifest_text(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _check_replaceable(out: Path) -> None:
    owned.check_replaceable(out, OWNED_KIND, made_by="`prepare`",
                            hint="choose another --out, or move that folder away first")


def _leftover_prefixes(out: Path) -> tuple[str, str]:
    return f".{out.name}.tmp-", f".{out.name}.old-"


def _swap_in(temp: Path, out: Path) -> None:
    """Move the finished ``temp`` folder to ``out``, replacing an earlier dataset by renames."""
    owned.replace(out, temp, kind=OWNED_KIND, made_by="`prepare`", aside=_leftover_prefixes(out)[1],
                  hint="choose another --out, or move that folder away first")


def verify_prepared(out: str | os.PathLike) -> str | None:
    """None when ``out`` holds an intact prepared data set, else why not.

    Intact: ``prepare.json`` vouches for ``manifest.csv`` (sha256) and for every accepted image the manifest
    lists (the sha256 of the file written); every one of those files is present with that checksum.
    """
    out = Path(out)
    try:
        stamp = fileio.read_json(out / STAMP_NAME)
        if not isinstance(stamp, dict) or stamp.get("format") != FORMAT_VERSION:
            return "prepared by another version of this code"
        if fileio.sha256_file(out / settings.MANIFEST_NAME) != stamp.get("manifest_sha256"):
            return f"{settings.MANIFEST_NAME} changed"
        with open(out / settings.MANIFEST_NAME, newline="", encoding="utf-8") as handle:
            outputs = [row["output"] for row in csv.DictReader(handle) if row["status"] == "accepted"]
    except (OSError, ValueError, KeyError) as error:
        return f"cannot read its records ({error})"
    expected = stamp.get("outputs")
    if not isinstance(expected, dict) or set(expected) != set(outputs):
        return "its checksums do not list the images of the manifest"

    def actual(rel: str) -> str:
        try:
            return fileio.sha256_file(out / rel)
        except OSError:
            return ""

    with ThreadPoolExecutor(_WORKERS) as pool:
        bad = [rel for rel, digest in zip(outputs, pool.map(actual, outputs)) if digest != expected[rel]]
    if bad:
        return f"{len(bad)} prepared image(s) missing or changed (e.g. {bad[0]})"
    return None


def _fingerprint(rows: list[dict[str, str]], options: dict) -> str:
    modules = (images, scan, duplicates, splits, sys.modules[__name__])  # the code that decides the rows
    code = "".join(fileio.sha256_file(Path(m.__file__)) for m in modules)
    files = [(row["path"], row["sha256"]) for row in rows]
    return fileio.sha256_bytes(json.dumps([FORMAT_VERSION, options, code, files]).encode())


def _existing(out: Path, fingerprint: str) -> list[dict[str, str]] | None:
    """The manifest rows of an intact dataset in ``out`` prepared from the same fingerprint, else None."""
    if not owned.is_ours(out, OWNED_KIND):
        return None
    try:
        stamp = fileio.read_json(out / STAMP_NAME)
        if stamp.get("fingerprint") != fingerprint or verify_prepared(out) is not None:
            return None
        with open(out / settings.MANIFEST_NAME, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, ValueError, AttributeError, KeyError):
        return None


# ---------------------------------------------------------------------------------------------- prepare


def prepare(source: str | os.PathLike, out: str | os.PathLike, *, split: str = "stratified",
            seed: int = DEFAULT_SEED, ratios: tuple[float, float, float] = DEFAULT_RATIOS,
            force: bool = False) -> PrepareReport:
    """Validate, deduplicate and split ``source`` into ``out`` (see the module docstring for the policy)."""
    started = time.perf_counter()
    source, out = Path(source).expanduser().resolve(), Path(out).expanduser().resolve()
    if split not in SPLIT_METHODS:
        raise DataError(f"unknown split {split!r}", f"use one of {', '.join(SPLIT_METHODS)}")
    ratios = tuple(float(r) for r in ratios)
    if (len(ratios) != 3 or not all(math.isfinite(r) and r >= 0 for r in ratios)
            or abs(sum(ratios) - 1.0) > 1e-6):
        raise DataError(f"ratios {ratios} must be three non-negative numbers (train validation test) summing to 1",
                        "e.g. --ratios 0.7 0.15 0.15")
    if out == source or source in out.parents or out in source.parents:
        raise DataError(f"--out {out} and --source {source} must not contain each other (the source is never "
                        f"written to)", "choose an output folder outside it")
    classes, rows, where = scan.scan_source(source)
    _check_replaceable(out)
    owned.remove_leftovers(out.parent, _leftover_prefixes(out))  # of a killed prepare, stamped as ours

    options: dict = {"split": split}
    if split == "stratified":
        options.update(seed=int(seed), ratios=list(ratios))
    else:
        options["split_files"] = {name: fileio.sha256_file(settings.OFFICIAL_SPLITS_DIR / name)
                                  for name in splits.OFFICIAL_FILES.values()
                                  if (settings.OFFICIAL_SPLITS_DIR / name).is_file()}
    with ThreadPoolExecutor(_WORKERS) as pool:
        for row, digest in zip(rows, pool.map(scan.hash_file, [where[row["path"]] for row in rows])):
            row["sha256"] = digest
    fingerprint = _fingerprint(rows, options)
    if not force and (previous := _existing(out, fingerprint)) is not None:
        return PrepareReport(out, previous, skipped=True, split=split, seed=int(seed),
                             seconds=time.perf_counter() - started)

    with ThreadPoolExecutor(_WORKERS) as pool:
        checked = list(pool.map(lambda r: scan.inspect_row(r, where[r["path"]]), rows))
    infos = {row["path"]: info for row, info in zip(rows, checked) if info is not None}
    duplicates.reject_exact_duplicates(rows)
    duplicates.group_near_duplicates(rows)
    if split == "official":
        splits.apply_official_split(rows, source)
    else:
        splits.apply_stratified_split(rows, int(seed), ratios)
    unusable = [cls for cls in classes if not any(r["class"] == cls and r["status"] == "accepted" for r in rows)]
    if unusable:
        details = "; ".join(
            f"{cls}: " + ", ".join(f"{n} {code}" for code, n in sorted(Counter(
                reason_code(r["reason"]) for r in rows if r["class"] == cls).items())) for cls in unusable)
        raise DataError(f"class folder(s) with no usable image: {details}", "add valid images to them or remove "
                        "the folder(s); `prepare` lists the reason for every file")
    _assign_outputs(rows, infos)

    report = PrepareReport(out, rows, split=split, seed=int(seed))
    try:
        temp = owned.make_temp_dir(out.parent, _leftover_prefixes(out)[0])
    except OSError as error:
        raise DataError(f"cannot write the data set to {out}: {os_error_text(error)}",
                        os_error_hint(error, "--out")) from error
    try:
        accepted = [row for row in rows if row["status"] == "accepted"]
        with ThreadPoolExecutor(_WORKERS) as pool:
            written = list(pool.map(lambda r: _write_one(where[r["path"]], temp / r["output"],
                                                         infos[r["path"]].needs_conversion), accepted))
        manifest = _manifest_text(rows)
        (temp / settings.MANIFEST_NAME).write_text(manifest, encoding="utf-8")
        stamp = {"format": FORMAT_VERSION, "fingerprint": fingerprint, "options": options,
                 "source": str(source), "manifest_sha256": fileio.sha256_bytes(manifest.encode("utf-8")),
                 "files_seen": len(rows), "accepted": report.accepted, "rejected": report.rejected,
                 "counts": report.counts(), "rejected_by_reason": report.rejected_by_reason(),
                 "outputs": {row["output"]: digest for row, digest in zip(accepted, written)}}
        (temp / STAMP_NAME).write_text(fileio.dumps_json(stamp), encoding="utf-8")
        owned.stamp(temp, OWNED_KIND)  # last: a finished data set, free of the temporary owner's pid
        _swap_in(temp, out)
    except OSError as error:
        owned.replace(temp, quiet=True)
        if error.filename is not None and str(error.filename).startswith(str(source)):
            raise DataError(f"cannot read {os_error_text(error)} (it changed while `prepare` ran)",
                            "run it again") from error
        raise DataError(f"cannot write the data set to {out}: {os_error_text(error)}",
                        os_error_hint(error, "--out")) from error
    except BaseException:
        owned.replace(temp, quiet=True)
        raise
    report.seconds = time.perf_counter() - started
    return report


# ---------------------------------------------------------------------------------------------- CLI


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", type=Path, default=None,
                        help="folder of <class>/<image> files (default: $TRASHNET_DATA, else the bundled sample)")
    parser.add_argument("--out", type=Path, default=None,
                        help="dataset folder to write (default: dataset/<profile>/ under the output root)")
    parser.add_argument("--profile", default="quick",
                        help="the profile whose dataset/<profile>/ folder --out defaults to (default quick)")
    parser.add_argument("--split", choices=SPLIT_METHODS, default="stratified",
                        help="official: the TrashNet authors' lists (full TrashNet only); "
                             "stratified: per-class random split (default)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the stratified split (default 42)")
    parser.add_argument("--ratios", type=float, nargs=3, default=list(DEFAULT_RATIOS),
                        metavar=("TRAIN", "VAL", "TEST"), help="stratified split ratios (default 0.70 0.15 0.15)")
    parser.add_argument("--force", action="store_true", help="rebuild even when an identical dataset exists")


def command(args: argparse.Namespace) -> int:
    settings.check_profile_name(args.profile)  # even with --out: a typo is not ignored
    source = args.source if args.source is not None else settings.default_data_source()
    out = args.out if args.out is not None else settings.Layout.default(args.profile).dataset
    report = prepare(source, out, split=args.split, seed=args.seed, ratios=tuple(args.ratios), force=args.force)
    print(report.summary())
    return 0
