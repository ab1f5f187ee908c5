"""The stage registry: one entry per stage, and everything the runner, the command line and the tests know
about it.

A stage has one name everywhere: its entry here, its command (``python -m trashnet <name>``), its module, its
notebook (``experiments/<name>.ipynb``, which calls the module's ``run`` through ``stages.invoke``) and its
folder (``models/<profile>/<name>/<variant>/``; the report writes ``report/<profile>/``).

What of a variant's config a stage reads is not listed here: the stage records it while it runs
(``config.recording``; ``config_reads.json`` in the variant's folder) and the cache key covers exactly that.

Modules are named, not imported, so that this table sits at the bottom of the package: importing it loads
neither TensorFlow nor the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trashnet.core import settings


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str  # one line: the command's help
    module: str  # package module (dotted, under trashnet) whose ``run`` does the stage's work
    outputs: str  # what one variant's folder holds when the stage is done
    per_variant: bool = True  # False: one run per profile (the report)
    tools: tuple[str, ...] = ()  # modules the stage runs in another process: their code keys it too

    @property
    def notebook(self) -> Path | None:
        return settings.EXPERIMENTS_DIR / f"{self.name}.ipynb" if self.per_variant else None

    @property
    def code_modules(self) -> tuple[str, ...]:
        """Where the stage's import closure starts (its notebook's own imports are added to it)."""
        return (self.module, *self.tools)


# Keyed by settings.STAGES (the variant stages, in order; tests check it), then the report.
STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("train", "train one architecture (a baseline) and measure it", "stages.train",
          "<id>.keras, metrics.json, predictions.csv, history.csv"),
    Stage("prune", "prune a trained model with tfmot (2:4, unstructured, XNNPack), fine-tune and measure it",
          "stages.prune", "<id>.keras, <id>.tflite, <id>.sparse.tflite, metrics.json (sparsity per layer)"),
    Stage("quantize", "convert a trained or pruned model to one TFLite precision and measure it in LiteRT",
          "stages.quantize", "<id>.tflite, metrics.json (LiteRT accuracy, latency, op census)"),
    # tools/write_metadata and tools/mediapipe_consumers (parity) run in their own venvs (subprocesses):
    # named so that their code keys the stage.
    Stage("final", "choose the deployment model by the selection rule and build it (metadata, model card)",
          "stages.final", "trashnet.tflite, labels.txt, model_card.{json,md}, selection.json, stats.json, "
          "metrics.json (with parity), SHA256SUMS", tools=("tools.write_metadata", "tools.mediapipe_consumers")),
    Stage("report", "build the results chapter of a profile (id, en: HTML, PDF, exports) from the result files",
          "report.build", "{id,en}/{index.html,report.pdf}, exports/{id,en}/", per_variant=False),
)}
DATA_MODULES = ("data.prepare",)  # `prepare`: what the dataset folder depends on


def get(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}") from None
