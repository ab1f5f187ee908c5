"""Distillation during the pruning fine-tune (prune.distill): the loss, the training step, the stage."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from trashnet.core import config as config_lib, profiles

pytest.importorskip("tensorflow_model_optimization")

IMAGE_SIZE = 48  # trained_model_factory's default


def _tiny(seed: int):
    """A 4 -> 3 softmax classifier: small enough that one step is instant, real Keras all the same."""
    from trashnet.core.keras_env import keras

    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(3, activation="softmax",
                                 kernel_initializer=keras.initializers.GlorotUniform(seed))(inputs)
    return keras.Model(inputs, outputs)


def _one_step(alpha: float, labels: np.ndarray) -> np.ndarray:
    """The student's kernel after one distillation step on fixed inputs and the given labels."""
    from trashnet.stages import prune
    from trashnet.core.keras_env import keras

    student, teacher = _tiny(1), _tiny(2)
    distiller = prune.Distiller(student, teacher, temperature=4.0, alpha=alpha)
    distiller.compile(optimizer=keras.optimizers.SGD(0.5), loss=keras.losses.CategoricalCrossentropy())
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    distiller.fit(x, np.eye(3, dtype=np.float32)[labels], batch_size=8, epochs=1, verbose=0)
    return student.get_weights()[0]


def test_distillation_term_is_zero_for_the_teachers_outputs_and_scaled_by_t_squared():
    from trashnet.stages import prune

    teacher = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    student = np.array([[0.2, 0.5, 0.3], [0.3, 0.3, 0.4]], np.float32)
    assert float(prune.distillation_term(teacher, teacher, 4.0)) == pytest.approx(0.0, abs=1e-6)
    at_one = float(prune.distillation_term(student, teacher, 1.0))
    assert at_one > 0.01
    # At T = 1 the term is the plain KL divergence.
    kl = np.mean(np.sum(teacher * (np.log(teacher) - np.log(student)), axis=-1))
    assert at_one == pytest.approx(kl, rel=1e-4)


def test_alpha_one_ignores_the_labels_and_alpha_zero_follows_them():
    labels_a = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    labels_b = np.array([2, 2, 2, 2, 1, 1, 1, 1])
    np.testing.assert_allclose(_one_step(1.0, labels_a), _one_step(1.0, labels_b), atol=1e-7)
    assert np.abs(_one_step(0.0, labels_a) - _one_step(0.0, labels_b)).max() > 1e-3
    # ... and the teacher matters at alpha = 1: the step moves the student.
    assert np.abs(_one_step(1.0, labels_a) - _tiny(1).get_weights()[0]).max() > 1e-3


def test_distill_config_is_strict(quick_profile):
    entry = {"id": "x", "stage": "prune", "arch": "mobilenet_v3_small", "source": "mobilenet_v3_small",
             "prune": {"distill": {"temperature": 0}}}
    with pytest.raises(config_lib.ConfigError, match="temperature"):
        profiles.resolve_variant(quick_profile, entry)
    entry["prune"]["distill"] = {"alpha": 0.5, "weight": 1}
    with pytest.raises(config_lib.ConfigError, match="weight"):
        profiles.resolve_variant(quick_profile, entry)


@pytest.mark.slow
def test_distilled_2of4_pruning_runs_on_the_sample(trained_model_factory, sample_dataset, quick_profile, tmp_path):
    from trashnet.stages import prune

    arch = "mobilenet_v3_small"
    variants = profiles.load_variants(quick_profile)
    data = config_lib.config_to_dict(variants["mobilenet_v3_large.prune-2of4-distill"])
    data.update(id=f"{arch}.prune-2of4-distill", arch=arch, source=arch)
    data["model"]["image_size"] = IMAGE_SIZE
    cfg = config_lib.config_from_dict(data)
    assert cfg.prune.distill is not None
    source_dir = tmp_path / "models" / "train" / arch
    source_dir.mkdir(parents=True)
    shutil.copyfile(trained_model_factory(arch, IMAGE_SIZE), source_dir / f"{arch}.keras")
    out = tmp_path / "models" / "prune" / cfg.id
    record = prune.run_pruning(cfg, dataset_dir=sample_dataset, source_dir=source_dir, output_dir=out,
                               cache_dir=tmp_path / ".cache", verbose=False)
    assert record["training"]["distill"] == {"temperature": 4.0, "alpha": 0.5}
    assert record["sparsity"]["m_by_n_verified"] is True
    assert "prune-2of4-distill" in (out / "history.csv").read_text()
    assert 0.0 <= record["test"]["accuracy"] <= 1.0
