"""The one place that chooses the Keras flavour and seeds every random generator.

tfmot only understands Keras 2 objects, so the project uses ``tf_keras`` and sets
``TF_USE_LEGACY_KERAS=1`` before TensorFlow is first imported (docs/toolchain-facts.md; tfmot issue #1119).
Import TensorFlow through this module, never directly::

    from trashnet.core.keras_env import tf, keras
"""

from __future__ import annotations

import os
import random

from trashnet.core.settings import gpu_present

# Must happen before the first `import tensorflow` anywhere in the process.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
# Level 2 drops TensorFlow's C++ INFO and WARNING lines. Without a GPU, XLA's CUDA probe also logs an ERROR,
# "failed call to cuInit: ... (303)", that only says there is no GPU: level 3 drops C++ ERROR lines too
# (real failures still reach Python as exceptions). The few lines printed while the library loads, before
# absl logging starts, ignore every level: the runner filters them (worker._NOISE).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if gpu_present() else "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

if not keras.__version__.startswith("2."):  # pragma: no cover - guards a broken environment
    raise ImportError(f"tf_keras {keras.__version__} is not Keras 2; tfmot needs Keras 2")


def seed_everything(seed: int, *, deterministic_ops: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow from one integer.

    ``deterministic_ops`` makes TensorFlow pick deterministic kernels: bit-identical reruns at some
    speed cost (used by tests; training on the full data leaves it off).
    """
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


__all__ = ["tf", "keras", "seed_everything"]
