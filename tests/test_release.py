"""The release bundle: byte-reproducible, complete, checksummed, and loaded as it is by litert.load / predict."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
from results_tree import built_final

from trashnet import cli, images, litert, predict, release

pytestmark = pytest.mark.slow  # builds a final artifact from two tiny converted models (~40 s)


@pytest.fixture(scope="module")
def final_dir(tmp_path_factory, sample_dataset, quick_profile):
    return built_final(tmp_path_factory.mktemp("release"), sample_dataset, quick_profile)


@pytest.fixture(scope="module")
def bundle(final_dir, tmp_path_factory):
    return release.build(final_dir, tmp_path_factory.mktemp("dist"))


def test_building_twice_gives_the_same_bytes(final_dir, bundle, tmp_path):
    again = release.build(final_dir, tmp_path)
    assert again.name == bundle.name
    assert hashlib.sha256(again.read_bytes()).hexdigest() == hashlib.sha256(bundle.read_bytes()).hexdigest()
    digest, name = (bundle.parent / f"{bundle.name}.sha256").read_text().split()
    assert name == bundle.name and digest == hashlib.sha256(bundle.read_bytes()).hexdigest()


def test_the_bundle_holds_the_release_files_with_checksums(final_dir, bundle, tmp_path):
    card = json.loads((final_dir / "model_card.json").read_text())
    folder = f"trashnet-{card['version']}"
    assert bundle.name == f"{folder}.zip" and "+quick." in card["version"]
    with zipfile.ZipFile(bundle) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == sorted(f"{folder}/{name}" for name in (
            "trashnet.tflite", "labels.txt", "model_card.md", "model_card.json", "SHA256SUMS", "LICENSE",
            "DATA_LICENSE", "ATTRIBUTION.md", "predict_example.py"))
        assert {i.date_time for i in infos} == {release.ZIP_DATE}
        assert archive.read(f"{folder}/trashnet.tflite") == (final_dir / "trashnet.tflite").read_bytes()
        assert b"Gary Thung" in archive.read(f"{folder}/DATA_LICENSE")
        archive.extractall(tmp_path)
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=tmp_path / folder, check=True)
    sums = (tmp_path / folder / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == 8  # every other file


def test_a_changed_final_folder_is_not_released(final_dir, tmp_path):
    copy = tmp_path / "final"
    shutil.copytree(final_dir, copy)
    (copy / "labels.txt").write_text("tampered\n")
    with pytest.raises(release.ReleaseError, match="no longer match"):
        release.build(copy, tmp_path / "dist")
    (copy / "model_card.json").unlink()
    assert cli.main(["release", "--final", str(copy), "--dist", str(tmp_path / "dist")]) == 2


def test_litert_loads_the_bundle_like_the_bare_file(final_dir, bundle, sample_dataset):
    bare, packed = litert.load(final_dir / "trashnet.tflite"), litert.load(bundle)
    assert packed.kind == "bundle" and bare.kind == "tflite"
    assert packed.labels == bare.labels == (final_dir / "labels.txt").read_text().split()
    assert packed.preprocessing.source == "model_card" and bare.preprocessing.source == "tflite-metadata"
    assert packed.preprocessing.mean == bare.preprocessing.mean == (0.0,)
    assert packed.preprocessing.std == bare.preprocessing.std == (1.0,)
    assert packed.card["version"] == bare.metadata["version"]
    photos = sorted((sample_dataset / "test").rglob("*.jpg"))[:8]
    batch = np.stack([images.load_for_model(p, packed.image_size) for p in photos])
    np.testing.assert_array_equal(packed.predict(batch), bare.predict(batch))


def test_predict_takes_the_bundle(final_dir, bundle, sample_dataset, capsys):
    assert cli.main(["predict", str(sample_dataset / "test"), "--model", str(bundle), "--json", "--no-progress"]) == 0
    from_bundle = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    from_file = [r.to_dict() for r in predict.predict([sample_dataset / "test"], final_dir / "trashnet.tflite")]
    assert [r["label"] for r in from_bundle] == [r["label"] for r in from_file] and from_bundle


def test_a_damaged_or_foreign_file_is_a_clear_error(bundle, tmp_path):
    with zipfile.ZipFile(bundle) as archive, zipfile.ZipFile(tmp_path / "bad.zip", "w") as bad:
        for info in archive.infolist():
            data = archive.read(info)
            bad.writestr(info, data[:-1] + bytes([data[-1] ^ 1]) if info.filename.endswith(".tflite") else data)
    with pytest.raises(litert.ModelError, match="does not match its SHA256SUMS"):
        litert.load(tmp_path / "bad.zip")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(litert.ModelError, match="neither a .tflite"):
        litert.load(tmp_path / "notes.txt")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as empty:
        empty.writestr("readme.txt", "x")
    with pytest.raises(litert.ModelError, match="0 .tflite files"):
        litert.load(tmp_path / "empty.zip")
    with pytest.raises(litert.ModelError, match="cannot read"):
        litert.load(tmp_path / "missing.tflite")
    os.mkfifo(tmp_path / "pipe.zip")  # refused, never read (a read would block)
    with pytest.raises(litert.ModelError, match="named pipe"):
        litert.load(tmp_path / "pipe.zip")


def test_load_takes_labels_from_the_caller_beside_or_nowhere(final_dir, tmp_path):
    from results_tree import tiny_tflite

    bare = tmp_path / "bare.tflite"
    bare.write_bytes(tiny_tflite(32))  # no metadata, no packed labels
    model = litert.load(bare)
    assert model.labels == [f"class_{i}" for i in range(6)] and model.preprocessing.source == "default"
    assert model.metadata == {} and model.preprocessing.identity
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\ne\nf\n")
    assert litert.load(bare).labels == list("abcdef")
    assert litert.load(final_dir / "trashnet.tflite", labels=list("uvwxyz")).labels == list("uvwxyz")
    with pytest.raises(litert.ModelError, match="2 labels for a model with 6 outputs"):
        litert.load(bare, labels=["a", "b"])


def test_the_command_finds_the_profiles_final_folder(final_dir, bundle, tmp_path, capsys):
    shutil.copytree(final_dir, tmp_path / "out" / "models" / "quick" / "final")
    assert cli.main(["release", "--out", str(tmp_path / "out")]) == 0  # the only profile with a final model
    written = tmp_path / "out" / "dist" / bundle.name
    assert written.read_bytes() == bundle.read_bytes() and str(written) in capsys.readouterr().out
    shutil.copytree(final_dir, tmp_path / "out" / "models" / "cpu" / "final")
    assert cli.main(["release", "--out", str(tmp_path / "out")]) == 2
    assert "pass --profile" in capsys.readouterr().err
    assert cli.main(["release", "--out", str(tmp_path / "out"), "--profile", "cpu",
                     "--dist", str(tmp_path / "d")]) == 0
