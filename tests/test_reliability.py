"""Reliability (issue 17): never delete a user's files, never hang on a special file, never trust stale
prepared data, and turn every expected failure into one line. Each test reproduces one defect.

Commands that could hang run in a subprocess with a timeout, so a regression fails instead of blocking.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from trashnet import cli
from trashnet.core import config, fileio, owned, profiles, settings
from trashnet.data import download, duplicates, prepare
from trashnet.runner import cache, dataprep, pipeline, plan, scheduler, verify

SOURCE = settings.SAMPLE_DIR
UNWRITABLE = Path("/sys/x")  # cannot be created, even by root


def trashnet(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(settings.REPO_ROOT), **(env or {})}
    environment.pop(settings.ENV_DATA, None)
    return subprocess.run([sys.executable, "-m", "trashnet", *args], capture_output=True, text=True,
                          timeout=timeout, env=environment, cwd=settings.REPO_ROOT)


def one_error_line(result: subprocess.CompletedProcess, status: tuple[int, ...] = (1, 2)) -> str:
    """The command failed with exit 1 or 2 and said so in ONE line, `error: ... - ...`, no traceback."""
    assert result.returncode in status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and " - " in lines[0], result.stderr
    return lines[0]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def two_classes(root: Path, n: int = 3) -> Path:
    for cls in ("glass", "paper"):
        (root / cls).mkdir(parents=True)
        for path in sorted((SOURCE / cls).iterdir())[:n]:
            shutil.copyfile(path, root / cls / path.name)
    return root


def manifest_rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / settings.MANIFEST_NAME, newline="", encoding="utf-8") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


# --- 1. a folder is only ever replaced or removed when the project made it -----------------------------------


def test_prepare_never_replaces_a_folder_it_did_not_make(tmp_path):
    out = tmp_path / "d"
    (out / "photos").mkdir(parents=True)
    (out / "photos" / "holiday.jpg").write_bytes(b"precious")
    (out / "manifest.csv").write_text("id\n")
    (out / "notes.txt").write_text("x\n")
    before = tree(out)
    line = one_error_line(trashnet("prepare", "--source", str(SOURCE), "--out", str(out)))
    assert "not made by" in line and "--out" in line
    assert tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_prepare_replaces_its_own_dataset_and_cleans_only_its_own_leftovers(tmp_path):
    source = two_classes(tmp_path / "src")
    out = tmp_path / "d"
    prepare.prepare(source, out, split="stratified")
    assert owned.is_ours(out, "dataset")
    # A killed prepare leaves stamped .d.tmp-* / .d.old-* folders; the user's look-alike has no stamp.
    for name in (".d.tmp-dead1", ".d.old-dead2"):
        (tmp_path / name / "x").mkdir(parents=True)
        owned.stamp(tmp_path / name, "partial", pid=2 ** 22 + 12345)  # a pid no process has
    (tmp_path / ".d.tmp-mine").mkdir()
    (tmp_path / ".d.tmp-mine" / "keep.txt").write_text("mine")
    report = prepare.prepare(source, out, split="stratified", ratios=(0.34, 0.33, 0.33))
    assert not report.skipped
    assert sorted(p.name for p in tmp_path.iterdir()) == [".d.tmp-mine", "d", "src"]
    assert (tmp_path / ".d.tmp-mine" / "keep.txt").read_text() == "mine"


def test_pipeline_never_replaces_or_cleans_a_folder_it_did_not_make(tmp_path):
    target = tmp_path / "models" / "final"
    target.mkdir(parents=True)
    (target / "thesis.tex").write_text("keep")
    temp = tmp_path / "models" / ".final.partial-1"
    temp.mkdir()
    owned.stamp(temp, "variant")
    with pytest.raises(owned.NotOursError, match="not made by"):
        cache.swap_into_place(temp, target)
    assert (target / "thesis.tex").read_text() == "keep" and temp.is_dir()
    lookalike = tmp_path / "models" / ".mine.partial-7"
    lookalike.mkdir()
    (lookalike / "keep.txt").write_text("mine")
    cache.clean_leftovers([tmp_path / "models"])
    assert (lookalike / "keep.txt").read_text() == "mine"
    assert not temp.exists()  # stamped and no live owner: a leftover of a killed run


def test_report_never_removes_a_notebooks_folder_it_did_not_make(tmp_path):
    from trashnet.report import build as report

    mine = tmp_path / "report" / "quick" / "notebooks"
    mine.mkdir(parents=True)
    (mine / "my-notes.html").write_text("keep")
    (tmp_path / "models" / "quick").mkdir(parents=True)
    with pytest.raises(owned.NotOursError, match="not made by"):
        report.build(tmp_path, "quick", pdf=False, export=False, log=lambda message: None)
    assert (mine / "my-notes.html").read_text() == "keep"


def test_download_never_replaces_a_folder_it_did_not_make(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / download.STAMP_NAME).write_text("{}")
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(owned.NotOursError, match="not made by"):
        download.download(out, url="http://127.0.0.1:9/never-fetched.zip", sha256="0" * 64, timeout=2)
    assert (out / "notes.txt").read_text() == "keep me"


# --- 2. --data with any <class>/<image> folder ----------------------------------------------------------------


def test_split_resolution_for_a_folder_that_is_not_the_full_trashnet(tmp_path):
    source = two_classes(tmp_path / "src")
    notes = []
    profile = profiles.load_profile("cpu")
    assert profile.data.split == "official"
    assert pipeline.resolve_split(None, profile, source, notes.append) == "stratified"
    assert "--split official" in notes[0] and "stratified" in notes[0]
    assert pipeline.resolve_split("stratified", profile, source, notes.append) == "stratified"
    with pytest.raises(plan.PipelineError, match="--split stratified"):
        pipeline.resolve_split("official", profile, source, notes.append)


@pytest.mark.slow
def test_run_all_with_a_folder_that_is_not_the_full_trashnet(tmp_path):
    import standin

    source = shutil.copytree(SOURCE, tmp_path / "s")
    env = standin.environment()
    env["TRASHNET_PYTHON"] = sys.executable
    result = subprocess.run([str(settings.REPO_ROOT / "run_all.sh"), "--data", str(source), "--out",
                             str(tmp_path / "r"), "--variants", "mobilenet_v3_small", "--no-report"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "stratified" in result.stdout
    record = fileio.read_json(tmp_path / "r" / "logs" / "cpu" / scheduler.RUN_RECORD)
    assert record["profile"] == "cpu" and record["variant"]["mobilenet_v3_small"]["status"] == "done"


# --- 3. special files never hang prepare or predict ---------------------------------------------------------


def test_prepare_rejects_fifos_and_devices_without_reading_them(tmp_path):
    source = two_classes(tmp_path / "f")
    os.mkfifo(source / "glass" / "p.jpg")
    (source / "paper" / "zero.jpg").symlink_to("/dev/zero")
    start = time.monotonic()
    result = trashnet("prepare", "--source", str(source), "--out", str(tmp_path / "fo"), timeout=30)
    assert time.monotonic() - start < 10 and result.returncode == 0, result.stderr
    rows = manifest_rows(tmp_path / "fo")
    assert rows["glass/p.jpg"]["status"] == "rejected" and "named pipe" in rows["glass/p.jpg"]["reason"]
    assert rows["paper/zero.jpg"]["status"] == "rejected" and "device" in rows["paper/zero.jpg"]["reason"]
    assert prepare.reason_code(rows["glass/p.jpg"]["reason"]) == "not-a-file"


def test_sha256_and_json_reads_refuse_special_files(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OSError, match="named pipe"):
        fileio.sha256_file(tmp_path / "pipe")
    with pytest.raises(OSError, match="named pipe"):
        fileio.read_json(tmp_path / "pipe")


# --- 4. run never trusts a stale prepared data set -------------------------------------------------------------


def test_prepared_images_are_checked_not_only_the_manifest(tmp_path):
    source = two_classes(tmp_path / "src")
    layout = settings.Layout(tmp_path / "out", "quick")
    said: list[str] = []
    digest = dataprep.prepare_data(source, layout, config.DataConfig(), log=said.append)
    dataprep.prepare_data(source, layout, config.DataConfig(), log=said.append)
    assert "up to date" in said[-1]
    rows = [row for row in manifest_rows(layout.dataset).values() if row["status"] == "accepted"]
    victim = layout.dataset / rows[0]["output"]
    original = victim.read_bytes()
    victim.write_bytes(b"junk\n")
    said.clear()
    assert dataprep.prepare_data(source, layout, config.DataConfig(), log=said.append) == digest
    assert not any("up to date" in line for line in said), said
    assert victim.read_bytes() == original
    (layout.dataset / rows[1]["output"]).unlink()
    said.clear()
    dataprep.prepare_data(source, layout, config.DataConfig(), log=said.append)
    assert (layout.dataset / rows[1]["output"]).is_file() and not any("up to date" in s for s in said)


def test_source_fingerprint_follows_linked_class_folders(tmp_path):
    elsewhere = two_classes(tmp_path / "elsewhere")
    source = tmp_path / "src"
    source.mkdir()
    for cls in ("glass", "paper"):
        (source / cls).symlink_to(elsewhere / cls, target_is_directory=True)
    before = dataprep._source_fingerprint(source)
    assert len(before) == 6
    shutil.copyfile(sorted((SOURCE / "metal").iterdir())[0], elsewhere / "glass" / "new.jpg")
    assert dataprep._source_fingerprint(source) != before


def test_links_that_leave_the_source_are_followed_and_recorded(tmp_path):
    source = two_classes(tmp_path / "src")
    outside = tmp_path / "outside.jpg"
    shutil.copyfile(sorted((SOURCE / "metal").iterdir())[0], outside)
    (source / "glass" / "linked.jpg").symlink_to(outside)
    report = prepare.prepare(source, tmp_path / "d", split="stratified")
    row = manifest_rows(report.out)["glass/linked.jpg"]
    assert row["status"] == "accepted" and "link-outside-source" in row["notes"]
    assert "link-outside-source" not in manifest_rows(report.out)["glass/" + sorted(
        (SOURCE / "glass").iterdir())[0].name]["notes"]


# --- 5. tracebacks become messages ---------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs (unwritable even for root)")
def test_unwritable_output_is_one_line_in_prepare_run_and_download():
    one_error_line(trashnet("prepare", "--source", str(SOURCE), "--out", str(UNWRITABLE / "d")))
    one_error_line(trashnet("run", "--out", str(UNWRITABLE), "--no-report"))
    one_error_line(trashnet("download", "--out", str(UNWRITABLE / "d"), "--url", "http://127.0.0.1:9/x.zip",
                            "--timeout", "2"))


def test_an_output_below_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    line = one_error_line(trashnet("prepare", "--source", str(SOURCE), "--out", str(tmp_path / "file" / "d")))
    assert "a file stands where a folder is needed" in line
    one_error_line(trashnet("run", "--out", str(tmp_path / "file" / "r"), "--no-report"))


def test_nan_ratios_negative_workers_and_empty_variants_are_errors(tmp_path):
    line = one_error_line(trashnet("prepare", "--source", str(SOURCE), "--out", str(tmp_path / "d"),
                                   "--ratios", "nan", "nan", "nan"))
    assert "ratios" in line
    line = one_error_line(trashnet("predict", "x.jpg", "--model", "m.tflite", "--workers", "-1"), (2,))
    assert "--workers" in line
    line = one_error_line(trashnet("run", "--variants", "", "--out", str(tmp_path / "r"), "--no-report"), (2,))
    assert "--variants" in line
    assert not (tmp_path / "r" / "models").exists()


def test_debug_shows_the_traceback_and_unexpected_errors_keep_theirs(tmp_path, capsys, monkeypatch):
    result = trashnet("--debug", "prepare", "--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d"))
    assert result.returncode == 1 and "Traceback" in result.stderr and "error: " in result.stderr

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(prepare, "command", broken)
    with pytest.raises(KeyError):
        cli.main(["prepare"])


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)  # mode 0o600 and no file type bits, as zipfile writes it
    return buffer.getvalue()


def test_zips_written_by_writestr_are_accepted_and_a_file_folder_clash_is_refused(tmp_path):
    good = tmp_path / "good.zip"
    good.write_bytes(zip_bytes({"dataset-resized/glass/a.jpg": b"a", "dataset-resized/paper/b.jpg": b"b"}))
    (tmp_path / "x").mkdir()
    assert sorted(download.extract(good, tmp_path / "x")) == ["dataset-resized/glass/a.jpg",
                                                               "dataset-resized/paper/b.jpg"]
    clash = tmp_path / "clash.zip"
    clash.write_bytes(zip_bytes({"d/glass": b"a file", "d/glass/a.jpg": b"under it"}))
    (tmp_path / "y").mkdir()
    with pytest.raises(download.DownloadError, match="both a file and a folder"):
        download.extract(clash, tmp_path / "y")



@contextlib.contextmanager
def serving(folder: Path):
    """A local HTTP server over ``folder``; yields its base URL."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_without_sha256_does_not_claim_verified(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "d.zip").write_bytes(zip_bytes({"dataset-resized/glass/a.jpg": b"a"}))
    with serving(served) as base:
        url = f"{base}/d.zip"
        result = trashnet("download", "--out", str(tmp_path / "a"), "--url", url)
        assert result.returncode == 0, result.stderr
        assert "not verified: no --sha256" in result.stdout and "and verified" not in result.stdout
        digest = hashlib.sha256((served / "d.zip").read_bytes()).hexdigest()
        result = trashnet("download", "--out", str(tmp_path / "b"), "--url", url, "--sha256", digest)
        assert result.returncode == 0 and "verified" in result.stdout and "not verified" not in result.stdout


def test_an_earlier_download_is_reused_only_while_its_files_are_intact(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    content = zip_bytes({"dataset-resized/glass/a.jpg": b"a", "dataset-resized/paper/b.jpg": b"b"})
    (served / "d.zip").write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    with serving(served) as base:
        url = f"{base}/d.zip"
        folder, fetched = download.download(tmp_path / "out", url=url, sha256=digest)
        assert fetched and download.download(tmp_path / "out", url=url, sha256=digest) == (folder, False)
        (folder / "glass" / "a.jpg").write_bytes(b"changed")
        assert download.download(tmp_path / "out", url=url, sha256=digest) == (folder, True)
        assert (folder / "glass" / "a.jpg").read_bytes() == b"a"


def test_cached_image_arrays_are_not_reused_after_the_decoding_code_changed(sample_dataset, tmp_path, monkeypatch):
    import numpy as np

    from trashnet.core import images
    from trashnet.data import inputs

    first = inputs.load_dataset(sample_dataset, 32, cache_dir=tmp_path)
    for cached in (tmp_path / "arrays").glob("*.npz"):  # poison the cache: reused arrays would be all zeros
        with np.load(cached) as arrays:
            np.savez(cached, images=np.zeros_like(arrays["images"]), labels=arrays["labels"], paths=arrays["paths"])
    assert not inputs.load_dataset(sample_dataset, 32, cache_dir=tmp_path).train.images.any()
    edited = tmp_path / "images.py"
    edited.write_text(Path(images.__file__).read_text() + "\n# a change to how photos are decoded\n")
    monkeypatch.setattr(images, "__file__", str(edited))
    again = inputs.load_dataset(sample_dataset, 32, cache_dir=tmp_path)
    assert np.array_equal(again.train.images, first.train.images)


def test_truncated_images_stay_rejected_after_weasyprint_is_imported(tmp_path):
    from PIL import ImageFile

    from trashnet.core import images

    photo = sorted((SOURCE / "glass").iterdir())[0].read_bytes()
    (tmp_path / "half.jpg").write_bytes(photo[: len(photo) // 2])
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        import weasyprint  # noqa: F401 - its import sets ImageFile.LOAD_TRUNCATED_IMAGES = True, process-wide

        ImageFile.LOAD_TRUNCATED_IMAGES = True  # as it is after a first import anywhere in the process
        with pytest.raises(images.ImageError, match="truncated"):
            images.inspect(tmp_path / "half.jpg")
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


@pytest.mark.parametrize("raised, expected", [
    (OSError(28, "No space left on device", "/out/dataset"), "/out/dataset: No space left on device - free some"),
    (PermissionError(13, "Permission denied", "/out"), "/out: Permission denied - fix the permissions"),
    ("network", "network: [Errno -3] Temporary failure in name resolution - check the connection"),
])
def test_no_space_no_permission_and_no_network_are_one_line(monkeypatch, capsys, raised, expected):
    import socket
    import urllib.error

    if raised == "network":
        raised = urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    def failing(args):
        raise raised

    monkeypatch.setattr(download, "command", failing)
    assert cli.main(["download", "--out", "x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: " + expected), err


# --- issue 24: publish, the one folder function, verify on nothing, profile names ------------------------------


def small_run(root: Path, profile: str = "quick", *, final: bool = False) -> settings.Layout:
    """A run's output holding one finished variant (and, with ``final``, a final folder) - enough to publish."""
    layout = settings.Layout(root, profile)
    variant = layout.variant_dir("train", "mobilenet_v2")
    variant.mkdir(parents=True)
    metrics = {"variant": "mobilenet_v2", "stage": "train", "test": {"n": 2, "accuracy": 0.8, "macro_f1": 0.7},
               "size": {"raw_bytes": 1000, "gzip_bytes": 900}}
    fileio.write_json(variant / "metrics.json", metrics)
    (variant / "predictions.csv").write_text("path,label,predicted\na.jpg,glass,glass\nb.jpg,paper,glass\n")
    if final:
        folder = layout.variant_dir("final", "final")
        folder.mkdir(parents=True)
        fileio.write_json(folder / "metrics.json", {**metrics, "variant": "final", "stage": "final",
                                                    "selected_variant": "mobilenet_v2"})
        for name in verify.FINAL_FILES:
            (folder / name).write_text(name)
    return layout


def test_publish_never_replaces_a_users_folder_nor_the_runs_own(tmp_path):
    layout = small_run(tmp_path / "OUT")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "thesis.docx").write_text("years of work")
    line = one_error_line(trashnet("publish", "--profile", "quick", "--out", str(layout.root), "--to", str(docs)))
    assert "not made by `publish`" in line and (docs / "thesis.docx").read_text() == "years of work"
    before = tree(layout.root)
    for to in (layout.root, layout.models, layout.root.parent, layout.variant_dir("train", "mobilenet_v2")):
        with pytest.raises(verify.VerifyError, match="overlaps the run's own outputs"):
            verify.publish(layout, to, log=lambda message: None)
    result = subprocess.run([sys.executable, "-m", "trashnet", "publish", "--profile", "quick", "--out", ".",
                             "--to", "."], capture_output=True, text=True, timeout=60, cwd=layout.root,
                            env={**os.environ, "PYTHONPATH": str(settings.REPO_ROOT)})
    assert "overlaps" in one_error_line(result)
    assert tree(layout.root) == before
    # Its own earlier output is replaced, and leaves nothing beside it.
    target = tmp_path / "results" / "quick"
    verify.publish(layout, target, log=lambda message: None)
    verify.publish(layout, target, log=lambda message: None)
    assert owned.is_ours(target, verify.PUBLISHED_KIND) and os.listdir(tmp_path / "results") == ["quick"]


def test_publish_refuses_a_final_folder_without_its_model(tmp_path):
    layout = small_run(tmp_path / "OUT", final=True)
    (layout.variant_dir("final", "final") / "trashnet.tflite").unlink()
    with pytest.raises(verify.VerifyError, match="lacks trashnet.tflite"):
        verify.publish(layout, tmp_path / "results" / "quick", log=lambda message: None)
    assert not (tmp_path / "results" / "quick").exists()


def test_committed_references_carry_the_publish_stamp():
    for folder in sorted(settings.RESULTS_DIR.iterdir()):
        assert owned.is_ours(folder, verify.PUBLISHED_KIND), folder


FOLDER_CALLS = {("shutil", "rmtree"), ("shutil", "move"), ("os", "rename"), ("os", "replace"), ("os", "rmdir"),
                ("os", "removedirs"), ("os", "renames")}


def folder_calls(tree_) -> list[tuple[str, int, str]]:
    """(function, line, call) of every call that can remove or move a folder."""
    import ast

    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute):
                owner = child.func.value
                call = (owner.id if isinstance(owner, ast.Name) else "", child.func.attr)
                # Path(...).rmdir()/.rename(): any receiver; str.replace is not a folder move
                if call in FOLDER_CALLS or child.func.attr in ("rmdir", "rename"):
                    found.append((name, child.lineno, ".".join(call)))
            visit(child, name)

    visit(tree_, "<module>")
    return found


def test_every_folder_removal_or_move_goes_through_owned_replace():
    """The only calls that delete or move a folder are in owned.replace; fileio.replace_file moves files."""
    import ast

    allowed = {("owned.py", "replace"), ("fileio.py", "replace_file")}
    offenders = []
    modules = sorted(settings.PACKAGE_DIR.rglob("*.py"))
    assert {Path(cli.COMMANDS[name][0].replace(".", "/") + ".py").name for name in cli.COMMANDS} - {
        "report.py"} <= {path.name for path in modules}  # every command's module is walked
    for path in modules:
        for function, line, call in folder_calls(ast.parse(path.read_text(encoding="utf-8"))):
            if (path.name, function) not in allowed:
                offenders.append(f"{path.relative_to(settings.REPO_ROOT)}:{line} {function}: {call}")
    assert not offenders, offenders
    # And the walker finds such calls at all (a walker that finds nothing would pass anything).
    assert [c for c in folder_calls(ast.parse("def f(p):\n    shutil.rmtree(p)\n    p.rename(q)\n"))] == [
        ("f", 2, "shutil.rmtree"), ("f", 3, "p.rename")]


def test_owned_replace_refuses_an_unstamped_target_and_an_unstamped_new(tmp_path):
    target, new = tmp_path / "t", tmp_path / "n"
    target.mkdir()
    (target / "keep").write_text("x")
    new.mkdir()
    owned.stamp(new, "published")
    with pytest.raises(owned.NotOursError):
        owned.replace(target, new, kind="published")
    with pytest.raises(owned.NotOursError):
        owned.replace(target)
    owned.replace(target, quiet=True)  # a cleanup never raises, and still never deletes it
    assert (target / "keep").read_text() == "x" and new.is_dir()
    stranger = tmp_path / "s"
    stranger.mkdir()
    with pytest.raises(owned.NotOursError, match="not moved"):
        owned.replace(tmp_path / "absent", stranger)


def reference_pair(tmp_path: Path) -> tuple[Path, settings.Layout]:
    """A published reference of a small run, and the run itself as its reproduction."""
    layout = small_run(tmp_path / "OUT", profile="ref")
    reference = verify.publish(layout, tmp_path / "results" / "ref", log=lambda message: None)
    return reference, layout


def test_verify_fails_when_it_compared_nothing(tmp_path):
    reference, layout = reference_pair(tmp_path)
    assert verify.verify_and_print(reference, layout, log=lambda message: None) == 0
    empty = tmp_path / "R"
    (empty / "models").mkdir(parents=True)
    assert "nothing to compare" in one_error_line(
        trashnet("verify", str(empty), "--out", str(layout.root), "--profile", "ref"))
    assert "typo" in one_error_line(
        trashnet("verify", str(reference), "--out", str(layout.root), "--variants", "typo"))
    ref_variant = reference / "models" / "train" / "mobilenet_v2"
    (ref_variant / "predictions.csv").unlink()
    checks, _ = verify.verify(reference, layout)
    assert [c.what for c in checks if not c.ok] == ["agreement"]
    fileio.write_json(ref_variant / "metrics.json", {"variant": "mobilenet_v2", "stage": "train"})  # no numbers
    checks, _ = verify.verify(reference, layout)
    assert not any(c.ok for c in checks) and len(checks) == 5
    result = trashnet("verify", str(reference), "--out", str(layout.root), "--profile", "ref")
    assert result.returncode == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"test": {"accuracy": "high"}}',
                                     '{"test": [0.8]}'])
def test_verify_reads_a_broken_reproduction_as_one_line(tmp_path, content):
    reference, layout = reference_pair(tmp_path)
    (layout.variant_dir("train", "mobilenet_v2") / "metrics.json").write_text(content)
    line = one_error_line(trashnet("verify", str(reference), "--out", str(layout.root), "--profile", "ref"))
    assert "metrics.json" in line


def test_verify_reads_predictions_without_their_column_as_one_line(tmp_path):
    reference, layout = reference_pair(tmp_path)
    (layout.variant_dir("train", "mobilenet_v2") / "predictions.csv").write_text("file,label\na.jpg,glass\n")
    assert "columns" in one_error_line(
        trashnet("verify", str(reference), "--out", str(layout.root), "--profile", "ref"))


@pytest.mark.parametrize("args", [("verify", "/"), ("verify", "results/cpu", "--profile", "../x"),
                                  ("publish", "--profile", "../x"), ("publish", "--profile", ""),
                                  ("prepare", "--profile", "../x"), ("run", "--profile", "a/b")])
def test_bad_profile_names_are_one_line(args, tmp_path):
    one_error_line(trashnet(*args, "--out", str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("body", ["description: 2024-01-01\n", "a: &a [*a]\n", "name: ../x\n", 'name: ""\n',
                                  "seed: 2024-01-01\n", "data: !!binary aGk=\n", "variants: !!set {a: null}\n"])
def test_odd_profile_yaml_values_are_one_line(body, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(body)
    with pytest.raises(config.ConfigError):
        profiles.load_profile(path)
    one_error_line(trashnet("run", "--profile", str(path), "--out", str(tmp_path / "o")))


def test_near_duplicates_of_thousands_of_look_alikes_need_no_pair_list():
    """3,000 photos with one perceptual hash: one bucket, not 4.5 million pairs (memory grew with n squared)."""
    import tracemalloc

    rows = [{"path": f"glass/{i:05d}.jpg", "status": "accepted", "phash": "ab" * 32} for i in range(3000)]
    rows += [{"path": "paper/far.jpg", "status": "accepted", "phash": "54" * 32},  # 256 bits from the rest
             {"path": "paper/near.jpg", "status": "accepted", "phash": "ab" * 31 + "aa"}]  # 1 bit from the rest
    tracemalloc.start()
    duplicates.group_near_duplicates(rows)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20, peak
    groups = Counter(row["near_duplicate_group"] for row in rows)
    assert groups == {"glass/00000.jpg": 3001, "": 1}
    assert rows[-2]["near_duplicate_group"] == ""
