"""The results chapter in both languages, built from a hand-built results tree (typed models + the real
final stage): numbered tables and figures, numbers equal to the result files, PDF, exports, "not run"."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import report_tree
from trashnet.core import records, settings
from trashnet.report import build as report
from trashnet.report import i18n

pytestmark = pytest.mark.slow  # evaluates tiny TFLite files, builds the final artifact, renders two PDFs


class Page(HTMLParser):
    """Table cells (with their data-value) by table id, figure and table labels, images, links."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str | None]]]] = {}
        self.ids, self.images, self.links = [], [], []
        self._table = self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
            if tag == "figure" and attrs["id"].startswith("tab-"):
                self._table = attrs["id"]
                self.tables[self._table] = []
        if tag == "tr" and self._table:
            self.tables[self._table].append([])
        if tag == "td" and self._table:
            self._cell = [attrs.get("data-value"), ""]
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.tables[self._table][-1].append((self._cell[1], self._cell[0]))
            self._cell = None
        if tag == "figure":
            self._table = None


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = report_tree.copy(report_tree.build(tmp_path_factory, stats=True, ood=True),
                            tmp_path_factory.mktemp("built") / "out")
    report.build(root, "quick", log=lambda message: None)
    return root


def test_both_languages_with_numbered_tables_and_figures(built):
    folder = settings.Layout(built, "quick").report
    for lang, table, figure in (("id", "Tabel", "Gambar"), ("en", "Table", "Figure")):
        page = parse(folder / lang / "index.html")
        html = (folder / lang / "index.html").read_text(encoding="utf-8")
        numbers = re.findall(rf"<span class=\"label\">{table} (4\.\d+)\.</span>", html)
        assert numbers and numbers == [f"4.{i}" for i in range(1, len(numbers) + 1)]  # in reading order
        figures_ = re.findall(rf"<span class=\"label\">{figure} (4\.\d+)\.</span>", html)
        assert figures_ == [f"4.{i}" for i in range(1, len(figures_) + 1)] and len(figures_) >= 6
        # Every table and figure is cited from the text (a link to it besides the lists of tables/figures).
        for anchor in [i for i in page.ids if i.startswith(("tab-", "fig-"))]:
            assert page.links.count(f"#{anchor}") >= 2, anchor
        assert all(src.startswith("data:image/png;base64,") for src in page.images)
        assert f'lang="{lang}"' in html
    id_html = (folder / "id" / "index.html").read_text(encoding="utf-8")
    assert "Daftar Tabel" in id_html and "Pemangkasan" in id_html and "Kuantisasi" in id_html
    assert "Profil <strong>quick</strong>" in id_html  # the report says which profile it shows


def test_every_number_in_a_table_is_the_result_files_value(built):
    layout = settings.Layout(built, "quick")
    baseline = records.read_metrics(layout.variant_dir("train", "mobilenet_v3_large"))
    for lang in i18n.LANGUAGES:
        fmt = i18n.Formatter(lang)
        rows = parse(layout.report / lang / "index.html").tables["tab-baselines"]
        row = next(r for r in rows if r and r[0][0] == "mobilenet_v3_large")
        expected = [baseline.test.accuracy, baseline.test.macro_f1, baseline.train_time_s,
                    baseline.latency_ms["keras_batch1"].median, baseline.size.raw_bytes, baseline.size.gzip_bytes,
                    baseline.params, baseline.macs, baseline.ood.accuracy]
        kinds = ["pct", "pct", "min", "ms", "mb", "mb", "mega", "mega", "pct"]
        for (text, raw), value, kind in zip(row[1:], expected, kinds):
            assert float(raw) == value
            assert text == fmt.cell(value, kind)
    # The Indonesian decimal comma, the English point.
    # PUEBI: no space before %.
    assert i18n.Formatter("id").pct(0.865, 1) == "86,5%" and i18n.Formatter("en").pct(0.865, 1) == "86.5%"
    id_rows = parse(layout.report / "id" / "index.html").tables["tab-baselines"]
    assert any(text == "80,23" for text, _ in id_rows[1])
    # The final model's row in the selection table carries the selection record's numbers.
    selection = records.read_selection(layout.variant_dir("final", "final"))
    rows = parse(layout.report / "en" / "index.html").tables["tab-selection"]
    chosen = next(r for r in rows if r and r[0][0] == selection.chosen.id)
    assert float(chosen[2][1]) == selection.chosen.accuracy and float(chosen[3][1]) == selection.chosen.gzip_bytes


def test_the_final_models_parity_table_and_its_verdict_in_both_languages(built):
    """The final stage's parity block (metrics.json) as a table per consumer, and one sentence per data set on
    the 97 % target: Indonesian with the decimal comma and no space before %."""
    from trashnet.nets import parity

    layout = settings.Layout(built, "quick")
    record = records.read_metrics(layout.variant_dir("final", "final")).parity
    rows = record.datasets[parity.FINAL_TEST]
    met = parity.meets_targets(rows)
    lowest = min(rows, key=lambda row: row.agreement)
    texts = {"id": ("data uji", "target terpenuhi" if met else "tidak terpenuhi", "Tidak diukur"),
             "en": ("test split", "the target holds" if met else "does not hold", "Not measured")}
    for lang, (dataset, verdict, unmeasured) in texts.items():
        html = (layout.report / lang / "index.html").read_text(encoding="utf-8")
        table = parse(layout.report / lang / "index.html").tables["tab-parity"]
        assert [(cells[0][0], cells[1][0]) for cells in table if cells] == [(dataset, row.consumer) for row in rows]
        paragraph = html[html.index('<p id="parity">'):]
        paragraph = paragraph[:paragraph.index("</p>")]
        assert dataset in paragraph and verdict in paragraph
        assert (unmeasured in paragraph) == bool(record.unmeasured)
        fmt = i18n.Formatter(lang)
        assert met or fmt.pct(lowest.agreement, 1) in paragraph
        if lang == "id":
            assert not re.search(r"\d %", paragraph) and "97%" in paragraph
            assert "target" in paragraph and "agreement" not in paragraph


def test_the_best_value_of_each_column_is_marked(built):
    html = (settings.Layout(built, "quick").report / "en" / "index.html").read_text(encoding="utf-8")
    table = html[html.index('id="tab-headline"'):]
    table = table[:table.index("</table>")]
    assert table.count(' best"') >= 2


def test_significance_and_ood_are_rendered_when_present(built):
    html = (settings.Layout(built, "quick").report / "en" / "index.html").read_text(encoding="utf-8")
    assert 'id="tab-intervals"' in html and 'id="tab-comparisons"' in html and 'id="tab-seeds"' in html
    # Every seed's own result, not only mean and SD: one row per seed.
    seed_rows = parse(settings.Layout(built, "quick").report / "en" / "index.html").tables["tab-seed_runs"]
    assert len([row for row in seed_rows if row]) >= 2
    assert 'id="tab-ood"' in html and "OOD accuracy" in html and 'id="sec-limitations"' in html
    assert "stats-not-run" not in html


def test_run_times_come_with_their_machine(tmp_path_factory, tmp_path):
    root = report_tree.copy(report_tree.build(tmp_path_factory), tmp_path / "out")
    layout = settings.Layout(root, "quick")
    records.write_run_record(layout.logs, {"started": "t0", "finished": "t1", "seconds": 1.0, "profile": "quick",
                                           "machine": {"cores": 2, "cpu": "AMD EPYC", "load": 1.46}})
    report.build(root, "quick", pdf=False, export=False, log=lambda message: None)
    en = (layout.report / "en" / "index.html").read_text(encoding="utf-8")
    assert "Run times measured on 2 cores (AMD EPYC, load average 1.5 at the start of the run)" in en
    assert "2 inti (AMD EPYC, rata-rata beban 1,5 di awal proses)" in (layout.report / "id" / "index.html").read_text(
        encoding="utf-8")


def test_a_missing_statistics_file_reads_not_run(tmp_path_factory, tmp_path):
    root = report_tree.copy(report_tree.build(tmp_path_factory), tmp_path / "out")
    report.build(root, "quick", pdf=False, export=False, log=lambda message: None)
    folder = settings.Layout(root, "quick").report
    assert "Tidak dijalankan: berkas stats.json" in (folder / "id" / "index.html").read_text(encoding="utf-8")
    en = (folder / "en" / "index.html").read_text(encoding="utf-8")
    assert "Not run: there is no stats.json" in en
    assert "tab-ood" not in en and "OOD accuracy" not in en  # no OOD block: no column, no section


def test_pdf_has_contents_lists_and_numbered_pages(built, tmp_path):
    if not shutil.which("pdftotext") or not shutil.which("pdftoppm"):
        pytest.skip("poppler-utils (pdftotext, pdftoppm) is not installed")
    folder = settings.Layout(built, "quick").report
    for lang, words in (("id", ("Daftar Isi", "Daftar Tabel", "Daftar Gambar", "Tabel 4.1", "Gambar 4.1")),
                        ("en", ("Contents", "List of tables", "List of figures", "Table 4.1", "Figure 4.1"))):
        pdf = folder / lang / report.REPORT_PDF
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                              check=True, timeout=120).stdout
        for word in words:
            assert word in text, (lang, word)
        pages = text.split("\f")
        assert len([p for p in pages if p.strip()]) >= 8
        # The contents list page numbers (target-counter), and the pages carry their number at the bottom.
        contents = pages[1]
        assert re.search(r"4\.1 \S+.*\.{5,}\s*\d+", contents), contents[:500]
        assert pages[3].strip().splitlines()[-1].strip() == "4"
        subprocess.run(["pdftoppm", "-png", "-r", "30", "-f", "1", "-l", "4", str(pdf), str(tmp_path / lang)],
                       check=True, timeout=120)
        assert len(list(tmp_path.glob(f"{lang}-*.png"))) == 4


def test_pdf_bookmarks_follow_the_sections(built):
    import weasyprint

    folder = settings.Layout(built, "quick").report / "id"
    document = weasyprint.HTML(filename=str(folder / report.REPORT_HTML)).render()
    titles = [mark[1] for page in document.pages for mark in page.bookmarks]  # (level, label, ...)
    assert titles[0].startswith("Hasil") and "Daftar Isi" in titles
    assert any(title.startswith("4.5 Pemangkasan") for title in titles)
    assert any(title.startswith("4.6 Kuantisasi") for title in titles)
    assert document.pages[0].width < document.pages[0].height  # A4 portrait
    assert round(document.pages[0].width * 25.4 / 96) == 210


def test_exports_for_the_thesis(built):
    folder = settings.Layout(built, "quick").report / report.EXPORTS_DIR
    for lang, table, figure in (("id", "tabel", "gambar"), ("en", "table", "figure")):
        tex = sorted((folder / lang).glob(f"{table}-4-*.tex"))
        assert len(tex) >= 10
        for path in tex:
            text = path.read_text(encoding="utf-8")
            for command in (r"\begin{table}", r"\toprule", r"\midrule", r"\bottomrule", r"\caption{", r"\label{tab:"):
                assert command in text, (path.name, command)
            assert text.count("{") == text.count("}") - text.count(r"\}") + text.count(r"\{")
            assert path.with_suffix(".csv").is_file() and path.with_suffix(".xlsx").is_file()
        for number in range(1, len(list((folder / lang).glob(f"{figure}-4-*.svg"))) + 1):
            assert (folder / lang / f"{figure}-4-{number}.png").is_file()
    # CSV numbers are the result file's, in the header's unit.
    layout = settings.Layout(built, "quick")
    baseline = records.read_metrics(layout.variant_dir("train", "mobilenet_v3_large"))
    number = next(p for p in (folder / "en").glob("table-4-*.csv")
                  if "Training time" in p.read_text(encoding="utf-8"))
    rows = list(csv.reader(number.open(encoding="utf-8")))
    assert rows[0][1] == "Accuracy (%)"
    assert float(rows[1][1]) == round(100 * baseline.test.accuracy, 2)
    from openpyxl import load_workbook

    sheet = load_workbook(number.with_suffix(".xlsx")).active
    assert sheet.cell(3, 2).value == round(100 * baseline.test.accuracy, 2)
    from PIL import Image

    png = next((folder / "en").glob("figure-4-*.png"))
    assert round(Image.open(png).info["dpi"][0]) == 300


def test_latex_exports_compile(built, tmp_path):
    if not shutil.which("pdflatex"):
        pytest.skip("no pdflatex (Debian: texlive-latex-base texlive-latex-recommended): structure checked above")
    folder = settings.Layout(built, "quick").report / report.EXPORTS_DIR
    tables = sorted((folder / "id").glob("tabel-*.tex")) + sorted((folder / "en").glob("table-*.tex"))
    body = "\n".join(r"\input{" + str(path) + "}" for path in tables)
    document = tmp_path / "tables.tex"
    document.write_text(r"\documentclass{article}\usepackage[T1]{fontenc}\usepackage{booktabs,graphicx}"
                        r"\usepackage[a4paper,margin=15mm]{geometry}\begin{document}" + body + r"\end{document}")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "tables.pdf").is_file()


def test_the_gallery_shows_the_final_models_misclassified_images(built):
    html = (settings.Layout(built, "quick").report / "en" / "index.html").read_text(encoding="utf-8")
    assert 'id="fig-misclassified"' in html
    match = re.search(r"(\d+) of (\d+) shown", html)
    chosen = records.read_selection(settings.Layout(built, "quick").variant_dir("final", "final")).chosen
    predictions = settings.Layout(built, "quick").models / chosen.dir / settings.PREDICTIONS_FILE
    wrong = [r for r in csv.DictReader(predictions.open()) if r["label"] != r["predicted"]]
    assert match and int(match.group(2)) == len(wrong) and int(match.group(1)) == min(len(wrong), 24)


def test_report_of_an_empty_output_folder_or_of_several_profiles(tmp_path):
    result = subprocess.run([sys.executable, "-m", "trashnet", "report", "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=settings.REPO_ROOT)
    assert result.returncode == 2 and "run ./run_all.sh --profile quick first" in result.stderr
    for profile in ("cpu", "full"):  # two runs side by side: the command asks which one
        (tmp_path / "two" / "logs" / profile).mkdir(parents=True)
        (tmp_path / "two" / "logs" / profile / "run.json").write_text("{}")
    result = subprocess.run([sys.executable, "-m", "trashnet", "report", "--out", str(tmp_path / "two")],
                            capture_output=True, text=True, cwd=settings.REPO_ROOT)
    assert result.returncode == 2 and "several profiles (cpu, full)" in result.stderr


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium: install Debian's chromium to check the report in a browser")


@pytest.mark.browser
def test_report_in_headless_chromium(built, tmp_path):
    from PIL import Image, ImageStat

    for lang in i18n.LANGUAGES:
        index = settings.Layout(built, "quick").report / lang / "index.html"
        shot = tmp_path / f"{lang}.png"
        subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--no-first-run", f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars",
                        index.as_uri()], capture_output=True, text=True, timeout=120)
        assert shot.exists(), "chromium wrote no screenshot"
        assert max(ImageStat.Stat(Image.open(shot).convert("L")).stddev) > 10  # not a blank page
