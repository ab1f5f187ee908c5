"""``report --probe-from``: each ImageNet baseline beside the linear probe of its own frozen features (issue 27:
"every ImageNet baseline above its linear probe"), matched by variant id, architecture and weights file."""

from __future__ import annotations

import json

import pytest

import results_tree
from test_reliability import one_error_line, trashnet
from trashnet.core import records, settings
from trashnet.core.errors import UsageError
from trashnet.report import chapter as chapter_module
from trashnet.report import compare, i18n, probe, render

CPU = settings.RESULTS_DIR / "cpu"
PROBE = settings.REPO_ROOT / "benchmarks" / "results" / "linear_probe.json"
IMAGENET = "imagenet-tflite:v3-large-minimalistic_224_1.0_uint8.tflite@sha256:0123456789abcdef (dequantized from uint8)"


def _ood(accuracy: float) -> dict:
    return {"ood": {"dataset": "ood-dev", "n": 100, "accuracy": accuracy, "macro_f1": accuracy}}


def _tree(root):
    """Three ImageNet baselines at 320 px (160 px after the input pooling) and one from scratch."""
    layout = settings.Layout(root, "cpu")
    for variant, arch, accuracy, ood, weights in (
            ("mobilenet_v3_large", "mobilenet_v3_large_minimalistic", 0.92, 0.34, IMAGENET),
            ("mobilenet_v3_large_full", "mobilenet_v3_large", 0.90, 0.34, IMAGENET),
            ("mobilenet_v3_small", "mobilenet_v3_small", 0.88, 0.30, IMAGENET),
            ("mobilenet_v1", "mobilenet_v1", 0.70, 0.16, "none")):
        results_tree.write_result(layout.models, "train", variant, arch=arch, accuracy=accuracy, weights=weights,
                                  profile="cpu", image_size=320, extra=_ood(ood))
    return layout


def _row(variant: str, arch: str, px: int, size: int, test: float, ood: float, weights: str = IMAGENET) -> dict:
    return {"variant": variant, "arch": arch, "weights": weights, "input_px": px, "image_size": size,
            "scores": {"test": {"accuracy": test}, "ood": {"accuracy": ood}}}


def _probe_file(path, rows: list[dict]):
    path.write_text(json.dumps({"rows": {f"{r['variant']}@{r['input_px']}px": r for r in rows}}))
    return path


def test_baselines_are_matched_by_id_and_architecture_and_counted_against_their_probe(tmp_path):
    layout = _tree(tmp_path / "out")
    source = _probe_file(tmp_path / "linear_probe.json", [
        _row("mobilenet_v3_large", "mobilenet_v3_large_minimalistic", 224, 224, 0.84, 0.45),
        _row("mobilenet_v3_large", "mobilenet_v3_large_minimalistic", 320, 160, 0.83, 0.33),
        # Same id, another network: a probe of another profile's mobilenet_v3_large, not this run's.
        _row("mobilenet_v3_large_full", "mobilenet_v3_large_minimalistic", 224, 224, 0.99, 0.99),
        _row("mobilenet_v3_small", "mobilenet_v3_small", 224, 224, 0.84, 0.29),
        # Same id and network, other weights: not the floor of this model.
        _row("mobilenet_v3_small", "mobilenet_v3_small", 320, 160, 0.99, 0.99, weights=IMAGENET.replace("0123", "9999")),
        _row("mobilenet_v1", "mobilenet_v1", 224, 224, 0.88, 0.40)])  # its baseline is from scratch: no line
    data = compare.report_data(layout, probe_from=source)
    lines = {line.id: line for line in data.probe.lines}
    assert sorted(lines) == ["mobilenet_v3_large", "mobilenet_v3_small"]
    large = lines["mobilenet_v3_large"]
    assert (large.own.test.accuracy, large.at_input.ood.accuracy, large.input_size) == (0.84, 0.33, 160)
    assert lines["mobilenet_v3_small"].at_input is None
    assert data.probe.count("own", "test") == 2 and data.probe.count("own", "ood") == 1  # V3-Small 0.30 > 0.29
    assert data.probe.count("at_input", "ood") == 1 and data.probe.input_sizes == [160]
    assert data.probe.input_costs_ood  # 0.33 at 160 px against a mean of 0.37 at 224 px
    table = chapter_module.build(data).tables[probe.TABLE_KEY]
    assert table.rows[0] == ["mobilenet_v3_large", 0.92, 0.84, 0.34, 0.45, 0.83, 0.33]
    assert table.rows[1] == ["mobilenet_v3_small", 0.88, 0.84, 0.30, 0.29, None, None]


def test_a_probe_file_that_matches_nothing_or_is_not_one_is_a_one_line_error(tmp_path):
    layout = _tree(tmp_path / "out")
    other = _probe_file(tmp_path / "other.json", [_row("mobilenet_v2", "mobilenet_v2", 224, 224, 0.8, 0.4)])
    with pytest.raises(UsageError, match="none of its rows is of a baseline of this run"):
        compare.report_data(layout, probe_from=other)
    (tmp_path / "broken.json").write_text('{"rows": {"a": {"variant": "x"}}}')
    for path, words in ((tmp_path / "nope.json", "is not a file"), (tmp_path / "broken.json", "not a linear-probe")):
        line = one_error_line(trashnet("report", "--out", str(layout.root), "--profile", "cpu", "--probe-from",
                                       str(path), "--no-pdf", "--no-exports"))
        assert "--probe-from" in line and words in line
    assert not layout.report.exists()


@pytest.mark.skipif(not (CPU / "logs" / settings.RUN_RECORD).is_file() or not PROBE.is_file(),
                    reason="the committed thesis run or the probe result is not in this checkout")
def test_the_committed_probe_beside_the_thesis_run_in_both_languages():
    """The real probe (benchmarks/bench_linear_probe.py) against the committed ImageNet run: every number in
    the table is a result file's own, and the sentence's counts are those of the table."""
    data = compare.report_data(settings.Layout.reference(CPU), probe_from=PROBE)
    chapter = chapter_module.build(data)
    table = chapter.tables[probe.TABLE_KEY]
    rows = json.loads(PROBE.read_text())["rows"]
    assert len(table.rows) == 5  # every ImageNet baseline of the cpu profile has its probe
    for row in table.rows:
        own, at_input = rows[f"{row[0]}@224px"]["scores"], rows[f"{row[0]}@320px"]["scores"]
        metrics = records.read_metrics(CPU / "models" / "train" / row[0])
        assert row[1:] == [metrics.test.accuracy, own["test"]["accuracy"], metrics.ood.accuracy,
                           own["ood"]["accuracy"], at_input["test"]["accuracy"], at_input["ood"]["accuracy"]]
    above_test = sum(r[1] > r[2] for r in table.rows)
    above_ood = sum(r[3] > r[4] for r in table.rows)
    uris = {key: "" for key in chapter.figures}
    for lang in i18n.LANGUAGES:
        fmt = i18n.Formatter(lang)
        page = render.html(data, chapter, lang, uris, notebooks={})
        assert 'id="tab-probe"' in page
        sentence = {"en": f"{fmt.count(above_test)} of the {fmt.count(5)} baselines are more accurate than their "
                          f"probe on the TrashNet test split, and {fmt.count(above_ood)} on the out-of-distribution",
                    "id": f"{fmt.count(above_test)} dari {fmt.count(5)} model dasar lebih akurat daripada probe-nya "
                          f"pada data uji TrashNet, dan {fmt.count(above_ood)} pada foto di luar distribusi"}
        assert sentence[lang] in page
