"""The run's first step: prepare the dataset folder, skipped when neither the source files, the split
settings nor the preparation code changed."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from trashnet.runner.cache import sha256_json
from trashnet.runner.plan import now
from trashnet.core import config, fileio, provenance, registry, settings

PREPARE_STAMP = "prepare.json"  # <out>/.cache/<profile>/prepare.json: what the dataset was prepared from


# --- data ----------------------------------------------------------------------------------------

def _source_fingerprint(source: Path) -> list[tuple[str, int, int, int]]:
    """Every file ``prepare`` sees in the source (the same walk: linked class folders are followed), with
    the size, mtime and inode of what it points to: cheap, and catches any edit or re-pointed link."""
    from trashnet.data import scan

    entries = []
    for rel, path in scan.walk_files(source, ""):
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
        "files": sha256_json(_source_fingerprint(source)),
        "data": config.config_to_dict(data_config),
        "code": provenance.code_hash(provenance.import_closure(registry.DATA_MODULES)),
    }
    manifest = layout.data_manifest
    from trashnet.data import prepare

    if not force and manifest.exists() and stamp_path.exists():
        with contextlib.suppress(ValueError, OSError):
            stamp = fileio.read_json(stamp_path)
            digest = fileio.sha256_file(manifest)
            if stamp.get("inputs") == wanted and stamp.get("manifest_sha256") == digest:
                # The manifest alone does not vouch for the images: each prepared file is checked too.
                stale = prepare.verify_prepared(layout.dataset)
                if stale is None:
                    log(f"data: {layout.dataset} is up to date ({source})")
                    return digest
                log(f"data: {layout.dataset} changed since it was prepared ({stale}); preparing it again")
    log(f"data: preparing {source} -> {layout.dataset} (split {data_config.split})")
    start = time.perf_counter()
    report = prepare.prepare(source, layout.dataset, split=data_config.split, seed=data_config.seed,
                          ratios=tuple(data_config.ratios))
    digest = fileio.sha256_file(manifest)
    fileio.write_json(stamp_path, {"inputs": wanted, "manifest_sha256": digest, "prepared": now()})
    accepted = getattr(report, "accepted", "?")
    rejected = getattr(report, "rejected", "?")
    log(f"data: {accepted} images accepted, {rejected} rejected ({time.perf_counter() - start:.1f}s)")
    return digest
