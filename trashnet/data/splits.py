"""Assigning the accepted rows to train, validation and test: the TrashNet authors' lists, or a stratified split.

The stratified split is per class by largest remainder and places each near-duplicate group whole
(``trashnet.data.duplicates``); the official split rejects accepted files its lists do not name.
"""

from __future__ import annotations

import os
import random
from collections import Counter, defaultdict
from pathlib import Path

from trashnet.core import settings
from trashnet.data.scan import DataError, reject

# The TrashNet authors' split files: one "<file name> <label>" a line, labels one-indexed in this order.
OFFICIAL_LABELS = {1: "glass", 2: "paper", 3: "cardboard", 4: "plastic", 5: "metal", 6: "trash"}
OFFICIAL_FILES = {"train": "train.txt", "validation": "val.txt", "test": "test.txt"}


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


def apply_official_split(rows: list[dict[str, str]], source: Path) -> None:
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
            reject(row, "not-in-split: the official split files do not list this image")


def _targets(n: int, ratios: tuple[float, float, float]) -> list[int]:
    """Split ``n`` by ``ratios`` with the largest-remainder method (ties: the earlier split)."""
    exact = [n * r for r in ratios]
    counts = [int(x) for x in exact]
    order = sorted(range(len(ratios)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:n - sum(counts)]:
        counts[i] += 1
    return counts


def apply_stratified_split(rows: list[dict[str, str]], seed: int, ratios: tuple[float, float, float]) -> None:
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


def official_split_fits(source: str | os.PathLike) -> tuple[int, int]:
    """(images the official split lists, how many of them are not in ``source``): 0 missing = it fits."""
    assignment = read_official_split()
    source = Path(source)
    return len(assignment), sum(not os.path.lexists(source / key) for key in assignment)
