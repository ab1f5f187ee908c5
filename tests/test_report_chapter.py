"""The results chapter built from the committed thesis results (``CPU``, compared with ``SCRATCH`` below),
checked as an examiner reads it: the PDF's own layout (pdfplumber), the Indonesian body's words, the LaTeX
exports compiled, the conclusion, the page budget. Building both languages takes about two minutes."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from trashnet.core import settings
from trashnet.report import compare, findings
from trashnet.report.build import EXPORTS_DIR, REPORT_HTML, REPORT_PDF, build

CPU = settings.RESULTS_DIR / "cpu"  # the thesis run from ImageNet
SCRATCH = settings.RESULTS_DIR / "cpu-scratch"  # the from-scratch run it is compared with
MM = 72 / 25.4  # PDF points per millimetre
BOTTOM_MARGIN_MM = 20  # templates/report.css: @page margin 22mm 18mm 20mm 22mm
BODY_PAGES = 35

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chapter(tmp_path_factory) -> Path:
    if not (CPU / "logs" / settings.RUN_RECORD).is_file() or not (SCRATCH / "logs" / settings.RUN_RECORD).is_file():
        pytest.skip(f"the committed {CPU.name} and {SCRATCH.name} results are not in this checkout")
    root = tmp_path_factory.mktemp("thesis") / "cpu"
    shutil.copytree(CPU, root, ignore=shutil.ignore_patterns("report"))
    return build(settings.Layout.reference(root), compare_with=settings.Layout.reference(SCRATCH), log=lambda *_: None)


@pytest.fixture(scope="module")
def answer():
    data = compare.report_data(settings.Layout.reference(CPU), compare_with=settings.Layout.reference(SCRATCH))
    return findings.derive(data).answer


# --- the PDF's layout -----------------------------------------------------------------------------------

def _caption_only(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip() and not line.strip().isdigit()]
    return bool(lines) and re.match(r"^(Gambar|Figure|Tabel|Table) \d+\.\d+\.", lines[0]) is not None \
        and len(lines) <= 3


@pytest.mark.parametrize("lang", ["id", "en"])
def test_figures_fit_the_page_and_no_page_holds_only_a_caption(chapter, lang):
    import pdfplumber

    with pdfplumber.open(chapter / lang / REPORT_PDF) as pdf:
        for number, page in enumerate(pdf.pages, 1):
            limit = page.height - BOTTOM_MARGIN_MM * MM + 1
            for image in page.images:
                assert image["bottom"] <= limit, f"{lang} page {number}: a figure runs past the bottom margin"
            text = page.extract_text() or ""
            body = [line for line in text.splitlines() if line.strip() and not line.strip().isdigit()]
            assert body or page.images, f"{lang} page {number} is blank"
            assert page.images or not _caption_only(text), f"{lang} page {number} holds only a caption: {body}"


def test_the_indonesian_body_without_appendix_fits_the_page_budget(chapter):
    import pdfplumber

    with pdfplumber.open(chapter / "id" / REPORT_PDF) as pdf:
        starts = [n for n, page in enumerate(pdf.pages, 1)
                  if re.search(r"^\d+\.\d+ Lampiran$", page.extract_text() or "", re.M)]
    assert starts, "no appendix heading found in the Indonesian PDF"
    assert starts[-1] - 1 <= BODY_PAGES, f"the body runs {starts[-1] - 1} pages (at most {BODY_PAGES})"


# --- the words of the Indonesian body ----------------------------------------------------------------------

# English words that never occur in Indonesian prose: one of them in the Indonesian body is an untranslated text.
ENGLISH = set("""
a about above after against all also an and any are as at be because been before being below between both but
by can could did does done during each either every few for from had has have having he her here how however
if in into is it its itself just least less more most much must no nor not now of off on once only or other our
out over own same she should since so some such than that the their them then there these they this those
through to too under until up upon very was we were what when where whether which while who whom why will with
within without would yet you your
accuracy latency size file files models network networks result results test train training
validation weights layer layers pruned pruning quantized quantization float chosen final shipped rule
dominated front figure table chapter section discussion limitations conclusion appendix seed seeds
significant difference interval percentage points lower upper bound recommended phone smaller faster best
slower sparsity speed-up class classes true predicted loss epoch epochs
""".split())
# Kept in the Indonesian text on purpose (docs/glossary.md, docs/style-id.md): terms of the field and names.
KEPT = {"front", "batch", "epoch", "runtime", "notebook", "checksum", "gzip", "bootstrap"}
CLASS_NAMES = {"cardboard", "glass", "metal", "paper", "plastic", "trash"}  # folder names of the data set


class _BodyText(HTMLParser):
    """The visible text of the page before the appendix, without identifiers, code and file names."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0
        self.stop = False

    def handle_starttag(self, tag, attrs):
        classes = dict(attrs).get("class") or ""
        if tag == "section" and "appendix" in classes:
            self.stop = True
        if tag in ("style", "code", "script") or (tag == "span" and "id" in classes.split()):
            self.skip += 1

    def handle_endtag(self, tag):
        if tag in ("style", "code", "script", "span") and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if not self.stop and not self.skip:
            self.parts.append(data)


def english_words(page: str) -> list[str]:
    """English words of the visible text before the appendix, outside identifiers, file names and glosses."""
    parser = _BodyText()
    parser.feed(page)
    words = []
    for token in " ".join(parser.parts).split():
        if re.search(r"[_./\d]", token) or len(token) == 1:  # identifiers, file names, numbers, variables (a − b)
            continue
        if token.startswith("(") and token.rstrip(",.;:").endswith(")"):  # a glossary term glossed: "benih acak (seed)"
            continue
        word = token.strip("()[]{};:,.!?\"'«»“”–—%*").lower()
        if word in ENGLISH and word not in KEPT and word not in CLASS_NAMES:
            words.append(word)
    return words


def test_no_english_word_in_the_indonesian_body(chapter):
    words = english_words((chapter / "id" / REPORT_HTML).read_text(encoding="utf-8"))
    assert not words, f"English words in the Indonesian body: {sorted(set(words))}"


def test_the_word_check_finds_english():
    page = '<p>Akurasi model ini <span class="id">the_model</span> (seed) is the best</p><section class="appendix">of'
    assert english_words(page) == ["is", "the", "best"]


# --- the answer -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", ["id", "en"])
def test_the_conclusion_names_a_network_and_cites_its_table_and_figure(chapter, answer, lang):
    page = (chapter / lang / REPORT_HTML).read_text(encoding="utf-8")
    match = re.search(r'<p class="conclusion" id="conclusion">(.*?)</p>', page, re.S)
    assert match, "no conclusion paragraph"
    text = re.sub(r"<wbr>", "", match.group(1))
    assert answer is not None and answer.best.id in text
    assert 'href="#tab-selection"' in text and 'href="#fig-pareto-gzip_bytes"' in text
    assert not answer.chosen_is_best and answer.chosen_dominated  # the committed run: the hybrid is dominated
    assert answer.chosen.id in text


def test_the_answer_is_on_the_front_and_dominates_nothing_it_should_not(answer):
    assert answer.best.id in answer.front and answer.best.id in answer.tied
    assert answer.most_accurate.accuracy >= answer.best.accuracy
    assert findings.dominates(answer.dominated_by, answer.chosen)
    assert not findings.dominates(answer.chosen, answer.dominated_by)


# --- typesetting and exports ----------------------------------------------------------------------------------

def test_typesetting_of_the_indonesian_page(chapter):
    page = (chapter / "id" / REPORT_HTML).read_text(encoding="utf-8")
    body = page.split('<section class="appendix">')[0]
    assert "10^6" not in page and "10<sup>6</sup>" in page
    assert not re.search(r"\d,\d+\s%", body), "PUEBI: no space before %"
    assert not re.search(r"[+−-]\d+,\d+\s?pp\b", re.sub(r"<[^>]+>", "", body.split("<table")[0])), \
        "prose says 'poin persentase', not '+x pp'"
    assert "p = 0,000" not in page
    assert not re.search(r"(?<![\w-])-\d", re.sub(r"<[^>]+>|data-value=\"[^\"]*\"", "", body)), \
        "one minus sign (U+2212)"
    assert "mobilenet_<wbr>v3_<wbr>large" in page  # identifiers break only after _ and .


def test_every_latex_export_compiles_without_overfull_boxes(chapter, tmp_path):
    if not shutil.which("pdflatex"):
        pytest.skip("no pdflatex (Debian: texlive-latex-base texlive-latex-recommended)")
    for lang, pattern in (("id", "tabel-*.tex"), ("en", "table-*.tex")):
        tables = sorted((chapter / EXPORTS_DIR / lang).glob(pattern))
        assert tables
        body = "\n".join(r"\input{" + str(path) + r"}\clearpage" for path in tables)
        document = tmp_path / f"tables-{lang}.tex"
        document.write_text(r"\documentclass[a4paper,12pt]{report}\usepackage[T1]{fontenc}"
                            r"\usepackage[utf8]{inputenc}\usepackage{booktabs,graphicx}"
                            r"\usepackage[a4paper,margin=30mm]{geometry}\begin{document}" + body + r"\end{document}")
        result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
                                cwd=tmp_path, capture_output=True, text=True, timeout=300)
        log = (tmp_path / f"tables-{lang}.log").read_text(encoding="latin-1")
        assert result.returncode == 0, result.stdout[-3000:]
        overfull = [float(m) for m in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too", log)]
        assert not [o for o in overfull if o > 1], f"{lang}: overfull boxes {overfull}"


def test_docx_exports_mark_only_best_values(chapter):
    from docx import Document

    files = sorted((chapter / EXPORTS_DIR / "id").glob("tabel-*.docx"))
    assert files
    document = Document(files[0])  # Tabel 4.1: the final model's row is not bold as a whole
    rows = document.tables[0].rows
    bold = [[any(run.bold for p in cell.paragraphs for run in p.runs) for cell in row.cells] for row in rows[1:]]
    assert not all(bold[0]), "the final model's whole row is bold"


# --- committed results -----------------------------------------------------------------------------------------

def test_no_absolute_or_partial_path_in_committed_results():
    found = []
    for path in sorted(settings.RESULTS_DIR.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".ipynb", ".html", ".csv", ".md", ".txt"):
            text = path.read_text(encoding="utf-8", errors="replace")
            if re.search(r"/(work|home|tmp|root|Users)/|\.partial-\d+", text):
                found.append(str(path.relative_to(settings.RESULTS_DIR)))
    assert not found, f"{len(found)} committed result files name a folder of the run machine: {found[:5]}"


@pytest.mark.parametrize("lang", ["id", "en"])
def test_an_equal_accuracy_is_said_as_equal(chapter, lang):
    # A zero difference once read "sama daripada" / "the same than": the answer has its own sentence for it.
    text = " ".join(re.sub(r"<[^>]+>", " ", (chapter / lang / REPORT_HTML).read_text(encoding="utf-8")).split())
    assert "sama daripada" not in text and "the same than" not in text
