"""The linear probe beside the baselines (issue 27): ``report --probe-from benchmarks/results/linear_probe.json``.

``benchmarks/bench_linear_probe.py`` fits a logistic regression on each ImageNet baseline's frozen features, at
the weights' own 224 px and at the run's input. It is the floor fine-tuning is judged against: a baseline that
scores below it has lost what the pretrained features already knew. The chapter gets one table, each baseline
beside its probe rows (matched by variant id, architecture and weights file), and the counts the text states.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ValidationError

from trashnet.core import fileio
from trashnet.core.errors import UsageError
from trashnet.report import collect
from trashnet.report.i18n import N_
from trashnet.report.items import Chapter, Column, Table

TABLE_KEY = "probe"
OWN_SIZE = 224  # the ImageNet weights' own input side


class Scores(BaseModel):
    accuracy: float


class ProbeScores(BaseModel):
    test: Scores
    ood: Scores | None = None


class ProbeRow(BaseModel):
    """One row of the benchmark's ``rows`` (the fields the chapter reads)."""

    variant: str
    arch: str
    weights: str  # the starting weights' record (``imagenet.weights_origin``), as in the baseline's metrics.json
    input_px: int  # the side of the photo the model is given (before any input pooling)
    image_size: int  # the side the backbone sees (input_px / the input pooling)
    scores: ProbeScores


class Line(BaseModel):
    """One baseline of the report's run beside its probe at 224 px and at the run's input."""

    id: str
    accuracy: float | None
    ood_accuracy: float | None
    own: ProbeScores | None  # the probe at OWN_SIZE
    at_input: ProbeScores | None  # the probe at the baseline's own input, when measured
    input_size: int | None  # the side its backbone sees there (after any input pooling)

    def above(self, probe: ProbeScores | None, split: str) -> bool | None:
        mine = self.accuracy if split == "test" else self.ood_accuracy
        theirs = None if probe is None else getattr(probe, split)
        return None if mine is None or theirs is None else mine > theirs.accuracy


class Probe(BaseModel):
    source: str  # the file's name, as the chapter cites it
    lines: list[Line]

    def count(self, at: str, split: str) -> int:
        """How many baselines are more accurate than their probe (``at``: "own" or "at_input") on ``split``."""
        return sum(bool(line.above(getattr(line, at), split)) for line in self.lines)

    def mean_ood(self, at: str) -> float | None:
        """The probe's mean OOD accuracy over the baselines that have it (``at``: "own" or "at_input")."""
        values = [probe.ood.accuracy for line in self.lines
                  if (probe := getattr(line, at)) is not None and probe.ood is not None]
        return sum(values) / len(values) if values else None

    @property
    def input_sizes(self) -> list[int]:
        """The sides the run's backbones see, where the probe was measured there too."""
        return sorted({line.input_size for line in self.lines if line.at_input is not None and line.input_size})

    @property
    def input_costs_ood(self) -> bool:
        """The frozen features score lower on OOD photos at the run's smaller input than at 224 px."""
        own, at_input = self.mean_ood("own"), self.mean_ood("at_input")
        return (own is not None and at_input is not None and at_input < own
                and all(size < OWN_SIZE for size in self.input_sizes))


def read_rows(path: Path) -> list[ProbeRow]:
    """The probe rows of a ``bench_linear_probe.py`` JSON file; a missing or malformed file is a one-line error."""
    if not path.is_file():
        raise UsageError(f"--probe-from {path} is not a file", "pass benchmarks/results/linear_probe.json")
    try:
        rows = fileio.read_json(path)["rows"]
        return [ProbeRow.model_validate(row) for row in rows.values()]
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as error:
        raise UsageError(f"--probe-from {path} is not a linear-probe result ({type(error).__name__}: "
                         f"{str(error).splitlines()[0]})",
                         "pass the JSON file written by benchmarks/bench_linear_probe.py") from None


def match(baselines: list[collect.Variant], rows: list[ProbeRow], source: Path) -> Probe:
    """Each baseline (``compare.baselines``: scored, first seed) beside the probe rows of the same variant id,
    architecture and starting weights (the same file, by its sha256)."""
    lines = []
    for v in sorted(baselines, key=lambda v: v.id):
        if not (v.metrics.weights or "").startswith("imagenet"):
            continue  # the probe is of ImageNet features: the floor of a model fine-tuned from them
        mine = [r for r in rows if (r.variant, r.arch, r.weights) == (v.id, v.metrics.arch, v.metrics.weights)]
        own = next((r for r in mine if r.input_px == OWN_SIZE and r.image_size == OWN_SIZE), None)
        at_input = next((r for r in mine if r.input_px == v.metrics.image_size), None)
        if own or at_input:
            lines.append(Line(id=v.id, accuracy=v.value("accuracy"), ood_accuracy=v.value("ood_accuracy"),
                              own=own and own.scores, at_input=at_input and at_input.scores,
                              input_size=at_input and at_input.image_size))
    if not lines:
        raise UsageError(f"--probe-from {source}: none of its rows is of a baseline of this run (variant id, "
                         f"architecture and weights)", "pass the probe measured for this run's profile "
                         "(benchmarks/bench_linear_probe.py --profile ...)")
    return Probe(source=source.name, lines=lines)


def section(chapter: Chapter, data: collect.ReportData) -> None:
    """The table of the baselines against their probe, when the report was given one (``data.probe``)."""
    probe: Probe | None = data.probe
    if probe is None:
        return
    columns = [Column("id", N_("Model")), Column("accuracy", N_("TrashNet, fine-tuned"), "pct", "%"),
               Column("probe", N_("TrashNet, probe at 224 px"), "pct", "%"),
               Column("ood", N_("OOD, fine-tuned"), "pct", "%"),
               Column("probe_ood", N_("OOD, probe at 224 px"), "pct", "%"),
               Column("probe_input", N_("TrashNet, probe at the run's input"), "pct", "%"),
               Column("probe_input_ood", N_("OOD, probe at the run's input"), "pct", "%")]

    def value(scores: ProbeScores | None, split: str) -> float | None:
        part = None if scores is None else getattr(scores, split)
        return None if part is None else part.accuracy

    rows = [[line.id, line.accuracy, value(line.own, "test"), line.ood_accuracy, value(line.own, "ood"),
             value(line.at_input, "test"), value(line.at_input, "ood")] for line in probe.lines]
    chapter.add_table(Table(TABLE_KEY, N_("Baselines against a linear probe of the same ImageNet weights (logistic "
                                          "regression on the frozen features, no fine-tuning; %(source)s)"),
                            columns, rows, {"source": probe.source}))
