"""Reading a source folder into manifest rows: walk it, reject what is not an image of a class, hash and decode.

One row per file seen (``MANIFEST_COLUMNS``); a rejected row says why in ``reason``, whose first word
(``reason_code``) is machine-readable. Never writes to the source. The policy is ``trashnet.data.prepare``'s docstring.
"""

from __future__ import annotations

import os
from pathlib import Path

from trashnet.core import fileio, images
from trashnet.core.errors import UserError

MANIFEST_COLUMNS = ("path", "class", "split", "sha256", "width", "height", "status", "reason", "output",
                    "phash", "near_duplicate_group", "notes")
PHASH_SIZE = 16  # 16 x 16 = 256-bit perceptual hash
LINK_OUTSIDE_NOTE = "link-outside-source"  # notes: the file was reached through a link leaving the source


class DataError(UserError, ValueError):
    """The source folder cannot be prepared; the message says what to fix."""


def reason_code(reason: str) -> str:
    """The machine-readable first word of a manifest reason (``duplicate of x`` -> ``duplicate``)."""
    return reason.split(":", 1)[0].split(" ", 1)[0]


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name in ("__MACOSX", "Thumbs.db", "desktop.ini")


def walk_files(folder: Path, rel: str) -> list[tuple[str, Path]]:
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
            found.extend(walk_files(Path(entry.path), child_rel))
        else:
            found.append((child_rel, Path(entry.path)))
    return found


def new_row(path: str, cls: str) -> dict[str, str]:
    row = dict.fromkeys(MANIFEST_COLUMNS, "")
    row.update({"path": path, "class": cls})
    return row


def reject(row: dict[str, str], reason: str) -> None:
    row.update(status="rejected", reason=reason, split="", output="")


def scan_source(source: Path) -> tuple[list[str], list[dict[str, str]], dict[str, Path]]:
    """Classes, one row per file seen (candidates have an empty status) and each row's file."""
    if not source.exists():
        raise DataError(f"source folder {source} does not exist", "pass --source with a folder of "
                        f"<class>/<image> files (or run `python -m trashnet download` first)")
    if not source.is_dir():
        raise DataError(f"source {source} is not a folder", "pass --source with a folder of <class>/<image> files")
    if not os.access(source, os.R_OK | os.X_OK):
        raise DataError(f"source folder {source} is not readable", "fix its permissions (chmod u+rx)")
    files = walk_files(source, "")
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
        row = new_row(shown, cls.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        if shown != rel:
            reject(row, "bad-name: the file or folder name is not valid UTF-8; rename it")
        elif any(_is_hidden(part) for part in parts):
            reject(row, "hidden: a hidden or system file (.DS_Store, ._*, Thumbs.db), not an image of the data set")
        elif not cls:
            reject(row, "no-class: not inside a <class>/ folder")
        elif len(parts) > 2:
            reject(row, f"nested-folder: inside a sub-folder of class folder {cls}/; move it up or remove it")
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


def hash_file(path: Path) -> str:
    try:
        return fileio.sha256_file(path)
    except OSError:
        return ""


def inspect_row(row: dict[str, str], path: Path) -> images.Inspection | None:
    if row["status"]:
        return None
    if not row["sha256"] and path.is_symlink() and not path.exists():
        reject(row, "unreadable: a symbolic link to a file that does not exist")
        return None
    if path.is_dir():
        reject(row, "nested-folder: a link to a folder inside a class folder; link the images instead")
        return None
    try:
        info = images.inspect(path, hash_size=PHASH_SIZE)
    except images.ImageError as error:
        reject(row, str(error))
        return None
    except MemoryError:
        reject(row, "decompression-bomb: decoding ran out of memory")
        return None
    row.update(status="accepted", width=str(info.width), height=str(info.height), phash=info.phash,
               notes=";".join(filter(None, [row["notes"], *info.notes])))
    return info
