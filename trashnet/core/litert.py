"""Opening a model for classification: a bare ``.tflite`` or a release bundle ``.zip``, with labels and preprocessing.

``load(path)`` is the one way to open a model for classification: a bare ``.tflite`` (labels from its
embedded files, normalization from its TFLite metadata) or a release bundle ``.zip`` (``trashnet release``:
the ``.tflite`` checked against the bundle's ``SHA256SUMS``, labels and preprocessing from its
``labels.txt`` and ``model_card.json``)::

    model = litert.load("dist/trashnet-0.2.0+cpu.g1a2b3c4.zip")
    probabilities = model.predict(images)  # (N, S, S, 3) uint8/float RGB in [0, 255], S = model.image_size
    model.labels, model.preprocessing.mean, model.preprocessing.std

The interpreter itself is ``trashnet.core.tflite.TFLiteModel``. Like it, this module imports only NumPy,
ai-edge-litert and the standard library: never TensorFlow.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np

from trashnet.core import fileio
from trashnet.core.errors import UserError
from trashnet.core.tflite import TFLiteModel

LABELS_FILE = "labels.txt"  # beside the model, inside its appended zip, and inside the release bundle
CARD_JSON = "model_card.json"  # inside the release bundle
SUMS_FILE = "SHA256SUMS"  # inside the release bundle


class ModelError(UserError, ValueError):
    """A model file or bundle that cannot be used; the message says what is wrong and what to do."""


def parse_labels(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def embedded_files(model: str | os.PathLike | bytes) -> dict[str, bytes]:
    """Files of the zip appended to a ``.tflite`` (TFLite metadata's associated files); {} if there is none.
    Each is capped like a bundle's small files: a model cannot carry a zip bomb."""
    content = model if isinstance(model, bytes) else fileio.read_bytes(model, limit=fileio.MODEL_FILE_LIMIT)
    if not zipfile.is_zipfile(io.BytesIO(content)):
        return {}
    where = Path("the model") if isinstance(model, bytes) else Path(model)
    return {PurePosixPath(name).name: data
            for name, data in read_zip_members(where, content, model_limit=MAX_SMALL_MEMBER).items()}


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes the model's input: RGB, squashed to ``size`` x ``size``, then ``(x - mean) / std``.

    ``source`` says where it was read from: ``tflite-metadata`` (the file's NormalizationOptions),
    ``model_card`` (a release bundle's ``model_card.json``) or ``default`` (a file with neither: raw
    [0, 255] pixels, as every model of this project takes).
    """

    size: int
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    color: str = "RGB"
    resize: str = "squash: the whole frame resized to a square, bilinear, no crop"
    source: str = "default"

    @property
    def identity(self) -> bool:
        return all(m == 0.0 for m in self.mean) and all(s == 1.0 for s in self.std)


@dataclass(frozen=True)
class LoadedModel:
    """A classifier ready to run: interpreter, class names in output order, preprocessing, where it came from."""

    runner: TFLiteModel
    labels: list[str]
    preprocessing: Preprocessing
    path: Path
    kind: str  # "tflite" or "bundle"
    metadata: dict[str, Any] = field(default_factory=dict)  # TFLite metadata: name, version, author, license...
    card: dict[str, Any] | None = None  # the bundle's model_card.json

    @property
    def image_size(self) -> int:
        return self.runner.image_size

    def predict(self, images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
        """(N, S, S, 3) RGB in [0, 255] -> (N, num_classes) probabilities, in ``labels`` order.

        The runner applies the preprocessing's mean and std itself (``load`` sets it), so ``runner.predict``
        and this are the same."""
        return self.runner.predict(images, batch_size=batch_size)

    def predict_one(self, image: np.ndarray) -> np.ndarray:
        """One (S, S, 3) RGB image in [0, 255] -> probabilities (num_classes,)."""
        return self.runner.predict_one(image)


def load(path: str | os.PathLike, *, labels: Sequence[str] | str | os.PathLike | None = None,
         num_threads: int | None = None) -> LoadedModel:
    """Open a ``.tflite`` file or a release bundle ``.zip`` for classification. TensorFlow-free.

    ``labels``: class names (a list, or a file with one per line) that override the model's own. Without
    it, a bare ``.tflite`` takes the ``labels.txt`` embedded in it, else a ``labels.txt`` beside it, else
    ``class_0``... names; a bundle takes its ``labels.txt``. Raises ``ModelError`` (one line, what to do)
    for a missing file, a zip that is not a release bundle, a bundle whose model fails its checksum, or
    labels that do not match the model's outputs.
    """
    path = Path(path)
    try:  # through fileio: a named pipe or device is refused instead of blocking
        content = fileio.read_bytes(path, limit=fileio.MODEL_FILE_LIMIT)
    except (OSError, fileio.TooLargeError) as error:
        raise ModelError(f"cannot read model {path}: {getattr(error, 'strerror', None) or error}",
                         "check --model") from error
    if content[:4] == b"PK\x03\x04":
        model_bytes, names, preprocessing, card, kind = _read_bundle(path, content)
    elif content[4:8] == b"TFL3":
        model_bytes, card, kind = content, None, "tflite"
        embedded = embedded_files(model_bytes).get(LABELS_FILE)
        beside = path.with_name(LABELS_FILE)
        names = (parse_labels(embedded.decode("utf-8")) if embedded is not None
                 else parse_labels(fileio.read_text(beside, limit=fileio.SMALL_FILE_LIMIT)) if beside.is_file()
                 else None)
        preprocessing = None
    else:
        raise ModelError(f"{path} is neither a .tflite model (no TFL3 identifier) nor a release bundle .zip: "
                         "pass the model file or the bundle that `python -m trashnet release` writes")
    try:
        runner = TFLiteModel(model_bytes, num_threads=num_threads)
    except (ValueError, RuntimeError) as error:
        raise ModelError(f"LiteRT cannot load {path}: {error}") from error
    metadata = read_metadata(model_bytes) or {}
    if preprocessing is None:
        norm = metadata.get("normalization")
        preprocessing = (Preprocessing(runner.image_size, tuple(norm["mean"]), tuple(norm["std"]),
                                       metadata.get("color_space") or "RGB", source="tflite-metadata")
                         if norm else Preprocessing(runner.image_size))
    if preprocessing.size != runner.image_size:
        raise ModelError(f"{path}: the model card says {preprocessing.size} px, the model takes "
                         f"{runner.image_size} px: the bundle is inconsistent; rebuild it")
    if not preprocessing.identity:
        runner.normalization = (np.asarray(preprocessing.mean, np.float32), np.asarray(preprocessing.std, np.float32))
    if labels is not None:
        names = (parse_labels(fileio.read_text(labels, limit=fileio.SMALL_FILE_LIMIT))
                 if isinstance(labels, (str, os.PathLike)) else list(labels))
    if names is None:
        names = [f"class_{i}" for i in range(runner.num_classes)]
    if len(names) != runner.num_classes:
        raise ModelError(f"{len(names)} labels for a model with {runner.num_classes} outputs ({path}): "
                         "pass the labels file that belongs to this model")
    if len(set(names)) != len(names):
        raise ModelError(f"the labels of {path} name a class twice ({', '.join(names)})",
                         "pass the labels file that belongs to this model")
    return LoadedModel(runner, names, preprocessing, path, kind, metadata, card)


def load_model(path: str | os.PathLike, *, labels: Sequence[str] | str | os.PathLike | None = None,
               num_threads: int | None = None) -> tuple[TFLiteModel, list[str]]:
    """``(runner, labels)`` of ``load(path)``: the pair ``predict.load_model`` and ``evaluate`` use."""
    loaded = load(path, labels=labels, num_threads=num_threads)
    return loaded.runner, loaded.labels


MAX_BUNDLE_MEMBERS = 32  # a release bundle holds 9 files
MAX_SMALL_MEMBER = fileio.SMALL_FILE_LIMIT  # labels, card, licences, example, SHA256SUMS


def read_zip_members(path: Path, content: bytes, *, model_limit: int = fileio.MODEL_FILE_LIMIT) -> dict[str, bytes]:
    """Every file of a zip, each refused before it is decompressed when its size passes the cap (a ``.tflite``:
    ``model_limit``; anything else: ``MAX_SMALL_MEMBER``), so a small zip cannot expand into gigabytes."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            infos = [info for info in archive.infolist() if not info.is_dir()]
            if len(infos) > MAX_BUNDLE_MEMBERS:
                raise ModelError(f"{path} holds {len(infos)} files, more than a release bundle "
                                 f"({MAX_BUNDLE_MEMBERS} at most): pass the bundle `python -m trashnet release` wrote")
            members = {}
            for info in infos:
                limit = model_limit if info.filename.endswith(".tflite") else MAX_SMALL_MEMBER
                if info.file_size > limit:
                    raise ModelError(f"{info.filename} in {path} would decompress to {info.file_size / 2**20:.0f} MiB, "
                                     f"more than the {limit / 2**20:.0f} MiB allowed: not a release bundle; "
                                     "download it again")
                with archive.open(info) as handle:  # zipfile stops at the declared size and checks the CRC
                    members[info.filename] = handle.read(limit + 1)
            return members
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError) as error:
        if isinstance(error, ModelError):
            raise
        raise ModelError(f"{path} is not a readable zip ({error}): download the bundle again") from error


def _read_bundle(path: Path, content: bytes) -> tuple[bytes, list[str], Preprocessing | None, dict[str, Any] | None,
                                                     str]:
    """The model, labels and preprocessing of a release bundle. Every file in it is checked against its
    SHA256SUMS; a bundle without one, with a malformed one, or with a file it does not list is refused."""
    members = read_zip_members(path, content)
    folders = {PurePosixPath(name).parent for name in members}
    models = [name for name in members if name.endswith(".tflite")]
    if len(models) != 1 or len(folders) != 1:
        raise ModelError(f"{path} holds {len(models)} .tflite files in {len(folders)} folders, expected one model in "
                         "one folder: is it a release bundle from `python -m trashnet release`?")
    folder = folders.pop()
    files = {PurePosixPath(name).name: data for name, data in members.items()}
    if SUMS_FILE not in files:
        raise ModelError(f"{path} has no {SUMS_FILE}: its files cannot be checked, so it is not used; "
                         "download the bundle again")
    try:
        sums = fileio.parse_sums(files[SUMS_FILE].decode("utf-8"), f"{SUMS_FILE} in {path}")
    except (UnicodeDecodeError, ValueError) as error:
        raise ModelError(f"{path}: {SUMS_FILE} is malformed ({error}): download the bundle again") from error
    unlisted = sorted(set(files) - set(sums) - {SUMS_FILE})
    absent = sorted(set(sums) - set(files))
    changed = sorted(name for name in set(files) & set(sums)
                     if hashlib.sha256(files[name]).hexdigest() != sums[name])
    for names, what in ((unlisted, f"not listed in its {SUMS_FILE}"), (absent, f"listed in its {SUMS_FILE} but absent"),
                        (changed, f"do not match their {SUMS_FILE} entries")):
        if names:
            raise ModelError(f"{', '.join(names)} in {path}: {what}; the bundle is damaged or was altered; "
                             "download it again")
    model_name = PurePosixPath(models[0]).name
    if LABELS_FILE not in files:
        raise ModelError(f"{path} has no {LABELS_FILE} beside {folder / model_name}: not a complete release bundle")
    try:
        names = parse_labels(files[LABELS_FILE].decode("utf-8"))
        card = json.loads(files[CARD_JSON]) if CARD_JSON in files else None
    except (UnicodeDecodeError, ValueError) as error:
        raise ModelError(f"{path}: {LABELS_FILE} or {CARD_JSON} is unreadable ({error}): download it again") from error
    return files[model_name], names, card_preprocessing(card, path), card, "bundle"


def card_preprocessing(card: Any, where: Path) -> Preprocessing | None:
    """The preprocessing a model card's ``input`` gives, checked; None when the card does not give it."""
    spec = card.get("input") if isinstance(card, dict) else None
    if not isinstance(spec, dict) or spec.get("size") is None:
        return None  # load() reads the file's own metadata
    norm = spec.get("normalization") or {}
    mean, std, size = norm.get("mean", [0.0]), norm.get("std", [1.0]), spec["size"]

    def numbers(value: Any) -> bool:
        return (isinstance(value, list) and len(value) in (1, 3)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value))

    if (not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 4096 or not isinstance(norm, dict)
            or not numbers(mean) or not numbers(std) or any(v == 0 for v in std)
            or spec.get("color", "RGB") != "RGB"):
        raise ModelError(f"{where}: {CARD_JSON} gives an invalid input ({json.dumps(spec)[:200]}): "
                         "download the bundle again")
    return Preprocessing(size, tuple(mean), tuple(std), "RGB", source="model_card")


# --- reading the TFLite metadata table (no tflite-support needed) ----------------------------------
# A few fields of the flatbuffers written by tflite-support's MetadataWriter, read by their field index in
# the schemas (tensorflow/lite/schema/schema.fbs, tensorflow_lite_support/metadata/metadata_schema.fbs).
# tflite-support itself cannot be installed beside TensorFlow (protobuf < 4), and the deployment path
# needs only the normalization and the names.

class _Table:
    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vsize = struct.unpack_from("<H", buf, self.vtable)[0]

    def _field(self, index: int) -> int | None:
        entry = 4 + 2 * index
        if entry >= self.vsize:
            return None
        offset = struct.unpack_from("<H", self.buf, self.vtable + entry)[0]
        return self.pos + offset if offset else None

    def scalar(self, index: int, fmt: str, default: Any = None) -> Any:
        at = self._field(index)
        return default if at is None else struct.unpack_from("<" + fmt, self.buf, at)[0]

    def _target(self, at: int) -> int:
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, index: int) -> "_Table | None":
        at = self._field(index)
        return None if at is None else _Table(self.buf, self._target(at))

    def _vector(self, index: int) -> tuple[int, int] | None:
        at = self._field(index)
        if at is None:
            return None
        start = self._target(at)
        return start + 4, struct.unpack_from("<I", self.buf, start)[0]

    def string(self, index: int) -> str | None:
        vector = self._vector(index)
        return None if vector is None else self.buf[vector[0]:vector[0] + vector[1]].decode("utf-8")

    def bytes(self, index: int) -> bytes | None:
        vector = self._vector(index)
        return None if vector is None else self.buf[vector[0]:vector[0] + vector[1]]

    def floats(self, index: int) -> list[float]:
        vector = self._vector(index)
        return [] if vector is None else list(struct.unpack_from(f"<{vector[1]}f", self.buf, vector[0]))

    def tables(self, index: int) -> list["_Table"]:
        vector = self._vector(index)
        if vector is None:
            return []
        return [_Table(self.buf, self._target(vector[0] + 4 * i)) for i in range(vector[1])]


_COLOR_SPACES = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}


def read_metadata(model: bytes) -> dict[str, Any] | None:
    """The image-classifier fields of a file's ``TFLITE_METADATA``, or None when it has none.

    ``{"name", "version", "description", "author", "license", "normalization": {"mean", "std"} | None,
    "color_space", "associated_files": [...], "model_files": [...]}``: the input's NormalizationOptions and
    ImageProperties, the output's associated files (the labels) and the model's own (``metadata.json``). Files without the table (or not flatbuffers) give None.
    """
    try:
        root = _Table(model, struct.unpack_from("<I", model, 0)[0])
        buffers = root.tables(4)  # Model.buffers
        content = None
        for entry in root.tables(6):  # Model.metadata: (name, buffer index)
            if entry.string(0) == "TFLITE_METADATA":
                content = buffers[entry.scalar(1, "I", 0)].bytes(0)  # Buffer.data
        if not content:
            return None
        meta = _Table(content, struct.unpack_from("<I", content, 0)[0])
        result: dict[str, Any] = {"name": meta.string(0), "description": meta.string(1), "version": meta.string(2),
                                  "author": meta.string(4), "license": meta.string(5), "normalization": None,
                                  "color_space": None, "associated_files": [],
                                  "model_files": [f.string(0) for f in meta.tables(6)]}  # ModelMetadata files
        subgraphs = meta.tables(3)
        if subgraphs:
            inputs, outputs = subgraphs[0].tables(2), subgraphs[0].tables(3)
            if inputs:
                for unit in inputs[0].tables(4):  # TensorMetadata.process_units
                    if unit.scalar(0, "B", 0) == 1:  # ProcessUnitOptions.NormalizationOptions
                        options = unit.table(1)
                        if options is not None:
                            result["normalization"] = {"mean": options.floats(0), "std": options.floats(1)}
                tensor_content = inputs[0].table(3)
                if tensor_content is not None and tensor_content.scalar(0, "B", 0) == 2:  # ImageProperties
                    properties = tensor_content.table(1)
                    if properties is not None:
                        result["color_space"] = _COLOR_SPACES.get(properties.scalar(0, "b", 0), "UNKNOWN")
            for tensor in outputs:
                result["associated_files"] += [f.string(0) for f in tensor.tables(6)]  # AssociatedFile.name
        return result
    except (struct.error, IndexError, UnicodeDecodeError):
        return None
