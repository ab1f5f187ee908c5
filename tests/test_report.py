"""The reporter on a finished stand-in run: sections, figures inline, numbers from files, PDF, browser."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import standin
from trashnet import fileio, report, settings

SECTIONS = ("summary", "baselines", "pruning", "quantization", "hybrid", "pareto", "confusion", "curves", "data",
            "provenance", "notebooks", "checksums", "failures")


class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.images, self.links, self.external = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag in ("link", "script") and (attrs.get("href") or attrs.get("src")):
            self.external.append(attrs.get("href") or attrs.get("src"))


def parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = standin.copy_run(standin.completed_run(tmp_path_factory), tmp_path_factory.mktemp("report") / "out")
    report.build(out, "quick", log=lambda message: None)  # its time: benchmarks/bench_pipeline.py
    return out


@pytest.mark.slow
def test_report_is_self_contained_with_every_section(built):
    html = (built / "report" / "quick" / "index.html").read_text(encoding="utf-8")
    elements = parse(html)
    for section in SECTIONS:
        assert section in elements.ids, section
    assert elements.images and all(src.startswith("data:image/") for src in elements.images)
    assert elements.external == []  # CSS inline, no script
    # 6 variants with test results -> 6 confusion matrices, 3 training histories, 2 Pareto charts.
    assert len(elements.images) == 6 + 3 + 2
    for link in elements.links:
        if not link.startswith("#"):
            assert (built / "report" / "quick" / link).is_file(), link
    for variant_id in standin.SELECTED:
        assert f"notebooks/{variant_id}.html" in elements.links


@pytest.mark.slow
def test_numbers_come_from_the_result_files(built):
    html = (built / "report" / "quick" / "index.html").read_text(encoding="utf-8")
    layout = settings.Layout(built, "quick")
    for stage, variant_id in (("baseline", "mobilenet_v3_large"), ("quantized", "mobilenet_v3_small.fp16")):
        metrics = fileio.read_json(layout.variant_dir(stage, variant_id) / "metrics.json")
        assert report.fmt_pct(metrics["test"]["accuracy"]) in html
        assert report.fmt_bytes(metrics["size"]["gzip_bytes"]) in html
    selection = fileio.read_json(layout.variant_dir("final", "final") / "selection.json")
    assert f"<strong>{selection['chosen']['id']}</strong>" in html
    assert selection["rule"] in html
    data_rows = report.read_data_manifest(layout.data_manifest)
    assert f"{len(data_rows)} files examined" in html
    # The checksums of the final artifact are verified.
    checks = report.checksums_section(layout.variant_dir("final", "final"))
    assert checks and {entry["check"] for entry in checks} == {"ok"}


@pytest.mark.slow
def test_failures_and_odd_results_are_shown_escaped(built, tmp_path):
    out = standin.copy_run(built, tmp_path / "out")
    layout = settings.Layout(out, "quick")
    # A quantized variant whose conversion failed: no test metrics, the reason shown.
    folder = layout.variant_dir("quantized", "mobilenet_v3_small.fp16")
    metrics = fileio.read_json(folder / "metrics.json")
    del metrics["test"]
    metrics["conversion"] = {"status": "failed", "error": "RuntimeError: <b>HARD_SWISH</b> not supported"}
    (folder / "metrics.json").chmod(0o644)
    fileio.write_json(folder / "metrics.json", metrics)
    # A failed variant: its error (with markup in it) and log; the run record says so.
    failed = layout.variant_dir("pruned", "mobilenet_v3_large.prune-2of4")
    (failed / settings.RUN_MANIFEST_NAME).unlink()
    fileio.write_json(failed / report.FAILED_NAME, {"error": "ValueError: <script>alert(1)</script>",
                                                    "traceback": ["line 1", "line 2"], "log": "logs/x.log"})
    tflite = layout.variant_dir("final", "final") / "trashnet.tflite"
    tflite.chmod(0o644)
    tflite.write_bytes(b"tampered")
    report.build(out, "quick", pdf=False, log=lambda message: None)
    html = (out / "report" / "quick" / "index.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "conversion failed: RuntimeError: &lt;b&gt;HARD_SWISH&lt;/b&gt; not supported" in html
    assert "mobilenet_v3_large.prune-2of4 (pruned) failed" in html
    assert "MISMATCH" in html


def test_report_of_an_empty_output_folder(tmp_path):
    path = report.build(tmp_path, "quick", pdf=False, log=lambda message: None)
    html = path.read_text(encoding="utf-8")
    assert "No final model" in html and "dataset/manifest.csv is missing" in html
    assert "Profile <strong>quick</strong>: the results of <code>models/quick/</code>" in html  # which run it shows
    result = subprocess.run([sys.executable, "-m", "trashnet", "report", "--out", str(tmp_path / "nothing")],
                            capture_output=True, text=True, cwd=settings.REPO_ROOT)
    assert result.returncode == 2 and "run ./run_all.sh --profile quick first" in result.stderr
    for profile in ("cpu", "full"):  # two runs side by side: the command asks which one
        (tmp_path / "two" / "logs" / profile).mkdir(parents=True)
        (tmp_path / "two" / "logs" / profile / "run.json").write_text("{}")
    result = subprocess.run([sys.executable, "-m", "trashnet", "report", "--out", str(tmp_path / "two")],
                            capture_output=True, text=True, cwd=settings.REPO_ROOT)
    assert result.returncode == 2 and "several profiles (cpu, full)" in result.stderr


def test_pareto_front():
    points = [(10, 0.9, "a"), (5, 0.8, "b"), (20, 0.85, "c"), (5, 0.7, "d"), (30, 0.95, "e")]
    assert [name for _, _, name in report.pareto_front(points)] == ["b", "a", "e"]


def pdf_pages(path: Path) -> int:
    if shutil.which("pdfinfo"):
        info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
        return int(re.search(r"Pages:\s+(\d+)", info).group(1))
    return len(re.findall(rb"/Type\s*/Page\b", path.read_bytes()))


def not_blank(png: Path) -> bool:
    from PIL import Image, ImageStat

    with Image.open(png) as image:
        stat = ImageStat.Stat(image.convert("L"))
    return stat.stddev[0] > 5  # a white (or any single-colour) page has ~0


@pytest.mark.slow
def test_pdf_has_pages_that_render(built, tmp_path):
    pdf = built / "report" / "quick" / report.REPORT_PDF
    assert pdf.read_bytes().startswith(b"%PDF")
    pages = pdf_pages(pdf)
    assert 3 <= pages <= 40
    if not shutil.which("pdftoppm"):
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(pdf), str(tmp_path / "page")], check=True, timeout=120)
    rendered = sorted(tmp_path.glob("page-*.png"))
    assert len(rendered) == pages
    assert all(not_blank(png) for png in rendered)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium: install Debian's chromium to check the report in a browser")


def run_chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--allow-file-access-from-files", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.browser
def test_report_in_headless_chromium(built, tmp_path):
    index = built / "report" / "quick" / "index.html"
    screenshot = tmp_path / "report.png"
    run_chromium(f"--screenshot={screenshot}", "--window-size=1280,2400", "--hide-scrollbars", index.as_uri())
    assert screenshot.exists(), "chromium wrote no screenshot"
    assert not_blank(screenshot)
    # No broken images: a copy of the page that writes, once loaded, how many images failed to decode.
    probe = built / "report" / "quick" / "_probe.html"
    script = ("<script>window.addEventListener('load', () => { const bad = [...document.images].filter("
              "i => !i.complete || i.naturalWidth === 0).length; document.body.setAttribute('data-broken', bad);"
              " document.body.setAttribute('data-images', document.images.length); });</script>")
    probe.write_text(index.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    try:
        dom = run_chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri()).stdout
    finally:
        probe.unlink()
    images = re.search(r'data-images="(\d+)"', dom)
    broken = re.search(r'data-broken="(\d+)"', dom)
    assert images and broken, dom[-2000:]
    assert int(images.group(1)) == 11 and int(broken.group(1)) == 0


@pytest.mark.slow
def test_selection_record_with_a_chosen_object_and_results(built, tmp_path):
    # The shape trashnet.select writes: "chosen" is a record, "results" every row with its verdict.
    out = standin.copy_run(built, tmp_path / "out")
    final_dir = settings.Layout(out, "quick").variant_dir("final", "final")
    selection = {
        "rule": "Eligible: within 1 pp of the best; final: the smallest gzipped file.",
        "chosen": {"id": "mobilenet_v3_large.prune-2of4.int16x8", "accuracy": 0.5, "gzip_bytes": 1234},
        "candidates": ["mobilenet_v3_large.prune-2of4.int16x8"], "eligible": ["mobilenet_v3_large.prune-2of4.int16x8"],
        "results": [{"id": "mobilenet_v3_large.prune-2of4.int16x8", "stage": "quantized", "accuracy": 0.5,
                     "gzip_bytes": 1234, "eligible": True},
                    {"id": "mobilenet_v3_small", "stage": "baseline", "accuracy": 0.4,
                     "excluded": "not a TFLite result (format keras)"}],
    }
    (final_dir / "selection.json").chmod(0o644)
    fileio.write_json(final_dir / "selection.json", selection)
    report.build(out, "quick", pdf=False, log=lambda message: None)
    html = (out / "report" / "quick" / "index.html").read_text(encoding="utf-8")
    assert "The selection rule chose <strong>mobilenet_v3_large.prune-2of4.int16x8</strong>" in html
    assert "not a TFLite result (format keras)" in html


def test_data_section_reports_rejections_duplicates_and_conflicts(tmp_path):
    from trashnet import data

    source = tmp_path / "source"
    shutil.copytree(settings.SAMPLE_DIR, source)
    shutil.copy(source / "glass" / "glass1.jpg", source / "glass" / "glass1-copy.jpg")  # same label: kept once
    shutil.copy(source / "metal" / "metal1.jpg", source / "paper" / "metal1-as-paper.jpg")  # conflicting labels
    (source / "trash" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    data.prepare(source, out / "dataset" / "quick")
    report.build(out, "quick", pdf=False, log=lambda message: None)
    html = (out / "report" / "quick" / "index.html").read_text(encoding="utf-8")
    assert "75 files examined: 71 accepted, 4 rejected" in html
    assert "By reason: duplicate 1, duplicate-conflict 2, not-an-image 1." in html
    assert "3 files rejected as exact copies (same sha256); 2 of them carry" in html
    assert "<code>paper/metal1-as-paper.jpg</code>" in html
