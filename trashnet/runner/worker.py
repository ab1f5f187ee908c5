"""The worker: one process per variant that runs its stage notebook with papermill, keeps library noise out
of the log, and tidies the executed notebook (no machine paths) before it is kept."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import sys
import time
from pathlib import Path

from trashnet.core import fileio, progress, settings

KERNEL = "python3"


# --- the worker (a separate process per variant) -----------------------------------------------------

def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the worker gets SIGKILL when the runner dies, so a killed run leaves no orphan."""
    os.setpgrp()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def interrupt(signum, frame) -> None:
    """SIGTERM: unwind like Ctrl-C, so papermill shuts the kernel down and the runner cleans up."""
    raise KeyboardInterrupt(f"signal {signum}")


KERNEL_START_ATTEMPTS = 3
_KERNEL_START_FAILURES = ("Kernel died before replying to kernel_info", "Kernel didn't respond in")


def worker_main(job_file: str) -> int:
    """Run one notebook with papermill, render it to HTML; the error (if any) goes to ``error_file``."""
    import logging

    spec = fileio.read_json(job_file)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger().handlers[0].addFilter(_drop_noise)
    signal.signal(signal.SIGTERM, interrupt)
    import papermill

    status, error = 0, None
    try:
        # The kernel's epoch lines, compactly, in this log (the worker's stdout); its raw stderr filtered.
        with progress.echo(Path(spec["progress"]), logging.getLogger("trashnet").info), _filtered_stderr():
            for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
                try:
                    papermill.execute_notebook(spec["notebook"], spec["output"], parameters=spec["parameters"],
                                               kernel_name=KERNEL, cwd=spec["cwd"], log_output=True,
                                               progress_bar=False, request_save_on_cell_execute=True)
                    break
                except RuntimeError as exc:
                    # Two kernels starting at once can pick the same free TCP port (papermill#511): the loser
                    # dies before any cell ran, so starting it again is safe.
                    if not str(exc).startswith(_KERNEL_START_FAILURES) or attempt == KERNEL_START_ATTEMPTS:
                        raise
                    print(f"kernel start failed ({exc}); starting it again ({attempt + 1}/{KERNEL_START_ATTEMPTS})",
                          flush=True)
                    time.sleep(random.uniform(0.5, 2.0))
    except papermill.PapermillExecutionError as exc:
        status = 1
        error = {"type": exc.ename, "message": exc.evalue, "cell": exc.exec_count,
                 "traceback": [line for line in exc.traceback][-20:]}
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # kernel died, notebook unreadable, ...
        status = 1
        error = {"type": type(exc).__name__, "message": str(exc), "cell": None, "traceback": []}
    if Path(spec["output"]).exists():
        try:
            if spec.get("display"):
                tidy_executed(Path(spec["output"]), **spec["display"])
            os.chmod(spec["output"], 0o444)  # the executed notebook is a record, not a draft
            _render_html(Path(spec["output"]), Path(spec["html"]))
        except Exception as exc:  # a report without one notebook is better than no result
            print(f"nbconvert failed: {type(exc).__name__}: {exc}", flush=True)
    if error is not None:
        fileio.write_json(spec["error_file"], error)
    return status


# Library start-up lines on stderr that say nothing about the run (TensorFlow/XLA/absl logging, CUDA probing
# on a machine without a GPU, LiteRT's delegate notice). Anything else on stderr is kept.
_NOISE = re.compile(r"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\]|WARNING: All log messages before absl::InitializeLog"
                    r"|INFO: Created TensorFlow Lite XNNPACK delegate|.*(?:cuda drivers|cuInit|TF-TRT Warning|"
                    r"oneDNN custom operations|This TensorFlow binary is optimized|To enable the following instructions"
                    r"|Unable to register cu(?:DNN|FFT|BLAS) factory|computation placer already registered)"
                    # The TFLite converter's known notices (issue 28): a deprecation of its own API, a calibration
                    # note with the machine's venv path, its C++ summary line, and the echoed warnings.warn( line.
                    r"|WARNING:absl:Please consider providing the trackable_obj|.*UserWarning: Statistics for "
                    r"quantized inputs were expected|fully_quantize: \d+, inference_type: \d+|\s+warnings\.warn\($)")


@contextlib.contextmanager
def _filtered_stderr():
    """File descriptor 2 through a pipe that drops ``_NOISE`` lines, for this process and the kernel it starts:
    TensorFlow prints its first lines straight to the kernel's inherited stderr while it loads, before any
    log level applies, and ipykernel copies them there as well as into the notebook."""
    import threading

    read_end, write_end = os.pipe()
    saved = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "r", encoding="utf-8", errors="replace") as source, \
                os.fdopen(os.dup(saved), "w", encoding="utf-8") as target:
            for line in source:
                if not _NOISE.match(line):
                    target.write(line)
                    target.flush()

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe ends when the kernel, its last other writer, has exited
        os.close(saved)
        thread.join(timeout=5)


def _drop_noise(record) -> bool:
    """Logging filter of the worker (the variant's log): library start-up lines out of a kernel's stderr."""
    if not isinstance(record.msg, str) or record.args:
        return True
    lines = record.msg.splitlines(keepends=True)
    kept = [line for line in lines if not _NOISE.match(line)]
    if len(kept) != len(lines):
        record.msg = "".join(kept).rstrip("\n")
    return bool(record.msg.strip())


def tidy_executed(notebook: Path, *, root: str, temp: str, target: str) -> None:
    """Make the executed notebook read as the record of its final folder: the injected parameters show
    paths relative to the output root with the final folder name (not the runner's hidden partial folder),
    and library start-up noise is dropped from stderr outputs."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)

    def portable(text: str) -> str:  # no folder of the run machine: final folder names, relative to the root
        text = text.replace(temp, target).replace('"' + root.rstrip("/") + '"', '"."')
        return text.replace(root.rstrip("/") + "/", "").replace(str(settings.REPO_ROOT) + "/", "")

    injected = any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            cell.source = ("# Parameters injected by the pipeline; paths shown relative to the output root.\n"
                           + portable(cell.source))
        elif "parameters" in tags and injected:  # the stage's defaults name another variant: not this run's
            cell.source = "# The stage notebook's default parameters, replaced by this run's in the next cell."
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                lines = [line for line in output.text.splitlines(keepends=True) if not _NOISE.match(line)]
                if not "".join(lines).strip():
                    continue
                output.text = "".join(lines)
            if output.get("output_type") == "stream":
                output.text = portable(output.text)
            for kind, value in (output.get("data") or {}).items():
                if kind.startswith("text/") and isinstance(value, str):
                    output["data"][kind] = portable(value)
            kept.append(output)
        cell.outputs = kept
    papermill = nb.metadata.get("papermill")
    if papermill:  # its input/output paths and parameters, as the injected cell shows them
        nb.metadata["papermill"] = nbformat.from_dict(json.loads(portable(json.dumps(papermill))))
    nbformat.write(nb, notebook)


def _render_html(notebook: Path, html: Path) -> None:
    import nbconvert
    import nbformat

    exporter = nbconvert.HTMLExporter()
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    fileio.atomic_write_text(html, body)


def ansi_free(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
