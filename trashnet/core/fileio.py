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
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from trashnet.core.errors import UserError

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


# The most a file given by the user is read into memory: small files (class maps, profiles, label lists,
# SHA256SUMS, metadata) and models. A bigger file is refused before it is read, not after.
SMALL_FILE_LIMIT = 4 << 20
MODEL_FILE_LIMIT = 64 << 20  # the largest MobileNet here, float32: 17 MB
READ_LIMIT = 256 << 20  # any other read: results, manifests, predictions


class TooLargeError(UserError):
    """A file bigger than the reader's cap (``/dev/zero`` behind a link is refused earlier, as a device)."""


def read_bytes(path: str | os.PathLike, limit: int = READ_LIMIT) -> bytes:
    """A regular file's bytes, at most ``limit`` of them: a pipe or device is refused before any read, a bigger
    file with ``TooLargeError``. The one reader for every file a user hands in."""
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TooLargeError(f"{path} is larger than {limit / 2**20:g} MiB, more than such a file can be",
                            "check that the path names the right file")
    return data


def read_text(path: str | os.PathLike, encoding: str = "utf-8", limit: int = READ_LIMIT) -> str:
    return read_bytes(path, limit).decode(encoding)


def parse_sums(text: str, where: str) -> dict[str, str]:
    """``sha256sum`` output (``<64 hex>  <name>`` a line, ``*`` for binary mode) -> {name: hex}. A malformed
    line or a name listed twice raises ``ValueError`` naming the line."""
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line)
        if not match:
            raise ValueError(f"{where}:{number}: expected '<sha256>  <name>', got {line[:80]!r}")
        if match.group(2) in sums:
            raise ValueError(f"{where}:{number}: {match.group(2)!r} is listed twice")
        sums[match.group(2)] = match.group(1).lower()
    if not sums:
        raise ValueError(f"{where} lists no file")
    return sums


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, except that a key given twice in one mapping is an error (YAML would keep the last)."""
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
        keys = [loader.construct_object(key, deep=True) for key, _ in node.value]
        seen: set = set()
        for key, (key_node, _) in zip(keys, node.value):
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                            key_node.start_mark)
                seen.add(key)
            except TypeError:  # an unhashable key: safe_load's own error says so
                break
        return loader.construct_mapping(node, deep=True)

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


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
