"""Reference Streamlit page for the TrashNet model: upload a photo, see the top 3 classes. Copy it as it is.

    TRASHNET_BUNDLE=trashnet-<version>.zip streamlit run streamlit_app.py

Needs only Streamlit, ai-edge-litert, NumPy and Pillow (requirements-streamlit.lock). It reads the release bundle
that ``python -m trashnet release`` writes, checks every file against the bundle's ``SHA256SUMS`` before using
any of them, and prepares each photo exactly as the project's ``predict`` does (the model card's Pillow lines:
JPEG draft decoding, EXIF orientation, RGB, the whole photo squashed to the square input with Pillow's bilinear
filter, float 0-255). Any other resize (MediaPipe's, OpenCV's, tf.image's) changes the answer on a share of
photos: docs/deployment-parity.md in the project.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import streamlit as st
from ai_edge_litert.interpreter import Interpreter
from PIL import Image, ImageOps, UnidentifiedImageError

BUNDLE = os.environ.get("TRASHNET_BUNDLE", str(Path(__file__).with_name("trashnet.zip")))
TOP_K = 3
PHOTO_TYPES = ["jpg", "jpeg", "png", "webp", "bmp"]


class BundleError(ValueError):
    """The bundle cannot be used; the message says what is wrong and what to do."""


@dataclass
class Model:
    interpreter: Interpreter
    labels: list[str]
    version: str
    size: int
    fit: str
    lock: threading.Lock  # one interpreter, shared by every browser session


def read_bundle(path: str) -> dict[str, bytes]:
    """The files of the bundle's folder, each checked against its SHA256SUMS line."""
    try:
        with zipfile.ZipFile(path) as archive:
            files = {PurePosixPath(name).name: archive.read(name) for name in archive.namelist()
                     if not name.endswith("/")}
    except (OSError, zipfile.BadZipFile) as error:
        raise BundleError(f"error: cannot read the model bundle {path} ({error}) - set TRASHNET_BUNDLE to the zip "
                          "that `python -m trashnet release` writes") from error
    if "SHA256SUMS" not in files:
        raise BundleError(f"error: {path} has no SHA256SUMS - use the release bundle, not a zip made by hand")
    listed = dict(reversed(line.split("  ", 1)) for line in files["SHA256SUMS"].decode().splitlines() if line)
    missing = sorted(set(listed) - set(files))
    bad = sorted(name for name in set(listed) & set(files) if hashlib.sha256(files[name]).hexdigest() != listed[name])
    if missing or bad or "trashnet.tflite" not in listed:
        raise BundleError(f"error: {path} fails its SHA256SUMS (missing: {missing or 'none'}, changed: "
                          f"{bad or 'none'}) - download the bundle again")
    return files


@st.cache_resource
def load(path: str) -> Model:
    files = read_bundle(path)
    card = json.loads(files["model_card.json"])
    interpreter = Interpreter(model_content=files["trashnet.tflite"])
    interpreter.allocate_tensors()
    labels = [line.strip() for line in files["labels.txt"].decode().splitlines() if line.strip()]
    size = int(interpreter.get_input_details()[0]["shape"][1])
    return Model(interpreter, labels, card["version"], size, card["input"].get("fit", "squash"), threading.Lock())


def prepare(photo: Image.Image, size: int, fit: str) -> np.ndarray:
    """The model card's Pillow lines: what `predict` feeds the model, bit for bit."""
    photo.draft("RGB", (size, size))  # JPEG: decode at 1/2, 1/4, 1/8 scale, never below the input size
    photo = ImageOps.exif_transpose(photo).convert("RGB")
    if fit == "crop":
        photo = ImageOps.fit(photo, (size, size), Image.Resampling.BILINEAR)
    elif fit == "pad":
        photo = ImageOps.pad(photo, (size, size), Image.Resampling.BILINEAR, color=(255, 255, 255))
    else:
        photo = photo.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(photo, np.float32)[None]


def classify(model: Model, pixels: np.ndarray) -> np.ndarray:
    with model.lock:
        model.interpreter.set_tensor(model.interpreter.get_input_details()[0]["index"], pixels)
        model.interpreter.invoke()
        return model.interpreter.get_tensor(model.interpreter.get_output_details()[0]["index"])[0].copy()


def main() -> None:
    st.set_page_config(page_title="TrashNet", page_icon=":recycle:")
    st.title("What kind of waste is it?")
    try:
        model = load(BUNDLE)
    except BundleError as error:
        st.error(str(error))
        st.stop()
    st.caption(f"Model trashnet {model.version} - {len(model.labels)} classes: {', '.join(model.labels)}")
    upload = st.file_uploader("A photo of one piece of waste", type=PHOTO_TYPES)
    if upload is None:
        return
    try:
        with Image.open(io.BytesIO(upload.getvalue())) as photo:
            pixels = prepare(photo, model.size, model.fit)
            shown = ImageOps.exif_transpose(photo).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as error:
        st.error(f"error: cannot read {upload.name} as an image ({error}) - upload a JPEG or PNG photo")
        return
    probabilities = classify(model, pixels)
    order = np.argsort(-probabilities, kind="stable")[:TOP_K]  # ties: lowest index first, as predict
    best = model.labels[order[0]]
    st.image(shown, caption=upload.name, width=320)
    st.markdown(f"**Top class: {best}** ({100 * probabilities[order[0]]:.1f} %)")
    st.bar_chart({"class": [model.labels[i] for i in order], "probability": [float(probabilities[i]) for i in order]},
                 x="class", y="probability", horizontal=True, sort=False)
    st.table({"class": [model.labels[i] for i in order],
              "probability": [f"{100 * probabilities[i]:.1f} %" for i in order]})


main()
