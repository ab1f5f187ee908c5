"""Small file helpers: hashing, atomic writes, JSON.

A file is written to a temporary name beside its target and moved into place with ``os.replace``, so a
reader (or a resumed run) never sees a half-written file.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_KINDS = {stat.S_IFIFO: "a named pipe", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFDIR: "a folder"}


class NotRegularFileError(OSError):
    """A path that is a named pipe, socket, device or folder where a regular file was expected."""


def file_kind(mode: int) -> str:
    """What an ``st_mode`` describes, e.g. ``a named pipe``."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a regular file for reading; a named pipe, socket or device is refused before any read.

    The file is opened non-blocking (so opening a named pipe cannot hang) and its type taken from the open
    descriptor (so it cannot be swapped between the check and the read).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(errno.EINVAL, f"{file_kind(mode)}, not a regular file", os.fspath(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike) -> bytes:
    with open_regular(path) as handle:
        return handle.read()


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    return read_bytes(path).decode(encoding)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def gzip_size_of(data: bytes) -> int:
    """Bytes after gzip -9: what zeros from pruning save in a download."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def gzip_size(path: str | os.PathLike) -> int:
    return gzip_size_of(Path(path).read_bytes())


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import: os.umask can only be read by setting it, which is not safe while threads write.
_UMASK = _read_umask()


def _temp_beside(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    # mkstemp makes the file 0600; results must be readable like any other file the user writes
    # (a container's output read by the host user, a shared results folder).
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    return Path(name)


def replace_file(temp: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Move the regular file ``temp`` over ``target`` (``os.replace``). Never a folder: those are replaced
    or deleted only by ``owned.replace``, which checks who made them."""
    if not stat.S_ISREG(os.lstat(temp).st_mode) or (os.path.lexists(target) and os.path.isdir(target)):
        raise IsADirectoryError(errno.EISDIR, "replace_file moves files only, not folders", os.fspath(target))
    os.replace(temp, target)
    return Path(target)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    target = Path(path)
    temp = _temp_beside(target)
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        replace_file(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(value: Any) -> Any:
    """Convert NumPy scalars/arrays and paths so ``json`` can write them."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    return value


def dumps_json(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, value: Any) -> Path:
    return atomic_write_text(path, dumps_json(value))


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(read_text(path))


def atomic_copy(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    target = Path(target)
    temp = _temp_beside(target)
    try:
        shutil.copyfile(source, temp)
        replace_file(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target
