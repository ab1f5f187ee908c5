"""What made a result: code version, lockfile, data, libraries, seed, hardware.

Every result file carries ``collect(...)`` so any number in the report can be traced to the exact
config, code and data that produced it. Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from trashnet import fileio, settings

LIBRARIES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "numpy",
             "pillow", "scikit-learn", "papermill")
# Modules whose code cannot change a stage's results: left out of the whole-package code hash.
# "report": the reporter package (trashnet/report/).
_NOT_RESULT_CODE = {"report", "cli.py", "__main__.py", "pipeline.py"}
PACKAGE = "trashnet"
CODE_DIR = settings.PACKAGE_DIR  # where the hashed sources are read from (tests point it at a copy)


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


def release_version(profile: str, repo: Path = settings.REPO_ROOT) -> str:
    """The release version (PEP 440): ``<tag>+<profile>`` at a ``v*`` tag, else
    ``<package version>+<profile>.g<short commit>``; ``.dirty`` when tracked files differ from the commit.

    E.g. ``0.2.0+cpu`` at tag v0.2.0, ``0.2.0+cpu.g1a2b3c4`` between tags.
    """
    from trashnet import __version__

    local = "".join(c if c.isalnum() else "." for c in profile.lower()).strip(".") or "none"
    commit = git_commit(repo)
    try:
        tag = subprocess.run(["git", "describe", "--tags", "--exact-match", "--match", "v[0-9]*", "HEAD"], cwd=repo,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        tag = None
    if tag is not None and tag.returncode == 0 and tag.stdout.strip():
        version = f"{tag.stdout.strip()[1:]}+{local}"
    elif commit == "unknown":
        version = f"{__version__}+{local}.unknown"
    else:
        version = f"{__version__}+{local}.g{commit[:7]}"
    return version + (".dirty" if commit.endswith("-dirty") else "")


def code_hash(modules: Iterable[str] | None = None) -> str:
    """sha256 over package sources (a code version that needs no git).

    ``modules``: file names relative to the package (``import_closure``'s answer), for a cache key that
    covers only what a stage imports; ``None``: every result-producing source (the provenance record).
    """
    if modules is None:
        names = [path.relative_to(CODE_DIR).as_posix() for path in CODE_DIR.rglob("*.py")
                 if path.relative_to(CODE_DIR).parts[0] not in _NOT_RESULT_CODE]
    else:
        names = list(modules)
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(name.encode())
        digest.update((CODE_DIR / name).read_bytes())
    return digest.hexdigest()


def imported_modules(source: str, package: str = PACKAGE) -> set[str]:
    """Names of the package's top-level modules that ``source`` imports, read with ``ast`` (nothing runs).

    Every import statement counts, those inside functions too: a lazy import is still code that runs.
    ``from trashnet import x`` yields ``x`` whether or not it is a module; ``import_closure`` keeps files.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package and len(parts) > 1:
                    found.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".") if node.module else []
            if node.level:  # relative: inside the package itself
                found.update([module[0]] if module else [alias.name for alias in node.names])
            elif module and module[0] == package:
                found.update([module[1]] if len(module) > 1 else [alias.name for alias in node.names])
    return found


def notebook_imports(path: str | os.PathLike, package: str = PACKAGE) -> set[str]:
    """The package modules a notebook's code cells import (IPython magics and shell lines skipped)."""
    found: set[str] = set()
    for cell in json.loads(Path(path).read_text(encoding="utf-8")).get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        try:
            found |= imported_modules("\n".join(lines), package)
        except SyntaxError:
            continue  # a cell that is not plain Python imports nothing we can see
    return found


def import_closure(entries: Iterable[str], package_dir: Path | None = None) -> list[str]:
    """Every package source file the ``entries`` modules reach through imports, transitively.

    Computed statically over the package's files, so it does not import TensorFlow. The package's
    ``__init__.py`` always counts: Python runs it before any of its modules.
    """
    package_dir = Path(package_dir or CODE_DIR)
    seen: set[str] = set()
    pending = ["__init__", *entries]
    while pending:
        name = pending.pop()
        path = package_dir / f"{name}.py"
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        pending.extend(imported_modules(path.read_text(encoding="utf-8")))
    return sorted(f"{name}.py" for name in seen)


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
                            "system": platform.system(),
                            # set by `run -j N` (cores / N per worker); timings depend on it
                            "intra_op_threads": os.environ.get("TF_NUM_INTRAOP_THREADS", "default")}
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
