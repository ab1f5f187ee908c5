"""How long each pending variant will take: from its stage and config, or from an earlier run.

A variant's cost is counted in *units*: training epochs for a baseline (plus the cheap head epochs when
pretrained), pruning fine-tune epochs for a pruned variant, one conversion for a quantized file, one
selection for final. An estimate, in order of preference:

1. the same variant in the profile's last ``logs/<profile>/run.json``, scaled by units now / units then;
2. another variant of the same stage and architecture there, per unit;
3. the defaults below (2 idle cores), scaled by input size and training-set size.

Estimates from defaults are corrected by this machine's measured speed (``speed``), best evidence first:
the seconds per epoch that running or finished variants report (``progress.py``) against the epoch the
defaults assume; the variants finished so far (actual / estimated); the warm-up ``run`` times before a long
run (``machine.py``). With none of these the ETA is a range (``RANGE``). A running variant that has reported
an epoch is estimated from its own epochs. Imports nothing heavy.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from trashnet.core.config import VariantConfig

# Seconds per training epoch at 128 px on 1,764 TrashNet training images, batch 32, one process on 2 idle
# cores. Measured in the product: the thesis run and the cpu-seeds run (-j 2, one thread per worker) took
# V3-Small 8.8-10.0 s, V3-Large 19.5-21.7 s, V2 22.0 s, V1 23.8 s per epoch and worker; divided by
# `sharing_slowdown(2, 2)` (1.67), the speed of one two-thread process (derived, not timed alone;
# benchmarks/results/timing_cpu-scratch*.md).
# The minimalistic V3-Large (no squeeze-excite, no hard-swish) fine-tuned at 49.1 s per epoch against the full
# V3-Large's 60.5 s in the ImageNet thesis run (same recipe, same loaded machine): 0.81 x the full net's time.
EPOCH_SECONDS_128 = {"mobilenet_v3_small": 5.6, "mobilenet_v3_large": 12.4, "mobilenet_v2": 13.2,
                     "mobilenet_v1": 14.3, "mobilenet_v3_large_minimalistic": 10.1}
REFERENCE_SIZE = 128
REFERENCE_TRAIN_IMAGES = 1764
# A pruning epoch costs a little more than a training epoch (mask updates, wrapped layers): V3-Large 2:4
# fine-tuned at 21.8 s per epoch against 20.6 s for its training epochs in the cpu-seeds run.
PRUNE_EPOCH_FACTOR = 1.1
HEAD_EPOCH_FACTOR = 0.2  # pretrained: classifier on cached features, inference-only backbone pass
# Per variant beyond its epochs: kernel start (~12 s), decoding, evaluation, latency, HTML (~1 min).
OVERHEAD_SECONDS = {"train": 60.0, "prune": 60.0, "quantize": 35.0, "final": 15.0}
# Per core, the share of a lone variant's speed that each of several one-thread workers keeps (2 cores:
# 2 x 0.6 = 1.2x the throughput of one two-thread process, docs/toolchain-facts.md).
PARALLEL_THROUGHPUT = 0.6
# Until this machine has been measured, the ETA from defaults is a range of this estimate: the thesis run took
# 0.74x its 1 h 13 min on idle cores (docs/reproducibility.md); the same V1 command took 470 s on one 2-core
# machine and 1,681 s on another, where these defaults had said under 6 minutes for it and two TFLite files
# (docs/toolchain-facts.md, "Machines differ").
RANGE = (0.7, 5.0)
MIN_TELLING_EPOCH = 1.0  # seconds the defaults give an epoch, below which it says nothing of other costs


@dataclass
class Estimate:
    seconds: float
    units: float
    source: str  # "history", "history-stage" or "defaults"
    unit_seconds: float | None = None  # what one epoch is assumed to take (training stages)


@dataclass
class Running:
    """A variant in progress: its estimate, seconds since it started, and what its kernel reported."""

    estimate: Estimate
    elapsed: float
    epochs_left: int | None = None
    epoch_seconds: float | None = None  # measured on this machine, this run
    # Seconds from its start to its first epoch (kernel, data, model): what its end (evaluation, files) is
    # taken to cost too.
    startup_seconds: float = 0.0


@dataclass
class Speed:
    """How much slower than the defaults this machine runs, and what says so.

    ``factor`` scales the epochs of an estimate from defaults, ``other`` the rest (kernel start, evaluation,
    conversions): a profile of tiny epochs (quick) is all fixed costs per epoch, which say nothing about
    how long a conversion takes.
    """

    factor: float
    source: str  # "epochs", "finished", "warm-up" or "assumed" (nothing measured yet: show a range)
    other: float | None = None  # None: ``factor``

    def times(self, bound: float) -> Speed:
        return Speed(self.factor * bound, self.source, None if self.other is None else self.other * bound)


def units(variant: VariantConfig) -> float:
    if variant.stage == "train":
        pretrained = variant.model.weights != "none"
        return variant.train.epochs + (HEAD_EPOCH_FACTOR * variant.train.head_epochs if pretrained else 0.0)
    if variant.stage == "prune":
        return float(variant.prune.epochs)
    return 1.0


def default_epoch_seconds(variant: VariantConfig, train_images: int | None) -> float:
    per_epoch = EPOCH_SECONDS_128.get(variant.arch or "", max(EPOCH_SECONDS_128.values()))
    per_epoch *= (variant.model.image_size / REFERENCE_SIZE) ** 2
    if train_images:
        per_epoch *= train_images / REFERENCE_TRAIN_IMAGES
    if variant.stage == "prune":
        per_epoch *= PRUNE_EPOCH_FACTOR
    return per_epoch


def estimate(variant: VariantConfig, history: dict[str, Any] | None = None,
             train_images: int | None = None) -> Estimate:
    """Seconds ``variant`` will take; ``history``: an earlier ``run.json`` of the same profile."""
    now = units(variant)
    # Only runs that finished say how long a variant takes (a failure stops early; None = older records).
    entries = {vid: entry for vid, entry in ((history or {}).get("variant") or {}).items()
               if entry.get("status") in ("done", "cached", None)}
    previous = entries.get(variant.id) or {}
    if previous.get("seconds") and previous.get("units"):
        if variant.stage in ("train", "prune"):
            return Estimate(previous["seconds"] * now / previous["units"], now, "history")
        return Estimate(float(previous["seconds"]), now, "history")
    overhead = OVERHEAD_SECONDS[variant.stage]
    if variant.stage in ("train", "prune"):
        rates = [entry["seconds"] / entry["units"] for entry in entries.values()
                 if entry.get("stage") == variant.stage and entry.get("arch") == variant.arch
                 and entry.get("seconds") and entry.get("units")]
        if rates:
            return Estimate(sum(rates) / len(rates) * now, now, "history-stage")
        per_epoch = default_epoch_seconds(variant, train_images)
        return Estimate(overhead + now * per_epoch, now, "defaults", unit_seconds=per_epoch)
    same_stage = [entry["seconds"] for entry in entries.values()
                  if entry.get("stage") == variant.stage and entry.get("seconds")]
    if same_stage:
        return Estimate(sum(same_stage) / len(same_stage), now, "history-stage")
    return Estimate(overhead, now, "defaults")


def sharing_slowdown(parallel: int, cores: int) -> float:
    """How much longer one variant takes when ``parallel`` of them share ``cores`` (defaults assume one
    variant on 2 cores). Measured on 2 cores: two one-thread workers do 1.2x the work of one two-thread
    process, so each runs at 0.6 of its speed alone (docs/toolchain-facts.md)."""
    if parallel <= 1:
        return 1.0
    return max(1.0, parallel / (PARALLEL_THROUGHPUT * cores))


def speed(finished: list[tuple[Estimate, float]], epochs: list[tuple[Estimate, float]] | None = None,
          warmup: float | None = None, parallel: int = 1, cores: int = 2) -> Speed:
    """This machine's slowdown against the defaults.

    ``epochs``: (estimate, measured seconds per epoch) of the variants that reported epochs;
    ``finished``: (estimate, actual seconds) of the finished ones; ``warmup``: the factor ``run``'s warm-up
    measured. Only estimates made from defaults count. Before any of these: the slowdown of sharing the cores.
    """
    pairs = [(est.seconds, actual) for est, actual in finished if est.source == "defaults" and est.seconds > 0]
    whole = sum(actual for _, actual in pairs) / sum(expected for expected, _ in pairs) if pairs else None
    measured = [(est.unit_seconds, seconds) for est, seconds in epochs or []
                if est.source == "defaults" and est.unit_seconds and seconds]
    if measured:
        factor = statistics.median(seconds / assumed for assumed, seconds in measured)
        # Until a variant finished, the rest is taken to be as much slower as real-sized epochs are, within the
        # range machines span; an epoch the defaults put under a second (quick) is all fixed costs: no evidence.
        sharing = sharing_slowdown(parallel, cores)
        other = whole
        if other is None and any(assumed >= MIN_TELLING_EPOCH for assumed, _ in measured):
            other = min(max(factor, sharing * RANGE[0]), sharing * RANGE[1])
        return Speed(factor, "epochs", sharing if other is None else other)
    if whole is not None:
        return Speed(whole, "finished")
    if warmup is not None:
        return Speed(warmup, "warm-up")
    return Speed(sharing_slowdown(parallel, cores), "assumed")


def left(job: Running, machine: Speed) -> float:
    """Seconds a running variant still needs: its epochs left at its own measured pace, then as long as its
    start took; before its first epoch, its estimate less the time it has run."""
    if job.epochs_left is not None and job.epoch_seconds:
        return job.epochs_left * job.epoch_seconds + job.startup_seconds
    return max(0.0, scaled(job.estimate, machine) - job.elapsed)


def scaled(estimate: Estimate, machine: Speed) -> float:
    """An estimate on this machine: one from defaults times the machine's slowdowns; an earlier run's as is."""
    if estimate.source != "defaults":
        return estimate.seconds
    epochs = (estimate.unit_seconds or 0.0) * estimate.units
    other = machine.factor if machine.other is None else machine.other
    return epochs * machine.factor + (estimate.seconds - epochs) * other


def remaining(pending: list[Estimate], running: list[Running], machine: Speed, parallel: int = 1,
              chain: float = 0.0) -> float:
    """Seconds left: pending estimates plus what the running ones still need, shared by ``parallel`` workers,
    and never less than ``chain``, the longest chain of variants that must run one after the other."""
    work = sum(scaled(est, machine) for est in pending) + sum(left(job, machine) for job in running)
    return max(work / max(1, parallel), chain)


def duration(seconds: float) -> str:
    """``1h02m03s``, ``4m05s`` or ``6s``: how progress lines and ETAs show a time."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
