"""Classify photos with this release of the TrashNet model. Needs only ai-edge-litert, NumPy and Pillow.

    pip install ai-edge-litert numpy pillow
    python predict_example.py photo.jpg [more.jpg ...]

or from Python (a Streamlit app, a script)::

    from predict_example import Classifier
    classifier = Classifier()  # the trashnet.tflite and labels.txt beside this file
    classifier.classify(PIL.Image.open("photo.jpg"), top_k=3)  # [("plastic", 0.91), ...]

The photo is prepared as the model was trained: EXIF orientation applied, RGB (transparency onto white),
the whole frame squashed to the model's square input (bilinear, no crop), raw 0-255 values (the model
rescales itself; its TFLite metadata says mean 0, std 1).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent


class Classifier:
    def __init__(self, folder: str | Path = HERE, model: str = "trashnet.tflite", labels: str = "labels.txt"):
        folder = Path(folder)
        self.labels = [line.strip() for line in (folder / labels).read_text(encoding="utf-8").splitlines()
                       if line.strip()]
        self.interpreter = Interpreter(model_path=str(folder / model))
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.size = int(self.input["shape"][1])
        if np.dtype(self.input["dtype"]) != np.float32:
            raise ValueError(f"this example feeds float32 pixels; {model} takes {np.dtype(self.input['dtype'])}")

    def prepare(self, image: Image.Image) -> np.ndarray:
        if image.format == "JPEG":  # let libjpeg scale down while decoding, never below the input size
            image.draft("RGB", (self.size, self.size))
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        image = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.float32)[None]

    def classify(self, image: Image.Image, top_k: int = 3) -> list[tuple[str, float]]:
        self.interpreter.set_tensor(self.input["index"], self.prepare(image).astype(self.input["dtype"]))
        self.interpreter.invoke()
        probabilities = self.interpreter.get_tensor(self.output["index"])[0].astype(np.float64)
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        return [(self.labels[i], float(probabilities[i])) for i in order]


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    classifier = Classifier()
    failed = 0
    for path in paths:
        try:
            with Image.open(path) as image:
                result = classifier.classify(image)
        except OSError as error:
            print(f"{path}: cannot read the image ({error})", file=sys.stderr)
            failed += 1
            continue
        print("  ".join(f"{label} {100 * p:5.1f}%" for label, p in result) + f"  {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
