"""Benchmark: what the reliability checks cost, and how long each probe of issue 17 takes to end.

    PYTHONPATH=. python benchmarks/bench_reliability.py [--source DIR] [--repeat 3]

Source: ``--source``, else ``$TRASHNET_REAL_DATA``, else the bundled sample. Measures, on a prepared copy:
``prepare.verify_prepared`` (sha256 of every prepared image) and the whole up-to-date check of ``run``'s data
step (``dataprep.prepare_data``: source fingerprint + verification). Then times the issue's probes as
subprocesses (target: each ends within 10 s, no traceback), those of issue 24 included (a class map that is a
pipe or /dev/zero, a glob through two link loops, a server sending one byte a second, a file:// pipe, a small
bundle holding a 1 GiB model, publish over a user's folder, verify on nothing). Writes
``benchmarks/results/bench_reliability.json``.
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import zipfile
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trashnet.core import config, fileio, settings
from trashnet.data import prepare
from trashnet.runner import dataprep

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
            "last_stderr_line": last[:200], "within_limit": seconds < PROBE_LIMIT_S, "_stderr": stderr}


def _trickle_server() -> str:
    """A local server that sends one byte a second (headers included); a URL of it."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            connection, _ = listener.accept()
            with connection:
                try:
                    for byte in b"HTTP/1.0 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100:
                        connection.sendall(bytes([byte]))
                        time.sleep(1.0)
                except OSError:
                    continue

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/slow.zip"


def _issue24_probes(temp: Path) -> list[dict]:
    model = settings.RESULTS_DIR / "cpu" / "models" / "final" / "trashnet.tflite"
    os.mkfifo(temp / "map.yaml")
    os.mkfifo(temp / "pipe.zip")
    loops = temp / "loops"
    for cls in ("glass", "paper"):
        (loops / cls).mkdir(parents=True)
        shutil.copyfile(settings.SAMPLE_DIR / cls / f"{cls}1.jpg", loops / cls / f"{cls}1.jpg")
    (loops / "a").symlink_to(".")
    (loops / "b").symlink_to(".")
    with zipfile.ZipFile(temp / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("t/trashnet.tflite", "w", force_zip64=True) as handle:
            for _ in range(1024):
                handle.write(bytes(1 << 20))
    docs = temp / "docs"
    docs.mkdir()
    (docs / "thesis.docx").write_text("years of work")
    (temp / "R" / "models").mkdir(parents=True)
    run = temp / "run"
    variant = settings.Layout(run, "quick").variant_dir("train", "mobilenet_v2")
    variant.mkdir(parents=True)
    fileio.write_json(variant / "metrics.json", {"test": {"accuracy": 0.8}})
    evaluate = ["evaluate", "--model", str(model), "--data", str(loops)]
    probes = [
        _probe("evaluate --class-map <named pipe>", [*evaluate, "--class-map", str(temp / "map.yaml")]),
        _probe("evaluate --class-map /dev/zero", [*evaluate, "--class-map", "/dev/zero"]),
        _probe("predict 'd/**/*.jpg' with d/a -> . and d/b -> .", ["predict", f"{loops}/**/*.jpg", "--model",
                                                                     str(model), "--no-progress"]),
        _probe("download from a server sending 1 byte/s, --timeout 3",
               ["download", "--out", str(temp / "dl"), "--url", _trickle_server(), "--timeout", "3"]),
        _probe("download --url file:///<named pipe>", ["download", "--out", str(temp / "dl"), "--url",
                                                        (temp / "pipe.zip").as_uri()]),
        _probe(f"predict with a {(temp / 'bomb.zip').stat().st_size // 1024} KiB bundle holding a 1 GiB model",
               ["predict", str(loops), "--model", str(temp / "bomb.zip")]),
        _probe("publish --to a user's folder", ["publish", "--profile", "quick", "--out", str(run), "--to", str(docs)]),
        _probe("publish --to OUT", ["publish", "--profile", "quick", "--out", str(run), "--to", str(run)]),
        _probe("verify R with an empty R/models", ["verify", str(temp / "R"), "--out", str(run), "--profile", "quick"]),
    ]
    probes[2]["classified_once_each"] = "2 classified, 0 failed" in probes[2].pop("_stderr")
    assert (docs / "thesis.docx").read_text() == "years of work"
    return probes


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
        layout = settings.Layout(temp / "out", "quick")
        cfg = config.DataConfig(split=split)
        start = time.perf_counter()
        dataprep.prepare_data(source, layout, cfg, log=lambda message: None)
        first = round(time.perf_counter() - start, 2)
        verify = _timed(lambda: prepare.verify_prepared(layout.dataset), args.repeat)
        up_to_date = _timed(lambda: dataprep.prepare_data(source, layout, cfg, log=lambda message: None),
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
            *_issue24_probes(temp),
        ]
        for probe in probes:
            probe.pop("_stderr", None)
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
