"""Sparsity that the pruning, QAT and quantization stages share: which layers tfmot prunes, the 2:4 check on
Keras kernels and on a TFLite file's int8 kernels, and a per-layer sparsity report.

It sits below the stages so that pruning, quantization-aware training and quantization all use one check
without importing one another.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trashnet.core.keras_env import keras
from trashnet.nets import scoring

M_BY_N = (2, 4)  # tfmot's (zeros, block): 2 zeros in every 4 consecutive input-channel weights
class SparsityError(ValueError):
    """A kernel that should hold the 2:4 pattern does not; the message names layers and counts."""


def tfmot_sparsity():
    import tensorflow_model_optimization as tfmot  # noqa: PLC0415 - heavy, only when pruning

    return tfmot.sparsity.keras


# --- Which layers are pruned, and why not --------------------------------------------------------

def _kernel_layer_kind(layer) -> str | None:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise"
    if isinstance(layer, keras.layers.Conv2D):
        return "conv"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    if isinstance(layer, keras.layers.BatchNormalization):
        return "batchnorm"
    return None


def skip_reason(layer, method: str) -> str | None:
    """Why ``method`` leaves ``layer`` dense, or None if it prunes it (layers without weights: None too)."""
    kind = _kernel_layer_kind(layer)
    if kind == "depthwise":
        return "depthwise: tfmot registers no prunable weight for DepthwiseConv2D"
    if kind == "batchnorm":
        return "batch normalization: scale/shift vectors, not a kernel"
    if kind not in ("conv", "dense"):
        return None
    if method == "xnnpack" and not (kind == "conv" and tuple(layer.kernel_size) == (1, 1)):
        return "xnnpack policy: only 1x1 convolutions are pruned (sparse inference skips their zeros)"
    if method == "2of4":
        in_channels = int(layer.kernel.shape[-2])
        if in_channels % M_BY_N[1]:
            return (f"stem: {in_channels} input channels cannot form 2:4 blocks of "
                    f"{M_BY_N[1]} consecutive weights")
    return None


def prunable_layer_names(model, method: str) -> list[str]:
    return [layer.name for layer in model.layers
            if _kernel_layer_kind(layer) in ("conv", "dense") and skip_reason(layer, method) is None]


def pruning_policy(method: str):
    sparsity = tfmot_sparsity()
    if method == "xnnpack":
        return sparsity.PruneForLatencyOnXNNPack()

    class KernelPolicy(sparsity.PruningPolicy):
        """Conv2D / Dense kernels that ``method`` can prune; every other layer stays unwrapped."""

        def allow_pruning(self, layer):
            return _kernel_layer_kind(layer) in ("conv", "dense") and skip_reason(layer, method) is None

        def ensure_model_supports_pruning(self, model):
            return None  # any functional model: unwrapped layers are left as they are

    return KernelPolicy()


# --- Verification ---------------------------------------------------------------------------------

def verify_2of4(kernel: np.ndarray, m_by_n: tuple[int, int] = M_BY_N) -> list[dict[str, int]]:
    """Blocks of ``n`` consecutive input-channel weights holding more than ``n - m`` non-zeros.

    ``kernel`` in TensorFlow layout, ``(h, w, in, out)`` or ``(in, out)``: blocks run along the input
    channels, as tfmot builds them and TFLite stores them. A short last block (input channels not a
    multiple of ``n``) may hold at most ``n - m`` non-zeros too. Returns one ``{row, block, nonzero}``
    per violating block (``row`` indexes the flattened other axes); empty means the pattern holds.
    """
    zeros, block = m_by_n
    kernel = np.asarray(kernel)
    if kernel.ndim not in (2, 4):
        raise ValueError(f"expected a Dense (2-D) or Conv2D (4-D) kernel, got shape {kernel.shape}")
    in_channels = kernel.shape[-2]
    rows = np.moveaxis(kernel, -2, -1).reshape(-1, in_channels)
    pad = (-in_channels) % block
    rows = np.pad(rows, [(0, 0), (0, pad)])
    counts = np.count_nonzero(rows.reshape(rows.shape[0], -1, block), axis=-1)
    bad_rows, bad_blocks = np.nonzero(counts > block - zeros)
    return [{"row": int(r), "block": int(b), "nonzero": int(counts[r, b])} for r, b in zip(bad_rows, bad_blocks)]


def check_m_by_n(model, layer_names: list[str] | None = None,
                 m_by_n: tuple[int, int] = M_BY_N) -> dict[str, int]:
    """Violations per layer (all must be 0); raises ``SparsityError`` naming every layer that fails.

    ``layer_names`` defaults to the layers 2:4 pruning applies to (``prunable_layer_names``).
    """
    names = prunable_layer_names(model, "2of4") if layer_names is None else layer_names
    if not names:
        raise SparsityError("no layer to check: the model has no 2:4-prunable Conv2D / Dense kernel")
    violations = {name: len(verify_2of4(model.get_layer(name).get_weights()[0], m_by_n)) for name in names}
    failing = {name: count for name, count in violations.items() if count}
    if failing:
        listed = ", ".join(f"{name} ({count} blocks)" for name, count in failing.items())
        raise SparsityError(f"{len(failing)} of {len(names)} layers break the {m_by_n[0]}:{m_by_n[1]} "
                            f"pattern: {listed}")
    return violations


def pruning_wrappers(model) -> list[str]:
    """Names of tfmot pruning wrappers left in a model (a stripped model has none)."""
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper  # noqa: PLC0415

    return [layer.name for layer in model.layers if isinstance(layer, pruning_wrapper.PruneLowMagnitude)]


def sparsity_report(model, method: str) -> dict[str, Any]:
    """Per layer (every Conv2D / Dense / depthwise / BN) and in total: size, non-zeros, sparsity, and for a
    layer left dense the reason. Totals: all parameters, all conv/dense kernels, and the pruned kernels."""
    layers: dict[str, dict[str, Any]] = {}
    pruned = set(prunable_layer_names(model, method))
    sums = {"kernels": [0, 0], "pruned_kernels": [0, 0]}
    for layer in model.layers:
        kind = _kernel_layer_kind(layer)
        if kind is None or not layer.get_weights():
            continue
        weight = layer.get_weights()[0]  # the kernel (BN: gamma)
        size, nonzero = int(weight.size), int(np.count_nonzero(weight))
        entry: dict[str, Any] = {"kind": kind, "shape": list(weight.shape), "weights": size, "nonzero": nonzero,
                                 "sparsity": round(1.0 - nonzero / size, 6) if size else 0.0,
                                 "pruned": layer.name in pruned}
        if layer.name not in pruned:
            entry["reason"] = skip_reason(layer, method) or "not selected"
        if kind in ("conv", "dense"):
            sums["kernels"][0] += size
            sums["kernels"][1] += nonzero
        if layer.name in pruned:
            sums["pruned_kernels"][0] += size
            sums["pruned_kernels"][1] += nonzero
        layers[layer.name] = entry
    counts = scoring.parameter_counts(model)
    total = {"params": counts["params"], "nonzero": counts["nonzero_params"],
             "sparsity": round(1.0 - counts["nonzero_params"] / counts["params"], 6)}
    for key, (size, nonzero) in sums.items():
        total[key] = {"weights": size, "nonzero": nonzero,
                      "sparsity": round(1.0 - nonzero / size, 6) if size else 0.0}
    not_pruned: dict[str, int] = {}
    for entry in layers.values():
        if not entry["pruned"]:
            reason = entry["reason"].split(":")[0]
            not_pruned[reason] = not_pruned.get(reason, 0) + 1
    return {"method": method, "layers": layers, "total": total, "pruned_layers": len(pruned),
            "not_pruned_by_reason": not_pruned}


def int8_kernels(content: bytes) -> dict[str, np.ndarray]:
    """The int8 weight tensors of a TFLite file's CONV_2D and FULLY_CONNECTED ops, in TensorFlow layout
    (``(h, w, in, out)`` / ``(in, out)``) so that ``verify_2of4`` reads them as it reads Keras kernels."""
    from trashnet.core.tflite import TFLiteModel  # noqa: PLC0415

    interpreter = TFLiteModel(content, use_xnnpack=False).interpreter
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    kernels: dict[str, np.ndarray] = {}
    for op in interpreter._get_ops_details():  # noqa: SLF001 - the only way to list ops in LiteRT
        if op["op_name"] not in ("CONV_2D", "FULLY_CONNECTED"):
            continue
        index = int(op["inputs"][1])
        if tensors[index]["dtype"] != np.int8:
            continue
        weight = interpreter.get_tensor(index)
        # TFLite stores CONV_2D as (out, h, w, in) and FULLY_CONNECTED as (out, in).
        kernels[tensors[index]["name"]] = (np.transpose(weight, (1, 2, 3, 0)) if weight.ndim == 4 else weight.T)
    return kernels


def int8_m_by_n(content: bytes) -> dict[str, Any]:
    """The 2:4 check (``verify_2of4``) on every int8 conv / dense kernel of the file whose input
    channels form blocks of 4 (the 3-channel stem cannot). Returns counts; ``violating`` lists offenders."""
    checked, violating = 0, {}
    for name, kernel in int8_kernels(content).items():
        if kernel.shape[-2] % M_BY_N[1]:
            continue
        checked += 1
        bad = verify_2of4(kernel)
        if bad:
            violating[name] = len(bad)
    return {"kernels_checked": checked, "violating": violating, "holds": bool(checked) and not violating}
