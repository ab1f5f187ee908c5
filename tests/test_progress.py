"""Progress from inside a variant: the kernel's epoch events, the progress line, the ETA that learns, the
machine check, and no CUDA-probe noise on a machine without a GPU."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import standin
from trashnet.core import profiles, progress, settings
from trashnet.runner import eta, machine, pipeline, plan, scheduler

VARIANT = "mobilenet_v3_small"


def test_events_round_trip_and_only_whole_lines_are_read(tmp_path, monkeypatch):
    path = tmp_path / settings.PROGRESS_FILE
    tail = progress.Tail(path)
    assert tail.read() == [] and tail.seconds_per_epoch() is None  # nothing written yet
    progress.report("epoch", "scratch", 1, 20, 90.0)  # no $TRASHNET_PROGRESS: outside a run, nothing
    assert not path.exists()
    monkeypatch.setenv(settings.ENV_PROGRESS, str(path))
    for epoch, seconds in ((1, 95.0), (2, 80.0), (3, 81.0), (4, 82.0)):
        progress.report("epoch", "scratch", epoch, 20, seconds)
    with open(path, "a") as handle:
        handle.write('{"not": "an event"}\n{"kind": "epoch", "pha')  # unknown line, then half a line
    assert [e.done for e in tail.read()] == [1, 2, 3, 4]
    assert tail.seconds_per_epoch() == 81.0  # median of the last three: the first traced the graph
    assert tail.epochs_left() == 16
    assert progress.describe(tail.latest, tail.seconds_per_epoch()) == "epoch 4/20, 81 s/epoch"
    assert progress.log_line(tail.latest) == "progress: scratch epoch 4/20 in 82.0 s"
    with open(path, "a") as handle:
        handle.write('se": "scratch", "done": 5, "total": 20, "seconds": 80.0, "time": 1.0}\n')
    assert [e.done for e in tail.read()] == [5]  # the rest of the line, once complete


@pytest.fixture(scope="module")
def cpu_variants():
    # The from-scratch thesis run: the case (V1, 20 epochs at 128 px) was measured on it.
    return profiles.load_variants(profiles.load_profile("cpu-scratch"))


def test_the_eta_learns_this_machines_epochs(cpu_variants, tmp_path, monkeypatch):
    # The case, -j 2: the V1 baseline (20 epochs) and two TFLite files of it took ~28 minutes on a
    # machine where an epoch took 81 s, not the 14.3 s the defaults assume.
    ids = ["mobilenet_v1", "mobilenet_v1.fp16", "mobilenet_v1.int8"]
    layout = settings.Layout(tmp_path / "out", "cpu")
    runner = scheduler.Runner(plan.plan(cpu_variants, ids, layout), layout, data_sha="-", jobs_at_once=2,
                             train_images=1764)
    low, high = (_seconds(part) for part in re.fullmatch(r"~(\S+)-(\S+)", runner.eta()).groups())
    assert low < 28 * 60 < high  # nothing measured yet: a range, and the real time lies in it
    # 141 s in, the kernel reports its first epoch: 81 s, after 60 s of start-up.
    job = runner.jobs["mobilenet_v1"]
    job.status, job.started = "running", time.monotonic() - 141
    monkeypatch.setenv(settings.ENV_PROGRESS, str(tmp_path / settings.PROGRESS_FILE))
    progress.report("epoch", "scratch", 1, 20, 81.0)
    runner.tails[job.id] = progress.Tail(tmp_path / settings.PROGRESS_FILE)
    runner.tails[job.id].read()
    assert (runner.speed().source, runner.speed().factor) == ("epochs", pytest.approx(81.0 / 14.3))
    left = _seconds(re.fullmatch(r"~(\S+)", runner.eta()).group(1))
    actual_left = 28 * 60 - 141  # what the run then still took
    assert actual_left / 1.5 <= left <= actual_left * 1.5, left
    # The TFLite files wait for the baseline: the chain, not the work split over two workers, sets the time.
    assert left >= 19 * 81
    # A warm-up factor counts until real epochs or finished variants say more.
    v1 = job.estimate
    assert eta.speed([], None, 3.0).source == "warm-up"
    assert eta.speed([], [(v1, 81.0)], 3.0).source == "epochs"


def _timed_run(monkeypatch, out: Path, behaviour: dict) -> list[tuple[float, str]]:
    """The stand-in run of VARIANT, in this process; its progress lines with the time each was printed."""
    monkeypatch.setenv(plan.ENV_NOTEBOOKS, str(standin.NOTEBOOKS))
    monkeypatch.setenv("STANDIN_BEHAVIOUR", json.dumps({VARIANT: behaviour}))
    monkeypatch.setenv("PYTHONPATH", str(settings.REPO_ROOT))
    monkeypatch.delenv(settings.ENV_DATA, raising=False)
    lines: list[tuple[float, str]] = []
    status = pipeline.run(out=out, variants=VARIANT, report=False, verify=False,
                          log=lambda line: lines.append((time.monotonic(), line)))
    assert status == 0, "\n".join(line for _, line in lines)
    return lines


def _seconds(text: str) -> float:
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    hours, minutes, seconds = (int(part or 0) for part in parts.groups())
    return 3600 * hours + 60 * minutes + seconds


def test_a_kernel_that_reports_epochs_moves_the_progress_line(tmp_path, monkeypatch):
    # Epochs long enough that the variant's end (evaluation, HTML) is not most of what is left, as in a real run.
    epochs, seconds = 8, 4.0
    lines = _timed_run(monkeypatch, tmp_path / "out", {"epochs": epochs, "epoch_seconds": seconds})
    assert not any(line.startswith("machine:") for _, line in lines)  # a short run: no warm-up
    epoch_lines = [(at, line) for at, line in lines if re.search(r"\] epoch \d+/", line)]
    assert [re.search(r"epoch (\d+)/8", line).group(1) for _, line in epoch_lines] == [str(e) for e in range(1, 9)]
    assert re.search(r"epoch 2/8, 4 s/epoch", epoch_lines[1][1]), epoch_lines[1][1]
    # The ETA after the first epoch, against the time the run then still took.
    first_at, first = epoch_lines[0]
    estimate = _seconds(re.search(r"ETA ~(\S+) \|", first).group(1))
    done_at = next(at for at, line in lines if re.search(rf"\] done\s+{VARIANT} ", line))
    actual = done_at - first_at
    assert actual / 1.5 <= estimate <= actual * 1.5, (estimate, actual, first)
    # The variant's log: one compact line per epoch; its folder keeps the events.
    log = (tmp_path / "out" / "logs" / "quick" / f"{VARIANT}.log").read_text()
    assert [int(n) for n in re.findall(r"progress: scratch epoch (\d+)/8 in [\d.]+ s", log)] == list(range(1, 9))
    events = (tmp_path / "out" / "models" / "quick" / "train" / VARIANT / settings.PROGRESS_FILE).read_text()
    assert len(events.splitlines()) == epochs


def test_a_quiet_variant_still_changes_the_progress_line(tmp_path, monkeypatch):
    # The target: a line at least once a minute; here the heartbeat is shortened to see it in seconds.
    monkeypatch.setattr(scheduler, "HEARTBEAT_SECONDS", 2.0)
    lines = _timed_run(monkeypatch, tmp_path / "out", {"sleep": 9})
    start = next(at for at, line in lines if re.search(rf"\] start\s+{VARIANT} ", line))
    done = next(at for at, line in lines if re.search(rf"\] done\s+{VARIANT} ", line))
    times = [at for at, line in lines if start <= at <= done]
    assert len(times) >= 5 and max(b - a for a, b in zip(times, times[1:])) < 2.0 + 1.0, times
    assert any(re.search(rf"\] running {VARIANT} \[train\] \d+s \|", line) for _, line in lines)


def test_no_cuda_probe_error_when_there_is_no_gpu():
    if settings.gpu_present():
        pytest.skip("this machine has a GPU: the probe succeeds")
    code = "from trashnet.core.keras_env import tf; print(tf.config.list_physical_devices())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=settings.REPO_ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "cuInit" not in result.stderr, result.stderr


def test_an_executed_notebook_and_its_log_hold_no_cuda_noise(tmp_path, monkeypatch):
    _timed_run(monkeypatch, tmp_path / "out", {"tensorflow": True})
    notebook = tmp_path / "out" / "models" / "quick" / "train" / VARIANT / f"{VARIANT}.ipynb"
    log = tmp_path / "out" / "logs" / "quick" / f"{VARIANT}.log"
    for text in (notebook.read_text(), log.read_text()):
        assert not re.search(r"cuInit|cuda drivers|cuDNN|absl::InitializeLog", text), text[-3000:]


def test_the_machine_check_before_a_long_run(tmp_path):
    # The thesis profile's V3-Small chain: well over MIN_RUN_SECONDS by the defaults, so `run` times a few
    # training steps of its first baseline in a child process first.
    cpu_variants = profiles.load_variants(profiles.load_profile("cpu"))
    ids = profiles.select_variants(cpu_variants, ["mobilenet_v3_small*"])
    layout = settings.Layout(tmp_path / "out", "cpu")
    runner = scheduler.Runner(plan.plan(cpu_variants, ids, layout), layout, data_sha="-", jobs_at_once=2,
                             train_images=1764)
    assert runner.eta().count("-") == 1  # a range until something is measured
    lines: list[str] = []
    machine.check(runner, 1764, lines.append)
    assert len(lines) == 1, lines
    assert re.fullmatch(r"machine: \d+ cores, .+, load [\d.]+; mobilenet_v3_small at \d+ px: ~\d+ s/epoch here "
                        r"against \d+ s assumed \([\d.]+x\); this run: ~\S+ \(without the check: \S+-\S+; "
                        r"warm-up \d+ s, --no-warmup skips it\)", lines[0]), lines[0]
    assert runner.warmup and runner.warmup > 0
    assert "-" not in runner.eta()  # one figure, from this machine
