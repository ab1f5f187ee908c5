"""What made a result: code version, lockfile, data, libraries, seed, hardware.

Every result file carries ``collect(...)`` so any number in the report can be traced to the exact
config, code and data that produced it. Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trashnet import fileio, settings

LIBRARIES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "numpy",
             "pillow", "scikit-learn", "papermill")
# Modules whose code cannot change a stage's results: left out of the cache key.
_NOT_RESULT_CODE = {"report", "cli.py", "__main__.py", "pipeline.py"}  # report: the reporter package


def git_commit(repo: Path = settings.REPO_ROOT) -> str:
    """The commit, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("TRASHNET_GIT_COMMIT", "unknown")  # set in the Docker image
    return f"{commit}-dirty" if dirty else commit


def code_hash() -> str:
    """sha256 over the package's result-producing sources (a code version that needs no git)."""
    digest = hashlib.sha256()
    for path in sorted(settings.PACKAGE_DIR.rglob("*.py")):
        if path.relative_to(settings.PACKAGE_DIR).parts[0] in _NOT_RESULT_CODE:
            continue
        digest.update(str(path.relative_to(settings.PACKAGE_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def lockfile_hash() -> str:
    return fileio.sha256_file(settings.LOCK_FILE) if settings.LOCK_FILE.exists() else "missing"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
                            "system": platform.system()}
    if "tensorflow" in sys.modules:  # only ask TensorFlow about GPUs if it is already loaded
        tf = sys.modules["tensorflow"]
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    return info


def collect(*, seed: int | None = None, profile: str | None = None, config: dict | None = None,
            data_manifest: str | os.PathLike | None = None, weights: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "code_sha256": code_hash(),
        "lockfile_sha256": lockfile_hash(),
        "libraries": library_versions(),
        "hardware": hardware(),
    }
    if seed is not None:
        record["seed"] = seed
    if profile is not None:
        record["profile"] = profile
    if weights is not None:
        record["weights"] = weights
    if config is not None:
        record["config"] = config
    if data_manifest is not None:
        record["data_manifest_sha256"] = fileio.sha256_file(data_manifest)
    return record
