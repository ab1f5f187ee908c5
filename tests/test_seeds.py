"""Seeds in the configuration: one variant per seed, ``<id>@seed<N>``, sources carry the same suffix."""

from __future__ import annotations

import pytest

from trashnet.core import config, profiles

VARIANTS = """
train:
  - {id: mobilenet_v3_large, arch: mobilenet_v3_large}
  - {id: mobilenet_v3_small, arch: mobilenet_v3_small}
prune:
  - {id: mobilenet_v3_large.prune-2of4, source: mobilenet_v3_large}
quantize:
  - sources: [mobilenet_v3_large.prune-2of4]
    precisions: [fp16, int8]
final:
  - {id: final}
"""


def load(tmp_path, profile_body: str, variants: str = VARIANTS):
    (tmp_path / "variants.yaml").write_text(variants)
    (tmp_path / "p.yaml").write_text(profile_body)
    profile = profiles.load_profile(tmp_path / "p.yaml")
    return profile, profiles.load_variants(profile, tmp_path / "variants.yaml")


def test_a_single_seed_keeps_every_id_and_the_profile_seed(tmp_path):
    _, variants = load(tmp_path, "seed: 7\n")
    assert list(variants) == ["mobilenet_v3_large", "mobilenet_v3_small", "mobilenet_v3_large.prune-2of4",
                              "mobilenet_v3_large.prune-2of4.fp16", "mobilenet_v3_large.prune-2of4.int8", "final"]
    assert all(v.seed == 7 and v.seeds == (7,) for v in variants.values())


def test_a_seeded_chain_expands_with_suffixed_ids_and_sources(tmp_path):
    profile, variants = load(tmp_path, """
overrides:
  mobilenet_v3_large: {seeds: [42, 43, 44], train: {epochs: 3}}
  mobilenet_v3_large.prune-2of4: {seeds: [42, 43, 44]}
  mobilenet_v3_large.prune-2of4.fp16: {seeds: [42, 44]}
""")
    large = "mobilenet_v3_large"
    pruned = f"{large}.prune-2of4"
    expected = {  # id: (seed, source)
        large: (42, None), f"{large}@seed43": (43, None), f"{large}@seed44": (44, None),
        pruned: (42, large), f"{pruned}@seed43": (43, f"{large}@seed43"), f"{pruned}@seed44": (44, f"{large}@seed44"),
        f"{pruned}.fp16": (42, pruned), f"{pruned}.fp16@seed44": (44, f"{pruned}@seed44"),
        f"{pruned}.int8": (42, pruned),  # no seeds of its own: one run, on the plain source
    }
    for variant_id, (seed, source) in expected.items():
        assert (variants[variant_id].seed, variants[variant_id].source) == (seed, source), variant_id
    # The same recipe: the profile's override reaches every seed of the variant.
    assert {variants[v].train.epochs for v in (large, f"{large}@seed43", f"{large}@seed44")} == {3}
    assert variants[f"{large}@seed43"].seeds == (42, 43, 44)
    assert variants[f"{pruned}@seed43"].source_stage == "train"
    # Dependency order: a run comes after its source.
    order = list(variants)
    for variant in variants.values():
        if variant.source:
            assert order.index(variant.source) < order.index(variant.id)
    # Choosing a variant brings its extra seeds and the runs they need (not the sources' other seeds).
    chosen = profiles.select_variants(variants, [f"{pruned}.fp16"])
    assert chosen == [large, f"{large}@seed44", pruned, f"{pruned}@seed44", f"{pruned}.fp16", f"{pruned}.fp16@seed44"]
    assert profiles.select_variants(variants, [f"{large}@seed43"]) == [f"{large}@seed43"]
    assert config.split_seed_id(f"{pruned}.fp16@seed44") == (f"{pruned}.fp16", 44)
    assert config.split_seed_id(pruned) == (pruned, None)


def test_a_first_seed_pairs_with_the_sources_run_of_that_seed(tmp_path):
    _, variants = load(tmp_path, """
overrides:
  mobilenet_v3_large: {seeds: [42, 43, 44]}
  mobilenet_v3_large.prune-2of4: {seeds: [43, 44]}
  mobilenet_v3_large.prune-2of4.fp16: {seed: 5}
""")
    pruned = "mobilenet_v3_large.prune-2of4"
    assert (variants[pruned].seed, variants[pruned].source) == (43, "mobilenet_v3_large@seed43")
    assert variants[f"{pruned}@seed44"].source == "mobilenet_v3_large@seed44"
    assert f"{pruned}@seed43" not in variants
    # A seed the source never ran: one run, on the plain source (only extra seeds must match).
    assert (variants[f"{pruned}.fp16"].seed, variants[f"{pruned}.fp16"].source) == (5, pruned)


def test_profile_seeds_apply_to_every_variant(tmp_path):
    _, variants = load(tmp_path, "seeds: [1, 2]\n")
    assert variants["mobilenet_v3_small@seed2"].seed == 2
    assert variants["mobilenet_v3_large.prune-2of4.int8@seed2"].source == "mobilenet_v3_large.prune-2of4@seed2"
    assert variants["mobilenet_v3_small"].seed == 1


def test_a_seed_the_source_does_not_run_is_an_error(tmp_path):
    with pytest.raises(config.ConfigError, match="seed 43, but its source 'mobilenet_v3_large' does not"):
        load(tmp_path, "overrides:\n  mobilenet_v3_large.prune-2of4: {seeds: [42, 43]}\n")


@pytest.mark.parametrize("body, message", [
    ("overrides:\n  mobilenet_v3_small: {seeds: []}\n", "non-empty list of distinct"),
    ("overrides:\n  mobilenet_v3_small: {seeds: [1, 1]}\n", "non-empty list of distinct"),
    ("overrides:\n  mobilenet_v3_small: {seeds: ['1']}\n", "seeds"),
    ("overrides:\n  mobilenet_v3_small@seed43: {train: {epochs: 1}}\n", "unknown variant"),
])
def test_bad_seeds_are_clear_errors(tmp_path, body, message):
    with pytest.raises(config.ConfigError, match=message):
        load(tmp_path, body)


def test_an_id_may_not_carry_the_seed_suffix_itself(tmp_path):
    with pytest.raises(config.ConfigError, match="must not contain '@seed'"):
        load(tmp_path, "", "train:\n  - {id: x@seed3, arch: mobilenet_v1}\n")


def test_a_profile_extends_another(tmp_path):
    (tmp_path / "base.yaml").write_text("model: {image_size: 96}\ntrain: {epochs: 5, batch_size: 8}\n"
                                        "overrides:\n  mobilenet_v3_small: {train: {epochs: 9}}\n")
    (tmp_path / "child.yaml").write_text("extends: base\ntrain: {epochs: 6}\n"
                                         "overrides:\n  mobilenet_v3_small: {seeds: [1, 2]}\n")
    child = profiles.load_profile(tmp_path / "child.yaml")
    assert (child.name, child.model.image_size, child.train.epochs, child.train.batch_size) == ("child", 96, 6, 8)
    assert child.overrides["mobilenet_v3_small"] == {"train": {"epochs": 9}, "seeds": [1, 2]}
    (tmp_path / "loop.yaml").write_text("extends: loop\n")
    with pytest.raises(config.ConfigError, match="loops"):
        profiles.load_profile(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("extends: nowhere\n")
    with pytest.raises(config.ConfigError, match="unknown profile 'nowhere'"):
        profiles.load_profile(tmp_path / "orphan.yaml")


@pytest.mark.parametrize("base", ["cpu", "cpu-scratch"])
def test_the_cpu_seeds_profile_runs_three_seeds_of_the_central_chain(base):
    cpu, seeds = profiles.load_profile(base), profiles.load_profile(f"{base}-seeds")
    assert seeds.model == cpu.model and seeds.train == cpu.train and seeds.data == cpu.data
    variants = profiles.load_variants(seeds)
    chosen = profiles.select_variants(variants, seeds.variants)
    trained = [v for v in chosen if variants[v].stage in ("train", "prune")]
    if base == "cpu":  # 3 x (V3-Small, V3-Large, 2:4, 2:4 distilled) + 3 x (FP16, INT16, distilled FP16) + final
        assert len(trained) == 12 and len(chosen) == 22
        assert "mobilenet_v3_large.prune-2of4-distill.fp16@seed44" in chosen  # the file cpu ships
    else:  # 3 x (V3-Small, V3-Large, 2:4) + 3 x (FP16, INT16) + final
        assert len(trained) == 9 and len(chosen) == 16
    assert {variants[v].seed for v in chosen if v.startswith("mobilenet_v3_small")} == {42, 43, 44}
    budget = profiles.load_variants(cpu)["mobilenet_v3_large"]
    seed44 = variants["mobilenet_v3_large@seed44"]
    assert (seed44.train.epochs, seed44.arch) == (budget.train.epochs, budget.arch)  # the base's recipe, every seed


@pytest.mark.parametrize("name", sorted(p.stem for p in config.settings.PROFILES_DIR.glob("*.yaml")))
def test_every_profile_resolves_every_variant(name):
    profile = profiles.load_profile(name)
    variants = profiles.load_variants(profile)
    chosen = profiles.select_variants(variants, profile.variants)
    assert chosen and all(variants[v].seed in variants[v].seeds for v in chosen)


@pytest.mark.slow  # starts papermill (stand-in notebooks)
def test_the_runner_gives_each_seed_its_own_folder_and_seed(tmp_path):
    import subprocess
    import sys

    import standin
    from trashnet.core import fileio, settings
    from trashnet.runner import cache

    profile = tmp_path / "seeded.yaml"
    profile.write_text("data: {split: stratified}\nmodel: {image_size: 64}\n"
                       "overrides:\n  mobilenet_v3_small: {seeds: [42, 43]}\n")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "trashnet", "run", "--out", str(out), "--profile", str(profile),
                             "--variants", "mobilenet_v3_small", "-j", "2", "--no-report"],
                            env=standin.environment(), capture_output=True, text=True, timeout=600,
                            cwd=settings.REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    layout = settings.Layout(out, "seeded")  # the profile file's name
    for variant_id, seed in (("mobilenet_v3_small", 42), ("mobilenet_v3_small@seed43", 43)):
        folder = layout.variant_dir("train", variant_id)
        assert cache.read_valid_manifest(folder) is not None, variant_id
        record = fileio.read_json(folder / "metrics.json")
        assert (record["variant"], record["seed"], record["provenance"]["config"]["seed"]) == (variant_id, seed, seed)


def test_adding_a_seed_leaves_the_first_runs_config_unchanged(tmp_path):
    _, one = load(tmp_path, "")
    _, three = load(tmp_path, "overrides:\n  mobilenet_v3_small: {seeds: [42, 43, 44]}\n")
    # The runner's cache key hashes config_to_dict: the seed-42 run is not redone when seeds are added.
    assert config.config_to_dict(one["mobilenet_v3_small"]) == config.config_to_dict(three["mobilenet_v3_small"])
    assert config.config_to_dict(three["mobilenet_v3_small@seed43"])["seed"] == 43
