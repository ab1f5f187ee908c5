"""The plan of a run: one job per selected variant, with the variants it waits for and its stage notebook."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from trashnet.core.errors import UserError
from trashnet.core import config, registry, settings
from trashnet.runner import eta

ENV_NOTEBOOKS = "TRASHNET_NOTEBOOKS"  # tests: a folder with stand-in stage notebooks


class PipelineError(UserError, RuntimeError):
    """The run cannot start (bad arguments, missing data or notebook); the message says what to fix."""

    exit_status = 2


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- the plan -------------------------------------------------------------------------------------

@dataclass
class Job:
    variant: config.VariantConfig
    notebook: Path
    target: Path
    deps: list[str]
    soft: bool = False  # final: runs on whatever of its dependencies succeeded
    status: str = "pending"  # pending, running, done, cached, failed, skipped
    reason: str = ""
    key: str | None = None
    digest: str | None = None  # outputs digest once done/cached
    started: float | None = None
    seconds: float | None = None
    log: Path | None = None
    error: str | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    temp: Path | None = None
    error_file: Path | None = None
    estimate: eta.Estimate | None = None

    @property
    def id(self) -> str:
        return self.variant.id

    @property
    def finished(self) -> bool:
        return self.status in ("done", "cached", "failed", "skipped")

    @property
    def ok(self) -> bool:
        return self.status in ("done", "cached")


def notebook_for(stage: str, notebooks_dir: Path | None = None) -> Path:
    path = registry.get(stage).notebook
    if notebooks_dir is not None:
        path = notebooks_dir / path.name
    return path


def plan(variants: dict[str, config.VariantConfig], ids: list[str], layout: settings.Layout,
         notebooks_dir: Path | None = None) -> dict[str, Job]:
    jobs: dict[str, Job] = {}
    for variant_id in ids:
        variant = variants[variant_id]
        if variant.stage == "final":
            deps = [other for other in ids if variants[other].stage != "final"]
        else:
            deps = [variant.source] if variant.source else []
        jobs[variant_id] = Job(variant=variant, notebook=notebook_for(variant.stage, notebooks_dir),
                               target=layout.variant_dir(variant.stage, variant_id), deps=deps,
                               soft=variant.stage == "final")
    missing = sorted({str(job.notebook) for job in jobs.values() if not job.notebook.exists()})
    if missing:
        raise PipelineError("stage notebook(s) missing: " + ", ".join(missing), "restore them from the repository")
    return jobs


# What of a variant's resolved config each stage reads (a section, or one field of it), found by reading
# the stage's code: a baseline's evaluation times Keras with quantize's latency settings, pruning
# fine-tunes with the training recipe's batch, loss, augmentation and optimizer settings (not its epochs).
# Every variant also keys on IDENTITY. Anything else (another stage's section) cannot change its outputs.
