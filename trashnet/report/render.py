"""Render: the chapter as one self-contained HTML page per language (Jinja2 + gettext), and the PDF.

One set of templates (``templates/report.html.j2`` and its partials) serves both languages through the
``jinja2.ext.i18n`` extension; numbers and dates are formatted by Babel for the language's locale.
"""

from __future__ import annotations

import base64
import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from trashnet.report import figures
from trashnet.core import settings
from trashnet.report import findings, i18n
from trashnet.report.items import Chapter, Message, Table
from trashnet.report.collect import ReportData

SECTIONS = (("summary", i18n.N_("Summary")), ("data", i18n.N_("Data")), ("method", i18n.N_("Method")),
            ("baselines", i18n.N_("Baselines")), ("pruning", i18n.N_("Pruning")),
            ("quantization", i18n.N_("Quantization")), ("final", i18n.N_("Hybrid final model")),
            ("significance", i18n.N_("Significance")), ("per-class", i18n.N_("Per-class analysis")),
            ("limitations", i18n.N_("Limitations")), ("conclusion", i18n.N_("Conclusion")),
            ("appendix", i18n.N_("Appendix")))
FOLD_MIN_ROWS = 4  # a constant column of a shorter table stays (the caption would only get longer)
INLINE_DPI = 150  # figures inlined in the HTML (and so in the PDF); exports get 300 dpi and vector


class Labels(dict):
    """Figure labels in the report's language: any key (a ``figures.TEXT`` name or a message) -> translated."""

    def __init__(self, gettext):
        super().__init__()
        self.gettext = gettext

    def get(self, key, default=None):  # noqa: D401 - dict interface used by trashnet.report.figures
        return self.gettext(figures.TEXT.get(key, default if default is not None else key))

    def __getitem__(self, key):
        return self.get(key)


def environment(lang: str):
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(settings.TEMPLATES_DIR)), autoescape=True,
                             undefined=jinja2.StrictUndefined, lstrip_blocks=True,
                             extensions=["jinja2.ext.i18n"])
    env.policies["ext.i18n.trimmed"] = True  # a {% trans %} block's line breaks are not part of its message
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)
    env.tests["startingwith"] = lambda value, prefix: str(value).startswith(prefix)
    env.filters["wbr"] = breakable
    return env


def draw(chapter: Chapter, lang: str) -> dict[str, Any]:
    """Every figure of the chapter drawn with labels in ``lang`` (matplotlib Figures, by key)."""
    labels = Labels(i18n.translations(lang).gettext)
    return {key: spec.draw(labels) for key, spec in chapter.figures.items()}


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def table_view(table: Table, lang: str, *, fold: bool = True) -> dict[str, Any]:
    """A table with translated headers and caption and locale-formatted cells (raw value kept for tests);
    ``fold``: constant columns move to the caption (the page and LaTeX; CSV/XLSX keep every column)."""
    gettext = i18n.translations(lang).gettext
    fmt = i18n.Formatter(lang)
    best = table.best()
    headers = []
    for column in table.columns:
        header = gettext(column.header)
        headers.append({"text": f"{header} ({column.unit})" if column.unit else header,
                        "numeric": column.kind != "text"})
    rows = []
    for r, row in enumerate(table.rows):
        cells = []
        for c, (column, value) in enumerate(zip(table.columns, row)):
            if isinstance(value, Message):
                cells.append({"text": gettext(value.msgid) % {k: gettext(str(v)) for k, v in value.args.items()},
                              "raw": None, "numeric": False, "best": False})
            elif column.kind == "text":
                text = "–" if value in (None, "") else gettext(str(value))
                cells.append({"text": text, "raw": None, "numeric": False, "best": False})
            else:
                number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
                cells.append({"text": fmt.cell(number, column.kind), "raw": number, "numeric": True,
                              "best": r in best[c]})
        rows.append({"cells": cells, "highlight": r in table.highlight})
    caption = gettext(table.caption) % {k: gettext(str(v)) for k, v in table.args.items()}
    headers, rows, constants = fold_constants(headers, rows) if fold else (headers, rows, [])
    if constants:
        caption += ". " + "; ".join(f"{header}: {text}" for header, text in constants)
    return {"key": table.key, "id": f"tab-{table.key}", "label": gettext("Table") + " " + table.number,
            "caption": caption, "headers": headers, "rows": rows, "number": table.number}


def fold_constants(headers: list[dict[str, Any]], rows: list[dict[str, Any]]):
    """Columns that hold one value in every row (of a table of ``FOLD_MIN_ROWS`` rows or more) leave the
    table for its caption: (headers, rows, [(header, value)]). The first column (the row's name) stays."""
    if len(rows) < FOLD_MIN_ROWS:
        return headers, rows, []
    constant = [c for c in range(1, len(headers))
                if len({row["cells"][c]["text"] for row in rows}) == 1 and rows[0]["cells"][c]["text"] != "–"]
    if not constant:
        return headers, rows, []
    folded = [(headers[c]["text"], rows[0]["cells"][c]["text"]) for c in constant]
    keep = [c for c in range(len(headers)) if c not in constant]
    rows = [{**row, "cells": [row["cells"][c] for c in keep]} for row in rows]
    return [headers[c] for c in keep], rows, folded


def breakable(text: Any) -> Markup:
    """Escaped text with a line-break chance after every ``_`` and ``.`` (identifiers break only there)."""
    return Markup(re.sub(r"([_.])", r"\1<wbr>", str(escape(text))))


def figure_view(chapter: Chapter, key: str, lang: str, uri: str) -> dict[str, Any]:
    gettext = i18n.translations(lang).gettext
    spec = chapter.figures[key]
    return {"key": key, "id": f"fig-{key}", "label": gettext("Figure") + " " + spec.number, "uri": uri,
            "caption": gettext(spec.caption) % {k: gettext(str(v)) for k, v in spec.args.items()},
            "wide": spec.wide, "number": spec.number}


def html(data: ReportData, chapter: Chapter, lang: str, uris: dict[str, str], *, notebooks: dict[str, str],
         created: datetime | None = None) -> str:
    """The chapter in ``lang`` as one HTML page; ``uris`` are the figures' PNG data URIs, ``notebooks``
    variant id -> link (relative to the page) of its executed notebook."""
    fmt = i18n.Formatter(lang)
    tables = {key: table_view(table, lang) for key, table in chapter.tables.items()}
    figs = {key: figure_view(chapter, key, lang, uris[key]) for key in chapter.figures}
    gettext = i18n.translations(lang).gettext
    number = next(iter(chapter.tables.values())).number.split(".")[0] if chapter.tables else "4"
    found = findings.derive(data)
    titles = [(sid, title) for sid, title in SECTIONS if sid != "conclusion" or found.answer is not None]
    sections = [{"id": sid, "title": gettext(title), "number": f"{number}.{index}"}
                for index, (sid, title) in enumerate(titles, 1)]
    context = {
        "lang": lang, "other": [code for code in i18n.LANGUAGES if code != lang],
        "chapter_no": number, "sections": sections,
        "data": data, "fd": found, "t": tables, "f": figs, "fmt": fmt, "notebooks": notebooks,
        "created": fmt.date(created or datetime.now(timezone.utc)),
        "css": (settings.TEMPLATES_DIR / "report.css").read_text(encoding="utf-8"),
    }
    return environment(lang).get_template("report.html.j2").render(**context)


def write_pdf(html_text: str, target: Path, base_url: Path) -> int:
    """``report.pdf`` (A4, WeasyPrint); returns the page count."""
    from PIL import ImageFile

    from trashnet.core import fileio

    strict = ImageFile.LOAD_TRUNCATED_IMAGES
    import weasyprint

    ImageFile.LOAD_TRUNCATED_IMAGES = strict  # its import sets it True for the whole process

    for name in ("weasyprint", "fontTools"):
        logging.getLogger(name).setLevel(logging.ERROR)
    document = weasyprint.HTML(string=html_text, base_url=str(base_url)).render()
    fileio.atomic_write_bytes(target, document.write_pdf())
    return len(document.pages)
