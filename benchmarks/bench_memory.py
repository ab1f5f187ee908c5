"""Benchmark: peak memory of `prepare`, `evaluate` and `predict` on many small images (issue 24).

    PYTHONPATH=. python benchmarks/bench_memory.py [--images 10000] [--baseline REF]

Writes ``--images`` generated 64 x 48 JPEGs into two class folders (glass, paper). They are the worst case for
near-duplicate detection: every photo is the same picture with one pixel changed, so no two files are
byte-identical (none is an exact duplicate) and all share one perceptual hash (all are near-duplicates).
Each command runs as its own process; its peak resident memory (``ru_maxrss`` of the child) and wall time
are recorded. ``evaluate`` and ``predict`` use the committed final model (``MODEL``: the
from-scratch ``results/cpu-scratch``, 128 px fp16).
``--baseline REF`` measures the same commands with the package as it is at git ref ``REF`` too (e.g.
``main``: the code before the change). Writes ``benchmarks/results/bench_memory.json``. Target: at most
500 MB for ``prepare`` and ``evaluate``.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trashnet.core import fileio, settings

RESULTS = Path(__file__).resolve().parent / "results" / "bench_memory.json"
# The from-scratch reference until results/cpu (ImageNet) is regenerated (issue 27).
MODEL = settings.RESULTS_DIR / "cpu-scratch" / "models" / "final" / "trashnet.tflite"
TARGET_MB = 500
# Runs a command and prints its peak RSS in KiB: RUSAGE_CHILDREN of a fresh process is that one child's.
_MEASURE = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
            "stderr=subprocess.PIPE); print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
            "sys.stderr.write(r.stderr.decode(errors='replace')[-400:])")


def generate(folder: Path, count: int) -> None:
    """``count`` JPEGs of one picture, each with one pixel changed, half glass and half paper."""
    rng = np.random.default_rng(24)
    base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for cls in ("glass", "paper"):
        (folder / cls).mkdir(parents=True)
    for i in range(count):
        pixels = base.copy()
        pixels[(i // 64) % 48, i % 64] = (i * 7 % 256, i * 13 % 256, i * 31 % 256)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
        (folder / ("glass" if i % 2 else "paper") / f"img{i:05d}.jpg").write_bytes(buffer.getvalue())


def measure(name: str, args: list[str], package_root: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(package_root), "OMP_NUM_THREADS": "2"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "trashnet", *args],
                          capture_output=True, text=True, env=env, cwd=package_root)
    seconds = round(time.perf_counter() - start, 1)
    status, peak_kib = (int(v) for v in done.stdout.split())
    row = {"command": name, "exit": status, "peak_rss_mb": round(peak_kib / 1024, 1), "seconds": seconds,
           "stderr_tail": done.stderr.strip().splitlines()[-1][:200] if done.stderr.strip() else ""}
    print(f"{name:<10} {row['peak_rss_mb']:8.1f} MB  {seconds:7.1f} s  exit {status}  {row['stderr_tail']}",
          flush=True)
    return row


def commands(source: Path, out: Path) -> list[tuple[str, list[str]]]:
    return [("prepare", ["prepare", "--source", str(source), "--out", str(out / "dataset")]),
            ("evaluate", ["evaluate", "--model", str(MODEL), "--data", str(source), "--threads", "2"]),
            ("predict", ["predict", str(source), "--model", str(MODEL), "--threads", "2", "--no-progress",
                         "--json"])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--baseline", help="also measure the package as it is at this git ref (e.g. main)")
    args = parser.parse_args()
    result: dict = {"benchmark": "memory", "images": args.images, "image_size": "64x48 JPEG",
                    "model": MODEL.relative_to(settings.REPO_ROOT).as_posix(), "target_mb": TARGET_MB, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as temp:
        temp = Path(temp)
        generate(temp / "photos", args.images)
        trees = {"this": settings.REPO_ROOT}
        if args.baseline:
            archive = subprocess.run(["git", "archive", args.baseline, "trashnet"], capture_output=True, check=True,
                                     cwd=settings.REPO_ROOT).stdout
            tarfile.open(fileobj=io.BytesIO(archive)).extractall(temp / "baseline", filter="data")
            trees[args.baseline] = temp / "baseline"
        for label, root in trees.items():
            print(f"-- {label}", flush=True)
            result["runs"][label] = [measure(name, argv, root)
                                     for name, argv in commands(temp / "photos", temp / f"out-{label}")]
    this = {row["command"]: row for row in result["runs"]["this"]}
    result["within_target"] = all(this[name]["peak_rss_mb"] <= TARGET_MB for name in ("prepare", "evaluate"))
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    fileio.write_json(RESULTS, result)
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
