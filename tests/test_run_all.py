"""./run_all.sh: options, the environment step (lockfile stamp), a stand-in run and the real end-to-end run."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import standin
from trashnet.nets import parity
from trashnet.stages import final
from trashnet.core import fileio, registry, settings
from trashnet.runner import scheduler

SCRIPT = settings.REPO_ROOT / "run_all.sh"
# The smoke subset for the real end-to-end run when the quick profile does not list its own: one baseline,
# its 2:4 pruning, the hybrid in FP16 and INT16x8, an INT8 from the baseline, and the final choice.
QUICK_SUBSET = ("mobilenet_v3_large.prune-2of4.fp16,mobilenet_v3_large.prune-2of4.int16x8,"
                "mobilenet_v3_large.int8,final")


def run_all(*args: str, env: dict | None = None, cwd: Path = settings.REPO_ROOT, script: Path = SCRIPT,
            timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(env or standin.environment())
    env.setdefault("TRASHNET_PYTHON", sys.executable)
    return subprocess.run([str(script), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_help_and_bad_options():
    result = run_all("--help")
    assert result.returncode == 0 and "--setup-only" in result.stdout and "-j N" in result.stdout
    result = run_all("--bogus")
    assert result.returncode == 2 and "unknown option --bogus" in result.stderr
    result = run_all("--profile")
    assert result.returncode == 2 and "needs a value" in result.stderr


def test_setup_only_checks_the_given_interpreter():
    result = run_all("--setup-only")
    assert result.returncode == 0, result.stderr
    assert "environment ok" in result.stdout
    env = standin.environment()
    env["TRASHNET_PYTHON"] = "/nonexistent/python"
    result = run_all("--setup-only", env=env)
    assert result.returncode == 2 and "not an executable" in result.stderr
    env = standin.environment()
    env[settings.ENV_MEDIAPIPE_PYTHON] = "/nonexistent/python"  # MediaPipe's tool venv, checked the same way
    result = run_all("--setup-only", env=env)
    assert result.returncode == 2
    assert "TRASHNET_MEDIAPIPE_PYTHON=/nonexistent/python is not an executable" in result.stderr


def test_missing_data_folder_is_an_error(tmp_path):
    result = run_all("--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_venv_is_reinstalled_only_when_the_lockfile_changes(tmp_path):
    # A copy of the script beside a fake .venv whose python records pip calls instead of installing.
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy2(SCRIPT, repo / "run_all.sh")
    shutil.copy2(settings.LOCK_FILE, repo / "requirements.lock")
    (repo / "docker").mkdir()
    shutil.copy2(settings.REPO_ROOT / "docker" / "install-lock.sh", repo / "docker" / "install-lock.sh")
    calls = tmp_path / "pip-calls"
    fake = repo / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(f"#!/bin/sh\nif [ \"$1\" = -m ] && [ \"$2\" = pip ]; then echo \"$*\" >> {calls}; exit 0; fi\n"
                    f"exec {sys.executable} \"$@\"\n")
    fake.chmod(0o755)
    env = standin.environment()
    env.pop("TRASHNET_PYTHON", None)
    # The metadata writer's tool venv is the real one (its own stamp works like .venv's).
    env["TRASHNET_METADATA_PYTHON"] = str(final.metadata_python())
    env[settings.ENV_MEDIAPIPE_PYTHON] = str(parity.mediapipe_python())  # and MediaPipe's

    def setup() -> list[str]:
        calls.unlink(missing_ok=True)
        result = subprocess.run([str(repo / "run_all.sh"), "--setup-only"], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return calls.read_text().splitlines() if calls.exists() else []

    first = setup()  # no stamp yet
    assert any("--no-deps --require-hashes -r" in call for call in first)  # docker/install-lock.sh
    assert any(call.startswith("-m pip check") for call in first)
    assert any("--no-deps --no-build-isolation -e" in call for call in first)
    stamp = (repo / ".venv" / ".requirements.lock.sha256").read_text().strip()
    assert stamp == hashlib.sha256((repo / "requirements.lock").read_bytes()).hexdigest()
    assert setup() == []  # unchanged lockfile: nothing installed
    with open(repo / "requirements.lock", "a") as lock:
        lock.write("# changed\n")
    assert any("--require-hashes" in call for call in setup())


@pytest.mark.slow
def test_stand_in_run_through_run_all(tmp_path):
    # Relative --out from another directory; the report is built at the end.
    result = run_all("--out", "out", "--variants", "mobilenet_v3_small.fp16", "-j", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "out"
    assert "bundled sample" in result.stdout and "ETA" in result.stdout
    report_dir = out / "report" / "quick"
    assert (report_dir / "index.html").exists()
    assert all((report_dir / lang / name).exists() for lang in ("id", "en") for name in ("index.html", "report.pdf"))
    record = fileio.read_json(out / "logs" / "quick" / scheduler.RUN_RECORD)
    assert record["profile"] == "quick" and record["sample"] is True
    assert record["selected"] == ["mobilenet_v3_small", "mobilenet_v3_small.fp16"]


@pytest.mark.slow
def test_end_to_end_on_the_sample_with_the_real_notebooks(tmp_path):
    missing = [str(stage.notebook) for stage in registry.STAGES.values()
               if stage.per_variant and not stage.notebook.exists()]
    if missing:
        pytest.skip("stage notebooks not merged yet: " + ", ".join(missing))
    env = dict(os.environ)
    env.pop("TRASHNET_NOTEBOOKS", None)
    env.pop(settings.ENV_DATA, None)
    env["TRASHNET_PYTHON"] = sys.executable
    from trashnet.core import profiles

    subset = () if profiles.load_profile("quick").variants is not None else ("--variants", QUICK_SUBSET)
    # Its time is measured by benchmarks/bench_pipeline.py --real-notebooks, not asserted here.
    result = run_all("--out", str(tmp_path / "out"), "-j", "2", *subset, env=env, timeout=1800)
    print(result.stdout[-5000:])
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    out = tmp_path / "out"
    html = (out / "report" / "quick" / "en" / "index.html").read_text(encoding="utf-8")
    assert "No final model" not in html
    assert all((out / "report" / "quick" / lang / "report.pdf").exists() for lang in ("id", "en"))
    again = run_all("--out", str(tmp_path / "out"), "--no-report", *subset, env=env)
    assert again.returncode == 0 and " done 0," in again.stdout.splitlines()[-1]
