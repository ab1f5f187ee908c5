"""Folders this project made, and the only folders it ever replaces or removes.

Every folder a command replaces or deletes as a whole (a prepared data set, a variant's run folder, the
report's notebook copies, a download) carries a stamp file, ``.trashnet-output``, a JSON record written
when the project creates the folder. A folder without that stamp belongs to the user: it is refused with
a one-line message, never deleted, whatever files it holds. (A ``manifest.csv`` proves nothing: anyone can
have one.) An empty folder may be replaced: nothing is lost.

Temporary folders (``.<name>.tmp-*`` and the like) are stamped with the owning process id and host when
they are created, so a later run removes the leftovers of a killed one, and only those.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

from trashnet.core.errors import UserError

STAMP_NAME = ".trashnet-output"
_TOOL = "trashnet"


class NotOursError(UserError):
    """A folder would be replaced or removed, but the project did not make it."""


def stamp(folder: str | os.PathLike, kind: str, *, pid: int | None = None) -> Path:
    """Mark ``folder`` as made by this project (``kind`` says what it is). ``pid``: a temporary folder's
    owner, recorded so a leftover of a killed process can be told from one in use."""
    record: dict = {"by": _TOOL, "kind": kind}
    if pid is not None:
        record.update(pid=pid, host=socket.gethostname())
    path = Path(folder) / STAMP_NAME
    path.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_stamp(folder: str | os.PathLike) -> dict | None:
    """The stamp of a real folder (not a link to one) made by this project, else None."""
    folder = Path(folder)
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return None
        path = folder / STAMP_NAME
        if not stat.S_ISREG(os.lstat(path).st_mode) or os.lstat(path).st_size > 4096:
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("by") == _TOOL else None


def is_ours(folder: str | os.PathLike, kind: str | None = None) -> bool:
    record = read_stamp(folder)
    return record is not None and (kind is None or record.get("kind") == kind)


def _is_empty_dir(folder: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(folder).st_mode) and not any(os.scandir(folder))
    except OSError:
        return False


def check_replaceable(folder: str | os.PathLike, kind: str, *, made_by: str, hint: str) -> None:
    """Raise ``NotOursError`` unless ``folder`` is absent, empty, or a ``kind`` folder this project made."""
    folder = Path(folder)
    if not os.path.lexists(folder) or _is_empty_dir(folder) or is_ours(folder, kind):
        return
    raise NotOursError(f"{folder} exists and was not made by {made_by} (it has no {STAMP_NAME} stamp), so it is "
                       f"never replaced", hint)


def replace(target: str | os.PathLike, new: str | os.PathLike | None = None, *, kind: str | None = None,
            made_by: str = "trashnet", hint: str = "move it away or choose another output folder",
            aside: str | None = None, quiet: bool = False) -> None:
    """The one function that replaces or deletes a folder; every command goes through it.

    ``new`` (a folder this project made, stamped) takes ``target``'s place; without ``new``, ``target`` is
    deleted. ``target`` must be absent, empty, or stamped (``kind`` when given); anything else is refused
    with ``NotOursError`` before anything moves. A replaced folder is first renamed into a stamped
    temporary folder beside it (named ``aside``, default ``.<target>.old-*``), so a kill in between leaves
    a leftover that ``remove_leftovers`` can tell from the user's files. ``quiet``: a cleanup that must not
    mask another error; nothing is raised and a refused folder is left alone.
    """
    target = Path(target)
    try:
        if os.path.lexists(target) and not _is_empty_dir(target) and not is_ours(target, kind):
            raise NotOursError(f"{target} exists and was not made by {made_by} (it has no {STAMP_NAME} "
                               f"stamp), so it is never replaced or deleted", hint)
        if new is None:
            if _is_empty_dir(target):
                target.rmdir()
            elif os.path.lexists(target):
                shutil.rmtree(target, ignore_errors=quiet)
            return
        if not is_ours(new):
            raise NotOursError(f"{new} has no {STAMP_NAME} stamp: it is not moved over {target}", hint)
        graveyard = None
        if os.path.lexists(target):
            graveyard = make_temp_dir(target.parent, aside or f".{target.name}.old-")
            os.rename(target, graveyard / "previous")
        os.rename(new, target)
        if graveyard is not None:
            shutil.rmtree(graveyard, ignore_errors=True)
    except (OSError, NotOursError):
        if not quiet:
            raise


def remove(folder: str | os.PathLike, kind: str | None = None, *, made_by: str = "trashnet",
           hint: str = "move it away or choose another output folder") -> None:
    """Delete a folder this project made; a missing one is fine; anyone else's is refused."""
    replace(folder, kind=kind, made_by=made_by, hint=hint)


def _alive(record: dict) -> bool:
    """Whether the process that stamped a temporary folder may still be using it."""
    pid = record.get("pid")
    if not isinstance(pid, int) or record.get("host") != socket.gethostname():
        return False  # no owner recorded, or another machine's: only a finished or killed process leaves it
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new stamped temporary folder in ``parent``, readable like any folder the user makes."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        temp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would make the result private
        stamp(temp, "partial", pid=os.getpid())
    except BaseException:
        (temp / STAMP_NAME).unlink(missing_ok=True)
        replace(temp, quiet=True)  # now empty
        raise
    return temp


def remove_leftovers(parent: str | os.PathLike, prefixes: tuple[str, ...]) -> list[Path]:
    """Remove ``parent``'s stamped folders named ``<prefix>*`` whose owning process is gone."""
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefixes):
            continue
        record = read_stamp(entry.path)
        if record is None or _alive(record):
            continue
        replace(entry.path, quiet=True)
        removed.append(Path(entry.path))
    return removed
