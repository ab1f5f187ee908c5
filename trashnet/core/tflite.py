"""One .tflite file in the LiteRT interpreter: run it on images, time it, count its ops. NumPy and ai-edge-litert only.

This is the deployment path's engine (``trashnet.deploy.predict``, ``evaluate`` and the TensorFlow-free check use
it), so it must never import TensorFlow, scikit-learn or anything beyond NumPy and the standard library.
Inputs are images as the Keras models take them: (N, H, W, 3) in [0, 255]; quantized inputs and
outputs are converted with the tensors' own scale and zero point. Opening a model for classification, with
its labels and preprocessing, is ``trashnet.core.litert.load``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType


class TFLiteModel:
    """One .tflite classifier: ``predict`` images -> class probabilities (float32)."""

    def __init__(self, model: str | os.PathLike | bytes, *, num_threads: int | None = None,
                 use_xnnpack: bool = True):
        content = model if isinstance(model, bytes) else Path(model).read_bytes()
        self.content = content
        resolver = (OpResolverType.AUTO if use_xnnpack
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interpreter = Interpreter(model_content=content, num_threads=num_threads,
                                       experimental_op_resolver_type=resolver)
        self.interpreter.allocate_tensors()
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"expected one input and one output tensor, got {len(inputs)} and {len(outputs)}")
        self.input, self.output = inputs[0], outputs[0]
        shape = self.input["shape"]
        if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2]:
            raise ValueError(f"expected a square RGB image input (1, S, S, 3), got shape {shape.tolist()}")
        self._batch = int(shape[0])
        # Files converted with a free batch dimension (-1) can run several images per invocation.
        self.batchable = int(self.input.get("shape_signature", shape)[0]) == -1
        # (mean, std) of the input's TFLite NormalizationOptions, applied to [0, 255] pixels; None = raw pixels.
        self.normalization: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def image_size(self) -> int:
        return int(self.input["shape"][1])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self.input["dtype"])

    @property
    def num_classes(self) -> int:
        return int(self.output["shape"][-1])

    def _quantize_input(self, images: np.ndarray) -> np.ndarray:
        x = images.astype(np.float32)
        if self.normalization is not None:
            x = (x - self.normalization[0]) / self.normalization[1]
        dtype = self.input_dtype
        if np.issubdtype(dtype, np.integer):
            scale, zero_point = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero_point), info.min, info.max)
        return x.astype(dtype)

    def _dequantize_output(self, raw: np.ndarray) -> np.ndarray:
        if np.issubdtype(raw.dtype, np.integer):
            scale, zero_point = self.output["quantization"]
            return (raw.astype(np.float32) - zero_point) * scale
        return raw.astype(np.float32)

    def _set_batch(self, batch: int) -> None:
        if batch != self._batch:
            size = self.image_size
            self.interpreter.resize_tensor_input(self.input["index"], [batch, size, size, 3], strict=True)
            self.interpreter.allocate_tensors()
            self._batch = batch

    def _run(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) in [0, 255] -> (B, num_classes): one invocation at the current batch size."""
        self.interpreter.set_tensor(self.input["index"], self._quantize_input(images))
        self.interpreter.invoke()
        return self._dequantize_output(self.interpreter.get_tensor(self.output["index"]))

    def _check_shape(self, images: np.ndarray) -> None:
        expected = (self.image_size, self.image_size, 3)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"expected images of shape (N, {', '.join(map(str, expected))}), "
                             f"got {images.shape}")

    def predict_one(self, image: np.ndarray) -> np.ndarray:
        """One (H, W, 3) image in [0, 255] -> probabilities (num_classes,)."""
        image = np.asarray(image)
        self._check_shape(image[None])
        self._set_batch(1)
        return self._run(image[None])[0]

    def predict(self, images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
        """(N, H, W, 3) images in [0, 255] -> (N, num_classes) probabilities.

        ``batch_size`` images per invocation when the file has a free batch dimension (the last batch
        is padded, so the interpreter is resized at most once); otherwise one invocation per image.
        """
        images = np.asarray(images)
        if len(images) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        self._check_shape(images)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        batch = min(batch_size, len(images)) if self.batchable else 1
        self._set_batch(batch)
        results = []
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            if len(chunk) < batch:
                pad = np.zeros((batch - len(chunk), *chunk.shape[1:]), chunk.dtype)
                results.append(self._run(np.concatenate([chunk, pad]))[:len(chunk)])
            else:
                results.append(self._run(chunk))
        return np.concatenate(results)

    def latency(self, *, runs: int = 50, warmup: int = 5) -> dict[str, float]:
        """Median and p90 milliseconds of one invocation (batch 1) on a fixed random image."""
        image = np.random.default_rng(0).integers(0, 256, (1, self.image_size, self.image_size, 3))
        self._set_batch(1)
        self.interpreter.set_tensor(self.input["index"], self._quantize_input(image.astype(np.uint8)))
        for _ in range(warmup):
            self.interpreter.invoke()
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            self.interpreter.invoke()
            samples.append(time.perf_counter() - start)
        ms = np.asarray(samples) * 1000.0
        return {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)),
                "mean": float(ms.mean()), "runs": runs}


def op_census(model: str | os.PathLike | bytes) -> dict[str, object]:
    """Ops of the file itself (no delegate), by type and by output dtype, and how many stay float.

    A fully integer model still ends in float DEQUANTIZE ops at its output (and may start with a
    QUANTIZE); those are counted separately from float compute ops.
    """
    runner = TFLiteModel(model, use_xnnpack=False)
    interpreter = runner.interpreter
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    by_op: Counter[str] = Counter()
    by_op_dtype: Counter[str] = Counter()
    float_ops: Counter[str] = Counter()
    for op in interpreter._get_ops_details():  # noqa: SLF001 - the only way to list ops in LiteRT
        name = op["op_name"]
        outputs = [tensors[i]["dtype"] for i in op["outputs"] if i in tensors]
        dtype = np.dtype(outputs[0]).name if outputs else "none"
        by_op[name] += 1
        by_op_dtype[f"{name}:{dtype}"] += 1
        if dtype.startswith("float") and name not in ("DEQUANTIZE",):
            float_ops[name] += 1
    return {"total": sum(by_op.values()), "by_op": dict(sorted(by_op.items())),
            "by_op_dtype": dict(sorted(by_op_dtype.items())), "float_compute_ops": sum(float_ops.values()),
            "float_compute_by_op": dict(sorted(float_ops.items()))}


def smallest_activation_scale(model: str | os.PathLike | bytes) -> dict[str, object] | None:
    """The quantized op output with the smallest scale, read without preparing the file.

    Diagnoses ``no_integer_overflow_from_quantization``: a fused RELU6 clamps at ``6 / scale`` in int32,
    so an output calibrated to a near-zero range (scale below 6 / 2**31 ~ 2.8e-9) cannot be prepared.
    """
    content = model if isinstance(model, bytes) else Path(model).read_bytes()
    interpreter = Interpreter(model_content=content,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    best = None
    for number, op in enumerate(interpreter._get_ops_details()):  # noqa: SLF001
        for index in op["outputs"]:
            scales = tensors[index]["quantization_parameters"]["scales"] if index in tensors else []
            if len(scales) and (best is None or float(scales.min()) < best["scale"]):
                best = {"scale": float(scales.min()), "op": op["op_name"], "node": number,
                        "tensor": tensors[index]["name"]}
    return best


def predict_parallel(model: str | os.PathLike | bytes, images: np.ndarray, *, workers: int = 2,
                     num_threads: int = 1, batch_size: int = 32) -> np.ndarray:
    """``TFLiteModel.predict`` split over ``workers`` interpreters in threads (``invoke`` releases the GIL).

    For kernels that use one core whatever ``num_threads`` says (the 16x8 reference kernels, which
    XNNPack does not take): two interpreters keep two cores busy. Results are in input order.
    """
    from concurrent.futures import ThreadPoolExecutor

    images = np.asarray(images)
    workers = max(1, min(workers, len(images)))
    runners = [TFLiteModel(model, num_threads=num_threads) for _ in range(workers)]
    if workers == 1:
        return runners[0].predict(images, batch_size=batch_size)
    chunks = np.array_split(images, workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(lambda pair: pair[0].predict(pair[1], batch_size=batch_size), zip(runners, chunks)))
    return np.concatenate(parts)
