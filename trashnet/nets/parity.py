"""Preprocessing parity of a model file: does every app that loads it give ``predict``'s answer on whole photos?

For each way a real app turns a whole photo into the model's input (``trashnet.nets.consumers``) and for
``predict`` itself: top-1 agreement with ``predict``, accuracy, accuracy difference and the largest probability
difference, per data set. Used by ``benchmarks/bench_parity.py`` (any file, the official test list, ood-dev)
and by the final stage (the shipped ``trashnet.tflite`` on the prepared test split and the OOD folder, recorded
in its ``metrics.json`` and model card).

MediaPipe and OpenCV run in MediaPipe's tool venv (``requirements-mediapipe.lock``; ``mediapipe_python``:
``$TRASHNET_MEDIAPIPE_PYTHON``, else ``.venv-mediapipe``, which run_all.sh creates) through
``trashnet/tools/mediapipe_consumers.py``; LiteRT runs every input in this process. Without that venv
``measure_file`` measures the consumers this venv has (Pillow, tf.image) and names the others in
``ParityRecord.unmeasured`` with the reason.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from trashnet.core import fileio, images, litert, settings
from trashnet.core.records import ConsumerParity, ParityRecord
from trashnet.data import splits
from trashnet.deploy import evaluate, predict
from trashnet.nets import consumers

HELPER = settings.PACKAGE_DIR / "tools" / "mediapipe_consumers.py"
TEST_SET, OOD_SET = "trashnet_test", "ood_dev"  # the benchmark's sets: the official test list, ood-dev
FINAL_TEST, FINAL_OOD = "test", "ood"  # the final stage's: the prepared test split, $TRASHNET_OOD_DATA
# The targets of issue 26: every consumer agrees with predict on this share of photos ...
AGREEMENT_TARGET = 0.97
ACCURACY_TARGET_PP = 1.0  # ... and its accuracy lies within this many percentage points of predict's
TOOL_VENV_CONSUMERS = (consumers.MEDIAPIPE, *consumers.OPENCV_RESIZERS)  # need MediaPipe's venv (cv2)
CHUNK = 64  # photos decoded and run at a time: a 431-photo split at 320 px would need ~0.5 GB at once

Classify = Callable[[np.ndarray], np.ndarray]  # (N, S, S, 3) float [0, 255] -> (N, classes) probabilities
Sets = dict[str, tuple[list[str], list[str]]]  # data set name -> (photo paths, true labels)


class ParityError(RuntimeError):
    """A data set or MediaPipe's helper could not be used; the message says what to fix."""


def mediapipe_python() -> Path | None:
    """MediaPipe's tool venv interpreter: ``$TRASHNET_MEDIAPIPE_PYTHON`` (as given), else ``.venv-mediapipe``;
    None when the variable says ``none`` (the Docker image: no such venv)."""
    value = os.environ.get(settings.ENV_MEDIAPIPE_PYTHON)
    if value == "none":
        return None
    return Path(value) if value else settings.MEDIAPIPE_VENV / "bin" / "python"


def official_test(root: Path) -> tuple[list[str], list[str]]:
    """Files and classes of TrashNet's official test split (the authors' list, bundled with the package)."""
    entries = sorted(key for key, split in splits.read_official_split().items() if split == "test")
    missing = [key for key in entries if not (root / key).is_file()]
    if missing:
        raise ParityError(f"{len(missing)} test files are missing under {root} (first: {missing[0]}) - "
                          "give the full dataset-resized folder")
    return [str(root / key) for key in entries], [key.split("/")[0] for key in entries]


def prepared_test(dataset_dir: Path) -> tuple[list[str], list[str]]:
    """A prepared data set's test photos (whole, as ``prepare`` accepted them) and their classes."""
    _, entries = predict.read_split(dataset_dir, "test")
    return [str(Path(dataset_dir) / rel) for rel, _ in entries], [label for _, label in entries]


def labelled_folder(root: Path, labels: list[str], class_map: dict[str, str | None] | None = None
                    ) -> tuple[list[str], list[str]]:
    """The photos of a labelled ``<class>/<image>`` folder that decode (``evaluate.scan`` also lists files that
    are not images; a consumer cannot be given those) and their labels."""
    scanned = evaluate.scan(root, labels, class_map)
    kept = [(str(root / rel), label) for rel, label in scanned.files if _decodes(root / rel)]
    return [path for path, _ in kept], [label for _, label in kept]


def _decodes(path: Path) -> bool:
    try:
        consumers.decode(path)
    except images.ImageError:
        return False
    return True


def helper_timeout_s(photos: int) -> float:
    """How long MediaPipe's helper may take: ~0.1 s a photo at 320 px on a loaded 2-core machine, 20x that, so
    a hung helper (it once deadlocked) costs the final stage minutes, not hours."""
    return 120.0 + 2.0 * photos


def opencv_and_mediapipe(python: str, model: Path, size: int, paths: list[str], labels: list[str], *,
                         timeout_s: float | None = None
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """The OpenCV consumers' inputs and MediaPipe's scores (``mediapipe``: given the decoded photo;
    ``mediapipe_file``: given the file), in ``labels`` order, and the helper's JSON, from MediaPipe's venv.
    ``timeout_s`` (default ``helper_timeout_s``): past it the helper is killed and a ``ParityError`` says so."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    timeout_s = helper_timeout_s(len(paths)) if timeout_s is None else timeout_s
    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
        out = Path(tmp) / "out.npz"
        try:
            done = subprocess.run([python, str(HELPER), str(model), str(size), str(out), *paths],
                                  capture_output=True, text=True, env=env, timeout=timeout_s)
        except OSError as error:
            raise ParityError(f"MediaPipe's interpreter does not run ({error.strerror})") from error
        except subprocess.TimeoutExpired as error:
            raise ParityError(f"MediaPipe's helper did not finish {len(paths)} photos in {timeout_s:.0f} s - "
                              f"run {HELPER.name} by hand on them to see where it stops") from error
        if done.returncode != 0:
            raise ParityError(f"MediaPipe's helper failed: {done.stderr.strip().splitlines()[-1:]} - "
                              f"check MediaPipe's tool venv ({settings.ENV_MEDIAPIPE_PYTHON})")
        result = dict(np.load(out))
    report = json.loads(done.stdout.strip().splitlines()[-1])
    names = list(result.pop("mediapipe_labels"))
    if sorted(names) != sorted(labels):
        raise ParityError(f"MediaPipe reads the labels {names}, the model has {labels} - rebuild the model")
    order = [names.index(label) for label in labels]
    scores = {key: result.pop(key)[:, order] for key in ("mediapipe", "mediapipe_file")}
    return result, scores, report


def pooled(batch: np.ndarray, scale: int) -> np.ndarray:
    """``scale`` x ``scale`` means: what an ``AveragePooling2D(scale)`` first layer of the file would feed the net."""
    if scale == 1:
        return batch.astype(np.float32)
    n, height, width, channels = batch.shape
    return batch.astype(np.float32).reshape(n, height // scale, scale, width // scale, scale, channels).mean((2, 4))


def _classify_files(classify: Classify, make_input: Callable[[str], np.ndarray], paths: list[str],
                    scale: int) -> np.ndarray:
    """``classify`` over every photo's input, ``CHUNK`` photos at a time (a multiple of LiteRT's batch)."""
    parts = [classify(pooled(np.stack([make_input(p) for p in paths[start:start + CHUNK]]), scale))
             for start in range(0, len(paths), CHUNK)]
    return np.concatenate(parts)


def measure(classify: Classify, labels: list[str], size: int, mediapipe_model: Path, paths: list[str],
            truth: list[str], python: str | None, *, scale: int = 1, real_mediapipe: bool = True,
            fit: str = images.DEFAULT_FIT) -> tuple[list[ConsumerParity], dict, dict[str, float]]:
    """Every consumer's rows on one data set, the helper's JSON (versions, refused files) and MediaPipe's checks.

    ``python`` None: MediaPipe's venv is not at hand, the consumers that need it (``TOOL_VENV_CONSUMERS``)
    get no row. ``scale`` > 1 simulates a deployment file of ``scale * size`` px whose first layer averages
    ``scale`` x ``scale`` blocks (the lever "an input size from which consumers resize least"): every consumer
    resizes the photo to ``scale * size``; the reference stays the project's ``predict`` at ``size``. The real
    MediaPipe runs the ``mediapipe_model`` file, so its row is left out then, and when ``real_mediapipe`` is
    False (a Keras model is measured): ``mediapipe_emulated`` stands for it (bit-exact)."""
    wide = scale * size
    probs = {consumers.PREDICT: _classify_files(classify, lambda p: consumers.predict_input(p, size, fit), paths, 1)}
    opencv_inputs, mediapipe, report = {}, {}, {"versions": {}, "refused": []}
    if python is not None:
        opencv_inputs, mediapipe, report = opencv_and_mediapipe(python, mediapipe_model, wide, paths, labels)
    real_mediapipe = real_mediapipe and scale == 1 and python is not None
    if real_mediapipe:
        probs[consumers.MEDIAPIPE] = mediapipe["mediapipe"]
    if scale > 1:
        probs["predict_pooled"] = _classify_files(classify, lambda p: consumers.predict_input(p, wide), paths, scale)
    for name in consumers.CONSUMERS[2:]:
        if name in opencv_inputs:
            batch = opencv_inputs.pop(name)
            probs[name] = np.concatenate([classify(pooled(batch[start:start + CHUNK], scale))
                                          for start in range(0, len(paths), CHUNK)])
        elif python is not None or name not in consumers.OPENCV_RESIZERS:
            resize = consumers.RESIZERS[name]
            probs[name] = _classify_files(classify, lambda p: resize(consumers.decode(p), wide), paths, scale)
    gaps = {}
    if real_mediapipe:
        read = ~np.isnan(mediapipe["mediapipe_file"]).any(1)
        gaps = {"emulated_vs_mediapipe": float(np.abs(probs[consumers.MEDIAPIPE] - probs["mediapipe_emulated"]).max()),
                "mediapipe_decoder_vs_pillow": float(np.abs(mediapipe["mediapipe_file"][read]
                                                            - probs[consumers.MEDIAPIPE][read]).max()),
                "mediapipe_file_agreement": float((mediapipe["mediapipe_file"][read].argmax(1)
                                                   == probs[consumers.MEDIAPIPE][read].argmax(1)).mean())}
    truth_index = np.array([labels.index(t) for t in truth])
    reference = probs[consumers.PREDICT]
    base_accuracy = float((reference.argmax(1) == truth_index).mean())
    rows = []
    for name, scores in probs.items():
        top1 = scores.argmax(1)
        accuracy = float((top1 == truth_index).mean())
        same_file = ({"agreement_same_file": float((top1 == probs["predict_pooled"].argmax(1)).mean())}
                     if scale > 1 else {})
        rows.append(ConsumerParity(consumer=name, n=len(paths),
                                   agreement=float((top1 == reference.argmax(1)).mean()), accuracy=accuracy,
                                   accuracy_delta_pp=round(100 * (accuracy - base_accuracy), 2),
                                   max_abs_prob_diff=float(np.abs(scores - reference).max()), **same_file))
    return rows, report, gaps


def main_venv_versions() -> dict[str, str]:
    """The versions of this venv's consumer libraries (Pillow, TensorFlow) and of LiteRT, which runs every input."""
    names = {"pillow": "pillow", "tensorflow": "tensorflow", "litert": "ai-edge-litert"}
    found = {}
    for key, distribution in names.items():
        try:
            found[key] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def tool_venv_problem(python: Path | None) -> str | None:
    """Why MediaPipe's venv cannot be used (None: it can)."""
    if python is None:
        return f"{settings.ENV_MEDIAPIPE_PYTHON}=none: no MediaPipe tool venv here (the Docker image)"
    if python.is_file():
        return None
    where = (f"${settings.ENV_MEDIAPIPE_PYTHON} names no file" if os.environ.get(settings.ENV_MEDIAPIPE_PYTHON)
             else "MediaPipe's tool venv .venv-mediapipe is missing")  # no machine path: the record is published
    return (f"{where}: ./run_all.sh --setup-only creates .venv-mediapipe from requirements-mediapipe.lock, or "
            f"set {settings.ENV_MEDIAPIPE_PYTHON}")


def measure_file(model_path: Path, sets: Sets, *, name: str, python: Path | None = None,
                 model_name: str | None = None) -> ParityRecord:
    """Every consumer on every data set for one ``.tflite`` (the final stage's parity block).

    Never fails on MediaPipe's venv: when it is missing or its helper fails, the main-venv consumers are
    measured and the others are listed in ``unmeasured`` with the reason."""
    model = litert.load(model_path)
    python = python or mediapipe_python()
    problem = tool_venv_problem(python)
    datasets, gaps, refused, versions = {}, {}, {}, main_venv_versions()
    fit = predict.model_fit(model.runner.content)  # predict's, as `python -m trashnet predict` reads it
    for dataset, (paths, truth) in sets.items():
        if not paths:
            continue
        tool = None if problem else str(python)
        try:
            rows, report, gap = measure(model.predict, model.labels, model.image_size, model_path, paths, truth, tool,
                                        fit=fit)
        except ParityError as error:  # a broken venv: measure what this venv can, say why the rest is missing
            problem = str(error)
            rows, report, gap = measure(model.predict, model.labels, model.image_size, model_path, paths, truth,
                                        None, fit=fit)
        datasets[dataset], versions = rows, {**versions, **report["versions"]}
        if gap:
            gaps[dataset] = gap
        if report["refused"]:
            refused[dataset] = [{**item, "path": os.path.relpath(item["path"], Path(paths[0]).parents[1])}
                                for item in report["refused"]]
    if problem:  # also for a data set measured before the helper failed on a later one
        datasets = {key: [row for row in rows if row.consumer not in TOOL_VENV_CONSUMERS]
                    for key, rows in datasets.items()}
        gaps, refused = {}, {}
    return ParityRecord(name=name, model=model_name or Path(model_path).name,
                        model_sha256=fileio.sha256_file(model_path), image_size=model.image_size,
                        versions=versions, datasets=datasets, mediapipe_checks=gaps, mediapipe_refused=refused,
                        unmeasured={consumer: problem for consumer in TOOL_VENV_CONSUMERS} if problem else {})


def meets_targets(rows: list[ConsumerParity]) -> bool:
    """Every consumer within the targets: agreement >= ``AGREEMENT_TARGET``, |accuracy delta| <= 1 pp."""
    return all(row.agreement >= AGREEMENT_TARGET and abs(row.accuracy_delta_pp) <= ACCURACY_TARGET_PP
               for row in rows)


def table(rows: list[ConsumerParity], *, pooled_column: bool = False) -> list[str]:
    """One data set's rows as a Markdown table (the benchmark's and the model card's)."""
    lines = ["| consumer | top-1 agreement with predict | accuracy | vs predict (pp) | max prob diff |"
             + (" agreement with predict_pooled |" if pooled_column else ""),
             "|---|---:|---:|---:|---:|" + ("---:|" if pooled_column else "")]
    return lines + [f"| {r.consumer} | {100 * r.agreement:.1f} % | {100 * r.accuracy:.1f} % | "
                    f"{r.accuracy_delta_pp:+.1f} | {r.max_abs_prob_diff:.3f} |"
                    + (f" {100 * r.agreement_same_file:.1f} % |" if pooled_column else "") for r in rows]
