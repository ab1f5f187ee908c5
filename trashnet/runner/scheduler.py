"""The scheduler: starts each variant when what it needs is finished (``-j N`` at a time), skips what is
cached, prints progress and the ETA, and writes the run record."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from trashnet.runner.cache import (METRICS_NAME, OWNED_KIND, PARTIAL, cache_key, outputs_digest,
                                    read_valid_manifest, stage_code, swap_into_place, write_manifest)
from trashnet.runner.plan import Job, now
from trashnet.runner.worker import ansi_free, die_with_parent
from trashnet.core import config, fileio, owned, progress, provenance, records, settings
from trashnet.runner import eta

RUN_RECORD = settings.RUN_RECORD  # <out>/logs/<profile>/run.json: what the last run did, for the report


# --- the runner -------------------------------------------------------------------------------------

HEARTBEAT_SECONDS = 50.0  # a running variant's progress line changes at least once a minute


class Runner:
    def __init__(self, jobs: dict[str, Job], layout: settings.Layout, *, data_sha: str, jobs_at_once: int = 1,
                 force: bool = False, log=print, history: dict[str, Any] | None = None,
                 train_images: int | None = None):
        self.jobs = jobs
        self.layout = layout
        self.data_sha = data_sha
        self.parallel = max(1, jobs_at_once)
        self.force = force
        self.log = log
        self.lock = provenance.lockfile_hash()
        self._code: dict[tuple[str, Path], tuple[list[str], str]] = {}
        self.start = time.monotonic()
        for job in jobs.values():  # from its config, or from the profile's previous run (eta module)
            job.estimate = eta.estimate(job.variant, history, train_images)
        self.tails: dict[str, progress.Tail] = {}  # the running (and finished) variants' progress files
        self.shown: dict[str, float] = {}  # when each running variant's last progress line was printed
        self.warmup: float | None = None  # machine.warmup's factor, when the run measured one

    def code(self, job: Job) -> tuple[list[str], str]:
        """The job's stage code (modules, sha256), computed once per stage and notebook."""
        where = (job.variant.stage, job.notebook)
        if where not in self._code:
            self._code[where] = stage_code(*where)
        return self._code[where]

    # Progress --------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        result = {name: 0 for name in ("done", "cached", "failed", "skipped", "running", "pending")}
        for job in self.jobs.values():
            result[job.status] += 1
        return result

    def speed(self) -> eta.Speed:
        """This machine against the defaults: from the epochs reported so far, the finished variants, the
        warm-up, or (nothing measured yet) assumed."""
        epochs = [(j.estimate, self.tails[j.id].seconds_per_epoch()) for j in self.jobs.values() if j.id in self.tails]
        finished = [(j.estimate, j.seconds) for j in self.jobs.values()
                    if j.status in ("done", "failed") and j.started is not None and j.seconds is not None]
        return eta.speed(finished, epochs, self.warmup, self.parallel, os.cpu_count() or 1)

    def eta(self) -> str:
        """``~12m30s``, or a range (``~9m-56m``) while nothing on this machine has been measured."""
        left = self.seconds_left()
        return "~" + "-".join(eta.duration(seconds) for seconds in left) if left else "0s"

    def seconds_left(self, skip: frozenset[str] = frozenset()) -> list[float]:
        """[estimate], or [low, high] while nothing on this machine has been measured; [] when all is done.
        ``skip``: pending variants to leave out (likely cached)."""
        counts = self.counts()
        if not counts["pending"] and not counts["running"]:
            return []
        now = time.monotonic()
        running: dict[str, eta.Running] = {}
        for j in self.jobs.values():
            if j.status == "running":
                tail = self.tails[j.id]
                running[j.id] = eta.Running(j.estimate, now - j.started, tail.epochs_left(), tail.seconds_per_epoch(),
                                            tail.startup_seconds(j.started))
        pending = [j.estimate for j in self.jobs.values() if j.status == "pending" and j.id not in skip]
        measured = self.speed()
        guessed = measured.source == "assumed" and any(
            est.source == "defaults" for est in pending + [state.estimate for state in running.values()])
        speeds = [measured.times(bound) for bound in eta.RANGE] if guessed else [measured]
        return [eta.remaining(pending, list(running.values()), speed, self.parallel, self.chain(running, speed, skip))
                for speed in speeds]

    def chain(self, running: dict[str, eta.Running], speed: eta.Speed, skip: frozenset[str] = frozenset()) -> float:
        """The longest chain still to go: a running variant's time left, then its longest line of dependents
        (a pending variant's whole line); the TFLite files of a baseline cannot start before it ends."""
        path = self.critical_path(lambda job: 0.0 if job.id in skip else eta.scaled(job.estimate, speed))
        lengths = [eta.left(state, speed) + path[vid] - eta.scaled(state.estimate, speed)
                   for vid, state in running.items()]
        lengths += [path[j.id] for j in self.jobs.values() if j.status == "pending"]
        return max(lengths, default=0.0)

    def progress(self, job: Job, event: str) -> None:
        counts = self.counts()
        total = len(self.jobs)
        finished = total - counts["running"] - counts["pending"]
        elapsed = time.monotonic() - self.start
        extra = f" ({eta.duration(job.seconds)})" if job.seconds is not None and event != "start" else ""
        tail = self.tails.get(job.id)
        if job.status == "running":
            self.shown[job.id] = time.monotonic()
            if event == "running":
                extra = f" {eta.duration(time.monotonic() - job.started)}"
            if tail is not None and tail.latest is not None:
                extra += " " + progress.describe(tail.latest, tail.seconds_per_epoch())
        reason = f": {job.reason}" if job.reason and event in ("failed", "skipped") else ""
        self.log(f"[{finished:>{len(str(total))}}/{total}] {event:<7} {job.id} [{job.variant.stage}]{extra}{reason}"
                 f" | elapsed {eta.duration(elapsed)}, ETA {self.eta()} | done {counts['done']},"
                 f" cached {counts['cached']}, failed {counts['failed']}, skipped {counts['skipped']},"
                 f" running {counts['running']}")

    def watch(self) -> None:
        """A progress line for each running variant whose kernel reported an epoch or step, and for one that
        said nothing new for ``HEARTBEAT_SECONDS`` (a slow run and a hung one look different)."""
        for job in self.jobs.values():
            if job.status != "running":
                continue
            new = self.tails[job.id].read()
            if new:
                self.progress(job, new[-1].kind)
            elif time.monotonic() - self.shown.get(job.id, job.started) >= HEARTBEAT_SECONDS:
                self.progress(job, "running")

    # Scheduling ------------------------------------------------------------------------------------
    def ready(self, job: Job) -> bool:
        return job.status == "pending" and all(self.jobs[dep].finished for dep in job.deps)

    def resolve(self, job: Job) -> bool:
        """Skip, or accept the cached result; True when the job needs no process."""
        blocked = [dep for dep in job.deps if not self.jobs[dep].ok]
        if blocked and not job.soft:
            job.status = "skipped"
            job.reason = f"needs {blocked[0]}, which {self.jobs[blocked[0]].status}"
            self.progress(job, "skipped")
            return True
        if job.soft and job.deps and len(blocked) == len(job.deps):
            job.status = "skipped"
            job.reason = "no variant to choose from succeeded"
            self.progress(job, "skipped")
            return True
        # The key covers what the stage read of its config the last time it ran (recorded in its folder).
        reads = records.read_config_reads(job.target)
        job.key = self.key(job, reads)
        if not self.force:
            manifest = read_valid_manifest(job.target, job.key)
            if manifest is not None:
                job.status = "cached"
                job.digest = outputs_digest(manifest.files)
                job.seconds = manifest.seconds
                self.progress(job, "cached")
                return True
        return False

    def key(self, job: Job, reads: records.ConfigReads | None) -> str:
        return cache_key(job, self.jobs, code=self.code(job)[1], lock=self.lock, data_sha=self.data_sha, reads=reads)

    def launch(self, job: Job) -> None:
        variant = job.variant
        job.target.parent.mkdir(parents=True, exist_ok=True)
        # Refuse now, not after the notebook ran: a folder in the way that the project did not make.
        owned.check_replaceable(job.target, OWNED_KIND, made_by="`run`", hint="move it away, or choose another --out")
        job.temp = job.target.with_name(f".{job.target.name}{PARTIAL}{os.getpid()}")
        owned.remove(job.temp, OWNED_KIND, made_by="`run`")
        job.temp.mkdir(parents=True)
        owned.stamp(job.temp, OWNED_KIND)  # the only variant folders a run ever replaces or cleans up
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        self.layout.cache.mkdir(parents=True, exist_ok=True)
        job.log = self.layout.logs / f"{job.id}.log"
        spec_dir = self.layout.cache / "jobs"
        spec_dir.mkdir(parents=True, exist_ok=True)
        error_file = spec_dir / f"{job.id}.error.json"
        error_file.unlink(missing_ok=True)
        spec = {
            "notebook": str(job.notebook),
            "output": str(job.temp / f"{job.id}.ipynb"),
            "html": str(job.temp / f"{job.id}.html"),
            "cwd": str(job.temp),
            "error_file": str(error_file),
            "progress": str(job.temp / settings.PROGRESS_FILE),
            "display": {"root": str(self.layout.root), "temp": str(job.temp), "target": str(job.target)},
            "parameters": {
                "variant_id": job.id,
                "config": config.config_to_dict(variant),
                "dataset_dir": str(self.layout.dataset),
                "models_dir": str(self.layout.models),
                "output_dir": str(job.temp),
                "cache_dir": str(self.layout.cache),
            },
        }
        spec_file = fileio.write_json(spec_dir / f"{job.id}.json", spec)
        env = dict(os.environ)
        # The kernel imports the same package as this runner, wherever the notebook runs.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(settings.REPO_ROOT), env.get("PYTHONPATH")]))
        env.setdefault("MPLBACKEND", "Agg")
        env[settings.ENV_PROGRESS] = spec["progress"]  # the kernel's epochs (progress.report)
        self.tails[job.id] = progress.Tail(Path(spec["progress"]))
        if self.parallel > 1:  # share the cores instead of every process claiming all of them
            threads = str(max(1, (os.cpu_count() or 1) // self.parallel))
            for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
                env.setdefault(name, threads)
        handle = open(job.log, "w", encoding="utf-8")
        handle.write(f"# {job.id} [{variant.stage}] {now()}\n# notebook {job.notebook}\n# key {job.key}\n")
        handle.flush()
        code = "import sys; from trashnet.runner.worker import worker_main; sys.exit(worker_main(sys.argv[1]))"
        job.process = subprocess.Popen([sys.executable, "-c", code, str(spec_file)], stdout=handle,
                                       stderr=subprocess.STDOUT, env=env, cwd=str(job.temp),
                                       preexec_fn=die_with_parent)
        handle.close()
        job.status = "running"
        job.started = time.monotonic()
        job.error_file = error_file
        self.progress(job, "start")

    def finish(self, job: Job, returncode: int) -> None:
        job.seconds = time.monotonic() - job.started
        job.process = None
        executed = job.temp / f"{job.id}.ipynb"
        if returncode == 0 and executed.exists() and not (job.temp / METRICS_NAME).is_file():
            # The contract: every stage leaves metrics.json; a notebook that ends without one is broken.
            fileio.write_json(job.error_file, {
                "type": "ContractError", "cell": None, "traceback": [],
                "message": f"the notebook finished without writing {METRICS_NAME} into output_dir"})
            returncode = 1
        if returncode == 0 and executed.exists():
            manifest = write_manifest(job.temp, job, self.jobs, code=self.code(job), lock=self.lock,
                                      data_sha=self.data_sha, seconds=job.seconds, log=job.log)
            swap_into_place(job.temp, job.target)
            job.status = "done"
            job.key = manifest.key
            job.digest = outputs_digest(manifest.files)
            self.progress(job, "done")
            return
        error: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            error = fileio.read_json(job.error_file)
        if not error:
            tail = job.log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:] if job.log else []
            error = {"type": "WorkerError", "message": f"worker exited with status {returncode}",
                     "traceback": tail}
        message = f"{error.get('type')}: {error.get('message')}"
        record = {
            "variant": job.id, "stage": job.variant.stage, "status": "failed", "key": job.key,
            "finished": now(), "seconds": round(job.seconds, 2), "error": message,
            "error_type": error.get("type"), "cell": error.get("cell"),
            "traceback": [ansi_free(line) for line in error.get("traceback", [])],
            "log": str(job.log), "notebook": f"{job.id}.ipynb" if executed.exists() else None,
        }
        records.write_failed(job.temp, record)
        swap_into_place(job.temp, job.target)
        job.status = "failed"
        job.reason = message.splitlines()[0][:300] if message else "failed"
        job.error = message
        self.progress(job, "failed")

    def stop_all(self) -> None:
        for job in self.jobs.values():
            if job.process is not None and job.process.poll() is None:
                with contextlib.suppress(OSError):
                    job.process.terminate()
        deadline = time.monotonic() + 20
        for job in self.jobs.values():
            if job.process is not None:
                try:
                    job.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    job.process.kill()
            if job.temp is not None and job.status == "running":
                owned.replace(job.temp, kind=OWNED_KIND, quiet=True)

    def critical_path(self, cost=None) -> dict[str, float]:
        """Estimated seconds from each job's start to the end of the longest chain that waits for it;
        ``cost(job)``: a job's own seconds (default: its estimate)."""
        dependents: dict[str, list[str]] = {vid: [] for vid in self.jobs}
        for vid, job in self.jobs.items():
            for dep in job.deps:
                dependents[dep].append(vid)
        path: dict[str, float] = {}

        def length(vid: str) -> float:
            if vid not in path:
                job = self.jobs[vid]
                own = (cost(job) if cost else job.estimate.seconds) if job.estimate else 0.0
                path[vid] = own + max((length(child) for child in dependents[vid]), default=0.0)
            return path[vid]

        for vid in self.jobs:
            length(vid)
        return path

    def run(self) -> None:
        # Longest chain first (V3-Large -> its pruned copy -> their files -> final), so the last hour is not
        # one worker on that chain while the other has nothing left; ties keep the variants file's order.
        path = self.critical_path()
        order = sorted(self.jobs, key=lambda vid: -path[vid])
        try:
            while True:
                progressed = False
                for variant_id in order:
                    job = self.jobs[variant_id]
                    if self.ready(job) and self.counts()["running"] < self.parallel:
                        if not self.resolve(job):
                            self.launch(job)
                        progressed = True
                self.watch()  # before finish(), which moves the progress file with the run folder
                for job in self.jobs.values():
                    if job.status == "running" and job.process.poll() is not None:
                        self.finish(job, job.process.returncode)
                        progressed = True
                if all(job.finished for job in self.jobs.values()):
                    return
                if not progressed:
                    time.sleep(0.2)
        except BaseException:
            self.stop_all()
            raise

    def record(self) -> dict[str, Any]:
        return {
            "variant": {job.id: {
                "stage": job.variant.stage, "arch": job.variant.arch, "status": job.status,
                "reason": job.reason or None, "units": job.estimate.units if job.estimate else None,
                "estimate_s": round(job.estimate.seconds, 1) if job.estimate else None,
                "estimate_from": job.estimate.source if job.estimate else None,
                "key": job.key, "seconds": None if job.seconds is None else round(job.seconds, 2),
                "folder": str(job.target.relative_to(self.layout.root)),
                "log": str(job.log.relative_to(self.layout.root)) if job.log else None,
                "error": job.error,
            } for job in self.jobs.values()},
            "counts": self.counts(),
        }


def read_record(path: Path) -> dict[str, Any] | None:
    record = records.read_or_none(records.read_run_record, path.parent)  # path: logs/<profile>/run.json
    return None if record is None else record.dump()


def count_train_images(manifest: Path) -> int | None:
    """Accepted training images in the prepared data set's manifest (for the ETA); None if unreadable."""
    import csv

    with contextlib.suppress(OSError, KeyError, csv.Error):
        with manifest.open(newline="", encoding="utf-8") as handle:
            return sum(1 for row in csv.DictReader(handle) if row["status"] == "accepted" and row["split"] == "train")
    return None
