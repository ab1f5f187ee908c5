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

from trashnet.core import settings

LANGUAGES = ("id", "en")
DOMAIN = "report"
LOCALE_DIR = settings.PACKAGE_DIR / "locale"
NBSP = "\u00a0"
MINUS = "\u2212"
# Prose differences (PUEBI: "poin persentase", not "+0,23 pp"): higher, lower, no difference.
PROSE_DIFF = {"id": ("poin persentase lebih tinggi", "poin persentase lebih rendah", "sama"),
              "en": ("percentage points higher", "percentage points lower", "the same")}
SMALL_NUMBERS = {"id": ("nol", "satu", "dua", "tiga", "empat", "lima", "enam", "tujuh", "delapan", "sembilan"),
                 "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")}
P_FLOOR = 0.001  # p-values below it are shown as "< 0.001"


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
        # One minus sign everywhere: U+2212, never the hyphen Babel writes.
        return format_decimal(value, format=pattern, locale=self.locale).replace("-", MINUS)

    def pct(self, fraction: float | None, decimals: int = 2) -> str:
        """0.8651 -> "86,51%" (id) / "86.51%" (en): no space before % (PUEBI)."""
        return "–" if fraction is None else f"{self.number(100 * fraction, decimals)}%"

    def p_value(self, p: float | None) -> str:
        """A p-value: "< 0,001" below a thousandth, else three decimals."""
        if p is None:
            return "–"
        return f"<{NBSP}{self.number(P_FLOOR, 3)}" if p < P_FLOOR else self.number(p, 3)

    def pp(self, value: float | None, decimals: int = 2) -> str:
        if value is None:
            return "–"
        sign = "+" if value > 0 else MINUS if value < 0 else "±"
        return f"{sign}{self.number(abs(value), decimals)}{NBSP}pp"

    def diff(self, value: float | None) -> str:
        """A difference in percentage points for prose, without a sign: "2,33 poin persentase lebih tinggi"."""
        if value is None:
            return "–"
        words = PROSE_DIFF[self.lang]
        if round(value, 2) == 0:
            return words[2]
        return f"{self.number(abs(value))} {words[0] if value > 0 else words[1]}"

    def count(self, n: int | None) -> str:
        """A count in prose: below ten in words (PUEBI; English house style too), else digits."""
        if n is None:
            return "–"
        return SMALL_NUMBERS[self.lang][n] if 0 <= n < 10 else self.number(n, 0)

    def p_text(self, p: float | None) -> str:
        """"p = 0,212" or "p < 0,001" for prose."""
        shown = self.p_value(p)
        return f"p{NBSP}{shown}" if shown.startswith("<") else f"p{NBSP}={NBSP}{shown}"

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
        if kind == "p":
            return self.p_value(value)
        if kind == "sd":
            return self.number(100 * value, 2)
        if kind == "int":
            return self.number(value, 0)
        return str(value)

    def date(self, moment: datetime) -> str:
        return format_datetime(moment, format="d MMMM y, HH:mm 'UTC'", locale=self.locale)
