"""Data preparation: validate every file of a ``<class>/<image>`` folder, split, write a manifest.

PROVISIONAL minimal version (the foundation issue replaces the internals, keeping this API):
no duplicate detection, stratified or official split, accepted images copied as-is.
"""

from __future__ import annotations

import csv
import io
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from trashnet import fileio, images, settings

MANIFEST_COLUMNS = ("path", "class", "split", "sha256", "width", "height", "status", "reason", "output")


class DataError(ValueError):
    """The source folder cannot be prepared; the message says what to fix."""


@dataclass
class PrepareReport:
    out: Path
    rows: list[dict[str, str]] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(row["status"] == "accepted" for row in self.rows)

    @property
    def rejected(self) -> int:
        return sum(row["status"] == "rejected" for row in self.rows)


def prepare(source: str | os.PathLike, out: str | os.PathLike, *, split: str = "stratified", seed: int = 42,
            ratios: tuple[float, float, float] = (0.70, 0.15, 0.15)) -> PrepareReport:
    source, out = Path(source), Path(out)
    classes = sorted(p.name for p in source.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(f"{source}: found {len(classes)} class folders; need at least two")
    rows = []
    for cls in classes:
        for path in sorted((source / cls).iterdir()):
            rel = f"{cls}/{path.name}"
            row = dict.fromkeys(MANIFEST_COLUMNS, "")
            row.update(path=rel, **{"class": cls})
            try:
                image, notes = images.open_rgb(path)
                row.update(sha256=fileio.sha256_file(path), width=str(image.width), height=str(image.height),
                           status="accepted", reason=";".join(notes))
            except images.ImageError as error:
                row.update(status="rejected", reason=str(error))
            rows.append(row)
    accepted = [r for r in rows if r["status"] == "accepted"]
    rng = random.Random(seed)
    for cls in classes:
        members = [r for r in accepted if r["class"] == cls]
        rng.shuffle(members)
        n_train = round(len(members) * ratios[0])
        n_val = round(len(members) * ratios[1])
        for i, row in enumerate(members):
            row["split"] = "train" if i < n_train else "validation" if i < n_train + n_val else "test"
    if out.exists():
        shutil.rmtree(out)
    for row in accepted:
        row["output"] = f"{row['split']}/{row['path']}"
        target = out / row["output"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / row["path"], target)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    fileio.atomic_write_text(out / settings.MANIFEST_NAME, buffer.getvalue())
    return PrepareReport(out, rows)
