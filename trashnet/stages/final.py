"""The deployable artifact in ``models/<profile>/final/``: the chosen ``.tflite`` with its labels, model card and checks.

``build_final`` applies the selection rule (``trashnet.stages.select``) to the result files, then writes:

- ``trashnet.tflite``: the chosen file with the official TFLite metadata of an image classifier, written by
  tflite-support's ``MetadataWriter`` in its own tool venv (``write_metadata``; tflite-support needs
  protobuf < 4, TensorFlow's lock has 7): input NormalizationOptions mean 0 / std 1 (raw 0-255 RGB),
  ImageProperties RGB, ``labels.txt`` as a TENSOR_AXIS_LABELS file, name, version, description,
  author, licence, and the project's ``metadata.json`` as a model-level associated file. MediaPipe Tasks'
  ``ImageClassifier`` and Android Studio's ML Model Binding read it (docs/toolchain-facts.md). The
  populator appends the files as a zip stamped with the current time; that zip is replaced by the same
  entries, ``ZIP_STORED`` (MediaPipe refuses compressed appendices) with fixed timestamps, so the same
  inputs always give the same bytes. ``verification.json`` proves the file still gives the same outputs as
  the chosen one.
- ``labels.txt`` (class names in output order), ``selection.json`` (the rule, the candidates, the fronts),
  ``stats.json`` (intervals, paired tests and seed spread: ``trashnet.stages.stats``, computed before selection),
  ``metrics.json`` (the chosen result, restated for the final file), ``verification.json`` (the copied
  file re-evaluated with LiteRT on the test split: it must reproduce the reported accuracy exactly),
  ``model_card.json`` and ``model_card.md``, and ``SHA256SUMS`` over all of them (``sha256sum -c``).

Nothing here imports TensorFlow: the checks run through ``trashnet.deploy.predict``, the deployment path.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from trashnet.core import fileio, images, provenance, records, settings
from trashnet.stages import select, stats
from trashnet.core.config import VariantConfig, config_to_dict
from trashnet.core.litert import read_metadata
from trashnet.core.tflite import TFLiteModel
from trashnet.deploy.input_scale import input_description, record_scale, scale_text
from trashnet.deploy.predict import LABELS_FILE, METADATA_FILE, embedded_files, evaluate_split, model_fit
from trashnet.core.records import ClassWeakness, DataSection, ModelCard, OODSection, SplitCount

MODEL_FILE = "trashnet.tflite"
CARD_JSON = settings.MODEL_CARD_FILE
CARD_MD = settings.MODEL_CARD_MD
VERIFICATION_FILE = settings.VERIFICATION_FILE
SUMS_FILE = settings.SUMS_FILE
METRICS_FILE = settings.METRICS_FILE
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same inputs give the same bytes

PREPROCESSING = (
    "Decode with Pillow (images.load_for_model): for JPEGs let libjpeg scale down by 1/2, 1/4 or 1/8 while "
    "decoding (Pillow draft mode), never below {size} px; apply the EXIF orientation; convert to 8-bit RGB "
    "(transparency onto white); {fit_text} to {size}x{size} with Pillow's bilinear filter (antialiased: its "
    "support widens with the scale factor); feed the RGB values as {dtype} in [0, 255], shape "
    "(1, {size}, {size}, 3). The model rescales to [-1, 1] itself. Other resizers (MediaPipe's, OpenCV's "
    "INTER_LINEAR, tf.image.resize without antialias) change the answer on up to a quarter of photos: "
    "docs/deployment-parity.md.")
FIT_TEXT = {"squash": "resize the whole frame, without cropping or padding (squashed)",
            "crop": "cut the longer side to a centred square and resize it",
            "pad": "pad to a square with white margins and resize it"}


# What the TFLite metadata says about the model (name, version: provenance.release_version()).
MODEL_NAME = "trashnet"
MODEL_DESCRIPTION = ("Classifies a photo of one piece of waste into the six TrashNet classes (cardboard, glass, "
                     "metal, paper, plastic, trash). Input: RGB, 0-255, the whole photo squashed to a square.")
MODEL_AUTHOR = "TrashNet thesis project"
MODEL_LICENSE = ("MIT. Trained on TrashNet by Gary Thung and Mindy Yang (Stanford CS229, 2016; "
                 "github.com/garythung/trashnet), MIT licence.")
NORMALIZATION = {"mean": [0.0], "std": [1.0]}  # raw 0-255 pixels: every model rescales inside itself
WRITER_SCRIPT = settings.PACKAGE_DIR / "tools" / "write_metadata.py"


class ArtifactError(RuntimeError):
    """The artifact failed a check (e.g. the copied file does not reproduce the reported accuracy)."""


def append_zip(model: bytes, files: dict[str, bytes]) -> bytes:
    """``model`` followed by an uncompressed zip of ``files`` (in the given order) with fixed timestamps and
    permissions, its offsets counted from the start of the result. ZIP_STORED: MediaPipe refuses a
    compressed appendix ("Expected uncompressed zip archive")."""
    buffer = io.BytesIO()
    buffer.write(model)
    with zipfile.ZipFile(buffer, mode="a", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # Unix, whatever machine builds it
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def restamp_zip(content: bytes) -> bytes:
    """The flatbuffer part of ``content`` with its appended zip rewritten by ``append_zip`` (same entries,
    same order): tflite-support's populator stamps entries with the current time."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        infos = archive.infolist()
        entries = {info.filename: archive.read(info) for info in infos}
    start = min(info.header_offset for info in infos)  # absolute: zipfile adds the prefix length
    return append_zip(content[:start], entries)


def metadata_python() -> Path:
    """The tool venv's interpreter: ``$TRASHNET_METADATA_PYTHON`` (the Docker image), else ``.venv-metadata``."""
    value = os.environ.get(settings.ENV_METADATA_PYTHON)
    return Path(value) if value else settings.METADATA_VENV / "bin" / "python"


def write_metadata(model: bytes, labels: list[str], *, version: str, info: dict[str, Any] | None = None,
                   input_description: str | None = None) -> bytes:
    """``model`` with the official TFLite image-classifier metadata, written by tflite-support in its venv.

    ``info`` is packed as ``metadata.json``, a model-level associated file (type DESCRIPTIONS) that the
    project's own readers use (``predict.embedded_metadata``). Deterministic: the same model, labels,
    version and info give the same bytes. Raises ``ArtifactError`` with what to do when the tool venv is
    missing or the writer fails.
    """
    python = metadata_python()
    if not python.is_file():
        raise ArtifactError(f"the TFLite metadata writer needs its tool venv, {python} does not exist: run "
                            "./run_all.sh --setup-only (it installs requirements-metadata.lock), or set "
                            f"{settings.ENV_METADATA_PYTHON}")
    with tempfile.TemporaryDirectory(prefix="trashnet-metadata-") as tmp:
        folder = Path(tmp)
        (folder / "model.tflite").write_bytes(model)
        (folder / LABELS_FILE).write_text("".join(f"{name}\n" for name in labels), encoding="utf-8")
        spec = {"model": str(folder / "model.tflite"), "labels": str(folder / LABELS_FILE),
                "output": str(folder / "out.tflite"), "name": MODEL_NAME, "version": version,
                "description": MODEL_DESCRIPTION, "author": MODEL_AUTHOR, "license": MODEL_LICENSE,
                **NORMALIZATION}
        if input_description is not None:  # else tflite-support's default text (byte-identical to its writer)
            spec["input_description"] = input_description
        if info is not None:
            (folder / METADATA_FILE).write_text(fileio.dumps_json(info), encoding="utf-8")
            spec["model_files"] = [{"path": str(folder / METADATA_FILE),
                                    "description": "The project's record of this model: variant, classes, input "
                                                   "preparation, source file hash, weights, profile, seed (JSON)."}]
        (folder / "spec.json").write_text(fileio.dumps_json(spec), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        done = subprocess.run([str(python), str(WRITER_SCRIPT), "write", str(folder / "spec.json")],
                              capture_output=True, text=True, env=env, timeout=300)
        if done.returncode != 0 or not (folder / "out.tflite").is_file():
            last = (done.stderr.strip().splitlines() or ["it wrote no model"])[-1]
            hint = (" (Debian: apt-get install libusb-1.0-0)" if "libusb" in done.stderr else "")
            raise ArtifactError(f"the TFLite metadata writer failed{hint}: {last}")
        return restamp_zip((folder / "out.tflite").read_bytes())


def _reported_predictions(variant_dir: Path) -> dict[str, str] | None:
    path = variant_dir / settings.PREDICTIONS_FILE
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["path"]: row["predicted"] for row in csv.DictReader(handle)}


def verify(model_path: Path, original_path: Path, dataset_dir: Path, record: dict[str, Any],
           variant_dir: Path, *, latency_runs: int = 50, latency_warmup: int = 5) -> dict[str, Any]:
    """Re-evaluate the final file on the test split and compare with what its result file reported."""
    reported = record.get("test") or {}
    evaluation = evaluate_split(model_path, dataset_dir, split="test")
    by_path = _reported_predictions(variant_dir)
    mismatches, note = None, "no predictions.csv beside the chosen result: per-image comparison skipped"
    if by_path is not None:
        if set(by_path) == {p["path"] for p in evaluation["predictions"]}:
            mismatches = sum(by_path[p["path"]] != p["predicted"] for p in evaluation["predictions"])
            note = "every test image's predicted class compared with the stage's predictions.csv"
        else:
            note = "predictions.csv names other files than the test split: per-image comparison skipped"
    final, original = TFLiteModel(model_path), TFLiteModel(original_path)
    classes_dir = Path(dataset_dir)
    first = [classes_dir / p["path"] for p in evaluation["predictions"][:16]]
    diff = 0.0
    for path in first:
        image = images.load_for_model(path, final.image_size)
        diff = max(diff, float(abs(final.predict_one(image) - original.predict_one(image)).max()))
    same_accuracy = (reported.get("n") == evaluation["n"]
                     and reported.get("accuracy") is not None
                     and abs(reported["accuracy"] - evaluation["accuracy"]) < 1e-12)
    return {
        "model_file": model_path.name,
        "original_file": str(original_path),
        "dataset_manifest_sha256": fileio.sha256_file(Path(dataset_dir) / settings.MANIFEST_NAME),
        "reported": {"accuracy": reported.get("accuracy"), "n": reported.get("n")},
        "reproduced": {"accuracy": evaluation["accuracy"], "n": evaluation["n"], "correct": evaluation["correct"],
                       "unreadable": len(evaluation["errors"])},
        "accuracy_reproduced_exactly": bool(same_accuracy and not evaluation["errors"]),
        "prediction_mismatches": mismatches,
        "prediction_comparison": note,
        "embedded_vs_original_max_abs_diff": diff,
        "latency_ms_threads1": TFLiteModel(model_path, num_threads=1).latency(runs=latency_runs,
                                                                             warmup=latency_warmup),
        "passed": bool(same_accuracy and not evaluation["errors"] and not mismatches and diff == 0.0),
    }


# --- model card: the technical fields, plus the model-card convention's sections ----------------------------
# (Mitchell et al. 2019, "Model Cards for Model Reporting"; Hugging Face's model card template), typed in
# trashnet/core/records.py (ModelCard and its sections).

INTENDED_USE = [
    "Sorting aid for photos of a single piece of household waste, one of six classes (cardboard, glass, metal, "
    "paper, plastic, trash), on a phone or a small CPU: shows the likely class and its probability to a person "
    "who decides.",
    "A baseline for research on small, pruned and quantized image classifiers (the thesis this model comes from).",
]
OUT_OF_SCOPE = [
    "Automatic sorting without a person checking: the model is wrong on {wrong} of TrashNet's own test photos, "
    "and more often on photos taken elsewhere.",
    "Photos with several objects, hands, bins or cluttered backgrounds; classes outside the six (organic, "
    "textile, electronics, hazardous waste); deciding what a local recycling scheme accepts.",
    "Any decision about people; safety-critical uses (e.g. sorting sharps or batteries).",
]
REPORT_A_PROBLEM = ("Open an issue on the project's repository with the photo (or a description of it), what the "
                    "model answered (`python -m trashnet predict PHOTO --model trashnet-<version>.zip --top-k 3`), "
                    "what it should have said, and this card's version.")


def data_section(dataset_dir: Path, config: VariantConfig) -> DataSection:
    """Counts of the prepared data set the model was trained and tested on, from its manifest."""
    splits: dict[str, dict[str, int]] = {}
    rejected = 0
    with open(dataset_dir / settings.MANIFEST_NAME, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["status"] != "accepted":
                rejected += 1
                continue
            per_class = splits.setdefault(row["split"], {})
            per_class[row["class"]] = per_class.get(row["class"], 0) + 1
    method = ("the TrashNet authors' official train/validation/test lists" if config.data.split == "official" else
              f"stratified, {'/'.join(f'{r:g}' for r in config.data.ratios)} train/validation/test, "
              f"seed {config.data.seed}; near-duplicates kept in one split")
    return DataSection(
        dataset="TrashNet (dataset-resized)", source="github.com/garythung/trashnet (Gary Thung and Mindy Yang, "
        "Stanford CS229, 2016)", license="MIT",
        description="Photos of single objects on a white poster board, indoor light, 512x384 (portrait); "
                    "exact duplicates removed, conflicting-label duplicates rejected (manifest.csv says which).",
        split_method=method,
        splits={name: SplitCount(images=sum(counts.values()), per_class=dict(sorted(counts.items())))
                for name, counts in sorted(splits.items())},
        rejected_files=rejected, manifest_sha256=fileio.sha256_file(dataset_dir / settings.MANIFEST_NAME))


def class_weaknesses(test: dict[str, Any], labels: list[str]) -> list[ClassWeakness]:
    """Every class, weakest F1 first, with its commonest confusion on the test split."""
    per_class = test.get("per_class") or {}
    matrix = test.get("confusion_matrix")
    rows = []
    for index, name in enumerate(labels):
        scores = per_class.get(name)
        if not scores:
            continue
        other, count = None, None
        if matrix and index < len(matrix):
            wrong = [(n, j) for j, n in enumerate(matrix[index]) if j != index and n > 0]
            if wrong:
                count, j = max(wrong, key=lambda pair: (pair[0], -pair[1]))
                other = labels[j]
        rows.append(ClassWeakness(name=name, f1=scores["f1"], precision=scores["precision"], recall=scores["recall"],
                                  support=int(scores["support"]), most_confused_with=other, confused_count=count))
    return sorted(rows, key=lambda row: (row.f1, row.name))


def ood_section(record: dict[str, Any]) -> OODSection:
    ood = record.get("ood")
    if not isinstance(ood, dict):
        return OODSection(measured=False)
    return OODSection(measured=True, **{k: ood.get(k) for k in ("dataset", "n", "accuracy", "macro_f1", "per_class")})


def accuracy_interval(test: dict[str, Any]) -> dict[str, Any] | None:
    """95 % Wilson interval of the test accuracy (statsmodels), or None without counts. Used where stats.json
    has no interval for the chosen variant."""
    n, accuracy = test.get("n"), test.get("accuracy")
    if not n or accuracy is None:
        return None
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(round(accuracy * n), n, alpha=0.05, method="wilson")
    return {"low": float(low), "high": float(high), "confidence": 0.95, "method": "Wilson"}


def out_of_scope(test: dict[str, Any]) -> list[str]:
    accuracy = test.get("accuracy")
    wrong = "an unmeasured share" if accuracy is None else f"{100 * (1 - accuracy):.1f} %"
    return [OUT_OF_SCOPE[0].format(wrong=wrong), *OUT_OF_SCOPE[1:]]


def limitations(test: dict[str, Any], ood: OODSection, interval: dict[str, Any] | None = None) -> list[str]:
    """The known limitations; ``interval`` (low, high, confidence, method) is stats.json's for the chosen
    variant's accuracy, else the Wilson interval."""
    interval = interval or accuracy_interval(test)
    lines = [
        "TrashNet's photos show one object on a white poster board in indoor light, photographed from close by. "
        "Photos taken in the field (cluttered backgrounds, several objects, dirt, crushed or wet items, outdoor "
        "light, other cameras) differ from them, and accuracy there is lower than on the test split.",
        "Six classes only: anything else is forced into one of them (there is no 'unknown'); the probabilities "
        "are not calibrated and a high one does not mean the answer is right.",
    ]
    if interval is not None:
        lines.append(f"The test split holds {test['n']} photos: the {100 * interval['confidence']:g} % interval of "
                     f"the test accuracy ({interval['method']}) is {100 * interval['low']:.1f}-"
                     f"{100 * interval['high']:.1f} %.")
    if ood.measured:
        lines.append(f"Measured away from TrashNet: {ood.dataset}, {ood.n} photos: accuracy "
                     f"{100 * (ood.accuracy or 0):.1f} %, macro-F1 {ood.macro_f1:.3f}.")
    else:
        lines.append("Accuracy on photos from outside TrashNet: not measured for this model.")
    return lines


def model_card(selection: dict[str, Any], record: dict[str, Any], verification: dict[str, Any],
               model_path: Path, labels: list[str], build: dict[str, Any], *, version: str,
               data: DataSection, interval: dict[str, Any] | None = None) -> dict[str, Any]:
    runner = TFLiteModel(model_path)
    size, dtype, scale = runner.image_size, runner.input_dtype.name, record_scale(record)
    fit = model_fit(model_path.read_bytes())
    trained = record.get("provenance") or {}
    chosen = selection["chosen"]
    test = record.get("test") or {}
    metadata = read_metadata(model_path.read_bytes()) or {}
    ood = ood_section(record)
    card = {
        "name": MODEL_NAME,
        "version": version,
        "task": "waste-image classification (TrashNet classes)",
        "model_file": MODEL_FILE,
        "variant": chosen["id"],
        "architecture": chosen.get("arch"),
        "precision": chosen.get("precision"),
        "source": chosen.get("source"),
        "input": {"shape": [1, size, size, 3], "dtype": dtype, "size": size, "color": "RGB",
                  "batch": ("free: resize the input tensor to run several images per invocation"
                            if int(runner.input.get("shape_signature", runner.input["shape"])[0]) == -1
                            else "fixed at 1"),
                  "range": "[0, 255]", "normalization": NORMALIZATION,
                  "preprocessing": PREPROCESSING.format(size=size, dtype=dtype, fit_text=FIT_TEXT[fit])
                  + scale_text(size, scale),
                  **({"input_scale": scale, "network_size": size // scale} if scale > 1 else {}),
                  "fit": fit, "resize_filter": "Pillow bilinear, antialiased, after JPEG draft decoding",
                  "color_order": "RGB", "pillow_snippet": images.pillow_snippet(size, fit)},
        "output": {"shape": runner.output["shape"].tolist(), "dtype": runner.output["dtype"].__name__,
                   "meaning": "class probabilities (softmax), in labels.txt order"},
        "classes": labels,
        "intended_use": INTENDED_USE,
        "out_of_scope_use": out_of_scope(test),
        "training_data": data,
        "evaluation_data": ("The test split of the same prepared TrashNet (counts under training_data.splits); "
                            "the final file is re-evaluated on it with LiteRT (verification.json)."),
        "metrics": {"test": {k: test.get(k) for k in ("n", "accuracy", "macro_f1", "per_class")},
                    "verified_accuracy": verification["reproduced"]["accuracy"],
                    "verified": verification["passed"]},
        "limitations": limitations(test, ood, interval),
        "out_of_distribution": ood,
        "per_class_weaknesses": class_weaknesses(test, labels),
        "report_a_problem": REPORT_A_PROBLEM,
        "size": {"raw_bytes": model_path.stat().st_size, "gzip_bytes": fileio.gzip_size(model_path),
                 "chosen_file_raw_bytes": chosen.get("raw_bytes"), "chosen_file_gzip_bytes": chosen.get("gzip_bytes")},
        "latency_ms": {"reported": record.get("latency_ms"),
                       "measured_at_build_threads1": verification["latency_ms_threads1"]},
        "weights_origin": record.get("weights", trained.get("weights")),
        "data_manifest_sha256": trained.get("data_manifest_sha256"),
        "verification_data_manifest_sha256": verification["dataset_manifest_sha256"],
        "profile": record.get("profile", trained.get("profile")),
        "seed": record.get("seed", trained.get("seed")),
        "trained": {"git_commit": trained.get("git_commit"), "libraries": trained.get("libraries"),
                    "created": trained.get("created")},
        "built": {"git_commit": build.get("git_commit"), "libraries": build.get("libraries"),
                  "created": build.get("created"), "hardware": build.get("hardware")},
        "selection": {"rule": selection["rule"], "fallback": selection["fallback"],
                      "candidates": selection["candidates"], "reference": selection["reference"],
                      "accuracy_drop_pp": selection["accuracy_drop_pp"], "meets_target": selection["meets_target"],
                      "target": selection["target"]},
        "metadata": {"format": "TFLite metadata (tflite-support MetadataWriter): ModelMetadata in the flatbuffer, "
                               "associated files in an uncompressed zip appended to it",
                     "name": metadata.get("name"), "version": metadata.get("version"),
                     "normalization": metadata.get("normalization"), "color_space": metadata.get("color_space"),
                     "associated_files": metadata.get("associated_files", []),
                     "model_files": metadata.get("model_files", []),
                     "packed_files": sorted(embedded_files(model_path))},
        "files": {"labels": LABELS_FILE, "selection": select.SELECTION_FILE, "verification": VERIFICATION_FILE,
                  "checksums": SUMS_FILE},
    }
    return ModelCard.model_validate(card).dump()


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def _bytes(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def card_markdown(card: dict[str, Any]) -> str:
    test, sel = card["metrics"]["test"], card["selection"]
    latency = card["latency_ms"]["measured_at_build_threads1"]
    data = card["training_data"]
    lines = [
        f"# Model card: {card['name']} {card['version']} ({card['variant']})", "",
        f"{card['task'][0].upper() + card['task'][1:]}. File `{card['model_file']}`: {card['architecture']}, precision "
        f"{card['precision']}, quantized from `{card['source']}`.", "",
        "## Intended use", "", *(f"- {line}" for line in card["intended_use"]), "",
        "## Out-of-scope use", "", *(f"- {line}" for line in card["out_of_scope_use"]), "",
        "## Input and output", "",
        f"- Input: {card['input']['dtype']} tensor {card['input']['shape']}, RGB in {card['input']['range']} "
        f"(batch {card['input']['batch']}).",
        f"- Preprocessing: {card['input']['preprocessing']}",
        *(["- The same input in five lines of Pillow (bit for bit what `predict` feeds; `path` is the photo):", "",
           "```python", card["input"]["pillow_snippet"].rstrip("\n"), "```", ""]
          if card["input"].get("pillow_snippet") else []),
        f"- Output: {card['output']['dtype']} {card['output']['shape']}, {card['output']['meaning']}.",
        f"- Classes (output order): {', '.join(card['classes'])}.", "",
        "## Metrics (test split)", "",
        f"- Accuracy {_pct(test.get('accuracy'))} on {test.get('n')} images (re-evaluated from this file: "
        f"{_pct(card['metrics']['verified_accuracy'])}, verified: {card['metrics']['verified']}); macro-F1 "
        f"{test.get('macro_f1') if test.get('macro_f1') is None else round(test['macro_f1'], 4)}.",
    ]
    if test.get("per_class"):
        lines += ["", "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for name, row in test["per_class"].items():
            lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} "
                         f"| {row['support']} |")
    lines += ["", "## Training and evaluation data", "",
              f"- {data['dataset']}: {data['source']}, {data['license']} licence. {data['description']}",
              f"- Split: {data['split_method']}. Accepted images: "
              + ", ".join(f"{name} {split['images']}" for name, split in data["splits"].items())
              + f"; {data['rejected_files']} files rejected (manifest sha256 {data['manifest_sha256']}).",
              f"- Evaluation: {card['evaluation_data']}",
              "", "## Known limitations", "", *(f"- {line}" for line in card["limitations"])]
    ood = card["out_of_distribution"]
    if ood["measured"] and ood.get("per_class"):
        lines += ["", f"Per class on {ood['dataset']}:", "", "| class | F1 | support |", "|---|---:|---:|"]
        for name, row in ood["per_class"].items():
            if isinstance(row, dict) and "f1" in row:
                lines.append(f"| {name} | {row['f1']:.3f} | {row.get('support', '-')} |")
    lines += ["", "## Per-class weaknesses", "", "Weakest first (test split F1; the commonest wrong answer):", ""]
    for row in card["per_class_weaknesses"]:
        confusion = (f"; most often taken for {row['most_confused_with']} ({row['confused_count']} of "
                     f"{row['support']})" if row.get("most_confused_with") else "")
        lines.append(f"- {row['class']}: F1 {row['f1']:.3f} (precision {row['precision']:.3f}, recall "
                     f"{row['recall']:.3f}){confusion}.")
    lines += ["", "## How to report a problem", "", card["report_a_problem"]]
    size, files = card["size"], card["files"]
    lines += [
        "", "## Size and latency", "",
        f"- File: {size['raw_bytes']:,} bytes, {size['gzip_bytes']:,} gzipped (the chosen file alone: "
        f"{_bytes(size['chosen_file_raw_bytes'])} / {_bytes(size['chosen_file_gzip_bytes'])}).",
        f"- Latency, batch 1, 1 thread, measured at build: median {latency['median']:.2f} ms, "
        f"p90 {latency['p90']:.2f} ms ({latency['runs']} runs on {card['built'].get('hardware', {}).get('cpu', 'this machine')}).",
        "", "## Selection", "", f"- Rule: {sel['rule']}",
        f"- Candidates: {', '.join(sel['candidates'])}.",
    ]
    if sel["fallback"]:
        lines.append(f"- Fallback used: {sel['fallback']['reason']}.")
    if sel["reference"]:
        lines.append(f"- Reference float `{sel['reference']['id']}`: {_pct(sel['reference']['accuracy'])}; drop "
                     f"{sel['accuracy_drop_pp']:+.2f} pp; target ({sel['target']}): "
                     f"{'met' if sel['meets_target'] else 'not met'}.")
    lines += [
        "", "## Provenance", "",
        f"- Weights origin: {card['weights_origin']}; profile {card['profile']}; seed {card['seed']}.",
        f"- Data manifest sha256: {card['data_manifest_sha256']} "
        f"(verified on {card['verification_data_manifest_sha256']}).",
        f"- Trained at commit {card['trained']['git_commit']}; "
        f"artifact built at commit {card['built']['git_commit']}.",
        "- Libraries (build): " + ", ".join(f"{k} {v}" for k, v in (card["built"]["libraries"] or {}).items()) + ".",
        f"- {card['metadata']['format']}: name {card['metadata']['name']}, version "
        f"{card['metadata']['version']}, input normalization {card['metadata']['normalization']}, colour space "
        f"{card['metadata']['color_space']}; packed files: {', '.join(card['metadata']['packed_files'])}.",
        f"- Checksums of every file here: `{files['checksums']}` (`sha256sum -c {files['checksums']}`).",
    ]
    return "\n".join(lines) + "\n"


def write_sums(output_dir: Path, names: list[str]) -> Path:
    text = "".join(f"{fileio.sha256_file(output_dir / name)}  {name}\n" for name in sorted(names))
    return fileio.atomic_write_text(output_dir / SUMS_FILE, text)


def check_sums(output_dir: str | os.PathLike) -> dict[str, bool]:
    """File name -> whether its sha256 matches ``SHA256SUMS``."""
    output_dir = Path(output_dir)
    result = {}
    for line in (output_dir / SUMS_FILE).read_text(encoding="utf-8").splitlines():
        digest, name = line.split("  ", 1)
        path = output_dir / name
        result[name] = path.is_file() and fileio.sha256_file(path) == digest
    return result


def run(cfg: VariantConfig, *, dataset_dir: str | os.PathLike, models_dir: str | os.PathLike,
        output_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
        verbose: bool = False) -> dict[str, Any]:
    """The stage's entry (``stages.invoke``): chooses among every result under ``models_dir``."""
    return build_final(cfg, dataset_dir=dataset_dir, models_dir=models_dir, output_dir=output_dir,
                       cache_dir=cache_dir)


def build_final(config: VariantConfig, *, dataset_dir: str | os.PathLike, models_dir: str | os.PathLike,
                output_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                strict: bool = True) -> dict[str, Any]:
    """Select the final model and write the artifact into ``output_dir`` (``models/<profile>/final/``).

    Returns ``{"selection", "statistics", "verification", "card", "card_markdown", "files"}``. With ``strict`` an
    ``ArtifactError`` is raised (after ``verification.json`` is written) when the file does not reproduce
    its reported accuracy exactly. ``cache_dir`` is accepted for the stage-notebook contract; unused.
    """
    dataset_dir, models_dir, output_dir = Path(dataset_dir), Path(models_dir), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # Statistics first: the rule may use them (its eligibility option) and selection.json states what the
    # tolerance means against the intervals; the final-vs-reference test follows once the final is chosen.
    rows = select.finished_results(models_dir, config.select, profile=config.profile)
    statistics = stats.analyse(rows, models_dir, config.stats, tolerance_pp=config.select.accuracy_tolerance_pp)
    selection = select.select(models_dir, config.select, profile=config.profile, rows=rows, statistics=statistics,
                              stats_config=config.stats)
    statistics = stats.add_final(statistics, selection, models_dir, config.stats)
    stats.write_stats(statistics, output_dir)
    chosen = selection["chosen"]
    variant_dir = models_dir / chosen["dir"]
    record = records.read_metrics(variant_dir).dump()
    original = select.chosen_path(selection, models_dir)
    labels = list(record.get("classes") or [])
    if not labels:
        raise ArtifactError(f"{variant_dir / METRICS_FILE} lists no classes: cannot write labels.txt")
    labels_text = "".join(f"{name}\n" for name in labels)
    version = provenance.release_version(config.profile)
    original_bytes = original.read_bytes()
    info = {"name": MODEL_NAME, "version": version, "variant": chosen["id"], "classes": labels,
            "input": {"range": "[0, 255]", "color": "RGB", "resize": f"{config.model.fit}, bilinear", **NORMALIZATION},
            "fit": config.model.fit,  # read by predict and evaluate (images.to_model_input)
            **({"input_scale": record_scale(record)} if record_scale(record) > 1 else {}),
            "source_sha256": fileio.sha256_bytes(original_bytes), "weights": record.get("weights"),
            "profile": record.get("profile"), "seed": record.get("seed")}
    model_path = output_dir / MODEL_FILE
    fileio.atomic_write_bytes(model_path, write_metadata(original_bytes, labels, version=version, info=info,
                                                         input_description=input_description(original_bytes, record)))
    fileio.atomic_write_text(output_dir / LABELS_FILE, labels_text)
    select.write_selection(selection, output_dir)

    verification = verify(model_path, original, dataset_dir, record, variant_dir,
                          latency_runs=config.quantize.latency_runs, latency_warmup=config.quantize.latency_warmup)
    fileio.write_json(output_dir / VERIFICATION_FILE, verification)
    if strict and not verification["passed"]:
        raise ArtifactError(
            f"{model_path} does not reproduce {chosen['id']}'s reported test results: reported "
            f"{verification['reported']}, reproduced {verification['reproduced']}, "
            f"{verification['prediction_mismatches']} prediction mismatches, max output difference to the "
            f"chosen file {verification['embedded_vs_original_max_abs_diff']} (see {VERIFICATION_FILE})")

    build = provenance.collect(seed=config.seed, profile=config.profile, config=config_to_dict(config),
                               data_manifest=dataset_dir / settings.MANIFEST_NAME, weights=record.get("weights"))
    interval = next((i.model_dump(mode="json") for i in statistics.intervals
                     if i.variant == chosen["id"] and i.metric == "accuracy"), None)
    card = model_card(selection, record, verification, model_path, labels, build, version=version,
                      data=data_section(dataset_dir, config), interval=interval)
    records.write_model_card(output_dir, card)
    markdown = card_markdown(card)
    fileio.atomic_write_text(output_dir / CARD_MD, markdown)

    final_record = copy.deepcopy(record)
    final_record.update(variant="final", stage="final", selected_variant=chosen["id"], format="tflite",
                        size={"file": MODEL_FILE, "raw_bytes": card["size"]["raw_bytes"],
                              "gzip_bytes": card["size"]["gzip_bytes"]}, provenance=build)
    records.write_metrics(output_dir, final_record)

    names = [MODEL_FILE, LABELS_FILE, CARD_JSON, CARD_MD, select.SELECTION_FILE, stats.STATS_FILE, VERIFICATION_FILE,
             METRICS_FILE]
    write_sums(output_dir, names)
    return {"selection": selection, "statistics": statistics, "verification": verification, "card": card,
            "card_markdown": markdown, "files": [*names, SUMS_FILE]}
