"""Pipeline overheads at full scale: every variant of variants.yaml on the stand-in notebooks.

Measures (wall seconds) the first run (papermill + kernel start per variant, no training), the rerun with
nothing changed (target <= 30 s), and the report build, HTML + PDF (target <= 60 s), on the bundled sample.
Writes benchmarks/results/bench_pipeline.json.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_pipeline.py [-j 2] [--out /tmp/bench-pipeline]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from trashnet import fileio, provenance, report, settings

NOTEBOOKS = settings.REPO_ROOT / "tests" / "fixtures" / "notebooks"


def timed_run(out: Path, jobs: int, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "trashnet", "run", "--out", str(out), "-j", str(jobs),
                             "--variants", "*", "--no-report"], env=env, capture_output=True, text=True, cwd=settings.REPO_ROOT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])
    return seconds, result.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-j", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-pipeline"))
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    env = dict(os.environ, TRASHNET_NOTEBOOKS=str(NOTEBOOKS), STANDIN_BEHAVIOUR="{}")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(settings.REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop(settings.ENV_DATA, None)
    first, first_line = timed_run(args.out, args.j, env)
    rerun, rerun_line = timed_run(args.out, args.j, env)
    start = time.perf_counter()
    layout = settings.Layout(args.out, "quick")
    report.build(args.out, layout.profile, log=lambda message: None)
    report_seconds = time.perf_counter() - start
    record = fileio.read_json(layout.logs / "run.json")
    result = {
        "what": "all variants of variants.yaml, stand-in notebooks, bundled sample, quick profile",
        "variants": len(record["selected"]), "jobs": args.j,
        "first_run_s": round(first, 1), "first_run": first_line,
        "rerun_nothing_changed_s": round(rerun, 1), "rerun": rerun_line,
        "report_html_pdf_s": round(report_seconds, 1),
        "report_html_bytes": (layout.report / "index.html").stat().st_size,
        "report_pdf_bytes": (layout.report / "report.pdf").stat().st_size,
        "load_average": os.getloadavg(), "hardware": provenance.hardware(),
    }
    target = settings.REPO_ROOT / "benchmarks" / "results" / "bench_pipeline.json"
    fileio.write_json(target, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
