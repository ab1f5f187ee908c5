"""Pruning and QAT keep BatchNorm in inference mode after a pretrained baseline (``nets/batchnorm.py``).

Without it the ImageNet MobileNetV3-Large's 2:4 pruning fell from 92 % to 10 % on TrashNet's test split:
its imported BatchNorm layers trained on batch statistics.
"""

from __future__ import annotations

import numpy as np

from trashnet.core import profiles
from trashnet.core.keras_env import keras
from trashnet.nets import batchnorm, models
from trashnet.stages import prune, qat


def test_kept_frozen_follows_the_baselines_recipe():
    imagenet = profiles.load_variants(profiles.load_profile("cpu"))
    scratch = profiles.load_variants(profiles.load_profile("cpu-scratch"))
    assert batchnorm.kept_frozen(imagenet["mobilenet_v3_large.prune-2of4"])
    assert batchnorm.kept_frozen(imagenet["mobilenet_v3_large.qat.int8"])
    assert not batchnorm.kept_frozen(scratch["mobilenet_v3_large.prune-2of4"])  # from scratch: BN trains
    pruned = imagenet["mobilenet_v1.prune-2of4"]
    reestimated = pruned.model_copy(update={"train": pruned.train.model_copy(
        update={"finetune_batchnorm": "reestimate"})})
    assert not batchnorm.kept_frozen(reestimated)


def _outputs_differ_in_training(model: keras.Model, images: np.ndarray) -> float:
    return float(np.abs(model(images, training=True).numpy() - model(images, training=False).numpy()).max())


def test_freeze_reaches_the_layers_inside_pruning_and_qat_wrappers():
    cfg = profiles.load_variants(profiles.load_profile("cpu"))["mobilenet_v3_small.prune-2of4"]
    model = models.build_model("mobilenet_v3_small", num_classes=6, image_size=32, dropout=0.0)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    assert _outputs_differ_in_training(model, images) > 1e-3  # batch statistics: BatchNorm would train
    schedule, _ = prune.pruning_schedule(cfg, 10)
    wrapped = prune.wrap_for_pruning(model, "2of4", schedule)
    frozen = batchnorm.freeze(wrapped)
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert frozen == len(bn) > 0 and not any(layer.trainable for layer in bn)
    assert _outputs_differ_in_training(model, images) == 0.0  # the very layers the wrappers hold

    fresh = models.build_model("mobilenet_v3_small", num_classes=6, image_size=32, dropout=0.0)
    annotated = qat.annotatable_model(fresh, arch="mobilenet_v3_small", alpha=1.0, dropout=0.0)
    qat_model = qat.quantize_model(annotated, "qat")
    assert batchnorm.freeze(qat_model) > 0
    assert not any(layer.trainable for layer in qat_model.submodules
                   if isinstance(layer, keras.layers.BatchNormalization))
