"""The one figures module: every figure draws from plain data and renders; the Pareto figure's front is
the selection record's front, ties included."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from results_tree import standard_tree
from trashnet.report import figures
from trashnet.stages import select
from trashnet.core.config import SelectConfig

CLASSES = ["cardboard", "glass", "metal"]


def _png_size(data: bytes) -> tuple[int, int]:
    import io

    return Image.open(io.BytesIO(data)).size


def test_the_pareto_figure_draws_the_recorded_front_with_ties(tmp_path):
    # Two results with the same accuracy and size: neither beats the other, both are on the front.
    selection = select.select(standard_tree(tmp_path), SelectConfig())
    rows = [r for r in selection.results if r.status == "ok"]
    points = [(r.id, "quantized", r.gzip_bytes, r.accuracy) for r in rows if r.gzip_bytes]
    on_front = next(p for p in points if p[0] == selection.pareto.size[0])
    points.append(("twin", "quantized", on_front[2], on_front[3]))
    figure = figures.pareto(points, xlabel="gzip bytes", chosen=selection.chosen.id)
    step = [line for line in figure.axes[0].lines if line.get_label() == figures.TEXT["front"]][0]
    front = select.pareto_front((pid, acc, cost) for pid, _, cost, acc in points)
    assert "twin" in front and on_front[0] in front
    assert [pid for pid in front if pid != "twin"] == selection.pareto.size
    assert list(step.get_xdata()) == [dict((p[0], p[2]) for p in points)[pid] for pid in front]
    both = figures.pareto_selection(selection)
    assert len(both.axes) == 2
    assert _png_size(figures.render(both)) == (1280, 420)


def test_every_figure_renders_png_svg_and_pdf(tmp_path):
    image = tmp_path / "a.jpg"
    Image.new("RGB", (40, 30), "red").save(image)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    drawn = [
        figures.confusion(CLASSES, [[5, 1, 0], [0, 4, 2], [1, 0, 3]], title="m"),
        figures.history([{"epoch": "1", "phase": "head", "loss": "2.0", "val_loss": "2.1", "accuracy": "0.3",
                          "val_accuracy": "0.2"},
                         {"epoch": "2", "phase": "finetune", "loss": "1.0", "val_loss": "", "accuracy": "0.6",
                          "val_accuracy": "0.5"}]),
        figures.sparsity_per_layer({"conv": {"sparsity": 0.5, "pruned": True},
                                    "stem": {"sparsity": 0.0, "pruned": False}}),
        figures.per_class_f1({"a": {"cardboard": 0.9, "glass": 0.5}, "b": {"cardboard": 0.8, "metal": 0.7}},
                             CLASSES),
        figures.example_grid({"cardboard": [image, image], "glass": [image]}),
        figures.misclassified_gallery([(image, "glass", "metal", 0.61), (tmp_path / "broken.jpg", "a", "b", 0.5)]),
    ]
    for figure in drawn:
        assert figures.render(figure, "png").startswith(b"\x89PNG")
        ET.fromstring(figures.render(figure, "svg"))  # well-formed SVG
        assert figures.render(figure, "pdf").startswith(b"%PDF")
    width, _ = _png_size(figures.render(drawn[0], "png", dpi=300))
    assert width == 3 * _png_size(figures.render(drawn[0], "png"))[0]
    # The same data gives the same bytes (no timestamps): exports do not change when nothing changed.
    assert figures.render(drawn[0], "svg") == figures.render(drawn[0], "svg")


def test_figures_need_no_pyplot_backend(monkeypatch):
    # The pipeline runs notebooks with MPLBACKEND=Agg; the figures never touch pyplot, so the notebook's
    # PNG output appears whatever the backend.
    pytest.importorskip("IPython")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    output = figures.show(figures.confusion(CLASSES, [[1, 0, 0], [0, 1, 0], [0, 0, 1]]))
    assert output.data.startswith(b"\x89PNG")
