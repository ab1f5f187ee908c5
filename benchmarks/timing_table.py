"""Where a run's time went: per stage and per variant, from ``logs/<profile>/run.json``.

Reads the run record the pipeline writes (each variant's wall seconds, epochs or other work units, and the
estimate it started with) and, where present, each variant's ``metrics.json`` (training seconds,
conversion seconds), and writes a markdown table and a JSON file to benchmarks/results/:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/timing_table.py --profile cpu [--out DIR]
    PYTHONPATH=$PWD .venv/bin/python benchmarks/timing_table.py --run-json results/cpu/logs/run.json

Cached variants show the seconds of the run that made them (from their manifest); their share of this
run's wall time is zero, so the stage totals count only variants that ran (``done``/``failed``) unless
``--include-cached``.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trashnet.core import fileio, settings


def _metrics(root: Path, entry: dict[str, Any], profile: str) -> dict[str, Any]:
    folder = entry.get("folder") or ""
    for candidate in (root / folder, root / folder.replace(f"models/{profile}/", "models/", 1)):
        try:
            return fileio.read_json(candidate / "metrics.json")
        except (OSError, ValueError):
            continue
    return {}


def table(record: dict[str, Any], root: Path, *, include_cached: bool = False) -> dict[str, Any]:
    profile = record.get("profile", "")
    rows = []
    for variant_id in record.get("selected") or sorted(record.get("variant", {})):
        entry = record["variant"].get(variant_id, {})
        metrics = _metrics(root, entry, profile)
        seconds = entry.get("seconds")
        train = metrics.get("train_time_s")
        conversion = (metrics.get("conversion") or {}).get("seconds")
        measured = sum(v for v in (train, conversion) if isinstance(v, (int, float)))
        rows.append({
            "variant": variant_id, "stage": entry.get("stage"), "arch": entry.get("arch") or metrics.get("arch"),
            "status": entry.get("status"), "seconds": seconds, "units": entry.get("units"),
            "seconds_per_unit": round(seconds / entry["units"], 1) if seconds and entry.get("units") else None,
            "train_s": train, "conversion_s": conversion,
            "other_s": round(seconds - measured, 1) if isinstance(seconds, (int, float)) else None,
            "estimate_s": entry.get("estimate_s"), "estimate_from": entry.get("estimate_from"),
            "test_accuracy": (metrics.get("test") or {}).get("accuracy"),
        })
    stages: dict[str, dict[str, float]] = defaultdict(lambda: {"variants": 0, "seconds": 0.0})
    for row in rows:
        counted = row["status"] in ("done", "failed") or (include_cached and row["status"] == "cached")
        if counted and isinstance(row["seconds"], (int, float)):
            stages[row["stage"]]["variants"] += 1
            stages[row["stage"]]["seconds"] += row["seconds"]
    busy = sum(stage["seconds"] for stage in stages.values())
    for stage in stages.values():
        stage["seconds"] = round(stage["seconds"], 1)
        stage["share"] = round(stage["seconds"] / busy, 3) if busy else None
    return {"profile": profile, "wall_seconds": record.get("seconds"), "jobs": record.get("jobs"),
            "variant_seconds_sum": round(busy, 1), "started": record.get("started"),
            "data_source": record.get("data_source"), "stages": dict(stages), "variants": rows}


def _minutes(value: Any) -> str:
    return f"{value / 60:.1f}" if isinstance(value, (int, float)) else "–"


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Timing: profile {result['profile']}, -j {result['jobs']}, started {result['started']}", "",
             f"Wall time {_minutes(result['wall_seconds'])} min; the variants that ran add up to "
             f"{_minutes(result['variant_seconds_sum'])} min (more than the wall time when -j > 1).", "",
             "| stage | variants run | minutes | share |", "|---|---:|---:|---:|"]
    for stage in settings.STAGES:
        if stage in result["stages"]:
            s = result["stages"][stage]
            share = f"{100 * s['share']:.0f} %" if s["share"] is not None else "–"
            lines.append(f"| {stage} | {s['variants']} | {_minutes(s['seconds'])} | {share} |")
    lines += ["", "| variant | stage | status | min | units | s/unit | train s | convert s | other s | "
              "estimate min (from) | test acc |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for row in result["variants"]:
        accuracy = f"{100 * row['test_accuracy']:.2f} %" if row["test_accuracy"] is not None else "–"
        estimate = f"{_minutes(row['estimate_s'])} ({row['estimate_from']})" if row["estimate_s"] else "–"
        cells = [row["variant"], row["stage"], row["status"], _minutes(row["seconds"]), row["units"],
                 row["seconds_per_unit"], row["train_s"], row["conversion_s"], row["other_s"], estimate, accuracy]
        lines.append("| " + " | ".join("–" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--out", type=Path, help="output root of the run (default: $TRASHNET_OUT, else the repo)")
    parser.add_argument("--run-json", type=Path, help="a run.json to read instead (e.g. results/cpu/logs/run.json)")
    parser.add_argument("--include-cached", action="store_true")
    parser.add_argument("--name", help="output file stem (default: timing_<profile>)")
    args = parser.parse_args()
    if args.run_json:
        path = args.run_json.resolve()
        root = path.parents[1] if path.parent.name == "logs" else path.parents[2]
    else:
        layout = settings.Layout(args.out.resolve() if args.out else settings.default_output_root(), args.profile)
        path, root = layout.logs / "run.json", layout.root
    if not path.is_file():
        print(f"timing_table: {path} not found: run `./run_all.sh --profile {args.profile}` first", file=sys.stderr)
        return 2
    result = table(fileio.read_json(path), root, include_cached=args.include_cached)
    stem = args.name or f"timing_{result['profile']}"
    results = REPO / "benchmarks" / "results"
    fileio.write_json(results / f"{stem}.json", result)
    fileio.atomic_write_text(results / f"{stem}.md", markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
