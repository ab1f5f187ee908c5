"""How apps resize a whole photo (trashnet.nets.consumers), on the committed final model and the bundled sample photos.

- the model card's five Pillow lines give exactly ``predict``'s scores, for every fit;
- in MediaPipe's venv (requirements-mediapipe.lock): the emulated MediaPipe resize gives MediaPipe's own scores,
  and OpenCV's INTER_LINEAR matches ``tf.image.resize`` (both bilinear, no antialiasing) to one grey level.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from toolvenv import clean_env, tool_python

from trashnet.nets import consumers
from trashnet.core import images, litert, settings
from trashnet.deploy import predict

# The from-scratch reference until results/cpu (ImageNet) is regenerated (issue 27).
FINAL = settings.REPO_ROOT / "results" / "cpu-scratch" / "models" / "final" / "trashnet.tflite"
# The ImageNet run's 320 px file: resizing to 320 px puts MediaPipe's source positions off the 1/32-pixel grid,
# where only the fixed-point warp of consumers.mediapipe_emulated gives its pixels (see its docstring).
FINAL_320 = settings.REPO_ROOT / "results" / "cpu" / "models" / "final" / "trashnet.tflite"
PHOTOS = sorted(settings.SAMPLE_DIR.rglob("*.jpg"))[::6]  # 12 real TrashNet photos, two per class


@pytest.fixture(scope="module")
def model():
    if not FINAL.is_file():
        pytest.skip(f"{FINAL} is not in this checkout")
    return litert.load(FINAL)


@pytest.mark.parametrize("fit", images.FITS)
def test_the_pillow_snippet_gives_predicts_scores_bit_for_bit(model, fit):
    code = images.pillow_snippet(model.image_size, fit)
    assert len(code.strip().splitlines()) == 5
    ours = []
    for path in PHOTOS:
        namespace = {"path": str(path)}
        exec(code, namespace)  # noqa: S102 - the card's snippet, as a user would paste it
        ours.append(model.runner.predict(namespace["x"])[0])
    theirs = list(predict.predict(PHOTOS, model.runner, top_k=len(model.labels), labels=model.labels, fit=fit))
    for probabilities, result in zip(ours, theirs):
        assert [(model.labels[i], float(probabilities[i])) for i in np.argsort(-probabilities, kind="stable")] \
            == list(result.top_k)


def test_the_snippet_refuses_an_unknown_fit():
    with pytest.raises(ValueError, match="unknown fit 'stretch'"):
        images.pillow_snippet(128, "stretch")


def test_pillow_consumers_resize_the_whole_photo(model):
    photo = consumers.decode(PHOTOS[0])
    bicubic, bilinear = (consumers.RESIZERS[name](photo, model.image_size)
                         for name in ("pillow_bicubic", "pillow_bilinear"))
    assert bicubic.shape == bilinear.shape == (model.image_size, model.image_size, 3) and bicubic.dtype == np.uint8
    assert not np.array_equal(bicubic, bilinear)  # Pillow's default filter is not bilinear


@pytest.mark.slow  # MediaPipe's venv (cached by lock hash) and TensorFlow
@pytest.mark.parametrize("model_file", [FINAL, FINAL_320], ids=["128px", "320px"])
def test_the_mediapipe_emulation_gives_mediapipes_scores(model_file, tmp_path):
    if not model_file.is_file():
        pytest.skip(f"{model_file} is not in this checkout")
    model = litert.load(model_file)
    python = tool_python(settings.REPO_ROOT / "requirements-mediapipe.lock")
    out = tmp_path / "out.npz"
    done = subprocess.run([str(python), str(settings.PACKAGE_DIR / "tools" / "mediapipe_consumers.py"), str(model_file),
                           str(model.image_size), str(out), *map(str, PHOTOS)],
                          capture_output=True, text=True, env=clean_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1])["refused"] == []
    arrays = np.load(out)
    order = [list(arrays["mediapipe_labels"]).index(label) for label in model.labels]
    emulated = model.predict(arrays["mediapipe_emulated"].astype(np.float32))
    np.testing.assert_allclose(emulated, arrays["mediapipe"][:, order], atol=1e-6)
    reference = model.predict(np.stack([consumers.predict_input(p, model.image_size) for p in PHOTOS]))
    assert np.abs(emulated - reference).max() > 0.01  # MediaPipe's resize is not predict's: the cause
    tf_inputs = np.stack([consumers.tf_bilinear(consumers.decode(p), model.image_size) for p in PHOTOS])
    assert np.abs(tf_inputs - arrays["opencv_linear"]).max() <= 1.0  # same filter, OpenCV rounds to uint8


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


# Runs the helper with the cyclic GC off, then counts the MediaPipe classifiers it left open: an open one is closed
# later by its __del__, from the cyclic GC, at any point - inside another classifier's executor.submit that hangs
# the process (concurrent.futures' global lock is not reentrant): the helper hung on ood-dev's grayscale JPEG.
LEFT_OPEN = """
import gc, json, runpy, sys
gc.disable()
helper = runpy.run_path(sys.argv[1])
helper["main"](sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:])
print(json.dumps({"open": sum(type(o).__name__ == "ImageClassifier" and bool(getattr(o, "_handle", None))
                              for o in gc.get_objects())}))
"""


@pytest.mark.slow  # MediaPipe's venv (cached by lock hash)
def test_the_mediapipe_helper_refuses_a_grayscale_file_and_leaves_no_classifier_open(model, tmp_path):
    from PIL import Image

    gray = tmp_path / "gray.jpg"
    Image.open(PHOTOS[0]).convert("L").save(gray)  # MediaPipe's own decoder makes it one channel
    python = tool_python(settings.REPO_ROOT / "requirements-mediapipe.lock")
    out = tmp_path / "out.npz"
    done = subprocess.run([str(python), "-c", LEFT_OPEN, str(settings.PACKAGE_DIR / "tools" / "mediapipe_consumers.py"),
                           str(FINAL), str(model.image_size), str(out), str(gray), *map(str, PHOTOS[:2])],
                          capture_output=True, text=True, env=clean_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report, left = (json.loads(line) for line in done.stdout.splitlines()[-2:])
    assert [item["path"] for item in report["refused"]] == [str(gray)]
    assert left == {"open": 0}
    from_file = np.load(out)["mediapipe_file"]
    assert np.isnan(from_file[0]).all() and np.isfinite(from_file[1:]).all()  # the photos after it still get scores


def test_a_helper_that_does_not_finish_is_a_parity_error_not_a_hang(tmp_path):
    from trashnet.nets import parity

    stuck = tmp_path / "python"  # an interpreter that never returns, like the deadlocked MediaPipe helper
    stuck.write_text("#!/bin/sh\nexec sleep 60\n")
    stuck.chmod(0o755)
    with pytest.raises(parity.ParityError, match="did not finish 1 photos in 1 s"):
        parity.opencv_and_mediapipe(str(stuck), FINAL, 128, [str(PHOTOS[0])], ["glass"], timeout_s=1)
    assert parity.helper_timeout_s(786) < 30 * 60  # the 786 photos of the benchmark: minutes, not an hour
