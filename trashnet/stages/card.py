"""The model card of the final artifact: ``model_card.json`` (``records.ModelCard``) and ``MODEL_CARD.md``.

The technical fields (input, preprocessing, metrics, size, latency, provenance, the selection) plus the
model-card convention's sections (Mitchell et al. 2019, "Model Cards for Model Reporting"; Hugging Face's
model card template). ``trashnet.stages.final`` builds the artifact and calls ``model_card``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from trashnet.deploy.input_scale import record_scale, scale_text
from trashnet.core import fileio, images, settings
from trashnet.core.config import VariantConfig
from trashnet.core.litert import TFLiteModel, read_metadata
from trashnet.core.records import (ClassWeakness, DataSection, ModelCard, OODSection, ParityRecord, Selection,
                                   SplitCount)
from trashnet.deploy.predict import LABELS_FILE, embedded_files, model_fit
from trashnet.nets import parity as consumer_parity

MODEL_FILE = "trashnet.tflite"
MODEL_NAME = "trashnet"
NORMALIZATION = {"mean": [0.0], "std": [1.0]}  # raw 0-255 pixels: every model rescales inside itself
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


def model_card(selection: Selection, record: dict[str, Any], verification: dict[str, Any],
               model_path: Path, labels: list[str], build: dict[str, Any], *, version: str,
               data: DataSection, interval: dict[str, Any] | None = None,
               parity: ParityRecord | None = None) -> dict[str, Any]:
    runner = TFLiteModel(model_path)
    size, dtype, scale = runner.image_size, runner.input_dtype.name, record_scale(record)
    fit = model_fit(model_path.read_bytes())
    trained = record.get("provenance") or {}
    chosen = selection.chosen
    test = record.get("test") or {}
    metadata = read_metadata(model_path.read_bytes()) or {}
    ood = ood_section(record)
    card = {
        "name": MODEL_NAME,
        "version": version,
        "task": "waste-image classification (TrashNet classes)",
        "model_file": MODEL_FILE,
        "variant": chosen.id,
        "architecture": chosen.arch,
        "precision": chosen.precision,
        "source": chosen.source,
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
                 "chosen_file_raw_bytes": chosen.raw_bytes, "chosen_file_gzip_bytes": chosen.gzip_bytes},
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
        "selection": selection.model_dump(mode="json", include={
            "rule", "fallback", "candidates", "reference", "accuracy_drop_pp", "meets_target", "target"}),
        "metadata": {"format": "TFLite metadata (tflite-support MetadataWriter): ModelMetadata in the flatbuffer, "
                               "associated files in an uncompressed zip appended to it",
                     "name": metadata.get("name"), "version": metadata.get("version"),
                     "normalization": metadata.get("normalization"), "color_space": metadata.get("color_space"),
                     "associated_files": metadata.get("associated_files", []),
                     "model_files": metadata.get("model_files", []),
                     "packed_files": sorted(embedded_files(model_path))},
        "files": {"labels": LABELS_FILE, "selection": settings.SELECTION_FILE, "verification": settings.VERIFICATION_FILE,
                  "checksums": settings.SUMS_FILE},
        **({"parity": parity.dump()} if parity is not None else {}),
    }
    return ModelCard.model_validate(card).dump()


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def _bytes(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def parity_markdown(record: dict[str, Any] | None) -> list[str]:
    """The card's parity part: per data set, each consumer's top-1 agreement and accuracy against ``predict``."""
    if not record:
        return []
    parity = ParityRecord.model_validate(record)
    lines = ["### The same answer in other apps (preprocessing parity)", "",
             "This file given whole photos, resized the way each library does by default, against `predict` "
             f"(agreement: the same top-1 class; targets {100 * consumer_parity.AGREEMENT_TARGET:.0f} % agreement "
             f"and {consumer_parity.ACCURACY_TARGET_PP:.0f} pp accuracy for every consumer; "
             "docs/deployment-parity.md).", ""]
    for dataset, rows in parity.datasets.items():
        verdict = "met" if consumer_parity.meets_targets(rows) else "not met"
        lines += [f"{dataset} ({rows[0].n} photos; targets {verdict}):", "", *consumer_parity.table(rows), ""]
    if parity.unmeasured:
        reason = next(iter(parity.unmeasured.values()))
        lines += [f"Not measured: {', '.join(sorted(parity.unmeasured))} ({reason}).", ""]
    versions = ", ".join(f"{name} {version}" for name, version in sorted(parity.versions.items()))
    return lines + ([f"Libraries: {versions}.", ""] if versions else [])


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
        *parity_markdown(card.get("parity")),
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
