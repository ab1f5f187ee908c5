"""MobileNetV3 laid out for XNNPack's sparse inference, for tfmot's ``PruneForLatencyOnXNNPack``.

tfmot prunes only 1x1 convolutions for XNNPack, and only in a graph that meets XNNPack's sparse-inference
constraints: ``build_xnnpack_mobilenet_v3`` rebuilds a MobileNetV3 that does (see its docstring), and
``transfer_weights`` carries a trained model's weights (and BatchNorm momentum) over. The pruning stage uses
it for ``prune.method: xnnpack``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from trashnet.core.keras_env import keras
from trashnet.nets import models

class _XNNPackLayers:
    """Stands in for ``mobilenet_v3.layers`` while building: the stem becomes ZeroPadding2D(1) + a
    3x3/stride-2/valid Conv2D (the start of an XNNPack sparse subgraph); everything else is unchanged."""

    def __init__(self, original):
        self._original = original

    def __getattr__(self, name):
        return getattr(self._original, name)

    def Conv2D(self, *args, **kwargs):  # noqa: N802 - mirrors the Keras name
        if kwargs.get("name") == "Conv" and kwargs.get("strides") == (2, 2):
            kwargs["padding"] = "valid"
            pad = self._original.ZeroPadding2D(1, name="Conv/pad")
            conv = self._original.Conv2D(*args, **kwargs)
            return lambda x: conv(pad(x))
        return self._original.Conv2D(*args, **kwargs)


@contextlib.contextmanager
def _xnnpack_v3_graph() -> Iterator[None]:
    from tf_keras.src.applications import imagenet_utils, mobilenet_v3  # noqa: PLC0415

    def symmetric_pad(_inputs, kernel_size):
        k = kernel_size if isinstance(kernel_size, int) else kernel_size[0]
        return ((k // 2, k // 2), (k // 2, k // 2))

    original_layers, original_pad = mobilenet_v3.layers, imagenet_utils.correct_pad
    mobilenet_v3.layers = _XNNPackLayers(original_layers)
    imagenet_utils.correct_pad = symmetric_pad
    try:
        yield
    finally:
        mobilenet_v3.layers, imagenet_utils.correct_pad = original_layers, original_pad


def build_xnnpack_mobilenet_v3(arch: str, *, num_classes: int, image_size: int, alpha: float = 1.0,
                               dropout: float = 0.2, head: str = "pooled", input_scale: int = 1) -> keras.Model:
    """MobileNetV3 laid out for ``PruneForLatencyOnXNNPack`` (stock V3 is refused, docs/toolchain-facts.md).

    Differences from ``models.build_model``: the stem is ``ZeroPadding2D(1)`` + 3x3/stride-2/``valid``
    (not ``same``); every stride-2 depthwise is preceded by symmetric padding ``k // 2`` (not Keras'
    asymmetric ``correct_pad``); the head pools with ``keepdims=True`` (XNNPack's sparse subgraph ends
    in a keep-dims mean) and flattens before the classifier. Output sizes and every weight shape are
    unchanged, so a trained stock model's weights load by layer name (``transfer_weights``); its
    features shift by one pixel at each stride-2 layer, which the pruning fine-tune absorbs.
    """
    if not arch.startswith("mobilenet_v3"):
        raise ValueError(f"the XNNPack layout is built for MobileNetV3 only, not {arch!r}")
    entry = models.get_architecture(arch)
    inputs_, x = models.model_input(image_size, input_scale)  # with the K x K input_pool, as build_model
    with _xnnpack_v3_graph():
        backbone = entry.backbone(x, alpha=alpha, weights=None)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool")(backbone.output)
    x = keras.layers.Flatten(name="pool_flatten")(x)
    if head == "last_point":  # weights come by name (transfer_weights), not from the TFLite file
        x = models.last_point_block(arch, x, alpha=alpha)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name=models.OUTPUT_NAME)(x)
    return keras.Model(inputs_, outputs, name=f"{arch}_xnnpack")


def transfer_weights(source: keras.Model, target: keras.Model) -> int:
    """Copy weights layer by layer by name; every weighted target layer must find its source. Returns
    the number of layers copied.

    BatchNormalization momentum comes along: the layout is built with Keras' 0.999, and a source trained
    with 0.99 (the profiles' setting) fine-tuned at 0.999 keeps moving statistics that lag the pruned
    weights, so the model is right in training mode and falls to chance in inference mode.
    """
    copied = 0
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            origin = source.get_layer(layer.name)
        except ValueError:
            raise ValueError(f"layer {layer.name!r} of {target.name} has no counterpart in {source.name}") from None
        layer.set_weights(origin.get_weights())
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = origin.momentum
        copied += 1
    return copied
