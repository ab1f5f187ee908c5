"""``python -m trashnet <command>``: one entry point for every stage.

Each command lives in its own module, which defines ``configure(parser)`` (its arguments) and
``command(args) -> int`` (the exit status). Modules are imported only when their command runs, so
``predict`` never loads TensorFlow and ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from trashnet.core import registry
from trashnet.core.errors import EXPECTED_ERRNOS, UsageError, UserError, os_error_hint, os_error_text

# name -> (module, one-line help). The stages (train, prune, quantize, final, report) come from the registry.
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("trashnet.data.prepare", "validate a <class>/<image> folder, split it and write dataset/ + manifest.csv"),
    "download": ("trashnet.data.download", "download the official TrashNet release and verify its checksum"),
    "run": ("trashnet.runner.pipeline", "run every stage notebook for every variant (cached, resumable)"),
    **{stage.name: ("trashnet.runner.single" if stage.per_variant else f"trashnet.{stage.module}", stage.summary)
       for stage in registry.STAGES.values()},
    "verify": ("trashnet.runner.verify", "compare a run with committed reference results (results/<profile>/)"),
    "publish": ("trashnet.runner.publish", "copy a run's small outputs into results/<profile>/ (at most 40 MB)"),
    "predict": ("trashnet.deploy.predict", "classify image files, folders or globs with a .tflite model"),
    "evaluate": ("trashnet.deploy.evaluate", "measure a .tflite model on any labelled <class>/<image> folder"),
    "release": ("trashnet.deploy.release", "pack the final model as dist/trashnet-<version>.zip (byte-reproducible)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is a ``UsageError`` (one line, exit 2) instead of usage + exit."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}", f"see {self.prog} --help")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m trashnet",
        description="Waste-image classification on TrashNet: baselines, pruning, quantization, report.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, summary) in COMMANDS.items():
        subparsers.add_parser(name, help=summary, description=summary, add_help=False)
    return parser


def _dispatch(argv: list[str], state: dict) -> int:
    parser = build_parser()
    while argv and argv[0] == "--debug":
        state["debug"], argv = True, argv[1:]
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints usage / help, or the error for an unknown command
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    sub = _Parser(prog=f"python -m trashnet {name}", description=COMMANDS[name][1])
    module.configure(sub)
    sub.set_defaults(stage=name)  # a stage command's module serves every stage (runner.single)
    sub.add_argument("--debug", action="store_true", help="show the traceback of any error")
    state["debug"] = state["debug"] or "--debug" in rest  # before parsing: a usage error honours it too
    args = sub.parse_args(rest)
    return int(module.command(args) or 0)


def _network_error(error: BaseException) -> bool:
    import socket
    import urllib.error

    return isinstance(error, (urllib.error.URLError, ConnectionError, TimeoutError, socket.gaierror))


def _fail(text: str, status: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print("error: " + "; ".join(line.strip() for line in text.splitlines() if line.strip()), file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """Run a command. Expected failures (``errors.UserError``; no permission, no space, no network) print
    ONE line, ``error: <what is wrong> - <what to do>``, and return 1 or 2; ``--debug`` adds the traceback.
    Anything else is a bug and propagates with its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    state = {"debug": False}
    try:
        return _dispatch(argv, state)
    except UserError as error:
        return _fail(str(error), error.exit_status, state["debug"])
    except OSError as error:
        if _network_error(error):
            reason = getattr(error, "reason", None) or error
            return _fail(f"network: {reason} - check the connection (or the URL) and try again", 1, state["debug"])
        if error.errno not in EXPECTED_ERRNOS:
            raise
        return _fail(f"{os_error_text(error)} - {os_error_hint(error)}", 1, state["debug"])
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
