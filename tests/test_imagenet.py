"""ImageNet weights imported from Google's TFLite files (trashnet/nets/imagenet.py), checked against the files.

The files are read from $TRASHNET_WEIGHTS (CI sets it); without it the tests that need them skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from trashnet.data import imagenet_files
from trashnet.nets import imagenet, imagenet_check
from trashnet.core import settings
from trashnet.core.errors import UserError

IMPORTED = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large_minimalistic")
_WEIGHTS = os.environ.get(settings.ENV_WEIGHTS)


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    if not _WEIGHTS:
        pytest.skip(f"${settings.ENV_WEIGHTS} is not set: point it at the folder of Google's ImageNet TFLite "
                    f"files (python -m trashnet download --weights --out DIR)")
    return Path(_WEIGHTS)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Imported weights are cached under the output root: a fresh one per test."""
    monkeypatch.setenv(settings.ENV_OUT, str(tmp_path / "out"))


@pytest.fixture(scope="session")
def sample_photos() -> np.ndarray:
    """20 photos of the bundled sample, every class, as the TFLite files take them."""
    paths = sorted(settings.SAMPLE_DIR.glob("*/*.jpg"))
    picks = np.linspace(0, len(paths) - 1, 20).round().astype(int)
    return np.stack([imagenet_check.photo(paths[i]) for i in picks])


def test_without_the_folder_every_use_says_what_is_missing_in_one_line(monkeypatch):

    monkeypatch.delenv(settings.ENV_WEIGHTS, raising=False)
    with pytest.raises(UserError) as error:
        imagenet.resolve_weights("imagenet-tflite", "mobilenet_v1")
    text = str(error.value)
    assert "\n" not in text and settings.ENV_WEIGHTS in text and "download --weights" in text
    monkeypatch.setenv(settings.ENV_WEIGHTS, "/nonexistent/weights")
    with pytest.raises(UserError, match="is not a folder"):
        imagenet_files.weights_folder()


def test_provenance_names_file_sha256_and_dequantization():
    text = imagenet_files.provenance("mobilenet_v3_small")
    assert imagenet_files.FILES["v3-small_224_1.0_uint8.tflite"].sha256 in text
    assert "v3-small_224_1.0_uint8.tflite" in text and "dequantized from uint8" in text
    assert "transplanted" in imagenet_files.provenance("mobilenet_v3_large")
    with pytest.raises(UserError, match="no ImageNet TFLite weights"):
        imagenet_files.provenance("resnet50")


def test_every_pinned_file_is_in_the_folder(weights_dir):
    for name in imagenet_files.FILES:
        assert imagenet_files.source_path(name, weights_dir).stat().st_size == imagenet_files.FILES[name].bytes


def test_a_file_that_is_not_pinned_is_refused(weights_dir, tmp_path):
    name = "v3-small_224_1.0_uint8.tflite"
    changed = tmp_path / name
    data = bytearray((weights_dir / name).read_bytes())
    data[len(data) // 2] ^= 1  # one bit: still a loadable flatbuffer, no longer Google's file
    changed.write_bytes(bytes(data))
    with pytest.raises(UserError, match="not one of the pinned ImageNet TFLite files"):
        imagenet.read_kernels(changed)
    renamed = tmp_path / "mobilenet_v2_1.0_224_quant.tflite"
    shutil.copy(weights_dir / name, renamed)
    with pytest.raises(UserError, match="holds the bytes of v3-small"):
        imagenet_files.checked(renamed)
    missing = tmp_path / "empty"
    missing.mkdir()
    with pytest.raises(UserError, match="is missing"):
        imagenet_files.source_path(name, missing)


@pytest.mark.slow
@pytest.mark.parametrize("arch", IMPORTED)
def test_every_layer_matches_the_tflite_layer_fed_the_same_input(arch, weights_dir, sample_photos):
    cosines = imagenet_check.layer_cosines(arch, sample_photos, folder=weights_dir)
    assert len(cosines) == {"mobilenet_v1": 28, "mobilenet_v2": 53, "mobilenet_v3_small": 54,
                            "mobilenet_v3_large_minimalistic": 48}[arch]
    worst = {name: float(values.min()) for name, values in cosines.items()}
    assert all(len(values) == 20 for values in cosines.values())
    assert min(worst.values()) >= 0.98, sorted(worst.items(), key=lambda item: item[1])[:3]


@pytest.mark.slow
@pytest.mark.parametrize("arch", IMPORTED)
def test_the_three_photos_tflite_top1_within_keras_top5(arch, weights_dir):
    photos = np.stack([imagenet_check.photo(weights_dir / "photos" / f"{name}.jpg")
                       for name in ("cat_720p", "parrot", "hot_dog")])
    result = imagenet_check.end_to_end(arch, photos, folder=weights_dir)
    assert all(top1 in top5 for top1, top5 in zip(result.tflite_top1, result.keras_top5))
    # And the Keras model sees what is in the photo (V1's TFLite file calls the hot dog a paper towel).
    labels = imagenet_files.labels(weights_dir)
    top5 = [[labels[i] for i in row] for row in result.keras_top5]
    assert any("cat" in name for name in top5[0]) and "macaw" in top5[1] and "hotdog, hot dog, red hot" in top5[2]


@pytest.mark.slow
def test_build_model_starts_from_the_imported_backbone(weights_dir, monkeypatch):
    from trashnet.nets import models

    monkeypatch.setenv(settings.ENV_WEIGHTS, str(weights_dir))
    model = models.build_model("mobilenet_v1", num_classes=6, image_size=96,
                               weights=imagenet.resolve_weights("imagenet-tflite", "mobilenet_v1"))
    reference = imagenet.classifier("mobilenet_v1", folder=weights_dir)
    for name in ("conv1", "conv_dw_7", "conv_pw_13", "conv_pw_13_bn"):
        for got, want in zip(model.get_layer(name).get_weights(), reference.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    bn = model.get_layer("conv_pw_13_bn")
    np.testing.assert_allclose(bn.moving_variance.numpy() + bn.epsilon, 1.0, rtol=1e-6)  # the folded identity
    cached = imagenet.weights_file("mobilenet_v1", folder=weights_dir)
    assert cached.is_file() and cached.is_relative_to(Path(os.environ[settings.ENV_OUT]) / ".cache" / "imagenet")
    assert imagenet.weights_origin("imagenet-tflite", "mobilenet_v1").startswith(
        "imagenet-tflite:mobilenet_v1_1.0_224_quant_embedding_extractor.tflite@sha256:f409ef4f")


@pytest.mark.slow
def test_the_full_v3_large_loads_every_matching_minimalistic_tensor(weights_dir):
    donor, full, counts = imagenet.transplanted_v3_large(weights_dir)
    weighted = [layer for layer in donor.layers if layer.weights]
    assert counts["unused"] == 0 and counts["copied"] + counts["centred"] == len(weighted)
    assert counts["centred"] == 6 and counts["squeeze_excite"] == 16  # 6 blocks with 5x5 kernels, 8 with SE
    # A 5x5 depthwise kernel holds the 3x3 one in its centre, zeros around.
    small = donor.get_layer("expanded_conv_3/depthwise").get_weights()[0]
    big = full.get_layer("expanded_conv_3/depthwise").get_weights()[0]
    np.testing.assert_array_equal(big[1:4, 1:4], small)
    assert not big[0].any() and not big[4].any() and not big[:, 0].any() and not big[:, 4].any()
    # The squeeze-excite gate passes its input on, scaled by 0.99, which the projection undoes.
    kernel, bias = full.get_layer("expanded_conv_3/squeeze_excite/Conv_1").get_weights()
    assert not kernel.any() and np.allclose(np.clip(bias + 3, 0, 6) / 6, 0.99)
    np.testing.assert_allclose(full.get_layer("expanded_conv_3/project").get_weights()[0] * 0.99,
                               donor.get_layer("expanded_conv_3/project").get_weights()[0], rtol=1e-6)


@pytest.mark.slow
def test_the_full_v3_large_builds_from_the_transplanted_weights(weights_dir, monkeypatch):
    from trashnet.nets import models

    monkeypatch.setenv(settings.ENV_WEIGHTS, str(weights_dir))
    model = models.build_model("mobilenet_v3_large", num_classes=6, image_size=64,
                               weights=imagenet.resolve_weights("imagenet-tflite", "mobilenet_v3_large"))
    donor = imagenet.classifier("mobilenet_v3_large_minimalistic", folder=weights_dir)
    for name in ("Conv", "expanded_conv_6/expand", "Conv_1/BatchNorm"):
        for got, want in zip(model.get_layer(name).get_weights(), donor.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    assert "transplanted" in imagenet.weights_origin("imagenet-tflite", "mobilenet_v3_large")


def _served_locally(weights_dir: Path, root: Path, monkeypatch) -> None:
    """Point every pinned URL at a file:// copy: the files as such, the V3 ones inside a tar.gz as Google
    publishes them."""
    import tarfile

    for table in (imagenet_files.FILES, imagenet_files.PHOTOS):
        for name, item in list(table.items()):
            if item.member is None:
                url = (weights_dir / name).as_uri()
            else:
                archive = root / Path(item.url).name
                with tarfile.open(archive, "w:gz") as tar:
                    tar.add(weights_dir / name, arcname=item.member)
                url = archive.as_uri()
            monkeypatch.setitem(table, name, item.model_copy(update={"url": url}))


def test_download_weights_fetches_every_pinned_file_and_refuses_other_bytes(weights_dir, tmp_path, monkeypatch,
                                                                            capsys):
    from trashnet import cli

    _served_locally(weights_dir, tmp_path, monkeypatch)
    out = tmp_path / "weights"
    assert cli.main(["download", "--weights", "--out", str(out)]) == 0
    assert f"{settings.ENV_WEIGHTS}={out}" in capsys.readouterr().out
    for name in imagenet_files.FILES:
        assert imagenet_files.source_path(name, out).is_file()
    assert all((out / name).is_file() for name in imagenet_files.PHOTOS)
    # A publisher serving other bytes: one line, the file is not kept, the others stay.
    (out / "v3-small_224_1.0_uint8.tflite").unlink()
    tampered = tmp_path / "tampered.tflite"
    tampered.write_bytes(b"not a model")
    item = imagenet_files.FILES["v3-small_224_1.0_uint8.tflite"]
    monkeypatch.setitem(imagenet_files.FILES, item.name, item.model_copy(update={"url": tampered.as_uri(),
                                                                           "member": None}))
    assert cli.main(["download", "--weights", "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: v3-small_224_1.0_uint8.tflite from file:") and "not the pinned" in error
    assert error.count("\n") == 1 and not (out / item.name).exists()
    assert not [path for path in out.iterdir() if path.name.startswith(".weights-download-")]


# --- model.head: last_point (issue 27): the ImageNet head's pretrained 1x1 conv kept after pooling ----

def _imagenet_model(arch: str, *, image_size: int, head: str = "last_point"):
    """Built as the train stage builds ``model.weights: imagenet-tflite`` (``stages.train.build``)."""
    from trashnet.nets import models

    return models.build_model(arch, num_classes=6, image_size=image_size,
                              weights=imagenet.resolve_weights("imagenet-tflite", arch), head=head,
                              last_point=imagenet.head_weights("imagenet-tflite", arch, head))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ("mobilenet_v3_small", "mobilenet_v3_large_minimalistic"))
def test_last_point_head_gives_the_features_the_tflite_logits_read(arch, weights_dir, monkeypatch):
    from trashnet.core.keras_env import keras
    from trashnet.nets import models

    monkeypatch.setenv(settings.ENV_WEIGHTS, str(weights_dir))
    model = _imagenet_model(arch, image_size=imagenet_files.IMAGE_SIZE)
    layer = model.get_layer(models.LAST_POINT_NAME)
    reference = imagenet.classifier(arch, folder=weights_dir).get_layer("Conv_2").get_weights()
    np.testing.assert_array_equal(layer.get_weights()[0], reference[0][0, 0])
    np.testing.assert_array_equal(layer.get_weights()[1], reference[1])
    photos = np.stack([imagenet_check.photo(weights_dir / "photos" / f"{name}.jpg")
                       for name in ("cat_720p", "parrot", "hot_dog")]).astype(np.float32)
    features = keras.Model(model.input, model.get_layer("head_dropout").input).predict(photos, verbose=0)
    assert features.shape == (3, {"mobilenet_v3_small": 1024}.get(arch, 1280))
    # The same features as the imported ImageNet classifier's (what its logits conv reads)...
    classifier = imagenet.classifier(arch, folder=weights_dir)
    np.testing.assert_allclose(features, keras.Model(classifier.input, classifier.get_layer("Logits").input)
                               .predict(photos, verbose=0).reshape(3, -1), rtol=1e-4, atol=1e-4)
    # ...and the head computes the file's: fed the TFLite pooled tensor, it gives the tensor the TFLite logits
    # read (last point + fused ReLU or HARD_SWISH op), clipped to the range that uint8 tensor can hold. (End to
    # end the uint8 network drifts: cosine 0.90-0.95, as for the imported classifier, test above.)
    path = imagenet_files.source_path(imagenet_files.SOURCES[arch].files[0], weights_dir)
    last_point, logits = imagenet.read_kernels(path)[-2:]
    interpreter, details = imagenet_check._interpreter(path)
    pooled, expected = [], []
    for image in photos.astype(np.uint8):
        imagenet_check._invoke([(interpreter, details)], image)
        pooled.append(imagenet_check._float(interpreter, details, last_point.input_tensor).reshape(-1))
        expected.append(imagenet_check._float(interpreter, details, logits.input_tensor).reshape(-1))
    head = keras.Model(model.get_layer(models.LAST_POINT_NAME).input, model.get_layer("head_dropout").input)
    low, high = imagenet_check._representable(details, logits.input_tensor)
    cosine = imagenet_check._cosine(np.clip(head.predict(np.stack(pooled), verbose=0), low, high),
                                    np.stack(expected))
    assert cosine.min() >= 0.999, cosine
    # The pooled head's input is the 960/576-d pooling: a different feature, not the one the file classifies.
    pooled = _imagenet_model(arch, image_size=64, head="pooled")
    assert models.LAST_POINT_NAME not in [layer.name for layer in pooled.layers]


def test_last_point_head_is_opt_in_v3_only_and_out_of_existing_config_dumps():
    from trashnet.core import config, profiles
    from trashnet.nets import models

    assert "head" not in config.ModelConfig().model_dump(mode="json")  # cache keys of pooled runs unchanged
    chosen = config.ModelConfig(head="last_point")
    assert config.ModelConfig(**chosen.model_dump(mode="json")).head == "last_point"
    with pytest.raises(ValueError, match="MobileNetV3 only"):
        models.build_model("mobilenet_v2", num_classes=6, image_size=32, head="last_point")
    profile = profiles.load_profile("cpu")
    entry = {"id": "v2.last-point", "stage": "train", "arch": "mobilenet_v2", "model": {"head": "last_point"}}
    with pytest.raises(ValueError, match="MobileNetV3 only"):
        profiles.resolve_variant(profile, entry)
    entry.update(id="v3.last-point", arch="mobilenet_v3_large")
    assert profiles.resolve_variant(profile, entry).model.head == "last_point"
    with pytest.raises(ValueError, match="unknown head"):
        models.build_model("mobilenet_v3_small", num_classes=6, image_size=32, head="conv")
    # Without the file (model.weights other than imagenet-tflite) the layer starts from Keras' init.
    assert imagenet.head_weights("imagenet", "mobilenet_v3_small", "last_point") is None
    assert imagenet.head_weights("imagenet-tflite", "mobilenet_v3_small", "pooled") is None


@pytest.mark.slow
def test_last_point_head_prunes_converts_and_rebuilds_for_int16():
    from ai_edge_litert.interpreter import Interpreter

    from trashnet.nets import convert, models, sparsity, xnnpack
    from trashnet.stages import prune

    arch = "mobilenet_v3_small"  # hard-swish after the last point, as in the full V3-Large
    model = models.build_model(arch, num_classes=6, image_size=64, head="last_point")
    # Magnitude and 2:4 pruning take the 576 -> 1024 dense like the classifier; XNNPack's sparse kernels
    # are 1x1 convolutions only, so its policy leaves it dense.
    assert models.LAST_POINT_NAME in sparsity.prunable_layer_names(model, "magnitude")
    assert models.LAST_POINT_NAME in sparsity.prunable_layer_names(model, "2of4")
    assert models.LAST_POINT_NAME not in sparsity.prunable_layer_names(model, "xnnpack")
    schedule = sparsity.tfmot_sparsity().ConstantSparsity(0.5, begin_step=0)
    wrapped = prune.wrap_for_pruning(model, "magnitude", schedule)
    assert any(name.endswith(models.LAST_POINT_NAME) for name in sparsity.pruning_wrappers(wrapped))
    rebuilt = convert.int16_compatible(model, arch=arch, image_size=64, alpha=1.0, dropout=0.2, head="last_point")
    images = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 3)).astype(np.float32)
    want = model.predict(images, verbose=0)
    np.testing.assert_allclose(rebuilt.predict(images, verbose=0), want, atol=1e-5)
    interpreter = Interpreter(model_content=convert.convert(model, "fp32"))
    interpreter.allocate_tensors()
    got = []
    for image in images:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
        interpreter.invoke()
        got.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
    np.testing.assert_allclose(np.stack(got), want, atol=1e-4)
    xnn = xnnpack.build_xnnpack_mobilenet_v3(arch, num_classes=6, image_size=64, head="last_point")
    assert xnnpack.transfer_weights(model, xnn) == len([layer for layer in model.layers if layer.weights])
    xnn_wrapped = prune.wrap_for_pruning(xnn, "xnnpack", schedule)  # tfmot's XNNPack policy accepts the head
    assert not any(name.endswith(models.LAST_POINT_NAME) for name in sparsity.pruning_wrappers(xnn_wrapped))


@pytest.mark.slow
def test_the_full_v3_large_last_point_comes_from_the_minimalistic_file_with_hard_swish(weights_dir, monkeypatch):
    from trashnet.core.keras_env import keras
    from trashnet.nets import models

    monkeypatch.setenv(settings.ENV_WEIGHTS, str(weights_dir))
    model = _imagenet_model("mobilenet_v3_large", image_size=64)
    kernel, bias = imagenet.last_point("mobilenet_v3_large_minimalistic", folder=weights_dir)
    got = model.get_layer(models.LAST_POINT_NAME).get_weights()
    np.testing.assert_array_equal(got[0], kernel)
    np.testing.assert_array_equal(got[1], bias)
    # Hard-swish (Multiply([x, relu6(x + 3) / 6])) feeds the dropout, not the minimalistic net's ReLU.
    assert isinstance(model.get_layer("head_dropout")._inbound_nodes[0].inbound_layers, keras.layers.Multiply)
