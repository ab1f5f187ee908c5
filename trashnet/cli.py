"""``python -m trashnet <command>``: one entry point for every stage.

Each command lives in its own module, which defines ``configure(parser)`` (its arguments) and
``command(args) -> int`` (the exit status). Modules are imported only when their command runs, so
``predict`` never loads TensorFlow and ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("trashnet.data", "validate a <class>/<image> folder, split it and write dataset/ + manifest.csv"),
    "download": ("trashnet.download", "download the official TrashNet release and verify its checksum"),
    "run": ("trashnet.pipeline", "run every stage notebook for every variant (cached, resumable)"),
    "report": ("trashnet.report", "build the results chapter (id, en: HTML, PDF, exports) from the result files"),
    "predict": ("trashnet.predict", "classify image files, folders or globs with a .tflite model"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trashnet",
        description="Waste-image classification on TrashNet: baselines, pruning, quantization, report.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, summary) in COMMANDS.items():
        subparsers.add_parser(name, help=summary, description=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints usage / help, or the error for an unknown command
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    sub = argparse.ArgumentParser(prog=f"python -m trashnet {name}", description=COMMANDS[name][1])
    module.configure(sub)
    args = sub.parse_args(rest)
    return int(module.command(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
