"""ImageNet weights for the MobileNets, imported from Google's official quantized TFLite files.

Keras downloads its ImageNet ``.h5`` files from the internet; where that is not reachable, Google's published
TFLite classifiers are the ImageNet weights that can be had (docs/imagenet.md). ``model.weights:
imagenet-tflite`` makes ``models.build_model`` start from them:

1. the file is found in ``$TRASHNET_WEIGHTS`` and refused unless its sha256 is one pinned in ``FILES``;
2. every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED kernel is read in op order, dequantized
   (``scale * (q - zero_point)``, per tensor or per channel) and put into Keras' layout (``[out,h,w,in]`` ->
   ``[h,w,in,out]``, depthwise ``[1,h,w,c]`` -> ``[h,w,c,1]``), matched one to one with the tf_keras model's
   kernels in layer order (shapes checked);
3. BatchNorm was folded into the kernels: each BatchNormalization after a kernel becomes an identity
   (gamma 1, mean 0, variance 1 - epsilon) with the folded bias as beta;
4. the backbone's weights are saved as an ``.h5`` file (what ``weights=<path>`` loads), cached under
   ``<output root>/.cache/imagenet/`` by the TFLite file's sha256 and this module's code.

The full MobileNetV3-Large (squeeze-excite, hard-swish, 5x5 depthwise) has no file here: ``imagenet-tflite``
starts it from the minimalistic V3-Large's weights (``transplant_v3_large``). The faithfulness checks
(``imagenet_check``) compare an import with its TFLite file (tests, benchmarks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trashnet.core import fileio, settings
from trashnet.core.errors import UserError
from trashnet.data.imagenet_files import (CLASSES, FILES, IMAGE_SIZE, WEIGHTS_VALUE, _source, check_available, checked,
                                   provenance, source_path)
from trashnet.nets import models

# The squeeze-excite gate of a transplanted V3-Large: hard_sigmoid(z) = relu6(z + 3) / 6 is exactly 1 only at
# z >= 3, where its gradient is 0 (the gate could never learn). A bias just inside the linear part keeps the
# gradient; the projection after it is scaled by 1 / gate, so the block still computes what it computed.
SE_GATE_BIAS = 2.94  # gate 0.99

# --- reading a TFLite file -------------------------------------------------------------------------

@dataclass(frozen=True)
class Kernel:
    """One weighted op of a TFLite file, dequantized, in TFLite's layout."""

    op: str  # CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED
    kernel: np.ndarray  # [out,h,w,in], [1,h,w,c] or [out,in]
    bias: np.ndarray | None
    input_tensor: int
    output_tensor: int


WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def dequantize(tensor, buffers) -> np.ndarray:
    """``scale * (q - zero_point)``, per tensor or along ``quantizedDimension`` (per channel)."""
    from tensorflow.lite.python import schema_py_generated as schema

    dtypes = {schema.TensorType.UINT8: np.uint8, schema.TensorType.INT8: np.int8,
              schema.TensorType.INT32: np.int32, schema.TensorType.FLOAT32: np.float32}
    raw = np.frombuffer(bytes(buffers[tensor.buffer].data), dtype=dtypes[tensor.type]).reshape(tensor.shape)
    quant = tensor.quantization
    if tensor.type == schema.TensorType.FLOAT32 or quant is None or quant.scale is None:
        return raw.astype(np.float32)
    shape = [1] * raw.ndim
    if len(quant.scale) > 1:
        shape[quant.quantizedDimension] = -1
    scale = np.asarray(quant.scale, np.float64).reshape(shape)
    zero = np.asarray(quant.zeroPoint, np.float64).reshape(shape)
    return (scale * (raw.astype(np.float64) - zero)).astype(np.float32)


def read_kernels(path: str | os.PathLike) -> list[Kernel]:
    """Every weighted op of a (checked) TFLite file, in execution order, dequantized."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
    model = flatbuffer_utils.read_model(str(checked(path)))
    graph = model.subgraphs[0]
    kernels = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        if name not in WEIGHTED_OPS:
            continue
        bias = dequantize(graph.tensors[op.inputs[2]], model.buffers) if len(op.inputs) > 2 and op.inputs[2] >= 0 \
            else None
        kernels.append(Kernel(name, dequantize(graph.tensors[op.inputs[1]], model.buffers), bias,
                              int(op.inputs[0]), int(op.outputs[0])))
    return kernels


def keras_layout(kernel: np.ndarray, op: str, target_shape: tuple[int, ...]) -> np.ndarray:
    """A TFLite kernel in the layout of the Keras weight it fills (shape checked)."""
    if op == "DEPTHWISE_CONV_2D":  # [1,h,w,c] -> [h,w,c,1]
        out = kernel[0][..., None]
    elif op == "CONV_2D":  # [out,h,w,in] -> [h,w,in,out]
        out = kernel.transpose(1, 2, 3, 0)
    else:  # FULLY_CONNECTED [out,in] -> [in,out]
        out = kernel.T
    if out.ndim != len(target_shape):  # a 1x1 convolution for a Keras Dense, or the other way round
        out = out.reshape(target_shape)
    if tuple(out.shape) != tuple(target_shape):
        raise ValueError(f"{op} kernel {kernel.shape} does not fit the Keras weight {tuple(target_shape)}")
    return out


# --- into tf_keras ---------------------------------------------------------------------------------

def weighted_layers(model) -> list:
    """Conv2D, DepthwiseConv2D and Dense layers in the model's (topological) layer order."""
    from trashnet.core.keras_env import keras

    return [layer for layer in model.layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense))]


def following_batchnorm(layer):
    """The BatchNormalization that takes ``layer``'s output, or None."""
    from trashnet.core.keras_env import keras

    nodes = layer._outbound_nodes
    if len(nodes) == 1 and isinstance(nodes[0].outbound_layer, keras.layers.BatchNormalization):
        return nodes[0].outbound_layer
    return None


def load_kernels(model, kernels: list[Kernel]) -> list[tuple[object, Kernel]]:
    """Fill ``model``'s weighted layers with ``kernels`` one to one; returns the pairs."""
    layers = weighted_layers(model)
    if len(layers) != len(kernels):
        raise ValueError(f"{model.name}: {len(layers)} Keras kernels but {len(kernels)} in the TFLite file(s)")
    for layer, kernel in zip(layers, kernels):
        target = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel
        values = [keras_layout(kernel.kernel, kernel.op, tuple(target.shape))]
        channels = values[0].shape[-2] if kernel.op == "DEPTHWISE_CONV_2D" else values[0].shape[-1]
        bias = kernel.bias if kernel.bias is not None else np.zeros(channels, np.float32)
        norm = following_batchnorm(layer)
        if layer.use_bias:
            values.append(bias.reshape(layer.bias.shape))
        elif norm is not None:
            # Folded BatchNorm: an identity with the folded bias as its offset.
            norm.set_weights([np.ones_like(bias), bias, np.zeros_like(bias),
                              np.full_like(bias, 1.0 - norm.epsilon)])
        elif kernel.bias is not None and np.any(kernel.bias):
            raise ValueError(f"{layer.name}: the TFLite op has a bias but the Keras layer has neither bias "
                             f"nor BatchNorm")
        layer.set_weights(values)
    return list(zip(layers, kernels))


def classifier(arch: str, *, folder: str | os.PathLike | None = None):
    """The whole ImageNet classifier (raw [0, 255] pixels -> 1001 logits) with the imported weights.

    Built like the project's models (our Rescaling, then the Keras application) but with the top kept.
    """
    return _imported(arch, folder)[0]


def _imported(arch: str, folder: str | os.PathLike | None = None):
    """(the ImageNet classifier, [(its weighted layer, the TFLite kernel it came from, the file), ...])."""
    from trashnet.core.keras_env import keras

    source = _source(arch)
    if source.transplant:
        raise UserError(f"{arch} has no ImageNet classifier of its own here (its weights are transplanted)",
                        "use mobilenet_v3_large_minimalistic")
    entry = models.get_architecture(arch)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name=models.INPUT_NAME)
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=models.PREPROCESS_NAME)(inputs)
    kwargs = dict(input_tensor=x, include_top=True, weights=None, classes=CLASSES, classifier_activation=None)
    if entry.name.startswith("mobilenet_v3"):
        kwargs["include_preprocessing"] = False
    net = entry.builder(**kwargs)
    files = [source_path(name, folder) for name in source.files]
    kernels = [(k, path) for path in files for k in read_kernels(path)]
    pairs = load_kernels(net, [k for k, _ in kernels])
    return (keras.Model(inputs, net.output, name=f"{arch}_imagenet"),
            [(layer, kernel, path) for (layer, kernel), (_, path) in zip(pairs, kernels)])


def last_point(arch: str, *, folder: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(kernel [in, out], bias [out]) of the ImageNet head's "last point" 1x1 conv (Keras' ``Conv_2``: 960 ->
    1280 for V3-Large, 576 -> 1024 for V3-Small), the op before the logits, dequantized, for a Dense layer
    (``models.build_model(..., head="last_point", last_point=...)``).

    The full V3-Large takes the minimalistic net's (its source file), as its backbone does.
    """
    if not arch.startswith("mobilenet_v3"):
        raise UserError(f"{arch} has no last-point layer in its ImageNet head", "use a MobileNetV3")
    (name,) = _source(arch).files
    kernel = read_kernels(source_path(name, folder))[-2]  # ..., Conv_1, Conv_2 (last point), Logits
    if kernel.op != "CONV_2D" or kernel.kernel.shape[1:3] != (1, 1) or kernel.bias is None:
        raise ValueError(f"{name}: expected a biased 1x1 CONV_2D before the logits, got {kernel.op} "
                         f"{kernel.kernel.shape}")
    return kernel.kernel[:, 0, 0, :].T.copy(), kernel.bias.astype(np.float32)


def _copy_by_name(source_model, target_model) -> None:
    """Fill every weighted layer of ``target_model`` from the same-named layer of ``source_model``."""
    for layer in target_model.layers:
        if layer.weights:
            layer.set_weights(source_model.get_layer(layer.name).get_weights())


def backbone(arch: str, *, image_size: int = IMAGE_SIZE):
    """An empty no-top backbone exactly as ``models.build_model`` builds it (so its .h5 loads there)."""
    from trashnet.core.keras_env import keras

    inputs = keras.Input((image_size, image_size, 3))
    return models.get_architecture(arch).backbone(inputs, alpha=1.0, weights=None)


def transplant_v3_large(minimalistic, full) -> dict[str, int]:
    """Fill the full V3-Large backbone ``full`` from the minimalistic one's weights.

    Same name and shape: copied. 3x3 depthwise kernels: centred in the 5x5 ones (zeros around; with Keras'
    padding the centre tap reads the same pixel). Squeeze-excite (absent from the minimalistic net): the
    reducing conv keeps Keras' random init, the expanding conv gets kernel 0 and bias ``SE_GATE_BIAS``, so
    the gate is a constant 0.99, and the projection conv after it is scaled by 1 / 0.99: the block computes
    what the minimalistic block computed, except that hard-swish replaces ReLU where the full net has it.
    Returns counts: copied, centred, squeeze_excite, and the minimalistic tensors left unused (0 expected).
    """
    from trashnet.core.keras_env import keras

    counts = {"copied": 0, "centred": 0, "squeeze_excite": 0, "unused": 0}
    used = set()
    for layer in full.layers:
        if not layer.weights:
            continue
        if "squeeze_excite" in layer.name:
            if layer.name.endswith("squeeze_excite/Conv_1"):
                kernel, bias = layer.get_weights()
                layer.set_weights([np.zeros_like(kernel), np.full_like(bias, SE_GATE_BIAS)])
            counts["squeeze_excite"] += 1
            continue
        source = minimalistic.get_layer(layer.name)
        used.add(layer.name)
        values = source.get_weights()
        if isinstance(layer, keras.layers.DepthwiseConv2D) and layer.kernel_size != source.kernel_size:
            big = np.zeros(layer.depthwise_kernel.shape, np.float32)
            (kh, kw), (sh, sw) = layer.kernel_size, source.kernel_size
            top, left = (kh - sh) // 2, (kw - sw) // 2
            big[top:top + sh, left:left + sw] = values[0]
            values = [big] + values[1:]
            counts["centred"] += 1
        else:
            counts["copied"] += 1
        if layer.name.endswith("/project") and any(l.name.startswith(layer.name.rsplit("/", 1)[0] + "/squeeze")
                                                   for l in full.layers):
            gate = min(max(SE_GATE_BIAS + 3.0, 0.0), 6.0) / 6.0
            values = [values[0] / gate] + values[1:]
        layer.set_weights(values)
    counts["unused"] = sum(1 for layer in minimalistic.layers if layer.weights and layer.name not in used)
    return counts


def transplanted_v3_large(folder: str | os.PathLike | None = None):
    """(the imported minimalistic backbone, the full V3-Large backbone filled from it, the transplant's counts)."""
    donor = backbone("mobilenet_v3_large_minimalistic")
    _copy_by_name(classifier("mobilenet_v3_large_minimalistic", folder=folder), donor)
    full = backbone("mobilenet_v3_large")
    return donor, full, transplant_v3_large(donor, full)


def _cache_path(arch: str) -> Path:
    key = fileio.sha256_bytes("".join(
        [FILES[name].sha256 for name in _source(arch).files] + [fileio.sha256_file(__file__)]).encode())[:16]
    return settings.default_output_root() / ".cache" / "imagenet" / f"{arch}-{key}.h5"


def weights_file(arch: str, *, folder: str | os.PathLike | None = None) -> Path:
    """The ``.h5`` backbone weights of ``arch`` imported from its TFLite file(s), built once and cached.

    Building it re-seeds the random generators (seed 0: the transplant's squeeze-excite init is random), so
    call it before seeding a run (``train.run_baseline`` does): a cold and a warm cache then train alike.
    """
    from trashnet.core.keras_env import seed_everything

    source = _source(arch)
    check_available(arch, folder)  # present and pinned, even when the import is cached
    path = _cache_path(arch)
    if path.is_file():
        return path
    seed_everything(0)
    if source.transplant:
        _, target, counts = transplanted_v3_large(folder)
        if counts["unused"]:
            raise ValueError(f"transplant left {counts['unused']} minimalistic tensors unused")
    else:
        target = backbone(arch)
        _copy_by_name(classifier(arch, folder=folder), target)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.h5")
    try:
        target.save_weights(str(temp))
        fileio.replace_file(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


# --- config values -------------------------------------------------------------------------------

def resolve_weights(weights: str, arch: str | None = None) -> str | None:
    """``none`` -> None, ``imagenet`` stays, ``imagenet-tflite`` -> the imported weights file of ``arch``
    (built once, cached), anything else must be an existing weights file."""
    if weights == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    if weights == WEIGHTS_VALUE:
        if arch is None:
            raise ValueError(f"weights {WEIGHTS_VALUE!r} need the architecture")
        return str(weights_file(arch))
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ValueError(f"weights {weights!r}: expected 'none', 'imagenet', {WEIGHTS_VALUE!r} or the path of "
                         f"an existing weights file")
    return str(path)


def head_weights(weights: str, arch: str, head: str) -> tuple[np.ndarray, np.ndarray] | None:
    """What ``models.build_model(last_point=...)`` takes for a config's weights and head: the TFLite file's
    last-point layer for ``imagenet-tflite`` with ``head: last_point``, else None (Keras' init)."""
    if head == "last_point" and weights == WEIGHTS_VALUE:
        return last_point(arch)
    return None


def weights_origin(weights: str, arch: str | None = None) -> str:
    """What a result says it started from: ``none``, ``imagenet``, ``imagenet-tflite:<file>@sha256:<hash>
    (dequantized from uint8)`` or ``file:<name>@sha256:<hash>``."""
    if weights == WEIGHTS_VALUE and arch is not None:
        return provenance(arch)
    resolved = resolve_weights(weights, arch)
    if resolved in (None, "imagenet"):
        return weights
    digest = fileio.sha256_file(resolved)[:16]  # checks the type first: a named pipe would block a read
    return f"file:{Path(resolved).name}@sha256:{digest}"
