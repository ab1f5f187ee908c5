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
starts it from the minimalistic V3-Large's weights (``transplant_v3_large``). The faithfulness checks at the end
(``layer_cosines``, ``end_to_end``) compare an import with its TFLite file (tests, benchmarks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from trashnet import fileio, settings
from trashnet.errors import UserError

WEIGHTS_VALUE = "imagenet-tflite"  # the model.weights value that asks for these weights
LABELS_FILE = "imagenet_labels.txt"  # 1001 lines, "background" first
IMAGE_SIZE = 224  # every file's input side
CORAL = "https://github.com/google-coral/test_data/raw/104342d2d3480b3e66203073dac24f4e2dbb4c41/"
V3_CHECKPOINTS = "https://storage.googleapis.com/mobilenet_v3/checkpoints/"
# The squeeze-excite gate of a transplanted V3-Large: hard_sigmoid(z) = relu6(z + 3) / 6 is exactly 1 only at
# z >= 3, where its gradient is 0 (the gate could never learn). A bias just inside the linear part keeps the
# gradient; the projection after it is scaled by 1 / gate, so the block still computes what it computed.
SE_GATE_BIAS = 2.94  # gate 0.99


class WeightsFile(BaseModel):
    """One pinned third-party file: where it comes from and what its bytes must hash to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    sha256: str
    bytes: int
    url: str  # the publisher's URL (a tar.gz archive when member is set)
    member: str | None = None  # the file's path inside that archive
    quantized: str  # what the weights were stored as, for the provenance line


FILES: dict[str, WeightsFile] = {f.name: f for f in (
    WeightsFile(name="mobilenet_v1_1.0_224_quant_embedding_extractor.tflite", bytes=3251736,
                sha256="f409ef4f73fcbb9667841965623c5c8524aac33d41b9bf5f3667161fb4a76319",
                url=CORAL + "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite", quantized="uint8"),
    WeightsFile(name="mobilenet_quant_v1_224_head_layers.tflite", bytes=1030768,
                sha256="65a88984b258c6f3c99d7573acac8cf85bd747293d83d51fafc1c2fb6d632286",
                url=CORAL + "tools/mobilenet_quant_v1_224_head_layers.tflite", quantized="uint8"),
    WeightsFile(name="tf2_mobilenet_v2_1.0_224_ptq.tflite", bytes=4070174,
                sha256="5d3137241276e79c86d14a74fe43581398ae0e815191d3dba45495b810840e8c",
                url=CORAL + "tf2_mobilenet_v2_1.0_224_ptq.tflite", quantized="int8 per channel"),
    WeightsFile(name="v3-small_224_1.0_uint8.tflite", bytes=2621808,
                sha256="da341cf06fa50127a72dcbeb140ee5ee98013630aa044260a4c3d45c43fc89ce",
                url=V3_CHECKPOINTS + "v3-small_224_1.0_uint8.tgz",
                member="v3-small_224_1.0_uint8/v3-small_224_1.0_uint8.tflite", quantized="uint8"),
    WeightsFile(name="v3-large-minimalistic_224_1.0_uint8.tflite", bytes=3988616,
                sha256="62307453547ae5871dbb07b5be79c05c253fafeddeedccf9905b2c98f184749b",
                url=V3_CHECKPOINTS + "v3-large-minimalistic_224_1.0_uint8.tgz",
                member="v3-large-minimalistic_224_1.0_uint8/v3-large-minimalistic_224_1.0_uint8.tflite",
                quantized="uint8"),
    WeightsFile(name=LABELS_FILE, bytes=21686,
                sha256="b8aaeb5630c62626a7d124a05c0e14230a7ffdd2136a31d0190a4fb71c1d82f1",
                url=CORAL + LABELS_FILE, quantized="-"),
)}


# The three test photos of the faithfulness test (tests/test_imagenet.py), from the same repository.
PHOTOS: dict[str, WeightsFile] = {f.name: f for f in (
    WeightsFile(name="photos/cat_720p.jpg", bytes=104837, url=CORAL + "cat_720p.jpg", quantized="-",
                sha256="cfb1dbdf64b30de79104a47555ff8e9f12737a12c2128ecd0e7f38531a8c13ce"),
    WeightsFile(name="photos/parrot.jpg", bytes=596977, url=CORAL + "parrot.jpg", quantized="-",
                sha256="a8fba9e7e29439fa414c13129aad661f2289ff891231920a7c33641b076f1833"),
    WeightsFile(name="photos/hot_dog.jpg", bytes=200930, url=CORAL + "hot_dog.jpg", quantized="-",
                sha256="ed6952e022eb71c0d0b1ff068dcee3abed056dfa1852f041c35f138c4ff15b2e"),
)}


@dataclass(frozen=True)
class Source:
    """Which files an architecture's ImageNet weights come from, in op order (V1: backbone, then classifier)."""

    files: tuple[str, ...]
    transplant: bool = False  # the full V3-Large, started from the minimalistic one


SOURCES: dict[str, Source] = {
    "mobilenet_v1": Source(("mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
                            "mobilenet_quant_v1_224_head_layers.tflite")),
    "mobilenet_v2": Source(("tf2_mobilenet_v2_1.0_224_ptq.tflite",)),
    "mobilenet_v3_small": Source(("v3-small_224_1.0_uint8.tflite",)),
    "mobilenet_v3_large_minimalistic": Source(("v3-large-minimalistic_224_1.0_uint8.tflite",)),
    "mobilenet_v3_large": Source(("v3-large-minimalistic_224_1.0_uint8.tflite",), transplant=True),
}
CLASSES = 1001  # every file's output: index 0 = background, then ImageNet's 1000 in labels-file order
GET_WEIGHTS = (f"run `python -m trashnet download --weights --out DIR` (or copy the files) and set "
               f"{settings.ENV_WEIGHTS}=DIR")


# --- files -----------------------------------------------------------------------------------------

def weights_folder() -> Path:
    """``$TRASHNET_WEIGHTS``, the folder of the pinned files; a one-line error when unset or missing."""
    value = os.environ.get(settings.ENV_WEIGHTS)
    if not value:
        raise UserError(f"ImageNet TFLite weights needed but ${settings.ENV_WEIGHTS} is not set", GET_WEIGHTS)
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise UserError(f"${settings.ENV_WEIGHTS}={value} is not a folder", GET_WEIGHTS)
    return folder


def checked(path: str | os.PathLike) -> Path:
    """``path`` if its bytes are one of the pinned files; any other file is refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ImageNet weights file {path} is missing", GET_WEIGHTS)
    digest = fileio.sha256_file(path)
    known = {f.sha256: f for f in FILES.values()}
    if digest not in known:
        raise UserError(f"{path} (sha256 {digest[:16]}...) is not one of the pinned ImageNet TFLite files; "
                        f"refused", f"use Google's official files (docs/imagenet.md): {GET_WEIGHTS}")
    if known[digest].name != path.name:
        raise UserError(f"{path} holds the bytes of {known[digest].name}, not of {path.name}",
                        "rename it or fetch the files again")
    return path


def source_path(name: str, folder: str | os.PathLike | None = None) -> Path:
    """The checked path of the pinned file ``name`` in ``folder`` (default ``$TRASHNET_WEIGHTS``)."""
    if name not in FILES:
        raise ValueError(f"unknown ImageNet weights file {name!r}; known: {', '.join(FILES)}")
    return checked(Path(folder if folder is not None else weights_folder()) / name)


def check_available(arch: str, folder: str | os.PathLike | None = None) -> list[Path]:
    """The checked files ``arch`` needs; a one-line ``UserError`` when one is missing or not pinned."""
    return [source_path(name, folder) for name in _source(arch).files]


def provenance(arch: str) -> str:
    """What a result says it started from: the file(s), their sha256, how they were stored."""
    source = _source(arch)
    parts = [f"{name}@sha256:{FILES[name].sha256} (dequantized from {FILES[name].quantized})"
             for name in source.files]
    text = f"{WEIGHTS_VALUE}:" + " + ".join(parts)
    if source.transplant:
        text += " transplanted into the full V3-Large (squeeze-excite pass-through, 3x3 depthwise centred in 5x5)"
    return text


def labels(folder: str | os.PathLike | None = None) -> list[str]:
    return fileio.read_text(source_path(LABELS_FILE, folder)).splitlines()


def _source(arch: str) -> Source:
    if arch not in SOURCES:
        raise UserError(f"no ImageNet TFLite weights for {arch!r}", f"use one of {', '.join(SOURCES)}")
    return SOURCES[arch]


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
    from trashnet.keras_env import keras

    return [layer for layer in model.layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense))]


def following_batchnorm(layer):
    """The BatchNormalization that takes ``layer``'s output, or None."""
    from trashnet.keras_env import keras

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
    from trashnet import models
    from trashnet.keras_env import keras

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


def _copy_by_name(source_model, target_model) -> None:
    """Fill every weighted layer of ``target_model`` from the same-named layer of ``source_model``."""
    for layer in target_model.layers:
        if layer.weights:
            layer.set_weights(source_model.get_layer(layer.name).get_weights())


def backbone(arch: str, *, image_size: int = IMAGE_SIZE):
    """An empty no-top backbone exactly as ``models.build_model`` builds it (so its .h5 loads there)."""
    from trashnet import models
    from trashnet.keras_env import keras

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
    from trashnet.keras_env import keras

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
    from trashnet.keras_env import seed_everything

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


# --- faithfulness: the imported model against the TFLite file ---------------------------------------

def photo(path: str | os.PathLike, size: int = IMAGE_SIZE) -> np.ndarray:
    """A photo as the files take it: RGB uint8, squashed to ``size`` x ``size`` (Pillow bilinear)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), np.uint8)


def _interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True, num_threads=1)
    interpreter.allocate_tensors()
    return interpreter, {d["index"]: d for d in interpreter.get_tensor_details()}


def _float(interpreter, details: dict, index: int) -> np.ndarray:
    q = details[index]["quantization_parameters"]
    raw = interpreter.get_tensor(index)
    if not len(q["scales"]):
        return raw.astype(np.float32)
    return (q["scales"][0] * (raw.astype(np.float32) - q["zero_points"][0])).astype(np.float32)


def _representable(details: dict, index: int) -> tuple[float, float]:
    """The float range a quantized tensor can hold: TFLite saturates to it (an implicit ReLU/ReLU6)."""
    info = np.iinfo(details[index]["dtype"])
    q = details[index]["quantization_parameters"]
    scale, zero = q["scales"][0], q["zero_points"][0]
    return scale * (info.min - zero), scale * (info.max - zero)


def _block(layer, x):
    """``layer`` with what TFLite fuses into its op: padding before, BatchNorm and a ReLU after."""
    from trashnet.keras_env import keras

    inbound = layer._inbound_nodes[0].inbound_layers
    if isinstance(inbound, keras.layers.ZeroPadding2D) and x.shape[1:3] != tuple(layer.input_shape[1:3]):
        x = inbound(x)
    if isinstance(layer, keras.layers.Dense):
        x = x.reshape(len(x), -1)
    y, last = layer(x), layer
    norm = following_batchnorm(layer)
    if norm is not None:
        y, last = norm(y, training=False), norm
    nodes = last._outbound_nodes
    if len(nodes) == 1 and isinstance(nodes[0].outbound_layer, keras.layers.ReLU):
        y = nodes[0].outbound_layer(y)
    return np.asarray(y)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two batches, flattened."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def _invoke(runs: list, image: np.ndarray) -> None:
    """Run the file chain (``[(interpreter, details), ...]``) on one uint8 photo."""
    x = image[None]
    for interpreter, _ in runs:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        x = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])  # the next file's input


def layer_cosines(arch: str, images: np.ndarray, *, folder: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Per weighted layer: cosine between the TFLite op's output and the imported Keras block fed the TFLite
    op's own (dequantized) input, one value per image. The Keras output is clipped to the range the TFLite
    output tensor can hold, as the quantized op saturates there."""
    model, pairs = _imported(arch, folder)
    files = list(dict.fromkeys(path for _, _, path in pairs))
    runs = [_interpreter(path) for path in files]
    by_file = dict(zip(files, runs))
    inputs: dict[str, list] = {layer.name: [] for layer, _, _ in pairs}
    outputs: dict[str, list] = {layer.name: [] for layer, _, _ in pairs}
    for image in images:
        _invoke(runs, image)
        for layer, kernel, path in pairs:
            interpreter, details = by_file[path]
            inputs[layer.name].append(_float(interpreter, details, kernel.input_tensor)[0])
            low, high = _representable(details, kernel.output_tensor)
            outputs[layer.name].append((_float(interpreter, details, kernel.output_tensor)[0], low, high))
    cosines = {}
    for layer, _, _ in pairs:
        expected = np.stack([y for y, _, _ in outputs[layer.name]])
        _, low, high = outputs[layer.name][0]
        got = np.clip(_block(layer, np.stack(inputs[layer.name])), low, high)
        cosines[layer.name] = _cosine(got, expected)
    return cosines


@dataclass(frozen=True)
class EndToEnd:
    """The imported Keras model and the TFLite file(s) on the same photos."""

    feature_cosine: np.ndarray  # per photo: the classifier's input features (pooled, penultimate)
    keras_top5: np.ndarray  # [n, 5] class indices, best first
    tflite_top1: np.ndarray  # [n]


def end_to_end(arch: str, images: np.ndarray, *, folder: str | os.PathLike | None = None,
               batch_size: int = 32) -> EndToEnd:
    from trashnet.keras_env import keras

    model, pairs = _imported(arch, folder)
    last_layer, last_kernel, _ = pairs[-1]
    files = list(dict.fromkeys(path for _, _, path in pairs))
    probe = keras.Model(model.input, [last_layer.input, model.output])
    features, logits = probe.predict(images.astype(np.float32), batch_size=batch_size, verbose=0)
    runs = [_interpreter(path) for path in files]
    interpreter, details = runs[-1]
    tflite_features, tflite_top1 = [], []
    for image in images:
        _invoke(runs, image)
        tflite_features.append(_float(interpreter, details, last_kernel.input_tensor).reshape(-1))
        scores = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).reshape(-1)
        tflite_top1.append(int(np.argmax(scores)))
    return EndToEnd(feature_cosine=_cosine(features, np.stack(tflite_features)),
                    keras_top5=np.argsort(-logits.reshape(len(images), -1), axis=1)[:, :5],
                    tflite_top1=np.asarray(tflite_top1))
