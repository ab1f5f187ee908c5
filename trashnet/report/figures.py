"""Every figure of the project, drawn once: the stage notebooks and the report both call these.

Each function takes plain data (lists, dicts, typed records) and returns a matplotlib ``Figure`` built with
the object API (no pyplot state, so no GUI backend is ever needed: pipeline runs set ``MPLBACKEND=Agg``).
``show`` turns a figure into a PNG the notebook displays as its cell output, which works under any backend;
``png``/``svg``/``pdf`` give the bytes the report inlines and exports. Labels come in through ``text`` so
the report can draw them in Indonesian or English.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from trashnet.core import records, settings
from trashnet.core.pareto import pareto_front

STAGE_GROUPS = {"train": "baseline", "prune": "pruned", "quantize": "quantized"}  # stage -> model family
GROUP_COLOURS = {"baseline": "#1f77b4", "pruned": "#ff7f0e", "quantized": "#2ca02c", "hybrid": "#d62728",
                 "final": "#9467bd"}
GROUP_MARKERS = {"baseline": "s", "pruned": "^", "quantized": "o", "hybrid": "D", "final": "*"}
# Default (English) labels; the report passes translated ones.
TEXT = {"predicted": "predicted", "true": "true", "epoch": "epoch", "loss": "loss", "accuracy": "accuracy",
        "train": "train", "validation": "validation", "test_accuracy": "test accuracy (%)",
        "front": "Pareto front", "chosen": "final model", "sparsity": "sparsity (share of zero weights)",
        "f1": "F1", "not_pruned": "not pruned", "baseline": "baseline", "pruned": "pruned",
        "quantized": "quantized", "hybrid": "hybrid", "final": "final"}
FRONT_LABELS = 4  # a front of more points is not labelled point by point (the labels would overlap)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    figure.set_layout_engine("constrained")
    return figure


def _label(text: Mapping[str, str] | None, key: str) -> str:
    # "is None", not "or": the report's translated labels are an empty dict that answers any key.
    return (text if text is not None else {}).get(key, TEXT[key])


# --- output -------------------------------------------------------------------------------------------

def render(figure, fmt: str = "png", *, dpi: int = 100) -> bytes:
    """The figure as ``png``, ``svg`` or ``pdf`` bytes (fixed metadata: same input, same bytes)."""
    if figure.get_layout_engine() is not None:  # lay out once and freeze: each draw would move things a bit
        figure.draw_without_rendering()
        figure.set_layout_engine("none")
    buffer = io.BytesIO()
    metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt, {})
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "trashnet"}):  # stable SVG ids
        figure.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata)
    return buffer.getvalue()


def show(figure):
    """For a notebook cell: the figure as a PNG image output (independent of the matplotlib backend)."""
    from IPython.display import Image

    return Image(data=render(figure, "png"), format="png")


# --- the figures ------------------------------------------------------------------------------------

def confusion(classes: Sequence[str], matrix: Sequence[Sequence[int]], title: str = "",
              text: Mapping[str, str] | None = None, columns: Sequence[str] | None = None):
    """Row-normalised confusion matrix (colour) with the counts in the cells; rows are the true class,
    columns the predicted one (``columns``: when the model predicts other classes than the rows hold)."""
    import numpy as np

    columns = list(columns or classes)
    counts = np.asarray(matrix, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    figure = _figure(3.6, 3.3)
    axis = figure.subplots()
    image = axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for row in range(len(classes)):
        for col in range(len(columns)):
            axis.text(col, row, int(counts[row, col]), ha="center", va="center", fontsize=7,
                      color="white" if share[row, col] > 0.6 else "black")
    axis.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=7)
    axis.set_yticks(range(len(classes)), classes, fontsize=7)
    axis.set_xlabel(_label(text, "predicted"), fontsize=8)
    axis.set_ylabel(_label(text, "true"), fontsize=8)
    if title:
        axis.set_title(title, fontsize=8)
    figure.colorbar(image, ax=axis, shrink=0.8)
    return figure


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    values = []
    for row in rows:
        try:
            values.append(float(row.get(key)))
        except (TypeError, ValueError):
            values.append(math.nan)
    return values


def history(rows: Sequence[Mapping[str, Any]], title: str = "", text: Mapping[str, str] | None = None):
    """Loss and accuracy per epoch (``history.csv`` rows), training against validation; dotted lines mark
    where one training phase hands over to the next."""
    epochs = [int(float(row.get("epoch") or index + 1)) for index, row in enumerate(rows)]
    figure = _figure(6.4, 2.5)
    for axis, metric in zip(figure.subplots(1, 2), ("loss", "accuracy")):
        for prefix, style, name in (("", "-", "train"), ("val_", "--", "validation")):
            values = _series(rows, prefix + metric)
            if any(not math.isnan(v) for v in values):
                axis.plot(epochs, values, style, label=_label(text, name))
        phases = [row.get("phase") for row in rows]
        for i in range(1, len(phases)):
            if phases[i] != phases[i - 1]:
                axis.axvline(epochs[i] - 0.5, color="grey", linestyle=":")
        axis.set_xlabel(_label(text, "epoch"), fontsize=8)
        axis.set_title(_label(text, metric), fontsize=9)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7)
    if title:
        figure.suptitle(title, fontsize=9)
    return figure


def pareto(points: Iterable[tuple[str, str, float, float]], *, xlabel: str, chosen: str | None = None,
           log_x: bool = True, text: Mapping[str, str] | None = None):
    """Test accuracy against a cost: ``points`` are (id, group, cost, accuracy as a fraction).

    The front is ``pareto.pareto_front``, the function the selection rule records in ``selection.json``:
    the figure and the record cannot disagree.
    """
    figure = _figure(6.4, 3.8)
    _pareto_axis(figure.subplots(), list(points), xlabel=xlabel, chosen=chosen, log_x=log_x, text=text)
    return figure


def _pareto_axis(axis, points, *, xlabel: str, chosen: str | None, log_x: bool, text) -> None:
    points = [(pid, group, cost, acc) for pid, group, cost, acc in points
              if cost is not None and acc is not None and cost > 0]
    for group in GROUP_COLOURS:
        mine = [(cost, acc) for _, g, cost, acc in points if g == group]
        if mine:
            axis.scatter([c for c, _ in mine], [100 * a for _, a in mine], s=24, label=_label(text, group),
                         color=GROUP_COLOURS[group], marker=GROUP_MARKERS[group], alpha=0.85)
    by_id = {pid: (cost, acc) for pid, _, cost, acc in points}
    front = pareto_front((pid, acc, cost) for pid, _, cost, acc in points)
    if front:
        axis.step([by_id[p][0] for p in front], [100 * by_id[p][1] for p in front], where="post", color="#444",
                  lw=1, label=_label(text, "front"), zorder=0)
        for pid in front if len(front) <= FRONT_LABELS else []:
            axis.annotate(pid, (by_id[pid][0], 100 * by_id[pid][1]), fontsize=6, xytext=(3, 3),
                          textcoords="offset points")
    if chosen in by_id:
        axis.scatter([by_id[chosen][0]], [100 * by_id[chosen][1]], s=160, facecolors="none", edgecolors="black",
                     linewidths=1.5, label=_label(text, "chosen"))
    if log_x:
        axis.set_xscale("log")
    axis.set_xlabel(xlabel, fontsize=8)
    axis.set_ylabel(_label(text, "test_accuracy"), fontsize=8)
    axis.grid(alpha=0.3, which="both")
    if points:
        axis.legend(fontsize=7, loc="lower right")


def pareto_selection(selection: records.Selection, text: Mapping[str, str] | None = None):
    """Both fronts of a ``selection.json`` record side by side, the choice circled (the final notebook)."""
    rows = [r for r in selection.results if r.status == "ok"]
    figure = _figure(12.8, 4.2)
    for axis, key, label, scale in zip(figure.subplots(1, 2), ("gzip_bytes", "latency_ms"),
                                       ("gzipped size (MB = 10^6 bytes)", "latency, batch 1 (ms)"), (1e-6, 1.0)):
        _pareto_axis(axis, [(r.id, _group(r), getattr(r, key) * scale if getattr(r, key) is not None else None,
                             r.accuracy) for r in rows],
                     xlabel=label, chosen=selection.chosen.id, log_x=True, text=text)
    return figure


def _group(row: records.ResultRow) -> str:
    stage = settings.stage_name(row.stage) or "train"
    if stage == "quantize" and settings.stage_name(row.source_stage) == "prune":
        return "hybrid"
    return STAGE_GROUPS.get(stage, stage)


def largest_layers(layers: Mapping[str, Mapping[str, Any]], limit: int) -> list[str]:
    """The ``limit`` layers holding the most weights, in network order (they decide the file size)."""
    keep = set(sorted(layers, key=lambda n: -int(layers[n].get("weights") or 0))[:limit])
    return [name for name in layers if name in keep]


def sparsity_per_layer(layers: Mapping[str, Mapping[str, Any]], title: str = "",
                       text: Mapping[str, str] | None = None, limit: int | None = None):
    """Share of zero weights in each kernel layer (a pruned ``metrics.json``'s ``sparsity.layers``), in
    network order; layers the method leaves dense are grey. ``limit``: only the layers with the most weights,
    so that the chart fits a page."""
    names = largest_layers(layers, limit) if limit else list(layers)
    values = [float(layers[n].get("sparsity") or 0.0) for n in names]
    colours = [GROUP_COLOURS["pruned"] if layers[n].get("pruned") else "#bbbbbb" for n in names]
    figure = _figure(6.4, max(2.4, 0.12 * len(names) + 0.8))
    axis = figure.subplots()
    axis.barh(range(len(names)), values, color=colours)
    axis.set_yticks(range(len(names)), names, fontsize=max(3, min(7, int(300 / max(len(names), 1)))))
    axis.invert_yaxis()
    axis.set_xlim(0, 1)
    axis.set_xlabel(_label(text, "sparsity"), fontsize=8)
    axis.grid(alpha=0.3, axis="x")
    if title:
        axis.set_title(title, fontsize=9)
    return figure


def per_class_f1(scores: Mapping[str, Mapping[str, float]], classes: Sequence[str],
                 text: Mapping[str, str] | None = None):
    """Grouped bars: per-class F1 of each model (``{model: {class: f1}}``)."""
    figure = _figure(6.4, 2.8)
    axis = figure.subplots()
    models = list(scores)
    width = 0.8 / max(len(models), 1)
    for index, model in enumerate(models):
        axis.bar([c + (index - (len(models) - 1) / 2) * width for c in range(len(classes))],
                 [scores[model].get(name, math.nan) for name in classes], width, label=model)
    axis.set_xticks(range(len(classes)), classes, fontsize=7)
    axis.set_ylim(0, 1)
    axis.set_ylabel(_label(text, "f1"), fontsize=8)
    axis.grid(alpha=0.3, axis="y")
    axis.legend(fontsize=6, ncols=min(3, max(len(models), 1)))
    return figure


def _thumbnail(path: Path, size: int = 96):
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        image.thumbnail((size, size))
        return image.copy()


def image_grid(cells: Sequence[tuple[Path | None, str]], columns: int, *, caption_colour: Callable[[int], str] | None = None):
    """Thumbnails in a grid, each with a caption under it (``(path, caption)``); a file that cannot be read
    is an empty cell with its name, not an error."""
    rows = max(1, math.ceil(len(cells) / columns))
    figure = _figure(1.25 * columns, 1.45 * rows)
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= len(cells):
            continue
        path, caption = cells[index]
        if path is None:  # padding of a short row
            continue
        try:
            axis.imshow(_thumbnail(path))
        except OSError:
            caption = f"{Path(path).name}\n(unreadable)"
        axis.set_title(caption, fontsize=5.5, color=caption_colour(index) if caption_colour else "black")
    return figure


def example_grid(examples: Mapping[str, Sequence[Path]]):
    """A few images of each class: one row per class."""
    columns = max((len(paths) for paths in examples.values()), default=1)
    cells: list[tuple[Path | None, str]] = []
    for name, paths in examples.items():
        cells += [(path, name) for path in paths] + [(None, "")] * (columns - len(paths))
    return image_grid(cells, max(columns, 1))


def misclassified_gallery(rows: Sequence[tuple[Path, str, str, float]], columns: int = 6,
                          text: Mapping[str, str] | None = None):
    """The model's wrong test predictions: thumbnail, ``true -> predicted (confidence)``."""
    cells = [(path, f"{true} → {predicted}\n{100 * confidence:.0f} %") for path, true, predicted, confidence in rows]
    return image_grid(cells, columns, caption_colour=lambda index: "#b00020")
