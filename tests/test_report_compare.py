"""``report --compare-with``: the baselines of two runs from different starting weights, per architecture
(issue 27), and ``--seeds-from`` refusing a seeds run of another recipe."""

from __future__ import annotations

import csv
import io

import pytest

import results_tree
from test_reliability import one_error_line, trashnet
from trashnet.core import records, settings
from trashnet.core.errors import UsageError
from trashnet.report import chapter as chapter_module
from trashnet.report import compare, exports, i18n, render
from trashnet.report.items import Chapter

# The committed from-scratch runs (issue 27: the reference an ImageNet run is compared with).
SCRATCH = settings.RESULTS_DIR / "cpu-scratch"
SCRATCH_SEEDS = settings.RESULTS_DIR / "cpu-scratch-seeds"
IMAGENET = "imagenet-tflite:mobilenet_v3_large_minimalistic.tflite@sha256:0123456789abcdef (dequantized from uint8)"

needs_results = pytest.mark.skipif(not (SCRATCH / "logs" / settings.RUN_RECORD).is_file()
                                   or not (SCRATCH_SEEDS / "logs" / settings.RUN_RECORD).is_file(),
                                   reason="the committed from-scratch results are not in this checkout")


def _accuracy(folder, name: str) -> float:
    record = records.read_metrics(folder)
    return record.test.accuracy if name == "accuracy" else record.ood.accuracy


def imagenet_tree(root):
    """A hand-made output root of the ImageNet cpu profile's baselines: its ``mobilenet_v3_large`` is the
    minimalistic net, ``mobilenet_v3_large_full`` the full one (``arch`` mobilenet_v3_large), 320 px inputs."""
    layout = settings.Layout(root, "cpu")
    models = layout.models
    for variant, arch, accuracy in (("mobilenet_v3_large", "mobilenet_v3_large_minimalistic", 0.9209),
                                    ("mobilenet_v3_large_full", "mobilenet_v3_large", 0.9047),
                                    ("mobilenet_v3_small", "mobilenet_v3_small", 0.8791)):
        results_tree.write_result(models, "train", variant, arch=arch, accuracy=accuracy, gzip_bytes=1_000_000,
                                  weights=IMAGENET, profile="cpu", image_size=320)
    return layout


@needs_results
def test_baselines_are_matched_by_architecture_and_show_both_variant_ids(tmp_path):
    data = compare.report_data(imagenet_tree(tmp_path / "out"), compare_with=settings.Layout.reference(SCRATCH))
    comparison = data.comparison
    assert {r.arch: (r.this.id, r.other.id) for r in comparison.rows} == {
        "mobilenet_v3_large": ("mobilenet_v3_large_full", "mobilenet_v3_large"),  # the minimalistic net has no match
        "mobilenet_v3_small": ("mobilenet_v3_small", "mobilenet_v3_small")}
    large = comparison.rows[0]
    scratch_large = _accuracy(SCRATCH / "models" / "baseline" / "mobilenet_v3_large", "accuracy")
    assert large.other.accuracy == scratch_large and large.diff_pp == pytest.approx(100 * (0.9047 - scratch_large))
    assert (large.this.weights, large.other.weights) == ("imagenet-tflite", "none")
    assert (comparison.this_weights, comparison.other_weights, comparison.other) == \
        ("from ImageNet", "from scratch", "cpu-scratch")
    assert not comparison.has_ood  # the hand-made run has no OOD block: no OOD columns, no OOD panel
    chapter = chapter_module.build(data)
    table = chapter.tables[compare.TABLE_KEY]
    assert [c.key for c in table.columns][-1] == "delta"
    views = {lang: render.table_view(table, lang, fold=False) for lang in i18n.LANGUAGES}
    assert [c["text"] for c in views["en"]["rows"][0]["cells"][:5]] == [
        "mobilenet_v3_large", "mobilenet_v3_large_full", "mobilenet_v3_large", "from ImageNet", "from scratch"]
    assert views["id"]["rows"][0]["cells"][3]["text"] == "dari bobot ImageNet"
    assert "Bobot, proses pembanding" in [h["text"] for h in views["id"]["headers"]]
    assert "(from ImageNet) against those of run cpu-scratch (from scratch)" in views["en"]["caption"]
    drawn = render.draw(chapter, "id")[compare.FIGURE_KEY]
    legend = [t.get_text() for t in drawn.legends[0].get_texts()]
    assert legend == ["proses ini (dari bobot ImageNet)", "proses cpu-scratch (dari awal)"]
    assert [a.get_xlabel() for a in drawn.axes] == ["akurasi uji TrashNet (%)"]
    sentence = {"en": "Trained from ImageNet rather than from scratch (run cpu-scratch), the baselines' TrashNet test "
                      "accuracy is on average",
                "id": "Bila dilatih dari bobot ImageNet, bukan dari awal (proses cpu-scratch), akurasi uji TrashNet "
                      "model dasar rata-rata"}
    for lang in i18n.LANGUAGES:
        page = render.html(data, chapter, lang, {key: "" for key in chapter.figures}, notebooks={})
        assert sentence[lang] in " ".join(page.split())


@needs_results
def test_a_real_run_against_cpu_scratch_gives_the_table_the_figure_and_the_sentence_in_both_languages(tmp_path):
    """A real run (the committed from-scratch seeds run) against the committed cpu-scratch run: the chapter's
    comparison exported and on the page in both languages. The other figures are not drawn (the whole report
    takes minutes on two busy cores; ``report --compare-with`` builds it as usual)."""
    other = settings.Layout.reference(SCRATCH)
    data = compare.report_data(settings.Layout.reference(SCRATCH_SEEDS), compare_with=other)
    chapter = chapter_module.build(data)
    table, figure = chapter.tables[compare.TABLE_KEY], chapter.figures[compare.FIGURE_KEY]
    curves = [int(f.number.split(".")[1]) for f in chapter.figures_with("history-")]
    assert int(figure.number.split(".")[1]) == max(curves) + 1  # the page shows it right after the curves
    only = Chapter(tables={table.key: table}, figures={figure.key: figure})  # keeps their numbers
    for lang in i18n.LANGUAGES:
        gettext = i18n.translations(lang).gettext
        drawn = render.draw(only, lang)
        exported = exports.write(only, drawn, lang, tmp_path / lang)
        stem = exports.file_stem(gettext("Table") + " " + table.number)
        rows = list(csv.reader(io.StringIO((tmp_path / lang / f"{stem}.csv").read_text(encoding="utf-8"))))
        assert rows[0][0] == gettext("Architecture") and len(rows[0]) == 11  # both runs have an OOD block
        for row in rows[1:]:  # every number is the result files' own
            this = SCRATCH_SEEDS / "models" / "baseline" / row[1]
            theirs = SCRATCH / "models" / "baseline" / row[2]
            assert records.read_metrics(this).arch == records.read_metrics(theirs).arch == row[0]
            assert float(row[5]) == round(100 * _accuracy(this, "accuracy"), 2)
            assert float(row[6]) == round(100 * _accuracy(theirs, "accuracy"), 2)
            assert float(row[9]) == round(100 * _accuracy(theirs, "ood"), 2)
            assert row[3] == row[4] == gettext("from scratch")
        assert {row[0] for row in rows[1:]} == {"mobilenet_v3_large", "mobilenet_v3_small"}
        figure_stem = exports.file_stem(gettext("Figure") + " " + figure.number)
        assert {p.name for p in exported} >= {f"{stem}.tex", f"{stem}.docx", f"{figure_stem}.png", f"{figure_stem}.svg"}
        assert [a.get_xlabel() for a in drawn[figure.key].axes] == [
            gettext("TrashNet test accuracy (%)"), gettext("out-of-distribution accuracy (%)")]
        uris = {key: "" for key in chapter.figures} | {figure.key: "data:image/png;base64,"}
        page = render.html(data, chapter, lang, uris, notebooks={})
        assert 'id="tab-compare"' in page and 'id="fig-compare-accuracy"' in page
        sentence = {"en": "Against run cpu-scratch, whose baselines started from the same weights",
                    "id": "Dibandingkan dengan proses cpu-scratch, yang model dasarnya berangkat dari bobot awal"}
        assert sentence[lang] in page


@needs_results
def test_seeds_from_a_run_of_another_recipe_is_refused(tmp_path):
    layout = imagenet_tree(tmp_path / "out")
    with pytest.raises(UsageError, match="cpu-scratch-seeds.*weights none at 128 px.*weights imagenet-tflite at 320"):
        compare.report_data(layout, seeds_from=settings.Layout.reference(SCRATCH_SEEDS))
    line = one_error_line(trashnet("report", "--out", str(layout.root), "--profile", "cpu", "--seeds-from",
                                   str(SCRATCH_SEEDS), "--no-pdf", "--no-exports"))
    assert str(SCRATCH_SEEDS) in line and str(layout.root) in line
    assert not layout.report.exists()
    # The same recipe passes: the from-scratch seeds run under the from-scratch run.
    variants = compare.read_baselines(settings.Layout.reference(SCRATCH))
    compare.check_seeds(variants, SCRATCH, settings.Layout.reference(SCRATCH_SEEDS))


@needs_results
def test_compare_with_a_bad_folder_is_one_line(tmp_path):
    layout = imagenet_tree(tmp_path / "out")
    missing = one_error_line(trashnet("report", "--out", str(layout.root), "--profile", "cpu", "--compare-with",
                                      str(tmp_path / "nope"), "--no-pdf", "--no-exports"))
    assert "--compare-with" in missing and "nope" in missing
    (tmp_path / "empty").mkdir()
    assert "no run" in one_error_line(trashnet("report", "--out", str(layout.root), "--profile", "cpu",
                                               "--compare-with", str(tmp_path / "empty"), "--no-pdf", "--no-exports"))
    other = tmp_path / "other"  # a run, but of architectures this one did not train
    results_tree.write_result(other / "models", "train", "mobilenet_v1", arch="mobilenet_v1", accuracy=0.7,
                              gzip_bytes=1_000_000)
    with pytest.raises(UsageError, match="mobilenet_v1.*is in this run"):
        compare.report_data(layout, compare_with=settings.Layout.reference(other))
    assert not layout.report.exists()
