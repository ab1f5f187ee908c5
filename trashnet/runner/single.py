"""``python -m trashnet <stage> --variant <id>``: one stage of one variant, in this process.

The same call the stage's notebook makes (``stages.invoke.run_stage``), into the same folder as ``run`` uses
(``models/<profile>/<stage>/<id>/``), with the same cache: the result is written beside the folder and moved
into place with its ``manifest.json`` only when complete, and a later ``run`` counts it as done. The
variant's source must be done already (``run`` does the whole chain); the data set is prepared if needed.

    python -m trashnet train --variant mobilenet_v3_small --profile quick
    python -m trashnet quantize --variant mobilenet_v3_small.fp16
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from trashnet.core import owned, profiles, provenance, records, registry
from trashnet.runner.cache import (OWNED_KIND, PARTIAL, cache_key, outputs_digest, read_valid_manifest, run_lock,
                                   stage_code, swap_into_place, write_manifest)
from trashnet.runner.dataprep import prepare_data
from trashnet.runner.pipeline import say, setup
from trashnet.runner.plan import PipelineError, plan


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variant", help="the variant's id (experiments/variants.yaml); final: 'final'")
    parser.add_argument("--profile", help="profile name or YAML path (default: cpu when $TRASHNET_DATA or --data "
                        "is set, else quick)")
    parser.add_argument("--data", type=Path, help="a folder of <class>/<image> files (default: $TRASHNET_DATA, "
                        "else the bundled sample)")
    parser.add_argument("--out", type=Path, help="output root (default: $TRASHNET_OUT, else the repository)")
    parser.add_argument("--split", choices=("official", "stratified"), default=None, help="data split "
                        "(default: the profile's)")
    parser.add_argument("--force", action="store_true", help="run even when the cached result is current")


def command(args: argparse.Namespace) -> int:
    return run_one(args.stage, args.variant or ("final" if args.stage == "final" else None), profile=args.profile,
                   data=args.data, out=args.out, split=args.split, force=args.force)


def run_one(stage: str, variant_id: str | None, *, profile: str | None = None, data: Path | None = None,
            out: Path | None = None, split: str | None = None, force: bool = False, log=say) -> int:
    """Run ``stage`` for ``variant_id``; returns 0 (done or already current)."""
    entry = registry.get(stage)
    where = setup(profile=profile, data=data, out=out, split=split, log=log)
    layout = where.layout
    variants = profiles.load_variants(where.profile)
    if variant_id is None:
        ids = ", ".join(v for v, c in variants.items() if c.stage == stage)
        raise PipelineError(f"`{stage}` needs --variant", f"one of: {ids}")
    if variant_id not in variants:
        raise PipelineError(f"unknown variant {variant_id!r} in profile {where.profile.name}",
                            "see experiments/variants.yaml")
    variant = variants[variant_id]
    if variant.stage != stage:
        raise PipelineError(f"{variant_id} is a variant of stage {variant.stage!r}, not {stage!r}",
                            f"run `python -m trashnet {variant.stage} --variant {variant_id}`")
    with run_lock(layout):
        data_sha = prepare_data(where.source, layout, where.profile.data, log=log)
        sources = [variant.source] if variant.source else []
        jobs = plan(variants, [*sources, variant_id], layout)
        for source in sources:  # its source must be finished: its key and outputs key this variant
            manifest = read_valid_manifest(jobs[source].target)
            if manifest is None:
                raise PipelineError(f"{variant_id} needs {source}, which has no finished result in "
                                    f"{jobs[source].target}", f"run `python -m trashnet {jobs[source].variant.stage} "
                                    f"--variant {source}` first (or `run`, which does the whole chain)")
            jobs[source].status, jobs[source].key = "cached", manifest.key
            jobs[source].digest = outputs_digest(manifest.files)
        job = jobs[variant_id]
        code = stage_code(stage, job.notebook)
        lock = provenance.lockfile_hash()
        reads = records.read_config_reads(job.target)
        key = cache_key(job, jobs, code=code[1], lock=lock, data_sha=data_sha, reads=reads)
        if not force and read_valid_manifest(job.target, key) is not None:
            log(f"{stage}: {variant_id} is current ({job.target}); --force reruns it")
            return 0
        owned.check_replaceable(job.target, OWNED_KIND, made_by="`run`", hint="move it away, or choose another --out")
        temp = job.target.with_name(f".{job.target.name}{PARTIAL}{os.getpid()}")
        owned.remove(temp, OWNED_KIND, made_by="`run`")
        temp.mkdir(parents=True)
        owned.stamp(temp, OWNED_KIND)
        started = time.monotonic()
        try:
            from trashnet.stages import invoke

            invoke.run_stage(entry.name, variant, dataset_dir=layout.dataset, models_dir=layout.models,
                             output_dir=temp, cache_dir=layout.cache, verbose=True)
            write_manifest(temp, job, jobs, code=code, lock=lock, data_sha=data_sha,
                           seconds=time.monotonic() - started, log=None)
        except BaseException:
            owned.replace(temp, kind=OWNED_KIND, quiet=True)
            raise
        swap_into_place(temp, job.target)
    log(f"{stage}: {variant_id} done in {time.monotonic() - started:.0f}s ({job.target})")
    return 0
