"""Benchmark: wall time of preparing the full TrashNet (hashing, validation, duplicates, split, copy).

    PYTHONPATH=. python benchmarks/bench_prepare.py [--source DIR] [--split official] [--repeat 3]

Source: ``--source``, else ``$TRASHNET_REAL_DATA``, else the bundled sample. Each repeat prepares into a
fresh temporary folder (a cold build; the page cache is warm after the first); one more run into the
same folder measures the "nothing changed" skip. Target: <= 30 s on 2 cores. Writes
``benchmarks/results/bench_prepare.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trashnet.data import prepare
from trashnet.core import fileio, settings

RESULTS = Path(__file__).resolve().parent / "results" / "bench_prepare.json"
TARGET_SECONDS = 30.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path,
                        default=os.environ.get(settings.ENV_REAL_DATA) or settings.SAMPLE_DIR)
    parser.add_argument("--split", choices=prepare.SPLIT_METHODS, default=None,
                        help="default: official for the full TrashNet, stratified otherwise")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    split = args.split or ("official" if Path(args.source).resolve() != settings.SAMPLE_DIR.resolve()
                           else "stratified")
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as temp:
        for i in range(args.repeat):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            report = prepare.prepare(args.source, Path(temp) / f"run{i}", split=split, seed=42)
            runs.append({"wall_s": round(time.perf_counter() - wall0, 3),
                         "cpu_s": round(time.process_time() - cpu0, 3)})
            print(f"run {i}: {runs[-1]['wall_s']:.2f} s wall, {runs[-1]['cpu_s']:.2f} s CPU", flush=True)
        wall0 = time.perf_counter()
        skipped = prepare.prepare(args.source, Path(temp) / "run0", split=split, seed=42)
        skip_s = time.perf_counter() - wall0
        assert skipped.skipped
    walls = [run["wall_s"] for run in runs]
    result = {
        "benchmark": "prepare",
        "source": str(Path(args.source).resolve()),
        "split": split,
        "files_seen": len(report.rows),
        "accepted": report.accepted,
        "rejected": report.rejected,
        "runs": runs,
        "wall_s_median": statistics.median(walls),
        "wall_s_min": min(walls),
        "images_per_s": round(len(report.rows) / statistics.median(walls), 1),
        "skip_unchanged_s": round(skip_s, 3),
        "target_s": TARGET_SECONDS,
        "meets_target": statistics.median(walls) <= TARGET_SECONDS,
        "workers": prepare._WORKERS,
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
    }
    fileio.write_json(RESULTS, result)
    print(f"median {result['wall_s_median']:.2f} s for {result['files_seen']} files "
          f"(target {TARGET_SECONDS:.0f} s, load {result['load_average_1m']}); skip: {skip_s:.2f} s -> {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
