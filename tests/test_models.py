"""The architecture registry: every entry builds, takes raw pixels and classifies into the right shape."""

from __future__ import annotations

import numpy as np
import pytest

from trashnet.core import config
from trashnet.nets import imagenet, models
from trashnet.core.keras_env import keras

ARCHS = list(models.REGISTRY)


def test_registry_matches_config():
    # The config validates `arch` against its own list: both must name the same four models.
    assert tuple(models.REGISTRY) == config.ARCHITECTURES
    for name, entry in models.REGISTRY.items():
        assert entry.name == name
        assert entry.description and entry.preprocessing
        assert 1.0 in entry.imagenet_alphas


@pytest.mark.parametrize("arch", ARCHS)
def test_build_and_forward(arch):
    model = models.build_model(arch, num_classes=6, image_size=32, dropout=0.3, bn_momentum=0.9)
    assert model.name == arch
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 6)
    names = [layer.name for layer in model.layers]
    for required in (models.PREPROCESS_NAME, "pool", "head_dropout", models.OUTPUT_NAME):
        assert required in names
    assert model.get_layer("head_dropout").rate == pytest.approx(0.3)
    momenta = {layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.9}
    # Raw pixels over the whole [0, 255] range: the model scales them itself.
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    batch[0] = 0.0
    batch[1] = 255.0
    probs = model(batch, training=False).numpy()
    assert probs.shape == (3, 6)
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # Flat graph (per-layer pruning needs it): no nested Model among the layers.
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    assert models.backbone_layers(model)
    assert models.count_macs(model) > 0


def test_preprocessing_maps_pixels_to_unit_range():
    model = models.build_model("mobilenet_v2", num_classes=6, image_size=32)
    pre = keras.Model(model.input, model.get_layer(models.PREPROCESS_NAME).output)
    x = np.zeros((1, 32, 32, 3), np.float32)
    x[0, 0, 0] = [0.0, 127.5, 255.0]
    out = pre(x).numpy()[0, 0, 0]
    np.testing.assert_allclose(out, [-1.0, 0.0, 1.0], atol=1e-6)


def test_default_bn_momentum_is_kept_when_none():
    model = models.build_model("mobilenet_v3_small", num_classes=6, image_size=32, bn_momentum=None)
    momenta = {layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.999}  # tf_keras' V3 default: too slow from scratch (docs/toolchain-facts.md), hence the config


def test_width_multiplier_changes_size():
    small = models.build_model("mobilenet_v2", num_classes=6, image_size=32, alpha=0.5).count_params()
    large = models.build_model("mobilenet_v2", num_classes=6, image_size=32, alpha=1.0).count_params()
    assert small < large


def test_macs_match_published_order_of_magnitude():
    # MobileNetV1 1.0 at 224 px: 569 M MACs with its 1000-class top; without it about 568 M minus ~1 M.
    model = models.build_model("mobilenet_v1", num_classes=6, image_size=224)
    assert 540e6 < models.count_macs(model) < 580e6


def test_unknown_architecture_lists_valid_names():
    with pytest.raises(ValueError, match="unknown architecture 'resnet50'.*mobilenet_v1.*mobilenet_v3_large"):
        models.build_model("resnet50", num_classes=6, image_size=32)
    with pytest.raises(ValueError, match="unknown architecture"):
        models.get_architecture("mobilenet_v4")


@pytest.mark.parametrize("kwargs, message", [
    ({"num_classes": 1, "image_size": 32}, "num_classes"),
    ({"num_classes": 6, "image_size": 16}, "image_size"),
])
def test_bad_arguments_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.build_model("mobilenet_v2", **kwargs)


def test_weights_resolution(tmp_path):
    assert imagenet.resolve_weights("none") is None
    assert imagenet.resolve_weights("imagenet") == "imagenet"
    assert imagenet.weights_origin("none") == "none"
    assert imagenet.weights_origin("imagenet") == "imagenet"
    with pytest.raises(ValueError, match="'none', 'imagenet', 'imagenet-tflite' or the path"):
        imagenet.resolve_weights(str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="expected 'none', 'imagenet'"):
        models.build_model("mobilenet_v2", num_classes=6, image_size=32, weights="imagenet21k")


def test_weights_from_file_are_loaded_into_the_backbone(tmp_path):
    # A backbone saved to a file (as Keras' ImageNet download would be) is what `weights=<path>` loads.
    arch = models.get_architecture("mobilenet_v3_small")
    inputs = keras.Input((32, 32, 3))
    keras.utils.set_random_seed(1)
    donor = arch.backbone(inputs, alpha=1.0, weights=None)
    path = tmp_path / "backbone.h5"
    donor.save_weights(path)
    keras.utils.set_random_seed(2)
    model = models.build_model("mobilenet_v3_small", num_classes=6, image_size=32, weights=str(path))
    donor_kernel = donor.get_layer("Conv").kernel.numpy()
    np.testing.assert_array_equal(model.get_layer("Conv").kernel.numpy(), donor_kernel)
    origin = imagenet.weights_origin(str(path))
    assert origin.startswith("file:backbone.h5@sha256:")
