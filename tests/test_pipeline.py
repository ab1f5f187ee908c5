"""The runner on stand-in notebooks: caching, resume after a kill, failures, variant selection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import standin
from trashnet.core import config, fileio, profiles, records, settings
from trashnet.runner import cache, pipeline, plan, scheduler, worker


def manifest(out: Path, stage: str, variant: str) -> dict:
    return fileio.read_json(settings.Layout(out, "quick").variant_dir(stage, variant) / settings.RUN_MANIFEST_NAME)


@pytest.mark.slow
def test_first_run_writes_every_contract_file(tmp_path_factory):
    out = standin.completed_run(tmp_path_factory)
    layout = settings.Layout(out, "quick")
    assert layout.data_manifest.exists()
    record = fileio.read_json(layout.logs / scheduler.RUN_RECORD)
    assert record["selected"] == standin.SELECTED
    assert {v["status"] for v in record["variant"].values()} == {"done"}
    for variant_id, entry in record["variant"].items():
        folder = out / entry["folder"]
        done = cache.read_valid_manifest(folder)
        assert done is not None, variant_id
        assert f"{variant_id}.ipynb" in done.files and f"{variant_id}.html" in done.files
        assert (layout.logs / f"{variant_id}.log").exists()
    assert (layout.variant_dir("final", "final") / "selection.json").exists()
    # Nothing temporary is left behind.
    assert not [p for p in layout.models.rglob(".*") if cache.PARTIAL in p.name or cache.RETIRED in p.name]


@pytest.mark.slow
def test_rerun_with_nothing_changed_does_nothing(tmp_path_factory, tmp_path):
    # A copy in another folder: the cache depends on inputs, not on where the output root is.
    out = standin.copy_run(standin.completed_run(tmp_path_factory), tmp_path / "out")
    before = {p: p.stat().st_mtime_ns for p in (out / "models" / "quick").rglob("*")}
    trace = tmp_path / "trace"
    result = standin.run(out, "--no-report", trace=trace)  # its time: benchmarks/bench_pipeline.py
    assert result.returncode == 0, result.stdout + result.stderr
    assert standin.traced(trace) == []  # no notebook ran
    assert "cached 6" in result.stdout and "up to date" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "models" / "quick").rglob("*")} == before


@pytest.mark.slow
def test_tampered_output_and_changed_config_are_redone(tmp_path_factory, tmp_path):
    out = standin.copy_run(standin.completed_run(tmp_path_factory), tmp_path / "out")
    layout = settings.Layout(out, "quick")
    # A file that no longer matches its manifest: that variant, and the final that chose among it, rerun.
    tflite = layout.variant_dir("quantize", "mobilenet_v3_small.fp16") / "mobilenet_v3_small.fp16.tflite"
    tflite.chmod(0o644)
    tflite.write_bytes(b"truncated")
    trace = tmp_path / "trace"
    result = standin.run(out, "--no-report", trace=trace)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(standin.traced(trace)) == ["final", "mobilenet_v3_small.fp16"]
    # --force reruns everything selected.
    trace.unlink()
    result = standin.run(out, "--no-report", "--force", "--variants", "mobilenet_v3_small", trace=trace)
    assert result.returncode == 0, result.stdout + result.stderr
    assert standin.traced(trace) == ["mobilenet_v3_small"]


@pytest.mark.slow
def test_failed_variant_skips_its_dependents_and_the_rest_go_on(tmp_path):
    out, trace = tmp_path / "out", tmp_path / "trace"
    behaviour = {"mobilenet_v3_large.prune-2of4": {"fail": True}}
    result = standin.run(out, "-j", "2", trace=trace, behaviour=behaviour)
    assert result.returncode == 1, result.stdout + result.stderr
    record = fileio.read_json(out / "logs" / "quick" / scheduler.RUN_RECORD)["variant"]
    assert record["mobilenet_v3_large.prune-2of4"]["status"] == "failed"
    assert "stand-in failure requested" in record["mobilenet_v3_large.prune-2of4"]["error"]
    assert record["mobilenet_v3_large.prune-2of4.int16x8"]["status"] == "skipped"
    assert "mobilenet_v3_large.prune-2of4" in record["mobilenet_v3_large.prune-2of4.int16x8"]["reason"]
    for ok in ("mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v3_small.fp16", "final"):
        assert record[ok]["status"] == "done", ok
    folder = settings.Layout(out, "quick").variant_dir("prune", "mobilenet_v3_large.prune-2of4")
    failed = fileio.read_json(folder / cache.FAILED_NAME)
    assert failed["error_type"] == "RuntimeError" and Path(failed["log"]).exists()
    assert not (folder / settings.RUN_MANIFEST_NAME).exists()
    assert (folder / "mobilenet_v3_large.prune-2of4.ipynb").exists()  # the traceback, for the report
    assert "stand-in failure requested" in result.stdout  # the summary names the error
    # The report was still built, and shows the failure.
    html = (out / "report" / "quick" / "en" / "index.html").read_text()
    assert "stand-in failure requested" in html
    # Once the cause is gone, only the failed variant and what depends on it run.
    trace.unlink()
    result = standin.run(out, "--no-report", trace=trace)
    assert result.returncode == 0, result.stdout + result.stderr
    assert standin.traced(trace) == ["mobilenet_v3_large.prune-2of4", "mobilenet_v3_large.prune-2of4.int16x8",
                                     "final"]


def _processes_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


@pytest.mark.slow
def test_killed_run_resumes_without_redoing_finished_work(tmp_path):
    out, trace = tmp_path / "out", tmp_path / "trace"
    slow = "mobilenet_v3_large.prune-2of4"
    env = standin.environment(trace, {slow: {"sleep": 300}})
    env["TRASHNET_PYTHON"] = sys.executable
    marker = f"STANDIN_TRACE={trace}"
    # Through ./run_all.sh (it execs the runner), killed with its whole process group.
    command = [str(settings.REPO_ROOT / "run_all.sh"), "--out", str(out), "--variants", standin.SELECTION,
               "--no-report"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               cwd=settings.REPO_ROOT)
    try:
        deadline = time.monotonic() + 240
        while slow not in standin.traced(trace):  # the slow variant's kernel is running
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the slow variant never started"
            time.sleep(0.5)
        time.sleep(1)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # like a crash: no chance to clean up
        process.wait()
    layout = settings.Layout(out, "quick")
    target = layout.variant_dir("prune", slow)
    assert not target.exists()  # the in-flight variant only ever existed as a temporary folder
    assert list(target.parent.glob(f".{slow}{cache.PARTIAL}*"))
    finished = [v for v in standin.traced(trace) if v != slow]
    assert "mobilenet_v3_large" in finished
    # Workers and kernels die with the runner.
    deadline = time.monotonic() + 30
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_with(marker) == []

    trace.unlink()
    result = standin.run(out, "--no-report", "-j", "2", trace=trace)
    assert result.returncode == 0, result.stdout + result.stderr
    rerun = standin.traced(trace)
    assert slow in rerun
    assert not set(finished) & set(rerun), f"finished before the kill and redone: {set(finished) & set(rerun)}"
    assert not list(target.parent.glob(f".*{cache.PARTIAL}*"))
    assert cache.read_valid_manifest(target) is not None


def test_missing_data_folder_is_an_error(tmp_path):
    result = subprocess.run(standin.command(tmp_path / "out", "--data", str(tmp_path / "nowhere")),
                            env=standin.environment(), capture_output=True, text=True, cwd=settings.REPO_ROOT)
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_variant_selection_pulls_in_sources():
    profile = profiles.load_profile("quick")
    variants = profiles.load_variants(profile)
    ids = profiles.select_variants(variants, standin.SELECTION.split(","))
    assert ids == standin.SELECTED
    jobs = plan.plan(variants, ids, settings.Layout(Path("/tmp/x"), "quick"), standin.NOTEBOOKS)
    assert jobs["mobilenet_v3_large.prune-2of4.int16x8"].deps == ["mobilenet_v3_large.prune-2of4"]
    assert set(jobs["final"].deps) == set(ids) - {"final"} and jobs["final"].soft


def test_manifest_check_catches_missing_and_changed_files(tmp_path):
    folder = tmp_path / "variant"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    records.write_manifest(folder, {"variant": "variant", "stage": "train", "status": "done", "key": "k",
                                    "finished": "now", "seconds": 1.0, "files": cache.list_files(folder)})
    assert cache.read_valid_manifest(folder, "k") is not None
    assert cache.read_valid_manifest(folder, "other") is None
    (folder / "a.txt").write_text("b")
    assert cache.read_valid_manifest(folder, "k") is None
    (folder / "a.txt").unlink()
    assert cache.read_valid_manifest(folder, "k") is None
    (folder / settings.RUN_MANIFEST_NAME).write_text("{ half")
    assert cache.read_valid_manifest(folder) is None


@pytest.mark.slow
def test_sigterm_stops_workers_and_leaves_no_partial_folder(tmp_path):
    out, trace = tmp_path / "out", tmp_path / "trace"
    env = standin.environment(trace, {"mobilenet_v3_small": {"sleep": 300}})
    process = subprocess.Popen(standin.command(out, "--no-report", "--variants", "mobilenet_v3_small"), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=settings.REPO_ROOT)
    deadline = time.monotonic() + 240
    while "mobilenet_v3_small" not in standin.traced(trace):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "interrupted" in output
    stage_dir = settings.Layout(out, "quick").stage_dir("train")
    assert not list(stage_dir.glob(".*")) and not (stage_dir / "mobilenet_v3_small").exists()
    marker = f"STANDIN_TRACE={trace}"
    deadline = time.monotonic() + 30
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_with(marker) == []


@pytest.mark.slow
def test_one_run_per_output_folder(tmp_path):
    layout = settings.Layout(tmp_path / "out", "quick")
    with cache.run_lock(layout):
        result = standin.run(layout.root, "--no-report")
    assert result.returncode == 2 and "another run is using" in result.stderr


@pytest.mark.slow
def test_variants_replace_the_profile_list(tmp_path):
    profile = tmp_path / "narrow.yaml"
    profile.write_text("variants: [mobilenet_v1]\nmodel: {image_size: 64}\n")
    narrow = profiles.load_profile(profile)
    variants = profiles.load_variants(narrow)
    assert profiles.select_variants(variants, narrow.variants) == ["mobilenet_v1"]
    with pytest.raises(config.ConfigError, match="matches nothing"):
        pipeline.run(profile=str(profile), out=tmp_path / "out", variants="no_such_net", report=False,
                     log=lambda message: None)


@pytest.mark.slow
def test_a_notebook_that_writes_no_metrics_fails(tmp_path):
    out = tmp_path / "out"
    result = standin.run(out, "--no-report", "--variants", "mobilenet_v3_small",
                         behaviour={"mobilenet_v3_small": {"no_metrics": True}})
    assert result.returncode == 1
    failed = fileio.read_json(settings.Layout(out, "quick").variant_dir("train", "mobilenet_v3_small") / cache.FAILED_NAME)
    assert failed["error_type"] == "ContractError" and "metrics.json" in failed["error"]


def test_a_kernel_that_dies_before_any_cell_is_started_again(tmp_path, monkeypatch):
    # papermill#511: two kernels starting at once may bind the same port; the one that loses never ran a cell.
    import papermill

    calls = []

    def execute(notebook, output, **kwargs):
        calls.append(output)
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    monkeypatch.setattr(pipeline.time, "sleep", lambda seconds: None)
    error_file = tmp_path / "error.json"
    spec = fileio.write_json(tmp_path / "job.json", {
        "notebook": "in.ipynb", "output": str(tmp_path / "out.ipynb"), "html": str(tmp_path / "out.html"),
        "cwd": str(tmp_path), "error_file": str(error_file), "progress": str(tmp_path / "progress.jsonl"),
        "parameters": {}})
    assert worker.worker_main(str(spec)) == 0
    assert len(calls) == 2 and not error_file.exists()
    # Any other failure is the notebook's own and is not retried.
    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook",
                        lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(RuntimeError("boom")))
    assert worker.worker_main(str(spec)) == 1
    assert calls == [1] and fileio.read_json(error_file)["message"] == "boom"


def test_the_longest_chain_starts_first(tmp_path):
    # cpu-scratch profile: V3-Large (45 epochs) -> its 2:4 copy -> their files -> final is the longest chain;
    # started in file order (V1 first), the last part of the run would leave one of two workers idle.
    profile = profiles.load_profile("cpu-scratch")
    variants = profiles.load_variants(profile)
    ids = profiles.select_variants(variants, profile.variants)
    layout = settings.Layout(tmp_path, "cpu-scratch")
    runner = scheduler.Runner(plan.plan(variants, ids, layout), layout, data_sha="0" * 64, jobs_at_once=2,
                             log=lambda message: None)
    path = runner.critical_path()
    assert ids[0] == "mobilenet_v1" and max(path, key=path.get) == "mobilenet_v3_large"
    assert path["mobilenet_v3_large"] > path["mobilenet_v3_large.prune-2of4"] > path["final"] > 0


def test_a_run_that_needs_imagenet_tflite_weights_says_in_one_line_how_to_get_them(tmp_path, monkeypatch, capsys):
    from trashnet import cli

    monkeypatch.delenv(settings.ENV_WEIGHTS, raising=False)
    profile = tmp_path / "pretrained.yaml"
    profile.write_text("variants: [mobilenet_v1]\nmodel: {image_size: 64, weights: imagenet-tflite}\n")
    status = cli.main(["run", "--profile", str(profile), "--out", str(tmp_path / "out"), "--no-report"])
    error = capsys.readouterr().err
    assert status == 1 and error.count("\n") == 1
    assert error.startswith("error: ImageNet TFLite weights needed but $TRASHNET_WEIGHTS is not set - run ")
    assert "python -m trashnet download --weights" in error
    assert not (tmp_path / "out" / "models").exists()  # nothing ran
