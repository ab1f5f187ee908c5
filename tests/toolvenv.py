"""Fresh venvs from a hashed lock for tests of other ecosystems (MediaPipe, tflite-support), cached by lock hash.

``tool_python(lock)`` creates ``python3.11 -m venv`` under ``$TRASHNET_TEST_VENVS`` (default
``~/.cache/trashnet/test-venvs``), installs the lock with the project's one install rule
(``docker/install-lock.sh``: hash-checked, ``--no-deps``, then ``pip check``) and reuses it while the lock's
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


INSTALL_LOCK = Path(__file__).resolve().parents[1] / "docker" / "install-lock.sh"


def python311() -> str:
    """An interpreter to create venvs with (the locks are compiled for 3.11); skips the test without one."""
    interpreter = shutil.which("python3.11") or (sys.executable if sys.version_info[:2] == (3, 11) else None)
    if interpreter is None:
        pytest.skip("python3.11 is not available")
    return interpreter


def install_lock(python: Path, lock: Path, *pip_options: str, timeout: int = 1200) -> None:
    """``lock`` installed into the venv of ``python`` exactly as run_all.sh and the Dockerfile do."""
    done = subprocess.run([str(INSTALL_LOCK), str(python), str(lock), *pip_options], capture_output=True,
                          text=True, env=clean_env(), timeout=timeout)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-3000:]


def tool_python(lock: Path) -> Path:
    interpreter = python311()
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    root = Path(os.environ.get("TRASHNET_TEST_VENVS", Path.home() / ".cache" / "trashnet" / "test-venvs"))
    venv = root / f"{lock.stem}-{digest[:16]}"
    python, stamp = venv / "bin" / "python", venv / ".lock.sha256"
    if stamp.is_file() and stamp.read_text() == digest and python.is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True, timeout=120)
    install_lock(python, lock)
    stamp.write_text(digest)
    return python
