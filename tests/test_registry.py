"""The stage registry and what a stage reads of its config.

One name per stage (registry entry, command, notebook, module, folder); the config fields a stage reads are
recorded while it runs, and its cache key covers exactly them."""

from __future__ import annotations

import ast
import json
import shutil

import nbformat
import pytest
import yaml

from trashnet import cli
from trashnet.core import config, profiles, records, registry, settings
from trashnet.runner import cache


def test_one_entry_per_stage_in_run_order_then_the_report():
    assert tuple(registry.STAGES) == (*settings.STAGES, "report")
    assert set(yaml.safe_load(settings.VARIANTS_FILE.read_text())) == set(settings.STAGES)


@pytest.mark.parametrize("name", list(registry.STAGES))
def test_a_stage_has_one_name_everywhere(name):
    stage = registry.get(name)
    assert name in cli.COMMANDS and cli.COMMANDS[name][1] == stage.summary
    module = settings.PACKAGE_DIR / (stage.module.replace(".", "/") + ".py")
    assert module.is_file() and module.stem in (name, "build")  # the report's module builds it
    if not stage.per_variant:
        return
    assert stage.notebook == settings.EXPERIMENTS_DIR / f"{name}.ipynb" and stage.notebook.is_file()
    entry = {node.name for node in ast.parse(module.read_text()).body if isinstance(node, ast.FunctionDef)}
    assert "run" in entry, f"{module} has no run(): the entry stages.invoke calls"
    code = "\n".join(cell.source for cell in nbformat.read(stage.notebook, as_version=4).cells
                     if cell.cell_type == "code")
    assert f'invoke.run_stage("{name}", cfg,' in code  # the notebook calls what the command calls


def test_an_unknown_stage_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown stage 'baseline'; stages: train, prune"):
        registry.get("baseline")


# --- recording what a stage reads ---------------------------------------------------------------------

def test_recording_notes_fields_and_sections_of_that_config_only(quick_profile):
    variants = profiles.load_variants(quick_profile)
    cfg, other = variants["mobilenet_v3_large.prune-2of4"], variants["mobilenet_v3_small"]
    with config.recording(cfg) as reads:
        assert cfg.train.epochs and cfg.model.image_size and cfg.quantize.qat.method
        cfg.model_dump()  # provenance: not a read
        other.train.learning_rate  # another config object
        cfg.train.augment  # a section read alone: its presence
    assert reads.fields == {"train.epochs", "model.image_size", "quantize.qat.method"}
    assert reads.sections == {"train", "model", "quantize", "quantize.qat", "train.augment"}
    cfg.prune.epochs  # after the block: nothing is recorded
    assert "prune.epochs" not in reads.fields and config._RECORDER is None


def test_a_recorded_field_the_config_no_longer_has_changes_the_key(quick_profile):
    variant = profiles.load_variants(quick_profile)["mobilenet_v3_small"]
    reads = records.ConfigReads(fields=["train.epochs", "train.retired_setting"])
    picked = cache.config_inputs(variant, reads)
    assert picked["train.epochs"] == variant.train.epochs and picked["train.retired_setting"] == cache.ABSENT


@pytest.mark.slow
def test_a_real_stage_records_what_it_reads_and_its_key_covers_it(tmp_path, trained_model_factory, sample_dataset):
    """The quantize stage on a trained model: every field it read is a real config path, its cache key input
    holds each of them, and a setting it did not read is not in the key."""
    from trashnet.stages import invoke

    variants = profiles.load_variants(profiles.load_profile("quick"))
    data = config.config_to_dict(variants["mobilenet_v3_small.fp16"])
    data["model"]["image_size"] = 48
    cfg = config.config_from_dict(data)
    models_dir = tmp_path / "models"
    source = models_dir / cfg.source_stage / cfg.source
    source.mkdir(parents=True)
    shutil.copyfile(trained_model_factory("mobilenet_v3_small"), source / f"{cfg.source}.keras")
    (source / settings.METRICS_FILE).write_text(json.dumps({"variant": cfg.source, "stage": "train"}))
    out = models_dir / "quantize" / cfg.id
    invoke.run_stage("quantize", cfg, dataset_dir=sample_dataset, models_dir=models_dir, output_dir=out)
    reads = records.read_config_reads(out)
    assert reads is not None and {"precision", "model.image_size", "quantize.latency_runs"} <= set(reads.fields)
    resolved = config.config_to_dict(cfg)
    picked = cache.config_inputs(cfg, reads)
    for path in reads.fields:
        assert cache._lookup(cfg, resolved, path) != cache.ABSENT, f"recorded {path!r} is no config field"
        assert path in picked or path in cache.IDENTITY
    assert not any(path.startswith(("train.", "prune.", "select.")) for path in picked), picked  # not read
    with pytest.raises(ValueError, match="belongs to stage 'quantize', not 'prune'"):
        invoke.run_stage("prune", cfg, dataset_dir=sample_dataset, models_dir=models_dir, output_dir=out)


def test_the_readme_table_names_each_stage_as_the_registry_does():
    text = (settings.REPO_ROOT / "README.md").read_text()
    for name, stage in registry.STAGES.items():
        row = next((line for line in text.splitlines() if line.strip().startswith(f"| {name} |")), None)
        assert row is not None, f"README has no row for stage {name}"
        assert f"`python -m trashnet {name}" in row and f"`trashnet/{stage.module.replace('.', '/')}.py`" in row
        if stage.per_variant:
            assert f"`experiments/{name}.ipynb`" in row
