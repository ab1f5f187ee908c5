"""Measure a model on any labelled ``<class>/<image>`` folder: ``python -m trashnet evaluate``.

    python -m trashnet evaluate --model models/cpu/final/trashnet.tflite --data photos/ \\
        --class-map photos-classes.yaml --out eval/

A *class map* (YAML or JSON) says which model label each folder stands for, for data sets whose folder
names differ from the model's labels, that lack some of its classes or that merge two of them::

    bottles: glass        # folder -> model label
    cans: metal
    tins: metal           # two folders merged into one class
    misc: null            # a folder that is not scored (its files are counted as skipped)

Folders the map does not name must be model labels themselves. Every file in a scored folder is decoded
through ``images.load_for_model`` (as ``predict`` and training do); a file that cannot be read is listed
with its reason and left out of the numbers, never dropped silently. The numbers: accuracy, macro-F1 over
the classes present in the data (a prediction of a class the data lacks counts as wrong), per-class
precision/recall/F1, and the confusion matrix (rows: the data's classes; columns: every model output),
written as ``evaluation.json`` and ``confusion_matrix.png``.

TensorFlow-free: NumPy, Pillow, ai-edge-litert, scikit-learn (metrics), PyYAML (YAML maps) and
matplotlib (the PNG).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from trashnet.core import fileio, images
from trashnet.core.errors import UserError

RESULT_FILE = "evaluation.json"
FIGURE_FILE = "confusion_matrix.png"


class EvaluationError(UserError, ValueError):
    """Bad arguments or data: the message says what to fix."""


# --- class maps and folders -----------------------------------------------------------------------

def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ValueError(f"{', '.join(map(repr, twice))} given twice")
    return dict(pairs)


def load_class_map(path: str | os.PathLike) -> dict[str, str | None]:
    """``folder -> model label or None`` from a YAML or JSON file (a mapping of strings); a folder named twice
    is an error (YAML and JSON would keep the last)."""
    path = Path(path)
    try:  # through fileio: a named pipe or /dev/zero is refused, a huge file is not read
        text = fileio.read_text(path, limit=fileio.SMALL_FILE_LIMIT)
    except (OSError, UnicodeDecodeError, fileio.TooLargeError) as error:
        raise EvaluationError(f"cannot read the class map {path}: {getattr(error, 'strerror', None) or error}",
                              "pass a YAML or JSON file with --class-map") from error
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except ValueError as error:
            raise EvaluationError(f"the class map {path} is not valid JSON: {error}", "fix it") from error
    else:
        import yaml

        try:
            data = fileio.load_yaml(text)
        except yaml.YAMLError as error:
            raise EvaluationError(f"the class map {path} is not valid YAML: {error}", "fix it") from error
    return check_class_map(data, str(path))


def check_class_map(data: Any, where: str = "class map") -> dict[str, str | None]:
    """Folder names (plain names, not paths) to model labels or null; anything else is refused."""
    hint = "write one `folder: label` (or `folder: null`) line per folder"
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise EvaluationError(f"{where}: expected a mapping of folder name -> model label (or null)", hint)
    for folder, label in data.items():
        if not folder or folder in (".", "..") or "/" in folder or "\\" in folder or "\0" in folder:
            raise EvaluationError(f"{where}: {folder!r} is not a folder name", hint)
        if label is not None and (not isinstance(label, str) or not label.strip()):
            raise EvaluationError(f"{where}: folder {folder!r} maps to {label!r}; use a model label or null", hint)
    return dict(data)


@dataclass
class LabelledFolder:
    """What a labelled folder holds, every file accounted for."""

    root: Path
    class_map: dict[str, str | None]  # every folder found -> the label it is scored as (None: skipped)
    files: list[tuple[str, str]] = field(default_factory=list)  # (path relative to root, model label)
    skipped: dict[str, int] = field(default_factory=dict)  # skipped folder -> number of files in it
    loose: list[str] = field(default_factory=list)  # files at the top level, outside any class folder
    unlistable: list[dict[str, str]] = field(default_factory=list)  # folders that could not be read: path, error


def _files_under(folder: Path, root: Path, unlistable: list[dict[str, str]]) -> list[Path]:
    """Every entry under ``folder`` that is not a folder, recursively, sorted: regular files, and also named
    pipes, sockets and dangling links (each is then scored or listed as unreadable, never dropped); hidden
    files (``.DS_Store``) included. A folder that cannot be listed, and a link to a folder (not followed: no
    loops), go to ``unlistable``."""
    found = []

    def failed(error: OSError) -> None:
        where = Path(error.filename or folder)
        unlistable.append({"path": where.relative_to(root).as_posix() if where.is_relative_to(root) else str(where),
                           "error": f"unreadable folder: {error.strerror or error}; its files were not scored"})

    for current, dirs, files in os.walk(folder, onerror=failed):
        dirs.sort()
        found += [Path(current) / name for name in files]
        for name in dirs:
            if os.path.islink(os.path.join(current, name)):  # listed, not followed: a loop cannot repeat files
                unlistable.append({"path": (Path(current) / name).relative_to(root).as_posix(),
                                   "error": "a link to a folder inside a class folder: not followed, not scored"})
    return sorted(found)


def scan(root: str | os.PathLike, labels: Sequence[str], class_map: dict[str, str | None] | None = None
         ) -> LabelledFolder:
    """The files of each ``<class>/`` folder of ``root``, with the model label each is scored as."""
    root = Path(root)
    if not root.is_dir():
        raise EvaluationError(f"--data {root} is not a folder: give a folder of <class>/<image> files")
    class_map = dict(class_map or {})
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = {p.name for p in folders}
    missing = sorted(set(class_map) - names)
    if missing:
        raise EvaluationError(f"the class map names folders that {root} lacks: {', '.join(missing)}")
    wrong = sorted({label for label in class_map.values() if label is not None} - set(labels))
    if wrong:
        raise EvaluationError(f"the class map maps to {', '.join(wrong)}, not labels of the model "
                              f"({', '.join(labels)})")
    unmapped = sorted(name for name in names if name not in class_map and name not in labels)
    if unmapped:
        raise EvaluationError(f"folders {', '.join(unmapped)} are not labels of the model ({', '.join(labels)}): "
                              "map them to a label, or to null to skip them, in --class-map")
    result = LabelledFolder(root, {name: class_map.get(name, name) for name in sorted(names)})
    result.loose = sorted(p.name for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    for folder in folders:
        label = result.class_map[folder.name]
        files = _files_under(folder, root, result.unlistable)
        if label is None:
            result.skipped[folder.name] = len(files)
            continue
        result.files += [(path.relative_to(root).as_posix(), label) for path in files]
    if not result.files:
        raise EvaluationError(f"no files to score in {root}: every class folder is empty or skipped")
    return result


# --- scoring --------------------------------------------------------------------------------------

def score(true_labels: Sequence[str], predicted: Sequence[int] | np.ndarray, labels: Sequence[str]
          ) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class numbers over the classes present in ``true_labels``.

    ``predicted`` are output indices of a model whose outputs are ``labels``; a prediction of a class the
    data lacks is simply wrong (it lowers recall, and no class's precision counts it).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(labels)
    index = {name: i for i, name in enumerate(labels)}
    truth = np.array([index[name] for name in true_labels], dtype=int)
    predicted = np.asarray(predicted, dtype=int)
    present = sorted(set(truth.tolist()))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=present,
                                                                     zero_division=0)
    matrix = confusion_matrix(truth, predicted, labels=list(range(len(labels))))[present]
    return {
        "n": int(len(truth)),
        "accuracy": float(np.mean(truth == predicted)) if len(truth) else 0.0,
        "macro_f1": float(np.mean(f1)) if present else 0.0,
        "per_class": {labels[c]: {"precision": float(precision[i]), "recall": float(recall[i]),
                                  "f1": float(f1[i]), "n": int(support[i])} for i, c in enumerate(present)},
        "confusion_matrix": {"rows": [labels[c] for c in present], "columns": labels,
                             "counts": matrix.astype(int).tolist()},
    }


def ood_block(dataset: str, scored: dict[str, Any], class_map: dict[str, str | None], *,
              unreadable: int = 0, fit: str = images.DEFAULT_FIT) -> dict[str, Any]:
    """The ``ood`` block of a variant's ``metrics.json`` (absent there means: not measured)."""
    return {"dataset": dataset, "n": scored["n"], "accuracy": scored["accuracy"], "macro_f1": scored["macro_f1"],
            "per_class": scored["per_class"], "confusion_matrix": scored["confusion_matrix"],
            "class_map": class_map, "unreadable": unreadable, "fit": fit}


def measure_ood(predict_fn, labels: Sequence[str], image_size: int, *, fit: str = images.DEFAULT_FIT,
                class_map: dict[str, str | None] | None = None, folder: str | os.PathLike | None = None
                ) -> dict[str, Any] | None:
    """The ``ood`` block for a model given as ``predict_fn(images uint8 (N, S, S, 3)) -> probabilities``.

    ``folder`` defaults to ``$TRASHNET_OOD_DATA``; None when neither is set (then: not measured). The set
    only measures: nothing here feeds training or checkpoint choice.
    """
    from trashnet.core import settings

    folder = Path(folder) if folder is not None else settings.ood_data()
    if folder is None:
        return None
    if not folder.is_dir():
        raise EvaluationError(f"${settings.ENV_OOD_DATA}={folder} is not a folder: point it at a labelled "
                              "<class>/<image> folder, or unset it to skip the OOD measurement")
    scanned = scan(folder, labels, class_map)
    kept, unreadable = predict_files(predict_fn, scanned, image_size, fit)
    scored = score([label for _, label, _, _ in kept], [p for _, _, p, _ in kept], labels)
    return ood_block(folder.name, scored, scanned.class_map, unreadable=len(unreadable), fit=fit)


# --- the model ------------------------------------------------------------------------------------

def load_tflite(model: str | os.PathLike, *, labels: str | os.PathLike | Sequence[str] | None = None,
                num_threads: int | None = None):
    """``(TFLiteModel, labels, fit)`` of a ``.tflite`` file or a release bundle ``.zip`` (``litert.load``)."""
    from trashnet.core import litert
    from trashnet.deploy import predict

    loaded = litert.load(model, labels=labels, num_threads=num_threads)
    return loaded.runner, loaded.labels, predict.model_fit(loaded.runner.content)


def _decode(path: Path, size: int, fit: str) -> np.ndarray | str:
    try:
        return images.load_for_model(path, size, fit)
    except images.ImageError as error:
        return str(error)
    except OSError as error:
        return f"unreadable: {error.strerror or error}"


CHUNK = 64  # images decoded and held at once: memory stays flat however many files there are


def predict_files(predict_fn, folder: LabelledFolder, size: int, fit: str, *, workers: int | None = None
                  ) -> tuple[list[tuple[str, str, int, float]], list[dict[str, str]]]:
    """Every scored file of ``folder`` through ``predict_fn(images) -> probabilities``, ``CHUNK`` at a time:
    ``(path, label, predicted index, its probability)`` per decoded file, and ``{path, error}`` per file
    (or folder, ``folder.unlistable``) that could not be read. Every file ends in exactly one of the two."""
    from concurrent.futures import ThreadPoolExecutor

    kept: list[tuple[str, str, int, float]] = []
    unreadable = list(folder.unlistable)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:  # Pillow releases the GIL
        for start in range(0, len(folder.files), CHUNK):
            part = folder.files[start:start + CHUNK]
            decoded = list(pool.map(lambda item: _decode(folder.root / item[0], size, fit), part))
            unreadable += [{"path": rel, "error": out} for (rel, _), out in zip(part, decoded) if isinstance(out, str)]
            good = [(rel, label, out) for (rel, label), out in zip(part, decoded) if not isinstance(out, str)]
            if good:
                probabilities = np.asarray(predict_fn(np.stack([out for _, _, out in good])))
                best = probabilities.argmax(axis=1)
                kept += [(rel, label, int(i), float(probabilities[row, i]))
                         for row, ((rel, label, _), i) in enumerate(zip(good, best))]
    if not kept:
        raise EvaluationError(f"none of the {len(folder.files)} files in {folder.root} could be read as an image",
                              "check --data (the files' reasons are above)" if unreadable else "check --data")
    return kept, unreadable


def evaluate_folder(model: str | os.PathLike, data: str | os.PathLike, *,
                    class_map: dict[str, str | None] | None = None, labels: str | os.PathLike | None = None,
                    fit: str | None = None, num_threads: int | None = None, workers: int | None = None,
                    batch_size: int = 32) -> dict[str, Any]:
    """Every file of a labelled folder through a ``.tflite`` model: the ``evaluation.json`` record. Streams:
    at most ``CHUNK`` decoded images in memory."""
    runner, names, model_default = load_tflite(model, labels=labels, num_threads=num_threads)
    fit = fit or model_default
    folder = scan(data, names, class_map)
    kept, unreadable = predict_files(lambda batch: runner.predict(batch, batch_size=batch_size), folder,
                                     runner.image_size, fit, workers=workers)
    scored = score([label for _, label, _, _ in kept], [p for _, _, p, _ in kept], names)
    root = folder.root
    return {
        "model": str(model), "data": str(root), "dataset": root.name, "labels": names, "image_size": runner.image_size,
        "fit": fit, **scored, "class_map": folder.class_map, "files": len(folder.files) + sum(folder.skipped.values()),
        "skipped_folders": folder.skipped, "loose_files": folder.loose, "unreadable": unreadable,
        "predictions": [{"path": rel, "label": label, "predicted": names[p], "confidence": round(confidence, 6)}
                        for rel, label, p, confidence in kept],
    }


# --- outputs --------------------------------------------------------------------------------------

def confusion_png(record: dict[str, Any], path: str | os.PathLike) -> Path:
    """The confusion matrix as a PNG: counts, shaded by each row's share."""
    from matplotlib.figure import Figure

    matrix = record["confusion_matrix"]
    counts = np.array(matrix["counts"], dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure = Figure(figsize=(1.1 * len(matrix["columns"]) + 2, 0.8 * len(matrix["rows"]) + 1.8))
    axis = figure.add_subplot()
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(matrix["columns"])), matrix["columns"], rotation=45, ha="right")
    axis.set_yticks(range(len(matrix["rows"])), matrix["rows"])
    axis.set_xlabel("predicted")
    axis.set_ylabel("folder's class")
    for (row, col), value in np.ndenumerate(counts):
        axis.text(col, row, f"{int(value)}", ha="center", va="center",
                  color="white" if shares[row, col] > 0.5 else "black")
    axis.set_title(f"{record['dataset']}: accuracy {100 * record['accuracy']:.1f} %, "
                   f"macro-F1 {record['macro_f1']:.3f} (n={record['n']})", fontsize=10)
    path = Path(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    fileio.atomic_write_bytes(path, buffer.getvalue())
    return path


def write_outputs(record: dict[str, Any], out: str | os.PathLike) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return fileio.write_json(out / RESULT_FILE, record), confusion_png(record, out / FIGURE_FILE)


def summary_lines(record: dict[str, Any]) -> list[str]:
    lines = [f"{record['dataset']}: {record['n']} images, accuracy {100 * record['accuracy']:.1f} %, "
             f"macro-F1 {record['macro_f1']:.3f} (fit {record['fit']})"]
    for name, row in record["per_class"].items():
        lines.append(f"  {name:<10} n={row['n']:<4} precision {row['precision']:.3f}  recall {row['recall']:.3f}"
                     f"  F1 {row['f1']:.3f}")
    if record["skipped_folders"]:
        lines.append("skipped folders: " + ", ".join(f"{k} ({v} files)" for k, v in record["skipped_folders"].items()))
    # Every path found is accounted for: scored, unreadable (listed), in a skipped folder, or loose.
    lines.append(f"files: {record['n']} scored, {len(record['unreadable'])} unreadable, "
                 f"{sum(record['skipped_folders'].values())} in skipped folders, {len(record['loose_files'])} loose "
                 f"(outside any class folder)")
    return lines


# --- command line ---------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="a .tflite file (labels embedded or labels.txt beside it) or a release bundle .zip")
    parser.add_argument("--data", required=True, help="a folder of <class>/<image> files")
    parser.add_argument("--class-map", help="YAML or JSON: folder name -> model label, or null to skip a folder")
    parser.add_argument("--out", help="folder for evaluation.json and confusion_matrix.png (default: print only)")
    parser.add_argument("--fit", choices=images.FITS,
                        help="squash, centre-crop or pad photos to the square input (default: the model's own)")
    parser.add_argument("--labels", help="class names, one per line (default: embedded in the model)")
    parser.add_argument("--threads", type=int, default=None, help="LiteRT interpreter threads")


def command(args: argparse.Namespace) -> int:
    try:
        class_map = load_class_map(args.class_map) if args.class_map else None
        record = evaluate_folder(args.model, args.data, class_map=class_map, labels=args.labels, fit=args.fit,
                                 num_threads=args.threads)
    except (EvaluationError, OSError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in summary_lines(record):
        print(line)
    for item in record["unreadable"]:
        print(f"{item['path']}: {item['error']}", file=sys.stderr)
    if record["unreadable"]:
        print(f"warning: {len(record['unreadable'])} unreadable files left out of the numbers (listed in "
              f"{RESULT_FILE} under 'unreadable')", file=sys.stderr)
    if args.out:
        written = write_outputs(record, args.out)
        print("wrote " + ", ".join(str(p) for p in written))
    return 0
