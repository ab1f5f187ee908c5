"""Atomically written files get the usual permissions (umask), not mkstemp's private 0600."""

import stat

from trashnet.core import fileio


def test_atomic_write_applies_the_umask(tmp_path):
    path = fileio.atomic_write_text(tmp_path / "metrics.json", "{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~fileio._UMASK  # noqa: SLF001
