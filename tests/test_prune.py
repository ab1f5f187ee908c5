"""The pruning stage on the bundled sample: real tfmot, real conversion, real LiteRT (no mocks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from trashnet.core import config as config_lib, profiles
from trashnet.nets import scoring
from trashnet.core import registry

pytest.importorskip("tensorflow_model_optimization")

IMAGE_SIZE = 48  # trained_model_factory's default


def _variant(quick_profile, arch: str, method: str, **prune) -> config_lib.VariantConfig:
    """A quick-profile pruned variant of ``arch`` at the fixture's input size."""
    variants = profiles.load_variants(quick_profile)
    data = config_lib.config_to_dict(variants[f"{arch}.prune-2of4"])
    data["id"] = f"{arch}.prune-{method}"
    data["prune"].update(method=method, **prune)
    data["model"]["image_size"] = IMAGE_SIZE
    return config_lib.config_from_dict(data)


def _source_dir(tmp_path: Path, model_file: Path, arch: str) -> Path:
    source_dir = tmp_path / "models" / "train" / arch
    source_dir.mkdir(parents=True)
    shutil.copyfile(model_file, source_dir / f"{arch}.keras")
    return source_dir


# --- The verifier ---------------------------------------------------------------------------------

def test_verify_2of4_accepts_the_pattern_and_rejects_a_broken_kernel():
    from trashnet.nets import sparsity

    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(1, 1, 8, 5)).astype(np.float32)
    kernel[:, :, [0, 1, 4, 6], :] = 0.0  # 2 zeros in each block of 4 input channels
    assert sparsity.verify_2of4(kernel) == []
    broken = kernel.copy()
    broken[0, 0, 1, 3] = 0.5  # block 0 of output channel 3 now holds 3 non-zeros
    violations = sparsity.verify_2of4(broken)
    assert violations == [{"row": 3, "block": 0, "nonzero": 3}]
    assert sparsity.verify_2of4(rng.normal(size=(16, 6)))  # a dense Dense kernel fails too
    with pytest.raises(ValueError, match="kernel"):
        sparsity.verify_2of4(np.zeros((3, 3, 4)))


def test_check_m_by_n_fails_on_a_dense_model_and_names_the_layer():
    from trashnet.nets import sparsity
    from trashnet.core.keras_env import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="stem")(inputs)  # 3 input channels: never 2:4, never checked
    x = keras.layers.Conv2D(8, 1, name="pointwise")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="classifier")(x))
    assert sparsity.prunable_layer_names(model, "2of4") == ["pointwise", "classifier"]
    with pytest.raises(sparsity.SparsityError, match="pointwise.*classifier"):
        sparsity.check_m_by_n(model)
    kernel, bias = model.get_layer("pointwise").get_weights()
    kernel[:, :, 0::2, :] = 0.0
    model.get_layer("pointwise").set_weights([kernel, bias])
    assert sparsity.check_m_by_n(model, ["pointwise"]) == {"pointwise": 0}


def test_decay_schedule_reaches_its_target_on_an_update_step(quick_profile):
    from trashnet.stages import prune

    cfg = _variant(quick_profile, "mobilenet_v3_large", "unstructured", target_sparsity=0.75,
                   begin_fraction=0.1, end_fraction=0.7)
    schedule, record = prune.pruning_schedule(cfg, total_steps=557)
    assert 0 < record["begin_step"] < record["end_step"] <= 557
    assert (record["end_step"] - record["begin_step"]) % record["frequency"] == 0
    should_prune, sparsity = schedule(record["end_step"])
    assert bool(should_prune) and float(sparsity) == pytest.approx(0.75)


# --- The XNNPack layout -----------------------------------------------------------------------------

def test_xnnpack_layout_is_accepted_where_stock_mobilenet_v3_is_refused():
    from trashnet.core.keras_env import keras
    from trashnet.nets import models, sparsity, xnnpack
    from trashnet.stages import prune

    tfmot = sparsity.tfmot_sparsity()
    stock = models.build_model("mobilenet_v3_small", num_classes=6, image_size=64, bn_momentum=0.9)
    with pytest.raises(ValueError, match="Conv2D 3x3"):
        tfmot.prune_low_magnitude(stock, pruning_policy=tfmot.PruneForLatencyOnXNNPack())
    model = xnnpack.build_xnnpack_mobilenet_v3("mobilenet_v3_small", num_classes=6, image_size=64)
    assert model.output_shape == stock.output_shape
    assert xnnpack.transfer_weights(stock, model) == sum(1 for layer in stock.layers if layer.weights)
    # The fine-tune must update BN statistics like the source was trained to, not at Keras' 0.999.
    assert {layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)} == {0.9}
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    assert model(x).shape == (2, 6)
    wrapped = prune.wrap_for_pruning(model, "xnnpack", tfmot.ConstantSparsity(0.75, 0))
    pruned = set(sparsity.prunable_layer_names(model, "xnnpack"))
    assert {layer.name for layer in wrapped.layers if "prune_low_magnitude" in layer.name} == {
        f"prune_low_magnitude_{name}" for name in pruned}
    assert all(tuple(model.get_layer(name).kernel_size) == (1, 1) for name in pruned)


# --- End to end on the sample ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def pruned_runs(trained_model_factory, sample_dataset, quick_profile, tmp_path_factory):
    """``run(arch, method) -> (cfg, output_dir, record, source_file)``, each run once per module."""
    from trashnet.stages import prune

    done = {}

    def run(arch: str, method: str = "2of4"):
        if (arch, method) not in done:
            root = tmp_path_factory.mktemp(f"{arch}-{method}")
            cfg = _variant(quick_profile, arch, method)
            source_dir = _source_dir(root, trained_model_factory(arch, IMAGE_SIZE), arch)
            output_dir = root / "models" / "prune" / cfg.id
            record = prune.run_pruning(cfg, dataset_dir=sample_dataset, source_dir=source_dir,
                                       output_dir=output_dir, cache_dir=root / ".cache")
            done[arch, method] = (cfg, output_dir, record, source_dir / f"{arch}.keras")
        return done[arch, method]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "mobilenet_v1"])
def test_2of4_end_to_end_writes_verified_files(pruned_runs, arch):
    from trashnet.nets import sparsity
    from trashnet.stages import prune
    from trashnet.core.keras_env import keras

    cfg, out, record, source_file = pruned_runs(arch)
    for name in (f"{cfg.id}.keras", f"{cfg.id}.tflite", f"{cfg.id}{prune.SPARSE_SUFFIX}", scoring.METRICS_FILE,
                 scoring.PREDICTIONS_FILE, scoring.HISTORY_FILE):
        assert (out / name).is_file(), name
    metrics = json.loads((out / scoring.METRICS_FILE).read_text())
    assert metrics["variant"] == cfg.id and metrics["stage"] == "prune" and metrics["source"] == arch
    report = metrics["sparsity"]
    assert report["m_by_n_verified"] and set(report["m_by_n_violations"].values()) == {0}
    assert report["total"]["pruned_kernels"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    reasons = {entry.get("reason", "").split(":")[0] for entry in report["layers"].values() if not entry["pruned"]}
    assert {"stem", "depthwise", "batch normalization"} <= reasons
    assert metrics["nonzero_params"] < metrics["params"]
    assert metrics["dense_baseline"]["nonzero_params_reduction_pct"] > 20
    for key in ("keras", "tflite", "tflite_sparse", "dense_source_tflite"):
        assert metrics["sizes"][key]["raw_bytes"] > metrics["sizes"][key]["gzip_bytes"] > 0
    # tfmot's zeros only show once compressed: the pruned FP32 TFLite gzips clearly smaller than the dense one.
    assert metrics["dense_baseline"]["tflite_gzip_reduction_pct"] > 15
    assert {"tflite_threads1", "tflite_threads2", "dense_source_tflite_threads1", "keras_batch1"} <= set(
        metrics["latency_ms"])
    assert metrics["weights"] and metrics["provenance"]["config"]["id"] == cfg.id
    assert len((out / scoring.HISTORY_FILE).read_text().splitlines()) == cfg.prune.epochs + 1
    # The saved model is the stripped one, and it still holds the pattern when read back from disk.
    model = keras.models.load_model(out / f"{cfg.id}.keras", compile=False)
    assert sparsity.pruning_wrappers(model) == []
    assert not any("prune_low_magnitude" in layer.name for layer in model.layers)
    sparsity.check_m_by_n(model)
    # The source stays dense: pruning must not write through to the baseline's layers.
    source = keras.models.load_model(source_file, compile=False)
    counts = scoring.parameter_counts(source)
    assert counts["nonzero_params"] == counts["params"]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "mobilenet_v1"])
def test_pruned_tflite_runs_in_litert_and_agrees_with_keras(pruned_runs, sample_dataset, arch):
    from trashnet.data import inputs
    from trashnet.core.keras_env import keras
    from trashnet.core.tflite import TFLiteModel

    cfg, out, record, _ = pruned_runs(arch)
    images = inputs.load_dataset(sample_dataset, IMAGE_SIZE).test.images
    keras_probs = scoring.keras_probabilities(keras.models.load_model(out / f"{cfg.id}.keras", compile=False),
                                               images)
    for name in (f"{cfg.id}.tflite", f"{cfg.id}.sparse.tflite"):
        tflite_probs = TFLiteModel(out / name, num_threads=1).predict(images)
        assert np.abs(tflite_probs - keras_probs).max() < 1e-4, name
        assert (tflite_probs.argmax(1) == keras_probs.argmax(1)).all(), name
    assert record["agreement"]["top1_agreement_pct"] == 100.0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["unstructured", "xnnpack"])
def test_decay_methods_reach_their_target(pruned_runs, method):
    cfg, out, record, _ = pruned_runs("mobilenet_v3_small", method)
    pruned = record["sparsity"]["total"]["pruned_kernels"]["sparsity"]
    assert pruned == pytest.approx(cfg.prune.target_sparsity, abs=0.01)
    if method == "xnnpack":
        assert all(tuple(entry["shape"][:2]) == (1, 1) for entry in record["sparsity"]["layers"].values()
                   if entry["pruned"])


@pytest.mark.slow
def test_notebook_runs_under_papermill(trained_model_factory, sample_dataset, quick_profile, tmp_path):
    papermill = pytest.importorskip("papermill")
    arch = "mobilenet_v3_small"
    cfg = _variant(quick_profile, arch, "2of4")
    source_dir = _source_dir(tmp_path, trained_model_factory(arch, IMAGE_SIZE), arch)
    models_dir = source_dir.parent.parent
    output_dir = models_dir / "prune" / cfg.id
    output_dir.mkdir(parents=True)
    papermill.execute_notebook(
        str(registry.get("prune").notebook), str(output_dir / f"{cfg.id}.ipynb"), kernel_name="python3",
        parameters={"variant_id": cfg.id, "config": config_lib.config_to_dict(cfg),
                    "dataset_dir": str(sample_dataset), "models_dir": str(models_dir),
                    "output_dir": str(output_dir), "cache_dir": str(tmp_path / ".cache")})
    metrics = json.loads((output_dir / scoring.METRICS_FILE).read_text())
    assert metrics["sparsity"]["m_by_n_verified"]
    assert (output_dir / f"{cfg.id}.tflite").is_file()
