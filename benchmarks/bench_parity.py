"""Does every app that loads the model give the same answer as ``predict``? Top-1 agreement and accuracy per consumer.

    python benchmarks/bench_parity.py [--model results/cpu-scratch/models/final/trashnet.tflite] [--name final]
        [--trashnet DIR] [--ood DIR] [--mediapipe-python PY] [--keras RUN/ID.keras [--convert fp16]] [--input-scale K]

For each way a real app turns a whole photo into the model's input (``trashnet.nets.consumers``: MediaPipe Tasks'
``ImageClassifier`` given the file, its resize emulated in Python, Pillow bicubic and bilinear, OpenCV
``INTER_LINEAR`` and ``INTER_AREA``, ``tf.image.resize`` bilinear without antialiasing) and for ``predict``
itself: top-1 agreement with ``predict``, accuracy, and the largest probability difference, on TrashNet's
official test split (``--trashnet``, default ``$TRASHNET_REAL_DATA``) and on the labelled out-of-distribution
folder (``--ood``, default ``$TRASHNET_OOD_DATA``). MediaPipe and OpenCV run in MediaPipe's tool venv
(``requirements-mediapipe.lock``; created and cached as the tests do, or ``--mediapipe-python``); LiteRT runs
every input here. ``--keras`` measures a trained Keras model instead (issue 26's training levers;
``mediapipe_emulated``, bit-exact, stands for MediaPipe; with ``--convert PRECISION`` the Keras model is converted
to a TFLite file with the project's metadata first and that file is measured, the real MediaPipe included: how a
``model.input_scale`` model is checked); ``--input-scale K`` simulates a deployment file of
K x the input size whose first layer averages K x K blocks. Writes
``benchmarks/results/bench_parity_<name>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # toolvenv: MediaPipe's venv, cached by lock hash

from trashnet.nets import consumers
from trashnet.data import splits
from trashnet.core import fileio, litert, settings
from trashnet.deploy import evaluate
from trashnet.core.records import ConsumerParity, ParityRecord  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# The from-scratch reference until results/cpu (ImageNet) is regenerated (issue 27).
MODEL = settings.REPO_ROOT / "results" / "cpu-scratch" / "models" / "final" / "trashnet.tflite"
HELPER = settings.PACKAGE_DIR / "tools" / "mediapipe_consumers.py"


def trashnet_test(root: Path) -> tuple[list[str], list[str]]:
    """Files and classes of TrashNet's official test split (the authors' list, bundled with the package)."""
    entries = sorted(key for key, split in splits.read_official_split().items() if split == "test")
    missing = [key for key in entries if not (root / key).is_file()]
    if missing:
        raise SystemExit(f"error: {len(missing)} test files are missing under {root} (first: {missing[0]}) - "
                         "give --trashnet the full dataset-resized folder")
    return [str(root / key) for key in entries], [key.split("/")[0] for key in entries]


def labelled_folder(root: Path, labels: list[str]) -> tuple[list[str], list[str]]:
    scanned = evaluate.scan(root, labels)
    return [str(root / rel) for rel, _ in scanned.files], [label for _, label in scanned.files]


def opencv_and_mediapipe(python: str, model: Path, size: int, paths: list[str], labels: list[str]
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """The OpenCV consumers' inputs and MediaPipe's scores (``mediapipe``: given the decoded photo;
    ``mediapipe_file``: given the file), in ``labels`` order, and the helper's JSON, from MediaPipe's venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
        out = Path(tmp) / "out.npz"
        done = subprocess.run([python, str(HELPER), str(model), str(size), str(out), *paths],
                              capture_output=True, text=True, env=env, timeout=3600)
        if done.returncode != 0:
            raise SystemExit(f"error: MediaPipe's helper failed: {done.stderr.strip().splitlines()[-1:]} - "
                             "check --mediapipe-python")
        result = dict(np.load(out))
    report = json.loads(done.stdout.strip().splitlines()[-1])
    names = list(result.pop("mediapipe_labels"))
    if sorted(names) != sorted(labels):
        raise SystemExit(f"error: MediaPipe reads the labels {names}, the model has {labels} - rebuild the model")
    order = [names.index(label) for label in labels]
    scores = {key: result.pop(key)[:, order] for key in ("mediapipe", "mediapipe_file")}
    return result, scores, report


def pooled(batch: np.ndarray, scale: int) -> np.ndarray:
    """``scale`` x ``scale`` means: what an ``AveragePooling2D(scale)`` first layer of the file would feed the net."""
    if scale == 1:
        return batch.astype(np.float32)
    n, height, width, channels = batch.shape
    return batch.astype(np.float32).reshape(n, height // scale, scale, width // scale, scale, channels).mean((2, 4))


def measure(classify, labels: list[str], size: int, mediapipe_model: Path, paths: list[str], truth: list[str],
            python: str, *, scale: int = 1, real_mediapipe: bool = True
            ) -> tuple[list[ConsumerParity], dict, dict[str, float]]:
    """Every consumer's rows on one data set. ``classify``: (N, size, size, 3) float [0, 255] -> probabilities.

    ``scale`` > 1 simulates a deployment file of ``scale * size`` px whose first layer averages ``scale`` x
    ``scale`` blocks (the lever "an input size from which consumers resize least"): every consumer resizes the
    photo to ``scale * size``; the reference stays the project's ``predict`` at ``size``. The real MediaPipe
    runs the ``mediapipe_model`` file, so its row is left out then, and when ``real_mediapipe`` is False (a
    Keras model is measured): ``mediapipe_emulated`` stands for it (bit-exact)."""
    wide = scale * size
    probs = {consumers.PREDICT: classify(np.stack([consumers.predict_input(p, size) for p in paths]).astype(np.float32))}
    opencv_inputs, mediapipe, report = opencv_and_mediapipe(python, mediapipe_model, wide, paths, labels)
    real_mediapipe = real_mediapipe and scale == 1
    if real_mediapipe:
        probs[consumers.MEDIAPIPE] = mediapipe["mediapipe"]
    if scale > 1:
        probs["predict_pooled"] = classify(pooled(np.stack([consumers.predict_input(p, wide) for p in paths]), scale))
    for name in consumers.CONSUMERS[2:]:
        if name in opencv_inputs:
            batch = opencv_inputs[name]
        else:
            batch = np.stack([consumers.RESIZERS[name](consumers.decode(p), wide) for p in paths])
        probs[name] = classify(pooled(batch, scale))
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


def markdown(record: ParityRecord) -> str:
    lines = [f"# Preprocessing parity: {record.name}", "",
             f"Model `{record.model}` ({record.image_size} px, sha256 `{record.model_sha256[:12]}`), "
             f"MediaPipe {record.versions.get('mediapipe')}, OpenCV {record.versions.get('opencv')}. "
             "Agreement: same top-1 class as `predict`. Written by `benchmarks/bench_parity.py`.", ""]
    if record.input_scale > 1:
        lines += [f"Simulated deployment file: {record.input_scale * record.image_size} px input, averaged over "
                  f"{record.input_scale}x{record.input_scale} blocks before the network; every consumer resizes the "
                  f"photo to {record.input_scale * record.image_size} px. `predict` is the project's path at "
                  f"{record.image_size} px; `predict_pooled` what `predict` would feed such a file.", ""]
    for dataset, rows in record.datasets.items():
        pooled_column = record.input_scale > 1
        lines += [f"## {dataset} ({rows[0].n} photos)", "",
                  "| consumer | top-1 agreement with predict | accuracy | vs predict (pp) | max prob diff |"
                  + (" agreement with predict_pooled |" if pooled_column else ""),
                  "|---|---:|---:|---:|---:|" + ("---:|" if pooled_column else "")]
        lines += [f"| {r.consumer} | {100 * r.agreement:.1f} % | {100 * r.accuracy:.1f} % | "
                  f"{r.accuracy_delta_pp:+.1f} | {r.max_abs_prob_diff:.3f} |"
                  + (f" {100 * r.agreement_same_file:.1f} % |" if pooled_column else "") for r in rows]
        gap, refused = record.mediapipe_checks.get(dataset), record.mediapipe_refused.get(dataset, [])
        if not gap:
            lines += [""]
            continue
        lines += ["", f"`mediapipe` is MediaPipe given the Pillow-decoded photo; `consumers.mediapipe_emulated` "
                      f"reproduces it to {gap['emulated_vs_mediapipe']:.1e} (largest probability difference). "
                      "Given the file itself (`mp.Image.create_from_file`, MediaPipe's own JPEG decoder) its "
                      f"scores move by up to {gap['mediapipe_decoder_vs_pillow']:.4f}, top-1 the same on "
                      f"{100 * gap['mediapipe_file_agreement']:.1f} % of the files it reads; it refuses "
                      f"{len(refused)} file(s)" + (f" (grayscale JPEGs: `{refused[0]['error'][-120:]}`)"
                                                  if refused else "") + ".", ""]
    return "\n".join(lines)


def converted(keras_file: Path, precision: str) -> Path:
    """``keras_file`` as a ``.tflite`` at ``precision`` with the project's TFLite metadata (labels, normalization,
    the input text of a ``model.input_scale`` model), written beside it: what an app would be given."""
    from trashnet.core.keras_env import keras
    from trashnet.deploy.input_scale import input_description
    from trashnet.nets import convert, models
    from trashnet.stages import final

    network = keras.models.load_model(keras_file)
    labels = fileio.read_json(keras_file.parent / settings.METRICS_FILE)["classes"]
    content = convert.convert(network, precision)
    content = final.write_metadata(content, labels, version="parity", input_description=input_description(
        content, {"input_scale": models.input_scale(network)}))
    out = keras_file.with_name(f"{keras_file.stem}.{precision}.tflite")
    fileio.atomic_write_bytes(out, content)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--name", default="final", help="suffix of the result files")
    parser.add_argument("--trashnet", type=Path, default=os.environ.get(settings.ENV_REAL_DATA))
    parser.add_argument("--ood", type=Path, default=settings.ood_data())
    parser.add_argument("--keras", type=Path, help="measure this Keras model (its run folder's metrics.json gives "
                                                    "the classes) instead; --model then only feeds MediaPipe")
    parser.add_argument("--convert", choices=["fp32", "fp16"], help="with --keras: convert it to a TFLite file at "
                        "this precision (with metadata) and measure that file, real MediaPipe included")
    parser.add_argument("--input-scale", type=int, default=1, help="simulate a file of SCALE x the input size "
                                                                   "that averages SCALE x SCALE blocks first")
    parser.add_argument("--mediapipe-python", help="MediaPipe's venv interpreter (default: the tests' cached venv)")
    args = parser.parse_args(argv)
    if args.trashnet is None:
        parser.error(f"give --trashnet or set {settings.ENV_REAL_DATA} to the full dataset-resized folder")
    python = args.mediapipe_python
    if python is None:
        from toolvenv import tool_python
        python = str(tool_python(settings.REPO_ROOT / "requirements-mediapipe.lock"))
    if args.convert is not None:
        if args.keras is None:
            parser.error("--convert needs --keras")
        args.model, args.keras = converted(args.keras, args.convert), None
    model = litert.load(args.model)
    classify, labels, size, measured = model.predict, model.labels, model.image_size, args.model
    if args.keras is not None:
        from trashnet.nets import scoring
        from trashnet.core.keras_env import keras

        network = keras.models.load_model(args.keras)
        labels = fileio.read_json(args.keras.parent / settings.METRICS_FILE)["classes"]
        size, measured = int(network.input_shape[1]), args.keras
        classify = lambda batch: scoring.keras_probabilities(network, batch)  # noqa: E731
    sets = {"trashnet_test": trashnet_test(Path(args.trashnet))}
    if args.ood is not None:
        sets["ood_dev"] = labelled_folder(Path(args.ood), labels)
    datasets, gaps, refused, report = {}, {}, {}, {}
    for name, (paths, truth) in sets.items():
        datasets[name], report, gaps[name] = measure(classify, labels, size, args.model, paths, truth, python,
                                                     scale=args.input_scale, real_mediapipe=args.keras is None)
        refused[name] = [{**item, "path": os.path.relpath(item["path"], paths and Path(paths[0]).parents[1])}
                         for item in report["refused"]]
    inside = Path(measured).resolve().is_relative_to(settings.REPO_ROOT)  # else a scratch folder: its name only
    record = ParityRecord(name=args.name, model=(os.path.relpath(measured, settings.REPO_ROOT) if inside
                                                 else Path(measured).name),
                          model_sha256=fileio.sha256_file(measured), image_size=size, input_scale=args.input_scale,
                          versions=report["versions"], datasets=datasets, mediapipe_checks=gaps,
                          mediapipe_refused=refused)
    RESULTS.mkdir(parents=True, exist_ok=True)
    fileio.write_json(RESULTS / f"bench_parity_{args.name}.json", record.dump())
    fileio.atomic_write_text(RESULTS / f"bench_parity_{args.name}.md", markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
