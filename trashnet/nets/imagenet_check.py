"""Faithfulness of an ImageNet import: the imported Keras model against its TFLite file, layer by layer
and end to end (tests and ``benchmarks/bench_imagenet_import.py``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trashnet.data.imagenet_files import IMAGE_SIZE
from trashnet.nets.imagenet import _imported, following_batchnorm

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
    from trashnet.core.keras_env import keras

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
    from trashnet.core.keras_env import keras

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
