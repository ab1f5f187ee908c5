"""Languages: gettext catalogs (Babel) and per-locale number and date formatting.

The Indonesian catalog is ``trashnet/locale/id/LC_MESSAGES/report.po``; it is compiled in memory when a
report is built (no ``.mo`` file to keep in sync). English is the source language: its catalog is empty.
``tests/test_report_i18n.py`` checks that every message of the templates and of the report code has an
Indonesian translation.
"""

from __future__ import annotations

import gettext
import io
from datetime import datetime
from functools import lru_cache

from babel import Locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from trashnet import settings

LANGUAGES = ("id", "en")
DOMAIN = "report"
LOCALE_DIR = settings.PACKAGE_DIR / "locale"
NBSP = "\u00a0"


def N_(message: str) -> str:  # noqa: N802 - the gettext convention: marks a message for extraction
    return message


def po_path(lang: str):
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=None)
def translations(lang: str) -> gettext.NullTranslations:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown report language {lang!r}; choose one of {', '.join(LANGUAGES)}")
    path = po_path(lang)
    if not path.is_file():
        return gettext.NullTranslations()
    with open(path, "rb") as handle:
        catalog = read_po(handle, locale=lang, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


class Formatter:
    """Numbers in one locale, in the report's units: % (of a fraction), MB (10^6 bytes), ms, M (10^6)."""

    def __init__(self, lang: str):
        self.lang = lang
        self.locale = Locale.parse(lang)

    def number(self, value: float | None, decimals: int = 2) -> str:
        if value is None:
            return "–"
        pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
        return format_decimal(value, format=pattern, locale=self.locale)

    def pct(self, fraction: float | None, decimals: int = 2) -> str:
        """0.8651 -> "86,51 %" (id) / "86.51 %" (en)."""
        return "–" if fraction is None else f"{self.number(100 * fraction, decimals)}{NBSP}%"

    def pp(self, value: float | None, decimals: int = 2) -> str:
        if value is None:
            return "–"
        sign = "+" if value > 0 else "−" if value < 0 else "±"
        return f"{sign}{self.number(abs(value), decimals)}{NBSP}pp"

    def cell(self, value: float | None, kind: str) -> str:
        """A table cell without its unit (the unit is in the column header)."""
        if value is None:
            return "–"
        if kind == "pct":
            return self.number(100 * value, 2)
        if kind == "pp":
            return self.pp(value).replace(f"{NBSP}pp", "")
        if kind == "mb":
            return self.number(value / 1e6, 2)
        if kind == "ms":
            return self.number(value, 2)
        if kind == "mega":
            return self.number(value / 1e6, 2)
        if kind == "min":
            return self.number(value / 60, 1)
        if kind == "ratio":
            return self.number(value, 3)
        if kind == "int":
            return self.number(value, 0)
        return str(value)

    def date(self, moment: datetime) -> str:
        return format_datetime(moment, format="d MMMM y, HH:mm 'UTC'", locale=self.locale)
