"""The registry of architectures: one entry per MobileNet, each carrying its preprocessing.

Every model built here takes raw RGB pixels, float32 in [0, 255], shape ``(size, size, 3)``: the scaling
to [-1, 1] that all four ImageNet MobileNets expect is a ``Rescaling`` layer inside the model, so the
Keras model, its TFLite file and the deployment app all take the same input. Models are *flat*
functional graphs (stem to classifier in one ``Model``), which per-layer pruning needs.

    model = build_model("mobilenet_v3_large", num_classes=6, image_size=224)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from trashnet.core.keras_env import keras, tf

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
PREPROCESS_NAME = "preprocess"
INPUT_POOL_NAME = "input_pool"  # input_scale > 1: the K x K average before the preprocessing
HEADS = ("pooled", "last_point")  # model.head: what sits between the pooling and the dropout
LAST_POINT_NAME = "last_point"  # the V3 head's 1x1 conv after pooling (Keras' top-only "Conv_2"), as a Dense


@dataclass(frozen=True)
class Architecture:
    name: str
    builder: Callable[..., keras.Model]
    description: str
    uses_hard_swish: bool  # V3: the activation TFLite's 16x8 mode cannot quantize (docs/toolchain-facts.md)
    # Pretrained ImageNet weights exist only for these (Keras raises otherwise).
    imagenet_alphas: tuple[float, ...]
    # The input the backbone expects after our Rescaling layer.
    preprocessing: str = "x / 127.5 - 1 (RGB, [0, 255] -> [-1, 1])"

    def backbone(self, inputs: tf.Tensor, *, alpha: float, weights: str | None) -> keras.Model:
        kwargs = dict(input_tensor=inputs, include_top=False, weights=weights, alpha=alpha)
        if self.name.startswith("mobilenet_v3"):
            kwargs["include_preprocessing"] = False  # ours is the same Rescaling, shared by all four
        return self.builder(**kwargs)


def _v3(builder_name: str, **fixed) -> Callable[..., keras.Model]:
    # Looked up at call time so that `int16_hard_swish()` can patch the module it reads from.
    return lambda **kwargs: getattr(keras.applications, builder_name)(**fixed, **kwargs)


REGISTRY: dict[str, Architecture] = {
    "mobilenet_v1": Architecture(
        "mobilenet_v1", keras.applications.MobileNet, "MobileNetV1 (Howard et al. 2017)",
        uses_hard_swish=False, imagenet_alphas=(0.25, 0.5, 0.75, 1.0)),
    "mobilenet_v2": Architecture(
        "mobilenet_v2", keras.applications.MobileNetV2, "MobileNetV2 (Sandler et al. 2018)",
        uses_hard_swish=False, imagenet_alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4)),
    "mobilenet_v3_small": Architecture(
        "mobilenet_v3_small", _v3("MobileNetV3Small"), "MobileNetV3-Small (Howard et al. 2019)",
        uses_hard_swish=True, imagenet_alphas=(0.75, 1.0)),
    "mobilenet_v3_large": Architecture(
        "mobilenet_v3_large", _v3("MobileNetV3Large"), "MobileNetV3-Large (Howard et al. 2019)",
        uses_hard_swish=True, imagenet_alphas=(0.75, 1.0)),
    # No squeeze-excite, ReLU instead of hard-swish, 3x3 depthwise kernels: the V3-Large whose ImageNet
    # weights exist as an official TFLite file (docs/imagenet.md).
    "mobilenet_v3_large_minimalistic": Architecture(
        "mobilenet_v3_large_minimalistic", _v3("MobileNetV3Large", minimalistic=True),
        "MobileNetV3-Large minimalistic (Howard et al. 2019)", uses_hard_swish=False, imagenet_alphas=(1.0,)),
}


def get_architecture(name: str) -> Architecture:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; valid: {', '.join(REGISTRY)}") from None


def keras_weights(weights: str | None) -> str | None:
    """What Keras' ``weights=`` takes: ``None``/``"none"`` (random), ``"imagenet"`` (Keras' download) or the path
    of an existing weights file. Config values such as ``imagenet-tflite`` are resolved to a file first
    (``imagenet.resolve_weights``)."""
    if weights in (None, "none"):
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ValueError(f"weights {weights!r}: expected 'none', 'imagenet' or the path of an existing weights file "
                         f"(config values such as 'imagenet-tflite' go through imagenet.resolve_weights)")
    return str(path)


def build_model(
    arch: str,
    *,
    num_classes: int,
    image_size: int,
    alpha: float = 1.0,
    weights: str | None = None,
    dropout: float = 0.2,
    bn_momentum: float | None = None,
    head: str = "pooled",
    last_point: tuple[np.ndarray, np.ndarray] | None = None,
    input_scale: int = 1,
) -> keras.Model:
    """A flat classifier: raw pixels -> Rescaling -> backbone -> pooling -> dropout -> softmax.

    ``head="last_point"`` (MobileNetV3 only) puts the ImageNet head's "last point" layer after the pooling:
    a dense layer (960 -> 1280 for V3-Large, 576 -> 1024 for V3-Small) and the arch's activation, filled with
    ``last_point`` (kernel, bias) when given (``imagenet.last_point`` reads them from the TFLite file).

    ``input_scale`` K > 1: the input is K x ``image_size`` px and an ``AveragePooling2D(K)`` first layer brings
    it to ``image_size`` before the Rescaling (config.ModelConfig.input_scale, docs/deployment-parity.md).
    """
    entry = get_architecture(arch)
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid: {', '.join(HEADS)}")
    if last_point is not None and head != "last_point":
        raise ValueError(f"last-point weights given for head {head!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 (MobileNet's minimum), got {image_size}")
    inputs, x = model_input(image_size, input_scale)
    backbone = entry.backbone(x, alpha=alpha, weights=keras_weights(weights))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(backbone.output)
    if head == "last_point":
        x = last_point_block(arch, x, alpha=alpha, weights=last_point)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    # float32 output even under mixed precision: softmax and the loss stay numerically safe.
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name=arch)
    if bn_momentum is not None:
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = bn_momentum
    return model


def model_input(image_size: int, input_scale: int = 1) -> tuple[tf.Tensor, tf.Tensor]:
    """The raw-pixel input (K x ``image_size`` px) and the Rescaled tensor the backbone reads, with the K x K
    average first when ``input_scale`` K > 1 (shared by ``build_model`` and the XNNPack layout)."""
    if input_scale < 1:
        raise ValueError(f"input_scale must be at least 1, got {input_scale}")
    side = image_size * input_scale
    inputs = keras.Input((side, side, 3), dtype="float32", name=INPUT_NAME)
    x = inputs
    if input_scale > 1:  # a plain AVERAGE_POOL_2D in TFLite: converts and quantizes (int8, 16x8) like any op
        x = keras.layers.AveragePooling2D(input_scale, name=INPUT_POOL_NAME)(x)
    return inputs, keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=PREPROCESS_NAME)(x)


def input_scale(model: keras.Model) -> int:
    """K of a model built with ``input_scale`` K (its ``input_pool`` layer), 1 without one: rebuilding a trained
    model (int16 hard-swish, QAT, the XNNPack layout) reads it here, with ``image_size`` = input side // K."""
    try:
        pool = model.get_layer(INPUT_POOL_NAME)
    except ValueError:
        return 1
    return int(pool.pool_size[0])


def last_point_block(arch: str, x: tf.Tensor, *, alpha: float,
                     weights: tuple[np.ndarray, np.ndarray] | None = None) -> tf.Tensor:
    """Pooled features -> the V3 "last point" dense layer -> the arch's activation (hard-swish for V3-Large
    and V3-Small, ReLU for the minimalistic net: what Keras' top and Google's TFLite files use).

    Keras' no-top V3 stops before this layer, so the pooled head would drop the pretrained 1280-d features
    that the ImageNet classifier reads (a linear probe on them beat the 960-d pooled ones, issue 27).
    ``weights``: (kernel [in, out], bias [out]); None leaves Keras' random init.
    """
    from tf_keras.src.applications import mobilenet_v3  # looked up now: int16_hard_swish() patches it

    if not arch.startswith("mobilenet_v3"):
        raise ValueError(f"head 'last_point' exists for MobileNetV3 only, not {arch!r}")
    units = 1024 if arch == "mobilenet_v3_small" else 1280
    if alpha > 1.0:  # Keras widens the last point only above 1.0
        units = int(mobilenet_v3._depth(units * alpha))
    layer = keras.layers.Dense(units, name=LAST_POINT_NAME)
    y = layer(x)
    if weights is not None:
        layer.set_weights(list(weights))
    if get_architecture(arch).uses_hard_swish:
        return mobilenet_v3.hard_swish(y)
    return keras.layers.ReLU(name=f"{LAST_POINT_NAME}_relu")(y)


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers between the preprocessing and the classifier head (for freezing in fine-tuning)."""
    head = {"pool", "head_dropout", OUTPUT_NAME}
    return [layer for layer in model.layers
            if layer.name not in head and layer.name not in (PREPROCESS_NAME, INPUT_POOL_NAME)
            and not isinstance(layer, keras.layers.InputLayer)]


@contextlib.contextmanager
def int16_hard_swish() -> Iterator[None]:
    """Build MobileNetV3 with hard-swish as ``(x / 6) * relu6(x + 3)`` instead of Keras'
    ``x * relu6(x + 3) / 6``.

    The two are equal in exact arithmetic (and bit-identical in float32 on the models tested), but the
    TFLite converter fuses the Keras form (and ``x * min(max(x + 3, 0), 6) / 6``) into HARD_SWISH, an op its
    16x8 mode cannot quantize (docs/toolchain-facts.md); this form stays MUL + ADD/RELU6 + MUL, all int16 in 16x8.
    ``x * clip_by_value(x / 6 + 0.5, 0, 1)`` is not fused either but needs 5 ops instead of 3 (~5-10 %
    slower in 16x8). Weightless layers change, every weighted layer keeps its name and shape, so weights
    carry over unchanged (``quantize.int16_compatible``). The squeeze-excite hard-sigmoid is left as is:
    it is not fused and quantizes to int16.
    """
    from tf_keras.src.applications import mobilenet_v3

    def hard_swish(x: tf.Tensor) -> tf.Tensor:
        return keras.layers.Multiply()([x * (1.0 / 6.0), keras.layers.ReLU(6.0)(x + 3.0)])

    original = mobilenet_v3.hard_swish
    mobilenet_v3.hard_swish = hard_swish
    try:
        yield
    finally:
        mobilenet_v3.hard_swish = original


def count_macs(model: keras.Model, *, nonzero: bool = False) -> int:
    """Multiply-accumulates of one forward pass, from the conv, depthwise and dense layers.

    ``nonzero=True`` counts only MACs whose weight is non-zero: what a sparse kernel could skip.
    Layers inside pruning wrappers are unwrapped.
    """
    total = 0
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # tfmot's PruneLowMagnitude wraps the real layer
        if isinstance(inner, keras.layers.DepthwiseConv2D):
            kernel = inner.depthwise_kernel
        elif isinstance(inner, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = inner.kernel
        else:
            continue
        out_shape = layer.output_shape
        positions = 1
        for dim in out_shape[1:-1]:  # spatial dims; Dense has none
            positions *= int(dim)
        weights_used = int(tf.math.count_nonzero(kernel)) if nonzero else int(tf.size(kernel))
        total += positions * weights_used
    return total


def predict_chunked(model: keras.Model, images: np.ndarray, *, batch_size: int = 64,
                    chunk: int = 256) -> np.ndarray | list[np.ndarray]:
    """``model.predict`` on uint8 (or float) images in [0, 255], cast to float32 a chunk at a time.

    Casting a whole split first costs 4 bytes a pixel at once: 1,764 training photos at 480 px (160 px x
    ``input_scale`` 3) are 4.9 GB of float32, and Keras copies them again, which ran two workers out of 24 GB.
    """
    parts = [model.predict(images[start:start + chunk].astype(np.float32), batch_size=batch_size, verbose=0)
             for start in range(0, len(images), chunk)]
    if parts and isinstance(parts[0], (list, tuple)):
        return [np.concatenate([part[i] for part in parts]) for i in range(len(parts[0]))]
    return np.concatenate(parts)
