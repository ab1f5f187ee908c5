"""How long each pending variant will take: from its stage and config, or from an earlier run.

A variant's cost is counted in *units*: training epochs for a baseline (plus the cheap head epochs when
pretrained), pruning fine-tune epochs for a pruned variant, one conversion for a quantized file, one
selection for final. An estimate, in order of preference:

1. the same variant in the profile's last ``logs/<profile>/run.json``, scaled by units now / units then;
2. another variant of the same stage and architecture there, per unit;
3. the defaults below (2 idle cores), scaled by input size and training-set size.

Estimates from defaults are corrected by this run's own speed (actual / estimated over the variants that
ran so far): a loaded machine shows up after the first variant. Imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trashnet.config import VariantConfig

# Seconds per training epoch at 128 px on 1,764 TrashNet training images, batch 32, one process on 2 idle
# cores. Measured in the product: the thesis run and the cpu-seeds run (-j 2, one thread per worker) took
# V3-Small 8.8-10.0 s, V3-Large 19.5-21.7 s, V2 22.0 s, V1 23.8 s per epoch and worker; divided by
# `sharing_slowdown(2, 2)` (1.67), the speed of one two-thread process (derived, not timed alone;
# benchmarks/results/timing_cpu*.md).
EPOCH_SECONDS_128 = {"mobilenet_v3_small": 5.6, "mobilenet_v3_large": 12.4, "mobilenet_v2": 13.2,
                     "mobilenet_v1": 14.3}
REFERENCE_SIZE = 128
REFERENCE_TRAIN_IMAGES = 1764
# A pruning epoch costs a little more than a training epoch (mask updates, wrapped layers): V3-Large 2:4
# fine-tuned at 21.8 s per epoch against 20.6 s for its training epochs in the cpu-seeds run.
PRUNE_EPOCH_FACTOR = 1.1
HEAD_EPOCH_FACTOR = 0.2  # pretrained: classifier on cached features, inference-only backbone pass
# Per variant beyond its epochs: kernel start (~12 s), decoding, evaluation, latency, HTML (~1 min).
OVERHEAD_SECONDS = {"baseline": 60.0, "pruned": 60.0, "quantized": 35.0, "final": 15.0}
# Per core, the share of a lone variant's speed that each of several one-thread workers keeps (2 cores:
# 2 x 0.6 = 1.2x the throughput of one two-thread process, docs/toolchain-facts.md).
PARALLEL_THROUGHPUT = 0.6


@dataclass
class Estimate:
    seconds: float
    units: float
    source: str  # "history", "history-stage" or "defaults"


def units(variant: VariantConfig) -> float:
    if variant.stage == "baseline":
        pretrained = variant.model.weights != "none"
        return variant.train.epochs + (HEAD_EPOCH_FACTOR * variant.train.head_epochs if pretrained else 0.0)
    if variant.stage == "pruned":
        return float(variant.prune.epochs)
    return 1.0


def _default_unit_seconds(variant: VariantConfig, train_images: int | None) -> float:
    per_epoch = EPOCH_SECONDS_128.get(variant.arch or "", max(EPOCH_SECONDS_128.values()))
    per_epoch *= (variant.model.image_size / REFERENCE_SIZE) ** 2
    if train_images:
        per_epoch *= train_images / REFERENCE_TRAIN_IMAGES
    if variant.stage == "pruned":
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
        if variant.stage in ("baseline", "pruned"):
            return Estimate(previous["seconds"] * now / previous["units"], now, "history")
        return Estimate(float(previous["seconds"]), now, "history")
    overhead = OVERHEAD_SECONDS[variant.stage]
    if variant.stage in ("baseline", "pruned"):
        rates = [entry["seconds"] / entry["units"] for entry in entries.values()
                 if entry.get("stage") == variant.stage and entry.get("arch") == variant.arch
                 and entry.get("seconds") and entry.get("units")]
        if rates:
            return Estimate(sum(rates) / len(rates) * now, now, "history-stage")
        return Estimate(overhead + now * _default_unit_seconds(variant, train_images), now, "defaults")
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


def speed_factor(finished: list[tuple[Estimate, float]], parallel: int = 1, cores: int = 2) -> float:
    """Actual over estimated seconds for the variants this run has finished from defaults; before the
    first one finishes, the slowdown of sharing the cores."""
    pairs = [(est.seconds, actual) for est, actual in finished if est.source == "defaults" and est.seconds > 0]
    if not pairs:
        return sharing_slowdown(parallel, cores)
    return sum(actual for _, actual in pairs) / sum(expected for expected, _ in pairs)


def remaining(pending: list[Estimate], running: list[tuple[Estimate, float]], finished: list[tuple[Estimate, float]],
              parallel: int = 1, cores: int = 2) -> float:
    """Seconds left: pending estimates plus what the running ones still need, shared by ``parallel`` workers
    on ``cores`` cores.

    ``running``: (estimate, seconds elapsed so far); ``finished``: (estimate, actual seconds).
    """
    factor = speed_factor(finished, parallel, cores)
    scale = lambda est: est.seconds * (factor if est.source == "defaults" else 1.0)  # noqa: E731
    work = sum(scale(est) for est in pending)
    work += sum(max(0.0, scale(est) - elapsed) for est, elapsed in running)
    return work / max(1, parallel)
