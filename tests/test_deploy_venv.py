"""The artifact works the way the deployment app uses it: a fresh venv with only requirements-deploy.lock.

Creates ``python3.11 -m venv`` in a temporary folder, installs ``requirements-deploy.lock`` with
the project's install rule (``docker/install-lock.sh``, from the package index pip is configured with), checks TensorFlow is absent, then
runs ``tests/deploy_check.py`` (load the final file + labels, reproduce the reported test accuracy exactly)
and the ``predict`` command in it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import toolvenv
from results_tree import evaluated_tree

from trashnet.stages import final
from trashnet.core import profiles, settings
from trashnet.deploy import predict, release

pytestmark = pytest.mark.slow  # a venv and ~60 MB of wheels: about a minute

LOCK = settings.REPO_ROOT / "requirements-deploy.lock"


@pytest.fixture(scope="module")
def deploy_python(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("deploy") / "venv"
    subprocess.run([toolvenv.python311(), "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    toolvenv.install_lock(python, LOCK, timeout=900)
    return python


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_the_deploy_environment_has_no_tensorflow(deploy_python):
    listed = subprocess.run([str(deploy_python), "-m", "pip", "list", "--format=json"], capture_output=True,
                            text=True, check=True, env=clean_env()).stdout
    names = {item["name"].lower() for item in json.loads(listed)}
    assert {"ai-edge-litert", "numpy", "pillow"} <= names
    assert not names & {"tensorflow", "tf-keras", "keras", "tensorflow-cpu", "torch"}
    probe = subprocess.run([str(deploy_python), "-c", "import tensorflow"], capture_output=True, env=clean_env())
    assert probe.returncode != 0


def test_the_final_file_reproduces_its_accuracy_without_tensorflow(deploy_python, tmp_path, sample_dataset,
                                                                   quick_profile):
    models_dir = evaluated_tree(tmp_path / "models", sample_dataset)
    final_dir = tmp_path / "models" / "final"
    final.build_final(profiles.load_variants(quick_profile)["final"], dataset_dir=sample_dataset,
                         models_dir=models_dir, output_dir=final_dir)
    done = subprocess.run([str(deploy_python), str(settings.REPO_ROOT / "tests" / "deploy_check.py"),
                           "--final", str(final_dir), "--dataset", str(sample_dataset)],
                          capture_output=True, text=True, env=clean_env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert all(summary["checks"].values())
    card = json.loads((final_dir / "model_card.json").read_text())
    assert summary["reproduced_accuracy"] == card["metrics"]["test"]["accuracy"]

    # The command-line tool too, from the repository, in the same TensorFlow-free environment.
    done = subprocess.run([str(deploy_python), "-m", "trashnet", "predict", str(sample_dataset / "test"),
                           "--model", str(final_dir / "trashnet.tflite"), "--json", "--no-progress"],
                          capture_output=True, text=True, timeout=300,
                          env={**clean_env(), "PYTHONPATH": str(settings.REPO_ROOT)})
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == summary["n"] and all(item["label"] in card["classes"] for item in lines)


def test_the_release_bundle_and_its_example_work_without_tensorflow(deploy_python, tmp_path, sample_dataset,
                                                                   quick_profile):
    import zipfile

    models_dir = evaluated_tree(tmp_path / "models", sample_dataset)
    final_dir = tmp_path / "models" / "final"
    final.build_final(profiles.load_variants(quick_profile)["final"], dataset_dir=sample_dataset,
                         models_dir=models_dir, output_dir=final_dir)
    bundle = release.build(final_dir, tmp_path / "dist")
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(tmp_path / "unpacked")
    folder = tmp_path / "unpacked" / bundle.name.removesuffix(".zip")
    photos = sorted(str(p) for p in (sample_dataset / "test").rglob("*.jpg"))
    # The example, alone in the unpacked folder: no trashnet package on the path.
    done = subprocess.run([str(deploy_python), "predict_example.py", *photos], cwd=folder, capture_output=True,
                          text=True, env=clean_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    example = {line.split()[-1]: line.split()[0] for line in done.stdout.splitlines()}
    expected = {r.path: r.label for r in predict.predict(photos, final_dir / "trashnet.tflite")}
    assert example == expected and len(example) == len(photos)

    # predict --model <the zip>, in the same TensorFlow-free environment.
    done = subprocess.run([str(deploy_python), "-m", "trashnet", "predict", *photos, "--model", str(bundle),
                           "--json", "--no-progress"], capture_output=True, text=True, timeout=300,
                          env={**clean_env(), "PYTHONPATH": str(settings.REPO_ROOT)})
    assert done.returncode == 0, done.stderr
    assert {json.loads(line)["path"]: json.loads(line)["label"] for line in done.stdout.splitlines()} == expected
