"""The appendix's "Initial weights" cell in the report's language: ``imagenet_files.provenance``'s English line
(what every ImageNet-started result records in ``metrics.json``) read back into parts and said as a message.

The parsing lives here, not beside the writer, so that the training stages' code (and so their cache keys)
does not change for a report's wording; ``tests/test_report_i18n.py`` reads back every line the writer makes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trashnet.data.imagenet_files import WEIGHTS_VALUE
from trashnet.report.i18n import N_
from trashnet.report.items import Message

TRANSPLANTED = " transplanted into the full V3-Large (squeeze-excite pass-through, 3x3 depthwise centred in 5x5)"
_PART = re.compile(r"(?P<name>[^@ ]+)@sha256:(?P<sha256>[0-9a-f]{64}) \(dequantized from (?P<stored>[^)]+)\)")
STORED = (N_("int8 per channel"),)  # imagenet_files' "quantized" values that are words: translated in the cell


@dataclass(frozen=True)
class StartingPoint:
    files: tuple[tuple[str, str], ...]  # (file name, sha256)
    stored: str  # what the weights were stored as ("uint8", "int8 per channel")
    transplanted: bool


def read_provenance(text: str) -> StartingPoint | None:
    """``imagenet_files.provenance``'s line as parts; None for any other ``weights`` value ("random", ...)."""
    body = text.removeprefix(f"{WEIGHTS_VALUE}:")
    transplanted = body.endswith(TRANSPLANTED)
    body = body.removesuffix(TRANSPLANTED)
    matches = [_PART.fullmatch(part) for part in body.split(" + ")]
    if body == text or not all(matches):
        return None
    return StartingPoint(files=tuple((m["name"], m["sha256"]) for m in matches),
                         stored=", ".join(dict.fromkeys(m["stored"] for m in matches)), transplanted=transplanted)


def weights_cell(origin: str, ids: list[str]) -> str | Message:
    """What the variants ``ids`` started from (file names and hashes as they are), or ``origin`` as it is."""
    start = read_provenance(origin)
    if start is None:
        return f"{origin}: {', '.join(ids)}"
    files = " + ".join(f"{name} (sha256 {sha256[:12]}…)" for name, sha256 in start.files)
    msgid = (N_("Google's ImageNet TFLite file %(files)s, stored as %(stored)s and dequantized, transplanted into "
                "the full MobileNetV3-Large (squeeze-excite blocks pass their input through, 3x3 depthwise kernels "
                "centred in 5x5): %(ids)s") if start.transplanted else
             N_("Google's ImageNet TFLite file %(files)s, stored as %(stored)s and dequantized: %(ids)s"))
    return Message(msgid, {"files": files, "stored": start.stored, "ids": ", ".join(ids)})
