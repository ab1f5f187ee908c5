"""Benchmark: what the reliability checks cost, and how long each probe of issue 17 takes to end.

    PYTHONPATH=. python benchmarks/bench_reliability.py [--source DIR] [--repeat 3]

Source: ``--source``, else ``$TRASHNET_REAL_DATA``, else the bundled sample. Measures, on a prepared copy:
``data.verify_prepared`` (sha256 of every prepared image) and the whole up-to-date check of ``run``'s data
step (``pipeline.prepare_data``: source fingerprint + verification). Then times the issue's probes as
subprocesses (target: each ends within 10 s, no traceback). Writes ``benchmarks/results/bench_reliability.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trashnet import config, data, fileio, pipeline, settings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_reliability.json"
PROBE_LIMIT_S = 10.0


def _timed(function, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(round(time.perf_counter() - start, 3))
    return times


def _probe(name: str, args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(settings.REPO_ROOT)}
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "trashnet", *args], capture_output=True, text=True,
                              timeout=60, env=env, cwd=settings.REPO_ROOT)
        status, stderr = done.returncode, done.stderr
    except subprocess.TimeoutExpired:
        status, stderr = "timeout", ""
    seconds = round(time.perf_counter() - start, 2)
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return {"probe": name, "exit": status, "seconds": seconds, "traceback": "Traceback" in stderr,
            "last_stderr_line": last[:200], "within_limit": seconds < PROBE_LIMIT_S}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path,
                        default=os.environ.get(settings.ENV_REAL_DATA) or settings.SAMPLE_DIR)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    source = Path(args.source).resolve()
    split = "official" if source != settings.SAMPLE_DIR.resolve() else "stratified"
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as temp:
        temp = Path(temp)
        layout = settings.Layout(temp / "out")
        cfg = config.DataConfig(split=split)
        start = time.perf_counter()
        pipeline.prepare_data(source, layout, cfg, log=lambda message: None)
        first = round(time.perf_counter() - start, 2)
        verify = _timed(lambda: data.verify_prepared(layout.dataset), args.repeat)
        up_to_date = _timed(lambda: pipeline.prepare_data(source, layout, cfg, log=lambda message: None),
                            args.repeat)
        accepted = sum(1 for _ in (layout.dataset).rglob("*.jpg")) + sum(1 for _ in layout.dataset.rglob("*.png"))

        fifo = temp / "fifo"
        for cls, name in (("glass", "glass1.jpg"), ("paper", "paper1.jpg")):
            (fifo / cls).mkdir(parents=True)
            shutil.copyfile(settings.SAMPLE_DIR / cls / name, fifo / cls / name)
        os.mkfifo(fifo / "glass" / "p.jpg")
        (fifo / "paper" / "z.jpg").symlink_to("/dev/zero")
        mine = temp / "mine"
        (mine / "photos").mkdir(parents=True)
        (mine / "manifest.csv").write_text("id\n")
        probes = [
            _probe("prepare over a user's folder holding manifest.csv",
                   ["prepare", "--source", str(settings.SAMPLE_DIR), "--out", str(mine)]),
            _probe("prepare a source with a fifo and a link to /dev/zero",
                   ["prepare", "--source", str(fifo), "--out", str(temp / "fo")]),
            _probe("prepare --ratios nan nan nan",
                   ["prepare", "--source", str(fifo), "--out", str(temp / "n"), "--ratios", "nan", "nan", "nan"]),
            _probe("prepare into /sys/x", ["prepare", "--source", str(fifo), "--out", "/sys/x/d"]),
            _probe("run into /sys/x", ["run", "--out", "/sys/x", "--no-report"]),
            _probe("download into /sys/x", ["download", "--out", "/sys/x/d", "--url", "http://127.0.0.1:9/x.zip"]),
            _probe("run --variants ''", ["run", "--variants", "", "--out", str(temp / "r"), "--no-report"]),
            _probe("predict --workers -1", ["predict", "x.jpg", "--model", "m.tflite", "--workers", "-1"]),
        ]
        user_files_kept = (mine / "manifest.csv").read_text() == "id\n" and (mine / "photos").is_dir()
    result = {
        "benchmark": "reliability",
        "source": str(source), "split": split, "prepared_images": accepted,
        "first_prepare_s": first,
        "verify_prepared_s": verify, "verify_prepared_median_s": statistics.median(verify),
        "run_data_step_up_to_date_s": up_to_date, "run_data_step_median_s": statistics.median(up_to_date),
        "probes": probes, "user_files_kept": user_files_kept,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    fileio.write_json(RESULTS, result)
    for probe in probes:
        print(f"{probe['seconds']:6.2f} s  exit {probe['exit']}  {probe['probe']}: {probe['last_stderr_line']}")
    print(f"verify_prepared {result['verify_prepared_median_s']} s, data step up to date "
          f"{result['run_data_step_median_s']} s ({accepted} images); user files kept: {user_files_kept}")
    return 0 if all(p["within_limit"] and not p["traceback"] for p in probes) and user_files_kept else 1


if __name__ == "__main__":
    sys.exit(main())
