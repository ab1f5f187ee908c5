"""Expected failures: bad input, no permission, no space, no network.

A ``UserError`` carries what is wrong and, when known, what to do; the CLI prints it as ONE line,
``error: <what is wrong> - <what to do>``, and exits with ``exit_status`` (1: the input or the system is
at fault, 2: the command line is). Anything else is a bug and keeps its traceback. ``--debug`` shows the
traceback of expected failures too.
"""

from __future__ import annotations

import errno

# OSErrors that are the user's or the machine's situation, not a bug: the CLI reports them in one line.
EXPECTED_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOENT,
                   errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST, errno.EBUSY}


class UserError(Exception):
    """An expected failure; ``hint`` says what to do about it."""

    exit_status = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message if hint is None else f"{message} - {hint}")
        self.message = message
        self.hint = hint


class UsageError(UserError):
    """A wrong command line: a bad option value, a missing argument."""

    exit_status = 2


def os_error_text(error: OSError) -> str:
    """``<what failed>: <why>``, e.g. ``/sys/x: Operation not permitted``."""
    name = error.filename if error.filename is not None else ""
    reason = error.strerror or str(error)
    return f"{name}: {reason}" if name else reason


def os_error_hint(error: OSError, option: str | None = None) -> str:
    """What to do about an OSError; ``option`` names the command's output option, when it has one."""
    elsewhere = f"choose another folder ({option})" if option else "choose another folder"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"free some disk space or {elsewhere}"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"fix the permissions or {elsewhere}"
    if error.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"a file stands where a folder is needed: move it or {elsewhere}"
    return "check the path"
