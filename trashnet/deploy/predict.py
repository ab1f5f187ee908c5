"""Classify image files with a ``.tflite`` model: the deployment path, TensorFlow-free.

    python -m trashnet predict photo.jpg photos/ 'more/**/*.png' --model models/cpu/final/trashnet.tflite --top-k 3

and from Python::

    for result in predict(["photos/"], "models/final/trashnet.tflite", top_k=3):
        print(result.path, result.top_k or result.error)

Paths may be files, folders (searched recursively for image files) or glob patterns. Images are decoded
exactly as in training and evaluation (``images.load_for_model``: Pillow, the photo fitted to the
model's square input as its ``metadata.json`` says, squashed by default, RGB in [0, 255]) on a small
thread pool while the interpreter runs, and streamed:
memory stays constant however many files there are. A file that cannot be read or decoded is reported
and the rest go on. Class names come from ``--labels``, else the ``labels.txt`` embedded in the model file
(a zip appended to the flatbuffer, see ``trashnet.stages.final``), else a ``labels.txt`` beside the model.

This module and everything it imports need only the standard library, NumPy, Pillow and ai-edge-litert.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import glob
import json
import os
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from trashnet.core import fileio, images, litert
from trashnet.core.errors import UserError
from trashnet.core.litert import LABELS_FILE, embedded_files, parse_labels  # noqa: F401 - re-exported
from trashnet.core.tflite import TFLiteModel

# JFIF is JPEG's file format (.jfif, .jpe): Pillow reads it as any .jpg. HEIC needs a plug-in: skipped, listed.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
METADATA_FILE = "metadata.json"  # inside the appended zip


@dataclass(frozen=True)
class Prediction:
    """One input: the top-k ``(label, probability)`` pairs, why it failed, or why it was skipped (a file in
    a searched folder that is not an image by its name: listed, never silently dropped)."""

    path: str
    top_k: tuple[tuple[str, float], ...] = ()
    error: str | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.skipped is None

    @property
    def label(self) -> str | None:
        return self.top_k[0][0] if self.top_k else None

    def to_dict(self) -> dict[str, Any]:
        if self.skipped is not None:
            return {"path": self.path, "skipped": self.skipped}
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "label": self.label,
                "top_k": [{"label": label, "probability": round(prob, 6)} for label, prob in self.top_k]}


# --- inputs ---------------------------------------------------------------------------------------

SKIPPED = "skipped: "  # the reason of a file left out of a folder walk starts with it


def _folder_entries(folder: str) -> Iterator[tuple[str, str | None]]:
    """Every file under a folder, recursively, in sorted order, lazily: ``(path, None)`` for an image by
    its name, ``(path, "skipped: ...")`` for anything else, ``(folder, "unreadable: ...")`` for a folder
    that cannot be listed. Links to folders are listed as skipped, not followed (a loop cannot repeat a file)."""
    errors: list[OSError] = []
    for root, dirs, files in os.walk(folder, onerror=errors.append):
        while errors:
            error = errors.pop(0)
            yield error.filename or root, f"unreadable: {error.strerror or error}; folder not searched"
        dirs.sort()
        for name in dirs:
            if os.path.islink(os.path.join(root, name)):  # listed, not followed: a loop cannot repeat a photo
                yield os.path.join(root, name), f"{SKIPPED}a link to a folder, not followed; pass its target instead"
        for name in sorted(files):
            suffix = Path(name).suffix.lower()
            path = os.path.join(root, name)
            if suffix in IMAGE_SUFFIXES:
                yield path, None
            else:
                yield path, (f"{SKIPPED}{suffix or 'no extension'} is not an image format predict reads "
                             f"({', '.join(sorted(IMAGE_SUFFIXES))}); convert it to JPEG or PNG")
    while errors:
        error = errors.pop(0)
        yield error.filename or folder, f"unreadable: {error.strerror or error}; folder not searched"


def _name_matches(name: str, pattern: str) -> bool:
    if name.startswith(".") and not pattern.startswith("."):
        return False  # as glob: * and ? do not match a leading dot
    return fnmatch.fnmatchcase(name, pattern)


def _glob(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, sorted, except that a folder reached twice through links
    (``d/a -> .``) is searched once for the same rest of the pattern: no exponential growth, no repeats."""
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    found: list[str] = []
    seen: set[tuple[int, int, int]] = set()

    def visit(folder: str, rest: tuple[str, ...]) -> None:
        if not rest:
            found.append(folder)
            return
        try:
            info = os.stat(folder or ".")
            entries = sorted(os.scandir(folder or "."), key=lambda e: e.name)
        except OSError:
            return
        if (info.st_dev, info.st_ino, len(rest)) in seen:
            return
        seen.add((info.st_dev, info.st_ino, len(rest)))
        head, tail = rest[0], rest[1:]
        if head == "**":
            visit(folder, tail)  # ** as no folder at all
        for entry in entries:
            path = os.path.join(folder, entry.name)
            if not _name_matches(entry.name, "*" if head == "**" else head):
                continue
            if entry.is_dir():
                visit(path, rest if head == "**" else tail)  # ** as one more folder
            elif not tail:
                found.append(path)

    visit(os.path.join(*parts[:fixed]) if fixed else "", parts[fixed:])
    return sorted(dict.fromkeys(found))


def expand(paths: Iterable[str | os.PathLike]) -> Iterator[tuple[str, str | None]]:
    """Each argument as ``(file, None)`` items, or ``(path, reason)`` for what is not classified.

    A folder yields its files (recursively; non-images as ``skipped``); a glob pattern yields its matches in
    sorted order (folders among them are walked; a folder reached twice through links is searched once);
    anything else is taken as a file, whatever its name.
    """
    for raw in paths:
        path = os.fspath(raw)
        if os.path.isdir(path):
            yield from _folder_entries(path)
        elif os.path.exists(path) or os.path.islink(path):
            yield path, None
        elif glob.has_magic(path):
            matches, listed = _glob(path), set()
            if not matches:
                yield path, "no-match: the pattern matches no file"
            for match in matches:  # `d/**` matches folders and the files in them: each file once
                for item in (_folder_entries(match) if os.path.isdir(match) else [(match, None)]):
                    if item[0] not in listed:
                        listed.add(item[0])
                        yield item
        else:
            yield path, "not-found: no such file or folder"


# --- labels ---------------------------------------------------------------------------------------

def read_labels(model_path: str | os.PathLike, labels_path: str | os.PathLike | None = None) -> list[str] | None:
    """Class names in output order: ``labels_path``, else embedded, else ``labels.txt`` beside the model."""
    if labels_path is not None:
        return parse_labels(fileio.read_text(labels_path, limit=fileio.SMALL_FILE_LIMIT))
    embedded = embedded_files(model_path).get(LABELS_FILE)
    if embedded is not None:
        return parse_labels(embedded.decode("utf-8"))
    beside = Path(model_path).with_name(LABELS_FILE)
    if beside.is_file():
        return parse_labels(fileio.read_text(beside, limit=fileio.SMALL_FILE_LIMIT))
    return None


def embedded_metadata(model: str | os.PathLike | bytes) -> dict[str, Any] | None:
    """The model's embedded ``metadata.json`` (a JSON object), None when it has none; anything else is a
    ``ModelError``."""
    raw = embedded_files(model).get(METADATA_FILE)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        raise litert.ModelError(f"the model's embedded {METADATA_FILE} is not valid JSON ({error})",
                                "rebuild the model with the final stage, or pass --fit") from error
    if not isinstance(value, dict):
        raise litert.ModelError(f"the model's embedded {METADATA_FILE} holds a {type(value).__name__}, not an object",
                                "rebuild the model with the final stage")
    return value


def model_fit(model: str | os.PathLike | bytes) -> str:
    """How photos are fitted to the model's square input (``images.FITS``), from its ``metadata.json``;
    ``squash`` for files that do not say (every model before the choice existed was squashed)."""
    fit = (embedded_metadata(model) or {}).get("fit", images.DEFAULT_FIT)
    if not isinstance(fit, str) or fit not in images.FITS:
        raise litert.ModelError(f"the model's {METADATA_FILE} names an unknown fit {fit!r}",
                                f"pass --fit ({', '.join(images.FITS)}), or rebuild the model")
    return fit


# --- prediction -----------------------------------------------------------------------------------

def _load(path: str, size: int, fit: str = images.DEFAULT_FIT) -> np.ndarray:
    return images.load_for_model(path, size, fit)


def _error_text(error: BaseException) -> str:
    if isinstance(error, images.ImageError):
        return str(error)
    if isinstance(error, OSError):
        return f"unreadable: {error.strerror or error}"
    return f"unreadable: {type(error).__name__}: {error}"


def load_model(model: str | os.PathLike | TFLiteModel, *, labels: Sequence[str] | str | os.PathLike | None = None,
               num_threads: int | None = None) -> tuple[TFLiteModel, list[str]]:
    """The interpreter and its class names (checked against the output size).

    A path goes through ``litert.load``: a bare ``.tflite`` or a release bundle ``.zip`` (read through
    ``fileio``: a named pipe or device given as the model is refused instead of blocking)."""
    if not isinstance(model, TFLiteModel):
        return litert.load_model(model, labels=labels, num_threads=num_threads)
    runner = model
    if labels is None or isinstance(labels, (str, os.PathLike)):
        names = parse_labels(fileio.read_text(labels, limit=fileio.SMALL_FILE_LIMIT)) if labels is not None else None
        if names is None:
            embedded = embedded_files(model.content).get(LABELS_FILE)
            names = parse_labels(embedded.decode("utf-8")) if embedded is not None else None
    else:
        names = list(labels)
    if names is None:
        names = [f"class_{i}" for i in range(runner.num_classes)]
    if len(names) != runner.num_classes:
        raise ValueError(f"{len(names)} labels for a model with {runner.num_classes} outputs")
    return runner, names


def predict(paths: Iterable[str | os.PathLike], model: str | os.PathLike | TFLiteModel, top_k: int = 1, *,
            labels: Sequence[str] | str | os.PathLike | None = None, num_threads: int | None = None,
            workers: int | None = None, fit: str | None = None) -> Iterator[Prediction]:
    """Classify every image the paths name, in order, one ``Prediction`` each, streaming.

    ``workers`` threads decode images ahead of the interpreter (default: the CPU count); at most a few
    per worker are in memory at once. ``num_threads`` goes to the LiteRT interpreter. ``fit`` (squash,
    crop, pad) defaults to the one the model carries in its ``metadata.json``.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    runner, names = load_model(model, labels=labels, num_threads=num_threads)
    fit = fit or model_fit(runner.content)
    k = min(top_k, len(names))
    size = runner.image_size
    workers = workers or os.cpu_count() or 2  # None: one per core
    window = 4 * workers
    pending: deque[tuple[str, Future | str]] = deque()

    def finish(path: str, job: Future | str) -> Prediction:
        if isinstance(job, str):
            return (Prediction(path, skipped=job[len(SKIPPED):]) if job.startswith(SKIPPED)
                    else Prediction(path, error=job))
        try:
            image = job.result()
        except Exception as error:  # noqa: BLE001 - any undecodable file is reported, the rest go on
            return Prediction(path, error=_error_text(error))
        probabilities = runner.predict_one(image)
        order = np.argsort(-probabilities, kind="stable")[:k]  # ties: lowest index first, as argmax
        return Prediction(path, tuple((names[i], float(probabilities[i])) for i in order))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        for path, error in expand(paths):
            pending.append((path, error if error else pool.submit(_load, path, size, fit)))
            if len(pending) >= window:
                yield finish(*pending.popleft())
        while pending:
            yield finish(*pending.popleft())


# --- evaluation on a prepared split (the artifact check and the TensorFlow-free deploy check) --------

def read_split(dataset_dir: str | os.PathLike, split: str = "test") -> tuple[list[str], list[tuple[str, str]]]:
    """Classes (sorted, as training orders them) and ``(file, class)`` of a prepared split's accepted images.

    Reads ``manifest.csv`` with the standard library only (``inputs.read_accepted`` does the same for
    training, but its module needs the training stack).
    """
    manifest = Path(dataset_dir) / "manifest.csv"
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["status"] == "accepted"]
    classes = sorted({row["class"] for row in rows})
    return classes, [(row["output"], row["class"]) for row in rows if row["split"] == split]


def evaluate_split(model: str | os.PathLike | TFLiteModel, dataset_dir: str | os.PathLike, *, split: str = "test",
                   num_threads: int | None = None) -> dict[str, Any]:
    """Accuracy of a model on a prepared split, with each image's predicted class."""
    classes, entries = read_split(dataset_dir, split)
    runner, names = load_model(model, num_threads=num_threads)
    if names != classes and not all(n.startswith("class_") for n in names):
        raise ValueError(f"the model's labels {names} differ from the data set's classes {classes}")
    dataset_dir = Path(dataset_dir)
    results = list(predict([dataset_dir / rel for rel, _ in entries], runner, top_k=1, labels=classes))
    errors = [r.to_dict() for r in results if not r.ok]
    predicted = [r.label for r in results]
    correct = sum(p == cls for p, (_, cls) in zip(predicted, entries))
    return {"split": split, "n": len(entries), "correct": correct,
            "accuracy": correct / len(entries) if entries else 0.0, "errors": errors,
            "predictions": [{"path": rel, "label": cls, "predicted": p} for (rel, cls), p in zip(entries, predicted)]}


# --- command line ---------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="image files, folders (searched recursively) or glob patterns (quote them)")
    parser.add_argument("--model", required=True, help="the .tflite file (e.g. models/final/trashnet.tflite) or "
                                                        "the release bundle .zip (dist/trashnet-<version>.zip)")
    parser.add_argument("--top-k", type=int, default=1, metavar="K", help="labels to show per image (default 1)")
    parser.add_argument("--json", action="store_true",
                        help="JSON Lines on stdout: one object per image (path, label, top_k or error)")
    parser.add_argument("--labels", help="class names, one per line (default: embedded in the model, "
                                         "else labels.txt beside it)")
    parser.add_argument("--fit", choices=images.FITS,
                        help="squash, centre-crop or pad photos to the square input (default: the model's own)")
    parser.add_argument("--threads", type=_at_least_one, default=None, help="LiteRT interpreter threads")
    parser.add_argument("--workers", type=_at_least_one, default=None,
                        help="image-decoding threads (default: CPU count)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (shown on stderr when it is a terminal)")


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _progress(iterator: Iterator[Prediction], enabled: bool) -> Iterator[Prediction]:
    if not enabled:
        return iterator
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a nicety; the deployment set has tqdm through ai-edge-litert anyway
        return iterator
    # disable=None: a bar on a terminal, nothing in a log file or pipe.
    return iter(tqdm(iterator, unit="img", file=sys.stderr, dynamic_ncols=True, leave=False, disable=None))


def _table_line(result: Prediction) -> str:
    pairs = "  ".join(f"{label} {100 * prob:6.2f}%" for label, prob in result.top_k)
    return f"{pairs}  {result.path}"


def command(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        print("error: --top-k must be at least 1", file=sys.stderr)
        return 2
    try:
        for path in (args.model, args.labels):
            if path is not None:
                fileio.open_regular(path).close()  # a named pipe or device would block the read
        runner, names = load_model(args.model, labels=args.labels, num_threads=args.threads)
        fit = args.fit or model_fit(runner.content)
    except (OSError, ValueError, RuntimeError, UserError) as error:
        what, hint = getattr(error, "message", error), getattr(error, "hint", None) or "check --model and --labels"
        print(f"error: cannot use model {args.model}: {what} - {hint}", file=sys.stderr)
        return 2
    if names == [f"class_{i}" for i in range(len(names))]:
        print(f"warning: no labels in or beside {args.model}: showing class indices (use --labels)", file=sys.stderr)
    results = predict(args.paths, runner, args.top_k, labels=names, workers=args.workers, fit=fit)
    failed = done = skipped = 0
    try:
        for result in _progress(results, enabled=not args.no_progress):
            done += 1
            if result.skipped is not None:
                skipped += 1
                print(f"{result.path}: {SKIPPED}{result.skipped}", file=sys.stderr)
            elif not result.ok:
                failed += 1
                print(f"{result.path}: {result.error}", file=sys.stderr)
            if args.json:
                _write(json.dumps(result.to_dict()) + "\n")
            elif result.ok:
                _write(_table_line(result) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `predict ... | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1 if failed else 0
    print(f"{done - failed - skipped} classified, {failed} failed" + (f", {skipped} skipped (not images)" if skipped
                                                                    else ""), file=sys.stderr)
    return 1 if failed else 0


def _write(text: str) -> None:
    """To stdout; a file name that is not valid UTF-8 is written with backslash escapes, never a crash."""
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:
        sys.stdout.write(text.encode("utf-8", "backslashreplace").decode("utf-8"))
