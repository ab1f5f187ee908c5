"""Waste-image classification on TrashNet: small MobileNets, pruned and quantized for deployment.

Importing the package is cheap and never imports TensorFlow (the deployment path, ``trashnet.deploy.predict``,
needs only ai-edge-litert, NumPy and Pillow). Modules that need TensorFlow import it through
``trashnet.core.keras_env``, which selects Keras 2 first.
"""

__version__ = "0.2.0"
