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
- ``metrics.json``'s ``parity`` block, also in the card: ``trashnet.tflite`` given whole photos (the prepared
  test split, and ``$TRASHNET_OOD_DATA`` when set) the way apps resize them, each against ``predict``
  (``measure_parity``, ``trashnet.nets.parity``; MediaPipe and OpenCV in MediaPipe's tool venv, else recorded
  as not measured, never a failure).

The checks run through ``trashnet.deploy.predict``, the deployment path; TensorFlow is imported only for the
parity row of ``tf.image.resize``.
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
from trashnet.nets import parity
from trashnet.stages import select, stats
from trashnet.core.config import VariantConfig, config_to_dict
from trashnet.core.tflite import TFLiteModel
from trashnet.deploy.input_scale import input_description, record_scale
from trashnet.deploy.predict import LABELS_FILE, METADATA_FILE, evaluate_split
from trashnet.stages.card import MODEL_FILE, MODEL_NAME, NORMALIZATION, card_markdown, data_section, model_card

CARD_JSON = settings.MODEL_CARD_FILE
CARD_MD = settings.MODEL_CARD_MD
VERIFICATION_FILE = settings.VERIFICATION_FILE
SUMS_FILE = settings.SUMS_FILE
METRICS_FILE = settings.METRICS_FILE
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same inputs give the same bytes

# What the TFLite metadata says about the model (name, version: provenance.release_version()).
MODEL_DESCRIPTION = ("Classifies a photo of one piece of waste into the six TrashNet classes (cardboard, glass, "
                     "metal, paper, plastic, trash). Input: RGB, 0-255, the whole photo squashed to a square.")
MODEL_AUTHOR = "TrashNet thesis project"
MODEL_LICENSE = ("MIT. Trained on TrashNet by Gary Thung and Mindy Yang (Stanford CS229, 2016; "
                 "github.com/garythung/trashnet), MIT licence.")
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
           variant_dir: Path, *, original_name: str | None = None, latency_runs: int = 50,
           latency_warmup: int = 5) -> dict[str, Any]:
    """Re-evaluate the final file on the test split and compare with what its result file reported.

    ``original_name``: how ``verification.json`` names the chosen file (default: its file name)."""
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
        "original_file": original_name or original_path.name,
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


def measure_parity(model_path: Path, dataset_dir: Path, labels: list[str], config: VariantConfig
                   ) -> records.ParityRecord:
    """The shipped file against ``predict`` for every consumer: on the prepared test split's photos (whole, as
    ``prepare`` kept them) and on the OOD folder when ``$TRASHNET_OOD_DATA`` is set (its ``ood.class_map``)."""
    sets = {parity.FINAL_TEST: parity.prepared_test(dataset_dir)}
    ood = settings.ood_data()
    if ood is not None and ood.is_dir():
        sets[parity.FINAL_OOD] = parity.labelled_folder(ood, labels, dict(config.ood.class_map))
    return parity.measure_file(model_path, sets, name="final", model_name=MODEL_FILE)


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
    chosen = selection.chosen
    variant_dir = models_dir / chosen.dir
    record = records.read_metrics(variant_dir).dump()
    original = select.chosen_path(selection, models_dir)
    labels = list(record.get("classes") or [])
    if not labels:
        raise ArtifactError(f"{variant_dir / METRICS_FILE} lists no classes: cannot write labels.txt")
    labels_text = "".join(f"{name}\n" for name in labels)
    version = provenance.release_version(config.profile)
    original_bytes = original.read_bytes()
    info = {"name": MODEL_NAME, "version": version, "variant": chosen.id, "classes": labels,
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

    # Relative to the results folder it was chosen from ("quantize/<variant>/<file>"): a committed result
    # names no machine's folder.
    original_name = original.resolve().relative_to(models_dir.resolve()).as_posix()
    verification = verify(model_path, original, dataset_dir, record, variant_dir, original_name=original_name,
                          latency_runs=config.quantize.latency_runs, latency_warmup=config.quantize.latency_warmup)
    fileio.write_json(output_dir / VERIFICATION_FILE, verification)
    if strict and not verification["passed"]:
        raise ArtifactError(
            f"{model_path} does not reproduce {chosen.id}'s reported test results: reported "
            f"{verification['reported']}, reproduced {verification['reproduced']}, "
            f"{verification['prediction_mismatches']} prediction mismatches, max output difference to the "
            f"chosen file {verification['embedded_vs_original_max_abs_diff']} (see {VERIFICATION_FILE})")

    build = provenance.collect(seed=config.seed, profile=config.profile, config=config_to_dict(config),
                               data_manifest=dataset_dir / settings.MANIFEST_NAME, weights=record.get("weights"))
    interval = next((i.model_dump(mode="json") for i in statistics.intervals
                     if i.variant == chosen.id and i.metric == "accuracy"), None)
    parity_record = measure_parity(model_path, dataset_dir, labels, config)
    card = model_card(selection, record, verification, model_path, labels, build, version=version,
                      data=data_section(dataset_dir, config), interval=interval, parity=parity_record)
    records.write_model_card(output_dir, card)
    markdown = card_markdown(card)
    fileio.atomic_write_text(output_dir / CARD_MD, markdown)

    final_record = copy.deepcopy(record)
    final_record.update(variant="final", stage="final", selected_variant=chosen.id, format="tflite",
                        size={"file": MODEL_FILE, "raw_bytes": card["size"]["raw_bytes"],
                              "gzip_bytes": card["size"]["gzip_bytes"]}, provenance=build,
                        parity=parity_record.dump())
    records.write_metrics(output_dir, final_record)

    names = [MODEL_FILE, LABELS_FILE, CARD_JSON, CARD_MD, select.SELECTION_FILE, stats.STATS_FILE, VERIFICATION_FILE,
             METRICS_FILE]
    write_sums(output_dir, names)
    return {"selection": selection, "statistics": statistics, "verification": verification, "card": card,
            "card_markdown": markdown, "files": [*names, SUMS_FILE]}
