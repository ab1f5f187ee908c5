"""The environment step installs exactly the lock, whatever pip the venv bundles and whatever the index serves.

A package index that gained a newer release of a package the lock reaches through an extra broke every fresh
install with pip 23 (weasyprint -> ``fonttools[woff]``; docs/install.md). These tests build that situation
from wheels made here (no network): ``leaf`` 1.0 and 1.1 on the index, the lock pinning 1.0, and ``app``
asking for ``leaf[fast]``. ``docker/install-lock.sh`` (used by run_all.sh, the Dockerfile and the tool venvs)
must install the pinned 1.0, with the pip that Python 3.11 bundles and with the oldest one it ever bundled.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest
import toolvenv

from trashnet.core import settings

# CPython 3.11.0 bundled pip 22.3, the oldest pip a supported Python brings; pinned by hash.
OLDEST_PIP = "pip==22.3 --hash=sha256:1daab4b8d3b97d1d763caeb01a4640a2250a0ea899e257b1e44b9eded91e15ab\n"


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(folder: Path, name: str, version: str, metadata: str = "") -> Path:
    """A minimal pure-Python wheel: one module and a dist-info with ``metadata`` lines (Requires-Dist...)."""
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": f"__version__ = {version!r}\n".encode(),
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{metadata}".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{path},{_digest(data)},{len(data)}\n" for path, data in files.items()) + f"{info}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in {**files, f"{info}/RECORD": record.encode()}.items():
            archive.writestr(member, data)
    return path


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> tuple[Path, Path]:
    """A find-links index with leaf 1.0 and a newer leaf 1.1, and a lock that pins leaf 1.0."""
    folder = tmp_path_factory.mktemp("index")
    leaf_extra = "Provides-Extra: fast\nRequires-Dist: turbo; extra == \"fast\"\n"
    pinned = [build_wheel(folder, "app", "1.0", "Requires-Dist: leaf[fast]>=1.0\n"),
              build_wheel(folder, "leaf", "1.0", leaf_extra),
              build_wheel(folder, "turbo", "1.0")]
    build_wheel(folder, "leaf", "1.1", leaf_extra)  # the index's newer release, not in the lock
    lock = folder / "requirements.lock"
    lock.write_text("".join(f"{path.name.split('-')[0]}=={path.name.split('-')[1]} "
                            f"--hash=sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}\n" for path in pinned))
    return folder, lock


def fresh_venv(folder: Path, pip_lock: str | None = None) -> Path:
    """A venv made the way run_all.sh makes it; with ``pip_lock``, its pip replaced by that pinned one."""
    subprocess.run([toolvenv.python311(), "-m", "venv", str(folder)], check=True, timeout=180)
    python = folder / "bin" / "python"
    if pip_lock is not None:
        lock = folder / "pip.lock"
        lock.write_text(pip_lock)
        done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--require-hashes", "-r", str(lock)],
                              capture_output=True, text=True, env=toolvenv.clean_env(), timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    return python


def installed(python: Path) -> dict[str, str]:
    code = "import importlib.metadata as m; print({d.metadata['Name']: d.version for d in m.distributions()})"
    return eval(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True,  # noqa: S307
                               env=toolvenv.clean_env()).stdout)


@pytest.mark.parametrize("pip", ["bundled", "oldest"])
def test_the_lock_installs_as_pinned_when_the_index_serves_newer(index, tmp_path, pip):
    folder, lock = index
    python = fresh_venv(tmp_path / "venv", OLDEST_PIP if pip == "oldest" else None)
    toolvenv.install_lock(python, lock, "--no-index", "--find-links", str(folder), timeout=300)
    versions = installed(python)
    assert (versions["app"], versions["leaf"], versions["turbo"]) == ("1.0", "1.0", "1.0")


def test_an_incomplete_lock_fails_by_name(index, tmp_path):
    # --no-deps trusts the lock to be complete; pip check catches a lock that misses a dependency.
    folder, lock = index
    partial = tmp_path / "partial.lock"
    partial.write_text("".join(line for line in lock.read_text().splitlines(keepends=True)
                               if not line.startswith("leaf")))
    python = fresh_venv(tmp_path / "venv")
    done = subprocess.run([str(toolvenv.INSTALL_LOCK), str(python), str(partial), "--no-index", "--find-links",
                           str(folder)], capture_output=True, text=True, env=toolvenv.clean_env(), timeout=300)
    assert done.returncode == 1
    assert "leaf" in done.stderr and "recompile it" in done.stderr


@pytest.mark.slow
def test_a_real_tool_lock_installs_with_the_oldest_pip(tmp_path):
    # The metadata writer's lock from the real package index, with pip 22.3; the writer's schema imports
    # from wheels alone (no Debian libusb).
    python = fresh_venv(tmp_path / "venv", OLDEST_PIP)
    toolvenv.install_lock(python, settings.REPO_ROOT / "requirements-metadata.lock")
    code = ("import flatbuffers\n"
            "from tensorflow_lite_support.metadata import metadata_schema_py_generated, schema_py_generated")
    subprocess.run([str(python), "-c", code], check=True, env=toolvenv.clean_env(), timeout=120)
