"""What a stage notebook displays: small tables and figures built from result records and files.

Each function returns an object the notebook shows as its cell output (Markdown, or a PNG image), so
the notebooks stay free of plotting code. Only matplotlib's object API is used (no pyplot state).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Sequence

from trashnet import evaluate


def _markdown(text: str):
    from IPython.display import Markdown

    return Markdown(text)


def _png(figure):
    from IPython.display import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return Image(data=buffer.getvalue(), format="png")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_markdown(record: dict[str, Any]) -> str:
    """The headline numbers of one ``metrics.json`` record, then per-class precision/recall/F1."""
    rows: list[tuple[str, Any]] = [("variant", record["variant"]), ("weights", record.get("weights", "")),
                                   ("image size", record.get("image_size", ""))]
    test = record.get("test")
    if test:
        rows += [("test accuracy", f"{test['accuracy']:.4f} ({test['n']} images)"),
                 ("test macro-F1", f"{test['macro_f1']:.4f}")]
    if "validation" in record:
        rows.append(("validation accuracy", f"{record['validation']['accuracy']:.4f}"))
    if "params" in record:
        rows.append(("parameters", f"{record['params']:,}"))
    if "macs" in record:
        rows.append(("MACs", f"{record['macs'] / 1e6:.1f} M"))
    if "size" in record:
        size = record["size"]
        rows.append(("file size", f"{size['raw_bytes'] / 1e6:.2f} MB raw, {size['gzip_bytes'] / 1e6:.2f} MB gzipped"))
    for name, value in record.get("latency_ms", {}).items():
        rows.append((f"latency {name}", f"{value['median']:.2f} ms median of {value['runs']}"))
    if "train_time_s" in record:
        rows.append(("training time", f"{record['train_time_s']:.0f} s"))
    text = _table(("", "value"), rows)
    if test:
        per_class = [(name, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"])
                     for name, v in test["per_class"].items()]
        text += "\n\n" + _table(("class", "precision", "recall", "F1", "images"), per_class)
    return text


def summary(record: dict[str, Any]):
    return _markdown(summary_markdown(record))


def read_history(output_dir: str | os.PathLike) -> list[dict[str, str]]:
    with open(Path(output_dir) / evaluate.HISTORY_FILE, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def history_figure(rows: Sequence[dict[str, str]]):
    """Loss and accuracy per epoch, training vs validation, one colour per phase boundary."""
    from matplotlib.figure import Figure

    def series(key):
        return [float(row[key]) if row.get(key) not in (None, "") else float("nan") for row in rows]

    epochs = [int(row["epoch"]) for row in rows]
    figure = Figure(figsize=(10, 3.5))
    for axis, key, title in zip(figure.subplots(1, 2), ("loss", "accuracy"), ("loss", "accuracy")):
        axis.plot(epochs, series(key), label="train (augmented)")
        axis.plot(epochs, series(f"val_{key}"), label="validation")
        phases = [row["phase"] for row in rows]
        for i in range(1, len(phases)):
            if phases[i] != phases[i - 1]:
                axis.axvline(epochs[i] - 0.5, color="grey", linestyle=":")
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    figure.axes[0].legend()
    return figure


def history_plot(output_dir: str | os.PathLike):
    return _png(history_figure(read_history(output_dir)))


def confusion_figure(record: dict[str, Any]):
    """Row-normalised test confusion matrix, with counts in the cells."""
    from matplotlib.figure import Figure

    classes = record["classes"]
    counts = record["test"]["confusion_matrix"]
    normalized = record["test"]["confusion_matrix_normalized"]
    figure = Figure(figsize=(5.5, 4.5))
    axis = figure.subplots()
    image = axis.imshow(normalized, vmin=0, vmax=1, cmap="Blues")
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            axis.text(j, i, str(count), ha="center", va="center",
                      color="white" if normalized[i][j] > 0.5 else "black")
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{record['variant']}: test, row-normalised")
    figure.colorbar(image, ax=axis)
    return figure


def confusion_plot(record: dict[str, Any]):
    return _png(confusion_figure(record))
