"""``python -m trashnet run``: every stage notebook for every selected variant, cached and resumable.

The run, step by step:

1. *Data*: the source folder is prepared into ``<out>/dataset`` (``prepare.prepare``), skipped when neither
   the source files, the split settings nor the code changed since the last preparation.
2. *Variants*: ``experiments/variants.yaml`` resolved against the profile; the ``--variants`` patterns,
   else the profile's ``variants`` list, else all of them (their sources come along).
3. *Notebooks*: each variant's stage notebook runs through papermill in its own worker process
   (``-j N`` at a time). A variant starts when its source is finished; ``final`` waits for every other
   selected variant and chooses among those that succeeded.

Everything goes into the profile's own folders (``settings.Layout``): ``models/<profile>/``,
``logs/<profile>/run.json``, ``report/<profile>/``. At the end the run is compared with the committed
reference ``results/<profile>/`` when there is one (``trashnet.runner.verify``).

Caching (``runner.cache``): a variant's *key* is the sha256 of only what its stage reads: the config fields
the stage read when it last ran (recorded by the stage itself, ``config_reads.json``; before its first run,
the whole config), the code of the package modules its stage runs (``provenance.import_closure`` from the
registry's module and the notebook's imports), the lockfile, its notebook file, the data manifest, and the
keys and output digests of its upstream variants. So a change to ``stages/select.py`` or the ``select:``
settings reruns only ``final``. The report (``build_report``) is cached too, on its code, templates and
translations and on every variant's outputs.
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
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from trashnet.runner.cache import clean_leftovers, list_files, read_valid_manifest, report_key, run_lock
from trashnet.runner.dataprep import prepare_data
from trashnet.runner.plan import ENV_NOTEBOOKS, Job, PipelineError, now, plan
from trashnet.runner.scheduler import RUN_RECORD, Runner, count_train_images, read_record
from trashnet.runner.worker import interrupt
from trashnet.core.errors import os_error_hint, os_error_text
from trashnet.core import config, profiles, records, settings
from trashnet.runner import eta, machine
from trashnet.data import imagenet_files

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
    from trashnet.data import splits

    listed, missing = splits.official_split_fits(source)
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
    signal.signal(signal.SIGTERM, interrupt)
    try:
        return run(profile=args.profile, data=args.data, out=args.out, variants=args.variants,
                   variants_file=args.variants_file, jobs=args.jobs, force=args.force,
                   report=not args.no_report, verify=not args.no_verify, split=args.split,
                   warmup=not args.no_warmup)
    except KeyboardInterrupt:
        print("run: interrupted; finished variants are kept, rerun to resume", file=sys.stderr)
        return 130


@dataclass(frozen=True)
class Setup:
    """What a run (or one stage run on its own) works on: the data, the profile and the output layout."""

    source: Path
    is_sample: bool
    profile: config.Profile
    layout: settings.Layout


def setup(*, profile: str | None, data: Path | None, out: Path | None, split: str | None, log) -> Setup:
    source, is_sample = resolve_data(data)
    if is_sample:
        log(f"data: no --data and ${settings.ENV_DATA} unset: using the bundled sample ({source}); "
            "its numbers only show that everything runs")
    profile_obj = profiles.load_profile(profile or default_profile(is_sample))
    effective = resolve_split(split, profile_obj, source, log)
    if effective != profile_obj.data.split:  # every variant's config then records the split it ran on
        profile_obj = profile_obj.model_copy(update={"data": profile_obj.data.model_copy(update={"split": effective})})
    root = Path(out).expanduser().resolve() if out else settings.default_output_root()
    return Setup(source, is_sample, profile_obj, settings.Layout(root, profile_obj.name))


def say(message: str) -> None:
    print(message, flush=True)


def run(*, profile: str | None = None, data: Path | None = None, out: Path | None = None,
        variants: str | list[str] | None = None, variants_file: Path = settings.VARIANTS_FILE, jobs: int = 1,
        force: bool = False, report: bool = True, verify: bool = True, split: str | None = None,
        warmup: bool = True, log=None) -> int:
    """The whole run; returns the exit status (0 = every selected variant succeeded)."""
    log = log or say
    if jobs < 1:
        raise PipelineError(f"-j {jobs}: must be at least 1", "e.g. -j 2")
    where = setup(profile=profile, data=data, out=out, split=split, log=log)
    source, is_sample, profile_obj, layout = where.source, where.is_sample, where.profile, where.layout
    notebooks_dir = Path(os.environ[ENV_NOTEBOOKS]) if os.environ.get(ENV_NOTEBOOKS) else None
    all_variants = profiles.load_variants(profile_obj, variants_file)
    patterns = profile_obj.variants  # the profile's default selection (None = every variant)
    if variants is not None:
        # --variants replaces the profile's list: `--variants '*'` runs every variant of the profile.
        patterns = [p.strip() for p in variants.split(",")] if isinstance(variants, str) else list(variants)
        patterns = [p for p in patterns if p]
        if not patterns:
            raise PipelineError(f"--variants {variants!r} names no variant",
                                "give ids or patterns, e.g. --variants mobilenet_v3_small, or '*' for all")
    ids = profiles.select_variants(all_variants, patterns)
    log(f"run: profile {profile_obj.name}, {len(ids)} variants, -j {jobs}, output {layout.root} "
        f"(models/{layout.profile}/, report/{layout.profile}/)")
    jobs_plan = plan(all_variants, ids, layout, notebooks_dir)  # a missing notebook stops us before any work
    for job in jobs_plan.values():  # missing ImageNet files stop us here too, in one line, not in a notebook
        if job.variant.stage == "train" and job.variant.model.weights == imagenet_files.WEIGHTS_VALUE:
            imagenet_files.check_available(job.variant.arch)
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PipelineError(f"cannot write to --out {layout.root}: {os_error_text(error)}",
                            os_error_hint(error, "--out")) from error
    with run_lock(layout):
        data_sha = prepare_data(source, layout, profile_obj.data, force=force, log=log)
        clean_leftovers(sorted({job.target.parent for job in jobs_plan.values()}))
        history = read_record(layout.logs / RUN_RECORD)  # the profile's previous run: the ETA learns from it
        images = count_train_images(layout.data_manifest)
        runner = Runner(jobs_plan, layout, data_sha=data_sha, jobs_at_once=jobs, force=force, log=log,
                        history=history, train_images=images)
        if warmup:  # before committing to hours: this machine's speed, and the whole run's estimate
            machine.check(runner, images, log)
        started = now()
        clock = time.monotonic()
        where = machine.info()  # times are quoted with their machine
        try:
            runner.run()
        finally:
            record = {"started": started, "finished": now(), "seconds": round(time.monotonic() - clock, 2),
                      "profile": profile_obj.name, "machine": where, "data_source": str(source),
                      "sample": is_sample,
                      "data_manifest_sha256": data_sha, "jobs": jobs, "force": force,
                      "selected": ids, **runner.record()}
            records.write_run_record(layout.logs, record)
    counts = runner.counts()
    log(f"run: finished in {eta.duration(time.monotonic() - clock)}: done {counts['done']}, cached {counts['cached']},"
        f" failed {counts['failed']}, skipped {counts['skipped']}")
    for job in runner.jobs.values():
        if job.status in ("failed", "skipped"):
            log(f"  {job.status}: {job.id}: {job.reason}" + (f" (log: {job.log})" if job.log else ""))
    status = 1 if counts["failed"] or counts["skipped"] else 0
    if report:
        try:
            build_report(layout, runner.jobs, lock=runner.lock, force=force, log=log)
        except Exception as error:  # the run's results stand even if the report cannot be built
            log(f"report: FAILED: {type(error).__name__}: {error}")
            status = 1
    reference = settings.RESULTS_DIR / layout.profile
    if verify and reference.is_dir():
        from trashnet.runner import verify as verifier

        log(f"verify: comparing with the committed reference {reference}")
        try:
            status = max(status, verifier.verify_and_print(reference, layout, ids, log=log))
        except verifier.VerifyError as error:
            log(f"verify: skipped: {error}")
    return status


def build_report(layout: settings.Layout, jobs: dict[str, Job], *, lock: str, force: bool = False, log=say) -> None:
    """The report stage, cached like the others: rebuilt only when its code, templates or translations, or
    what it reads (each variant's outputs, and whether it succeeded) changed. Its ``manifest.json`` in
    ``report/<profile>/`` holds that key and the sha256 of every report file, so an edited or deleted page
    rebuilds it too. Run times and load are not in the key: the report keeps those of the run that made
    the results it shows."""
    key = report_key(layout, jobs, lock=lock)
    if not force and read_valid_manifest(layout.report, key) is not None:
        log(f"report: cached ({layout.report})")
        return
    from trashnet.report import build as reporter

    started = time.monotonic()
    built = reporter.build(layout.root, layout.profile, log=log)
    records.write_manifest(built, records.RunManifest(
        variant="report", stage="report", status="done", key=key, finished=now(),
        seconds=round(time.monotonic() - started, 2), files=list_files(built)))
    log(f"report: {built}")
