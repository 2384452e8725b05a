"""Datasets and pretrained weights: download with checksums and resume, safe extraction, layout.

Used by ``data_scripts/`` and the notebooks' optional real-data cells (data_scripts/README.md).
One :class:`Asset` per file names its sha256 and its sources, tried in order:

1. :func:`fetch` returns a final file whose sha256 matches; a mismatching one is deleted.
2. A plain URL is streamed with ``requests`` into ``<file>.part`` in chunks, resuming with an HTTP
   ``Range`` header when a part exists; Google Drive goes through ``gdown.download(id=..., resume=True)``.
3. The sha256 is checked *after* the download, then the file is renamed into place atomically.
   On a mismatch it is deleted and the next source is tried; when every source fails the error lists
   each failure and where to put a manually downloaded copy.

:func:`extract` refuses archive members that would land outside the target folder (absolute
paths, ``..``, links and chains of links, device files) and archives that expand to more than
:data:`MAX_EXTRACTED_BYTES`, extracts into a temporary folder, renames it into place and
leaves a ``.complete`` marker. :func:`prepare_dataset` chains it all and normalises the result to
``root/<name>/{trainA,trainB,testA,testB}``.

Pinning checksums: the upstream archives publish no checksums, so most registry entries below are
``unverified=True`` with ``sha256=None``. The first download prints the sha256 it computed (and
warns); paste it into the registry so every later download is verified.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import unicodedata
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from toonlab.config import data_root
from toonlab.data.folders import IMAGE_EXTENSIONS, DatasetLayoutError, list_images, normalize_layout, validate_layout

#: dataset layouts :func:`prepare_dataset` knows (see :attr:`Asset.layout`)
LAYOUTS = ("unpaired", "cartoons", "photos")
#: the fixed split of cartoons-only datasets (CartoonSet, anime-faces): every ``CARTOONS_TEST_EVERY``-th image in name order is a test image
CARTOONS_TEST_EVERY = 10
#: Marker file written into a folder once its extraction or preparation finished.
COMPLETE_MARKER = ".complete"
#: Browser page of a Google Drive file (the manual fallback).
GDRIVE_VIEW_URL = "https://drive.google.com/file/d/{id}/view"
GDOWN_COOKIES = "~/.cache/gdown/cookies.txt"
#: The most bytes :func:`extract` writes from one archive (the members' sizes added up), unless its
#: ``max_bytes`` says otherwise: the largest registered dataset expands to a few GiB, so an archive
#: announcing more is a decompression bomb or the wrong file, refused before anything is written.
MAX_EXTRACTED_BYTES = 50 * 2**30
_CHUNK = 1 << 20
_NET_CHUNK = 1 << 16  # small network reads: a broken connection loses at most this much
_TIMEOUT = (15, 60)  # connect, read (seconds)


class DownloadError(RuntimeError):
    """No source delivered a file with the expected checksum; the message says what to do by hand."""


class ArchiveError(RuntimeError):
    """An archive cannot be extracted (not an archive, or unsafe)."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would be written outside the target folder, or is a link or device."""


class ArchiveTooLargeError(ArchiveError):
    """An archive would expand to more than the extraction limit (``max_bytes``)."""


class UnverifiedDownloadWarning(UserWarning):
    """An asset without a pinned sha256 was downloaded; its computed sha256 is in the message."""


@dataclass
class Asset:
    """One downloadable file: where it comes from and what its bytes must hash to.

    ``sources`` are tried in order, each ``{"kind": "url", "url": ...}`` or
    ``{"kind": "gdrive", "id": ...}``. ``sha256=None`` is accepted only with ``unverified=True``:
    such files are checked for size (if given) and for not being a web page, and their computed
    sha256 is printed so it can be pinned here. ``filename`` may contain sub-folders.
    """

    name: str
    filename: str
    sha256: str | None
    size: int | None = None
    sources: list[dict[str, str]] = field(default_factory=list)
    archive: bool = True
    unverified: bool = False
    description: str = ""
    #: how :func:`prepare_dataset` lays the extracted files out: ``"unpaired"`` (trainA/trainB/testA/testB
    #: somewhere inside), ``"cartoons"`` (one folder of cartoons, CartoonSet's with attribute CSVs: domain B only)
    #: or ``"photos"`` (one folder of face photos split by a companion partition file: CelebA, domain A only)
    layout: str = "unpaired"
    #: the MD5 the upstream publishes, checked when no sha256 is pinned (CelebA publishes MD5s only)
    md5: str | None = None
    #: registry names (in :data:`COMPANIONS`) of files the layout needs beside the archive
    companions: tuple[str, ...] = ()

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"asset {self.name!r}: layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.sha256 is not None:
            self.sha256 = self.sha256.lower()
            if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
                raise ValueError(f"asset {self.name!r}: sha256 must be 64 hex digits, got {self.sha256!r}")
        elif self.md5 is not None:
            self.md5 = self.md5.lower()
            if not re.fullmatch(r"[0-9a-f]{32}", self.md5):
                raise ValueError(f"asset {self.name!r}: md5 must be 32 hex digits, got {self.md5!r}")
        elif not self.unverified:
            raise ValueError(
                f"asset {self.name!r} has no sha256; set it, or mark the asset unverified=True on purpose"
            )
        parts = PurePosixPath(self.filename).parts
        if not parts or self.filename.startswith("/") or ".." in parts:
            raise ValueError(f"asset {self.name!r}: filename must be a relative path, got {self.filename!r}")
        if not self.sources:
            raise ValueError(f"asset {self.name!r} has no sources")
        for source in self.sources:
            kind = source.get("kind")
            needed = {"url": "url", "gdrive": "id"}.get(kind)
            if needed is None or not source.get(needed):
                raise ValueError(
                    f"asset {self.name!r}: each source is {{'kind': 'url', 'url': ...}} or "
                    f"{{'kind': 'gdrive', 'id': ...}}, got {source!r}"
                )


def source_label(source: dict[str, str]) -> str:
    """Human-readable location of a source (the browser URL for Google Drive)."""
    if source["kind"] == "gdrive":
        return f"Google Drive {GDRIVE_VIEW_URL.format(id=source['id'])}"
    return source["url"]


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def md5_of(path: str | Path) -> str:
    """Hex MD5 of a file (only to compare with an upstream's published MD5; sha256 is toonlab's own pin)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _pinned_mismatch(asset: Asset, path: Path) -> str | None:
    """Why ``path`` is not ``asset`` (its sha256, else its published MD5, differs); None when it matches or nothing is pinned."""
    if asset.sha256 is not None:
        digest = sha256_of(path)
        return None if digest == asset.sha256 else f"sha256 {digest} does not match the expected {asset.sha256}"
    if asset.md5 is not None:
        digest = md5_of(path)
        return None if digest == asset.md5 else f"md5 {digest} does not match the published {asset.md5}"
    return None


# --------------------------------------------------------------------------------------------------
# fetch


class _Rejected(Exception):
    """A downloaded file failed verification (already deleted)."""


def fetch(asset: Asset, dest_dir: str | Path, quiet: bool = False) -> Path:
    """Make ``dest_dir/asset.filename`` exist with the right sha256 and return its path.

    See the module docstring for the algorithm. Raises :class:`DownloadError` naming each source's
    failure and the path where a manually downloaded copy would be picked up.
    """
    final = Path(dest_dir).expanduser() / asset.filename
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.is_file():
        if asset.size is not None and final.stat().st_size != asset.size:
            _say(quiet, f"{final} has {final.stat().st_size} bytes, not {asset.size}; deleting it and downloading again")
            final.unlink()
        elif asset.sha256 is None and asset.md5 is None:
            return final  # unverifiable; it got its final name only after the checks below
        elif _pinned_mismatch(asset, final) is None:
            return final
        else:
            _say(quiet, f"{final} does not match its checksum; deleting it and downloading again")
            final.unlink()

    failures = []
    for source in asset.sources:
        try:
            candidate = _download(source, final, quiet)
            _verify(asset, candidate, quiet)
        except _Rejected as err:
            failures.append(f"{source_label(source)}: {err}")
            continue
        except DownloadError as err:
            failures.append(f"{source_label(source)}: {err}")
            continue
        except Exception as err:  # network errors of any flavour: record and try the next source
            failures.append(f"{source_label(source)}: {err.__class__.__name__}: {err}")
            continue
        os.replace(candidate, final)
        return final
    raise DownloadError(_failure_message(asset, final, failures))


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        print(message, flush=True)


def _download(source: dict[str, str], final: Path, quiet: bool) -> Path:
    """Download one source next to ``final``; return the not-yet-verified file."""
    if source["kind"] == "gdrive":
        return _download_gdrive(source["id"], final, quiet)
    return _download_url(source["url"], final.with_name(final.name + ".part"), quiet)


def _download_url(url: str, part: Path, quiet: bool) -> Path:
    """Stream ``url`` into ``part``, resuming an existing part with a ``Range`` request.

    Servers that ignore ``Range`` (200 instead of 206) get a fresh download; a 416 means the part is
    complete already (or longer than the file, then it starts again). A connection that breaks
    leaves the part for the next call to resume.
    """
    import requests
    from tqdm.auto import tqdm

    for _attempt in range(3):
        have = part.stat().st_size if part.is_file() else 0
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        with requests.get(url, headers=headers, stream=True, timeout=_TIMEOUT) as response:
            if response.status_code == 416 and have:
                total = _content_range_total(response.headers.get("Content-Range"))
                if total == have:
                    return part
                _say(quiet, f"{part.name} is longer than the file on the server; starting again")
                part.unlink()
                continue
            if response.status_code >= 400:
                raise DownloadError(f"HTTP {response.status_code} {response.reason}")
            resumed = have > 0 and response.status_code == 206
            if resumed and _content_range_start(response.headers.get("Content-Range")) != have:
                _say(quiet, "the server resumed at the wrong offset; starting again")
                part.unlink()
                continue
            if have and not resumed:
                _say(quiet, "the server does not support resuming (it ignored the Range header); starting again")
                have = 0
            expected = response.headers.get("Content-Length")
            expected = int(expected) if expected and expected.isdigit() else None
            written = 0
            total = (have + expected) if expected is not None else None
            _say(quiet, f"{'resuming' if resumed else 'downloading'} {url} -> {part.name[:-5]}")
            with open(part, "ab" if resumed else "wb") as handle, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, disable=quiet, leave=False
            ) as bar:
                try:
                    for block in response.iter_content(_NET_CHUNK):
                        handle.write(block)
                        written += len(block)
                        bar.update(len(block))
                except (requests.RequestException, OSError) as err:
                    raise DownloadError(
                        f"the connection broke after {have + written} bytes ({err.__class__.__name__}); "
                        f"run again to resume from {part}"
                    ) from err
            if expected is not None and written != expected:
                raise DownloadError(
                    f"the connection closed after {written} of {expected} bytes; run again to resume from {part}"
                )
            return part
    raise DownloadError("the server kept answering the resume request inconsistently")


def _content_range_total(header: str | None) -> int | None:
    match = re.match(r"bytes\s+(?:\*|\d+-\d+)/(\d+)", header or "")
    return int(match.group(1)) if match else None


def _content_range_start(header: str | None) -> int | None:
    match = re.match(r"bytes\s+(\d+)-\d+/(?:\d+|\*)", header or "")
    return int(match.group(1)) if match else None


def _download_gdrive(file_id: str, final: Path, quiet: bool) -> Path:
    """``gdown.download(id=..., output=<file>.gdown, resume=True)``, with gdown 6 keywords only.

    gdown keeps its own partial file beside the output and resumes it; it returns an existing output
    unchecked, which is why :func:`fetch` verifies the result and deletes it on a mismatch.
    """
    import gdown
    from gdown.exceptions import FileURLRetrievalError

    staging = final.with_name(final.name + ".gdown")
    try:
        result = gdown.download(id=file_id, output=str(staging), quiet=quiet, resume=True)
    except FileURLRetrievalError as err:
        raise DownloadError(
            f"Google Drive refused the download ({_first_line(err)}). Drive limits popular files "
            f"('Too many users have viewed or downloaded this file recently'). Fixes: wait a day; or export "
            f"your browser's cookies for drive.google.com to {GDOWN_COOKIES} (gdown FAQ) and run again; or "
            f"download {GDRIVE_VIEW_URL.format(id=file_id)} in a browser and place the file at {final}"
        ) from err
    if result is None or not staging.is_file():
        raise DownloadError("gdown returned without writing a file")
    return staging


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else err.__class__.__name__


def _looks_like_html(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml"))


def _verify(asset: Asset, candidate: Path, quiet: bool) -> None:
    """Size, web-page and checksum (sha256, else the published MD5) checks of a fresh download; deletes it and raises :class:`_Rejected`."""
    size = candidate.stat().st_size
    problem = None
    if _looks_like_html(candidate) and not asset.filename.endswith((".html", ".htm")):
        problem = "the server sent a web page instead of the file (a quota, login or error page)"
    elif asset.size is not None and size != asset.size:
        problem = f"size {size} bytes, expected {asset.size}"
    elif asset.sha256 is not None or asset.md5 is not None:
        problem = _pinned_mismatch(asset, candidate)
    else:
        digest = sha256_of(candidate)
        message = (
            f"{asset.name}: no sha256 is pinned for {asset.filename}, so its content was not verified. "
            f"Computed sha256 = {digest} ({size} bytes). Maintainers: pin it in toonlab/data/download.py "
            f"(sha256={digest!r}, size={size})."
        )
        warnings.warn(message, UnverifiedDownloadWarning, stacklevel=4)
        _say(quiet, message)
    if problem:
        candidate.unlink(missing_ok=True)
        raise _Rejected(f"{problem}; the file was deleted")


def _failure_message(asset: Asset, final: Path, failures: list[str]) -> str:
    lines = [f"could not download {asset.filename} ({asset.name}) from any source:"]
    lines += [f"  - {failure}" for failure in failures]
    lines.append(
        "Manual fallback: download the file in a browser from one of the sources above and place it at\n"
        f"  {final}\n"
        "then run the same command again; it will be verified"
        + (f" (sha256 {asset.sha256})" if asset.sha256 else "")
        + " and used."
    )
    if any(source["kind"] == "gdrive" for source in asset.sources):
        lines.append(
            f"Google Drive quota errors: export your browser's cookies to {GDOWN_COOKIES} (see the gdown FAQ) and retry."
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# extract


def _unsafe(archive: Path, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"refusing to extract {archive}: member {member!r} {why}. The archive is corrupted or malicious; "
        "nothing was extracted. Delete it and download it again from the official source."
    )


def _check_member_name(archive: Path, name: str) -> None:
    normal = name.replace("\\", "/")
    if normal.startswith("/") or re.match(r"^[A-Za-z]:", normal):
        raise _unsafe(archive, name, "has an absolute path")
    if ".." in PurePosixPath(normal).parts:
        raise _unsafe(archive, name, "climbs out of the target folder with '..'")


def _link_escapes(member_name: str, link_target: str, symbolic: bool) -> bool:
    """Whether a link's target, read as plain text from where the link lies, leaves the folder."""
    link_target = link_target.replace("\\", "/")
    if link_target.startswith("/") or re.match(r"^[A-Za-z]:", link_target):
        return True
    base = posixpath.dirname(member_name.replace("\\", "/")) if symbolic else ""
    resolved = posixpath.normpath(posixpath.join(base, link_target))
    return resolved == ".." or resolved.startswith("../")


def _path_key(name: str) -> str:
    """A member path as the file system will treat it, for comparing paths: ``/`` and ``\\`` separate
    folders, ``.`` and empty parts vanish, and case and Unicode form are folded (as on macOS and
    Windows), so that two spellings of one path are one key. Used only to refuse, never to write."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    return unicodedata.normalize("NFC", "/".join(parts)).casefold()


def _prefixes(key: str) -> list[str]:
    """The folders a path goes through: ``a/b/c`` -> ``a``, ``a/b``."""
    parts = key.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _check_tar_links(archive: Path, members: list[tarfile.TarInfo]) -> None:
    """Refuse link chains, whatever tarfile's own filter (absent before Python 3.10.12/3.11.4) does.

    Each link is checked on its own by :func:`_link_escapes`, reading its target as text. That is
    sound only where no path goes *through* a symbolic link: ``a -> .`` then ``a/b -> ../x`` reads
    ``x`` as text but lands outside, and a file written to ``a/b`` afterwards follows it there. So no
    member name, no symbolic-link target and no hard-link target may pass through a symbolic link of
    the archive (in any member order: tar creates missing folders itself), and a name that is a
    symbolic link may not appear again as another member (it would be written through the link).
    Then every path is a chain of real folders and its text is where it lands.
    """
    symlinks = {_path_key(m.name) for m in members if m.issym()}
    if not symlinks:
        return
    seen: set[str] = set()
    for member in members:
        key = _path_key(member.name)
        through = next((p for p in _prefixes(key) if p in symlinks), None)
        if through is not None:
            raise _unsafe(archive, member.name, f"lies inside the symbolic link {through!r} (a link chain could "
                                                "lead outside the target folder)")
        if key in symlinks and key in seen:
            raise _unsafe(archive, member.name, "appears twice and one of them is a symbolic link (the second "
                                                "would be written through the link)")
        seen.add(key)
        if member.issym() or member.islnk():
            base = posixpath.dirname(member.name.replace("\\", "/")) if member.issym() else ""
            target = _path_key(posixpath.join(base, member.linkname.replace("\\", "/")))
            # the target's own text stays inside (checked before); its folders must be real ones
            parts: list[str] = []
            for part in target.split("/")[:-1]:
                parts = parts[:-1] if part == ".." else parts + [part]
                if "/".join(parts) in symlinks:
                    kind = "symbolic" if member.issym() else "hard"
                    raise _unsafe(archive, member.name, f"is a {kind} link through the symbolic link "
                                                        f"{'/'.join(parts)!r} (a link chain could lead outside)")


def _check_size(archive: Path, total: int, max_bytes: int | None) -> None:
    if max_bytes is not None and total > max_bytes:
        raise ArchiveTooLargeError(
            f"refusing to extract {archive}: its members add up to {_bytes_text(total)}, more than the limit of "
            f"{_bytes_text(max_bytes)} (a decompression bomb or the wrong file); nothing was extracted. If the "
            f"archive is genuine, call extract(..., max_bytes=N) with a larger N."
        )


def _bytes_text(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


def _check_zip(archive: Path, zf: zipfile.ZipFile, max_bytes: int | None = MAX_EXTRACTED_BYTES) -> int:
    infos = zf.infolist()
    for info in infos:
        _check_member_name(archive, info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise _unsafe(archive, info.filename, "is a symbolic link (toonlab extracts no links from zip files)")
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise _unsafe(archive, info.filename, "is a device or special file")
    # zipfile stops every member at its declared size (and checks its CRC), so the sum is a bound
    _check_size(archive, sum(info.file_size for info in infos), max_bytes)
    return len(infos)


def _check_tar(archive: Path, tf: tarfile.TarFile, max_bytes: int | None = MAX_EXTRACTED_BYTES) -> int:
    members = tf.getmembers()
    sizes: dict[str, int] = {}
    total = 0
    for member in members:
        _check_member_name(archive, member.name)
        if member.issym() and _link_escapes(member.name, member.linkname, symbolic=True):
            raise _unsafe(archive, member.name, f"is a symbolic link pointing outside ({member.linkname!r})")
        if member.islnk() and _link_escapes(member.name, member.linkname, symbolic=False):
            raise _unsafe(archive, member.name, f"is a hard link pointing outside ({member.linkname!r})")
        if member.isdev():
            raise _unsafe(archive, member.name, "is a device file or FIFO")
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise _unsafe(archive, member.name, "has an unsupported member type")
        if member.isfile():
            sizes[_path_key(member.name)] = member.size
            total += member.size
        elif member.islnk():  # tarfile copies the data again where the file system refuses the link
            total += sizes.get(_path_key(member.linkname), 0)
    _check_tar_links(archive, members)
    _check_size(archive, total, max_bytes)
    return len(members)


def extract(archive: str | Path, dest: str | Path, max_bytes: int | None = MAX_EXTRACTED_BYTES) -> Path:
    """Extract a zip or tar(.gz/.bz2/.xz) ``archive`` into the folder ``dest`` and return ``dest``.

    Every member is checked first; an absolute path, a ``..`` component, a link leaving the folder
    (zip: any link; tar: also a chain of links, or a member written through a link), a device file
    or FIFO raises :class:`UnsafeArchiveError` before anything is written, on every Python (tarfile's
    own ``filter="data"`` is used as a second line where it exists). Members adding up to more than
    ``max_bytes`` (default :data:`MAX_EXTRACTED_BYTES`; ``None``: no limit) raise
    :class:`ArchiveTooLargeError`, also before anything is written. The members go to a temporary folder beside ``dest`` that is renamed to ``dest`` at the
    end, holding a ``.complete`` marker; a ``dest`` that already has the marker is returned as is.
    """
    archive, dest = Path(archive).expanduser(), Path(dest).expanduser()
    if (dest / COMPLETE_MARKER).is_file():
        return dest
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ArchiveError(f"{dest} already exists without a {COMPLETE_MARKER} marker; delete it and run again")
    if not archive.is_file():
        raise ArchiveError(f"archive {archive} does not exist")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extracting-", dir=dest.parent))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                count = _check_zip(archive, zf, max_bytes)
                zf.extractall(staging)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                count = _check_tar(archive, tf, max_bytes)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second line of defence
                    tf.extractall(staging, filter="data")
                else:  # pragma: no cover - older Pythons
                    tf.extractall(staging)
        else:
            hint = " (it is a web page: the download was an error or quota page)" if _looks_like_html(archive) else ""
            raise ArchiveError(f"{archive} is neither a zip nor a tar archive{hint}; delete it and download it again")
        marker = {"archive": archive.name, "bytes": archive.stat().st_size, "members": count}
        (staging / COMPLETE_MARKER).write_text(json.dumps(marker) + "\n")
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


# --------------------------------------------------------------------------------------------------
# Registries

CYCLEGAN_DATASET_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"
CYCLEGAN_MODEL_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{name}.pth"
CARTOONGAN_URL = "http://vllab1.ucmerced.edu/~yli62/CartoonGAN/pytorch_pth/{name}_net_G_float.pth"
ANIMEGAN2_URL = "https://github.com/bryandlee/animegan2-pytorch/raw/main/weights/{name}.pt"

#: Unpaired CycleGAN datasets of datasets/download_cyclegan_dataset.sh (docs/reference.md §1.4).
#: cityscapes is left out on purpose (licence: get it from cityscapes-dataset.com); ae_photos and
#: the mini sets are not in the trainA/trainB layout.
CYCLEGAN_DATASETS = (
    "apple2orange",
    "summer2winter_yosemite",
    "horse2zebra",
    "monet2photo",
    "cezanne2photo",
    "ukiyoe2photo",
    "vangogh2photo",
    "maps",
    "facades",
    "iphone2dslr_flower",
)
#: The 18 official CycleGAN generators (scripts/download_cyclegan_model.sh); none is face->cartoon.
CYCLEGAN_PRETRAINED = (
    "apple2orange",
    "orange2apple",
    "summer2winter_yosemite",
    "winter2summer_yosemite",
    "horse2zebra",
    "zebra2horse",
    "monet2photo",
    "style_monet",
    "style_cezanne",
    "style_ukiyoe",
    "style_vangogh",
    "sat2map",
    "map2sat",
    "cityscapes_photo2label",
    "cityscapes_label2photo",
    "facades_photo2label",
    "facades_label2photo",
    "iphone2dslr_flower",
)
CARTOONGAN_STYLES = ("Hayao", "Hosoda", "Paprika", "Shinkai")
ANIMEGAN2_WEIGHTS = ("celeba_distill", "face_paint_512_v1", "face_paint_512_v2", "paprika")

# NOTE for maintainers: none of these upstream files publishes a checksum, and none could be
# downloaded where this registry was written. They are therefore unverified (sha256=None); the
# first download prints and warns the computed sha256 -- pin it here (sha256=..., size=...) so that
# every later download is verified.

#: name -> dataset archive. ``prepare_dataset(name)`` downloads, extracts and normalises it.
DATASETS: dict[str, Asset] = {
    name: Asset(
        name=name,
        filename=f"{name}.zip",
        sha256=None,  # unknown: fill in from the first download (see the note above)
        sources=[{"kind": "url", "url": CYCLEGAN_DATASET_URL.format(name=name)}],
        unverified=True,
        description=f"official CycleGAN dataset {name} (trainA/trainB/testA/testB)",
    )
    for name in CYCLEGAN_DATASETS
}
DATASETS["selfie2anime"] = Asset(
    name="selfie2anime",
    filename="selfie2anime.zip",
    sha256=None,  # unknown: fill in from the first download (see the note above)
    sources=[{"kind": "gdrive", "id": "1xOWj1UVgp6NKMT3HbPhBbtq2A4EDkghF"}],
    unverified=True,
    description="U-GAT-IT selfie2anime: 3,400 train + 100 test faces per domain (selfies -> anime faces)",
)

CARTOONSET_URLS = ("https://storage.googleapis.com/cartoonset_public_files/{name}.tgz",
                   "https://storage.cloud.google.com/cartoonset_public_files/{name}.tgz")
#: CartoonSet (Royer et al. 2017, the XGAN paper's data; CC BY 4.0, google.github.io/cartoonset): 2-D
#: avatars of 16 attributes, each ``csN.png`` (500 x 500) with ``csN.csv`` lines ``"attr", variant, n_variants``.
def _cartoonset(name: str, count: str, size: str) -> Asset:
    return Asset(
        name=name,
        filename=f"{name}.tgz",
        sha256=None,  # unknown: fill in from the first download (see the note above)
        sources=[{"kind": "url", "url": url.format(name=name)} for url in CARTOONSET_URLS],
        unverified=True,
        layout="cartoons",
        description=(f"CartoonSet {count} avatars ({size}; CC BY 4.0, credit Google's CartoonSet): cartoons only, "
                     f"laid out as trainB/testB (every {CARTOONS_TEST_EVERY}th in name order is a test image) "
                     "with each attribute CSV beside its PNG; add your photos as trainA/testA"),
    )


DATASETS["cartoonset10k"] = _cartoonset("cartoonset10k", "10,000", "about 450 MB")
DATASETS["cartoonset100k"] = _cartoonset("cartoonset100k", "100,000", "about 4.45 GB")

#: The larger anime-face collection: the HugGAN community's ``huggan/anime-faces`` on the Hugging Face Hub,
#: one ``data.zip`` of anime character faces (PNG). Licence: the dataset card declares CC0-1.0; the faces
#: are drawings collected from the web, so their artists' copyright may still apply -- fine for study,
#: check before publishing what you train on it. The Hub publishes the archive's sha256 and size (its
#: Git LFS pointer), so, unlike the older entries, this one is verified. The first source is pinned to
#: the commit that uploaded it; the second follows ``main``.
ANIME_FACES_COMMIT = "67ebcf8c69b45feb3883d695f04227078a6c9da9"
ANIME_FACES_URL = "https://huggingface.co/datasets/huggan/anime-faces/resolve/{revision}/data.zip"
DATASETS["anime-faces"] = Asset(
    name="anime-faces",
    filename="anime-faces.zip",
    sha256="b50c3f2e1bbad0d119f8c5748a0d01138cb56152fb8997ce5c8b139129bf3c23",
    size=462_126_466,
    sources=[{"kind": "url", "url": ANIME_FACES_URL.format(revision=revision)} for revision in (ANIME_FACES_COMMIT, "main")],
    layout="cartoons",
    description=("huggan/anime-faces on the Hugging Face Hub: anime character faces (462 MB; the card declares CC0-1.0, "
                 "the drawings' artists may still hold copyright): cartoons only, laid out as trainB/testB (every "
                 f"{CARTOONS_TEST_EVERY}th in name order is a test image); add your photos as trainA/testA"),
)


CELEBA_GDRIVE = {"img_align_celeba.zip": ("0B7EVK8r0v71pZjFTYXZWM3FlRnM", "00d2c5bc6d35e252742224ab0c1e8fcb"),
                 "list_eval_partition.txt": ("0B7EVK8r0v71pY0NSMzRuSXJEVkk", "d32c9cbf5e040fd4025c592c306e6668")}
#: files a dataset's layout needs beside its archive (fetched into the same downloads folder)
COMPANIONS: dict[str, Asset] = {
    "celeba/list_eval_partition": Asset(
        name="celeba/list_eval_partition", filename="celeba/list_eval_partition.txt", sha256=None,
        md5=CELEBA_GDRIVE["list_eval_partition.txt"][1], archive=False,
        sources=[{"kind": "gdrive", "id": CELEBA_GDRIVE["list_eval_partition.txt"][0]}],
        description="CelebA's official train (0) / validation (1) / test (2) partition"),
}
#: CelebA aligned faces (Liu et al. 2015; non-commercial research use only, see mmlab.ie.cuhk.edu.hk/projects/CelebA.html)
DATASETS["celeba"] = Asset(
    name="celeba", filename="celeba/img_align_celeba.zip", sha256=None, md5=CELEBA_GDRIVE["img_align_celeba.zip"][1],
    sources=[{"kind": "gdrive", "id": CELEBA_GDRIVE["img_align_celeba.zip"][0]}], layout="photos",
    companions=("celeba/list_eval_partition",),
    description=("CelebA aligned faces, 202,599 photos (1.4 GB; non-commercial research use only): photos only, laid "
                 "out as trainA/valA/testA by the official partition; add cartoons as trainB/testB"),
)


def layout_photos(source: str | Path, dest: str | Path, partition: str | Path) -> dict[str, int]:
    """Lay CelebA's extracted photos out as ``dest/{trainA,valA,testA}`` by its official partition file.

    ``partition`` holds lines ``000001.jpg 0`` (0 train, 1 validation, 2 test). A photo the file does not
    list stays out (and is counted as ``unlisted``); a listed photo that is missing raises, naming it.
    The whole file is checked before the first photo moves, so a bad partition leaves the extraction as it was.
    """
    source, dest = Path(source), Path(dest)
    images = {p.name: p for p in source.rglob("*.jpg")}
    if not images:
        raise DownloadError(f"{source} holds no JPEG photos: this is not the CelebA archive")
    folders = {"0": "trainA", "1": "valA", "2": "testA"}
    moves: dict[str, str] = {}
    for number, line in enumerate(Path(partition).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in folders:
            raise DownloadError(f"{partition} line {number}: expected 'NAME.jpg 0|1|2', got {line!r}")
        name, split = parts
        if name not in images:
            raise DownloadError(f"{partition} lists {name}, which the archive does not hold: the archive is incomplete")
        moves[name] = folders[split]
    counts = {name: 0 for name in folders.values()}
    for name, folder_name in moves.items():
        folder = dest / folder_name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.move(str(images[name]), str(folder / name))
        counts[folder_name] += 1
    counts["unlisted"] = len(images) - len(moves)
    return counts


def layout_cartoons(source: str | Path, dest: str | Path, test_every: int = CARTOONS_TEST_EVERY) -> dict[str, int]:
    """Lay a cartoons-only archive (CartoonSet's ``csN.png`` + ``csN.csv``, anime-faces' ``N.png``) out as
    ``dest/{trainB,testB}``; return the counts.

    The split is fixed and documented: in name order, every ``test_every``-th image (the 1st, the 11th,
    ...) goes to ``testB``, the rest to ``trainB``. An attribute CSV beside an image moves with it.
    Hidden files and macOS ``__MACOSX`` folders are skipped. Raises a :class:`DownloadError` naming the
    folder when it holds no image.
    """
    source, dest = Path(source), Path(dest)
    images = sorted(list_images(source), key=lambda p: p.name)  # list_images leaves hidden files and __MACOSX out
    if not images:
        raise DownloadError(f"{source} holds no images ({' '.join(IMAGE_EXTENSIONS)}): this is not a cartoons archive")
    counts = {"trainB": 0, "testB": 0}
    for index, image in enumerate(images):
        folder = dest / ("testB" if index % test_every == 0 else "trainB")
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / image.name).exists():
            raise DownloadError(f"two images are named {image.name} in {source}; a cartoons archive names each once")
        shutil.move(str(image), str(folder / image.name))
        attributes = image.with_suffix(".csv")
        if attributes.is_file():
            shutil.move(str(attributes), str(folder / attributes.name))
        counts[folder.name] += 1
    return counts


def read_cartoonset_attributes(path: str | Path) -> dict[str, tuple[int, int]]:
    """One CartoonSet ``csN.csv``: attribute name -> ``(variant, number of variants)``, e.g. ``{"hair": (57, 111)}``."""
    import csv

    attributes = {}
    with open(path, newline="") as handle:
        for row in csv.reader(handle, skipinitialspace=True):
            if not row:
                continue
            if len(row) != 3:
                raise ValueError(f"{path}: expected lines '\"attribute\", variant, n_variants', got {row!r}")
            attributes[row[0]] = (int(row[1]), int(row[2]))
    return attributes


def _unverified_files(kind: str, names, filename: str, url: str, description: str) -> dict[str, Asset]:
    """Registry entries ``"<kind>/<name>"`` for single weight files whose sha256 is not known yet."""
    return {
        f"{kind}/{name}": Asset(
            name=f"{kind}/{name}",
            filename=filename.format(name=name),
            sha256=None,  # unknown: fill in from the first download (fetch prints it)
            sources=[{"kind": "url", "url": url.format(name=name)}],
            archive=False,
            unverified=True,
            description=description.format(name=name),
        )
        for name in names
    }


#: name -> single checkpoint file. The part before "/" is the ``toonlab.hub.load_official`` kind.
PRETRAINED: dict[str, Asset] = {
    **_unverified_files("cyclegan", CYCLEGAN_PRETRAINED, "cyclegan/{name}.pth",
                        CYCLEGAN_MODEL_URL, "official CycleGAN ResnetGenerator {name} (9 blocks, instance norm)"),
    **_unverified_files("cartoongan", CARTOONGAN_STYLES, "cartoongan/{name}_net_G_float.pth",
                        CARTOONGAN_URL,
                        "CartoonGAN {name} generator (converted from the authors' Torch model; BGR)"),
    **_unverified_files("animegan2", ANIMEGAN2_WEIGHTS, "animegan2/{name}.pt",
                        ANIMEGAN2_URL, "AnimeGANv2 generator {name} (bryandlee/animegan2-pytorch)"),
}


def _lookup(registry: dict[str, Asset], name: str, what: str) -> Asset:
    if name in registry:
        return registry[name]
    if what == "dataset" and name == "cityscapes":
        raise ValueError(
            "cityscapes is not redistributed (licence): register at https://www.cityscapes-dataset.com, "
            "download it there and arrange it as trainA/trainB/testA/testB yourself"
        )
    close = difflib.get_close_matches(name, list(registry), n=3)
    suggestion = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown {what} {name!r}.{suggestion} Known: {', '.join(sorted(registry))}")


def default_dataset_root() -> Path:
    """``toonlab.config.data_root() / "datasets"``."""
    return data_root() / "datasets"


def _validate(asset: Asset, folder: Path) -> None:
    """Raise a ValueError when ``folder`` does not hold ``asset``'s layout (both domains, or a cartoons-only trainB/testB)."""
    if asset.layout == "unpaired":
        validate_layout(folder)
        return
    for split in (("trainB", "testB") if asset.layout == "cartoons" else ("trainA", "testA")):
        if not (folder / split).is_dir() or not list_images(folder / split):
            raise DatasetLayoutError(f"{folder / split} is missing or holds no images")


def prepare_dataset(name: str, root: str | Path | None = None, quiet: bool = False, keep_archive: bool = True,
                    max_bytes: int | None = MAX_EXTRACTED_BYTES) -> Path:
    """Download, verify, extract and lay out dataset ``name``; return ``root/name``.

    The result is ``root/name/{trainA,trainB,testA,testB}`` (wherever the archive nests them,
    e.g. ``dataset/selfie2anime/trainA``) with a ``.complete`` marker; a second call returns at once.
    A cartoons-only dataset (``layout="cartoons"``: CartoonSet, anime-faces) becomes ``root/name/{trainB,testB}`` (:func:`layout_cartoons`).
    The archive stays in ``root/downloads`` unless ``keep_archive`` is False. ``max_bytes`` caps the
    extracted size (see :func:`extract`).
    """
    asset = _lookup(DATASETS, name, "dataset")
    root = default_dataset_root() if root is None else Path(root).expanduser()
    target = root / name
    if (target / COMPLETE_MARKER).is_file():
        _validate(asset, target)
        return target
    if target.exists():
        try:
            _validate(asset, target)
        except ValueError as err:
            raise DownloadError(
                f"{target} exists but is not a complete dataset; delete it and run again.\n{err}"
            ) from err
        (target / COMPLETE_MARKER).write_text(json.dumps({"dataset": name, "source": "found in place"}) + "\n")
        return target
    archive = fetch(asset, root / "downloads", quiet=quiet)
    companions = {key: fetch(COMPANIONS[key], root / "downloads", quiet=quiet) for key in asset.companions}
    extracted = root / f".{name}.extracted"
    building = root / f".{name}.building"
    for leftover in (extracted, building):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        extract(archive, extracted, max_bytes=max_bytes)
        marker = {"dataset": name, "archive": archive.name}
        if asset.layout == "cartoons":
            marker["split"] = f"every {CARTOONS_TEST_EVERY}th image in name order is in testB"
            marker["counts"] = layout_cartoons(extracted, building)
        elif asset.layout == "photos":
            partition = companions[asset.companions[0]]
            marker["split"] = f"the official partition {partition.name}"
            marker["counts"] = layout_photos(extracted, building, partition)
        else:
            normalize_layout(extracted, building)
            validate_layout(building)
        (building / COMPLETE_MARKER).write_text(json.dumps(marker) + "\n")
        os.replace(building, target)
    finally:
        shutil.rmtree(extracted, ignore_errors=True)
        shutil.rmtree(building, ignore_errors=True)
    if not keep_archive:
        archive.unlink()
    return target


def fetch_pretrained(name: str, dest: str | Path | None = None, quiet: bool = False) -> Path:
    """Download pretrained checkpoint ``name`` (a key of :data:`PRETRAINED`) and return its path.

    Default folder: ``toonlab.config.data_root() / "pretrained"``. Load it with
    ``toonlab.hub.load_official(name.split("/")[0], path)``.
    """
    asset = _lookup(PRETRAINED, name, "pretrained model")
    dest = data_root() / "pretrained" if dest is None else Path(dest).expanduser()
    return fetch(asset, dest, quiet=quiet)
