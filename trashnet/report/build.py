"""``python -m trashnet report``: the results chapter, in Bahasa Indonesia and English, from the result files.

One job per module: ``collect`` reads every result file into one typed ``ReportData``; ``chapter`` turns
it into numbered tables and figures; ``render`` writes the HTML (Jinja2 + gettext) and the PDF
(WeasyPrint); ``exports`` writes LaTeX/CSV/XLSX tables and SVG/PNG figures; ``copy_notebooks`` (here)
places the executed notebooks beside the report. The reporter reads files only: it never imports a
training, pruning or quantization module, and no number is typed into a template.

Output, under the profile's report folder (``settings.Layout.report``: ``<out>/report/<profile>/``)::

    id/index.html  id/report.pdf      the chapter in Bahasa Indonesia
    en/index.html  en/report.pdf      the chapter in English
    exports/id/  exports/en/          tabel-4-1.{tex,csv,xlsx}, gambar-4-1.{svg,png}, ...
    notebooks/<variant>.html          the executed notebooks, linked from the appendix
    index.html                        a page that links both languages
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from trashnet.report import figures
from trashnet.core import fileio, owned, settings
from trashnet.report import chapter as chapter_module
from trashnet.report import compare, exports, i18n, render
from trashnet.report.collect import ReportData

REPORT_HTML = "index.html"
REPORT_PDF = "report.pdf"
NOTEBOOKS_DIR = "notebooks"
EXPORTS_DIR = "exports"


def fresh_folder(folder: Path, kind: str) -> Path:
    """An empty folder of generated files, rebuilt on every report (never someone else's folder)."""
    owned.remove(folder, kind, made_by="`report`", hint="move it away or choose another --out")
    folder.mkdir(parents=True)
    owned.stamp(folder, kind)
    return folder


def copy_notebooks(data: ReportData) -> dict[str, str]:
    """The executed notebooks into ``<report>/notebooks/``; variant id -> path relative to the report."""
    target_dir = fresh_folder(data.report_dir / NOTEBOOKS_DIR, "report-notebooks")
    links = {}
    for variant in [*data.variants, *([data.final] if data.final else [])]:
        if variant.notebook is not None:
            shutil.copyfile(variant.notebook, target_dir / f"{variant.id}.html")
            links[variant.id] = f"{NOTEBOOKS_DIR}/{variant.id}.html"
    return links


def _index_page(languages: list[str]) -> str:
    names = {"id": "Bahasa Indonesia", "en": "English"}
    items = "".join(f'<li><a href="{lang}/{REPORT_HTML}">{names[lang]}</a> (<a href="{lang}/{REPORT_PDF}">PDF</a>)'
                    f"</li>" for lang in languages)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>TrashNet report</title></head>'
            f"<body><h1>TrashNet</h1><ul>{items}</ul></body></html>\n")


def build(root: str | Path | settings.Layout, profile: str | None = None, *,
          languages: tuple[str, ...] = i18n.LANGUAGES, pdf: bool = True, export: bool = True,
          seeds_from: settings.Layout | None = None, compare_with: settings.Layout | None = None,
          probe_from: Path | None = None, log=print) -> Path:
    """Write the report of one profile (a ``settings.Layout``, or an output root and a profile) in each
    language; returns the report folder (``Layout.report``: ``<root>/report/<profile>/``). ``seeds_from``:
    a multi-seed run of the same recipe, whose mean and SD the chapter shows; ``compare_with``: another run of
    the study from other starting weights, whose baselines the chapter sets beside this run's; ``probe_from``:
    a ``benchmarks/bench_linear_probe.py`` result, the floor each ImageNet baseline is set beside."""
    start = time.perf_counter()
    data = compare.report_data(root, profile, seeds_from=seeds_from, compare_with=compare_with, probe_from=probe_from)
    chapter = chapter_module.build(data)
    links = copy_notebooks(data)
    for lang in languages:
        drawn = render.draw(chapter, lang)
        uris = {key: render.data_uri(figures.render(figure, "png", dpi=render.INLINE_DPI))
                for key, figure in drawn.items()}
        page = render.html(data, chapter, lang, uris, notebooks={k: f"../{v}" for k, v in links.items()})
        target = fileio.atomic_write_text(data.report_dir / lang / REPORT_HTML, page)
        if pdf:
            pages = render.write_pdf(page, data.report_dir / lang / REPORT_PDF, target.parent)
            log(f"report: {data.report_dir / lang / REPORT_PDF} ({pages} pages)")
        if export:
            folder = fresh_folder(data.report_dir / EXPORTS_DIR / lang, "report-exports")
            written = exports.write(chapter, drawn, lang, folder)
            log(f"report: {len(written)} export files in {data.report_dir / EXPORTS_DIR / lang}")
    fileio.atomic_write_text(data.report_dir / REPORT_HTML, _index_page(list(languages)))
    log(f"report: {len(chapter.tables)} tables, {len(chapter.figures)} figures, built in "
        f"{time.perf_counter() - start:.1f}s")
    return data.report_dir


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="output root holding models/, dataset/, logs/ "
                        "(default: $TRASHNET_OUT, else the repository)")
    parser.add_argument("--profile", default=None, help="which profile's results (default: the only one "
                        "under <out>/logs/, else quick)")
    parser.add_argument("--lang", choices=(*i18n.LANGUAGES, "all"), default="all",
                        help="language of the report: id (Bahasa Indonesia), en, or all (default)")
    parser.add_argument("--no-pdf", action="store_true", help="only the HTML pages")
    parser.add_argument("--no-exports", action="store_true", help="skip the LaTeX/CSV/XLSX/DOCX/SVG/PNG exports")
    parser.add_argument("--seeds-from", type=Path, default=None, metavar="FOLDER",
                        help="a multi-seed run of the same recipe (an output root, or a published results folder "
                             "such as results/cpu-seeds): its mean and SD per model go into the chapter; refused "
                             "when its baselines started from other weights or at another image size")
    parser.add_argument("--compare-with", type=Path, default=None, metavar="FOLDER",
                        help="another run of the study from other starting weights (an output root, or a "
                             "published results folder such as results/cpu-scratch): a table and a figure of its "
                             "baselines' TrashNet and OOD accuracy beside this run's, per architecture")
    parser.add_argument("--probe-from", type=Path, default=None, metavar="FILE",
                        help="a linear probe of the baselines' ImageNet features (benchmarks/results/"
                             "linear_probe.json, written by benchmarks/bench_linear_probe.py): a table of each "
                             "baseline beside its probe on TrashNet and OOD photos")


def command(args: argparse.Namespace) -> int:
    from trashnet.core.errors import UsageError

    root = args.out.expanduser().resolve() if args.out else settings.default_output_root()
    layout = _layout(root, args.profile)
    if not layout.models.is_dir() and not (layout.logs / settings.RUN_RECORD).exists():
        raise UsageError(f"{root} has no models/{layout.profile}/ or logs/{layout.profile}/{settings.RUN_RECORD}",
                         f"run ./run_all.sh --profile {layout.profile} first, or pass --out / --profile")
    seeds = _layout(args.seeds_from.expanduser().resolve(), None) if args.seeds_from else None
    other = _other_run(args.compare_with.expanduser().resolve()) if args.compare_with else None
    languages = i18n.LANGUAGES if args.lang == "all" else (args.lang,)
    probe_from = args.probe_from.expanduser().resolve() if args.probe_from else None
    folder = build(layout, languages=languages, pdf=not args.no_pdf, export=not args.no_exports, seeds_from=seeds,
                   compare_with=other, probe_from=probe_from)
    print(folder)
    return 0


def _layout(root: Path, profile: str | None) -> settings.Layout:
    """A run's output root (``models/<profile>/``), or a published ``results/<profile>/`` folder (no profile
    level: ``models/`` and ``logs/run.json`` directly under it)."""
    if (root / "logs" / settings.RUN_RECORD).is_file():
        return settings.Layout.reference(root, profile)
    return settings.Layout(root, profile or _only_profile(root))


def _other_run(root: Path) -> settings.Layout:
    """``--compare-with``'s run: a results folder or an output root that holds one; else a one-line error."""
    from trashnet.core.errors import UsageError

    if not root.is_dir():
        raise UsageError(f"--compare-with {root} is not a folder", "pass a results folder such as results/cpu-scratch")
    layout = _layout(root, None)
    if not layout.models.is_dir():
        raise UsageError(f"--compare-with {root} holds no run (no models/ folder)",
                         "pass a results folder such as results/cpu-scratch, or the output root of a finished run")
    return layout


def _only_profile(root: Path) -> str:
    """The profile whose run record is under ``<root>/logs/`` when there is exactly one; none: ``quick``."""
    from trashnet.core.errors import UsageError

    found = sorted(path.parent.name for path in (root / "logs").glob(f"*/{settings.RUN_RECORD}"))
    if len(found) > 1:
        raise UsageError(f"{root} holds the runs of several profiles ({', '.join(found)})",
                         "pass --profile to say which report to build")
    return found[0] if found else "quick"


__all__ = ["build", "configure", "command", "REPORT_HTML", "REPORT_PDF"]
