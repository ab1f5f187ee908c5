"""The download command against a real HTTP server on 127.0.0.1 (tests never reach the internet)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from trashnet import cli
from trashnet.data import download, prepare
from trashnet.core import owned, settings

IMAGES = [f"{cls}/{path.name}" for cls in ("glass", "paper", "metal")
          for path in sorted((settings.SAMPLE_DIR / cls).iterdir())[:3]]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(folder served, base URL): a threaded http.server bound to 127.0.0.1 on a free port."""
    root = tmp_path_factory.mktemp("served")
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def good_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("dataset-resized/", "")
        for rel in IMAGES:
            archive.write(settings.SAMPLE_DIR / rel, f"dataset-resized/{rel}")
    return buffer.getvalue()


def sums_file(folder: Path, *, wrong: str | None = None) -> Path:
    lines = []
    for rel in IMAGES:
        digest = hashlib.sha256((settings.SAMPLE_DIR / rel).read_bytes()).hexdigest()
        lines.append(f"{'0' * 64 if rel == wrong else digest}  dataset-resized/{rel}")
    path = folder / "SUMS"
    path.write_text("\n".join(lines) + "\n")
    return path


def serve(server, name: str, content: bytes) -> str:
    root, base = server
    (root / name).write_bytes(content)
    return f"{base}/{name}"


def assert_nothing_left(parent: Path, *keep: str) -> None:
    assert sorted(p.name for p in parent.iterdir()) == sorted(keep), "no temporary or partial files left"


def test_good_archive_is_verified_extracted_and_reused(server, tmp_path):
    content = good_zip()
    url = serve(server, "good.zip", content)
    out = tmp_path / "trashnet"
    folder, fetched = download.download(out, url=url, sha256=hashlib.sha256(content).hexdigest(),
                                        sums=sums_file(tmp_path))
    assert fetched and folder == out / "dataset-resized"
    for rel in IMAGES:
        assert (folder / rel).read_bytes() == (settings.SAMPLE_DIR / rel).read_bytes()
    assert_nothing_left(tmp_path, "trashnet", "SUMS")
    # Same checksum again: nothing is fetched (the server copy is gone).
    (server[0] / "good.zip").unlink()
    assert download.download(out, url=url, sha256=hashlib.sha256(content).hexdigest()) == (folder, False)
    # And the result is a source for prepare.
    report = prepare.prepare(folder, tmp_path / "dataset", split="stratified", seed=0)
    assert report.accepted == len(IMAGES)


def test_wrong_checksum(server, tmp_path):
    url = serve(server, "wrong.zip", good_zip())
    with pytest.raises(download.DownloadError, match="checksum mismatch.*nothing was kept"):
        download.download(tmp_path / "out", url=url, sha256="ab" * 32)
    assert_nothing_left(tmp_path)


def test_wrong_file_checksum(server, tmp_path):
    url = serve(server, "files.zip", good_zip())
    sums = sums_file(tmp_path, wrong=IMAGES[4])
    with pytest.raises(download.DownloadError, match="1 file.*different sha256"):
        download.download(tmp_path / "out", url=url, sums=sums)
    assert_nothing_left(tmp_path, "SUMS")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bad-crc"])
def test_broken_archive(server, tmp_path, damage):
    content = good_zip()
    if damage == "truncated":
        content = content[: len(content) // 2]
    elif damage == "garbage":
        content = b"<html>Sorry, this page is not available</html>"
    else:  # flip bytes inside the first image's stored data: the CRC check fails on extraction
        raw = bytearray(content)
        start = content.index(b"\xff\xd8\xff") + 2000
        raw[start:start + 50] = bytes(50)
        content = bytes(raw)
    url = serve(server, f"broken-{damage}.zip", content)
    with pytest.raises(download.DownloadError, match="^the (archive is broken|download is neither a zip nor a tar)"):
        download.download(tmp_path / "out", url=url)
    assert_nothing_left(tmp_path)


def evil_zip(kind: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("dataset-resized/glass/ok.jpg", b"fine")
        if kind == "dotdot":
            archive.writestr("dataset-resized/../../evil.txt", b"escaped")
        elif kind == "absolute":
            info = zipfile.ZipInfo("placeholder")
            info.filename = "/tmp/evil-absolute.txt"  # ZipInfo() itself strips a leading slash
            archive.writestr(info, b"escaped")
        elif kind == "symlink":
            info = zipfile.ZipInfo("dataset-resized/link")
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, "/etc")
    return buffer.getvalue()


def evil_tar(kind: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        def add(name: str, payload: bytes = b"escaped", **fields):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            for key, value in fields.items():
                setattr(info, key, value)
            archive.addfile(info, io.BytesIO(payload) if info.isfile() else None)

        add("dataset-resized/glass/ok.jpg", b"fine")
        if kind == "dotdot":
            add("../evil.txt")
        elif kind == "absolute":
            add("/tmp/evil-absolute.txt")
        elif kind == "symlink":
            add("dataset-resized/link", b"", type=tarfile.SYMTYPE, linkname="../../..")
        elif kind == "hardlink":
            add("dataset-resized/hard", b"", type=tarfile.LNKTYPE, linkname="/etc/passwd")
        elif kind == "device":
            add("dataset-resized/dev", b"", type=tarfile.CHRTYPE)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt, kind", [("zip", "dotdot"), ("zip", "absolute"), ("zip", "symlink"),
                                       ("tar", "dotdot"), ("tar", "absolute"), ("tar", "symlink"),
                                       ("tar", "hardlink"), ("tar", "device")])
def test_escaping_entries_refuse_the_whole_archive(server, tmp_path, fmt, kind):
    target = tmp_path / "deep" / "inside"
    target.parent.mkdir()
    content = evil_zip(kind) if fmt == "zip" else evil_tar(kind)
    url = serve(server, f"evil-{kind}.{'zip' if fmt == 'zip' else 'tar.gz'}", content)
    with pytest.raises(download.DownloadError, match="^archive entry .*(outside the target folder|link|special)"):
        download.download(target, url=url)
    assert_nothing_left(target.parent)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil-absolute.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["deep"]


def test_http_error_and_unreachable_server(server, tmp_path):
    with pytest.raises(download.DownloadError, match="HTTP 404"):
        download.download(tmp_path / "out", url=f"{server[1]}/missing.zip")
    with pytest.raises(download.DownloadError, match="cannot download"):
        download.download(tmp_path / "out", url="http://127.0.0.1:9/nothing.zip", timeout=5)
    assert_nothing_left(tmp_path)


def test_out_is_not_overwritten_unless_it_is_an_earlier_download(server, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    url = serve(server, "again.zip", good_zip())
    with pytest.raises(owned.NotOursError, match="not made by"):
        download.download(out, url=url)
    assert (out / "notes.txt").read_text() == "keep me"


def test_cli(server, tmp_path, capsys):
    content = good_zip()
    url = serve(server, "cli.zip", content)
    good = hashlib.sha256(content).hexdigest()
    assert cli.main(["download", "--out", str(tmp_path / "a"), "--url", url, "--sha256", good]) == 0
    assert "prepare --source" in capsys.readouterr().out
    assert cli.main(["download", "--out", str(tmp_path / "b"), "--url", url, "--sha256", "0" * 64]) == 1
    assert "checksum mismatch" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_bundled_checksums_describe_the_full_data_set():
    sums = download.read_sums(download.BUNDLED_SUMS)
    assert len(sums) == 2527 and all(rel.startswith("dataset-resized/") for rel in sums)


@pytest.mark.realdata
def test_bundled_checksums_match_the_real_data(real_data_dir):
    if real_data_dir.name != "dataset-resized":
        pytest.skip("the bundled list names files under dataset-resized/")
    download.verify_files(real_data_dir.parent, download.read_sums(download.BUNDLED_SUMS))


# --- issue 24: wall-clock timeouts, file:// pipes, bad --url / --timeout --------------------------------------


@pytest.fixture
def trickle_server():
    """A server that sends one byte a second, forever: a per-read timeout never fires."""
    import socket
    import time

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve_one():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                for byte in b"HTTP/1.0 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000:
                    if stop.is_set():
                        return
                    try:
                        connection.sendall(bytes([byte]))
                    except OSError:
                        break
                    time.sleep(0.05 if byte != ord("x") else 1.0)

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/slow.zip"
    stop.set()
    listener.close()


def test_the_timeout_is_wall_clock_not_per_read(trickle_server, tmp_path):
    import time

    started = time.monotonic()
    with pytest.raises(download.DownloadError, match="wall clock"):
        download.download(tmp_path / "out", url=trickle_server, sha256="0" * 64, timeout=3)
    assert time.monotonic() - started < 6
    assert_nothing_left(tmp_path)


def test_a_file_url_naming_a_pipe_is_refused_without_reading(tmp_path, capsys):
    import os

    os.mkfifo(tmp_path / "pipe")
    assert cli.main(["download", "--out", str(tmp_path / "out"), "--url", (tmp_path / "pipe").as_uri(),
                     "--timeout", "5"]) == 1
    assert "named pipe" in capsys.readouterr().err
    served = tmp_path / "a.zip"
    served.write_bytes(good_zip())
    download.download(tmp_path / "ok", url=served.as_uri(), sha256=hashlib.sha256(served.read_bytes()).hexdigest())


@pytest.mark.parametrize("option", [("--url", "notaurl"), ("--url", ""), ("--url", "http://"), ("--timeout", "-1"),
                                    ("--timeout", "nan"), ("--timeout", "0"), ("--timeout", "inf")])
def test_bad_url_and_timeout_are_one_line(option, tmp_path, capsys):
    assert cli.main(["download", "--out", str(tmp_path / "out"), *option]) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and " - " in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()
