"""Helpers for the runner tests on the real stage notebooks (experiments/*.ipynb), on the tiny profile.

tests/fixtures/profiles/tiny.yaml runs one variant per stage (train -> 2:4 prune -> FP16 -> final) at 32 px
for one epoch on the bundled sample: a few minutes on two loaded cores. The stand-in notebooks
(``standin``) stay for the tests that steer a notebook (failures, sleeps, progress lines).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from trashnet.core import fileio, settings

PROFILE = Path(__file__).resolve().parent / "fixtures" / "profiles" / "tiny.yaml"
NAME = PROFILE.stem
VARIANTS = ["final", "mobilenet_v3_small", "mobilenet_v3_small.prune-2of4", "mobilenet_v3_small.prune-2of4.fp16"]
_completed: dict[str, Path] = {}


def environment() -> dict[str, str]:
    """The real notebooks, this checkout's package in their kernels, the bundled sample, no OOD set."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(settings.REPO_ROOT), env.get("PYTHONPATH")]))
    for name in ("TRASHNET_NOTEBOOKS", "STANDIN_TRACE", "STANDIN_BEHAVIOUR", settings.ENV_DATA,
                 settings.ENV_OOD_DATA):
        env.pop(name, None)
    return env


def completed_run(tmp_path_factory) -> Path:
    """One finished real run of the tiny profile (no report) per test session; copy it before changing it."""
    key = str(tmp_path_factory.getbasetemp())
    if key not in _completed:
        out = tmp_path_factory.mktemp("real-run") / "out"
        result = subprocess.run([sys.executable, "-m", "trashnet", "run", "--profile", str(PROFILE), "--out",
                                 str(out), "-j", "2", "--no-verify", "--no-report"], env=environment(),
                                capture_output=True, text=True, timeout=1200, cwd=settings.REPO_ROOT)
        assert result.returncode == 0, result.stdout + result.stderr
        _completed[key] = out
    return _completed[key]


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


def manifests(out: Path) -> dict[str, dict]:
    """variant id -> its manifest.json, for every variant folder of the run."""
    found = {}
    for path in settings.Layout(out, NAME).models.rglob(settings.RUN_MANIFEST_NAME):
        manifest = fileio.read_json(path)
        found[manifest["variant"]] = manifest | {"folder": str(path.parent)}
    return found
