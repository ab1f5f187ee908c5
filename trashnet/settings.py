"""One place for paths, environment variables and fixed names.

Everything generated lives under one output root (``TRASHNET_OUT``, default: the repository), in the
research layout ``dataset/``, ``models/{baseline,pruned,quantized,final}/``, ``report/``, plus ``logs/``
and a ``.cache/`` of derived arrays. Raw data is never written to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
RESOURCES_DIR = PACKAGE_DIR / "resources"
SAMPLE_DIR = RESOURCES_DIR / "sample"  # small bundled TrashNet sample: tests and the default run
OFFICIAL_SPLITS_DIR = RESOURCES_DIR / "trashnet_splits"  # the TrashNet authors' train/val/test lists
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
PROFILES_DIR = EXPERIMENTS_DIR / "profiles"
VARIANTS_FILE = EXPERIMENTS_DIR / "variants.yaml"
TEMPLATES_DIR = REPO_ROOT / "templates"
LOCK_FILE = REPO_ROOT / "requirements.lock"

# Environment variables the project reads (documented in the README).
ENV_DATA = "TRASHNET_DATA"  # a folder of <class>/<image> files; unset = the bundled sample
ENV_OUT = "TRASHNET_OUT"  # output root; unset = the repository root
ENV_REAL_DATA = "TRASHNET_REAL_DATA"  # tests: the full TrashNet dataset-resized folder

SPLITS = ("train", "validation", "test")
STAGES = ("baseline", "pruned", "quantized", "final")
MANIFEST_NAME = "manifest.csv"  # written by `prepare` into the dataset folder
RUN_MANIFEST_NAME = "manifest.json"  # written last into a finished variant folder: its "done" marker
# Result files (their typed models live in trashnet/results.py). In a variant folder:
METRICS_FILE = "metrics.json"  # every stage: the variant's result record
PREDICTIONS_FILE = "predictions.csv"  # one row per test image: path, true, predicted, confidence, probabilities
HISTORY_FILE = "history.csv"  # training stages: one row per epoch
FAILED_FILE = "failed.json"  # the runner, instead of manifest.json, when the notebook raised
# In the final folder, beside metrics.json:
SELECTION_FILE = "selection.json"
MODEL_CARD_FILE = "model_card.json"
MODEL_CARD_MD = "model_card.md"
VERIFICATION_FILE = "verification.json"
SUMS_FILE = "SHA256SUMS"
STATS_FILE = "stats.json"  # significance (trashnet/stats.py); absent = not run
RUN_RECORD = "run.json"  # <out>/logs/run.json: what the last run did
# The one parameterized notebook per stage, run by papermill for each variant of that stage.
NOTEBOOKS = {
    "baseline": EXPERIMENTS_DIR / "baseline.ipynb",
    "pruned": EXPERIMENTS_DIR / "prune.ipynb",
    "quantized": EXPERIMENTS_DIR / "quantize.ipynb",
    "final": EXPERIMENTS_DIR / "final.ipynb",
}


def default_data_source() -> Path:
    """The data folder to prepare: ``$TRASHNET_DATA`` if set, else the bundled sample."""
    value = os.environ.get(ENV_DATA)
    return Path(value).expanduser().resolve() if value else SAMPLE_DIR


def default_output_root() -> Path:
    value = os.environ.get(ENV_OUT)
    return Path(value).expanduser().resolve() if value else REPO_ROOT


@dataclass(frozen=True)
class Layout:
    """Where everything generated goes, under one root."""

    root: Path

    @classmethod
    def default(cls) -> "Layout":
        return cls(default_output_root())

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def data_manifest(self) -> Path:
        return self.dataset / MANIFEST_NAME

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def cache(self) -> Path:
        return self.root / ".cache"

    def stage_dir(self, stage: str) -> Path:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
        return self.models / stage

    def variant_dir(self, stage: str, variant: str) -> Path:
        # There is one final model: it lives in models/final/ itself, where the deployment app fetches it.
        if stage == "final":
            return self.stage_dir(stage)
        return self.stage_dir(stage) / variant
