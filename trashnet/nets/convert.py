"""A trained Keras model -> TFLite bytes at one precision, and the model rewrites some precisions need.

Shared by the pruning, QAT and quantization stages (it sits below them so none imports another for it).

Conversion starts from a frozen concrete function of the model (``training=False``) with no trackable
object: 1-2 s for a 48 px MobileNetV3-Small on 2 cores, against 30-70 s through ``from_keras_model`` (or
``from_concrete_functions`` given the model), which first re-save the model as a SavedModel. The input
keeps a free batch dimension so evaluation runs batches; the file's default shape is batch 1.

Which graphs 16x8 accepts (checked by tests/test_quantize.py): Keras' hard-swish ``x * relu6(x + 3) / 6``
(also written ``x * min(max(x + 3, 0), 6) / 6``) is fused into HARD_SWISH and refused without fallback;
``(x / 6) * relu6(x + 3)`` and ``x * clip_by_value(x / 6 + 0.5, 0, 1)`` are not fused and become int16
MUL/ADD(/MINIMUM/RELU) ops; ``models.int16_hard_swish`` uses the first (3 ops instead of 5). The
squeeze-excite hard-sigmoid ``relu6(x + 3) / 6`` needs no rewrite: it quantizes to int16 as is.
16x8 MobileNetV1/V2 files from *random* weights fail to
prepare (``no_integer_overflow_from_quantization``): untrained BatchNorm lets activations shrink layer
by layer, a deep RELU6 output is calibrated to a scale below 6 / 2**31 and its int32 clamp overflows.
With trained weights (even 2 epochs on the sample) the same conversion loads and runs.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from trashnet.core.keras_env import keras, tf
from trashnet.nets import models

CALIBRATED_PRECISIONS = ("int8", "int16x8", "int16x8-fallback")


def representative_images(images: np.ndarray, count: int, *, seed: int) -> np.ndarray:
    """``count`` images (fewer if the split is smaller) drawn without replacement, as float32 [0, 255].

    The models carry their preprocessing, so calibration data is raw pixels, exactly what the file takes.
    """
    if len(images) == 0:
        raise ValueError("no images to calibrate with: the train split is empty")
    order = np.random.default_rng(seed).permutation(len(images))[:count]
    return images[np.sort(order)].astype(np.float32)


def _dataset_gen(images: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    def generate() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [image[None].astype(np.float32)]
    return generate


def frozen_function(model: keras.Model):
    """The model's inference graph as a concrete function with a free batch dimension."""
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=models.INPUT_NAME)
    forward = tf.function(lambda x: model(x, training=False))
    return forward.get_concrete_function(spec)


def convert(model: keras.Model, precision: str, *, representative: np.ndarray | None = None,
            sparse: bool = False, quantization_aware: bool = False) -> bytes:
    """``model`` as a .tflite flatbuffer at ``precision``.

    ``representative``: float32 images in [0, 255], (N, H, W, 3); required for ``int8`` and the 16x8 modes.
    ``sparse`` adds ``Optimize.EXPERIMENTAL_SPARSITY``: kernels sparse enough are stored in TFLite's sparse
    format, which XNNPack's sparse inference can use (the pruning stage measures it).
    For ``int16x8`` pass a MobileNetV3 already rebuilt with ``int16_compatible`` (``prepare_model`` does).
    ``quantization_aware``: ``model`` came out of tfmot QAT (``qat.train``); its fake-quantization ranges
    replace calibration. TF 2.21's converter still refuses int8 input/output without a representative
    dataset (it checks before it looks at the graph), so pass a few images: the file is byte-identical
    whichever images are given (checked in tests/test_qat.py).
    """
    # No trackable object: given one, the converter first re-saves the whole Keras model as a
    # SavedModel (tracing every layer), ~20-50x slower than converting the frozen graph directly.
    # TF 2.21 logs that this path is deprecated; it is the one that works fast (re-check on upgrades).
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen_function(model)])
    if precision == "fp32":
        pass
    elif precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8-dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8" and quantization_aware:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        if representative is not None:
            converter.representative_dataset = _dataset_gen(representative)
    elif precision in CALIBRATED_PRECISIONS:
        if representative is None or len(representative) == 0:
            raise ValueError(f"precision {precision!r} needs representative images for calibration")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _dataset_gen(representative)
        if precision == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        else:
            ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            if precision == "int16x8-fallback":
                ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
            converter.target_spec.supported_ops = ops
    else:
        raise ValueError(f"unknown precision {precision!r}")
    if quantization_aware and precision != "int8":
        raise ValueError(f"a quantization-aware model converts to 'int8' only, not {precision!r}")
    if sparse:
        converter.optimizations = [*converter.optimizations, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return converter.convert()


def int16_compatible(model: keras.Model, *, arch: str, image_size: int, alpha: float,
                     dropout: float, head: str = "pooled", input_scale: int = 1) -> keras.Model:
    """A MobileNetV3 rebuilt with ``models.int16_hard_swish`` carrying ``model``'s weights, layer by layer.

    Weighted layers are matched by name (the rewrite touches only weightless layers); a layer missing
    or shaped differently is an error.
    """
    with models.int16_hard_swish():
        rebuilt = models.build_model(arch, num_classes=int(model.output_shape[-1]), image_size=image_size,
                                     alpha=alpha, dropout=dropout, head=head, input_scale=input_scale)
    return carry_weights(model, rebuilt, arch=arch)


def carry_weights(model: keras.Model, rebuilt: keras.Model, *, arch: str) -> keras.Model:
    """Copy every weighted layer of ``model`` into the same-named layer of ``rebuilt`` (returned); both
    must have exactly the same weighted layers."""
    source = {layer.name: layer for layer in model.layers if layer.weights}
    target = [layer for layer in rebuilt.layers if layer.weights]
    missing = sorted({layer.name for layer in target} ^ set(source))
    if missing:
        raise ValueError(f"cannot carry weights over to the rebuilt {arch}: layers differ: {missing[:10]}")
    for layer in target:
        layer.set_weights(source[layer.name].get_weights())
    return rebuilt


def float_outputs_unchanged(original: keras.Model, rebuilt: keras.Model, images: np.ndarray) -> dict[str, float]:
    """Largest differences between two float models on ``images``: probabilities and pooled features.

    The pooled features (before the classifier) are compared too: a barely trained model's softmax can
    be flat enough to hide a real difference.
    """
    def both(model: keras.Model) -> list[np.ndarray]:
        outputs = keras.Model(model.input, [model.get_layer("pool").output, model.output])
        return models.predict_chunked(outputs, images, batch_size=64)

    (features, probabilities), (new_features, new_probabilities) = both(original), both(rebuilt)
    feature_diff = float(np.abs(features - new_features).max())
    return {"float_max_abs_diff": float(np.abs(probabilities - new_probabilities).max()),
            "feature_max_abs_diff": feature_diff,
            "feature_max_rel_diff": feature_diff / (float(np.abs(features).max()) or 1.0)}
