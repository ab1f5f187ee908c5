"""One stage of one variant, in this process: what each stage notebook calls, and what
``python -m trashnet <stage> --variant <id>`` calls (``runner.single``).

Every stage module has the same entry, ``run(cfg, *, dataset_dir, models_dir, output_dir, cache_dir, verbose)``,
returning its result (the ``metrics.json`` record; ``final``: the selection, card and checks). ``run_stage`` imports the stage's module from the registry,
records which config fields the stage reads while it runs (``config.recording``) and writes them beside its
results (``config_reads.json``): the runner's cache key covers exactly those fields.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from trashnet.core import config, profiles, records, registry


def variant_config(parameters: dict[str, Any], variant_id: str, *, profile: str = "quick") -> config.VariantConfig:
    """A notebook's ``config`` parameter as a ``VariantConfig``; ``{}`` = ``variant_id`` in ``profile``.

    The runner always passes a full config; the empty default lets a person open and run the notebook.
    """
    if not parameters:
        variants = profiles.load_variants(profiles.load_profile(profile))
        if variant_id not in variants:
            raise ValueError(f"unknown variant {variant_id!r}; known: {', '.join(variants)}")
        return variants[variant_id]
    cfg = config.config_from_dict(parameters)
    if cfg.id != variant_id:
        raise ValueError(f"parameters disagree: variant_id {variant_id!r} but config is for {cfg.id!r}")
    return cfg


def run_stage(stage: str, cfg: config.VariantConfig, *, dataset_dir: str | os.PathLike,
              models_dir: str | os.PathLike, output_dir: str | os.PathLike,
              cache_dir: str | os.PathLike | None = None, verbose: bool = False) -> dict[str, Any]:
    """Run ``stage`` for the variant ``cfg`` into ``output_dir``; returns the stage's result."""
    entry = registry.get(stage)
    if not entry.per_variant or cfg.stage != stage:
        raise ValueError(f"variant {cfg.id!r} belongs to stage {cfg.stage!r}, not {stage!r}")
    module = importlib.import_module(f"trashnet.{entry.module}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with config.recording(cfg) as reads:
        record = module.run(cfg, dataset_dir=dataset_dir, models_dir=models_dir, output_dir=output_dir,
                            cache_dir=cache_dir, verbose=verbose)
    records.write_config_reads(output_dir, records.ConfigReads(fields=sorted(reads.fields),
                                                               sections=sorted(reads.sections)))
    return record
