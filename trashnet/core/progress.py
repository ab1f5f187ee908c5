"""Progress from inside a running notebook: the kernel appends, the runner and the worker read.

The runner gives each variant's kernel ``$TRASHNET_PROGRESS``, a path in the variant's run folder
(``settings.PROGRESS_FILE``). Training code calls ``report`` once per finished epoch (``training.ValidationJudge``
does, so baselines, pruning and QAT fine-tunes all report) and long conversions report a step. Each call
appends one JSON line (an ``Event``); without the variable it does nothing, so the package works the same
outside a run. The worker tails the file into the variant's log (``log_line``), the runner into the
progress line and the ETA (``Tail``, ``seconds_per_epoch``).

Imports nothing heavy: the runner loads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from trashnet.core import settings

POLL_SECONDS = 1.0
RECENT_EPOCHS = 3  # seconds per epoch: median of the last few (the first one also traces the graph)


class Event(BaseModel):
    """One line of the progress file."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["epoch", "step"]
    phase: str  # e.g. "scratch", "prune-2of4", "qat", "converted"
    done: int  # epochs (or steps) finished in this phase
    total: int
    seconds: float | None = None  # how long this epoch (or step) took
    time: float  # Unix time it was written


def report(kind: Literal["epoch", "step"], phase: str, done: int, total: int, seconds: float | None = None) -> None:
    """Append one event to ``$TRASHNET_PROGRESS``; nothing when the variable is unset (outside a run)."""
    path = os.environ.get(settings.ENV_PROGRESS)
    if not path:
        return
    event = Event(kind=kind, phase=phase, done=done, total=total,
                  seconds=None if seconds is None else round(seconds, 2), time=time.time())
    # One short write in append mode: a reader sees whole lines or nothing new.
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(event.model_dump_json() + "\n")


class Tail:
    """The events appended to a progress file since the last ``read`` (only complete lines)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self.events: list[Event] = []
        self.first_seen: float | None = None  # time.monotonic() when the first event was read

    def read(self) -> list[Event]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:  # not written yet
            return []
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        new = []
        for line in complete.decode("utf-8", errors="replace").splitlines():
            try:
                new.append(Event.model_validate(json.loads(line)))
            except (ValueError, ValidationError):  # a line this version does not know: not progress
                continue
        if new and self.first_seen is None:
            self.first_seen = time.monotonic()
        self.events += new
        return new

    @property
    def latest(self) -> Event | None:
        return self.events[-1] if self.events else None

    def seconds_per_epoch(self) -> float | None:
        """Median seconds of the last epochs of the current phase; None before the first epoch."""
        latest = self.latest
        if latest is None or latest.kind != "epoch":
            return None
        times = [e.seconds for e in self.events if e.kind == "epoch" and e.phase == latest.phase and e.seconds]
        return statistics.median(times[-RECENT_EPOCHS:]) if times else None

    def startup_seconds(self, started: float) -> float:
        """Seconds from ``started`` (time.monotonic) to the start of the first epoch; 0 before it ended."""
        if self.first_seen is None:
            return 0.0
        return max(0.0, self.first_seen - started - (self.events[0].seconds or 0.0))

    def epochs_left(self) -> int | None:
        latest = self.latest
        return latest.total - latest.done if latest is not None and latest.kind == "epoch" else None


def describe(event: Event, seconds_per_epoch: float | None = None) -> str:
    """``epoch 7/20, 81 s/epoch`` (or ``convert 1/2``) for the progress line."""
    name = "epoch" if event.kind == "epoch" else event.phase
    text = f"{name} {event.done}/{event.total}"
    if event.kind == "epoch" and seconds_per_epoch:
        text += f", {seconds_per_epoch:.0f} s/epoch"
    return text


def log_line(event: Event) -> str:
    """The compact line a variant's log gets for each event."""
    took = f" in {event.seconds:.1f} s" if event.seconds is not None else ""
    return f"progress: {event.phase} {event.kind} {event.done}/{event.total}{took}"


@contextlib.contextmanager
def echo(path: Path, write):
    """While the block runs, ``write`` each new event of the progress file as a ``log_line``."""
    tail, stop = Tail(path), threading.Event()

    def loop() -> None:
        while not stop.wait(POLL_SECONDS):
            for event in tail.read():
                write(log_line(event))

    thread = threading.Thread(target=loop, name="progress-echo", daemon=True)
    thread.start()
    try:
        yield tail
    finally:
        stop.set()
        thread.join()
        for event in tail.read():  # the last lines, written just before the kernel ended
            write(log_line(event))
