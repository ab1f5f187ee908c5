"""Shared fixtures. Stage-specific fixtures live in the test modules that use them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trashnet import settings


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory) -> Path:
    """The bundled sample, prepared (stratified split, seed 42) into a temporary dataset folder."""
    from trashnet import data

    out = tmp_path_factory.mktemp("sample") / "dataset"
    data.prepare(settings.SAMPLE_DIR, out, split="stratified", seed=42)
    return out


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The full TrashNet dataset-resized folder from $TRASHNET_REAL_DATA (CI sets it), else skip."""
    value = os.environ.get(settings.ENV_REAL_DATA)
    if not value:
        pytest.skip(f"${settings.ENV_REAL_DATA} is not set: point it at TrashNet's dataset-resized folder")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"${settings.ENV_REAL_DATA}={value} is not a folder")
    return path


@pytest.fixture(scope="session")
def quick_profile():
    from trashnet import config

    return config.load_profile("quick")
