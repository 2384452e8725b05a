"""Downloads (checksums, resume, fallbacks), safe extraction and dataset preparation.

No network: plain-URL downloads go to a loopback HTTP server started here, Google Drive downloads
to a monkeypatched ``gdown.download``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import runpy
import tarfile
import threading
import warnings
import zipfile
from pathlib import Path

import gdown
import numpy as np
import pytest
from gdown.exceptions import FileURLRetrievalError
from PIL import Image

from toonlab.data import download
from toonlab.data.download import (
    COMPLETE_MARKER,
    DATASETS,
    PRETRAINED,
    Asset,
    DownloadError,
    UnsafeArchiveError,
    UnverifiedDownloadWarning,
    extract,
    fetch,
    fetch_pretrained,
    prepare_dataset,
)

PAYLOAD = bytes(range(256)) * 40 + b"the end"  # 10,247 bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"


# -- a loopback file server with optional Range support ---------------------------------------------


class RangeHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        path = server.folder / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        wanted = self.headers.get("Range")
        if wanted and server.ranges:
            start = int(wanted.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None:  # a connection that breaks mid-transfer
            self.wfile.write(body[: server.cut_after])
            self.wfile.flush()
            self.close_connection = True
            server.cut_after = None
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.folder, httpd.requests, httpd.ranges, httpd.cut_after = folder, [], True, None
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def served_asset(server, data=PAYLOAD, sha=PAYLOAD_SHA, name="payload.bin", **kwargs) -> Asset:
    (server.folder / name).write_bytes(data)
    source = {"kind": "url", "url": f"{server.base}/{name}"}
    return Asset(name="payload", filename=name, sha256=sha, sources=[source], archive=False, **kwargs)


# -- fetch over HTTP -------------------------------------------------------------------------------


def test_download_is_verified_and_cached(server, tmp_path):
    asset = served_asset(server)
    path = fetch(asset, tmp_path / "dest", quiet=True)
    assert path == tmp_path / "dest" / "payload.bin" and path.read_bytes() == PAYLOAD
    assert not path.with_name("payload.bin.part").exists()
    assert server.requests == [("/payload.bin", None)]
    assert fetch(asset, tmp_path / "dest", quiet=True) == path
    assert len(server.requests) == 1  # the verified file is reused, not downloaded again


def test_resume_from_part_sends_range(server, tmp_path):
    asset = served_asset(server)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "payload.bin.part").write_bytes(PAYLOAD[:4000])
    path = fetch(asset, dest, quiet=True)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("/payload.bin", "bytes=4000-")]


def test_broken_connection_keeps_part_and_next_call_resumes(server, tmp_path):
    big = bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8))
    asset = served_asset(server, data=big, sha=hashlib.sha256(big).hexdigest())
    server.cut_after = 200_000
    with pytest.raises(DownloadError, match="run again to resume"):
        fetch(asset, tmp_path, quiet=True)
    kept = (tmp_path / "payload.bin.part").read_bytes()
    assert 0 < len(kept) <= 200_000 and big.startswith(kept)
    assert fetch(asset, tmp_path, quiet=True).read_bytes() == big
    assert server.requests[-1] == ("/payload.bin", f"bytes={len(kept)}-")


def test_complete_part_answered_416_is_used(server, tmp_path):
    asset = served_asset(server)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "payload.bin.part").write_bytes(PAYLOAD)
    assert fetch(asset, dest, quiet=True).read_bytes() == PAYLOAD
    assert server.requests == [("/payload.bin", f"bytes={len(PAYLOAD)}-")]


def test_server_without_range_support_restarts(server, tmp_path):
    server.ranges = False
    asset = served_asset(server)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "payload.bin.part").write_bytes(b"stale bytes that must not stay in front")
    assert fetch(asset, dest, quiet=True).read_bytes() == PAYLOAD
    assert server.requests[0][1] is not None  # it asked to resume, got a 200, started over


def test_wrong_checksum_deletes_file_and_raises(server, tmp_path):
    asset = served_asset(server, sha="0" * 64)
    with pytest.raises(DownloadError, match="does not match") as info:
        fetch(asset, tmp_path / "dest", quiet=True)
    assert list((tmp_path / "dest").iterdir()) == []
    assert str(tmp_path / "dest" / "payload.bin") in str(info.value)


def test_mismatching_final_file_is_replaced(server, tmp_path):
    asset = served_asset(server)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "payload.bin").write_bytes(b"corrupted")
    assert fetch(asset, dest, quiet=True).read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_all_sources_fail_names_each_failure_and_the_manual_path(server, tmp_path, monkeypatch):
    def refuse(**kwargs):
        raise FileURLRetrievalError("Too many users have viewed or downloaded this file recently.")

    monkeypatch.setattr(gdown, "download", refuse)
    asset = Asset(
        name="missing",
        filename="missing.zip",
        sha256=PAYLOAD_SHA,
        sources=[{"kind": "url", "url": f"{server.base}/missing.zip"}, {"kind": "gdrive", "id": "abc123"}],
    )
    with pytest.raises(DownloadError) as info:
        fetch(asset, tmp_path / "dest", quiet=True)
    message = str(info.value)
    assert "HTTP 404" in message and "Too many users" in message
    assert f"place it at\n  {tmp_path / 'dest' / 'missing.zip'}" in message
    assert "cookies.txt" in message and "drive.google.com/file/d/abc123" in message


def test_second_source_used_when_first_fails(server, tmp_path):
    (server.folder / "mirror.bin").write_bytes(PAYLOAD)
    asset = Asset(
        name="payload",
        filename="payload.bin",
        sha256=PAYLOAD_SHA,
        sources=[{"kind": "url", "url": f"{server.base}/gone.bin"}, {"kind": "url", "url": f"{server.base}/mirror.bin"}],
        archive=False,
    )
    assert fetch(asset, tmp_path, quiet=True).read_bytes() == PAYLOAD


def test_unverified_asset_prints_and_warns_its_sha256(server, tmp_path, capsys):
    asset = served_asset(server, sha=None, unverified=True)
    with pytest.warns(UnverifiedDownloadWarning, match=PAYLOAD_SHA):
        fetch(asset, tmp_path, quiet=False)
    assert PAYLOAD_SHA in capsys.readouterr().out


def test_asset_without_checksum_must_be_marked_unverified():
    with pytest.raises(ValueError, match="unverified=True"):
        Asset(name="x", filename="x.zip", sha256=None, sources=[{"kind": "url", "url": "http://127.0.0.1/x"}])
    with pytest.raises(ValueError, match="relative"):
        Asset(name="x", filename="../x.zip", sha256="a" * 64, sources=[{"kind": "url", "url": "http://127.0.0.1/x"}])
    with pytest.raises(ValueError, match="kind"):
        Asset(name="x", filename="x.zip", sha256="a" * 64, sources=[{"kind": "ftp", "url": "x"}])


def test_html_error_page_is_rejected(server, tmp_path):
    asset = served_asset(server, data=b"<!DOCTYPE html><html>Quota exceeded</html>", sha=None, unverified=True, name="a.zip")
    with pytest.raises(DownloadError, match="web page"):
        fetch(asset, tmp_path / "dest", quiet=True)
    assert list((tmp_path / "dest").iterdir()) == []


# -- Google Drive through gdown --------------------------------------------------------------------


def gdrive_asset(sha=PAYLOAD_SHA) -> Asset:
    return Asset(name="drive", filename="drive.zip", sha256=sha, sources=[{"kind": "gdrive", "id": "FILEID"}])


def test_gdrive_download_uses_gdown_keywords_and_verifies(tmp_path, monkeypatch):
    calls = []

    def fake_download(*args, **kwargs):
        calls.append((args, kwargs))
        Path(kwargs["output"]).write_bytes(PAYLOAD)
        return kwargs["output"]

    monkeypatch.setattr(gdown, "download", fake_download)
    path = fetch(gdrive_asset(), tmp_path, quiet=True)
    assert path == tmp_path / "drive.zip" and path.read_bytes() == PAYLOAD
    (args, kwargs), = calls
    assert args == ()
    assert kwargs["id"] == "FILEID" and kwargs["resume"] is True and kwargs["quiet"] is True
    assert Path(kwargs["output"]).parent == tmp_path
    assert "fuzzy" not in kwargs and "md5" not in kwargs
    assert [p.name for p in tmp_path.iterdir()] == ["drive.zip"]


def test_gdrive_wrong_content_is_deleted(tmp_path, monkeypatch):
    def fake_download(**kwargs):
        Path(kwargs["output"]).write_bytes(b"something else")
        return kwargs["output"]

    monkeypatch.setattr(gdown, "download", fake_download)
    with pytest.raises(DownloadError, match="does not match"):
        fetch(gdrive_asset(), tmp_path, quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_gdrive_quota_error_names_manual_fallback_and_cookies(tmp_path, monkeypatch):
    def refuse(**kwargs):
        raise FileURLRetrievalError("Failed to retrieve file url:\n\n\tToo many users have viewed it")

    monkeypatch.setattr(gdown, "download", refuse)
    with pytest.raises(DownloadError) as info:
        fetch(gdrive_asset(), tmp_path, quiet=True)
    message = str(info.value)
    assert "~/.cache/gdown/cookies.txt" in message
    assert "https://drive.google.com/file/d/FILEID/view" in message
    assert str(tmp_path / "drive.zip") in message


# -- extraction ------------------------------------------------------------------------------------


def zip_with(tmp_path, entries: dict[str, bytes], name="a.zip") -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in entries.items():
            zf.writestr(zipfile.ZipInfo(member), data)
    return path


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil_absolute.txt", "ok/../../evil.txt", "C:/evil.txt"])
def test_malicious_zip_is_refused_and_nothing_is_written(tmp_path, member):
    archive = zip_with(tmp_path, {"fine.txt": b"x", member: b"evil"})
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(UnsafeArchiveError, match="refusing to extract"):
        extract(archive, work / "out")
    assert list(work.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_zip_symlink_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    info = zipfile.ZipInfo("link")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract(archive, tmp_path / "out")


def tar_with(tmp_path, members: list[tarfile.TarInfo], name="a.tar.gz") -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tf:
        for member in members:
            data = b"hello" if member.isfile() else None
            if data is not None:
                member.size = len(data)
            tf.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def link(name, target, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "bad",
    [
        link("escape", "../../outside"),
        link("sub/escape", "../../outside"),
        link("abs", "/etc/passwd"),
        link("hard", "../outside", tarfile.LNKTYPE),
        link("dev", "", tarfile.CHRTYPE),
        link("fifo", "", tarfile.FIFOTYPE),
    ],
    ids=["symlink-up", "nested-symlink-up", "symlink-absolute", "hardlink-up", "char-device", "fifo"],
)
def test_malicious_tar_is_refused(tmp_path, bad):
    archive = tar_with(tmp_path, [tarfile.TarInfo("fine.txt"), bad])
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(UnsafeArchiveError, match=repr(bad.name)):
        extract(archive, work / "out")
    assert list(work.iterdir()) == []


def test_tar_with_inner_symlink_extracts_with_marker(tmp_path):
    archive = tar_with(tmp_path, [tarfile.TarInfo("data/a.txt"), link("data/alias.txt", "a.txt")])
    out = extract(archive, tmp_path / "out")
    assert (out / "data" / "a.txt").read_bytes() == b"hello"
    assert (out / "data" / "alias.txt").read_bytes() == b"hello"
    assert (out / COMPLETE_MARKER).is_file()


def test_zip_extraction_writes_marker_and_is_idempotent(tmp_path):
    archive = zip_with(tmp_path, {"top/a.txt": b"a", "top/sub/b.txt": b"b"})
    out = extract(archive, tmp_path / "out")
    assert (out / "top" / "sub" / "b.txt").read_bytes() == b"b"
    assert '"members": 2' in (out / COMPLETE_MARKER).read_text()
    archive.unlink()
    assert extract(archive, tmp_path / "out") == out  # complete: not extracted again
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folders left


def test_not_an_archive_is_explained(tmp_path):
    page = tmp_path / "page.zip"
    page.write_bytes(b"<html><body>quota</body></html>")
    with pytest.raises(download.ArchiveError, match="web page"):
        extract(page, tmp_path / "out")


# -- link chains and size caps (issue 13, item 7) --------------------------------------------------


def tar_of(tmp_path, members: list[tuple[tarfile.TarInfo, bytes | None]], name="chain.tar") -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w") as tf:
        for member, data in members:
            if data is not None:
                member.size = len(data)
            tf.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def file_member(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), b"pwned"


CHAINS = {
    # each link reads as inside; followed one after the other they reach the folder above
    "dot-then-up": [(link("a", "."), None), (link("a/b", "../escaped"), None), file_member("b")],
    "dot-then-up-file-through-link": [(link("a", "."), None), (link("a/b", "../escaped"), None),
                                      file_member("a/b")],
    "sub-dot-up": [(link("d/l", "."), None), (link("d/l/x", "../../escaped"), None), file_member("d/x")],
    "link-target-through-link": [(link("d/s", ".."), None), (link("t", "d/s/../escaped"), None),
                                 file_member("t")],
    "hardlink-through-link": [(link("a", "."), None), (link("a/b", "../escaped"), None),
                              (link("h", "a/b", tarfile.LNKTYPE), None)],
    "second-member-through-same-name-link": [(tarfile.TarInfo("x"), b"x"), (link("x", "x"), None)],
    "case-folded-link": [(link("A", "."), None), (link("a/b", "../escaped"), None), file_member("b")],
}


@pytest.mark.parametrize("without_tar_filter", [False, True], ids=["with-data-filter", "python-3.10.0"])
@pytest.mark.parametrize("chain", list(CHAINS), ids=list(CHAINS))
def test_tar_link_chain_is_refused_by_toonlab_itself(tmp_path, monkeypatch, chain, without_tar_filter):
    """Python 3.10.0-3.10.11 have no tarfile.data_filter: toonlab's own check must stop the chain."""
    if without_tar_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = tar_of(tmp_path, CHAINS[chain])
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(UnsafeArchiveError, match="refusing to extract .*link"):
        extract(archive, work / "out")
    assert list(work.iterdir()) == []  # nothing extracted, nothing written beside the target
    assert not (tmp_path / "escaped").exists()


def test_links_that_stay_inside_still_extract_without_tar_filter(tmp_path, monkeypatch):
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = tar_of(tmp_path, [(tarfile.TarInfo("data/a.txt"), b"hello"), (link("data/alias.txt", "a.txt"), None),
                                (link("alias2.txt", "data/alias.txt"), None),
                                (link("hard.txt", "data/a.txt", tarfile.LNKTYPE), None)])
    out = extract(archive, tmp_path / "out")
    assert (out / "alias2.txt").read_bytes() == (out / "hard.txt").read_bytes() == b"hello"


def zero_bomb_zip(tmp_path: Path, megabytes: int) -> Path:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("zeros.bin", bytes(megabytes << 20))
    return path


def zero_bomb_tar(tmp_path: Path, megabytes: int, hardlinks: int = 0) -> Path:
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=9) as tf:
        info = tarfile.TarInfo("zeros.bin")
        info.size = megabytes << 20
        tf.addfile(info, io.BytesIO(bytes(info.size)))
        for i in range(hardlinks):
            tf.addfile(link(f"copy{i}.bin", "zeros.bin", tarfile.LNKTYPE))
    return path


@pytest.mark.parametrize("make", [zero_bomb_zip, zero_bomb_tar], ids=["zip", "tar.gz"])
def test_archive_expanding_past_the_cap_is_refused(tmp_path, make):
    archive = make(tmp_path, 20)
    assert archive.stat().st_size < 40_000  # about 20 KB that expand to 20 MB
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(download.ArchiveTooLargeError, match=r"20\.0 MiB.*limit of 1\.0 MiB.*max_bytes"):
        extract(archive, work / "out", max_bytes=1 << 20)
    assert list(work.iterdir()) == []
    out = extract(archive, work / "out", max_bytes=21 << 20)  # a genuine big archive: raise the cap
    assert (out / "zeros.bin").stat().st_size == 20 << 20


def test_tar_hard_links_count_towards_the_cap(tmp_path):
    archive = zero_bomb_tar(tmp_path, 1, hardlinks=3)  # tarfile copies the data where links fail
    with pytest.raises(download.ArchiveTooLargeError, match=r"4\.0 MiB"):
        extract(archive, tmp_path / "out", max_bytes=3 << 20)


def test_default_cap_is_a_named_constant_of_50_gib():
    import inspect

    assert download.MAX_EXTRACTED_BYTES == 50 * 2**30
    assert inspect.signature(extract).parameters["max_bytes"].default == download.MAX_EXTRACTED_BYTES
    assert inspect.signature(prepare_dataset).parameters["max_bytes"].default == download.MAX_EXTRACTED_BYTES


# -- prepare_dataset -------------------------------------------------------------------------------


def png_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def selfie2anime_like_zip(tmp_path: Path) -> Path:
    entries = {"__MACOSX/._junk": b"x"}
    for i, folder in enumerate(("trainA", "trainB", "testA", "testB")):
        for j in range(2):
            entries[f"dataset/selfie2anime/{folder}/{j:04d}.png"] = png_bytes(10 * i + j)
    return zip_with(tmp_path, entries, "selfie2anime.zip")


def test_prepare_dataset_normalises_nested_layout(tmp_path, monkeypatch):
    archive = selfie2anime_like_zip(tmp_path)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()

    def fake_download(**kwargs):
        Path(kwargs["output"]).write_bytes(archive.read_bytes())
        return kwargs["output"]

    monkeypatch.setattr(gdown, "download", fake_download)
    monkeypatch.setitem(DATASETS, "selfie2anime", dataclasses.replace(DATASETS["selfie2anime"], sha256=digest))
    root = tmp_path / "datasets"
    target = prepare_dataset("selfie2anime", root=root, quiet=True)
    assert target == root / "selfie2anime"
    assert sorted(p.name for p in target.iterdir()) == [COMPLETE_MARKER, "testA", "testB", "trainA", "trainB"]
    assert (target / "trainA" / "0001.png").read_bytes() == png_bytes(1)
    assert sorted(p.name for p in root.iterdir()) == ["downloads", "selfie2anime"]  # no staging left
    monkeypatch.setattr(gdown, "download", lambda **kwargs: pytest.fail("downloaded twice"))
    assert prepare_dataset("selfie2anime", root=root, quiet=True) == target


def test_prepare_dataset_over_http_with_cyclegan_style_zip(server, tmp_path, monkeypatch):
    entries = {f"mini2toon/{folder}/x.png": png_bytes(i) for i, folder in enumerate(("trainA", "trainB", "testA", "testB"))}
    archive = zip_with(server.folder, entries, "mini2toon.zip")
    asset = Asset(name="mini2toon", filename="mini2toon.zip", sha256=None, unverified=True,
                  sources=[{"kind": "url", "url": f"{server.base}/mini2toon.zip"}])
    monkeypatch.setitem(DATASETS, "mini2toon", asset)
    with pytest.warns(UnverifiedDownloadWarning, match=hashlib.sha256(archive.read_bytes()).hexdigest()):
        target = prepare_dataset("mini2toon", root=tmp_path, quiet=True, keep_archive=False)
    assert download.validate_layout(target) == {"trainA": 1, "trainB": 1, "testA": 1, "testB": 1}
    assert not (tmp_path / "downloads" / "mini2toon.zip").exists()


def cartoonset_like_tgz(folder: Path, n: int = 12, name: str = "cartoonset10k.tgz") -> Path:
    """A CartoonSet-shaped archive: ``cartoonset10k/csK.png`` with ``csK.csv`` attribute files."""
    path = folder / name
    with tarfile.open(path, "w:gz") as tf:
        for k in range(n):
            for member, data in ((f"cartoonset10k/cs{k}.png", png_bytes(k)),
                                 (f"cartoonset10k/cs{k}.csv", f'"hair", {k}, 111\n"face_color", 3, 11\n'.encode())):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def test_cartoonset_is_laid_out_as_cartoons_with_a_fixed_split_and_its_attributes(server, tmp_path, monkeypatch):
    archive = cartoonset_like_tgz(server.folder)
    sources = [{"kind": "url", "url": f"{server.base}/gone.tgz"}, {"kind": "url", "url": f"{server.base}/{archive.name}"}]
    monkeypatch.setitem(DATASETS, "cartoonset10k", dataclasses.replace(DATASETS["cartoonset10k"], sources=sources))
    with pytest.warns(UnverifiedDownloadWarning):
        target = prepare_dataset("cartoonset10k", root=tmp_path, quiet=True)  # the first source fails, the second serves
    names = sorted(f"cs{k}.png" for k in range(12))
    assert sorted(p.name for p in (target / "testB").glob("*.png")) == sorted([names[0], names[10]])
    assert len(list((target / "trainB").glob("*.png"))) == 10 and not (target / "trainA").exists()
    assert (target / "testB" / "cs0.png").read_bytes() == png_bytes(0)
    assert download.read_cartoonset_attributes(target / "trainB" / "cs5.csv") == {"hair": (5, 111), "face_color": (3, 11)}
    marker = (target / COMPLETE_MARKER).read_text()
    assert '"trainB": 10' in marker and "every 10th" in marker
    assert prepare_dataset("cartoonset10k", root=tmp_path, quiet=True) == target  # complete: no second download
    assert [r[0] for r in server.requests].count(f"/{archive.name}") == 1


def test_a_cartoonset_archive_without_images_is_refused_and_leaves_nothing(server, tmp_path, monkeypatch):
    path = server.folder / "empty.tgz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("cartoonset10k/readme.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    asset = dataclasses.replace(DATASETS["cartoonset10k"], sources=[{"kind": "url", "url": f"{server.base}/empty.tgz"}])
    monkeypatch.setitem(DATASETS, "cartoonset10k", asset)
    with pytest.warns(UnverifiedDownloadWarning), pytest.raises(download.DownloadError, match="not a cartoons archive"):
        prepare_dataset("cartoonset10k", root=tmp_path / "datasets", quiet=True)
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["downloads"]  # the archive stays, no half-built folder


def test_cartoonset_entries_name_their_licence_and_sources():
    for name in ("cartoonset10k", "cartoonset100k"):
        asset = DATASETS[name]
        assert asset.layout == "cartoons" and "CC BY 4.0" in asset.description
        assert [s["url"] for s in asset.sources][0] == f"https://storage.googleapis.com/cartoonset_public_files/{name}.tgz"
    with pytest.raises(ValueError, match="layout must be one of"):
        dataclasses.replace(DATASETS["cartoonset10k"], layout="paired")
    with pytest.raises(ValueError, match="expected lines"):
        bad = Path(__file__).parent / "__bad_cartoonset.csv"
        try:
            bad.write_text('"hair", 1\n')
            download.read_cartoonset_attributes(bad)
        finally:
            bad.unlink()


def anime_faces_like_zip(folder: Path, n: int = 21, name: str = "data.zip") -> Path:
    """An anime-faces-shaped archive: ``data/K.png``, plus the ``__MACOSX`` twins a Mac zip adds."""
    path = folder / name
    with zipfile.ZipFile(path, "w") as zf:
        for k in range(n):
            zf.writestr(f"data/{k}.png", png_bytes(k))
        zf.writestr("__MACOSX/data/._0.png", b"resource fork, not an image")
    return path


def test_anime_faces_is_verified_by_its_published_sha256_and_laid_out_as_cartoons(server, tmp_path, monkeypatch):
    archive = anime_faces_like_zip(server.folder)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    sources = [{"kind": "url", "url": f"{server.base}/{archive.name}"}]
    pinned = dataclasses.replace(DATASETS["anime-faces"], sources=sources, sha256=digest, size=archive.stat().st_size)
    monkeypatch.setitem(DATASETS, "anime-faces", pinned)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedDownloadWarning)  # pinned: no "unverified" warning
        target = prepare_dataset("anime-faces", root=tmp_path, quiet=True)
    test_names = sorted(p.name for p in (target / "testB").iterdir())
    assert test_names == ["0.png", "18.png", "9.png"]  # name order 0, 1, 10, ..., 17 | 18, 19, 2, 20, 3, ..., 8 | 9: 1st, 11th, 21st
    assert len(list((target / "trainB").iterdir())) == 18  # the __MACOSX twin is not an image of the dataset
    assert (target / "trainB" / "5.png").read_bytes() == png_bytes(5)
    assert '"testB": 3' in (target / COMPLETE_MARKER).read_text()


def test_anime_faces_with_the_wrong_bytes_is_refused_and_nothing_is_laid_out(server, tmp_path, monkeypatch):
    archive = anime_faces_like_zip(server.folder)
    sources = [{"kind": "url", "url": f"{server.base}/{archive.name}"}]
    monkeypatch.setitem(DATASETS, "anime-faces", dataclasses.replace(DATASETS["anime-faces"], sources=sources,
                                                                     size=archive.stat().st_size))
    with pytest.raises(download.DownloadError, match="does not match the expected b50c3f2e"):
        prepare_dataset("anime-faces", root=tmp_path, quiet=True)
    assert not (tmp_path / "anime-faces").exists()
    assert not list((tmp_path / "downloads").glob("anime-faces*"))  # the mismatching file is deleted


def test_anime_faces_entry_names_its_licence_and_pins_the_hub_commit():
    asset = DATASETS["anime-faces"]
    assert asset.layout == "cartoons" and not asset.unverified and asset.size == 462_126_466
    assert asset.sha256 == "b50c3f2e1bbad0d119f8c5748a0d01138cb56152fb8997ce5c8b139129bf3c23"
    assert "CC0-1.0" in asset.description and "copyright" in asset.description
    urls = [s["url"] for s in asset.sources]
    assert urls == [f"https://huggingface.co/datasets/huggan/anime-faces/resolve/{revision}/data.zip"
                    for revision in (download.ANIME_FACES_COMMIT, "main")]


def test_unknown_names_suggest_close_matches(tmp_path):
    with pytest.raises(ValueError, match="horse2zebra"):
        prepare_dataset("horse2zebr", root=tmp_path)
    with pytest.raises(ValueError, match="licence"):
        prepare_dataset("cityscapes", root=tmp_path)
    with pytest.raises(ValueError, match="cartoongan/Hayao"):
        fetch_pretrained("cartoongan/hayao", dest=tmp_path)


def test_registries_hold_the_reference_sources():
    assert DATASETS["vangogh2photo"].sources == [{"kind": "url", "url": "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/vangogh2photo.zip"}]
    assert DATASETS["selfie2anime"].sources == [{"kind": "gdrive", "id": "1xOWj1UVgp6NKMT3HbPhBbtq2A4EDkghF"}]
    assert "cityscapes" not in DATASETS
    assert len([name for name in PRETRAINED if name.startswith("cyclegan/")]) == 18
    assert PRETRAINED["cartoongan/Shinkai"].sources[0]["url"] == "http://vllab1.ucmerced.edu/~yli62/CartoonGAN/pytorch_pth/Shinkai_net_G_float.pth"
    assert PRETRAINED["animegan2/face_paint_512_v2"].sources[0]["url"].endswith("/weights/face_paint_512_v2.pt")
    kinds = {name.split("/")[0] for name in PRETRAINED}
    assert kinds == {"cyclegan", "cartoongan", "animegan2"}
    for asset in [*DATASETS.values(), *PRETRAINED.values()]:
        assert asset.sha256 is not None or asset.md5 is not None or asset.unverified


def test_fetch_pretrained_default_folder_is_under_data_root(server, tmp_path, monkeypatch):
    monkeypatch.setenv("TOONLAB_DATA", str(tmp_path / "toonlab"))
    (server.folder / "w.pt").write_bytes(PAYLOAD)
    asset = Asset(name="animegan2/test", filename="animegan2/w.pt", sha256=PAYLOAD_SHA, archive=False,
                  sources=[{"kind": "url", "url": f"{server.base}/w.pt"}])
    monkeypatch.setitem(PRETRAINED, "animegan2/test", asset)
    path = fetch_pretrained("animegan2/test", quiet=True)
    assert path == tmp_path / "toonlab" / "pretrained" / "animegan2" / "w.pt"


# -- data_scripts are thin, documented entry points ------------------------------------------------


@pytest.mark.parametrize(
    "script", ["get_cyclegan_dataset.py", "get_selfie2anime.py", "face_crop.py", "check_dataset.py", "get_pretrained.py"]
)
def test_data_scripts_have_help(script, capsys):
    with pytest.raises(SystemExit) as info:
        _run_script(script, ["--help"])
    assert info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def _run_script(script: str, argv: list[str]):
    namespace = runpy.run_path(str(SCRIPTS / script))
    return namespace["main"](argv)


def test_check_dataset_script_fixes_drift_and_prints_counts(tmp_path, capsys):
    for split in ("train", "test"):
        for domain in ("A", "B"):
            (tmp_path / split / domain).mkdir(parents=True)
            (tmp_path / split / domain / "x.png").write_bytes(png_bytes(0))
    assert _run_script("check_dataset.py", [str(tmp_path), "--fix-layout"]) == 0
    out = capsys.readouterr().out
    assert "trainA" in out and "1" in out
    assert (tmp_path / "trainA" / "x.png").is_file()


def test_warnings_module_is_quiet_for_verified_downloads(server, tmp_path):
    asset = served_asset(server)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fetch(asset, tmp_path, quiet=True)


def test_toonlab_data_and_pretrained_commands_over_the_loopback_server(server, tmp_path, monkeypatch, capsys):
    from toonlab.cli import main

    archive = cartoonset_like_tgz(server.folder)
    monkeypatch.setitem(DATASETS, "cartoonset10k", dataclasses.replace(
        DATASETS["cartoonset10k"], sources=[{"kind": "url", "url": f"{server.base}/{archive.name}"}]))
    with pytest.warns(UnverifiedDownloadWarning):
        assert main(["data", "cartoonset10k", "--root", str(tmp_path / "datasets"), "--quiet"]) == 0
    target = tmp_path / "datasets" / "cartoonset10k"
    assert f"cartoonset10k: {target}" in capsys.readouterr().out
    assert len(list((target / "trainB").glob("*.png"))) == 10
    (server.folder / "Hayao_net_G_float.pth").write_bytes(PAYLOAD)
    monkeypatch.setitem(PRETRAINED, "cartoongan/Hayao", dataclasses.replace(
        PRETRAINED["cartoongan/Hayao"], sources=[{"kind": "url", "url": f"{server.base}/Hayao_net_G_float.pth"}]))
    with pytest.warns(UnverifiedDownloadWarning):
        assert main(["pretrained", "cartoongan/Hayao", "--dest", str(tmp_path / "weights"), "--quiet"]) == 0
    path = tmp_path / "weights" / PRETRAINED["cartoongan/Hayao"].filename
    assert path.read_bytes() == PAYLOAD and str(path) in capsys.readouterr().out
    assert main(["data", "--list"]) == 0 and "cartoonset100k" in capsys.readouterr().out
    assert main(["pretrained", "--list"]) == 0 and "animegan2/face_paint_512_v2" in capsys.readouterr().out
    assert main(["data"]) == 2 and "name a dataset" in capsys.readouterr().err
    assert main(["data", "horse2zebr", "--root", str(tmp_path)]) == 2 and "Did you mean" in capsys.readouterr().err
    assert main(["pretrained", "munit-synthetic"]) == 0 and "ships with toonlab" in capsys.readouterr().out
    assert main(["pretrained", "cartoongan/Hayaoo", "--dest", str(tmp_path / "weights")]) == 1  # named, the rest would go on
    assert "unknown pretrained model 'cartoongan/Hayaoo'" in capsys.readouterr().err
    assert _run_script("get_pretrained.py", ["--list"]) == 0 and "cartoongan/Hayao" in capsys.readouterr().out


def celeba_like_files(folder: Path) -> tuple[Path, Path]:
    """A CelebA-shaped archive (img_align_celeba/NNNNNN.jpg) and its partition file (0 train, 1 val, 2 test)."""
    entries = {}
    for k in range(1, 7):
        buffer = io.BytesIO()
        Image.fromarray(np.full((20, 16, 3), 30 * k, dtype=np.uint8)).save(buffer, "JPEG")
        entries[f"img_align_celeba/{k:06d}.jpg"] = buffer.getvalue()
    archive = zip_with(folder, entries, "img_align_celeba.zip")
    partition = folder / "list_eval_partition.txt"
    partition.write_text("".join(f"{k:06d}.jpg {split}\n" for k, split in zip(range(1, 7), "001122")))
    return archive, partition


def test_celeba_is_laid_out_by_its_official_partition_and_checked_by_its_published_md5(tmp_path, monkeypatch):
    archive, partition = celeba_like_files(tmp_path)
    served = {download.CELEBA_GDRIVE["img_align_celeba.zip"][0]: archive,
              download.CELEBA_GDRIVE["list_eval_partition.txt"][0]: partition}

    def fake_download(**kwargs):
        Path(kwargs["output"]).write_bytes(served[kwargs["id"]].read_bytes())
        return kwargs["output"]

    monkeypatch.setattr(gdown, "download", fake_download)
    md5 = lambda path: hashlib.md5(path.read_bytes()).hexdigest()
    key = "celeba/list_eval_partition"
    monkeypatch.setitem(download.COMPANIONS, key, dataclasses.replace(download.COMPANIONS[key], md5=md5(partition)))
    monkeypatch.setitem(DATASETS, "celeba", dataclasses.replace(DATASETS["celeba"], md5="0" * 32))
    with pytest.raises(download.DownloadError, match="md5 .* does not match the published 0000"):
        prepare_dataset("celeba", root=tmp_path / "datasets", quiet=True)  # a damaged archive is refused
    monkeypatch.setitem(DATASETS, "celeba", dataclasses.replace(DATASETS["celeba"], md5=md5(archive)))
    target = prepare_dataset("celeba", root=tmp_path / "datasets", quiet=True)
    assert {p.name: sorted(q.name for q in p.iterdir()) for p in target.iterdir() if p.is_dir()} == {
        "trainA": ["000001.jpg", "000002.jpg"], "valA": ["000003.jpg", "000004.jpg"], "testA": ["000005.jpg", "000006.jpg"]}
    assert '"unlisted": 0' in (target / COMPLETE_MARKER).read_text()


def test_a_partition_naming_a_missing_photo_is_refused(tmp_path):
    archive, partition = celeba_like_files(tmp_path)
    extracted = download.extract(archive, tmp_path / "x")
    partition.write_text(partition.read_text() + "999999.jpg 0\n")
    with pytest.raises(download.DownloadError, match="lists 999999.jpg, which the archive does not hold"):
        download.layout_photos(extracted, tmp_path / "out", partition)
    assert not (tmp_path / "out").exists()  # checked before anything moved: the extraction is as it was
    partition.write_text("000001.jpg train\n")
    with pytest.raises(download.DownloadError, match="expected 'NAME.jpg 0|1|2'"):
        download.layout_photos(extracted, tmp_path / "out2", partition)
