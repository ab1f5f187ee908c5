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

from trashnet import cli
from trashnet.core import images, litert, records
from trashnet.deploy import predict, release

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
    assert cli.main(["release", "--final", str(copy), "--dist", str(tmp_path / "dist")]) == 1


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
    with pytest.raises(litert.ModelError, match="do not match their SHA256SUMS"):
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
    assert cli.main(["release", "--out", str(tmp_path / "out")]) == 1
    assert "pass --profile" in capsys.readouterr().err
    assert cli.main(["release", "--out", str(tmp_path / "out"), "--profile", "cpu",
                     "--dist", str(tmp_path / "d")]) == 0


# --- issue 24: every file of a bundle is checked; release checks what it packs ------------------------------


def synthetic_final(folder, model: bytes = b"TFL3 not a real model", size: int = 32):
    """A final folder as the final stage writes it (SHA256SUMS over its files), without running it."""
    folder.mkdir(parents=True)
    card = {"version": "0.1.0+test", "input": {"size": size, "normalization": {"mean": [0.0], "std": [1.0]}}}
    files = {"trashnet.tflite": model, "labels.txt": b"a\nb\nc\nd\ne\nf\n", "model_card.json": json.dumps(card).encode(),
             "model_card.md": b"# card\n"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "SHA256SUMS").write_text("".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(files.items())))
    return folder


def rezip(bundle, target, change):
    """``bundle`` copied to ``target`` with ``change(name, data) -> bytes | None`` (None: left out) per member."""
    with zipfile.ZipFile(bundle) as archive, zipfile.ZipFile(target, "w") as out:
        for info in archive.infolist():
            data = change(info.filename.split("/")[-1], archive.read(info))
            if data is not None:
                out.writestr(info, data)
    return target


def test_release_refuses_unchecked_or_altered_files(tmp_path):
    final = synthetic_final(tmp_path / "final")
    release.build(final, tmp_path / "dist")  # as written: fine
    (final / "SHA256SUMS").unlink()
    with pytest.raises(release.ReleaseError, match="no SHA256SUMS"):
        release.build(final, tmp_path / "dist")
    final = synthetic_final(tmp_path / "f2")
    (final / "SHA256SUMS").write_text("garbage\n")
    with pytest.raises(release.ReleaseError, match="malformed"):
        release.build(final, tmp_path / "dist")
    final = synthetic_final(tmp_path / "f3")
    sums = (final / "SHA256SUMS").read_text().splitlines()
    (final / "SHA256SUMS").write_text("".join(line + "\n" for line in sums if "tflite" not in line))
    with pytest.raises(release.ReleaseError, match="not listed"):
        release.build(final, tmp_path / "dist")
    # The run's manifest.json vouches for SHA256SUMS too: an altered model with rewritten sums is refused.
    final = synthetic_final(tmp_path / "f4")
    listed = {name: hashlib.sha256((final / name).read_bytes()).hexdigest() for name in (*release.FROM_FINAL, "SHA256SUMS")}
    records.write_manifest(final, {"variant": "final", "stage": "final", "status": "done", "key": "k",
                                   "finished": "2026-01-01T00:00:00+00:00", "seconds": 1.0, "files": listed})
    release.build(final, tmp_path / "dist")
    (final / "trashnet.tflite").write_bytes(b"TFL3 altered")
    (final / "SHA256SUMS").write_text("".join(f"{hashlib.sha256((final / n).read_bytes()).hexdigest()}  {n}\n"
                                              for n in sorted(release.FROM_FINAL)))
    with pytest.raises(release.ReleaseError, match="manifest.json"):
        release.build(final, tmp_path / "dist")


def test_release_on_an_unwritable_dist_is_one_line(tmp_path, capsys):
    final = synthetic_final(tmp_path / "final")
    assert cli.main(["release", "--final", str(final), "--dist", "/sys/x/dist"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot write the bundle") and " - " in err and "\n" not in err


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    from results_tree import tiny_tflite

    root = tmp_path_factory.mktemp("tiny")
    return release.build(synthetic_final(root / "final", tiny_tflite(32)), root / "dist")


@pytest.mark.parametrize("change, message", [
    (lambda n, d: b"f\ne\nd\nc\nb\na\n" if n == "labels.txt" else d, "do not match"),  # reversed labels
    (lambda n, d: d.replace(b'"std": [1.0]', b'"std": [2.0]') if n == "model_card.json" else d, "do not match"),
    (lambda n, d: None if n == "SHA256SUMS" else d, "no SHA256SUMS"),
    (lambda n, d: b"\n".join(l for l in d.split(b"\n") if b"tflite" not in l) if n == "SHA256SUMS" else d, "not listed"),
    (lambda n, d: b"dictionary garbage\n" if n == "SHA256SUMS" else d, "malformed"),
    (lambda n, d: None if n == "LICENSE" else d, "absent"),
])
def test_every_file_of_a_bundle_is_checked(tiny_bundle, tmp_path, change, message):
    with pytest.raises(litert.ModelError, match=message):
        litert.load(rezip(tiny_bundle, tmp_path / "t.zip", change))


def test_a_bundle_that_expands_beyond_the_cap_is_refused_before_decompressing(tmp_path):
    import resource

    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("t/trashnet.tflite", "w", force_zip64=True) as handle:
            chunk = bytes(1 << 20)
            for _ in range(litert.fileio.MODEL_FILE_LIMIT // len(chunk) + 8):
                handle.write(chunk)
    assert path.stat().st_size < 1 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(litert.ModelError, match="would decompress"):
        litert.load(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 32 * 1024  # KiB: nothing expanded
