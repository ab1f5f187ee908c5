"""``report --compare-with``: the baselines of two runs from different starting weights, per architecture
(issue 27), and ``--seeds-from`` refusing a seeds run of another recipe."""

from __future__ import annotations

import csv
import io
import re

import pytest

import report_tree
import results_tree
from test_reliability import one_error_line, trashnet
from trashnet.core import config, profiles, records, settings
from trashnet.core.errors import UsageError
from trashnet.report import chapter as chapter_module
from trashnet.report import compare, exports, findings, i18n, render
from trashnet.stages import stats as stats_stage
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


# --- --seeds-from: entries whose model (or a model it was made from) the seeds run made otherwise -------------

CHAIN = ("mobilenet_v3_large", "mobilenet_v3_large.prune-2of4", "mobilenet_v3_large.prune-2of4.fp16",
         "mobilenet_v3_small")


def chain_run(root, profile: str, *, prune_epochs: int | None = None, unread_prune_epochs: int | None = None,
              seeds: bool = False) -> settings.Layout:
    """A run of the quick profile's V3-Large -> 2:4 -> FP16 chain and V3-Small, each ``metrics.json`` with the
    resolved config its stage records (``provenance.config``); ``prune_epochs`` changes the 2:4 model's own
    recovery only (its FP16 child's config keeps the profile's), ``unread_prune_epochs`` the prune section the
    other stages carry but do not read (as results/cpu's baselines against results/cpu-seeds'); ``seeds``: a final
    ``stats.json`` with three seeds of each, as a seeds run writes it."""
    resolved = profiles.load_variants(profiles.load_profile("quick"))
    layout = settings.Layout(root, profile)
    for vid in CHAIN:
        cfg = resolved[vid]
        folder = results_tree.write_result(layout.models, cfg.stage, vid, arch=cfg.arch, accuracy=0.8,
                                           gzip_bytes=1_000_000, source=cfg.source, precision=cfg.precision,
                                           profile=profile)
        recorded = config.config_to_dict(cfg) | {"profile": profile}
        epochs = prune_epochs if cfg.stage == "prune" else unread_prune_epochs
        if epochs is not None:
            recorded["prune"]["epochs"] = epochs
        record = records.read_metrics(folder)
        record.provenance = {**record.provenance, "config": recorded}
        records.write_metrics(folder, record)
    final_dir = layout.variant_dir("final", "final")
    final_dir.mkdir(parents=True)
    results_tree.mark_finished(final_dir)
    entries = [{"variant": vid, "seeds": [42, 43, 44], "accuracy": [0.8, 0.81, 0.79], "macro_f1": [0.78, 0.8, 0.77],
                "mean_accuracy": 0.8, "sd_accuracy": 0.05 if "prune" in vid else 0.01, "mean_macro_f1": 0.7833,
                "sd_macro_f1": 0.0153}
               for vid in CHAIN] if seeds else []
    stats_file = stats_stage.StatsFile.model_validate({**report_tree.STATS, "seeds": entries})
    stats_stage.write_stats(stats_file, final_dir)
    return layout


def test_seeds_of_a_model_made_with_other_settings_are_left_out_and_said_so(tmp_path):
    this = chain_run(tmp_path / "this", "quick")
    same = compare.report_data(this, seeds_from=chain_run(tmp_path / "same", "quick-seeds", unread_prune_epochs=7,
                                                          seeds=True))
    assert [s["variant"] for s in same.seed_stats] == list(CHAIN) and same.seeds_dropped == []
    # The seeds run pruned for 9 epochs: the 2:4 model and its FP16 child (made from it) are left out.
    other = compare.report_data(this, seeds_from=chain_run(tmp_path / "other", "quick-seeds", prune_epochs=9,
                                                           seeds=True))
    assert [s["variant"] for s in other.seed_stats] == ["mobilenet_v3_large", "mobilenet_v3_small"]
    epochs = str(profiles.load_variants(profiles.load_profile("quick"))["mobilenet_v3_large.prune-2of4"].prune.epochs)
    pruned = "mobilenet_v3_large.prune-2of4"
    assert [d.model_dump() for d in other.seeds_dropped] == [
        {"variant": pruned, "model": pruned, "setting": "prune.epochs", "theirs": "9", "mine": epochs},
        {"variant": f"{pruned}.fp16", "model": pruned, "setting": "prune.epochs", "theirs": "9", "mine": epochs}]
    # The findings see the kept entries only (the dropped ones' SD is 5 pp).
    assert findings.derive(same).limits.seed_sd_max_pp == pytest.approx(5.0)
    assert findings.derive(other).limits.seed_sd_max_pp == pytest.approx(1.0)
    sentence = {"en": f"Run quick-seeds made {pruned} (prune.epochs: 9 there, {epochs} here) with other settings "
                      f"than this run, so their seeds are left out of the tables and the findings. So are the seeds "
                      f"of the files made from models with other settings: {pruned}.fp16.",
                "id": f"Proses quick-seeds membuat {pruned} (prune.epochs: 9 pada proses itu, {epochs} pada proses "
                      f"ini) dengan pengaturan yang berbeda dari proses ini, sehingga hasil benih acaknya tidak "
                      f"dimasukkan ke dalam tabel dan temuan. Begitu pula hasil benih acak berkas yang dibuat dari "
                      f"model dengan pengaturan lain: {pruned}.fp16."}
    for data in (same, other):
        chapter = chapter_module.build(data)
        for lang in i18n.LANGUAGES:
            page = render.html(data, chapter, lang, {key: "" for key in chapter.figures}, notebooks={})
            text = " ".join(re.sub(r"<[^>]+>", "", page).split())
            assert (sentence[lang] in text) == (data is other) == ('id="seeds-dropped"' in page), lang
