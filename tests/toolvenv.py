"""Fresh venvs from a hashed lock for tests of other ecosystems (MediaPipe, tflite-support), cached by lock hash.

``tool_python(lock)`` creates ``python3.11 -m venv`` under ``$TRASHNET_TEST_VENVS`` (default
``~/.cache/trashnet/test-venvs``), installs the lock with ``--require-hashes`` and reuses it while the lock's
sha256 is unchanged: the first run pays the install, later runs nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **extra}


def tool_python(lock: Path) -> Path:
    interpreter = shutil.which("python3.11") or (sys.executable if sys.version_info[:2] == (3, 11) else None)
    if interpreter is None:
        pytest.skip("python3.11 is not available")
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    root = Path(os.environ.get("TRASHNET_TEST_VENVS", Path.home() / ".cache" / "trashnet" / "test-venvs"))
    venv = root / f"{lock.stem}-{digest[:16]}"
    python, stamp = venv / "bin" / "python", venv / ".lock.sha256"
    if stamp.is_file() and stamp.read_text() == digest and python.is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-input", "--require-hashes",
                           "-r", str(lock)], capture_output=True, text=True, env=clean_env(), timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    stamp.write_text(digest)
    return python
