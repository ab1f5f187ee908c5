"""The catalogue of Google's ImageNet MobileNets as official TFLite files: which files, their pinned sha256,
where they come from, and where this machine keeps them (``$TRASHNET_WEIGHTS``).

Pure data and file checks (no TensorFlow): ``download --weights`` fetches what is listed here, and
``trashnet.nets.imagenet`` imports the weights of the files it finds (docs/imagenet.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from trashnet.core import fileio, settings
from trashnet.core.errors import UserError

WEIGHTS_VALUE = "imagenet-tflite"  # the model.weights value that asks for these weights
LABELS_FILE = "imagenet_labels.txt"  # 1001 lines, "background" first
IMAGE_SIZE = 224  # every file's input side
CORAL = "https://github.com/google-coral/test_data/raw/104342d2d3480b3e66203073dac24f4e2dbb4c41/"
V3_CHECKPOINTS = "https://storage.googleapis.com/mobilenet_v3/checkpoints/"


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
