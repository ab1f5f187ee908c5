"""Per-stage cache keys: a change reruns only the variants whose stage reads it.

The reruns run the real stage notebooks on the tiny profile (``realrun``, one shared run per session): the keys
cover the config fields each stage recorded as read, which only real stages record.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import realrun
from trashnet.core import config, profiles, provenance, records, registry, settings
from trashnet.runner import cache, pipeline


# --- the import closure, computed for real -------------------------------------------------------------

def test_import_closure_follows_every_kind_of_import(tmp_path):
    package = tmp_path / "trashnet"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("import os\nfrom trashnet import b, settings_that_is_not_a_module\n")
    (package / "b.py").write_text("def later():\n    from trashnet.c import thing  # lazy\n    return thing\n")
    (package / "c.py").write_text("from . import d\nthing = 1\n")
    (package / "d.py").write_text("import trashnet.e as e\n")
    (package / "e.py").write_text("")
    (package / "unused.py").write_text("import trashnet.a\n")
    assert provenance.import_closure(["a"], package) == ["__init__.py", "a.py", "b.py", "c.py", "d.py", "e.py"]
    assert provenance.import_closure(["e"], package) == ["__init__.py", "e.py"]


def test_import_closure_follows_sub_packages_and_their_inits(tmp_path):
    package = tmp_path / "trashnet"
    (package / "low").mkdir(parents=True)
    (package / "high").mkdir()
    for init in ("__init__.py", "low/__init__.py", "high/__init__.py"):
        (package / init).write_text("")
    (package / "low" / "util.py").write_text("X = 1\n")
    (package / "low" / "other.py").write_text("from .util import X\n")
    (package / "high" / "stage.py").write_text("from trashnet.low import other\nfrom trashnet.low.util import X\n")
    assert provenance.import_closure(["high.stage"], package) == [
        "__init__.py", "high/__init__.py", "high/stage.py", "low/__init__.py", "low/other.py", "low/util.py"]


def _closures() -> dict[str, set[str]]:
    return {name: set(provenance.import_closure(set(stage.code_modules) | provenance.notebook_imports(stage.notebook)))
            for name, stage in registry.STAGES.items() if stage.per_variant}


def test_stage_closures_of_the_real_package():
    closures = _closures()
    for stage, files in closures.items():
        assert not any(name.startswith(("runner/", "cli.py", "__main__.py")) for name in files), stage
        # The notebooks show figures and tables; the rest of the reporter is in no stage's key.
        assert not {name for name in files if name.startswith("report/")} - {
            "report/__init__.py", "report/figures.py", "report/views.py"}, stage
        assert {"__init__.py", "core/__init__.py", "core/provenance.py", "stages/invoke.py"} <= files
    training = closures["train"] | closures["prune"] | closures["quantize"]
    assert "stages/select.py" in closures["final"] and "stages/select.py" not in training
    assert "stages/final.py" not in training
    assert "stages/prune.py" in closures["prune"] and "stages/prune.py" not in closures["train"]
    # Quantization shares the sparsity check and the conversion with pruning, not the pruning stage itself.
    assert {"nets/sparsity.py", "nets/convert.py", "stages/qat.py"} <= closures["quantize"]
    assert "stages/prune.py" not in closures["quantize"]
    assert {"stages/train.py", "nets/models.py", "core/keras_env.py", "data/inputs.py"} <= closures["train"]
    # The final stage trains nothing; it loads TensorFlow only for the parity row of tf.image.resize
    # (nets/consumers.tf_bilinear, through core/keras_env).
    assert not {"nets/models.py", "data/inputs.py", "stages/train.py"} & closures["final"]
    assert {"nets/parity.py", "nets/consumers.py"} <= closures["final"]
    # Run in their own venvs, named by the registry.
    assert {"tools/write_metadata.py", "tools/mediapipe_consumers.py"} <= closures["final"]


def test_config_inputs_are_what_the_stage_read(quick_profile):
    variant = profiles.load_variants(quick_profile)["mobilenet_v3_large.prune-2of4"]
    identity = {key: value for key, value in cache.config_inputs(variant, None).items() if key != "config"}
    assert set(identity) == set(cache.IDENTITY)
    assert cache.config_inputs(variant, None)["config"] == config.config_to_dict(variant)  # not run yet: all
    reads = records.ConfigReads(fields=["prune.epochs", "train.batch_size", "gone.field"], sections=["prune.distill"])
    picked = cache.config_inputs(variant, reads)
    assert set(picked) - set(cache.IDENTITY) == {"prune.epochs", "train.batch_size", "gone.field", "prune.distill"}
    assert picked["prune.epochs"] == variant.prune.epochs and picked["gone.field"] == cache.ABSENT
    assert picked["prune.distill"] is (variant.prune.distill is not None)


# --- reruns, end to end on the real notebooks (tiny profile) ------------------------------------------

@pytest.fixture
def real_env(monkeypatch):
    """The environment ``realrun`` gives its subprocess, set for an in-process ``pipeline.run``."""
    for name in ("TRASHNET_NOTEBOOKS", "STANDIN_TRACE", "STANDIN_BEHAVIOUR", settings.ENV_DATA):
        monkeypatch.delenv(name, raising=False)
    for name, value in realrun.environment().items():
        monkeypatch.setenv(name, value)


def real_rerun(out: Path, profile: Path = realrun.PROFILE, *, variants: str | None = None,
               report: bool = False) -> list[str]:
    """Run the tiny profile (or ``variants``) again on ``out``; the ids of the variants that ran (new manifest)."""
    before = {variant: manifest["finished"] for variant, manifest in realrun.manifests(out).items()}
    lines: list[str] = []
    status = pipeline.run(profile=str(profile), out=out, variants=variants, jobs=2, report=report, verify=False,
                          log=lines.append)
    assert status == 0, "\n".join(lines)
    after = realrun.manifests(out)
    return sorted(variant for variant, manifest in after.items() if manifest["finished"] != before.get(variant))


def edited_tiny(tmp_path: Path, change: dict) -> Path:
    """The tiny profile with ``change`` merged in, under the same name (same folders)."""
    body = yaml.safe_load(realrun.PROFILE.read_text())
    path = tmp_path / "profiles" / realrun.PROFILE.name
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(profiles.deep_merge(body, change)))
    return path


def reads_of(out: Path) -> dict[str, records.ConfigReads]:
    return {variant: records.read_config_reads(manifest["folder"])
            for variant, manifest in realrun.manifests(out).items()}


@pytest.mark.slow
def test_every_real_variant_keys_on_the_fields_it_recorded(tmp_path_factory):
    out = realrun.completed_run(tmp_path_factory)
    manifests = realrun.manifests(out)
    assert sorted(manifests) == realrun.VARIANTS
    for variant, manifest in manifests.items():
        reads = records.read_config_reads(manifest["folder"])
        assert reads is not None and reads.fields, variant
        keyed = manifest["inputs"]["config"]
        assert set(reads.fields) | set(reads.sections) <= set(keyed), variant
        assert set(keyed) - set(reads.fields) - set(reads.sections) <= set(cache.IDENTITY), variant
    reads = reads_of(out)
    # Each stage reads its own section; training never reads pruning or selection settings.
    assert "prune.learning_rate" in reads["mobilenet_v3_small.prune-2of4"].fields
    assert "select.accuracy_tolerance_pp" in reads["final"].fields
    assert not any(field.startswith(("prune.", "select.")) for field in reads["mobilenet_v3_small"].fields)


@pytest.mark.slow
def test_real_run_unchanged_or_unread_setting_reruns_nothing(tmp_path_factory, tmp_path, real_env):
    out = realrun.copy_run(realrun.completed_run(tmp_path_factory), tmp_path / "out")
    assert real_rerun(out) == []
    # A 2:4 prune has no sparsity schedule: no stage read prune.end_fraction (shown by the records), so a
    # change to it for every variant keeps every result.
    unread = "prune.end_fraction"
    assert not any(unread in reads.fields for reads in reads_of(out).values())
    assert real_rerun(out, edited_tiny(tmp_path, {"prune": {"end_fraction": 0.5}})) == []


@pytest.mark.slow
def test_select_settings_or_code_rerun_only_final(tmp_path_factory, tmp_path, real_env, monkeypatch):
    out = realrun.copy_run(realrun.completed_run(tmp_path_factory), tmp_path / "out")
    profile = edited_tiny(tmp_path, {"select": {"accuracy_tolerance_pp": 50.0}})
    assert real_rerun(out, profile) == ["final"]
    monkeypatch.setattr(provenance, "CODE_DIR", edited_package(tmp_path, "stages/select.py"))
    assert real_rerun(out, profile) == ["final"]


@pytest.mark.slow
def test_one_prune_setting_reruns_that_variant_and_its_children(tmp_path_factory, tmp_path, real_env):
    out = realrun.copy_run(realrun.completed_run(tmp_path_factory), tmp_path / "out")
    field = "prune.learning_rate"
    assert field in reads_of(out)["mobilenet_v3_small.prune-2of4"].fields  # the stage really read it
    change = {"overrides": {"mobilenet_v3_small.prune-2of4": {"prune": {"learning_rate": 1e-3}}}}
    profile = edited_tiny(tmp_path, change)
    # final reruns too: it chooses among the changed results.
    assert real_rerun(out, profile) == [
        "final", "mobilenet_v3_small.prune-2of4", "mobilenet_v3_small.prune-2of4.fp16"]


@pytest.mark.slow
def test_final_selected_alone_reruns_when_its_upstream_results_changed(tmp_path_factory, tmp_path, real_env):
    """Issue 24: `run --variants final` keyed on nothing upstream and reported stale results as cached."""
    out = realrun.copy_run(realrun.completed_run(tmp_path_factory), tmp_path / "out")
    assert real_rerun(out, variants="final") == []  # nothing changed: cached, whatever was selected
    models = settings.Layout(out, realrun.NAME).models
    metrics = models / "quantize" / "mobilenet_v3_small.prune-2of4.fp16" / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"accuracy"', '"accuracy" ', 1))
    assert real_rerun(out, variants="final") == ["final"]
    assert real_rerun(out, variants="final") == []
    shutil.rmtree(models / "prune" / "mobilenet_v3_small.prune-2of4")
    assert real_rerun(out, variants="final") == ["final"]


def edited_package(tmp_path: Path, module: str) -> Path:
    """A copy of the package's sources with one module changed (a comment: new bytes, same behaviour)."""
    copy = tmp_path / "package"
    shutil.copytree(settings.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "resources"))
    with open(copy / module, "a") as handle:
        handle.write("\n# edited\n")
    return copy


@pytest.mark.slow
def test_report_code_or_templates_rebuild_only_the_report(tmp_path_factory, tmp_path, real_env, monkeypatch):
    out = realrun.copy_run(realrun.completed_run(tmp_path_factory), tmp_path / "out")
    templates = tmp_path / "templates"
    shutil.copytree(settings.TEMPLATES_DIR, templates)
    page = templates / "report.html.j2"
    page.write_text(page.read_text().replace("</body>", "<p>edited-template-marker</p></body>"))
    monkeypatch.setattr(settings, "TEMPLATES_DIR", templates)
    monkeypatch.setattr(provenance, "CODE_DIR", edited_package(tmp_path, "report/chapter.py"))
    assert real_rerun(out, report=True) == []
    assert "edited-template-marker" in (settings.Layout(out, realrun.NAME).report / "en" / "index.html").read_text()
