"""Helpers for the tests that run the pipeline on the stand-in notebooks (tests/fixtures/notebooks/)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from trashnet.core import settings

NOTEBOOKS = Path(__file__).resolve().parent / "fixtures" / "notebooks"
# Baselines, a pruned variant, a quantized one of each kind (the hybrid included) and the final choice.
SELECTION = "mobilenet_v3_large.prune-2of4.int16x8,mobilenet_v3_small.fp16,final"
SELECTED = ["mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v3_large.prune-2of4",
            "mobilenet_v3_small.fp16", "mobilenet_v3_large.prune-2of4.int16x8", "final"]
_completed: dict[str, Path] = {}


def environment(trace: Path | None = None, behaviour: dict | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(settings.REPO_ROOT), env.get("PYTHONPATH")]))
    env["TRASHNET_NOTEBOOKS"] = str(NOTEBOOKS)
    env.pop(settings.ENV_DATA, None)
    env.pop("STANDIN_TRACE", None)
    if trace is not None:
        env["STANDIN_TRACE"] = str(trace)
    env["STANDIN_BEHAVIOUR"] = json.dumps(behaviour or {})
    return env


def command(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "trashnet", "run", "--out", str(out), "--variants", SELECTION, *args]


def run(out: Path, *args: str, trace: Path | None = None, behaviour: dict | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command(out, *args), env=environment(trace, behaviour), capture_output=True,
                          text=True, timeout=timeout, cwd=settings.REPO_ROOT)


def traced(trace: Path) -> list[str]:
    return trace.read_text().split() if trace.exists() else []


def completed_run(tmp_path_factory) -> Path:
    """One finished stand-in run (with its report) per test session; copy it before changing anything."""
    key = str(tmp_path_factory.getbasetemp())
    if key not in _completed:
        out = tmp_path_factory.mktemp("standin-run") / "out"
        result = run(out, "-j", "2", "--no-report")
        assert result.returncode == 0, result.stdout + result.stderr
        _completed[key] = out
    return _completed[key]


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target
