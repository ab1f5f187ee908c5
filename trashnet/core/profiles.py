"""Reads profiles and ``variants.yaml`` into resolved ``VariantConfig``s: one place merges defaults and entries.

``load_profile`` reads a profile (and the one it ``extends``); ``resolve_variant`` deep-merges the profile's
defaults, a variant's entry and the profile's overrides for it, and validates the result;
``load_variants`` expands the whole ``variants.yaml`` (matrix entries, extra seeds, inherited
architectures); ``select_variants`` picks ids with their dependencies. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from trashnet.core import fileio, settings
from trashnet.core.config import (SEED_MARK, ConfigError, Profile, VariantConfig, seed_variant_id,
                                  split_seed_id, validate)


def _read_yaml(path: Path) -> dict[str, Any]:
    hint = "fix the file, or pass another --profile"
    try:
        data = fileio.load_yaml(fileio.read_text(path, limit=fileio.SMALL_FILE_LIMIT))
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: file not found", hint) from error
    except (OSError, UnicodeDecodeError) as error:  # a folder, a named pipe, no permission
        raise ConfigError(f"{path}: cannot read it ({error})", hint) from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}", hint) from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}", hint)
    _check_plain(data, str(path))
    return data


_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str, keys: tuple = (), _open: tuple[int, ...] = ()) -> None:
    """Only what JSON can hold: YAML dates, sets, binary data and anchors that contain themselves are refused
    with the key that holds them (they would otherwise fail deep inside validation)."""
    at = f"{where}: {'.'.join(map(str, keys)) or '(top level)'}"
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, (dict, list)):
        if id(value) in _open:
            raise ConfigError(f"{at} refers to itself (a YAML anchor inside its own value)",
                              "write the value out instead of the alias")
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise ConfigError(f"{at}: key {key!r} is a {type(key).__name__}", "use a plain text key")
            _check_plain(item, where, (*keys, key), (*_open, id(value)))
        return
    raise ConfigError(f"{at} is {value!r}, a YAML {type(value).__name__}, not text or a number",
                      "quote it (e.g. description: '2024-01-01')")


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``; nested mappings merge, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def profile_path(name_or_path: str | Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    if not isinstance(name_or_path, str) or not re.fullmatch(settings.PROFILE_NAME, name_or_path):
        raise ConfigError(f"--profile {str(name_or_path)!r} is neither a profile name nor a .yaml file",
                          "pass a name such as cpu or quick, or a path ending in .yaml")
    path = settings.PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in settings.PROFILES_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown profile {str(name_or_path)!r}; known profiles: {', '.join(known)}")
    return path


def _profile_body(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The YAML body, over the body of the profile it ``extends`` (same folder), if any."""
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'extends' loops back to itself")
    body = _read_yaml(path)
    parent = body.pop("extends", None)
    if parent is None:
        return body
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"{path}: 'extends' must name another profile, e.g. 'extends: cpu'")
    parent_path = path.parent / f"{parent}.yaml"
    if not parent_path.is_file():
        raise ConfigError(f"{path}: extends unknown profile {parent!r} (no {parent_path})")
    inherited = _profile_body(parent_path, (*seen, path.resolve()))
    inherited.pop("name", None)  # a profile is named by its own file
    return deep_merge(inherited, body)


def load_profile(name_or_path: str | Path) -> Profile:
    path = profile_path(name_or_path)
    body = _profile_body(path)
    body.setdefault("name", path.stem)
    return validate(Profile, body, str(path))


def resolve_variant(profile: Profile, entry: dict[str, Any], *, where: str = "variant") -> VariantConfig:
    """Profile defaults, then the variant's own entry, then the profile's overrides for that id."""
    entry = dict(entry)
    variant_id = entry.get("id")
    if not isinstance(variant_id, str) or not variant_id:
        raise ConfigError(f"{where}: every variant needs a non-empty string 'id'")
    if SEED_MARK in variant_id:
        raise ConfigError(f"{where}: variant id {variant_id!r} must not contain {SEED_MARK!r}: extra seeds get "
                          "that suffix themselves (list them under 'seeds:')")
    sections = ("data", "model", "train", "prune", "quantize", "select", "stats", "ood")
    base = profile.model_dump(mode="python", include=set(sections))
    base.update(profile=profile.name, seed=profile.seed)
    merged = deep_merge(base, entry)
    override = profile.overrides.get(variant_id, {})
    merged = deep_merge(merged, override)
    # The most specific `seeds` wins; a `seed` alone means just that seed.
    seeds = override.get("seeds", entry.get("seeds"))
    if seeds is None:
        seeds = [merged["seed"]] if "seed" in override or "seed" in entry or profile.seeds is None \
            else list(profile.seeds)
    if not isinstance(seeds, (list, tuple)) or not seeds or len(set(map(str, seeds))) != len(seeds):
        raise ConfigError(f"{where} {variant_id!r}: seeds must be a non-empty list of distinct integers, "
                          f"got {seeds!r}")
    merged.update(seeds=list(seeds), seed=seeds[0])
    return validate(VariantConfig, merged, f"{where} {variant_id!r}")


def _seed_runs(variant: VariantConfig, resolved: dict[str, VariantConfig], where: str) -> list[VariantConfig]:
    """The extra-seed copies of ``variant``: same recipe, own seed, own id, the source's run of that seed."""
    runs = []
    for seed in variant.seeds[1:]:
        source = variant.source
        if source is not None:
            upstream = resolved[source]
            if seed not in upstream.seeds:
                raise ConfigError(
                    f"{where}: variant {variant.id!r} runs seed {seed}, but its source {source!r} does not "
                    f"(its seeds: {list(upstream.seeds)}); give the source that seed too")
            source = seed_variant_id(source, seed, upstream.seeds)
        runs.append(variant.model_copy(update={"id": seed_variant_id(variant.id, seed, variant.seeds),
                                               "seed": seed, "source": source}))
    return runs


def _expand_entries(stage: str, raw: Any, where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: '{stage}' must be a list of entries")
    entries: list[dict[str, Any]] = []
    for position, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: {stage}[{position}] must be a mapping")
        if stage == "quantize" and "sources" in item:
            # A matrix entry: every source in every precision, ids "<source>.<precision>".
            unknown = set(item) - {"sources", "precisions"}
            if unknown:
                raise ConfigError(f"{where}: {stage}[{position}]: unknown keys {sorted(unknown)}")
            for source in item["sources"]:
                for precision in item.get("precisions", []):
                    entries.append({"id": f"{source}.{precision}", "source": source, "precision": precision})
        else:
            entries.append(dict(item))
    return entries


def load_variants(profile: Profile, path: str | Path = settings.VARIANTS_FILE) -> dict[str, VariantConfig]:
    """Every variant of ``variants.yaml`` resolved against ``profile``, keyed by id, in file order.

    Pruned and quantized entries inherit ``arch`` from their ``source``; ``source_stage`` says where
    that source lives. The profile's ``variants`` list (ids or shell patterns) is *not* applied here:
    see ``select_variants``.
    """
    path = Path(path)
    body = _read_yaml(path)
    unknown = set(body) - set(settings.STAGES)
    if unknown:
        raise ConfigError(f"{path}: unknown stages {sorted(unknown)}; expected {', '.join(settings.STAGES)}")
    resolved: dict[str, VariantConfig] = {}
    for stage in settings.STAGES:
        for entry in _expand_entries(stage, body.get(stage), str(path)):
            entry["stage"] = stage
            source = entry.get("source")
            if stage in ("prune", "quantize"):
                if source not in resolved:
                    raise ConfigError(
                        f"{path}: {stage} variant {entry.get('id')!r} names source {source!r}, "
                        "which is not defined above it")
                upstream = resolved[source]
                entry.setdefault("arch", upstream.arch)
                if profile.seeds is None and "seeds" not in entry:
                    entry.setdefault("seed", upstream.seed)  # unless told otherwise: one run, on the plain source
                entry["source_stage"] = upstream.stage
                if stage == "quantize":
                    # A quantized file inherits the model settings its source was trained with.
                    entry = deep_merge({"model": upstream.model.model_dump(mode="json")}, entry)
            variant = resolve_variant(profile, entry, where=str(path))
            extra = _seed_runs(variant, resolved, str(path))
            if variant.source is not None and variant.seed in resolved[variant.source].seeds:
                # The first seed pairs with the source's run of that seed (else with the plain source).
                variant = variant.model_copy(update={"source": seed_variant_id(
                    variant.source, variant.seed, resolved[variant.source].seeds)})
            for run in (variant, *extra):
                if run.id in resolved:
                    raise ConfigError(f"{path}: variant id {run.id!r} is defined twice")
                resolved[run.id] = run
    for variant_id in profile.overrides:
        if variant_id not in resolved or split_seed_id(variant_id)[1] is not None:
            raise ConfigError(f"profile {profile.name!r}: overrides name unknown variant {variant_id!r}")
    return resolved


def select_variants(variants: dict[str, VariantConfig], patterns: list[str] | None) -> list[str]:
    """Ids matching any pattern (``fnmatch``), plus everything they depend on, in dependency order."""
    import fnmatch

    if patterns is None:
        chosen = set(variants)
    else:
        chosen = set()
        for pattern in patterns:
            matches = {vid for vid in variants if fnmatch.fnmatchcase(vid, pattern)}
            if not matches:
                raise ConfigError(f"variant pattern {pattern!r} matches nothing; known: {', '.join(variants)}")
            chosen |= matches
    # A chosen variant brings its extra seeds ("<id>@seed<N>"), then everything brings its sources.
    chosen |= {vid for vid in variants if split_seed_id(vid)[0] in chosen}
    pending = list(chosen)
    while pending:
        source = variants[pending.pop()].source
        if source and source not in chosen:
            chosen.add(source)
            pending.append(source)
    return [vid for vid in variants if vid in chosen]  # file order is dependency order
