"""The machine check before a long run: one line that says what this machine is and how long the run will take.

Times do not carry from one machine to another (the same command took 470 s on one 2-core machine and
1,681 s on another, docs/toolchain-facts.md), so before a run that the defaults put at more than
``MIN_RUN_SECONDS``, ``run`` times a few training steps of the first baseline it will train, at its input
size and with a worker's threads (``train.warmup_epoch_seconds``, in a child process: the runner never
imports TensorFlow). The ratio to the epoch the defaults assume (``eta.default_epoch_seconds``) corrects
every estimate from defaults until the run has measured real epochs. ``--no-warmup`` skips it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from trashnet.core import config, provenance, settings
from trashnet.runner import eta

MIN_RUN_SECONDS = 5 * 60  # runs that could be shorter (the quick profile, a cached rerun) start at once
TIMEOUT_SECONDS = 300  # a warm-up that takes longer says enough on its own: the run goes on without it


@dataclass
class Check:
    variant: str
    image_size: int
    epoch_seconds: float  # predicted for this machine
    assumed_seconds: float  # what the defaults assume
    seconds: float  # the warm-up's own wall time

    @property
    def factor(self) -> float:
        return self.epoch_seconds / self.assumed_seconds


def info() -> dict[str, Any]:
    """What a run time is quoted with: cores, CPU model, load average over the last minute (run.json)."""
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    return {"cores": os.cpu_count(), "cpu": provenance.cpu_model(), "load": load}


def describe() -> str:
    """``2 cores, Intel(R) Xeon(R) ..., load 1.4``."""
    machine = info()
    load = "?" if machine["load"] is None else f"{machine['load']:.1f}"
    return f"{machine['cores']} cores, {machine['cpu']}, load {load}"


def warmup(variant: config.VariantConfig, train_images: int, threads: int | None) -> Check:
    """Time ``variant``'s training steps in a child process with ``threads`` intra-op threads (None: TF's)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(settings.REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop(settings.ENV_PROGRESS, None)
    if threads is not None:
        for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
            env[name] = str(threads)
    code = ("import json, sys; from trashnet.core import config; from trashnet.stages import train; "
            "cfg = config.config_from_dict(json.loads(sys.argv[1])); "
            "print(json.dumps(train.warmup_epoch_seconds(cfg, int(sys.argv[2]))))")
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code, json.dumps(config.config_to_dict(variant)),
                             str(train_images)], env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the warm-up exited with status {result.returncode}: {last}")
    steps = float(result.stdout.strip().splitlines()[-1])
    # A real epoch adds the augmented input pipeline and the validation pass to these steps, but on a shared
    # machine the load moves more than that (benchmarks/results/warmup_cpu.json): no correction is claimed.
    return Check(variant.id, variant.model.image_size, steps,
                 eta.default_epoch_seconds(variant, train_images), time.monotonic() - start)


def check(runner, train_images: int | None, log) -> None:
    """Before a long run: the warm-up, ``runner.warmup`` set from it, and one line with the estimate."""

    # Variants with a finished folder are most likely cached: they cost nothing.
    cached = frozenset(job.id for job in runner.jobs.values() if (job.target / settings.RUN_MANIFEST_NAME).exists())
    todo = [job for job in runner.jobs.values() if job.id not in cached]
    before = runner.seconds_left(cached)
    path = runner.critical_path()
    first = next((job for job in sorted(todo, key=lambda job: -path[job.id]) if job.variant.stage == "train"), None)
    if not before or before[0] < MIN_RUN_SECONDS or first is None or not train_images:
        return
    cores = os.cpu_count() or 1
    threads = max(1, cores // runner.parallel) if runner.parallel > 1 else None
    try:
        measured = warmup(first.variant, train_images, threads)
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as error:
        log(f"machine: {describe()}; the warm-up failed ({error}): the ETA stays a range until the first epoch")
        return
    runner.warmup = measured.factor
    log(f"machine: {describe()}; {measured.variant} at {measured.image_size} px: ~{measured.epoch_seconds:.0f} s"
        f"/epoch here against {measured.assumed_seconds:.0f} s assumed ({measured.factor:.1f}x); this run: "
        f"~{eta.duration(runner.seconds_left(cached)[0])} (without the check: {'-'.join(eta.duration(s) for s in before)};"
        f" warm-up {measured.seconds:.0f} s, --no-warmup skips it)")
