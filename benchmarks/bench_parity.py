"""Does every app that loads the model give the same answer as ``predict``? Top-1 agreement and accuracy per consumer.

    python benchmarks/bench_parity.py [--model results/cpu/models/final/trashnet.tflite] [--name final]
        [--trashnet DIR] [--ood DIR] [--mediapipe-python PY] [--keras RUN/ID.keras [--convert fp16]] [--input-scale K]

For each way a real app turns a whole photo into the model's input (``trashnet.nets.consumers``: MediaPipe Tasks'
``ImageClassifier`` given the file, its resize emulated in Python, Pillow bicubic and bilinear, OpenCV
``INTER_LINEAR`` and ``INTER_AREA``, ``tf.image.resize`` bilinear without antialiasing) and for ``predict``
itself: top-1 agreement with ``predict``, accuracy, and the largest probability difference, on TrashNet's
official test split (``--trashnet``, default ``$TRASHNET_REAL_DATA``) and on the labelled out-of-distribution
folder (``--ood``, default ``$TRASHNET_OOD_DATA``). MediaPipe and OpenCV run in MediaPipe's tool venv
(``requirements-mediapipe.lock``: ``--mediapipe-python``, else ``$TRASHNET_MEDIAPIPE_PYTHON`` or run_all.sh's
``.venv-mediapipe``, else created and cached as the tests do); LiteRT runs
every input here. ``--keras`` measures a trained Keras model instead (issue 26's training levers;
``mediapipe_emulated``, bit-exact, stands for MediaPipe; with ``--convert PRECISION`` the Keras model is converted
to a TFLite file with the project's metadata first and that file is measured, the real MediaPipe included: how a
``model.input_scale`` model is checked); ``--input-scale K`` simulates a deployment file of
K x the input size whose first layer averages K x K blocks. Writes
``benchmarks/results/bench_parity_<name>.json`` and ``.md``. The measuring is ``trashnet.nets.parity`` (the
final stage records the same for the shipped file in its ``metrics.json``); this script is its command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # toolvenv: MediaPipe's venv, cached by lock hash

from trashnet.core import fileio, litert, settings  # noqa: E402
from trashnet.core.records import ParityRecord  # noqa: E402
from trashnet.nets import parity  # noqa: E402 - the measuring: here only the command line and the files

RESULTS = ROOT / "benchmarks" / "results"


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
        lines += [f"## {dataset} ({rows[0].n} photos)", "", *parity.table(rows, pooled_column=pooled_column)]
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
    parser.add_argument("--model", type=Path, default=settings.REPO_ROOT / "results/cpu/models/final/trashnet.tflite")
    parser.add_argument("--name", default="final", help="suffix of the result files")
    parser.add_argument("--trashnet", type=Path, default=os.environ.get(settings.ENV_REAL_DATA))
    parser.add_argument("--ood", type=Path, default=settings.ood_data())
    parser.add_argument("--keras", type=Path, help="measure this Keras model (its run folder's metrics.json gives "
                                                    "the classes) instead; --model then only feeds MediaPipe")
    parser.add_argument("--convert", choices=["fp32", "fp16"], help="with --keras: convert it to a TFLite file at "
                        "this precision (with metadata) and measure that file, real MediaPipe included")
    parser.add_argument("--input-scale", type=int, default=1, help="simulate a file of SCALE x the input size "
                                                                   "that averages SCALE x SCALE blocks first")
    parser.add_argument("--mediapipe-python", help="MediaPipe's venv interpreter (default: "
                        "$TRASHNET_MEDIAPIPE_PYTHON, .venv-mediapipe, else the tests' cached venv)")
    args = parser.parse_args(argv)
    if args.trashnet is None:
        parser.error(f"give --trashnet or set {settings.ENV_REAL_DATA} to the full dataset-resized folder")
    python = args.mediapipe_python
    if python is None and parity.tool_venv_problem(parity.mediapipe_python()) is None:  # run_all.sh's venv
        python = str(parity.mediapipe_python())  # (never None here: tool_venv_problem says so for None)
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
    try:
        sets = {parity.TEST_SET: parity.official_test(Path(args.trashnet))}
        if args.ood is not None:
            sets[parity.OOD_SET] = parity.labelled_folder(Path(args.ood), labels)
        datasets, gaps, refused, report = {}, {}, {}, {}
        for name, (paths, truth) in sets.items():
            datasets[name], report, gaps[name] = parity.measure(
                classify, labels, size, args.model, paths, truth, python, scale=args.input_scale,
                real_mediapipe=args.keras is None)
            refused[name] = [{**item, "path": os.path.relpath(item["path"], paths and Path(paths[0]).parents[1])}
                             for item in report["refused"]]
    except parity.ParityError as error:
        raise SystemExit(f"error: {error}") from error
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
