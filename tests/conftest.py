"""Shared fixtures. Stage-specific fixtures live in the test modules that use them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trashnet.core import settings


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory) -> Path:
    """The bundled sample, prepared (stratified split, seed 42) into a temporary dataset folder."""
    from trashnet.data import prepare

    out = tmp_path_factory.mktemp("sample") / "dataset"
    prepare.prepare(settings.SAMPLE_DIR, out, split="stratified", seed=42)
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


@pytest.fixture(autouse=True)
def _no_ood_measurement(monkeypatch):
    """Stages measure every variant on $TRASHNET_OOD_DATA when it is set (CI sets it): tests of other
    things do not pay for that; the tests that want it use ``ood_data_dir``."""
    monkeypatch.delenv(settings.ENV_OOD_DATA, raising=False)


@pytest.fixture(scope="session")
def ood_data_dir() -> Path:
    """The out-of-distribution dev set from $TRASHNET_OOD_DATA (read before any test unsets it), else skip."""
    if not _OOD_DATA:
        pytest.skip(f"${settings.ENV_OOD_DATA} is not set: point it at a labelled <class>/<image> folder")
    path = Path(_OOD_DATA)
    if not path.is_dir():
        pytest.skip(f"${settings.ENV_OOD_DATA}={_OOD_DATA} is not a folder")
    return path


_OOD_DATA = os.environ.get(settings.ENV_OOD_DATA)
# Module-scoped fixtures (a built final artifact, whose parity block reads the OOD folder) run before the
# autouse fixture above: unset for the whole session, after ood_data_dir has read it.
os.environ.pop(settings.ENV_OOD_DATA, None)


@pytest.fixture(scope="session")
def quick_profile():
    from trashnet.core import profiles

    return profiles.load_profile("quick")


@pytest.fixture(scope="session")
def trained_model_factory(sample_dataset, tmp_path_factory):
    """``make(arch, image_size=48) -> Path`` of a ``.keras`` model trained briefly on the sample.

    Two short epochs: far from accurate, but its weights and BatchNorm statistics have moved away from
    their initial values, as pruning and quantization tests need. Built once per (arch, size) per session.
    """
    built: dict[tuple[str, int], Path] = {}

    def make(arch: str, image_size: int = 48) -> Path:
        key = (arch, image_size)
        if key not in built:
            from trashnet.data import inputs
            from trashnet.nets import models
            from trashnet.core.keras_env import keras, seed_everything

            seed_everything(0)
            data = inputs.load_dataset(sample_dataset, image_size)
            model = models.build_model(arch, num_classes=len(data.classes), image_size=image_size,
                                       bn_momentum=0.9)
            model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
            model.fit(inputs.make_pipeline(data.train, batch_size=16, training=True, seed=0), epochs=2, verbose=0)
            path = tmp_path_factory.mktemp(arch) / f"{arch}.keras"
            model.save(path)
            built[key] = path
        return built[key]

    return make


@pytest.fixture
def standin_env(monkeypatch, tmp_path):
    """The environment ``standin.run`` gives its subprocess, set for an in-process ``pipeline.run``.

    Returns the trace file the stand-in notebooks append their variant ids to.
    """
    import standin

    trace = tmp_path / "trace"
    for name, value in standin.environment(trace).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(settings.ENV_DATA, raising=False)
    return trace


@pytest.fixture
def locked_folders(monkeypatch):
    """Folders named ``locked`` cannot be listed, as without the read permission (tests run as root,
    which ignores permissions, so ``os.scandir`` is what refuses)."""
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
