"""``python -m trashnet report``: ``report/index.html`` and ``report/report.pdf`` from the result files.

Reads only files: ``logs/run.json`` (what the last run selected and how each variant ended), every
variant folder's ``metrics.json`` / ``manifest.json`` / ``failed.json`` / ``history.csv`` / rendered
notebook, ``models/final/`` (``selection.json``, ``model_card.json``, ``SHA256SUMS``) and
``dataset/manifest.csv``. It never imports a training, pruning or quantization module, and no number
is typed into a template. The HTML is self-contained (CSS inline, figures as PNG data URIs) and opens
offline; the executed notebooks are copied beside it to ``report/notebooks/<id>.html`` and linked.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import math
import re
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trashnet import fileio, provenance, settings

REPORT_HTML = "index.html"
REPORT_PDF = "report.pdf"
RUN_RECORD = "run.json"  # logs/run.json, written by the pipeline
FAILED_NAME = "failed.json"
# Single-image latency, in order of preference, for the format the row's size is of: a Keras result is timed
# as a Keras model, a TFLite result in LiteRT (one thread first: comparable across machines).
LATENCY_KEYS = {"keras": ("keras_batch1",), "tflite": ("tflite_threads1", "tflite_threads2", "tflite")}
STAGE_COLOURS = {"baseline": "#1f77b4", "pruned": "#ff7f0e", "quantized": "#2ca02c", "hybrid": "#d62728",
                 "final": "#9467bd"}
MAX_LISTED = 300
FIGURE_VERSION = "2"  # bump when a figure's drawing code changes: invalidates the figure cache  # rows of a file list shown before "... and N more"


# --- reading the results ---------------------------------------------------------------------------

@dataclass
class Variant:
    id: str
    stage: str
    folder: Path
    status: str  # done, cached, failed, skipped, missing
    metrics: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    notebook: str | None = None  # report-relative link to the rendered notebook
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def test(self) -> dict[str, Any]:
        return self.metrics.get("test") or {}

    @property
    def group(self) -> str:
        """baseline, pruned, quantized (from a baseline), hybrid (pruned + quantized) or final."""
        if self.stage == "quantized":
            config = (self.metrics.get("provenance") or {}).get("config") or {}
            source_stage = self.metrics.get("source_stage") or config.get("source_stage")
            if source_stage == "pruned" or (not source_stage and ".prune" in (self.metrics.get("source") or
                                                                               self.source_guess)):
                return "hybrid"
        return self.stage

    @property
    def source_guess(self) -> str:
        return self.id.rsplit(".", 1)[0] if "." in self.id else ""

    def value(self, name: str) -> float | None:
        metrics, test = self.metrics, self.test
        size = metrics.get("size") or {}
        lookup = {
            "accuracy": test.get("accuracy"),
            "macro_f1": test.get("macro_f1"),
            "raw_bytes": size.get("raw_bytes"),
            "gzip_bytes": size.get("gzip_bytes"),
            "latency_ms": self.latency()[1],
            "params": metrics.get("nonzero_params", metrics.get("params")),
            "macs": metrics.get("nonzero_macs", metrics.get("macs")),
        }
        value = lookup.get(name)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def latency(self) -> tuple[str | None, float | None]:
        latency = self.metrics.get("latency_ms") or {}
        fmt = self.metrics.get("format") or ("tflite" if self.stage in ("quantized", "final") else "keras")
        for key in LATENCY_KEYS.get(fmt, ()):
            if isinstance(latency.get(key), dict) and "median" in latency[key]:
                return key, float(latency[key]["median"])
        for key, entry in sorted(latency.items()):  # whatever the stage measured
            if isinstance(entry, dict) and "median" in entry:
                return key, float(entry["median"])
        return None, None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = fileio.read_json(path)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _read_history(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            parsed = {}
            for key, value in row.items():
                try:
                    parsed[key] = float(value)
                except (TypeError, ValueError):
                    continue
            rows.append(parsed)
    return rows


def _stage_of(folder: Path, layout: settings.Layout) -> str:
    return folder.relative_to(layout.models).parts[0]


def discover(layout: settings.Layout, run: dict[str, Any]) -> list[Variant]:
    """The variants of the last run (``logs/run.json``), else every variant folder found."""
    entries: list[tuple[str, str, Path, dict[str, Any]]] = []
    if run.get("variant"):
        # run.json is written with sorted keys: "selected" keeps the run's (dependency) order.
        order = [v for v in run.get("selected") or [] if v in run["variant"]]
        order += sorted(set(run["variant"]) - set(order))
        for variant_id in order:
            entry = run["variant"][variant_id]
            entries.append((variant_id, entry.get("stage", ""), layout.root / entry["folder"], entry))
    else:
        for stage in settings.STAGES:
            stage_dir = layout.stage_dir(stage)
            if stage == "final":
                if stage_dir.is_dir():
                    entries.append(("final", stage, stage_dir, {}))
                continue
            for folder in sorted(stage_dir.glob("*")) if stage_dir.is_dir() else []:
                if folder.is_dir() and not folder.name.startswith("."):
                    entries.append((folder.name, stage, folder, {}))
    variants = []
    for variant_id, stage, folder, entry in entries:
        manifest = _read_json(folder / settings.RUN_MANIFEST_NAME)
        failure = _read_json(folder / FAILED_NAME)
        if manifest.get("status") == "done":
            status = entry.get("status") if entry.get("status") in ("done", "cached") else "done"
        elif failure:
            status = "failed"
        else:
            status = entry.get("status") or "missing"
            if status in ("done", "cached"):
                status = "missing"  # the run said done, but the folder has since lost its manifest
        variant = Variant(id=variant_id, stage=stage, folder=folder, status=status, manifest=manifest,
                          failure=failure, reason=entry.get("reason") or "")
        if status in ("done", "cached"):
            variant.metrics = _read_json(folder / "metrics.json")
            variant.history = _read_history(folder / "history.csv")
        variants.append(variant)
    return variants


def read_data_manifest(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --- formatting -------------------------------------------------------------------------------------

def fmt_pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f} %"


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 1 << 20:
        return f"{value / (1 << 20):.2f} MiB"
    if value >= 1 << 10:
        return f"{value / (1 << 10):.1f} KiB"
    return f"{int(value)} B"


def fmt_count(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 1e9:
        return f"{value / 1e9:.2f} G"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k"
    return f"{int(value)}"


def fmt_ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} ms"


def describe(value: Any, limit: int = 12) -> str:
    """A JSON value as one readable line (lists shortened)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        shown = ", ".join(describe(item, limit) for item in value[:limit])
        return shown + (f", … ({len(value)} in all)" if len(value) > limit else "")
    if isinstance(value, dict):
        return "; ".join(f"{key}: {describe(item, limit)}" for key, item in list(value.items())[:limit])
    return "–" if value is None else str(value)


# Table columns: (key, header, formatter, better: "max" | "min")
COLUMNS = (
    ("accuracy", "Accuracy", fmt_pct, "max"),
    ("macro_f1", "Macro-F1", fmt_pct, "max"),
    ("raw_bytes", "Size", fmt_bytes, "min"),
    ("gzip_bytes", "Size (gzip)", fmt_bytes, "min"),
    ("latency_ms", "Latency", fmt_ms, "min"),
    ("params", "Parameters (non-zero)", fmt_count, "min"),
    ("macs", "MACs (non-zero)", fmt_count, "min"),
)


def table(variants: list[Variant], by_id: dict[str, Variant]) -> dict[str, Any]:
    """Rows of formatted cells with the best value of each column marked (ties all marked)."""
    rows = []
    best: dict[str, float] = {}
    for key, _, _, better in COLUMNS:
        values = [v.value(key) for v in variants if v.value(key) is not None]
        if len(values) > 1:
            best[key] = max(values) if better == "max" else min(values)
    for variant in variants:
        cells = []
        for key, _, formatter, _ in COLUMNS:
            value = variant.value(key)
            cells.append({"text": formatter(value),
                          "best": value is not None and key in best and math.isclose(value, best[key]),
                          "title": _cell_title(variant, key)})
        source = by_id.get(variant.metrics.get("source") or "")
        delta = None
        if source is not None and variant.value("accuracy") is not None and source.value("accuracy") is not None:
            delta = 100 * (variant.value("accuracy") - source.value("accuracy"))
        conversion = variant.metrics.get("conversion") or {}
        note = ""
        if variant.status not in ("done", "cached"):
            note = variant.status + (f": {variant.reason}" if variant.reason else "")
        elif conversion.get("status") == "failed":
            note = f"conversion failed: {conversion.get('error', '')}"
        elif not variant.test:
            note = "no test metrics"
        kind = " ".join(str(variant.metrics[k]) for k in ("format", "precision") if variant.metrics.get(k))
        rows.append({"id": variant.id, "status": variant.status, "kind": kind or "–",
                     "source": variant.metrics.get("source"), "cells": cells, "notebook": variant.notebook,
                     "delta": None if delta is None else f"{delta:+.2f} pp", "note": note})
    return {"columns": [header for _, header, _, _ in COLUMNS], "rows": rows}


def _cell_title(variant: Variant, key: str) -> str:
    if key == "latency_ms":
        name, _ = variant.latency()
        return f"median, {name}" if name else ""
    if key in ("raw_bytes", "gzip_bytes"):
        value = variant.value(key)
        return "" if value is None else f"{int(value):,} bytes, {(variant.metrics.get('size') or {}).get('file', '')}"
    if key in ("params", "macs"):
        total = variant.metrics.get(key)
        nonzero = variant.metrics.get(f"nonzero_{key}")
        return f"{total:,} in all, {nonzero:,} non-zero" if nonzero is not None and total is not None else ""
    return ""


# --- figures ----------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 9, "figure.dpi": 100})
    return plt


def _png(figure) -> str:
    # Margins are set by hand: a layout engine or bbox_inches="tight" draws each figure twice (2x slower).
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    _pyplot().close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class FigureCache:
    """PNG data URIs on disk, keyed by the sha256 of what a figure is drawn from: a report rebuilt after a
    partial rerun only draws the figures whose data changed."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.hits = 0

    def get(self, kind: str, data: Any, draw) -> str | None:
        if self.folder is None:
            return draw()
        key = fileio.sha256_bytes(json.dumps([kind, FIGURE_VERSION, fileio.to_jsonable(data)], sort_keys=True,
                                             default=str).encode())
        path = self.folder / f"{kind}-{key[:32]}.txt"
        if path.exists():
            self.hits += 1
            text = path.read_text(encoding="ascii")
            return text or None
        uri = draw()
        fileio.atomic_write_text(path, uri or "")
        return uri


def confusion_figure(variant: Variant) -> str | None:
    test = variant.test
    matrix = test.get("confusion_matrix")
    classes = variant.metrics.get("classes") or []
    if not matrix or len(matrix) != len(classes):
        return None
    import numpy as np

    plt = _pyplot()
    counts = np.asarray(matrix, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    figure, axis = plt.subplots(figsize=(3.3, 3.0))
    figure.subplots_adjust(left=0.24, bottom=0.25, right=0.98, top=0.88)
    axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for row in range(len(classes)):
        for col in range(len(classes)):
            axis.text(col, row, int(counts[row, col]), ha="center", va="center", fontsize=7,
                      color="white" if share[row, col] > 0.6 else "black")
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{variant.id}\naccuracy {fmt_pct(test.get('accuracy'))}", fontsize=8)
    return _png(figure)


def history_figure(variant: Variant) -> str | None:
    history = variant.history
    if not history:
        return None
    plt = _pyplot()
    epochs = [row.get("epoch", index) for index, row in enumerate(history)]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(6.4, 2.4))
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.18, top=0.80, wspace=0.22)
    for axis, metric in ((loss_axis, "loss"), (acc_axis, "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [row.get(prefix + metric) for row in history]
            if any(value is not None for value in values):
                axis.plot(epochs, [math.nan if v is None else v for v in values], style,
                          label="validation" if prefix else "train")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7)
    figure.suptitle(variant.id, fontsize=9)
    return _png(figure)


def pareto_front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points (cost, accuracy, id) not beaten by another with lower-or-equal cost and higher-or-equal accuracy."""
    front = []
    for cost, accuracy, name in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or accuracy > front[-1][1]:
            front.append((cost, accuracy, name))
    return front


def pareto_figure(variants: list[Variant], key: str, label: str, final_id: str | None,
                  log_x: bool = True) -> tuple[str | None, list[str]]:
    points = [(v.value(key), v.value("accuracy"), v) for v in variants if v.stage != "final"]
    points = [(cost, acc, v) for cost, acc, v in points if cost is not None and acc is not None and cost > 0]
    if not points:
        return None, []
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.4, 3.8))
    figure.subplots_adjust(left=0.09, right=0.98, bottom=0.13, top=0.97)
    for group in ("baseline", "pruned", "quantized", "hybrid"):
        chosen = [(c, a) for c, a, v in points if v.group == group]
        if chosen:
            axis.scatter([c for c, _ in chosen], [100 * a for _, a in chosen], s=22, label=group,
                         color=STAGE_COLOURS[group], alpha=0.85)
    front = pareto_front([(c, a, v.id) for c, a, v in points])
    axis.plot([c for c, _, _ in front], [100 * a for _, a, _ in front], "-", color="#444", lw=1,
              label="Pareto front", zorder=0)
    for cost, accuracy, name in front:
        axis.annotate(name, (cost, 100 * accuracy), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if final_id:
        for cost, accuracy, variant in points:
            if variant.id == final_id:
                axis.scatter([cost], [100 * accuracy], s=140, facecolors="none", edgecolors="black",
                             linewidths=1.5, label="final model")
    if log_x:
        axis.set_xscale("log")
    axis.set_xlabel(label)
    axis.set_ylabel("test accuracy (%)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7, loc="lower right")
    return _png(figure), [name for _, _, name in front]


# --- sections -------------------------------------------------------------------------------------

def data_section(rows: list[dict[str, str]]) -> dict[str, Any]:
    """Counts per class and split, rejected files, exact duplicates, near-duplicate groups, conversions."""
    if not rows:
        return {"present": False}
    accepted = [row for row in rows if row.get("status") == "accepted"]
    rejected = [row for row in rows if row.get("status") != "accepted"]
    classes = sorted({row.get("class", "") for row in rows})
    splits = [s for s in settings.SPLITS if any(row.get("split") == s for row in accepted)]
    splits += sorted({row.get("split", "") for row in accepted} - set(splits))
    counts = Counter((row.get("class"), row.get("split")) for row in accepted)
    table_rows = [{"class": cls, "counts": [counts[(cls, s)] for s in splits],
                   "total": sum(counts[(cls, s)] for s in splits),
                   "rejected": sum(1 for row in rejected if row.get("class") == cls)} for cls in classes]
    totals = {"counts": [sum(counts[(cls, s)] for cls in classes) for s in splits], "total": len(accepted),
              "rejected": len(rejected)}

    def code(reason: str) -> str:  # "duplicate-conflict: ...", "duplicate of x (kept)" -> the leading word
        match = re.match(r"[A-Za-z0-9_-]+", (reason or "").strip())
        return match.group(0) if match else "unspecified"

    rejected_by_reason = Counter(code(row.get("reason", "")) for row in rejected)
    duplicates = [row for row in rejected if (row.get("reason") or "").lower().startswith("duplicate")]
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in accepted:
        if row.get("near_duplicate_group"):
            groups[row["near_duplicate_group"]].append(row)
    near = [{"group": name, "size": len(members), "classes": sorted({m.get("class", "") for m in members}),
             "splits": sorted({m.get("split", "") for m in members}),
             "members": ", ".join(m.get("path", "") for m in members)}
            for name, members in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))]
    noted = [row for row in accepted if (row.get("notes") or row.get("reason") or "").strip()]
    return {
        "present": True, "splits": splits, "rows": table_rows, "totals": totals, "total_files": len(rows),
        "rejected": rejected[:MAX_LISTED], "rejected_more": max(0, len(rejected) - MAX_LISTED),
        "rejected_by_reason": sorted(rejected_by_reason.items()),
        "duplicates": duplicates[:MAX_LISTED], "duplicates_count": len(duplicates),
        "duplicates_more": max(0, len(duplicates) - MAX_LISTED),
        "conflicts": sum(1 for row in duplicates if "conflict" in (row.get("reason") or "").lower()),
        "near_groups": near[:MAX_LISTED], "near_groups_count": len(near),
        "near_images": sum(group["size"] for group in near),
        "near_across_splits": sum(1 for group in near if len(group["splits"]) > 1),
        "near_more": max(0, len(near) - MAX_LISTED),
        "noted": [{"path": row.get("path", ""), "split": row.get("split", ""),
                   "note": "; ".join(filter(None, [row.get("reason", ""), row.get("notes", "")]))}
                  for row in noted[:MAX_LISTED]],
        "noted_count": len(noted), "noted_more": max(0, len(noted) - MAX_LISTED),
    }


def provenance_section(variants: list[Variant], run: dict[str, Any], layout: settings.Layout) -> dict[str, Any]:
    records = [v.metrics.get("provenance") or {} for v in variants if v.metrics]
    def distinct(name: str) -> list[str]:
        return sorted({str(r[name]) for r in records if r.get(name) is not None})

    libraries: dict[str, set[str]] = defaultdict(set)
    hardware: set[str] = set()
    for record in records:
        for name, version in (record.get("libraries") or {}).items():
            libraries[name].add(str(version))
        if record.get("hardware"):
            hw = record["hardware"]
            gpus = ", ".join(hw.get("gpus") or []) or "none"
            hardware.add(f"{hw.get('cpu', '?')} ({hw.get('cpu_count', '?')} cores), GPU: {gpus}")
    weights: dict[str, list[str]] = defaultdict(list)
    for variant in variants:
        origin = variant.metrics.get("weights")
        if origin:
            weights[str(origin)].append(variant.id)
    seeds = sorted({str(v.metrics.get("seed")) for v in variants if v.metrics.get("seed") is not None})
    profiles = sorted({str(v.metrics.get("profile")) for v in variants if v.metrics.get("profile")})
    data_sha = distinct("data_manifest_sha256")
    if layout.data_manifest.exists():
        current = fileio.sha256_file(layout.data_manifest)
        data_sha = data_sha or [current]
    return {
        "git_commit": distinct("git_commit"), "code_sha256": distinct("code_sha256"),
        "lockfile_sha256": distinct("lockfile_sha256"), "data_manifest_sha256": data_sha,
        "seeds": seeds, "profiles": profiles or ([run["profile"]] if run.get("profile") else []),
        "libraries": {name: sorted(values) for name, values in sorted(libraries.items())},
        "hardware": sorted(hardware), "weights": {origin: ids for origin, ids in sorted(weights.items())},
        "report_git_commit": provenance.git_commit(), "report_lockfile_sha256": provenance.lockfile_hash(),
        "run": {key: run.get(key) for key in ("started", "finished", "seconds", "data_source", "sample", "jobs")
                if run.get(key) is not None},
    }


def checksums_section(final_dir: Path) -> list[dict[str, Any]]:
    """``SHA256SUMS`` of the final model, each line checked against the file; computed if absent."""
    sums = final_dir / "SHA256SUMS"
    entries = []
    if sums.exists():
        for line in sums.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            digest, _, name = line.partition("  ")
            name = name.strip().lstrip("*")
            path = final_dir / name
            actual = fileio.sha256_file(path) if path.is_file() else None
            entries.append({"name": name, "sha256": digest.strip(), "size": path.stat().st_size if actual else None,
                            "check": "ok" if actual == digest.strip() else "missing" if actual is None
                            else "MISMATCH"})
        return entries
    for path in sorted(final_dir.glob("*")) if final_dir.is_dir() else []:
        if path.is_file() and path.suffix in (".tflite", ".txt", ".json", ".md", ".zip"):
            if path.name in (settings.RUN_MANIFEST_NAME, FAILED_NAME):
                continue
            entries.append({"name": path.name, "sha256": fileio.sha256_file(path), "size": path.stat().st_size,
                            "check": "computed (no SHA256SUMS)"})
    return entries


def _chosen_id(selection: dict[str, Any]) -> str | None:
    """The chosen variant's id, as ``select.choose`` records it."""
    chosen = selection.get("chosen")
    return chosen.get("id") if isinstance(chosen, dict) else None


def _selection_results(selection: dict[str, Any], chosen: str | None) -> list[dict[str, str]]:
    """Every result the rule looked at, with its verdict (selection.json ``results``, when present)."""
    rows = []
    for row in selection.get("results") or []:
        if not isinstance(row, dict) or "id" not in row:
            continue
        if row["id"] == chosen:
            verdict = "chosen"
        elif row.get("eligible"):
            verdict = "eligible, not the smallest"
        else:
            verdict = str(row.get("excluded") or row.get("status") or "")
        rows.append({"id": str(row["id"]), "stage": str(row.get("stage") or ""),
                     "accuracy": fmt_pct(row.get("accuracy")), "gzip": fmt_bytes(row.get("gzip_bytes")),
                     "latency": fmt_ms(row.get("latency_ms")), "verdict": verdict, "chosen": row["id"] == chosen})
    return rows


def summary_section(layout: settings.Layout, by_id: dict[str, Variant]) -> dict[str, Any]:
    final_dir = layout.variant_dir("final", "final")
    final = by_id.get("final")
    ok = (final.status in ("done", "cached")) if final is not None else \
        (final_dir / settings.RUN_MANIFEST_NAME).exists()
    selection = _read_json(final_dir / "selection.json") if ok else {}
    card = _read_json(final_dir / "model_card.json") if ok else {}
    chosen = _chosen_id(selection)
    rule = selection.get("rule")
    fallback = (selection.get("fallback") or {}).get("reason")
    reason = f"the rule fell back to every usable TFLite result: {fallback}" if fallback else None
    hidden = {"rule", "chosen", "results", "config", "models_dir"}
    details = [(key, describe(value)) for key, value in selection.items() if key not in hidden]
    metrics = final.metrics if final is not None and final.metrics else _read_json(final_dir / "metrics.json")
    if not metrics.get("test") and chosen in by_id:
        metrics = by_id[chosen].metrics
    numbers = None
    if metrics.get("test"):
        view = Variant(id=chosen or "final", stage="final", folder=final_dir, status="done", metrics=metrics)
        latency_key, latency = view.latency()
        numbers = {"accuracy": fmt_pct(view.value("accuracy")), "macro_f1": fmt_pct(view.value("macro_f1")),
                   "raw": fmt_bytes(view.value("raw_bytes")), "gzip": fmt_bytes(view.value("gzip_bytes")),
                   "latency": fmt_ms(latency), "latency_key": latency_key or "",
                   "params": fmt_count(view.value("params")), "macs": fmt_count(view.value("macs")),
                   "n": (metrics.get("test") or {}).get("n"), "precision": metrics.get("precision"),
                   "weights": metrics.get("weights"), "image_size": metrics.get("image_size")}
    elif isinstance(selection.get("chosen"), dict):  # only the selection record: its own numbers
        picked = selection["chosen"]
        numbers = {"accuracy": fmt_pct(picked.get("accuracy")), "macro_f1": fmt_pct(picked.get("macro_f1")),
                   "raw": fmt_bytes(picked.get("raw_bytes")), "gzip": fmt_bytes(picked.get("gzip_bytes")),
                   "latency": fmt_ms(picked.get("latency_ms")), "latency_key": "",
                   "params": "–", "macs": "–", "n": picked.get("test_n"), "precision": picked.get("precision"),
                   "weights": picked.get("weights"), "image_size": None}
    card_items = [(key, describe(value)) for key, value in card.items()
                  if key not in ("provenance", "metrics", "test", "per_class", "selection")]
    return {"present": bool(selection or card or metrics), "chosen": chosen,
            "rule": describe(rule) if rule is not None else None, "reason": reason, "details": details,
            "numbers": numbers, "card": card_items, "status": final.status if final else None,
            "results": _selection_results(selection, chosen),
            "failure": (final.failure.get("error") if final and final.failure else None)}


# --- build ------------------------------------------------------------------------------------------

def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(settings.TEMPLATES_DIR)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(root: str | Path, *, use_cache: bool = True, log=print) -> tuple[str, Path]:
    layout = settings.Layout(Path(root).resolve())
    report_dir = layout.report
    run = _read_json(layout.logs / RUN_RECORD)
    variants = discover(layout, run)
    by_id = {v.id: v for v in variants}
    notebooks_dir = report_dir / "notebooks"
    if notebooks_dir.exists():
        shutil.rmtree(notebooks_dir)
    for variant in variants:
        rendered = variant.folder / f"{variant.id}.html"
        if rendered.is_file():
            target = notebooks_dir / f"{variant.id}.html"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(rendered, target)
            variant.notebook = f"notebooks/{variant.id}.html"

    start = time.perf_counter()
    groups = {"baseline": [], "pruned": [], "quantized": [], "hybrid": []}
    for variant in variants:
        if variant.group in groups:
            groups[variant.group].append(variant)
    tables = [
        ("baselines", "Baselines", "Each architecture trained with the profile's recipe (Keras model).",
         table(groups["baseline"], by_id)),
        ("pruning", "Pruning", "Pruned from a baseline and fine-tuned; Δ is against that baseline.",
         table(groups["pruned"], by_id)),
        ("quantization", "Quantization", "TFLite files converted from a baseline; Δ is against the Keras model.",
         table(groups["quantized"], by_id)),
        ("hybrid", "Hybrid: pruning + quantization",
         "TFLite files converted from a pruned model; Δ is against that pruned model.",
         table(groups["hybrid"], by_id)),
    ]
    summary = summary_section(layout, by_id)
    scored = [v for v in variants if v.test]
    cache = FigureCache(layout.cache / "report-figures" if use_cache else None)
    confusions = [(v.id, fig) for v in scored
                  if (fig := cache.get("confusion", [v.id, v.test.get("confusion_matrix"), v.test.get("accuracy"),
                                                     v.metrics.get("classes")], lambda v=v: confusion_figure(v)))]
    curves = [(v.id, fig) for v in variants
              if v.history and (fig := cache.get("history", [v.id, v.history], lambda v=v: history_figure(v)))]
    final_choice = summary["chosen"]
    size_chart, size_front = pareto_figure(scored, "gzip_bytes", "gzipped file size (bytes, log scale)", final_choice)
    latency_chart, latency_front = pareto_figure(scored, "latency_ms", "single-image latency (ms, log scale)",
                                                 final_choice)
    log(f"report: {len(confusions) + len(curves) + 2} figures ({cache.hits} from the cache) in "
        f"{time.perf_counter() - start:.1f}s")
    failures = []
    for variant in variants:
        if variant.status == "failed":
            failure = variant.failure
            log_path = failure.get("log") or ""
            failures.append({"id": variant.id, "stage": variant.stage, "error": failure.get("error", ""),
                             "traceback": "\n".join(failure.get("traceback") or []),
                             "log": _relative(log_path, layout.root), "notebook": variant.notebook})
    skipped = [{"id": v.id, "stage": v.stage, "reason": v.reason} for v in variants
               if v.status in ("skipped", "missing")]
    counts = Counter(v.status for v in variants)
    context = {
        "title": "TrashNet: small MobileNets, pruned and quantized",
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "profile": run.get("profile") or ", ".join(sorted({str(v.metrics.get("profile")) for v in variants
                                                           if v.metrics.get("profile")})) or "unknown",
        "data_source": run.get("data_source"), "sample": run.get("sample"),
        "counts": dict(counts), "total": len(variants),
        "summary": summary, "tables": tables,
        "confusions": confusions, "curves": curves,
        "pareto": {"size": size_chart, "size_front": size_front, "latency": latency_chart,
                   "latency_front": latency_front},
        "data": data_section(read_data_manifest(layout.data_manifest)),
        "provenance": provenance_section(variants, run, layout),
        "notebooks": [{"id": v.id, "stage": v.stage, "status": v.status, "link": v.notebook,
                       "seconds": _seconds(v.manifest.get("seconds") or v.failure.get("seconds"))}
                      for v in variants],
        "checksums": checksums_section(layout.variant_dir("final", "final")),
        "failures": failures, "skipped": skipped,
        "css": (settings.TEMPLATES_DIR / "report.css").read_text(encoding="utf-8"),
    }
    html = _environment().get_template("report.html.j2").render(**context)
    return html, report_dir


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    minutes, seconds = divmod(int(round(value)), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def _relative(path: str, root: Path) -> str:
    if not path:
        return ""
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return path


def build(root: str | Path, *, pdf: bool = True, use_cache: bool = True, log=print) -> Path:
    """Write ``<root>/report/index.html`` (and ``report.pdf``); returns the HTML path."""
    start = time.perf_counter()
    html, report_dir = render_html(root, use_cache=use_cache, log=log)
    target = fileio.atomic_write_text(report_dir / REPORT_HTML, html)
    if pdf:
        import logging

        import weasyprint

        logging.getLogger("weasyprint").setLevel(logging.ERROR)
        logging.getLogger("fontTools").setLevel(logging.ERROR)
        document = weasyprint.HTML(string=html, base_url=str(report_dir)).render()
        fileio.atomic_write_bytes(report_dir / REPORT_PDF, document.write_pdf())
        log(f"report: {report_dir / REPORT_PDF} ({len(document.pages)} pages)")
    log(f"report: built in {time.perf_counter() - start:.1f}s")
    return target


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="output root holding models/, dataset/, logs/ "
                        "(default: $TRASHNET_OUT, else the repository)")
    parser.add_argument("--no-pdf", action="store_true", help="only report/index.html")


def command(args: argparse.Namespace) -> int:
    root = args.out.expanduser().resolve() if args.out else settings.default_output_root()
    if not (root / "models").is_dir() and not (root / "logs" / RUN_RECORD).exists():
        print(f"error: {root} has no models/ or logs/{RUN_RECORD}: run ./run_all.sh first", flush=True)
        return 2
    path = build(root, pdf=not args.no_pdf)
    print(path)
    return 0


__all__ = ["build", "render_html", "pareto_front", "discover"]
