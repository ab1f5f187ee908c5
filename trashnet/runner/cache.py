"""What makes a variant done: its cache key (only what its stage reads), its folder's manifest, and the
atomic swap that puts a finished folder in place."""

from __future__ import annotations

import json

import contextlib
import os
from pathlib import Path
from typing import Any

from trashnet.runner.plan import Job, PipelineError, now
from trashnet.core import config, fileio, owned, provenance, records, registry, settings

FAILED_NAME = settings.FAILED_FILE
METRICS_NAME = settings.METRICS_FILE  # every stage writes it
PARTIAL = ".partial-"  # temporary variant folders: .<name>.partial-<pid>
OWNED_KIND = "variant"  # owned.stamp kind of a variant's run folder
RETIRED = ".retired-"  # a finished folder being replaced: .<name>.retired-<pid>


def sha256_json(value: Any) -> str:
    return fileio.sha256_bytes(json.dumps(fileio.to_jsonable(value), sort_keys=True).encode())


# --- variant folders and their manifests -----------------------------------------------------------

def list_files(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file in ``folder`` except its manifest."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in (settings.RUN_MANIFEST_NAME, owned.STAMP_NAME):
            files[path.relative_to(folder).as_posix()] = fileio.sha256_file(path)
    return files


def outputs_digest(files: dict[str, str]) -> str:
    return sha256_json(files)


def read_valid_manifest(folder: Path, key: str | None = None) -> records.RunManifest | None:
    """The folder's manifest if it is complete, matches ``key`` (when given) and every file checks out."""
    manifest = records.read_or_none(records.read_manifest, folder)  # status "done" and a file list, typed
    if manifest is None or (key is not None and manifest.key != key):
        return None
    for name, digest in manifest.files.items():
        target = folder / name
        try:
            if not target.is_file() or fileio.sha256_file(target) != digest:
                return None
        except OSError:
            return None
    return manifest


def swap_into_place(temp: Path, target: Path) -> None:
    """Replace ``target`` by ``temp``: two renames; in between, ``target`` is simply absent (= redo)."""
    owned.replace(target, temp, kind=OWNED_KIND, made_by="`run`", aside=f".{target.name}{RETIRED}",
                  hint="move it away, or choose another --out")


def clean_leftovers(folders: list[Path]) -> None:
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


IDENTITY = ("id", "stage", "seed", "arch", "source", "source_stage", "precision")  # always in the key
ABSENT = "<absent>"  # a recorded field the config no longer has: the key changes, the variant reruns


def _lookup(variant: config.VariantConfig, resolved: dict[str, Any], path: str) -> Any:
    """The value at ``path`` in the resolved config; a field the dump leaves out at its default (``model.head``,
    ``model.input_scale``) is read from the config itself; ``ABSENT`` when the config has no such field."""
    value: Any = resolved
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            break
        value = value[part]
    else:
        return value
    value = variant
    for part in path.split("."):
        if not isinstance(value, config.Strict) or part not in type(value).model_fields:
            return ABSENT
        value = value.__dict__[part]  # the field itself, not a recorded read
    return value.model_dump(mode="json") if isinstance(value, config.Strict) else value


def config_inputs(variant: config.VariantConfig, reads: records.ConfigReads | None) -> dict[str, Any]:
    """The part of ``variant``'s config its stage read when it last ran (``reads``, recorded by the stage
    itself), as a flat dict; with no record yet (the stage has not run), the whole resolved config."""
    resolved = config.config_to_dict(variant)
    picked: dict[str, Any] = {name: resolved[name] for name in IDENTITY}
    if reads is None:
        return {**picked, "config": resolved}
    picked.update({path: _lookup(variant, resolved, path) for path in reads.fields})
    picked.update({path: _lookup(variant, resolved, path) is not None for path in reads.sections})
    return picked


def stage_code(stage: str, notebook: Path) -> tuple[list[str], str]:
    """The package files a stage's notebook runs (its import closure) and their sha256."""
    start = set(registry.get(stage).code_modules) | provenance.notebook_imports(notebook)
    modules = provenance.import_closure(start)
    return modules, provenance.code_hash(modules)


def cache_key(job: Job, jobs: dict[str, Job], *, code: str, lock: str, data_sha: str,
              reads: records.ConfigReads | None) -> str:
    """``code``: ``stage_code(...)[1]`` for the job's stage; ``reads``: what the stage read of its config
    (``records.read_config_reads`` of the variant's folder), None before it has run."""
    if job.variant.stage == "final":  # it reads every result on disk, selected in this run or not
        upstream: dict[str, Any] = results_on_disk(
            job.target.parent, {dep: jobs[dep].digest for dep in job.deps if jobs[dep].ok})
    else:
        upstream = {dep: {"key": jobs[dep].key, "outputs": jobs[dep].digest} if jobs[dep].ok else jobs[dep].status
                    for dep in job.deps}
    inputs = {
        "config": config_inputs(job.variant, reads),
        "code": code,
        "lockfile": lock,
        "notebook": fileio.sha256_file(job.notebook),
        "data_manifest": data_sha,
        "upstream": upstream,
    }
    ood = ood_fingerprint()
    if ood is not None:  # only when set, so that runs without an OOD set keep their keys
        inputs["ood_data"] = ood
    return sha256_json(inputs)


def write_manifest(folder: Path, job: Job, jobs: dict[str, Job], *, code: tuple[list[str], str], lock: str,
                   data_sha: str, seconds: float, log: Path | None) -> records.RunManifest:
    """Write ``folder``'s ``manifest.json``, its "done" marker (written last): the key over what the stage read
    of its config (its ``config_reads.json``), and the sha256 of every file beside it."""
    reads = records.read_config_reads(folder)
    manifest = records.RunManifest(
        variant=job.id, stage=job.variant.stage, status="done",
        key=cache_key(job, jobs, code=code[1], lock=lock, data_sha=data_sha, reads=reads),
        finished=now(), seconds=round(seconds, 2), notebook=str(job.notebook), log=str(log) if log else None,
        files=list_files(folder),
        inputs={"code_sha256": code[1], "code_modules": code[0], "config": config_inputs(job.variant, reads),
                "lockfile_sha256": lock, "data_manifest_sha256": data_sha,
                "upstream": {dep: jobs[dep].key if jobs[dep].ok else jobs[dep].status for dep in job.deps}})
    records.write_manifest(folder, manifest)
    return manifest


def report_key(layout: settings.Layout, jobs: dict[str, Job], *, lock: str) -> str:
    """The report stage's key: its code (the report package's import closure), the templates and the
    translations, the lockfile, and the outcome of every variant of the run (outputs digest, or why not)."""
    modules = provenance.import_closure(registry.get("report").code_modules)
    assets = {f"{folder.name}/{path.relative_to(folder).as_posix()}": fileio.sha256_file(path)
              for folder in (settings.TEMPLATES_DIR, settings.PACKAGE_DIR / "locale")
              for path in sorted(folder.rglob("*")) if path.is_file() and path.suffix != ".mo"}
    outcomes = {vid: job.digest if job.ok else f"{job.status}: {job.reason}" for vid, job in jobs.items()}
    return sha256_json({"code": provenance.code_hash(modules), "assets": assets, "lockfile": lock,
                        "profile": layout.profile, "variants": outcomes})


def results_on_disk(models_dir: Path, known: dict[str, str]) -> dict[str, str]:
    """``final``'s upstream: it reads every result folder under ``models_dir`` (``select.read_results``),
    whichever variants were selected, so each one's outputs digest (``known`` for those this run checked
    already, else hashed now). A deleted, edited or added result reruns ``final``, even selected alone."""
    return {path.name: known.get(path.name) or outputs_digest(list_files(path))
            for _, path in settings.result_folders(models_dir) if (path / METRICS_NAME).is_file()}


def ood_fingerprint() -> str | None:
    """``$TRASHNET_OOD_DATA``'s files (names and sizes): a variant measured without it, or on another set,
    is run again to get its ``ood`` block. None when unset."""
    folder = settings.ood_data()
    if folder is None or not folder.is_dir():
        return None
    return sha256_json(sorted((p.relative_to(folder).as_posix(), p.stat().st_size)
                               for p in folder.rglob("*") if p.is_file()))
