"""Measured numbers in ``docs/*.md``, re-rendered from the result files they are quoted from.

A quoted number sits between two HTML comments (invisible in rendered Markdown) that name its source::

    <!-- n: benchmarks/results/ablate_transfer.json recipes.lpft.scores.test.accuracy pct1 -->88.6<!-- /n --> %

The opening comment holds ``SOURCE PATH [-|/ [SOURCE] PATH] FORMAT``:

- ``SOURCE``: a JSON file relative to the repository root, or ``@name/rest`` for the file ``rest`` in the
  folder ``SOURCES[name]`` below (the result folders that get regenerated under new names are named once,
  there): ``@cpu-final/stats.json``;
- ``PATH``: keys joined by dots; ``[3]`` indexes a list and ``[key=value]`` picks the one list item whose
  ``key`` is ``value``, ``[a=x,b=y]`` the one matching both (``datasets.ood_dev[consumer=mediapipe].agreement``);
  ``- PATH`` subtracts a second value of the same file, ``- SOURCE PATH`` one of another file, ``/`` divides
  by it (a difference or a ratio quoted in the text);
- ``FORMAT``: one of ``FORMATS`` (``pct1``: a fraction as a percentage with one decimal, ``pp1``: a signed
  difference of fractions in percentage points, ``int``: an integer with thousands separators, ...).

A document may name its files once, in a comment of its own line, and use the short name in its markers::

    <!-- n-file transfer = benchmarks/results/ablate_transfer.json -->
    LP-FT reaches <!-- n: transfer recipes.lpft.scores.test.accuracy pct1 -->88.6<!-- /n --> %

``python -m trashnet.report.docnumbers --check docs/*.md`` exits 1 when a quoted number differs from its
file or a source cannot be read; ``--write`` re-renders every marked number in place.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

from pydantic import BaseModel

from trashnet.core import settings

# Result folders that the docs quote and that a later run may move or rename: a marker's ``@name/rest``
# reads ``SOURCES[name]/rest``, so repointing them is one line here, not one edit per marker.
SOURCES: dict[str, str] = {
    "cpu-baseline": "results/cpu-scratch/models/baseline",
    "cpu-pruned": "results/cpu-scratch/models/pruned",
    "cpu-quantized": "results/cpu-scratch/models/quantized",
    "cpu-final": "results/cpu-scratch/models/final",
    "cpu-logs": "results/cpu-scratch/logs",
    "seeds-baseline": "results/cpu-scratch-seeds/models/baseline",
    "seeds-pruned": "results/cpu-scratch-seeds/models/pruned",
    "seeds-quantized": "results/cpu-scratch-seeds/models/quantized",
    "seeds-final": "results/cpu-scratch-seeds/models/final",
    "seeds-logs": "results/cpu-scratch-seeds/logs",
    # The thesis run from ImageNet weights (issue 27).
    "imagenet-train": "results/cpu/models/train",
    "imagenet-prune": "results/cpu/models/prune",
    "imagenet-quantize": "results/cpu/models/quantize",
    "imagenet-final": "results/cpu/models/final",
    "imagenet-logs": "results/cpu/logs",
    "imagenet-seeds-final": "results/cpu-seeds/models/final",
    "imagenet-seeds-logs": "results/cpu-seeds/logs",
}


def _signed(scale: float, decimals: int) -> Callable[[float], str]:
    return lambda value: f"{value * scale:+.{decimals}f}"


def _fixed(scale: float, decimals: int) -> Callable[[float], str]:
    return lambda value: f"{value * scale:.{decimals}f}"


FORMATS: dict[str, Callable[[Any], str]] = {
    "pct0": _fixed(100, 0), "pct1": _fixed(100, 1), "pct2": _fixed(100, 2),  # fraction -> percent
    "pp1": _signed(100, 1), "pp2": _signed(100, 2),  # difference of fractions -> signed points
    "sign1": _signed(1, 1), "sign2": _signed(1, 2),  # a value already in points, signed
    "f0": _fixed(1, 0), "f1": _fixed(1, 1), "f2": _fixed(1, 2), "f3": _fixed(1, 3), "f4": _fixed(1, 4),
    "mb2": _fixed(1e-6, 2),  # bytes -> MB (10^6)
    "min0": _fixed(1 / 60, 0), "min1": _fixed(1 / 60, 1),  # seconds -> minutes
    "int": lambda value: f"{value:,.0f}",  # rounded, with thousands separators
    "sci0": lambda value: f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e+"),
    "text": str,
}

OPERATIONS: dict[str, Callable[[float, float], float]] = {"-": lambda a, b: a - b, "/": lambda a, b: a / b}
MARKER = re.compile(r"<!-- n: (?P<spec>[^>]*?) -->(?P<text>.*?)<!-- /n -->")
ALIAS = re.compile(r"^<!-- n-file (?P<name>[\w-]+) = (?P<source>\S+) -->$", re.MULTILINE)
_STEP = re.compile(r"\[(?P<index>\d+)\]|\[(?P<select>[^\]]*=[^\]]*)\]|\.?(?P<name>[^.\[\]]+)")


class Marker(BaseModel):
    """One marked number: where it is, what it says and where it comes from."""

    doc: str
    line: int
    source: str
    path: str
    op: str | None = None  # "-" or "/": combined with a second value
    other: str | None = None
    other_source: str | None = None  # None: the same file as ``source``
    format: str
    text: str
    at_line_start: bool = False


class Mismatch(BaseModel):
    marker: Marker
    expected: str | None  # None: the source could not be read
    reason: str = ""

    def describe(self) -> str:
        where = f"{self.marker.doc}:{self.marker.line}: {self.marker.source} {self.marker.path}"
        if self.expected is None:
            return f"{where}: {self.reason}"
        return f"{where}: the doc says {self.marker.text!r}, the file says {self.expected!r}"


def parse_spec(spec: str, aliases: dict[str, str]) -> dict[str, str | None]:
    """``SOURCE PATH [-|/ [SOURCE] PATH] FORMAT`` -> the fields of a ``Marker`` (a source may be a doc's alias)."""
    words = spec.split()
    if len(words) == 6:
        words[3] = aliases.get(words[3], words[3])
    words[0] = aliases.get(words[0], words[0])
    if len(words) == 3:
        return {"source": words[0], "path": words[1], "format": words[2]}
    if len(words) in (5, 6) and words[2] in OPERATIONS:
        return {"source": words[0], "path": words[1], "op": words[2],
                "other_source": words[3] if len(words) == 6 else None, "other": words[-2], "format": words[-1]}
    raise ValueError(f"marker {spec!r}: expected 'SOURCE PATH [-|/ [SOURCE] PATH] FORMAT'")


def aliases(text: str) -> dict[str, str]:
    """A document's ``<!-- n-file NAME = SOURCE -->`` lines."""
    return {match["name"]: match["source"] for match in ALIAS.finditer(text)}


def markers(doc: Path) -> list[Marker]:
    text = doc.read_text(encoding="utf-8")
    names, found = aliases(text), []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in MARKER.finditer(line):
            starts = not line[: match.start()].strip()
            found.append(Marker(doc=str(doc), line=number, text=match["text"], at_line_start=starts,
                                **parse_spec(match["spec"], names)))
    return found


def source_file(source: str, root: Path) -> Path:
    """``path/from/root.json``, or ``@name/rest`` read below the folder ``SOURCES[name]``."""
    if not source.startswith("@"):
        return root / source
    name, _, rest = source[1:].partition("/")
    if name not in SOURCES:
        raise KeyError(f"unknown named source @{name} (SOURCES: {', '.join(sorted(SOURCES))})")
    return root / SOURCES[name] / rest


def _load(path: Path) -> Any:
    return _parse(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=64)
def _parse(path: Path, mtime_ns: int) -> Any:  # the modification time keys the cache: a rewritten file is reread
    return json.loads(path.read_text(encoding="utf-8"))


def lookup(data: Any, path: str) -> Any:
    """The value at ``path`` (dots, ``[n]`` and ``[key=value]``) in parsed JSON; KeyError if absent."""
    value, position = data, 0
    while position < len(path):
        step = _STEP.match(path, position)
        if not step or step.end() == position:
            raise KeyError(f"cannot read path {path!r} at {path[position:]!r}")
        position = step.end()
        if step["index"] is not None:
            value = value[int(step["index"])]
        elif step["select"] is not None:
            wanted = dict(pair.split("=", 1) for pair in step["select"].split(","))
            hits = [item for item in value if all(str(item.get(key)) == text for key, text in wanted.items())]
            if len(hits) != 1:
                raise KeyError(f"{path}: {len(hits)} items with {step['select']}")
            value = hits[0]
        else:
            value = value[step["name"]]
    return value


def render(marker: Marker, root: Path) -> str:
    """The text the marker's source says it should show."""
    value = lookup(_load(source_file(marker.source, root)), marker.path)
    if marker.op is not None:
        other = lookup(_load(source_file(marker.other_source or marker.source, root)), marker.other)
        value = OPERATIONS[marker.op](value, other)
    return FORMATS[marker.format](value)


def check(doc: Path, root: Path = settings.REPO_ROOT) -> list[Mismatch]:
    """Every marker of ``doc`` whose text differs from its source, whose source cannot be read, or that starts
    a line (Markdown takes a line that starts with ``<!--`` for an HTML block, which ends the paragraph)."""
    problems = []
    for marker in markers(doc):
        if marker.at_line_start:
            problems.append(Mismatch(marker=marker, expected=None, reason="starts a line: move a word before it"))
            continue
        try:
            expected = render(marker, root)
        except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
            problems.append(Mismatch(marker=marker, expected=None, reason=f"{type(error).__name__}: {error}"))
            continue
        if expected != marker.text:
            problems.append(Mismatch(marker=marker, expected=expected))
    return problems


def rewrite(doc: Path, root: Path = settings.REPO_ROOT) -> int:
    """Re-render every marked number of ``doc`` in place; returns how many changed."""
    changed = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal changed
        text = render(Marker(doc=str(doc), line=0, text="", **parse_spec(match["spec"], names)), root)
        changed += text != match["text"]
        return f"<!-- n: {match['spec']} -->{text}<!-- /n -->"

    original = doc.read_text(encoding="utf-8")
    names = aliases(original)
    updated = MARKER.sub(replace, original)
    if updated != original:
        doc.write_text(updated, encoding="utf-8")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trashnet.report.docnumbers", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if a quoted number differs from its file")
    mode.add_argument("--write", action="store_true", help="re-render every marked number in place")
    parser.add_argument("--root", type=Path, default=settings.REPO_ROOT, help="where the sources' paths start")
    parser.add_argument("docs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.write:
        for doc in args.docs:
            print(f"{doc}: {rewrite(doc, args.root)} number(s) changed")
        return 0
    problems = [problem for doc in args.docs for problem in check(doc, args.root)]
    for problem in problems:
        print(problem.describe())
    count = sum(len(markers(doc)) for doc in args.docs)
    print(f"{count} marked number(s) in {len(args.docs)} file(s), {len(problems)} disagreement(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
