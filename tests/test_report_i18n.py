"""The Indonesian catalog is in sync with the templates and the report code: every message has a
translation with the same placeholders, and the catalog holds nothing that is no longer used."""

from __future__ import annotations

import re

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from trashnet.report import figures
from trashnet.core import settings
from trashnet.report import i18n

METHODS = [("trashnet/report/**.py", "python"), ("templates/**.j2", "jinja2")]
OPTIONS = {"templates/**.j2": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
KEYWORDS = {"_": None, "gettext": None, "N_": None}


def messages() -> set[str]:
    found = {message for _, _, message, _, _ in extract_from_dir(
        settings.REPO_ROOT, METHODS, options_map=OPTIONS, keywords=KEYWORDS)}
    return found | set(figures.TEXT.values())  # the labels drawn inside figures


def test_every_message_has_an_indonesian_translation():
    with open(i18n.po_path("id"), "rb") as handle:
        catalog = read_po(handle, locale="id")
    translated = {m.id: m.string for m in catalog if m.id}
    used = messages()
    assert len(used) > 150
    missing = sorted(m for m in used if not translated.get(m))
    assert not missing, f"add to {i18n.po_path('id')}: {missing}"
    unused = sorted(set(translated) - used)
    assert not unused, f"no longer used, remove from the catalog: {unused}"
    for message, text in translated.items():
        assert sorted(re.findall(r"%\(\w+\)s", message)) == sorted(re.findall(r"%\(\w+\)s", text)), message
        assert message.count("%%") == text.count("%%"), message


def test_the_catalog_compiles_and_translates():
    gettext = i18n.translations("id").gettext
    assert gettext("Table") == "Tabel" and gettext("Figure") == "Gambar" and gettext("Pruning") == "Pemangkasan"
    assert i18n.translations("en").gettext("Table") == "Table"
