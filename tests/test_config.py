"""Every profile and every variant of variants.yaml resolves, and bad configs fail with a clear message."""

from __future__ import annotations

import pytest

from trashnet.core import config, profiles, settings
from trashnet.runner import cache

PROFILES = sorted(path.stem for path in settings.PROFILES_DIR.glob("*.yaml"))


def test_the_profiles_are_there():
    assert {"quick", "cpu", "full"} <= set(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_every_variant_of_every_profile_resolves(name):
    profile = profiles.load_profile(name)
    assert profile.name == name
    variants = profiles.load_variants(profile)
    assert variants, name
    stages = {variant.stage for variant in variants.values()}
    assert stages == set(settings.STAGES)
    for variant_id, variant in variants.items():
        assert variant.id == variant_id and variant.profile == name
        base_id, seed = config.split_seed_id(variant_id)  # extra seeds: "<id>@seed<N>" runs seed N
        assert variant.seed == (seed if seed is not None else variant.seeds[0]), variant_id
        if variant.stage in ("train", "prune", "quantize"):
            assert variant.arch in config.ARCHITECTURES, variant_id
        if variant.stage in ("prune", "quantize"):
            source = variants[variant.source]
            assert variant.source_stage == source.stage and variant.arch == source.arch, variant_id
        if variant.stage == "quantize":
            assert variant.precision in config.PRECISIONS
            assert variant.model == source.model  # converted at the size its source was trained at
        # Round trip through the notebook parameter form, and a cache key input for each stage.
        resolved = config.config_to_dict(variant)  # (without `seeds`: that list only expands variants)
        assert config.config_to_dict(config.config_from_dict(resolved)) == resolved
        assert set(cache.config_inputs(variant, None)) >= set(cache.IDENTITY)
    # The profile's own selection and its overrides name real variants.
    ids = profiles.select_variants(variants, profile.variants)
    assert ids and set(profile.overrides) <= set(variants)
    assert ids == [vid for vid in variants if vid in ids]  # dependency (file) order


def test_profile_overrides_reach_only_their_variant():
    scratch = profiles.load_variants(profiles.load_profile("cpu-scratch"))  # epoch budgets per architecture
    assert scratch["mobilenet_v3_small"].train.epochs == 80 and scratch["mobilenet_v1"].train.epochs == 20
    # A pruned variant gets the profile's training recipe, not its source's epoch override.
    assert scratch["mobilenet_v3_small.prune-2of4"].train.epochs == profiles.load_profile("cpu-scratch").train.epochs
    # The ImageNet cpu profile's arch override: its mobilenet_v3_large is the minimalistic net, the full one
    # has its own variant id.
    cpu = profiles.load_variants(profiles.load_profile("cpu"))
    assert (cpu["mobilenet_v3_large"].arch, cpu["mobilenet_v3_large_full"].arch) == \
        ("mobilenet_v3_large_minimalistic", "mobilenet_v3_large")


def test_unknown_keys_and_wrong_types_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: '10', learning_rte: 0.1}\n")
    with pytest.raises(config.ConfigError) as error:
        profiles.load_profile(bad)
    message = str(error.value)
    assert "train.epochs" in message and "train.learning_rte" in message
    with pytest.raises(config.ConfigError, match="unknown profile 'nope'; known profiles: .*quick"):
        profiles.load_profile("nope")
