"""Download the official TrashNet release, verify it, and extract it safely.

``python -m trashnet download --out DIR [--url URL] [--sha256 HEX] [--sums FILE]`` fetches
``dataset-resized.zip`` (the authors' Hugging Face upload, pinned to a commit), checks the archive's sha256
(default: the release's git-LFS object id), optionally checks every extracted file against a
``sha256sum``-style list, and leaves ``DIR/dataset-resized/<class>/<image>`` ready for ``prepare``.

Safety: the archive is downloaded beside ``DIR`` and every entry is checked before anything is written.
An archive with an absolute path, a ``..`` component, a link or a device entry is refused as a whole.
Entries are extracted into a temporary folder beside ``DIR`` which replaces ``DIR`` by a rename only once
everything is extracted and verified: on any error nothing is left behind and an earlier ``DIR`` stays as
it was. Zip and tar archives are accepted (the official release is a zip).

``python -m trashnet download --weights --out DIR`` fetches Google's ImageNet TFLite files instead
(``imagenet_files.FILES``, their publishers' URLs; the V3 files come out of Google's tarballs) and keeps each one
only if its sha256 is the pinned one; then ``TRASHNET_WEIGHTS=DIR`` makes ``model.weights: imagenet-tflite`` work.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import shutil
import stat
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from trashnet.core import fileio, owned, settings
from trashnet.core.errors import UsageError, UserError, os_error_hint, os_error_text

# garythung/trashnet on Hugging Face, commit 94cd17e ("Add dataset"); the sha256 is that file's git-LFS oid.
DEFAULT_URL = ("https://huggingface.co/datasets/garythung/trashnet/resolve/"
               "94cd17ebfd6702bf62281d3c89f22ff649815b46/dataset-resized.zip")
DEFAULT_SHA256 = "c060e8abfe5d6de0578ca15be1ed8ad0794a865d333c3473d53d1d9ad6e38b8c"  # 42,834,870 bytes
# sha256 of every image of the dataset-resized copy used in development and CI (../shared/data/trashnet).
BUNDLED_SUMS = settings.RESOURCES_DIR / "dataset-resized.SHA256SUMS"
STAMP_NAME = "download.json"
OWNED_KIND = "download"  # owned.stamp kind: the only folders `download` ever replaces
MAX_ARCHIVE_BYTES = 2 << 30  # refuse to download more than 2 GiB
MAX_EXTRACTED_BYTES = 4 << 30  # refuse archives that expand to more than 4 GiB (zip bombs)
_CHUNK = 1 << 20
DEFAULT_TIMEOUT = 600.0  # seconds, wall clock, for the whole download (42.8 MB)


class DownloadError(UserError, RuntimeError):
    """The download, its checksum or its archive is unusable; the message says what went wrong."""


# ---------------------------------------------------------------------------------------------- fetch


def check_url(url: str) -> None:
    """An http(s):// URL with a host, or a file:// URL with a path; anything else is a one-line error."""
    parts = urllib.parse.urlsplit(url or "")
    if not ((parts.scheme in ("http", "https") and parts.hostname) or (parts.scheme == "file" and parts.path)):
        raise DownloadError(f"--url {url!r} is not an http://, https:// or file:// URL",
                            "pass the archive's full URL, e.g. the default (leave --url out)")


def check_timeout(timeout: float) -> float:
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise DownloadError(f"--timeout {timeout!r} must be a number of seconds above 0", "e.g. --timeout 600")
    return float(timeout)


def _stream(url: str, target: Path, timeout: float, cancelled: threading.Event) -> str:
    digest, size = hashlib.sha256(), 0
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":  # through fileio: a named pipe or device is refused, never read
        source = fileio.open_regular(urllib.request.url2pathname(parts.path))
    else:
        source = urllib.request.urlopen(url, timeout=timeout)
    with source as response, open(target, "wb") as handle:
        while not cancelled.is_set():
            chunk = response.read1(_CHUNK)  # whatever has arrived: the wall-clock check runs between reads
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_ARCHIVE_BYTES:
                raise DownloadError(f"{url} is larger than {MAX_ARCHIVE_BYTES:,} bytes: not the TrashNet "
                                    f"release", "check --url")
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()


def fetch(url: str, target: Path, *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Stream ``url`` into ``target``; return its sha256. ``timeout``: wall-clock seconds for the whole
    download (connecting, headers, body): a server that sends one byte a second is stopped too."""
    check_url(url)
    timeout = check_timeout(timeout)
    outcome: dict = {}
    cancelled = threading.Event()

    def work() -> None:
        try:
            outcome["digest"] = _stream(url, target, timeout, cancelled)
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread below
            outcome["error"] = error

    # A daemon thread: a stalled socket cannot keep the process alive once the deadline has passed.
    worker = threading.Thread(target=work, name="download", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        cancelled.set()
        raise DownloadError(f"cannot download {url}: not finished within --timeout {timeout:g} s (wall clock)",
                            "check the network connection, or raise --timeout")
    error = outcome.get("error")
    if isinstance(error, urllib.error.HTTPError):
        raise DownloadError(f"cannot download {url}: HTTP {error.code} {error.reason}", "check --url") from error
    if isinstance(error, (urllib.error.URLError, OSError)):
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error
        raise DownloadError(f"cannot download {url}: {reason}", "check the network connection or --url") from error
    if error is not None:
        raise error
    return outcome["digest"]


# ---------------------------------------------------------------------------------------------- extract


def _safe_name(name: str) -> PurePosixPath:
    """The entry's relative path, or DownloadError when it could land outside the target folder."""
    cleaned = name.replace("\\", "/")
    path = PurePosixPath(cleaned)
    if (cleaned.startswith("/") or re.match(r"^[A-Za-z]:", cleaned) or ".." in path.parts
            or not path.parts or "\0" in cleaned):
        raise DownloadError(f"archive entry {name!r} would be written outside the target folder: the archive "
                            f"is refused and nothing was extracted")
    return PurePosixPath(*[part for part in path.parts if part not in ("", ".")])


def _refuse_link(name: str, kind: str) -> None:
    raise DownloadError(f"archive entry {name!r} is a {kind}: links could point outside the target folder; "
                        f"the archive is refused and nothing was extracted")


def _plan_zip(archive: zipfile.ZipFile) -> list[tuple[PurePosixPath, zipfile.ZipInfo | None]]:
    plan = []
    for info in archive.infolist():
        # Only Unix-made entries carry a file type; zipfile.writestr leaves it out (mode 0o600): a file.
        kind = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
        if kind == stat.S_IFLNK:
            _refuse_link(info.filename, "symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            _refuse_link(info.filename, "special file")
        rel = _safe_name(info.filename)
        plan.append((rel, None if info.is_dir() else info))
    return plan


def _plan_tar(archive: tarfile.TarFile) -> list[tuple[PurePosixPath, tarfile.TarInfo | None]]:
    plan = []
    for member in archive.getmembers():
        if member.issym():
            _refuse_link(member.name, "symbolic link")
        if member.islnk():
            _refuse_link(member.name, "hard link")
        if not (member.isfile() or member.isdir()):
            _refuse_link(member.name, "special file (device, fifo)")
        plan.append((_safe_name(member.name), None if member.isdir() else member))
    return plan


def _refuse_clashes(plan: list[tuple[PurePosixPath, object]]) -> None:
    """An entry that is a file in one place and a folder (or a parent of one) in another: refused."""
    files = {rel for rel, entry in plan if entry is not None}
    folders = {rel for rel, entry in plan if entry is None}
    folders |= {parent for rel, _ in plan for parent in rel.parents if parent.parts}
    clash = sorted(files & folders)
    if clash:
        raise DownloadError(f"archive entry {clash[0].as_posix()!r} is both a file and a folder in the archive: "
                            f"the archive is refused and nothing was extracted", "check --url")


def extract(archive_path: Path, target: Path) -> list[str]:
    """Extract a zip or tar archive into the (new, empty) folder ``target``; return the files written.

    Every entry is checked first (see the module docstring); the caller removes ``target`` on error.
    """
    try:
        if zipfile.is_zipfile(archive_path):
            opened: zipfile.ZipFile | tarfile.TarFile = zipfile.ZipFile(archive_path)
        elif tarfile.is_tarfile(archive_path):
            opened = tarfile.open(archive_path)
        else:
            raise DownloadError(f"the download is neither a zip nor a tar archive (broken or wrong file, "
                                f"{archive_path.stat().st_size:,} bytes)", "check --url")
        with opened as archive:
            plan = _plan_zip(archive) if isinstance(archive, zipfile.ZipFile) else _plan_tar(archive)
            _refuse_clashes(plan)
            declared = sum(entry.file_size if isinstance(entry, zipfile.ZipInfo) else entry.size
                           for _, entry in plan if entry is not None)
            if declared > MAX_EXTRACTED_BYTES:
                raise DownloadError(f"the archive expands to {declared:,} bytes, more than the limit of "
                                    f"{MAX_EXTRACTED_BYTES:,}: refused")
            written = []
            for rel, entry in plan:
                destination = target.joinpath(*rel.parts)
                if entry is None:
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(archive, zipfile.ZipFile):
                    source = archive.open(entry)
                else:
                    source = archive.extractfile(entry)
                with source, open(destination, "xb") as handle:  # "x": a repeated entry is an error
                    shutil.copyfileobj(source, handle, _CHUNK)
                written.append(rel.as_posix())
    except DownloadError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, zlib.error, EOFError, ValueError) as error:
        raise DownloadError(f"the archive is broken ({error})", "download it again or check --url") from error
    except (RuntimeError, NotImplementedError) as error:  # encrypted entries, unknown compression methods
        raise DownloadError(f"the archive cannot be extracted ({error})", "check --url") from error
    except FileExistsError as error:
        raise DownloadError(f"the archive holds {error.filename} twice: refused", "check --url") from error
    return written


# ---------------------------------------------------------------------------------------------- verify


def read_sums(path: Path) -> dict[str, str]:
    """``sha256sum`` output (``<hex>  <relative path>`` a line) -> {path: hex}."""
    try:
        return fileio.parse_sums(fileio.read_text(path, limit=fileio.SMALL_FILE_LIMIT), str(path))
    except (OSError, UnicodeDecodeError, fileio.TooLargeError) as error:
        raise DownloadError(f"cannot read the checksum list {path} ({error})", "check --sums") from error
    except ValueError as error:
        raise DownloadError(str(error), "check --sums") from error


def _sha256_or_empty(path: Path) -> str:
    try:
        return fileio.sha256_file(path)
    except OSError:
        return ""


def verify_files(folder: Path, sums: dict[str, str]) -> None:
    missing = [rel for rel in sums if not (folder / rel).is_file()]
    wrong = [rel for rel in sums if rel not in missing and _sha256_or_empty(folder / rel) != sums[rel]]
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} listed file(s) missing (e.g. {', '.join(missing[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} file(s) with a different sha256 (e.g. {', '.join(wrong[:3])})")
        raise DownloadError("the extracted files do not match the checksum list: " + "; ".join(parts)
                            + "; the download is corrupt or a different release; nothing was kept",
                            "check --url and --sums")


# ---------------------------------------------------------------------------------------------- download


def _intact(out: Path, record: dict) -> bool:
    """Whether every file the earlier download extracted is still there, unchanged (else: download again)."""
    sums = record.get("files_sha256")
    if not isinstance(sums, dict) or not sums:
        return False
    try:
        verify_files(out, sums)
    except DownloadError:
        return False
    return True


def _dataset_folder(out: Path) -> Path:
    return out / "dataset-resized" if (out / "dataset-resized").is_dir() else out


def download(out: str | os.PathLike, *, url: str = DEFAULT_URL, sha256: str | None = None,
             sums: str | os.PathLike | None = None, timeout: float = DEFAULT_TIMEOUT) -> tuple[Path, bool]:
    """Fetch, verify and extract the archive at ``url`` into ``out``.

    ``sha256``: the archive's expected checksum (default: the official release's when ``url`` is the
    default URL; otherwise not checked). ``sums``: an optional ``sha256sum`` list checked against the
    extracted files. Returns (the data folder to pass to ``prepare --source``, whether it was downloaded
    now; False when ``out`` already holds a verified copy of the same archive).
    """
    out = Path(out).expanduser().resolve()
    check_url(url)
    check_timeout(timeout)
    if sha256 is None and url == DEFAULT_URL:
        sha256 = DEFAULT_SHA256
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise DownloadError(f"--sha256 {sha256!r} is not a sha256 (64 hex digits)")
    expected_sums = read_sums(Path(sums)) if sums is not None else None
    owned.check_replaceable(out, OWNED_KIND, made_by="`download`", hint="choose another --out, or move it away")
    if owned.is_ours(out, OWNED_KIND):
        try:
            previous = fileio.read_json(out / STAMP_NAME)
        except (OSError, ValueError):
            previous = {}
        if sha256 is not None and previous.get("archive_sha256") == sha256.lower() and _intact(out, previous):
            return _dataset_folder(out), False
    prefix = f".{out.name}.download-"
    try:
        owned.remove_leftovers(out.parent, (prefix,))  # of a killed download
        work = owned.make_temp_dir(out.parent, prefix)
    except OSError as error:
        raise DownloadError(f"cannot write to {out}: {os_error_text(error)}", os_error_hint(error, "--out")) from error
    try:
        archive = work / "archive"
        digest = fetch(url, archive, timeout=timeout)
        if sha256 is not None and digest != sha256.lower():
            raise DownloadError(f"checksum mismatch for {url}: expected sha256 {sha256.lower()}, got {digest}. "
                                f"The download is corrupt or the URL serves a different file; nothing was kept",
                                "check --url and --sha256")
        staged = work / "extracted"
        staged.mkdir()
        written = extract(archive, staged)
        if expected_sums is not None:
            verify_files(staged, expected_sums)
        archive.unlink()
        fileio.write_json(staged / STAMP_NAME, {
            "url": url, "archive_sha256": digest, "files": len(written), "archive_verified": sha256 is not None,
            "verified_files": len(expected_sums) if expected_sums is not None else 0,
            "files_sha256": {rel: fileio.sha256_file(staged / rel) for rel in written}})
        umask = os.umask(0)
        os.umask(umask)
        staged.chmod(0o777 & ~umask)
        (staged / STAMP_NAME).chmod(0o666 & ~umask)
        owned.stamp(staged, OWNED_KIND)
        owned.replace(out, staged, kind=OWNED_KIND, made_by="`download`", aside=prefix,
                      hint="choose another --out")
    except OSError as error:
        raise DownloadError(f"cannot write to {out}: {os_error_text(error)}", os_error_hint(error, "--out")) from error
    finally:
        owned.replace(work, quiet=True)
    return _dataset_folder(out), True


# ---------------------------------------------------------------------------------------------- weights


def _fetch_pinned(item, work: Path, timeout: float) -> Path:
    """Download one pinned file (out of its archive when it is a member of one) into ``work``; checked."""
    from trashnet.data import imagenet_files

    fetched = work / "fetched"
    digest = fetch(item.url, fetched, timeout=timeout)
    if item.member is not None:
        staged = work / "extracted"
        staged.mkdir()
        if item.member not in extract(fetched, staged):
            raise DownloadError(f"{item.url} does not hold {item.member}", "the publisher changed the archive; "
                                "copy the file by hand (docs/imagenet.md)")
        fetched = staged / item.member
        digest = fileio.sha256_file(fetched)
    if digest != item.sha256:
        raise DownloadError(f"{item.name} from {item.url} has sha256 {digest}, not the pinned {item.sha256}: "
                            f"not kept", f"the publisher serves other bytes; {imagenet_files.GET_WEIGHTS}")
    return fetched


def download_weights(out: str | os.PathLike, *, timeout: float = 60.0) -> tuple[Path, list[str]]:
    """Fetch every pinned ImageNet file (and the three test photos) into ``out``; returns (out, names fetched
    now). A file already there with the pinned sha256 is kept; each new one is moved in only once checked."""
    from trashnet.data import imagenet_files

    out = Path(out).expanduser().resolve()
    fetched_now = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        owned.remove_leftovers(out, (".weights-download-",))  # of a killed download
        for item in [*imagenet_files.FILES.values(), *imagenet_files.PHOTOS.values()]:
            target = out / item.name
            if target.is_file() and _sha256_or_empty(target) == item.sha256:
                continue
            work = owned.make_temp_dir(out, ".weights-download-")
            try:
                fetched = _fetch_pinned(item, work, timeout)
                target.parent.mkdir(parents=True, exist_ok=True)
                fileio.replace_file(fetched, target)
            finally:
                owned.replace(work, quiet=True)  # the stamped scratch folder, whatever happened
            fetched_now.append(item.name)
    except OSError as error:
        raise DownloadError(f"cannot write to {out}: {os_error_text(error)}", os_error_hint(error, "--out")) from error
    return out, fetched_now


# ---------------------------------------------------------------------------------------------- CLI


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True,
                        help="folder to create, e.g. ~/data/trashnet (replaced only if an earlier download)")
    parser.add_argument("--weights", action="store_true",
                        help="fetch Google's ImageNet TFLite MobileNets (sha256-pinned) into --out instead of "
                             "TrashNet; then set TRASHNET_WEIGHTS to that folder")
    parser.add_argument("--url", default=DEFAULT_URL, help="archive to fetch (default: the official release)")
    parser.add_argument("--sha256", default=None,
                        help="expected sha256 of the archive (default: the official release's, with the default --url)")
    parser.add_argument("--sums", type=Path, default=None,
                        help="also check the extracted files against this sha256sum list, e.g. "
                             "trashnet/resources/dataset-resized.SHA256SUMS")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds the whole download may take, wall clock (default {DEFAULT_TIMEOUT:g})")


def command(args: argparse.Namespace) -> int:
    if args.weights:
        if args.url != DEFAULT_URL or args.sha256 or args.sums:
            raise UsageError("--weights fetches the pinned ImageNet files: --url, --sha256 and --sums do not apply",
                             "leave them out")
        folder, fetched = download_weights(args.out, timeout=args.timeout)
        print(f"ImageNet weights ({len(fetched)} fetched now, every file sha256-verified): {folder}")
        print(f"Next: export {settings.ENV_WEIGHTS}={folder}  (model.weights: imagenet-tflite)")
        return 0
    folder, fetched = download(args.out, url=args.url, sha256=args.sha256, sums=args.sums, timeout=args.timeout)
    record = fileio.read_json(Path(args.out).expanduser().resolve() / STAMP_NAME)
    checks = []
    if record.get("archive_verified"):
        checks.append("archive sha256 verified")
    if record.get("verified_files"):
        checks.append(f"{record['verified_files']} files verified against --sums")
    status = ", ".join(checks) if checks else "not verified: no --sha256"
    print(("Downloaded" if fetched else "Already downloaded") + f" ({status}): {folder}")
    print(f"Next: python -m trashnet prepare --source {folder} --split official")
    return 0
