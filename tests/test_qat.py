"""Quantization-aware training of MobileNetV3 (trashnet/stages/qat.py): real tfmot, real converter, real LiteRT."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from trashnet.core import config as config_lib, profiles

pytest.importorskip("tensorflow_model_optimization")

SIZE = 48  # trained_model_factory's default
V3 = ("mobilenet_v3_small", "mobilenet_v3_large")


def _shifted_batchnorm(model, seed: int = 0) -> None:
    """Move every BatchNorm off its identity initialisation, so that a wrong rebuild cannot hide."""
    from trashnet.core.keras_env import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma * rng.uniform(0.5, 1.5, gamma.shape), beta + rng.normal(0, 0.1, beta.shape),
                               mean + rng.normal(0, 0.1, mean.shape), var * rng.uniform(0.5, 2.0, var.shape)])


@pytest.mark.parametrize("arch", V3)
@pytest.mark.parametrize("form", ["keras", "int16"])
def test_annotatable_rebuild_has_no_tf_op_layers_and_the_same_float_outputs(arch, form):
    from trashnet.nets import models
    from trashnet.nets import convert
    from trashnet.stages import qat

    stock = models.build_model(arch, num_classes=6, image_size=SIZE, bn_momentum=0.99)
    _shifted_batchnorm(stock)
    assert qat.tf_op_layers(stock), "stock MobileNetV3 should hold the TFOpLambda layers tfmot rejects"
    rebuilt = qat.annotatable_model(stock, arch=arch, alpha=1.0, dropout=0.2, form=form)
    assert qat.tf_op_layers(rebuilt) == []
    names = {type(layer).__name__ for layer in rebuilt.layers}
    assert {"HardSwish", "HardSigmoid"} <= names
    images = np.random.default_rng(1).uniform(0, 255, (8, SIZE, SIZE, 3)).astype(np.float32)
    diff = convert.float_outputs_unchanged(stock, rebuilt, images)
    tolerance = 0.0 if form == "keras" else 1e-5  # Keras' own order is bit-identical; the int16 form rounds
    assert diff["float_max_abs_diff"] <= tolerance
    assert diff["feature_max_rel_diff"] <= tolerance


def test_rebuild_refuses_a_model_whose_layers_differ():
    from trashnet.nets import models
    from trashnet.stages import qat

    small = models.build_model("mobilenet_v3_small", num_classes=6, image_size=SIZE)
    with pytest.raises(ValueError, match="layers differ"):
        qat.annotatable_model(small, arch="mobilenet_v3_large", alpha=1.0, dropout=0.2)


@pytest.mark.parametrize("method", ["qat", "pqat"])
def test_every_kernel_is_fake_quantized_with_the_scheme_asked_for(method):
    """tfmot's Conv2D -> ReLU transform would leave the squeeze-excite conv unquantized (NoOp), and so
    without the PQAT sparsity mask; ``ConvReLU`` prevents it."""
    from trashnet.nets import models
    from trashnet.stages import qat
    from trashnet.core.keras_env import keras

    model = models.build_model("mobilenet_v3_small", num_classes=6, image_size=32)
    qat_model = qat.quantize_model(qat.annotatable_model(model, arch="mobilenet_v3_small", alpha=1.0,
                                                         dropout=0.2), method)
    kernels = [layer for layer in qat_model.layers if isinstance(getattr(layer, "layer", None),
                                                                 (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(kernels) == len([layer for layer in model.layers
                                if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))])
    configs = {type(layer.quantize_config).__name__ for layer in kernels}
    assert "NoOpQuantizeConfig" not in configs, configs
    quantizers = {type(layer.quantize_config.weight_quantizer).__name__ for layer in kernels
                  if not isinstance(layer.layer, keras.layers.DepthwiseConv2D)}
    if method == "pqat":
        assert all(name.startswith("PrunePreserve") for name in quantizers), quantizers
    else:
        assert not any(name.startswith("PrunePreserve") for name in quantizers), quantizers


def test_qat_config_needs_int8(quick_profile):
    entry = {"id": "x", "stage": "quantize", "arch": "mobilenet_v3_large", "source": "mobilenet_v3_large",
             "precision": "fp16", "quantize": {"qat": {"method": "qat"}}}
    with pytest.raises(config_lib.ConfigError, match="int8"):
        profiles.resolve_variant(quick_profile, entry)


# --- Through the quantization stage on the sample ---------------------------------------------------

def _variant(variant_id: str, source: str, source_stage: str) -> config_lib.VariantConfig:
    variants = profiles.load_variants(profiles.load_profile("quick"))
    data = config_lib.config_to_dict(variants[variant_id])
    data.update(id=variant_id.replace("mobilenet_v3_large", "mobilenet_v3_small"), arch="mobilenet_v3_small",
                source=source, source_stage=source_stage)
    data["model"]["image_size"] = SIZE
    return config_lib.config_from_dict(data)


@pytest.fixture(scope="module")
def qat_run(trained_model_factory, sample_dataset, tmp_path_factory):
    """QAT of the trained V3-Small through ``run_quantization``: (record, tflite bytes)."""
    from trashnet.stages import quantize

    root = tmp_path_factory.mktemp("qat")
    source_dir = root / "models" / "train" / "mobilenet_v3_small"
    source_dir.mkdir(parents=True)
    shutil.copyfile(trained_model_factory("mobilenet_v3_small", SIZE), source_dir / "mobilenet_v3_small.keras")
    cfg = _variant("mobilenet_v3_large.qat.int8", "mobilenet_v3_small", "train")
    out = root / "models" / "quantize" / cfg.id
    record = quantize.run_quantization(cfg, dataset_dir=sample_dataset, source_dir=source_dir, output_dir=out,
                                       cache_dir=root / ".cache")
    return record, (out / f"{cfg.id}.tflite").read_bytes(), out


@pytest.mark.slow
def test_qat_model_converts_to_a_full_int8_file(qat_run):
    record, content, out = qat_run
    assert record["conversion"]["status"] == "ok", record["conversion"]
    assert record["qat"]["method"] == "qat"
    assert record["qat"]["rebuild"]["float_max_abs_diff"] == 0.0
    assert record["op_census"]["float_compute_ops"] == 0, record["op_census"]["float_compute_by_op"]
    assert record["op_census"]["by_op"].get("HARD_SWISH", 0) > 0  # int8 HARD_SWISH, fused by the converter
    assert record["io"]["input_dtype"] == "int8" and record["io"]["output_dtype"] == "int8"
    assert 0.0 <= record["test"]["accuracy"] <= 1.0
    assert "qat" in (out / "history.csv").read_text()


@pytest.mark.slow
def test_qat_file_takes_its_ranges_from_training_not_calibration(trained_model_factory, sample_dataset):
    """Byte-identical files whatever images the converter is handed: the fake-quant ranges rule."""
    from trashnet.data import inputs
    from trashnet.nets import convert
    from trashnet.stages import qat
    from trashnet.core.keras_env import keras

    model = keras.models.load_model(trained_model_factory("mobilenet_v3_small", SIZE), compile=False)
    qat_model = qat.quantize_model(qat.annotatable_model(model, arch="mobilenet_v3_small", alpha=1.0,
                                                         dropout=0.2), "qat")
    images = inputs.load_dataset(sample_dataset, SIZE).train.images
    first = convert.convert(qat_model, "int8", representative=images[:4], quantization_aware=True)
    second = convert.convert(qat_model, "int8", representative=images[-4:], quantization_aware=True)
    assert first == second
    with pytest.raises(ValueError, match="int8"):
        convert.convert(qat_model, "fp16", quantization_aware=True)


@pytest.mark.slow
def test_2of4_check_reads_int8_kernels_and_fails_on_a_dense_file(qat_run):
    from trashnet.nets import sparsity

    _, content, _ = qat_run
    kernels = sparsity.int8_kernels(content)
    assert kernels and all(kernel.dtype == np.int8 for kernel in kernels.values())
    check = sparsity.int8_m_by_n(content)
    assert check["kernels_checked"] > 10
    assert check["holds"] is False  # a dense model does not hold 2:4


@pytest.mark.slow
def test_pqat_keeps_the_2of4_pattern_in_the_int8_file(trained_model_factory, sample_dataset, quick_profile,
                                                      tmp_path):
    from trashnet.stages import prune, quantize

    arch = "mobilenet_v3_small"
    base_dir = tmp_path / "models" / "train" / arch
    base_dir.mkdir(parents=True)
    shutil.copyfile(trained_model_factory(arch, SIZE), base_dir / f"{arch}.keras")
    variants = profiles.load_variants(quick_profile)
    data = config_lib.config_to_dict(variants[f"{arch}.prune-2of4"])
    data["model"]["image_size"] = SIZE
    pruned_cfg = config_lib.config_from_dict(data)
    pruned_dir = tmp_path / "models" / "prune" / pruned_cfg.id
    prune.run_pruning(pruned_cfg, dataset_dir=sample_dataset, source_dir=base_dir, output_dir=pruned_dir,
                      cache_dir=tmp_path / ".cache", verbose=False)

    cfg = _variant("mobilenet_v3_large.prune-2of4.pqat.int8", pruned_cfg.id, "prune")
    # A learning rate high enough that a kernel trained without its mask visibly loses its zeros in int8
    # (at the default, one epoch on the sample moves them too little to show).
    data = config_lib.config_to_dict(cfg)
    data["quantize"]["qat"]["learning_rate"] = 1e-2
    cfg = config_lib.config_from_dict(data)
    out = tmp_path / "models" / "quantize" / cfg.id
    record = quantize.run_quantization(cfg, dataset_dir=sample_dataset, source_dir=pruned_dir, output_dir=out,
                                       cache_dir=tmp_path / ".cache")
    assert record["conversion"]["status"] == "ok", record["conversion"]
    assert record["qat"]["scheme"] == "Default8BitPrunePreserveQuantizeScheme"
    check = record["qat"]["m_by_n_int8"]
    assert check["holds"] is True and check["kernels_checked"] > 10
    assert record["op_census"]["float_compute_ops"] == 0


def _imagenet_like(model, seed: int = 0) -> None:
    """Scales like the imported ImageNet weights (BatchNorm folded into the kernels): activations far beyond
    tfmot's starting range of [-6, 6], and depthwise channels whose kernels span three orders of magnitude."""
    from trashnet.core.keras_env import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kernel, *rest = layer.get_weights()
            layer.set_weights([kernel * 10.0 ** rng.uniform(-2, 1, (1, 1, kernel.shape[2], 1)), *rest])
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, *rest = layer.get_weights()
            layer.set_weights([kernel * 4.0, *rest])


@pytest.mark.parametrize("method", ["qat", "pqat"])
def test_qat_model_starts_close_to_the_float_model_on_imagenet_scales(method):
    """The ImageNet run's case (minimalistic V3-Large, ``input_scale`` 2, frozen BatchNorm): before any
    training, the fake-quantized model in training mode must compute nearly what the float model does.
    Without the calibrated ranges, the input pooling's raw pixels and every ReLU were clipped to ~6 and the
    per-tensor depthwise ranges zeroed the small channels: the outputs were uniform and QAT sat at ln 6."""
    from trashnet.nets import batchnorm, models
    from trashnet.stages import qat
    from trashnet.core.keras_env import keras

    arch = "mobilenet_v3_large_minimalistic"
    keras.utils.set_random_seed(0)
    model = models.build_model(arch, num_classes=6, image_size=32, input_scale=2, bn_momentum=0.99)
    _imagenet_like(model)
    rebuilt = qat.annotatable_model(model, arch=arch, alpha=1.0, dropout=0.2)
    qat_model = qat.quantize_model(rebuilt, method)
    batchnorm.freeze(qat_model)
    rng = np.random.default_rng(2)
    calibration, images = (rng.uniform(0, 255, (n, 64, 64, 3)).astype(np.float32) for n in (16, 8))
    assert qat.calibrate_ranges(qat_model, rebuilt, calibration) > 0
    features = keras.Model(rebuilt.input, rebuilt.get_layer("pool").output)(images, training=False).numpy()
    assert features.max() > 6 * 10  # the scales the test is about
    quantized = keras.Model(qat_model.input, qat_model.get_layer("quant_pool").output)(images, training=True).numpy()
    error = np.linalg.norm(quantized - features) / np.linalg.norm(features)
    assert error < 0.3, error  # measured 0.06-0.17 over seeds; ~1.0 (uniform outputs) without the fix
    depthwise = [layer for layer in qat_model.layers
                 if isinstance(getattr(layer, "layer", None), keras.layers.DepthwiseConv2D)]
    assert depthwise
    for layer in depthwise:  # one range per channel, not one for the whole kernel
        ranges = [weight for weight in layer.weights if weight.name.endswith("depthwise_kernel_min:0")]
        assert [tuple(weight.shape) for weight in ranges] == [(layer.layer.depthwise_kernel.shape[2],)], ranges
