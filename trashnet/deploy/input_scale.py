"""What the final artifact says about a model with ``model.input_scale`` K > 1 (docs/deployment-parity.md,
lever 3): its real input is K x the network's size, and its first layer averages K x K blocks. Said in the
model card and the TFLite metadata, so that an app does not shrink the photo to the network's size itself."""

from __future__ import annotations

from typing import Any

from trashnet.core.tflite import TFLiteModel

INPUT_SCALE_TEXT = (" The file's first layer averages {scale}x{scale} pixel blocks, so the network inside sees "
                    "{network} px: hand it the {size} px image (an app's resizer then reduces the photo less and "
                    "agrees with predict more often), not a {network} px one.")
INPUT_DESCRIPTION = "Input image to be classified: the whole photo resized to {size}x{size} px, RGB, 0-255."


def record_scale(record: dict[str, Any]) -> int:
    """K of a metrics record (``input_scale`` is written only when > 1)."""
    return int(record.get("input_scale") or 1)


def scale_text(size: int, scale: int) -> str:
    """The model card's addition to its preprocessing text: empty for K = 1."""
    return INPUT_SCALE_TEXT.format(scale=scale, network=size // scale, size=size) if scale > 1 else ""


def input_description(model: bytes, record: dict[str, Any]) -> str | None:
    """The metadata's input text for a model with ``input_scale`` > 1 (its real input size, and why); else None
    (tflite-support's default text)."""
    scale = record_scale(record)
    if scale == 1:
        return None
    size = TFLiteModel(model).image_size
    return INPUT_DESCRIPTION.format(size=size) + scale_text(size, scale)
