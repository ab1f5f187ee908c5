"""One place for paths, environment variables and fixed names.

Everything generated lives under one output root (``TRASHNET_OUT``, default: the repository), one folder
per profile in each part of the research layout: ``dataset/<profile>/``,
``models/<profile>/{train,prune,quantize}/<id>/`` and ``models/<profile>/final/``,
``report/<profile>/``, ``logs/<profile>/`` and ``.cache/<profile>/`` (derived arrays). So the ``cpu`` and
``full`` runs live side by side and never overwrite each other. Raw data is never written to.
Committed reference results use the same layout minus the profile level, under ``results/<profile>/``.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from trashnet.core.errors import UsageError

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # trashnet/, this file is trashnet/core/settings.py
REPO_ROOT = PACKAGE_DIR.parent
RESOURCES_DIR = PACKAGE_DIR / "resources"
SAMPLE_DIR = RESOURCES_DIR / "sample"  # small bundled TrashNet sample: tests and the default run
OFFICIAL_SPLITS_DIR = RESOURCES_DIR / "trashnet_splits"  # the TrashNet authors' train/val/test lists
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
PROFILES_DIR = EXPERIMENTS_DIR / "profiles"
VARIANTS_FILE = EXPERIMENTS_DIR / "variants.yaml"
TEMPLATES_DIR = REPO_ROOT / "templates"
RESULTS_DIR = REPO_ROOT / "results"  # committed reference results, one folder per profile
LOCK_FILE = REPO_ROOT / "requirements.lock"
METADATA_VENV = REPO_ROOT / ".venv-metadata"  # tool venv of tflite-support (requirements-metadata.lock)
MEDIAPIPE_VENV = REPO_ROOT / ".venv-mediapipe"  # tool venv of MediaPipe and OpenCV (requirements-mediapipe.lock)

# Environment variables the project reads (documented in the README).
ENV_DATA = "TRASHNET_DATA"  # a folder of <class>/<image> files; unset = the bundled sample
ENV_OUT = "TRASHNET_OUT"  # output root; unset = the repository root
ENV_REAL_DATA = "TRASHNET_REAL_DATA"  # tests: the full TrashNet dataset-resized folder
ENV_OOD_DATA = "TRASHNET_OOD_DATA"  # a labelled <class>/<image> folder of non-TrashNet photos: every variant
# is also measured on it (the "ood" block of metrics.json); unset = not measured. Never trained on.
ENV_WEIGHTS = "TRASHNET_WEIGHTS"  # the folder of Google's ImageNet TFLite files (trashnet/nets/imagenet.py);
# needed only by `model.weights: imagenet-tflite`; `python -m trashnet download --weights` fills one
ENV_METADATA_PYTHON = "TRASHNET_METADATA_PYTHON"  # the metadata writer's interpreter (default .venv-metadata)
ENV_MEDIAPIPE_PYTHON = "TRASHNET_MEDIAPIPE_PYTHON"  # MediaPipe's interpreter for parity (default .venv-mediapipe)
ENV_PROGRESS = "TRASHNET_PROGRESS"  # set by `run` for each kernel: the progress file it appends to (progress.py)

SPLITS = ("train", "validation", "test")
STAGES = ("train", "prune", "quantize", "final")  # the result stages, each a folder models/<profile>/<stage>/
# Results written before the stages were named by their verb (the from-scratch results of December 2026) use
# these folder and stage names; readers map them (``stage_name``), writers never use them.
LEGACY_STAGES = {"baseline": "train", "pruned": "prune", "quantized": "quantize"}
MANIFEST_NAME = "manifest.csv"  # written by `prepare` into the dataset folder
RUN_MANIFEST_NAME = "manifest.json"  # written last into a finished variant folder: its "done" marker
# Result files (their typed models live in trashnet/core/records.py). In a variant folder:
METRICS_FILE = "metrics.json"  # every stage: the variant's result record
PREDICTIONS_FILE = "predictions.csv"  # one row per test image: path, true, predicted, confidence, probabilities
HISTORY_FILE = "history.csv"  # training stages: one row per epoch
FAILED_FILE = "failed.json"  # the runner, instead of manifest.json, when the notebook raised
CONFIG_READS_FILE = "config_reads.json"  # the config fields the stage read (its cache key covers them)
PROGRESS_FILE = "progress.jsonl"  # the kernel's epoch (and step) events, one JSON line each (progress.py)
# In the final folder, beside metrics.json:
SELECTION_FILE = "selection.json"
MODEL_CARD_FILE = "model_card.json"
MODEL_CARD_MD = "model_card.md"
VERIFICATION_FILE = "verification.json"
SUMS_FILE = "SHA256SUMS"
STATS_FILE = "stats.json"  # significance (trashnet/stages/stats.py); absent = not run
RUN_RECORD = "run.json"  # <out>/logs/run.json: what the last run did


def stage_name(name: str | None) -> str | None:
    """A stage's name as this code calls it, also for results written under a legacy name (``LEGACY_STAGES``)."""
    return LEGACY_STAGES.get(name, name) if name is not None else None


def result_folders(models_dir: Path) -> list[tuple[str, Path]]:
    """(stage, folder) of every variant folder under ``models_dir`` (``models/<profile>/``) of the stages before
    ``final``, in stage then name order; legacy-named stage folders count under their new name. Hidden folders
    are the runner's unfinished ``.<id>.partial-<pid>`` copies: never results."""
    found = []
    for stage in STAGES[:-1]:
        names = [stage] + [old for old, new in LEGACY_STAGES.items() if new == stage]
        for name in names:
            folder = models_dir / name
            if folder.is_dir():
                found += [(stage, path) for path in sorted(folder.iterdir())
                          if path.is_dir() and not path.name.startswith(".")]
    return found


def default_data_source() -> Path:
    """The data folder to prepare: ``$TRASHNET_DATA`` if set, else the bundled sample."""
    value = os.environ.get(ENV_DATA)
    return Path(value).expanduser().resolve() if value else SAMPLE_DIR


def ood_data() -> Path | None:
    """The out-of-distribution folder from ``$TRASHNET_OOD_DATA``, or None when unset."""
    value = os.environ.get(ENV_OOD_DATA)
    return Path(value).expanduser().resolve() if value else None


def gpu_present() -> bool:
    """An NVIDIA device node (Linux, containers given a GPU) or WSL2's GPU bridge: without one, TensorFlow's
    CUDA probe can only fail (keras_env then hides its ERROR line)."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/dxg")


def dist_dir(root: Path) -> Path:
    """Where ``release`` writes ``trashnet-<version>.zip``: one folder for every profile (it is in the name)."""
    return Path(root) / "dist"


def default_output_root() -> Path:
    value = os.environ.get(ENV_OUT)
    return Path(value).expanduser().resolve() if value else REPO_ROOT


# A profile names folders (models/<profile>/, results/<profile>/): letters, digits, - _ . and no leading dot.
PROFILE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


class ProfileNameError(UsageError, ValueError):
    """A profile name that cannot name a folder (``../x``, empty, ``a/b``)."""


def check_profile_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(PROFILE_NAME, name) or ".." in name:
        raise ProfileNameError(f"invalid profile name {name!r}",
                               "use letters, digits, '-', '_' and '.', e.g. cpu, full or quick")
    return name


@dataclass(frozen=True)
class Layout:
    """Where everything generated for one profile goes, under one root.

    ``Layout(root, profile)`` is a run's output; ``Layout.reference(folder)`` reads a committed
    ``results/<profile>/`` folder, which has the same layout without the profile level.
    """

    root: Path
    profile: str
    flat: bool = False  # True: no <profile> level (a committed reference folder)

    def __post_init__(self) -> None:
        check_profile_name(self.profile)

    @classmethod
    def default(cls, profile: str) -> "Layout":
        return cls(default_output_root(), profile)

    @classmethod
    def reference(cls, folder: Path, profile: str | None = None) -> "Layout":
        folder = Path(folder)
        return cls(folder, profile or folder.name, flat=True)

    def _part(self, name: str) -> Path:
        return self.root / name if self.flat else self.root / name / self.profile

    @property
    def dataset(self) -> Path:
        return self._part("dataset")

    @property
    def data_manifest(self) -> Path:
        return self.dataset / MANIFEST_NAME

    @property
    def models(self) -> Path:
        return self._part("models")

    @property
    def report(self) -> Path:
        return self._part("report")

    @property
    def logs(self) -> Path:
        return self._part("logs")

    @property
    def cache(self) -> Path:
        return self._part(".cache")

    def stage_dir(self, stage: str) -> Path:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
        return self.models / stage

    def variant_dir(self, stage: str, variant: str) -> Path:
        # There is one final model: it lives in models/<profile>/final/ itself, where the app fetches it.
        if stage == "final":
            return self.stage_dir(stage)
        return self.stage_dir(stage) / variant
