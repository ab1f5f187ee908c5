"""``python -m trashnet run``: every stage notebook for every selected variant, cached and resumable.

The run, step by step:

1. *Data*: the source folder is prepared into ``<out>/dataset`` (``data.prepare``), skipped when neither
   the source files, the split settings nor the code changed since the last preparation.
2. *Variants*: ``experiments/variants.yaml`` resolved against the profile; the ``--variants`` patterns,
   else the profile's ``variants`` list, else all of them (their sources come along).
3. *Notebooks*: each variant's stage notebook runs through papermill in its own worker process
   (``-j N`` at a time). A variant starts when its source is finished; ``final`` waits for every other
   selected variant and chooses among those that succeeded.

Everything goes into the profile's own folders (``settings.Layout``): ``models/<profile>/``,
``logs/<profile>/run.json``, ``report/<profile>/``. At the end the run is compared with the committed
reference ``results/<profile>/`` when there is one (``trashnet.verify``).

Caching: a variant's *key* is the sha256 of only what its stage reads: the config sections of
``STAGE_INPUTS`` (``train`` for a baseline, ``prune`` for a pruned variant, ``quantize`` for a quantized
one, ``select`` and ``stats`` for final), the code of the package modules its stage imports (``provenance.import_closure``
of ``settings.STAGE_MODULES`` and the notebook's own imports), the lockfile, its notebook file, the data
manifest, and the keys and output digests of its upstream variants. So a change to ``select.py`` or the
``select:`` settings reruns only ``final``; the report is rebuilt after every run and is in no key.
A finished variant folder holds ``manifest.json`` (written last) with that key and the sha256 of every
file; a folder whose manifest is missing, stale or whose files no longer match is redone. Each variant
runs in a temporary folder beside its target and is swapped into place only when complete, so a killed
run leaves nothing half-written that could count as done.

A notebook that raises leaves ``failed.json`` (error, log) in the variant's folder instead of
``manifest.json``; variants that need it are skipped with the reason, the rest and the report go on,
and the exit status is 1.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trashnet import config, eta, fileio, imagenet, machine, owned, progress, provenance, settings
from trashnet.errors import UserError, os_error_hint, os_error_text

KERNEL = "python3"
FAILED_NAME = settings.FAILED_FILE
METRICS_NAME = settings.METRICS_FILE  # every stage writes it
RUN_RECORD = settings.RUN_RECORD  # <out>/logs/<profile>/run.json: what the last run did, for the report
PREPARE_STAMP = "prepare.json"  # <out>/.cache/<profile>/prepare.json: what the dataset was prepared from
PARTIAL = ".partial-"  # temporary variant folders: .<name>.partial-<pid>
OWNED_KIND = "variant"  # owned.stamp kind of a variant's run folder
RETIRED = ".retired-"  # a finished folder being replaced: .<name>.retired-<pid>
ENV_NOTEBOOKS = "TRASHNET_NOTEBOOKS"  # tests: a folder with stand-in stage notebooks


class PipelineError(UserError, RuntimeError):
    """The run cannot start (bad arguments, missing data or notebook); the message says what to fix."""

    exit_status = 2


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _sha256_json(value: Any) -> str:
    return fileio.sha256_bytes(json.dumps(fileio.to_jsonable(value), sort_keys=True).encode())


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# --- data ----------------------------------------------------------------------------------------

def _source_fingerprint(source: Path) -> list[tuple[str, int, int, int]]:
    """Every file ``prepare`` sees in the source (the same walk: linked class folders are followed), with
    the size, mtime and inode of what it points to: cheap, and catches any edit or re-pointed link."""
    from trashnet import data

    entries = []
    for rel, path in data._walk_files(source, ""):
        try:
            info = os.stat(path)
        except OSError:  # a dangling link: prepare rejects it; its own entry still counts
            info = os.lstat(path)
        entries.append((rel, info.st_size, info.st_mtime_ns, info.st_ino))
    return entries


def prepare_data(source: Path, layout: settings.Layout, data_config: config.DataConfig, *,
                 force: bool = False, log=print) -> str:
    """Prepare ``source`` into ``layout.dataset`` unless it already is; returns the manifest's sha256."""
    stamp_path = layout.cache / PREPARE_STAMP
    wanted = {
        "source": str(source),
        "files": _sha256_json(_source_fingerprint(source)),
        "data": config.config_to_dict(data_config),
        "code": provenance.code_hash(provenance.import_closure(settings.DATA_MODULES)),
    }
    manifest = layout.data_manifest
    from trashnet import data

    if not force and manifest.exists() and stamp_path.exists():
        with contextlib.suppress(ValueError, OSError):
            stamp = fileio.read_json(stamp_path)
            digest = fileio.sha256_file(manifest)
            if stamp.get("inputs") == wanted and stamp.get("manifest_sha256") == digest:
                # The manifest alone does not vouch for the images: each prepared file is checked too.
                stale = data.verify_prepared(layout.dataset)
                if stale is None:
                    log(f"data: {layout.dataset} is up to date ({source})")
                    return digest
                log(f"data: {layout.dataset} changed since it was prepared ({stale}); preparing it again")
    log(f"data: preparing {source} -> {layout.dataset} (split {data_config.split})")
    start = time.perf_counter()
    report = data.prepare(source, layout.dataset, split=data_config.split, seed=data_config.seed,
                          ratios=tuple(data_config.ratios))
    digest = fileio.sha256_file(manifest)
    fileio.write_json(stamp_path, {"inputs": wanted, "manifest_sha256": digest, "prepared": _now()})
    accepted = getattr(report, "accepted", "?")
    rejected = getattr(report, "rejected", "?")
    log(f"data: {accepted} images accepted, {rejected} rejected ({time.perf_counter() - start:.1f}s)")
    return digest


# --- variant folders and their manifests -----------------------------------------------------------

def list_files(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file in ``folder`` except its manifest."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in (settings.RUN_MANIFEST_NAME, owned.STAMP_NAME):
            files[path.relative_to(folder).as_posix()] = fileio.sha256_file(path)
    return files


def outputs_digest(files: dict[str, str]) -> str:
    return _sha256_json(files)


def read_valid_manifest(folder: Path, key: str | None = None) -> dict[str, Any] | None:
    """The folder's manifest if it is complete, matches ``key`` (when given) and every file checks out."""
    path = folder / settings.RUN_MANIFEST_NAME
    try:
        manifest = fileio.read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("status") != "done":
        return None
    if key is not None and manifest.get("key") != key:
        return None
    files = manifest.get("files")
    if not isinstance(files, dict):
        return None
    for name, digest in files.items():
        target = folder / name
        try:
            if not target.is_file() or fileio.sha256_file(target) != digest:
                return None
        except OSError:
            return None
    return manifest


def _swap_into_place(temp: Path, target: Path) -> None:
    """Replace ``target`` by ``temp``: two renames; in between, ``target`` is simply absent (= redo)."""
    owned.replace(target, temp, kind=OWNED_KIND, made_by="`run`", aside=f".{target.name}{RETIRED}",
                  hint="move it away, or choose another --out")


def _clean_leftovers(folders: list[Path]) -> None:
    """Temporary folders left by a killed run (the run lock guarantees no live run owns them)."""
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if (path.name.startswith(".") and (PARTIAL in path.name or RETIRED in path.name)
                    and owned.is_ours(path)):  # a look-alike without our stamp is the user's
                owned.replace(path, quiet=True)


@contextlib.contextmanager
def run_lock(layout: settings.Layout):
    """One run per output folder at a time."""
    import fcntl

    layout.cache.mkdir(parents=True, exist_ok=True)
    handle = open(layout.cache / "run.lock", "w")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            raise PipelineError(f"another run is using {layout.root} (lock {handle.name})",
                                "wait for it to finish, or choose another --out") from error
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


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
    path = settings.NOTEBOOKS[stage]
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
IDENTITY = ("id", "stage", "seed", "arch", "source", "source_stage", "precision")
STAGE_INPUTS = {
    "baseline": ("data", "model", "train", "quantize.latency_runs", "quantize.latency_warmup"),
    "pruned": ("model", "prune", "train.batch_size", "train.weight_decay", "train.label_smoothing",
               "train.class_weights", "train.augment", "train.ema", "quantize.latency_threads",
               "quantize.latency_runs", "quantize.latency_warmup"),
    "quantized": ("model", "quantize"),
    "final": ("select", "stats"),
}


def config_inputs(variant: config.VariantConfig) -> dict[str, Any]:
    """The part of ``variant``'s config its stage reads (``STAGE_INPUTS``), as a flat dict."""
    resolved = config.config_to_dict(variant)
    picked: dict[str, Any] = {name: resolved[name] for name in IDENTITY}
    for path in STAGE_INPUTS[variant.stage]:
        value: Any = resolved
        for part in path.split("."):
            value = value[part]
        picked[path] = value
    return picked


def stage_code(stage: str, notebook: Path) -> tuple[list[str], str]:
    """The package files a stage's notebook runs (its import closure) and their sha256."""
    modules = provenance.import_closure(set(settings.STAGE_MODULES[stage]) | provenance.notebook_imports(notebook))
    return modules, provenance.code_hash(modules)


def cache_key(job: Job, jobs: dict[str, Job], *, code: str, lock: str, data_sha: str) -> str:
    """``code``: ``stage_code(...)[1]`` for the job's stage."""
    if job.variant.stage == "final":  # it reads every result on disk, selected in this run or not
        upstream: dict[str, Any] = results_on_disk(
            job.target.parent, {dep: jobs[dep].digest for dep in job.deps if jobs[dep].ok})
    else:
        upstream = {dep: {"key": jobs[dep].key, "outputs": jobs[dep].digest} if jobs[dep].ok else jobs[dep].status
                    for dep in job.deps}
    inputs = {
        "config": config_inputs(job.variant),
        "code": code,
        "lockfile": lock,
        "notebook": fileio.sha256_file(job.notebook),
        "data_manifest": data_sha,
        "upstream": upstream,
    }
    ood = ood_fingerprint()
    if ood is not None:  # only when set, so that runs without an OOD set keep their keys
        inputs["ood_data"] = ood
    return _sha256_json(inputs)


def results_on_disk(models_dir: Path, known: dict[str, str]) -> dict[str, str]:
    """``final``'s upstream: it reads every result folder under ``models_dir`` (``select.read_results``),
    whichever variants were selected, so each one's outputs digest (``known`` for those this run checked
    already, else hashed now). A deleted, edited or added result reruns ``final``, even selected alone."""
    found = {}
    for stage in settings.STAGES:
        folder = models_dir / stage
        if stage == "final" or not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.name.startswith(".") and (path / METRICS_NAME).is_file():
                found[path.name] = known.get(path.name) or outputs_digest(list_files(path))
    return found


def ood_fingerprint() -> str | None:
    """``$TRASHNET_OOD_DATA``'s files (names and sizes): a variant measured without it, or on another set,
    is run again to get its ``ood`` block. None when unset."""
    folder = settings.ood_data()
    if folder is None or not folder.is_dir():
        return None
    return _sha256_json(sorted((p.relative_to(folder).as_posix(), p.stat().st_size)
                               for p in folder.rglob("*") if p.is_file()))


# --- the worker (a separate process per variant) -----------------------------------------------------

def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the worker gets SIGKILL when the runner dies, so a killed run leaves no orphan."""
    os.setpgrp()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _interrupt(signum, frame) -> None:
    """SIGTERM: unwind like Ctrl-C, so papermill shuts the kernel down and the runner cleans up."""
    raise KeyboardInterrupt(f"signal {signum}")


KERNEL_START_ATTEMPTS = 3
_KERNEL_START_FAILURES = ("Kernel died before replying to kernel_info", "Kernel didn't respond in")


def worker_main(job_file: str) -> int:
    """Run one notebook with papermill, render it to HTML; the error (if any) goes to ``error_file``."""
    import logging

    spec = fileio.read_json(job_file)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger().handlers[0].addFilter(_drop_noise)
    signal.signal(signal.SIGTERM, _interrupt)
    import papermill

    status, error = 0, None
    try:
        # The kernel's epoch lines, compactly, in this log (the worker's stdout); its raw stderr filtered.
        with progress.echo(Path(spec["progress"]), logging.getLogger("trashnet").info), _filtered_stderr():
            for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
                try:
                    papermill.execute_notebook(spec["notebook"], spec["output"], parameters=spec["parameters"],
                                               kernel_name=KERNEL, cwd=spec["cwd"], log_output=True,
                                               progress_bar=False, request_save_on_cell_execute=True)
                    break
                except RuntimeError as exc:
                    # Two kernels starting at once can pick the same free TCP port (papermill#511): the loser
                    # dies before any cell ran, so starting it again is safe.
                    if not str(exc).startswith(_KERNEL_START_FAILURES) or attempt == KERNEL_START_ATTEMPTS:
                        raise
                    print(f"kernel start failed ({exc}); starting it again ({attempt + 1}/{KERNEL_START_ATTEMPTS})",
                          flush=True)
                    time.sleep(random.uniform(0.5, 2.0))
    except papermill.PapermillExecutionError as exc:
        status = 1
        error = {"type": exc.ename, "message": exc.evalue, "cell": exc.exec_count,
                 "traceback": [line for line in exc.traceback][-20:]}
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # kernel died, notebook unreadable, ...
        status = 1
        error = {"type": type(exc).__name__, "message": str(exc), "cell": None, "traceback": []}
    if Path(spec["output"]).exists():
        try:
            if spec.get("display"):
                tidy_executed(Path(spec["output"]), **spec["display"])
            os.chmod(spec["output"], 0o444)  # the executed notebook is a record, not a draft
            _render_html(Path(spec["output"]), Path(spec["html"]))
        except Exception as exc:  # a report without one notebook is better than no result
            print(f"nbconvert failed: {type(exc).__name__}: {exc}", flush=True)
    if error is not None:
        fileio.write_json(spec["error_file"], error)
    return status


# Library start-up lines on stderr that say nothing about the run (TensorFlow/XLA/absl logging, CUDA probing
# on a machine without a GPU, LiteRT's delegate notice). Anything else on stderr is kept.
_NOISE = re.compile(r"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\]|WARNING: All log messages before absl::InitializeLog"
                    r"|INFO: Created TensorFlow Lite XNNPACK delegate|.*(?:cuda drivers|cuInit|TF-TRT Warning|"
                    r"oneDNN custom operations|This TensorFlow binary is optimized|To enable the following instructions"
                    r"|Unable to register cu(?:DNN|FFT|BLAS) factory|computation placer already registered)"
                    # The TFLite converter's known notices (issue 28): a deprecation of its own API, a calibration
                    # note with the machine's venv path, its C++ summary line, and the echoed warnings.warn( line.
                    r"|WARNING:absl:Please consider providing the trackable_obj|.*UserWarning: Statistics for "
                    r"quantized inputs were expected|fully_quantize: \d+, inference_type: \d+|\s+warnings\.warn\($)")


@contextlib.contextmanager
def _filtered_stderr():
    """File descriptor 2 through a pipe that drops ``_NOISE`` lines, for this process and the kernel it starts:
    TensorFlow prints its first lines straight to the kernel's inherited stderr while it loads, before any
    log level applies, and ipykernel copies them there as well as into the notebook."""
    import threading

    read_end, write_end = os.pipe()
    saved = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "r", encoding="utf-8", errors="replace") as source, \
                os.fdopen(os.dup(saved), "w", encoding="utf-8") as target:
            for line in source:
                if not _NOISE.match(line):
                    target.write(line)
                    target.flush()

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe ends when the kernel, its last other writer, has exited
        os.close(saved)
        thread.join(timeout=5)


def _drop_noise(record) -> bool:
    """Logging filter of the worker (the variant's log): library start-up lines out of a kernel's stderr."""
    if not isinstance(record.msg, str) or record.args:
        return True
    lines = record.msg.splitlines(keepends=True)
    kept = [line for line in lines if not _NOISE.match(line)]
    if len(kept) != len(lines):
        record.msg = "".join(kept).rstrip("\n")
    return bool(record.msg.strip())


def tidy_executed(notebook: Path, *, root: str, temp: str, target: str) -> None:
    """Make the executed notebook read as the record of its final folder: the injected parameters show
    paths relative to the output root with the final folder name (not the runner's hidden partial folder),
    and library start-up noise is dropped from stderr outputs."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)

    def portable(text: str) -> str:  # no folder of the run machine: final folder names, relative to the root
        text = text.replace(temp, target).replace('"' + root.rstrip("/") + '"', '"."')
        return text.replace(root.rstrip("/") + "/", "").replace(str(settings.REPO_ROOT) + "/", "")

    injected = any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            cell.source = ("# Parameters injected by the pipeline; paths shown relative to the output root.\n"
                           + portable(cell.source))
        elif "parameters" in tags and injected:  # the stage's defaults name another variant: not this run's
            cell.source = "# The stage notebook's default parameters, replaced by this run's in the next cell."
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                lines = [line for line in output.text.splitlines(keepends=True) if not _NOISE.match(line)]
                if not "".join(lines).strip():
                    continue
                output.text = "".join(lines)
            if output.get("output_type") == "stream":
                output.text = portable(output.text)
            for kind, value in (output.get("data") or {}).items():
                if kind.startswith("text/") and isinstance(value, str):
                    output["data"][kind] = portable(value)
            kept.append(output)
        cell.outputs = kept
    papermill = nb.metadata.get("papermill")
    if papermill:  # its input/output paths and parameters, as the injected cell shows them
        nb.metadata["papermill"] = nbformat.from_dict(json.loads(portable(json.dumps(papermill))))
    nbformat.write(nb, notebook)


def _render_html(notebook: Path, html: Path) -> None:
    import nbconvert
    import nbformat

    exporter = nbconvert.HTMLExporter()
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    fileio.atomic_write_text(html, body)


def _ansi_free(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


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
        return "~" + "-".join(_duration(seconds) for seconds in left) if left else "0s"

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
        extra = f" ({_duration(job.seconds)})" if job.seconds is not None and event != "start" else ""
        tail = self.tails.get(job.id)
        if job.status == "running":
            self.shown[job.id] = time.monotonic()
            if event == "running":
                extra = f" {_duration(time.monotonic() - job.started)}"
            if tail is not None and tail.latest is not None:
                extra += " " + progress.describe(tail.latest, tail.seconds_per_epoch())
        reason = f": {job.reason}" if job.reason and event in ("failed", "skipped") else ""
        self.log(f"[{finished:>{len(str(total))}}/{total}] {event:<7} {job.id} [{job.variant.stage}]{extra}{reason}"
                 f" | elapsed {_duration(elapsed)}, ETA {self.eta()} | done {counts['done']},"
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
        job.key = cache_key(job, self.jobs, code=self.code(job)[1], lock=self.lock, data_sha=self.data_sha)
        if not self.force:
            manifest = read_valid_manifest(job.target, job.key)
            if manifest is not None:
                job.status = "cached"
                job.digest = outputs_digest(manifest["files"])
                job.seconds = manifest.get("seconds")
                self.progress(job, "cached")
                return True
        return False

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
        handle.write(f"# {job.id} [{variant.stage}] {_now()}\n# notebook {job.notebook}\n# key {job.key}\n")
        handle.flush()
        code = "import sys; from trashnet.pipeline import worker_main; sys.exit(worker_main(sys.argv[1]))"
        job.process = subprocess.Popen([sys.executable, "-c", code, str(spec_file)], stdout=handle,
                                       stderr=subprocess.STDOUT, env=env, cwd=str(job.temp),
                                       preexec_fn=_die_with_parent)
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
            files = list_files(job.temp)
            manifest = {
                "variant": job.id, "stage": job.variant.stage, "status": "done", "key": job.key,
                "finished": _now(), "seconds": round(job.seconds, 2), "notebook": str(job.notebook),
                "log": str(job.log), "files": files,
                "inputs": {"code_sha256": self.code(job)[1], "code_modules": self.code(job)[0],
                           "config": config_inputs(job.variant), "lockfile_sha256": self.lock,
                           "data_manifest_sha256": self.data_sha,
                           "upstream": {dep: self.jobs[dep].key if self.jobs[dep].ok else self.jobs[dep].status
                                        for dep in job.deps}},
            }
            fileio.write_json(job.temp / settings.RUN_MANIFEST_NAME, manifest)  # last: the done marker
            _swap_into_place(job.temp, job.target)
            job.status = "done"
            job.digest = outputs_digest(files)
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
            "finished": _now(), "seconds": round(job.seconds, 2), "error": message,
            "error_type": error.get("type"), "cell": error.get("cell"),
            "traceback": [_ansi_free(line) for line in error.get("traceback", [])],
            "log": str(job.log), "notebook": f"{job.id}.ipynb" if executed.exists() else None,
        }
        fileio.write_json(job.temp / FAILED_NAME, record)
        _swap_into_place(job.temp, job.target)
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


def _read_record(path: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        record = fileio.read_json(path)
        return record if isinstance(record, dict) else None
    return None


def _train_images(manifest: Path) -> int | None:
    """Accepted training images in the prepared data set's manifest (for the ETA); None if unreadable."""
    import csv

    with contextlib.suppress(OSError, KeyError, csv.Error):
        with manifest.open(newline="", encoding="utf-8") as handle:
            return sum(1 for row in csv.DictReader(handle) if row["status"] == "accepted" and row["split"] == "train")
    return None


# --- command line -------------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", help="profile name in experiments/profiles/ or a YAML path "
                        "(default: quick on the bundled sample, cpu on a given data folder)")
    parser.add_argument("--data", type=Path, help="a <class>/<image> folder (default: $TRASHNET_DATA, "
                        "else the bundled sample)")
    parser.add_argument("--out", type=Path, help="output root (default: $TRASHNET_OUT, else the repository)")
    parser.add_argument("--variants", help="comma-separated ids or shell patterns (their sources come along)")
    parser.add_argument("--split", choices=("official", "stratified"), default=None,
                        help="data split (default: the profile's; its official TrashNet split falls back to "
                             "stratified when the data folder is not the complete TrashNet)")
    parser.add_argument("--variants-file", type=Path, default=settings.VARIANTS_FILE, help=argparse.SUPPRESS)
    parser.add_argument("-j", "--jobs", type=int, default=1, help="variants run in parallel (default 1)")
    parser.add_argument("--force", action="store_true", help="rerun every selected variant, ignoring the cache")
    parser.add_argument("--no-report", action="store_true", help="do not build report/ at the end")
    parser.add_argument("--no-verify", action="store_true", help="do not compare with results/<profile>/ "
                        "at the end (done whenever that reference exists)")
    parser.add_argument("--no-warmup", action="store_true", help="start a long run without first timing a few "
                        "training steps for its estimate (short runs never do)")


def resolve_data(data: Path | None) -> tuple[Path, bool]:
    """The source folder and whether it is the bundled sample."""
    if data is None:
        value = os.environ.get(settings.ENV_DATA)
        if not value:
            return settings.SAMPLE_DIR, True
        data = Path(value)
    data = data.expanduser().resolve()
    if not data.is_dir():
        raise PipelineError(f"data folder {data} does not exist (or is not a folder)",
                            "pass --data with a folder of <class>/<image> files")
    return data, data == settings.SAMPLE_DIR.resolve()


def resolve_split(split: str | None, profile: config.Profile, source: Path, log=print) -> str:
    """The data split of this run: ``split`` if given, else the profile's.

    The official split is the TrashNet authors' lists: it fits only the complete TrashNet. When the profile
    asks for it and ``source`` is another (or a partial) data set, the run uses the stratified split and
    says so; an explicit ``--split official`` that does not fit is an error.
    """
    wanted = split or profile.data.split
    if wanted != "official":
        return wanted
    from trashnet import data

    listed, missing = data.official_split_fits(source)
    if not missing:
        return "official"
    why = f"{missing} of the {listed} images the official TrashNet split lists are not in {source}"
    if split == "official":
        raise PipelineError(f"--split official does not fit this data: {why}",
                            "use --split stratified for another or a partial data set")
    log(f"data: {why}: using the stratified split (seed {profile.data.seed}, ratios "
        f"{'/'.join(f'{r:g}' for r in profile.data.ratios)}) instead of profile {profile.name}'s official one; "
        f"--split official insists on it")
    return "stratified"


def default_profile(is_sample: bool) -> str:
    if is_sample or not (settings.PROFILES_DIR / "cpu.yaml").exists():
        return "quick"
    return "cpu"


def command(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(profile=args.profile, data=args.data, out=args.out, variants=args.variants,
                   variants_file=args.variants_file, jobs=args.jobs, force=args.force,
                   report=not args.no_report, verify=not args.no_verify, split=args.split,
                   warmup=not args.no_warmup)
    except KeyboardInterrupt:
        print("run: interrupted; finished variants are kept, rerun to resume", file=sys.stderr)
        return 130


def run(*, profile: str | None = None, data: Path | None = None, out: Path | None = None,
        variants: str | list[str] | None = None, variants_file: Path = settings.VARIANTS_FILE, jobs: int = 1,
        force: bool = False, report: bool = True, verify: bool = True, split: str | None = None,
        warmup: bool = True, log=None) -> int:
    """The whole run; returns the exit status (0 = every selected variant succeeded)."""
    def say(message: str) -> None:
        print(message, flush=True)

    log = log or say
    if jobs < 1:
        raise PipelineError(f"-j {jobs}: must be at least 1", "e.g. -j 2")
    source, is_sample = resolve_data(data)
    if is_sample:
        log(f"data: no --data and ${settings.ENV_DATA} unset: using the bundled sample ({source}); "
            "its numbers only show that everything runs")
    profile_obj = config.load_profile(profile or default_profile(is_sample))
    effective = resolve_split(split, profile_obj, source, log)
    if effective != profile_obj.data.split:  # every variant's config then records the split it ran on
        profile_obj = profile_obj.model_copy(update={"data": profile_obj.data.model_copy(update={"split": effective})})
    root = Path(out).expanduser().resolve() if out else settings.default_output_root()
    layout = settings.Layout(root, profile_obj.name)
    notebooks_dir = Path(os.environ[ENV_NOTEBOOKS]) if os.environ.get(ENV_NOTEBOOKS) else None
    all_variants = config.load_variants(profile_obj, variants_file)
    patterns = profile_obj.variants  # the profile's default selection (None = every variant)
    if variants is not None:
        # --variants replaces the profile's list: `--variants '*'` runs every variant of the profile.
        patterns = [p.strip() for p in variants.split(",")] if isinstance(variants, str) else list(variants)
        patterns = [p for p in patterns if p]
        if not patterns:
            raise PipelineError(f"--variants {variants!r} names no variant",
                                "give ids or patterns, e.g. --variants mobilenet_v3_small, or '*' for all")
    ids = config.select_variants(all_variants, patterns)
    log(f"run: profile {profile_obj.name}, {len(ids)} variants, -j {jobs}, output {layout.root} "
        f"(models/{layout.profile}/, report/{layout.profile}/)")
    jobs_plan = plan(all_variants, ids, layout, notebooks_dir)  # a missing notebook stops us before any work
    for job in jobs_plan.values():  # missing ImageNet files stop us here too, in one line, not in a notebook
        if job.variant.stage == "baseline" and job.variant.model.weights == imagenet.WEIGHTS_VALUE:
            imagenet.check_available(job.variant.arch)
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PipelineError(f"cannot write to --out {layout.root}: {os_error_text(error)}",
                            os_error_hint(error, "--out")) from error
    with run_lock(layout):
        data_sha = prepare_data(source, layout, profile_obj.data, force=force, log=log)
        _clean_leftovers(sorted({job.target.parent for job in jobs_plan.values()}))
        history = _read_record(layout.logs / RUN_RECORD)  # the profile's previous run: the ETA learns from it
        train_images = _train_images(layout.data_manifest)
        runner = Runner(jobs_plan, layout, data_sha=data_sha, jobs_at_once=jobs, force=force, log=log,
                        history=history, train_images=train_images)
        if warmup:  # before committing to hours: this machine's speed, and the whole run's estimate
            machine.check(runner, train_images, log)
        started = _now()
        clock = time.monotonic()
        where = machine.info()  # times are quoted with their machine
        try:
            runner.run()
        finally:
            record = {"started": started, "finished": _now(), "seconds": round(time.monotonic() - clock, 2),
                      "profile": profile_obj.name, "machine": where, "data_source": str(source),
                      "sample": is_sample,
                      "data_manifest_sha256": data_sha, "jobs": jobs, "force": force,
                      "selected": ids, **runner.record()}
            fileio.write_json(layout.logs / RUN_RECORD, record)
    counts = runner.counts()
    log(f"run: finished in {_duration(time.monotonic() - clock)}: done {counts['done']}, cached {counts['cached']},"
        f" failed {counts['failed']}, skipped {counts['skipped']}")
    for job in runner.jobs.values():
        if job.status in ("failed", "skipped"):
            log(f"  {job.status}: {job.id}: {job.reason}" + (f" (log: {job.log})" if job.log else ""))
    status = 1 if counts["failed"] or counts["skipped"] else 0
    if report:
        try:
            from trashnet import report as reporter

            built = reporter.build(layout.root, layout.profile, log=log)
            log(f"report: {built}")
        except Exception as error:  # the run's results stand even if the report cannot be built
            log(f"report: FAILED: {type(error).__name__}: {error}")
            status = 1
    reference = settings.RESULTS_DIR / layout.profile
    if verify and reference.is_dir():
        from trashnet import verify as verifier

        log(f"verify: comparing with the committed reference {reference}")
        try:
            status = max(status, verifier.verify_and_print(reference, layout, ids, log=log))
        except verifier.VerifyError as error:
            log(f"verify: skipped: {error}")
    return status
