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


def test_the_initial_weights_row_is_said_in_the_report_language():
    """The appendix's "Initial weights" cell: the English provenance line of every ImageNet file is read back
    into parts and said in Indonesian (file names and hashes kept); any other weights value is shown as is."""
    from trashnet.data import imagenet_files
    from trashnet.report import render, weights_text
    from trashnet.report.items import Column, Table

    origins = [imagenet_files.provenance(arch) for arch in imagenet_files.SOURCES] + ["random"]
    table = Table("environment", "Hardware, software versions and initial weights",
                  [Column("key", "Item"), Column("value", "Value")],
                  [["Initial weights", weights_text.weights_cell(origin, ["m1", "m2"])] for origin in origins])
    cells = [row["cells"][1]["text"] for row in render.table_view(table, "id", fold=False)["rows"]]
    for origin, text in zip(origins[:-1], cells):
        start = weights_text.read_provenance(origin)
        assert start is not None and all(name in text and sha[:12] in text for name, sha in start.files)
        assert "didekuantisasi" in text and text.endswith(": m1, m2"), text
        assert not re.search(r"dequantized|transplanted|stored|pass-through", text), text
        assert ("ditransplantasikan" in text) == start.transplanted
    assert "int8 per kanal" in " ".join(cells)
    assert cells[-1] == "random: m1, m2"
    english = render.table_view(table, "en", fold=False)["rows"][0]["cells"][1]["text"]
    assert english.startswith("Google's ImageNet TFLite file ") and "dequantized" in english
