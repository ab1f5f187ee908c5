"""Quantization-aware training (tfmot) of the MobileNets, MobileNetV3 included, and its full-INT8 file.

tfmot 0.8.1 cannot annotate Keras' MobileNetV3: its hard-swish and hard-sigmoid are ``TFOpLambda`` layers
(``x + 3.0`` and ``* (1 / 6)`` on tensors), which ``quantize_model`` rejects (tensorflow/model-optimization
#1145, #980). Following the TF Model Garden's QAT project (``official/projects/qat/vision``: custom layers,
each with a ``QuantizeConfig`` that fake-quantizes its output), MobileNetV3 is rebuilt here from layers tfmot
can annotate:

- ``HardSwish`` and ``HardSigmoid``: weightless Keras layers computing exactly what Keras computes
  (``x * (relu6(x + 3) / 6)`` and ``relu6(x + 3) / 6``). ``HardSwish(form="int16")`` computes
  ``(x / 6) * relu6(x + 3)``, the form the converter does not fuse (``models.int16_hard_swish``);
- the squeeze-excite block is Keras' own: ``GlobalAveragePooling2D(keepdims=True)``, ``Conv2D``, ``ReLU``,
  ``Conv2D``, then our ``HardSigmoid`` and a ``Multiply``;
- the input ``Rescaling`` and ``Multiply`` (tfmot's registry has no entry for either) get the same
  output-only config, and so does a ``ReLU`` right after a conv (``ConvReLU``: else tfmot leaves that conv's
  kernel without fake quantization and without the PQAT sparsity mask).

Every weighted layer keeps its name and shape, so a trained model's weights carry over by name and the
float outputs are unchanged (``annotatable_model`` checks it). ``quantize_apply`` then inserts fake
quantization; with ``pqat`` it uses tfmot's ``Default8BitPrunePreserveQuantizeScheme``, which keeps every
zero of the (2:4-pruned) kernels zero while training, so the int8 file keeps the 2:4 pattern
(``int8_m_by_n`` reads it back from the file). V1 and V2 have no such layers and go through the same path.

    qat_model, record = qat.train(model, data, cfg)        # cfg.quantize.qat.method: "qat" | "pqat"
    content = convert.convert(qat_model, "int8", quantization_aware=True)
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any, Iterator

import numpy as np

from trashnet.data import inputs
from trashnet.nets import batchnorm, models
from trashnet.stages import training
from trashnet.core.config import VariantConfig
from trashnet.core.keras_env import keras, tf

HARD_SWISH_FORMS = ("keras", "int16")


def _tfmot():
    import tensorflow_model_optimization as tfmot  # noqa: PLC0415 - heavy, only for QAT

    return tfmot


@keras.utils.register_keras_serializable(package="trashnet")
class HardSigmoid(keras.layers.Layer):
    """``relu6(x + 3) / 6``, as Keras' MobileNetV3 computes it, in one annotatable layer."""

    def call(self, inputs):
        return tf.nn.relu6(inputs + 3.0) * (1.0 / 6.0)


@keras.utils.register_keras_serializable(package="trashnet")
class HardSwish(keras.layers.Layer):
    """``x * hard_sigmoid(x)`` in one annotatable layer.

    ``form="keras"``: ``x * (relu6(x + 3) / 6)``, Keras' own order (the converter fuses it into one
    HARD_SWISH op, which int8 supports); ``form="int16"``: ``(x / 6) * relu6(x + 3)``, left unfused so that
    16x8 can quantize it (``models.int16_hard_swish``).
    """

    def __init__(self, form: str = "keras", **kwargs):
        super().__init__(**kwargs)
        if form not in HARD_SWISH_FORMS:
            raise ValueError(f"unknown hard-swish form {form!r}; valid: {', '.join(HARD_SWISH_FORMS)}")
        self.form = form

    def call(self, inputs):
        if self.form == "int16":
            return (inputs * (1.0 / 6.0)) * tf.nn.relu6(inputs + 3.0)
        return inputs * (tf.nn.relu6(inputs + 3.0) * (1.0 / 6.0))

    def get_config(self):
        return {**super().get_config(), "form": self.form}


@keras.utils.register_keras_serializable(package="trashnet")
class ConvReLU(keras.layers.ReLU):
    """A ``ReLU`` straight after a Conv2D / Dense (MobileNetV3's squeeze-excite), under another class name.

    tfmot's ``LayerReLUQuantize`` transform matches ``Conv2D -> ReLU`` and gives the conv a
    ``NoOpQuantizeConfig``: its kernel then trains with no fake quantization and, under PQAT, without the
    sparsity mask (measured: the 2:4 pattern of every squeeze-excite conv was gone after 5 epochs on
    TrashNet). Renamed, the pattern does not match; the conv keeps tfmot's own (prune-preserving) config
    and this layer's output is quantized like the other weightless layers here.
    """


@functools.cache
def _output_quantize_config_class() -> type:
    """Defined on first use: the base class lives in tfmot, which the rest of the package never imports."""
    tfmot = _tfmot()
    quantizers = tfmot.quantization.keras.quantizers

    class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        """Fake-quantize only the layer's output, 8-bit asymmetric per tensor (as TFLite's int8 kernels)."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                      narrow_range=False)]

        def get_config(self):
            return {}

    return OutputQuantizeConfig


def output_quantize_config():
    """The output-only 8-bit ``QuantizeConfig`` for weightless layers tfmot's registry does not know."""
    return _output_quantize_config_class()()


@functools.cache
def _depthwise_quantize_config_class() -> type:
    """Defined on first use, like ``OutputQuantizeConfig``."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: PLC0415
        default_8bit_quantize_registry as registry)

    quantizers = _tfmot().quantization.keras.quantizers

    class DepthwiseWeightsQuantizer(quantizers.LastValueQuantizer):
        """8-bit symmetric, one range per channel of a depth-multiplier-1 depthwise kernel (kh, kw, C, 1).

        tfmot's own depthwise quantizer is "per axis" over the last axis, which is the multiplier (size 1):
        one range for the whole kernel. Fine while BatchNorm scales the channels afterwards (our from-scratch
        nets), but the ImageNet weights fold BatchNorm into the kernels, whose channels then span ranges
        orders of magnitude apart, and one scale zeroed the small ones (the first depthwise's output had a
        relative error of 0.74). Channels are moved last, as tfmot does for Conv2DTranspose; TFLite's int8
        depthwise kernels are per channel anyway."""

        def __init__(self, **kwargs):
            super().__init__(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)

        def build(self, tensor_shape, name, layer):
            ranges = {}
            for key, bound in (("min_var", -6.0), ("max_var", 6.0)):
                ranges[key] = layer.add_weight(f"{name}_{key[:3]}", shape=(tensor_shape[-2],),
                                               initializer=keras.initializers.Constant(bound), trainable=False)
            return ranges

        def __call__(self, inputs, training, weights, **kwargs):
            channels_last = tf.transpose(inputs, (0, 1, 3, 2))
            return tf.transpose(super().__call__(channels_last, training, weights, **kwargs), (0, 1, 3, 2))

        def get_config(self):
            return {}

    class DepthwiseQuantizeConfig(registry.Default8BitConvQuantizeConfig):
        """tfmot's depthwise config with ``DepthwiseWeightsQuantizer`` for the kernel, and no quantizer on its
        (linear) output, as tfmot's Conv -> BatchNorm transform leaves it: the range that counts comes after."""

        def __init__(self, weight_attrs=("depthwise_kernel",), activation_attrs=(),
                     quantize_output=False):
            super().__init__(list(weight_attrs), list(activation_attrs), quantize_output)
            self.weight_quantizer = DepthwiseWeightsQuantizer()

    return DepthwiseQuantizeConfig


def depthwise_quantize_config():
    """Per-channel weights for a ``DepthwiseConv2D`` with depth multiplier 1 (see ``DepthwiseWeightsQuantizer``)."""
    return _depthwise_quantize_config_class()()


def scope() -> dict[str, Any]:
    """Custom objects for ``quantize_scope`` (and for loading a QAT model)."""
    config_class, depthwise_class = _output_quantize_config_class(), _depthwise_quantize_config_class()
    return {"HardSwish": HardSwish, "HardSigmoid": HardSigmoid, "ConvReLU": ConvReLU,
            config_class.__name__: config_class, depthwise_class.__name__: depthwise_class}


@contextlib.contextmanager
def annotatable_layers(form: str = "keras") -> Iterator[None]:
    """Build MobileNetV3 with ``HardSwish`` / ``HardSigmoid`` layers instead of ``TFOpLambda`` arithmetic.

    Keras' builder looks the two functions up in its module at call time (as ``models.int16_hard_swish``
    relies on too), so swapping them while building is enough; the squeeze-excite block calls
    ``hard_sigmoid`` and is otherwise made of standard layers already.
    """
    from tf_keras.src.applications import mobilenet_v3  # noqa: PLC0415

    if form not in HARD_SWISH_FORMS:
        raise ValueError(f"unknown hard-swish form {form!r}; valid: {', '.join(HARD_SWISH_FORMS)}")
    original = mobilenet_v3.hard_sigmoid, mobilenet_v3.hard_swish
    mobilenet_v3.hard_sigmoid = lambda x: HardSigmoid()(x)
    mobilenet_v3.hard_swish = lambda x: HardSwish(form=form)(x)
    try:
        yield
    finally:
        mobilenet_v3.hard_sigmoid, mobilenet_v3.hard_swish = original


def tf_op_layers(model: keras.Model) -> list[str]:
    """Names of ``TFOpLambda`` layers (tfmot cannot annotate them): empty for an annotatable model."""
    return [layer.name for layer in model.layers if type(layer).__name__ == "TFOpLambda"]


def annotatable_model(model: keras.Model, *, arch: str, alpha: float, dropout: float,
                      form: str = "keras", head: str = "pooled") -> keras.Model:
    """``model`` rebuilt from annotatable layers, carrying its weights (matched by layer name).

    Input size, input scale and BatchNorm momentum (it matters when QAT trains) are read from ``model`` itself.
    """
    from trashnet.nets import convert

    momentum = next((layer.momentum for layer in model.layers
                     if isinstance(layer, keras.layers.BatchNormalization)), None)
    with annotatable_layers(form):
        rebuilt = models.build_model(arch, num_classes=int(model.output_shape[-1]),
                                     image_size=int(model.input_shape[1]) // models.input_scale(model), alpha=alpha,
                                     dropout=dropout, bn_momentum=momentum, head=head,
                                     input_scale=models.input_scale(model))
    convert.carry_weights(model, rebuilt, arch=arch)
    left = tf_op_layers(rebuilt)
    if left:
        raise ValueError(f"the rebuilt {arch} still has TFOpLambda layers tfmot cannot annotate: {left[:5]}")
    return rebuilt


def _per_channel_depthwise(layer) -> bool:
    return isinstance(layer, keras.layers.DepthwiseConv2D) and layer.depth_multiplier == 1


def _no_op_config():
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: PLC0415
        default_8bit_quantize_configs as configs)

    return configs.NoOpQuantizeConfig()


def quantize_model(model: keras.Model, method: str) -> keras.Model:
    """``quantize_apply`` over an annotatable model: ``qat`` (default 8-bit scheme) or ``pqat``
    (``Default8BitPrunePreserveQuantizeScheme``: the kernels' zeros stay zero)."""
    tfmot = _tfmot()
    qk = tfmot.quantization.keras
    if method not in ("qat", "pqat"):
        raise ValueError(f"unknown QAT method {method!r}; valid: qat, pqat")
    # Layers tfmot 0.8.1's default registry has no entry for: ours, the input scaling, and the Multiply of
    # hard-swish (stock) and squeeze-excite. All are weightless; their outputs get an 8-bit quantizer.
    custom = (HardSwish, HardSigmoid, keras.layers.Rescaling, keras.layers.Multiply)

    after_kernel = {layer.name for layer in model.layers
                    if type(layer) is keras.layers.ReLU and isinstance(
                        layer.input._keras_history.layer, (keras.layers.Conv2D, keras.layers.Dense))}

    # Annotated depthwise convs no longer match tfmot's DepthwiseConv2D -> BatchNorm transform, which gives the
    # BatchNorm a no-op config (the converter folds it into the conv): give it the same one here.
    after_depthwise = {layer.name for layer in model.layers
                       if isinstance(layer, keras.layers.BatchNormalization) and _per_channel_depthwise(
                           layer.input._keras_history.layer)}

    def annotate(layer):
        if _per_channel_depthwise(layer):
            return qk.quantize_annotate_layer(type(layer).from_config(layer.get_config()), depthwise_quantize_config())
        if layer.name in after_depthwise:
            return qk.quantize_annotate_layer(type(layer).from_config(layer.get_config()), _no_op_config())
        if layer.name in after_kernel:
            return qk.quantize_annotate_layer(ConvReLU.from_config(layer.get_config()), output_quantize_config())
        if isinstance(layer, custom):
            # A fresh copy: these layers have no weights, and the annotated graph must not share them.
            return qk.quantize_annotate_layer(type(layer).from_config(layer.get_config()), output_quantize_config())
        return layer

    with qk.quantize_scope(scope()):
        annotated = keras.models.clone_model(model, clone_function=annotate)
        annotated.set_weights(model.get_weights())
        annotated = qk.quantize_annotate_model(annotated)  # the rest: tfmot's default 8-bit registry
        if method == "pqat":
            return qk.quantize_apply(annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
        return qk.quantize_apply(annotated)


CALIBRATION_IMAGES = 64  # training images whose float activations set the quantizers' starting ranges


def _range_name(variable) -> str:
    return variable.name.rsplit("/", 1)[-1].split(":")[0]


def calibrate_ranges(qat_model: keras.Model, float_model: keras.Model, images: np.ndarray, *,
                     batch_size: int = 16) -> int:
    """Start every activation quantizer of ``qat_model`` at the min/max of ``float_model``'s same tensor on
    ``images`` (as post-training int8 calibrates), instead of tfmot's [-6, 6]. Returns how many were set.

    tfmot's ``MovingAverageQuantizer`` starts at [-6, 6] and moves 0.1 % a step towards each batch's range.
    That suits networks whose activations stay near unit scale (our from-scratch runs), but the ImageNet
    minimalistic V3-Large (unbounded ReLU over folded biases) has activations up to ~300 and its input pooling
    outputs raw pixels (0..255): clipped to 6, every layer lost most of its signal (relative error 0.5-1.1
    from the first ReLU on) and QAT sat at ln 6 from its first epoch. Layers are matched by name
    (``quant_<name>`` wraps ``<name>``); a Dense's ``pre_activation`` range is that of its logits.
    """
    layers = {layer.name: layer for layer in float_model.layers}
    targets = []  # (min variable, max variable, float tensor, the float layer when it is a Dense's logits)
    for wrapper in qat_model.layers:
        layer = layers.get(wrapper.name.removeprefix("quant_"))
        if layer is None or not wrapper.name.startswith("quant_"):
            continue
        ranges = {_range_name(variable): variable for variable in wrapper.weights}
        if "output_min" in ranges:
            targets.append((ranges["output_min"], ranges["output_max"], layer.output, None))
        if "pre_activation_min" in ranges and isinstance(layer, keras.layers.Dense):
            targets.append((ranges["pre_activation_min"], ranges["pre_activation_max"], layer.input, layer))
    probe = keras.Model(float_model.input, [tensor for _, _, tensor, _ in targets])
    low = np.full(len(targets), np.inf)
    high = np.full(len(targets), -np.inf)
    for start in range(0, len(images), batch_size):
        outputs = probe(images[start:start + batch_size].astype(np.float32), training=False)
        for i, ((_, _, _, dense), value) in enumerate(zip(targets, outputs)):
            value = value.numpy()
            if dense is not None:
                value = value @ dense.kernel.numpy() + dense.bias.numpy()
            low[i], high[i] = min(low[i], value.min()), max(high[i], value.max())
    for (low_var, high_var, _, _), lo, hi in zip(targets, low, high):
        low_var.assign(min(lo, 0.0))  # TFLite's ranges hold 0
        high_var.assign(max(hi, 0.0))
    return len(targets)


def fine_tune(qat_model: keras.Model, data: inputs.Dataset, cfg: VariantConfig, *,
              verbose: bool = True) -> list[dict[str, Any]]:
    """Train with fake quantization: the training stage's recipe (augmentation, label smoothing, class
    weights, AdamW without decay on BatchNorm or biases) at ``quantize.qat.learning_rate``, cosine decay,
    no warm-up, no EMA (the quantizers' ranges follow the raw weights), judged on validation each epoch."""
    qat = cfg.quantize.qat
    if batchnorm.kept_frozen(cfg):  # as the baseline was fine-tuned (before the optimizer picks its variables)
        batchnorm.freeze(qat_model)
    steps = max(1, int(np.ceil(len(data.train) / cfg.train.batch_size)))
    total = steps * qat.epochs
    schedule = training.lr_schedule(qat.learning_rate, total_steps=total, warmup_steps=0)
    optimizer = training.make_optimizer(qat_model, schedule, weight_decay=cfg.train.weight_decay,
                                        total_steps=total, ema=False)
    qat_model.compile(optimizer=optimizer, loss=training.loss_function(cfg), metrics=["accuracy"])
    judge = training.ValidationJudge(data.validation, data.classes, phase=qat.method, first_epoch=1,
                                     epochs=qat.epochs, schedule=schedule, verbose=verbose)
    qat_model.fit(training.training_pipeline(data.train, cfg, len(data.classes)), epochs=qat.epochs,
                  callbacks=[judge], verbose=0)
    return judge.rows


def train(model: keras.Model, data: inputs.Dataset, cfg: VariantConfig, *, check_images: np.ndarray,
          verbose: bool = True) -> tuple[keras.Model, dict[str, Any]]:
    """Rebuild ``model`` annotatable (checking on ``check_images`` that its float outputs are unchanged),
    apply ``cfg.quantize.qat.method`` and fine-tune. Returns the QAT model and what was done."""
    from trashnet.nets import convert

    method = cfg.quantize.qat.method
    started = time.perf_counter()
    rebuilt = annotatable_model(model, arch=cfg.arch, alpha=cfg.model.alpha, dropout=cfg.model.dropout,
                                head=cfg.model.head)
    check = convert.float_outputs_unchanged(model, rebuilt, check_images)
    qat_model = quantize_model(rebuilt, method)
    spread = data.train.images[::max(1, len(data.train) // CALIBRATION_IMAGES)][:CALIBRATION_IMAGES]  # all classes
    calibrated = calibrate_ranges(qat_model, rebuilt, spread)
    history = fine_tune(qat_model, data, cfg, verbose=verbose)
    record = {"method": method,
              "scheme": ("Default8BitPrunePreserveQuantizeScheme" if method == "pqat" else "Default8BitQuantizeScheme"),
              "epochs": cfg.quantize.qat.epochs, "learning_rate": cfg.quantize.qat.learning_rate,
              "rebuild": {"layers": "HardSwish, HardSigmoid, Rescaling, Multiply, ConvReLU: output-quantized",
                          "images": len(check_images), **check},
              "calibration": {"images": min(CALIBRATION_IMAGES, len(data.train)), "ranges": calibrated},
              "history": history, "seconds": round(time.perf_counter() - started, 2)}
    return qat_model, record
