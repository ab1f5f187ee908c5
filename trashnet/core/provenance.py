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

from trashnet.core import fileio, settings

LIBRARIES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "numpy",
             "pillow", "scikit-learn", "papermill")
# Modules whose code cannot change a stage's results: left out of the whole-package code hash.
# "report": the reporter package; "runner": the scheduler and cache around the stages.
_NOT_RESULT_CODE = {"report", "runner", "cli.py", "__main__.py"}
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


def _module_file(dotted: str, package_dir: Path) -> str | None:
    """The file of package module ``dotted`` (``stages.train`` -> ``stages/train.py``, a package -> its
    ``__init__.py``), relative to the package; ``None`` when it is no module (an attribute)."""
    parts = dotted.split(".") if dotted else []
    for candidate in (Path(*parts).with_suffix(".py") if parts else None, Path(*parts, "__init__.py")):
        if candidate is not None and (package_dir / candidate).is_file():
            return candidate.as_posix()
    return None


def imported_modules(source: str, package: str = PACKAGE, *, here: str = "",
                     package_dir: Path | None = None) -> set[str]:
    """The package modules ``source`` imports, as dotted names relative to the package (``stages.train``),
    read with ``ast`` (nothing runs); imports inside functions count too.

    ``here``: the dotted name of the module ``source`` is (for relative imports). ``from trashnet.x import y``
    yields ``x.y`` when that is a module, else ``x`` (``y`` is then one of its attributes).
    """
    package_dir = Path(package_dir or CODE_DIR)
    here_package = here.split(".")[:-1] if here else []
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package and len(parts) > 1:
                    found.add(".".join(parts[1:]))
        elif isinstance(node, ast.ImportFrom):
            module = node.module.split(".") if node.module else []
            if node.level:  # relative: inside the package itself
                base = here_package[: len(here_package) - (node.level - 1)] + module
            elif module and module[0] == package:
                base = module[1:]
            else:
                continue
            for alias in node.names:
                dotted = ".".join([*base, alias.name])
                found.add(dotted if _module_file(dotted, package_dir) else ".".join(base))
    return {name for name in found if name}


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
    """Every package source file the ``entries`` modules (dotted, ``stages.train``) reach through imports,
    transitively, as paths relative to the package (``stages/train.py``).

    Computed statically over the package's files, so it does not import TensorFlow. The ``__init__.py`` of
    the package and of every sub-package on the way count: Python runs them before any of their modules.
    """
    package_dir = Path(package_dir or CODE_DIR)
    seen: set[str] = set()
    pending = ["", *entries]
    while pending:
        name = pending.pop()
        parts = name.split(".") if name else []
        parents = [".".join(parts[:depth]) for depth in range(len(parts))]  # "", "stages", ...
        for module in [*parents, name]:
            file = _module_file(module, package_dir)
            if file is None or file in seen:
                continue
            seen.add(file)
            here = module if not file.endswith("__init__.py") else f"{module}.__init__".lstrip(".")
            pending.extend(imported_modules((package_dir / file).read_text(encoding="utf-8"), here=here,
                                            package_dir=package_dir))
    return sorted(seen)


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
