"""Pipeline overheads and the cost of iterating: first run, reruns, a selection change, the report.

On the bundled sample, quick profile, measures (wall seconds):

- the first run (papermill + kernel start per variant; with ``--real-notebooks`` also the training);
- the rerun with nothing changed, report included (its stage is cached too), and the same through
  ``./run_all.sh`` (target <= 5 s);
- the rerun after a change to the ``select:`` settings, which must rerun only ``final`` and the report
  (no training; the per-stage cache keys of trashnet.runner.cache);
- the report build on its own, HTML + PDF (target <= 60 s).

By default on the stand-in notebooks (tests/fixtures/notebooks: every variant of variants.yaml, no
training); ``--real-notebooks`` uses experiments/ and the quick profile's own variant list.
Writes benchmarks/results/bench_pipeline[_real].json.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_pipeline.py [-j 2] [--real-notebooks]
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

import yaml

from trashnet.core import fileio, profiles, provenance, settings
from trashnet.report import build as report

NOTEBOOKS = settings.REPO_ROOT / "tests" / "fixtures" / "notebooks"


def timed_run(out: Path, jobs: int, env: dict[str, str], extra: list[str], *,
              script: bool = False) -> tuple[float, dict]:
    """One run (``script``: through ./run_all.sh, environment checks included), the report built or cached."""
    command = ([str(settings.REPO_ROOT / "run_all.sh")] if script else [sys.executable, "-m", "trashnet", "run"])
    start = time.perf_counter()
    result = subprocess.run([*command, "--out", str(out), "-j", str(jobs), "--no-verify", *extra], env=env,
                            capture_output=True, text=True, cwd=settings.REPO_ROOT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])
    record = fileio.read_json(settings.Layout(out, "quick").logs / "run.json")
    ran = sorted(vid for vid, entry in record["variant"].items() if entry["status"] == "done")
    report_cached = any(line.startswith("report: cached") for line in result.stdout.splitlines())
    return seconds, {"last_line": next(line for line in reversed(result.stdout.splitlines()) if line.startswith("run:")),
                     "ran": ran, "report_rebuilt": not report_cached}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-j", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-pipeline"))
    parser.add_argument("--real-notebooks", action="store_true")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    env = dict(os.environ, STANDIN_BEHAVIOUR="{}")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(settings.REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop(settings.ENV_DATA, None)
    variants: list[str] = []
    if args.real_notebooks:
        env.pop("TRASHNET_NOTEBOOKS", None)
    else:
        env["TRASHNET_NOTEBOOKS"] = str(NOTEBOOKS)
        variants = ["--variants", "*"]
    # The same profile under its own name with a different selection tolerance: only `final` reads it.
    body = yaml.safe_load((settings.PROFILES_DIR / "quick.yaml").read_text())
    changed = args.out.parent / f"{args.out.name}-profile" / "quick.yaml"
    changed.parent.mkdir(parents=True, exist_ok=True)
    changed.write_text(yaml.safe_dump(profiles.deep_merge(body, {"select": {"accuracy_tolerance_pp": 42.0}})))

    env.setdefault("TRASHNET_PYTHON", sys.executable)  # run_all.sh: this interpreter, no venv setup
    first, first_info = timed_run(args.out, args.j, env, variants)
    rerun, rerun_info = timed_run(args.out, args.j, env, variants)
    script_rerun, script_info = timed_run(args.out, args.j, env, variants, script=True)
    select_change, select_info = timed_run(args.out, args.j, env, [*variants, "--profile", str(changed)])
    layout = settings.Layout(args.out, "quick")
    start = time.perf_counter()
    report.build(args.out, layout.profile, log=lambda message: None)
    report_seconds = time.perf_counter() - start
    record = fileio.read_json(layout.logs / "run.json")
    result = {
        "what": ("real stage notebooks" if args.real_notebooks else "stand-in notebooks, every variant")
                + ", bundled sample, quick profile",
        "variants": len(record["selected"]), "jobs": args.j,
        "first_run_s": round(first, 1), "first_run": first_info["last_line"],
        "rerun_nothing_changed_s": round(rerun, 1), "rerun_ran": rerun_info["ran"],
        "rerun_report_rebuilt": rerun_info["report_rebuilt"],
        "run_all_nothing_changed_s": round(script_rerun, 1), "run_all_ran": script_info["ran"],
        "run_all_report_rebuilt": script_info["report_rebuilt"],
        "rerun_after_select_change_s": round(select_change, 1), "select_change_ran": select_info["ran"],
        "select_change_report_rebuilt": select_info["report_rebuilt"],
        "report_html_pdf_s": round(report_seconds, 1),
        "report_html_bytes": (layout.report / "en" / "index.html").stat().st_size,
        "report_pdf_bytes": (layout.report / "en" / "report.pdf").stat().st_size,
        "load_average": os.getloadavg(), "hardware": provenance.hardware(),
    }
    name = "bench_pipeline_real.json" if args.real_notebooks else "bench_pipeline.json"
    fileio.write_json(settings.REPO_ROOT / "benchmarks" / "results" / name, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
