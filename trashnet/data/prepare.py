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
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import random
import shutil
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from trashnet.core import fileio, images, owned, settings
from trashnet.core.errors import UserError, os_error_hint, os_error_text

MANIFEST_COLUMNS = ("path", "class", "split", "sha256", "width", "height", "status", "reason", "output",
                    "phash", "near_duplicate_group", "notes")
SPLIT_METHODS = ("official", "stratified")
DEFAULT_SEED = 42
DEFAULT_RATIOS = (0.70, 0.15, 0.15)
PHASH_SIZE = 16  # 16 x 16 = 256-bit perceptual hash
NEAR_DUPLICATE_DISTANCE = 52  # Hamming distance (of 256 bits) at or under which two images are near-duplicates
STAMP_NAME = "prepare.json"
FORMAT_VERSION = 2  # bump when the output layout or manifest meaning changes (2: output checksums, stamp)
OWNED_KIND = "dataset"  # owned.stamp kind: the only folders `prepare` ever replaces
LINK_OUTSIDE_NOTE = "link-outside-source"  # notes: the file was reached through a link leaving the source
# The TrashNet authors' split files: one "<file name> <label>" a line, labels one-indexed in this order.
OFFICIAL_LABELS = {1: "glass", 2: "paper", 3: "cardboard", 4: "plastic", 5: "metal", 6: "trash"}
OFFICIAL_FILES = {"train": "train.txt", "validation": "val.txt", "test": "test.txt"}
_MAX_LISTED = 20  # rejected files listed one by one in the summary
_WORKERS = max(1, min(8, os.cpu_count() or 1))


class DataError(UserError, ValueError):
    """The source folder cannot be prepared; the message says what to fix."""


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
        duplicates = reasons.get("duplicate", 0)
        conflicts = reasons.get("duplicate-conflict", 0)
        lines.append(f"Exact duplicates: {duplicates} later copies rejected; {conflicts} files with conflicting "
                     f"labels rejected (all copies)")
        groups = self.near_duplicate_groups()
        crossing = sum(len({r["split"] for r in members}) > 1 for members in groups.values())
        mixed = sum(len({r["class"] for r in members}) > 1 for members in groups.values())
        lines.append(f"Near-duplicates (phash, Hamming <= {NEAR_DUPLICATE_DISTANCE}): {len(groups)} groups, "
                     f"{sum(len(m) for m in groups.values())} images kept"
                     + (f"; {crossing} groups span more than one split" if crossing else "")
                     + (f"; {mixed} groups mix labels (check them)" if mixed else ""))
        outside = sum(LINK_OUTSIDE_NOTE in row["notes"].split(";") for row in self.rows)
        if outside:
            lines.append(f"Links leaving the source, followed: {outside} files (notes: {LINK_OUTSIDE_NOTE})")
        lines.append(f"Manifest: {self.out / settings.MANIFEST_NAME}")
        return "\n".join(lines)


def reason_code(reason: str) -> str:
    """The machine-readable first word of a manifest reason (``duplicate of x`` -> ``duplicate``)."""
    return reason.split(":", 1)[0].split(" ", 1)[0]


# ---------------------------------------------------------------------------------------------- scanning


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name in ("__MACOSX", "Thumbs.db", "desktop.ini")


def _walk_files(folder: Path, rel: str) -> list[tuple[str, Path]]:
    """Every non-directory entry under ``folder``, sorted; recursive, following links to folders only at
    the top level (a linked class folder), so a link loop cannot trap the walk."""
    found = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        raise DataError(f"cannot read folder {folder} ({error.strerror})", "make it readable") from error
    for entry in entries:
        child_rel = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_dir(follow_symlinks=not rel):
            found.extend(_walk_files(Path(entry.path), child_rel))
        else:
            found.append((child_rel, Path(entry.path)))
    return found


def _new_row(path: str, cls: str) -> dict[str, str]:
    row = dict.fromkeys(MANIFEST_COLUMNS, "")
    row.update({"path": path, "class": cls})
    return row


def _reject(row: dict[str, str], reason: str) -> None:
    row.update(status="rejected", reason=reason, split="", output="")


def _scan(source: Path) -> tuple[list[str], list[dict[str, str]], dict[str, Path]]:
    """Classes, one row per file seen (candidates have an empty status) and each row's file."""
    if not source.exists():
        raise DataError(f"source folder {source} does not exist", "pass --source with a folder of "
                        f"<class>/<image> files (or run `python -m trashnet download` first)")
    if not source.is_dir():
        raise DataError(f"source {source} is not a folder", "pass --source with a folder of <class>/<image> files")
    if not os.access(source, os.R_OK | os.X_OK):
        raise DataError(f"source folder {source} is not readable", "fix its permissions (chmod u+rx)")
    files = _walk_files(source, "")
    top = sorted(entry for entry in os.listdir(source) if (source / entry).is_dir())
    classes = [name for name in top if not _is_hidden(name)]
    if len(classes) < 2:
        raise DataError(
            f"{source} has {len(classes)} class folder(s){' (' + ', '.join(classes) + ')' if classes else ''}",
            "need at least two, one sub-folder per class holding its images (e.g. glass/, paper/)")
    rows, where = [], {}
    real_source = os.path.realpath(source)
    for rel, path in files:
        parts = rel.split("/")
        cls = parts[0] if len(parts) > 1 and parts[0] in classes else ""
        shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")  # the manifest is UTF-8
        row = _new_row(shown, cls.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        if shown != rel:
            _reject(row, "bad-name: the file or folder name is not valid UTF-8; rename it")
        elif any(_is_hidden(part) for part in parts):
            _reject(row, "hidden: a hidden or system file (.DS_Store, ._*, Thumbs.db), not an image of the data set")
        elif not cls:
            _reject(row, "no-class: not inside a <class>/ folder")
        elif len(parts) > 2:
            _reject(row, f"nested-folder: inside a sub-folder of class folder {cls}/; move it up or remove it")
        real = os.path.realpath(path)
        if os.path.commonpath([real, real_source]) != real_source:  # followed, and recorded (docs/data.md)
            row["notes"] = LINK_OUTSIDE_NOTE
        rows.append(row)
        where[shown] = path
    empty = [cls for cls in classes if not any(r["class"] == cls and not r["status"] for r in rows)]
    if empty:
        raise DataError(f"class folder(s) without any image file: {', '.join(empty)} (in {source})",
                        "add images or remove the empty folder(s)")
    return classes, rows, where


def _hash_file(path: Path) -> str:
    try:
        return fileio.sha256_file(path)
    except OSError:
        return ""


def _check(row: dict[str, str], path: Path) -> images.Inspection | None:
    if row["status"]:
        return None
    if not row["sha256"] and path.is_symlink() and not path.exists():
        _reject(row, "unreadable: a symbolic link to a file that does not exist")
        return None
    if path.is_dir():
        _reject(row, "nested-folder: a link to a folder inside a class folder; link the images instead")
        return None
    try:
        info = images.inspect(path, hash_size=PHASH_SIZE)
    except images.ImageError as error:
        _reject(row, str(error))
        return None
    except MemoryError:
        _reject(row, "decompression-bomb: decoding ran out of memory")
        return None
    row.update(status="accepted", width=str(info.width), height=str(info.height), phash=info.phash,
               notes=";".join(filter(None, [row["notes"], *info.notes])))
    return info


# ------------------------------------------------------------------------------------------- duplicates


def _exact_duplicates(rows: list[dict[str, str]]) -> None:
    by_hash: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        if row["status"] == "accepted":
            by_hash[row["sha256"]].append(row)
    for copies in by_hash.values():
        if len(copies) < 2:
            continue
        labels = sorted({row["class"] for row in copies})
        if len(labels) > 1:
            listing = ", ".join(f"{row['path']} ({row['class']})" for row in copies)
            for row in copies:
                _reject(row, f"duplicate-conflict: identical bytes carry different labels ({listing}); "
                             f"all copies rejected")
        else:
            for row in copies[1:]:
                _reject(row, f"duplicate of {copies[0]['path']} (kept)")


def _hamming_pairs(hashes: list[str], limit: int) -> Iterator[tuple[int, int]]:
    """Index pairs i < j whose hex hashes differ in at most ``limit`` bits, yielded block by block: memory
    is one 1024 x n distance block, never the list of pairs (which grows with n squared)."""
    if not hashes:
        return
    raw = np.array([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in hashes])
    bits = np.unpackbits(raw, axis=1).astype(np.float32)
    ones = bits.sum(axis=1)
    for start in range(0, len(bits), 1024):
        block = bits[start:start + 1024]
        # |a xor b| = |a| + |b| - 2 a.b, exact in float32 for 256 bits
        distance = ones[start:start + 1024, None] + ones[None, :] - 2.0 * (block @ bits.T)
        for i, j in zip(*np.nonzero(distance <= limit + 0.5)):
            if start + i < j:
                yield int(start + i), int(j)


def _near_duplicates(rows: list[dict[str, str]]) -> None:
    accepted = [row for row in rows if row["status"] == "accepted"]
    parent = list(range(len(accepted)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        parent[max(a, b)] = min(a, b)  # the root is the group's first path

    # Images with the same hash form one bucket, joined without comparing them pairwise (10,000 look-alike
    # photos cost one comparison, not 50 million); only the buckets' distinct hashes are compared.
    first: dict[str, int] = {}
    for i, row in enumerate(accepted):
        union(first.setdefault(row["phash"], i), i)
    distinct = list(first)
    for i, j in _hamming_pairs(distinct, NEAR_DUPLICATE_DISTANCE):
        union(first[distinct[i]], first[distinct[j]])
    sizes = Counter(find(i) for i in range(len(accepted)))
    for i, row in enumerate(accepted):
        root = find(i)
        row["near_duplicate_group"] = accepted[root]["path"] if sizes[root] > 1 else ""


# ---------------------------------------------------------------------------------------------- splits


def read_official_split(folder: Path = settings.OFFICIAL_SPLITS_DIR) -> dict[str, str]:
    """``{"<class>/<file name>": split}`` from the TrashNet authors' three split files."""
    assignment: dict[str, str] = {}
    for split, name in OFFICIAL_FILES.items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"official split file {path} is missing: restore it from the repository")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) not in OFFICIAL_LABELS:
                raise DataError(f"{path}:{number}: expected '<file name> <label 1-6>', got {line!r}")
            key = f"{OFFICIAL_LABELS[int(parts[1])]}/{parts[0]}"
            if key in assignment:
                raise DataError(f"{path}:{number}: {key} is already listed in the {assignment[key]} split")
            assignment[key] = split
    return assignment


def _official_split(rows: list[dict[str, str]], source: Path) -> None:
    assignment = read_official_split()
    present = {row["path"] for row in rows}
    missing = sorted(key for key in assignment if key not in present)
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise DataError(
            f"the official split names {len(missing)} image(s) that are not in {source}: {shown}",
            "point --source at the complete TrashNet dataset-resized folder (python -m trashnet download), "
            "or use --split stratified for another or a partial data set")
    for row in rows:
        if row["status"] != "accepted":
            continue
        if row["path"] in assignment:
            row["split"] = assignment[row["path"]]
        else:
            _reject(row, "not-in-split: the official split files do not list this image")


def _targets(n: int, ratios: tuple[float, float, float]) -> list[int]:
    """Split ``n`` by ``ratios`` with the largest-remainder method (ties: the earlier split)."""
    exact = [n * r for r in ratios]
    counts = [int(x) for x in exact]
    order = sorted(range(len(ratios)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:n - sum(counts)]:
        counts[i] += 1
    return counts


def _stratified_split(rows: list[dict[str, str]], seed: int, ratios: tuple[float, float, float]) -> None:
    accepted = [row for row in rows if row["status"] == "accepted"]
    per_class = Counter(row["class"] for row in accepted)
    target = {cls: _targets(n, ratios) for cls, n in per_class.items()}
    have = {cls: [0, 0, 0] for cls in per_class}
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in accepted:
        groups[row["near_duplicate_group"] or row["path"]].append(row)
    order = [groups[key] for key in sorted(groups)]
    random.Random(seed).shuffle(order)
    order.sort(key=len, reverse=True)  # stable: big groups first, shuffled within a size
    for members in order:
        score = [sum(target[r["class"]][s] - have[r["class"]][s] for r in members) for s in range(3)]
        best = max(range(3), key=lambda s: (score[s], -s))
        for row in members:
            row["split"] = settings.SPLITS[best]
            have[row["class"]][best] += 1


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
    code = "".join(fileio.sha256_file(Path(m.__file__)) for m in (images, sys.modules[__name__]))
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


def official_split_fits(source: str | os.PathLike) -> tuple[int, int]:
    """(images the official split lists, how many of them are not in ``source``): 0 missing = it fits."""
    assignment = read_official_split()
    source = Path(source)
    return len(assignment), sum(not os.path.lexists(source / key) for key in assignment)


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
    classes, rows, where = _scan(source)
    _check_replaceable(out)
    owned.remove_leftovers(out.parent, _leftover_prefixes(out))  # of a killed prepare, stamped as ours

    options: dict = {"split": split}
    if split == "stratified":
        options.update(seed=int(seed), ratios=list(ratios))
    else:
        options["split_files"] = {name: fileio.sha256_file(settings.OFFICIAL_SPLITS_DIR / name)
                                  for name in OFFICIAL_FILES.values()
                                  if (settings.OFFICIAL_SPLITS_DIR / name).is_file()}
    with ThreadPoolExecutor(_WORKERS) as pool:
        for row, digest in zip(rows, pool.map(_hash_file, [where[row["path"]] for row in rows])):
            row["sha256"] = digest
    fingerprint = _fingerprint(rows, options)
    if not force and (previous := _existing(out, fingerprint)) is not None:
        return PrepareReport(out, previous, skipped=True, split=split, seed=int(seed),
                             seconds=time.perf_counter() - started)

    with ThreadPoolExecutor(_WORKERS) as pool:
        checked = list(pool.map(lambda r: _check(r, where[r["path"]]), rows))
    infos = {row["path"]: info for row, info in zip(rows, checked) if info is not None}
    _exact_duplicates(rows)
    _near_duplicates(rows)
    if split == "official":
        _official_split(rows, source)
    else:
        _stratified_split(rows, int(seed), ratios)
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
