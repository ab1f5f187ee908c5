"""What a stage notebook displays: small tables and figures built from result records and files.

Each function returns an object the notebook shows as its cell output (Markdown, or a PNG image), so
the notebooks stay free of plotting code. Only matplotlib's object API is used (no pyplot state).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Sequence

from trashnet.nets import scoring
from trashnet.report import figures


def _markdown(text: str):
    from IPython.display import Markdown

    return Markdown(text)


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
    with open(Path(output_dir) / scoring.HISTORY_FILE, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def history_table(output_dir: str | os.PathLike, rows: int = 8):
    """The training history in a few rows: the first and last epochs, the best validation epoch, the epoch
    where a phase begins, and evenly spaced ones between (instead of one printed line per epoch)."""
    history = read_history(output_dir)
    if not history:
        return _markdown("(no history.csv)")

    def number(row, key):
        try:
            return float(row.get(key) or "nan")
        except ValueError:
            return float("nan")

    best = max(range(len(history)), key=lambda i: (number(history[i], "val_accuracy") == number(
        history[i], "val_accuracy"), number(history[i], "val_accuracy")))
    keep = {0, len(history) - 1, best}
    keep |= {i for i in range(1, len(history)) if history[i].get("phase") != history[i - 1].get("phase")}
    step = max(1, len(history) // max(1, rows - len(keep)))
    keep |= set(range(0, len(history), step))
    columns = [key for key in ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1",
                               "learning_rate", "seconds") if key in history[0]]
    table = []
    for i in sorted(keep):
        cells = [history[i].get(key, "") for key in columns]
        cells = [f"{float(c):.4g}" if key not in ("epoch", "phase") and c not in ("", None) else c
                 for key, c in zip(columns, cells)]
        table.append([*cells, "best validation" if i == best else ""])
    return _markdown(f"{len(history)} epochs; {len(keep)} shown.\n\n" + _table([*columns, ""], table))


def history_plot(output_dir: str | os.PathLike):
    return figures.show(figures.history(read_history(output_dir)))


def confusion_plot(record: dict[str, Any]):
    """Row-normalised test confusion matrix, with counts in the cells."""
    return figures.show(figures.confusion(record["classes"], record["test"]["confusion_matrix"],
                                          title=f"{record['variant']}: test"))
