"""The deployable artifact in ``models/<profile>/final/``: the chosen ``.tflite`` with its labels, model card and checks.

``build_final`` applies the selection rule (``trashnet.select``) to the result files, then writes:

- ``trashnet.tflite``: the chosen file, byte for byte, followed by a zip of ``labels.txt`` and
  ``metadata.json``. This is how the TFLite metadata convention packs associated files (tflite-support's
  ``MetadataPopulator`` appends them as a zip); tflite-support itself cannot be installed with this stack
  (docs/toolchain-facts.md), so the flatbuffer's own ``metadata`` table is not written. Flatbuffers are read from their
  root offset, so the interpreter ignores the trailing zip, and any zip reader finds it from the end of the
  file: ``zipfile.ZipFile("trashnet.tflite")``. ``verification.json`` proves the file still loads and gives
  the same outputs as the chosen one.
- ``labels.txt`` (class names in output order), ``selection.json`` (the rule, the candidates, the fronts),
  ``stats.json`` (intervals, paired tests and seed spread: ``trashnet.stats``, computed before selection),
  ``metrics.json`` (the chosen result, restated for the final file), ``verification.json`` (the copied
  file re-evaluated with LiteRT on the test split: it must reproduce the reported accuracy exactly),
  ``model_card.json`` and ``model_card.md``, and ``SHA256SUMS`` over all of them (``sha256sum -c``).

Nothing here imports TensorFlow: the checks run through ``trashnet.predict``, the deployment path.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import zipfile
from pathlib import Path
from typing import Any

from trashnet import fileio, images, provenance, results, select, settings, stats
from trashnet.config import VariantConfig, config_to_dict
from trashnet.litert import TFLiteModel
from trashnet.predict import LABELS_FILE, METADATA_FILE, embedded_files, evaluate_split

MODEL_FILE = "trashnet.tflite"
CARD_JSON = settings.MODEL_CARD_FILE
CARD_MD = settings.MODEL_CARD_MD
VERIFICATION_FILE = settings.VERIFICATION_FILE
SUMS_FILE = settings.SUMS_FILE
METRICS_FILE = settings.METRICS_FILE
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same inputs give the same bytes

PREPROCESSING = (
    "Decode with Pillow (images.load_for_model): apply the EXIF orientation, convert to 8-bit RGB (transparency "
    "onto white), resize the whole frame to {size}x{size} without cropping or padding (squashed; bilinear), "
    "and feed the RGB values as {dtype} in [0, 255], shape (1, {size}, {size}, 3). The model rescales to "
    "[-1, 1] itself. For JPEGs the decoder may scale down by a power of two first (Pillow draft mode), never "
    "below {size} px.")


class ArtifactError(RuntimeError):
    """The artifact failed a check (e.g. the copied file does not reproduce the reported accuracy)."""


def append_zip(model: bytes, files: dict[str, bytes]) -> bytes:
    """``model`` followed by a zip archive of ``files`` whose offsets count from the start of the result."""
    buffer = io.BytesIO()
    buffer.write(model)
    with zipfile.ZipFile(buffer, mode="a", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


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


def model_card(selection: dict[str, Any], record: dict[str, Any], verification: dict[str, Any],
               model_path: Path, labels: list[str], build: dict[str, Any]) -> dict[str, Any]:
    runner = TFLiteModel(model_path)
    size, dtype = runner.image_size, runner.input_dtype.name
    trained = record.get("provenance") or {}
    chosen = selection["chosen"]
    test = record.get("test") or {}
    return {
        "name": "trashnet",
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
                  "range": "[0, 255]", "preprocessing": PREPROCESSING.format(size=size, dtype=dtype)},
        "output": {"shape": runner.output["shape"].tolist(), "dtype": runner.output["dtype"].__name__,
                   "meaning": "class probabilities (softmax), in labels.txt order"},
        "classes": labels,
        "metrics": {"test": {k: test.get(k) for k in ("n", "accuracy", "macro_f1", "per_class")},
                    "verified_accuracy": verification["reproduced"]["accuracy"],
                    "verified": verification["passed"]},
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
        "embedded": {"format": "zip appended to the flatbuffer (TFLite metadata convention for associated files)",
                     "files": sorted(embedded_files(model_path))},
        "files": {"labels": LABELS_FILE, "selection": select.SELECTION_FILE, "verification": VERIFICATION_FILE,
                  "checksums": SUMS_FILE},
    }


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def _bytes(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def card_markdown(card: dict[str, Any]) -> str:
    test, sel = card["metrics"]["test"], card["selection"]
    latency = card["latency_ms"]["measured_at_build_threads1"]
    lines = [
        f"# Model card: {card['name']} ({card['variant']})", "",
        f"{card['task'][0].upper() + card['task'][1:]}. File `{card['model_file']}`: {card['architecture']}, precision "
        f"{card['precision']}, quantized from `{card['source']}`.", "",
        "## Input and output", "",
        f"- Input: {card['input']['dtype']} tensor {card['input']['shape']}, RGB in {card['input']['range']} "
        f"(batch {card['input']['batch']}).",
        f"- Preprocessing: {card['input']['preprocessing']}",
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
        f"- Embedded in the .tflite ({card['embedded']['format']}): {', '.join(card['embedded']['files'])}.",
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
    record = results.read_metrics(variant_dir).dump()
    original = select.chosen_path(selection, models_dir)
    labels = list(record.get("classes") or [])
    if not labels:
        raise ArtifactError(f"{variant_dir / METRICS_FILE} lists no classes: cannot write labels.txt")
    labels_text = "".join(f"{name}\n" for name in labels)
    original_bytes = original.read_bytes()
    metadata = {"name": "trashnet", "variant": chosen["id"], "classes": labels,
                "input": {"range": "[0, 255]", "color": "RGB", "resize": "squash (no crop), bilinear"},
                "source_sha256": fileio.sha256_bytes(original_bytes), "weights": record.get("weights"),
                "profile": record.get("profile"), "seed": record.get("seed")}
    model_path = output_dir / MODEL_FILE
    fileio.atomic_write_bytes(model_path, append_zip(original_bytes, {
        LABELS_FILE: labels_text.encode("utf-8"), METADATA_FILE: fileio.dumps_json(metadata).encode("utf-8")}))
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
    card = model_card(selection, record, verification, model_path, labels, build)
    results.write_model_card(output_dir, card)
    markdown = card_markdown(card)
    fileio.atomic_write_text(output_dir / CARD_MD, markdown)

    final_record = copy.deepcopy(record)
    final_record.update(variant="final", stage="final", selected_variant=chosen["id"], format="tflite",
                        size={"file": MODEL_FILE, "raw_bytes": card["size"]["raw_bytes"],
                              "gzip_bytes": card["size"]["gzip_bytes"]}, provenance=build)
    results.write_metrics(output_dir, final_record)

    names = [MODEL_FILE, LABELS_FILE, CARD_JSON, CARD_MD, select.SELECTION_FILE, stats.STATS_FILE, VERIFICATION_FILE,
             METRICS_FILE]
    write_sums(output_dir, names)
    return {"selection": selection, "statistics": statistics, "verification": verification, "card": card,
            "card_markdown": markdown, "files": [*names, SUMS_FILE]}
