"""``python -m trashnet release``: the final model as one versioned, byte-reproducible zip.

    python -m trashnet release [--profile cpu] [--out ROOT] [--final DIR] [--dist DIR]

writes ``dist/trashnet-<version>.zip`` (and ``.zip.sha256``, the line a release page shows) holding one folder
``trashnet-<version>/`` with:

- ``trashnet.tflite``: the final model with its TFLite metadata (labels, normalization, name, version);
- ``labels.txt``, ``model_card.md``, ``model_card.json``;
- ``LICENSE`` (the model, MIT) and ``DATA_LICENSE`` + ``ATTRIBUTION.md`` (TrashNet, Thung and Yang, MIT);
- ``predict_example.py``: classify photos with ai-edge-litert, NumPy and Pillow only;
- ``SHA256SUMS`` over all of the above (``sha256sum -c SHA256SUMS`` inside the folder).

The version is the one the final stage stamped into the model (``provenance.release_version``: the git tag or
commit and the profile, e.g. ``0.2.0+cpu.g1a2b3c4``), so the bundle is a function of the final folder alone.
The same final folder gives a byte-identical zip: entries sorted, fixed timestamps and permissions, stored
uncompressed (deflate output depends on the zlib build; the model, most of the bytes, hardly compresses).
``trashnet.litert.load`` and ``predict --model`` take the zip as it is. Reads files only; no TensorFlow.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import zipfile
from pathlib import Path

from trashnet.core import fileio, records, settings
from trashnet.core.errors import UserError, os_error_hint, os_error_text

MODEL_FILE = "trashnet.tflite"  # as artifact.MODEL_FILE (not imported: artifact pulls in pydantic and select)
LABELS_FILE = "labels.txt"
CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
SUMS_FILE = "SHA256SUMS"
FROM_FINAL = (MODEL_FILE, LABELS_FILE, CARD_JSON, CARD_MD)
EXAMPLE = settings.RESOURCES_DIR / "release" / "predict_example.py"
DATA_LICENSE = settings.RESOURCES_DIR / "TRASHNET_LICENSE"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

MODEL_LICENSE = """MIT License

Copyright (c) 2026 the TrashNet thesis project

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

ATTRIBUTION = """# Data attribution

The model in this bundle was trained and evaluated on TrashNet:

Gary Thung and Mindy Yang, *Classification of Trash for Recyclability Status*, Stanford CS229 project, 2016.
Data set and code: https://github.com/garythung/trashnet (the `dataset-resized` images), MIT licence,
reproduced in `DATA_LICENSE`.

The model's weights are derived from those images; the images themselves are not part of this bundle.
"""


class ReleaseError(UserError):
    """The final folder cannot be released; the hint says what to do."""


RERUN = "rerun the final stage (python -m trashnet run --variants final)"


def _checked_sums(final_dir: Path, files: dict[str, bytes]) -> None:
    """Every file the bundle takes from ``final_dir`` must match the SHA256SUMS the final stage wrote, and
    the run's ``manifest.json`` when the folder has one (a published reference folder has not)."""
    try:
        sums_bytes = fileio.read_bytes(final_dir / SUMS_FILE, limit=fileio.SMALL_FILE_LIMIT)
        sums = fileio.parse_sums(sums_bytes.decode("utf-8"), str(final_dir / SUMS_FILE))
    except FileNotFoundError as error:
        raise ReleaseError(f"{final_dir} has no {SUMS_FILE}: its files cannot be checked, so they are not "
                           "released", RERUN) from error
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ReleaseError(f"{final_dir / SUMS_FILE} is unreadable or malformed: {error}", RERUN) from error
    expected = {name: sums.get(name) for name in FROM_FINAL}
    manifest_path = final_dir / settings.RUN_MANIFEST_NAME
    if manifest_path.exists():
        try:
            listed = records.read_manifest(final_dir).files
        except (OSError, ValueError) as error:  # pydantic's too: no file list, not a manifest
            raise ReleaseError(f"{manifest_path} is unreadable or has no file list ({error})", RERUN) from error
        bad = [name for name, data in {**files, SUMS_FILE: sums_bytes}.items()
               if listed.get(name) != fileio.sha256_bytes(data)]
        if bad:
            raise ReleaseError(f"{', '.join(bad)} in {final_dir} do not match its {settings.RUN_MANIFEST_NAME}: the "
                               "folder was changed after the final stage wrote it", RERUN)
    unlisted = [name for name, digest in expected.items() if digest is None]
    changed = [name for name, digest in expected.items() if digest and fileio.sha256_bytes(files[name]) != digest]
    if unlisted or changed:
        raise ReleaseError(f"{', '.join(unlisted + changed)} in {final_dir} "
                           f"{'are not listed in' if unlisted else 'no longer match'} its {SUMS_FILE}: the final "
                           "folder was changed after it was built", RERUN)


def _final_files(final_dir: Path) -> dict[str, bytes]:
    missing = [name for name in FROM_FINAL if not (final_dir / name).is_file()]
    if missing:
        raise ReleaseError(f"{final_dir} lacks {', '.join(missing)}", "run the final stage first "
                           "(./run_all.sh, or python -m trashnet run)")
    files = {name: fileio.read_bytes(final_dir / name, limit=fileio.MODEL_FILE_LIMIT if name == MODEL_FILE
                                     else fileio.SMALL_FILE_LIMIT) for name in FROM_FINAL}
    _checked_sums(final_dir, files)
    return files


def bundle_files(final_dir: str | os.PathLike) -> tuple[str, dict[str, bytes]]:
    """``(version, {name: bytes})`` of the bundle's folder, ``SHA256SUMS`` included."""
    final_dir = Path(final_dir)
    files = _final_files(final_dir)
    try:
        card = json.loads(files[CARD_JSON])
    except ValueError as error:
        raise ReleaseError(f"{final_dir / CARD_JSON} is not valid JSON ({error})", RERUN) from error
    version = card.get("version") if isinstance(card, dict) else None
    if not isinstance(version, str) or not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z.+_-]*", version):
        raise ReleaseError(f"{final_dir / CARD_JSON} has no usable version ({version!r}): it was built by an older "
                           "final stage", RERUN)
    files.update({"LICENSE": MODEL_LICENSE.encode("utf-8"), "DATA_LICENSE": DATA_LICENSE.read_bytes(),
                  "ATTRIBUTION.md": ATTRIBUTION.encode("utf-8"), "predict_example.py": EXAMPLE.read_bytes()})
    files[SUMS_FILE] = "".join(f"{fileio.sha256_bytes(data)}  {name}\n"
                               for name, data in sorted(files.items())).encode("utf-8")
    return version, files


def zip_bytes(folder: str, files: dict[str, bytes]) -> bytes:
    """A zip of ``folder/<name>`` entries: sorted, stored, fixed timestamps and permissions."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(f"{folder}/{name}", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = (0o755 if name.endswith(".py") else 0o644) << 16
            archive.writestr(info, files[name])
    return buffer.getvalue()


def build(final_dir: str | os.PathLike, dist_dir: str | os.PathLike) -> Path:
    """Write ``dist_dir/trashnet-<version>.zip`` and its ``.sha256``; returns the zip's path."""
    version, files = bundle_files(final_dir)
    name = f"trashnet-{version}"
    content = zip_bytes(name, files)
    dist_dir = Path(dist_dir)
    try:
        path = fileio.atomic_write_bytes(dist_dir / f"{name}.zip", content)
        fileio.atomic_write_text(dist_dir / f"{name}.zip.sha256", f"{fileio.sha256_bytes(content)}  {name}.zip\n")
    except OSError as error:
        raise ReleaseError(f"cannot write the bundle to {dist_dir}: {os_error_text(error)}",
                           os_error_hint(error, "--dist")) from error
    return path


# --- command line ---------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default=None,
                        help="whose final model: <out>/models/<profile>/final/ (default: the only profile with one)")
    parser.add_argument("--out", type=Path, default=None, help="output root (default: $TRASHNET_OUT, else the "
                                                               "repository)")
    parser.add_argument("--final", type=Path, default=None,
                        help="a final model's folder instead (e.g. results/cpu/models/final of a reference run)")
    parser.add_argument("--dist", type=Path, default=None, help="where the zip goes (default: <out>/dist/)")


def final_dir_of(root: Path, profile: str | None) -> Path:
    """``<root>/models/<profile>/final``; without a profile, the only one that has a model card."""
    if profile is None:
        found = sorted(p.parent.parent.name for p in (root / "models").glob(f"*/final/{CARD_JSON}"))
        if len(found) != 1:
            raise ReleaseError(f"{root / 'models'} holds the final models of {len(found)} profiles "
                               f"({', '.join(found) or 'none'})", "pass --profile (and run ./run_all.sh --profile "
                               "P first if there is none)")
        profile = found[0]
    return settings.Layout(root, profile).variant_dir("final", "final")


def command(args: argparse.Namespace) -> int:
    root = args.out.expanduser().resolve() if args.out else settings.default_output_root()
    final_dir = args.final or final_dir_of(root, args.profile)
    path = build(final_dir, args.dist or settings.dist_dir(root))
    print(f"{path}\nsha256 {fileio.sha256_file(path)}")
    return 0
