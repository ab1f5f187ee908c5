"""The ETA estimator: per variant, from its stage and config, or from an earlier run."""

from __future__ import annotations

import pytest

from trashnet.core import profiles
from trashnet.runner import eta


@pytest.fixture(scope="module")
def cpu_variants():
    # The from-scratch thesis run: the issue's cases (45 and 80 epochs at 128 px) were measured on it.
    return profiles.load_variants(profiles.load_profile("cpu-scratch"))


def test_defaults_follow_stage_epochs_and_architecture(cpu_variants):
    small = eta.estimate(cpu_variants["mobilenet_v3_small"], train_images=1764)
    large = eta.estimate(cpu_variants["mobilenet_v3_large"], train_images=1764)
    assert small.source == large.source == "defaults"
    assert small.units == cpu_variants["mobilenet_v3_small"].train.epochs == 80
    assert small.seconds == pytest.approx(60 + 80 * 5.6)
    assert large.seconds == pytest.approx(60 + 45 * 12.4)
    pruned = eta.estimate(cpu_variants["mobilenet_v3_large.prune-2of4"], train_images=1764)
    assert pruned.seconds == pytest.approx(60 + 10 * 12.4 * eta.PRUNE_EPOCH_FACTOR)
    assert eta.estimate(cpu_variants["mobilenet_v3_large.fp16"]).seconds == eta.OVERHEAD_SECONDS["quantize"]
    # 4x the pixels, 4x the epoch.
    bigger = cpu_variants["mobilenet_v3_large"].model_copy(
        update={"model": cpu_variants["mobilenet_v3_large"].model.model_copy(update={"image_size": 256})})
    assert eta.estimate(bigger, train_images=1764).seconds == pytest.approx(60 + 45 * 12.4 * 4)


def test_an_earlier_run_wins_and_scales_with_epochs(cpu_variants):
    history = {"variant": {
        "mobilenet_v3_large": {"stage": "train", "arch": "mobilenet_v3_large", "seconds": 900.0, "units": 30},
        "mobilenet_v3_large.fp16": {"stage": "quantize", "arch": "mobilenet_v3_large", "seconds": 20.0, "units": 1},
        "mobilenet_v3_small.prune-2of4": {"stage": "prune", "arch": "mobilenet_v3_small", "seconds": 200.0,
                                          "units": 10},
    }}
    large = eta.estimate(cpu_variants["mobilenet_v3_large"], history)
    assert (large.source, large.seconds) == ("history", pytest.approx(900 * 45 / 30))
    assert eta.estimate(cpu_variants["mobilenet_v3_large.fp16"], history).seconds == 20.0
    # Another quantized file: the stage's mean from the earlier run.
    other = eta.estimate(cpu_variants["mobilenet_v3_small.int8"], history)
    assert (other.source, other.seconds) == ("history-stage", 20.0)
    # A pruned variant of another arch has no history of its own kind: defaults.
    assert eta.estimate(cpu_variants["mobilenet_v2.prune-2of4"], history).source == "defaults"
    # A failed run stopped early: it says nothing about how long the variant takes.
    failed = {"variant": {"mobilenet_v3_large": {"stage": "train", "status": "failed", "seconds": 5.0, "units": 45}}}
    assert eta.estimate(cpu_variants["mobilenet_v3_large"], failed).source == "defaults"
    # Entries from before the ETA recorded units are ignored rather than guessed.
    old = {"variant": {"mobilenet_v3_large": {"stage": "train", "seconds": 900.0}}}
    assert eta.estimate(cpu_variants["mobilenet_v3_large"], old).source == "defaults"


def test_the_issue_case_after_a_slow_baseline(cpu_variants):
    # The V3-Large chain on the full data: the 44-minute baseline (on a loaded machine) is done, its
    # 2:4 pruned model, six TFLite files and final remain; they then took 17 minutes (13.6 + 3.5 + 0.2).
    # The old averaging ETA said ~5h52m.
    baseline = eta.estimate(cpu_variants["mobilenet_v3_large"], train_images=1768)
    pending = [eta.estimate(cpu_variants[vid], train_images=1768) for vid in (
        "mobilenet_v3_large.prune-2of4", "mobilenet_v3_large.prune-2of4.fp32", "mobilenet_v3_large.prune-2of4.fp16",
        "mobilenet_v3_large.prune-2of4.int8-dynamic", "mobilenet_v3_large.prune-2of4.int8",
        "mobilenet_v3_large.prune-2of4.int16x8", "mobilenet_v3_large.prune-2of4.int16x8-fallback", "final")]
    seconds = eta.remaining(pending, [], eta.speed([(baseline, 44 * 60)]))
    assert 12 * 60 <= seconds <= 30 * 60, seconds


def test_running_and_parallel_work(cpu_variants):
    estimate = eta.Estimate(600.0, 10, "history")
    same = eta.speed([])
    assert eta.remaining([], [eta.Running(estimate, 200.0)], same) == 400.0
    assert eta.remaining([], [eta.Running(estimate, 900.0)], same) == 0.0  # overdue: nothing negative
    assert eta.remaining([estimate, estimate], [], same, parallel=2) == 600.0
    assert eta.remaining([estimate, estimate], [], same, parallel=2, chain=900.0) == 900.0  # one after the other
    # The speed factor only corrects estimates made from defaults.
    slow = eta.speed([(eta.Estimate(100.0, 1, "defaults"), 200.0)])
    assert eta.remaining([eta.Estimate(50.0, 1, "defaults"), estimate], [], slow) == 100.0 + 600.0
    # Epochs measured scale the epochs of an estimate; a tiny epoch says nothing of the rest (quick profile).
    tiny = eta.Estimate(60.0 + 2 * 0.05, 2, "defaults", unit_seconds=0.05)
    measured = eta.speed([], [(tiny, 3.0)])
    assert measured.factor == pytest.approx(60.0) and measured.other == 1.0
    assert eta.scaled(tiny, measured) == pytest.approx(2 * 3.0 + 60.0)


def test_before_anything_finished_parallel_workers_are_slower_on_shared_cores():
    # 2 cores, -j 2: each one-thread worker runs at 0.6 of a lone variant's speed (1.2x the throughput).
    estimate = eta.Estimate(600.0, 10, "defaults")
    assert eta.remaining([estimate, estimate], [], eta.speed([], parallel=2, cores=2), 2) == pytest.approx(1000.0)
    assert eta.remaining([estimate, estimate], [], eta.speed([], parallel=2, cores=16), 2) == pytest.approx(600.0)
    assert eta.remaining([estimate], [], eta.speed([], parallel=1, cores=2)) == pytest.approx(600.0)
    assert eta.speed([], parallel=2, cores=2).source == "assumed"  # the progress line shows a range
