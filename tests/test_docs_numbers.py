"""The measured numbers quoted in docs/ agree with the result files they name (trashnet.report.docnumbers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trashnet.core import settings
from trashnet.report import docnumbers

DOCS = sorted((settings.REPO_ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("doc", DOCS, ids=[doc.name for doc in DOCS])
def test_quoted_numbers_match_their_files(doc):
    problems = docnumbers.check(doc)
    hint = "\n(the file wins: python -m trashnet.report.docnumbers --write docs/*.md)"
    assert not problems, "\n".join(problem.describe() for problem in problems) + hint


def test_the_docs_quote_through_markers():
    """The conversion happened: a check over no markers would pass vacuously."""
    assert sum(len(docnumbers.markers(doc)) for doc in DOCS) >= 200


def _tree(tmp_path: Path, doc_text: str) -> Path:
    (tmp_path / "bench.json").write_text(json.dumps(
        {"runs": [{"variant": "a", "accuracy": 0.8186, "bytes": 2256582}, {"variant": "b", "accuracy": 0.7907}]}))
    doc = tmp_path / "doc.md"
    doc.write_text(doc_text)
    return doc


def test_a_wrong_number_is_caught_and_rewritten(tmp_path):
    gap = "<!-- n: b runs[variant=a].accuracy - runs[variant=b].accuracy pp2 -->+3.00<!-- /n -->"
    doc = _tree(tmp_path, "<!-- n-file b = bench.json -->\n\n"
                          "a: <!-- n: b runs[variant=a].accuracy pct1 -->81.9<!-- /n --> %, "
                          f"gap {gap} pp, <!-- n: bench.json runs[0].bytes mb2 -->2.26<!-- /n --> MB\n")
    (problem,) = docnumbers.check(doc, root=tmp_path)
    assert (problem.marker.line, problem.marker.text, problem.expected) == (3, "+3.00", "+2.79")
    assert docnumbers.rewrite(doc, root=tmp_path) == 1
    assert docnumbers.check(doc, root=tmp_path) == []
    assert "-->+2.79<!-- /n --> pp" in doc.read_text()


@pytest.mark.parametrize("spec", ["missing.json runs[0].accuracy pct1", "bench.json runs[variant=c].accuracy pct1",
                                  "bench.json runs[1].bytes int", "@nowhere/x.json a pct1",
                                  "bench.json runs[0].accuracy pct9"])
def test_an_unreadable_source_is_a_failure(tmp_path, spec):
    doc = _tree(tmp_path, f"x: <!-- n: {spec} -->1<!-- /n -->\n")
    (problem,) = docnumbers.check(doc, root=tmp_path)
    assert problem.expected is None and problem.reason.split(":")[0].endswith("Error")


def test_a_marker_may_not_start_a_line(tmp_path):
    """Markdown would read the line as an HTML block and end the paragraph there."""
    doc = _tree(tmp_path, "The first model scores\n<!-- n: bench.json runs[0].accuracy pct1 -->81.9<!-- /n --> %.\n")
    (problem,) = docnumbers.check(doc, root=tmp_path)
    assert "starts a line" in problem.reason


def test_the_command_line_exit_status(tmp_path, capsys):
    doc = _tree(tmp_path, "b: <!-- n: bench.json runs[1].accuracy pct2 -->79.07<!-- /n --> %\n")
    assert docnumbers.main(["--check", "--root", str(tmp_path), str(doc)]) == 0
    doc.write_text(doc.read_text().replace("79.07", "79.10"))
    assert docnumbers.main(["--check", "--root", str(tmp_path), str(doc)]) == 1
    assert "the file says '79.07'" in capsys.readouterr().out


def test_a_changed_number_in_a_real_doc_is_caught(tmp_path):
    """Copy a real page, alter one quoted number: the check against the real result files names it."""
    page = settings.REPO_ROOT / "docs" / "transfer-learning.md"
    first = docnumbers.markers(page)[0]
    altered = tmp_path / page.name
    altered.write_text(page.read_text().replace(f"-->{first.text}<!-- /n -->", "-->0.0<!-- /n -->", 1))
    (problem,) = docnumbers.check(altered)
    assert (problem.marker.path, problem.expected) == (first.path, first.text)
