"""BatchNorm in every fine-tuning after the baseline's (pruning, distillation, QAT) of a pretrained network.

A baseline started from ImageNet is fine-tuned with its BatchNorm layers in inference mode
(``train.finetune_batchnorm: frozen``): the imported layers are identities over the folded biases of Google's
files, and training them on batch statistics collapsed the model to 27 % (docs/transfer-learning.md). A model
loaded from its ``.keras`` file has them trainable again, so each later stage freezes them the same way; a
2:4 pruning of MobileNetV3-Large without this fell to 10 % on TrashNet's test split.
"""

from __future__ import annotations

from trashnet.core.config import VariantConfig
from trashnet.core.keras_env import keras


def kept_frozen(cfg: VariantConfig) -> bool:
    """Whether ``cfg``'s baseline kept BatchNorm in inference mode (pretrained weights, ``frozen``)."""
    return cfg.model.weights != "none" and cfg.train.finetune_batchnorm == "frozen"


def freeze(model: keras.Model) -> int:
    """Every BatchNormalization in ``model``, nested ones (in tfmot's wrappers) included, to inference mode
    (a non-trainable Keras BatchNorm normalizes with its moving statistics and never updates them).
    Returns how many."""
    layers = [layer for layer in model.submodules if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.trainable = False
    return len(layers)
