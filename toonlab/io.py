"""Atomic file writing: a crash, a full disk or a concurrent reader never sees half a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Sequence


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], fsync: bool = True) -> Path:
    """Call ``write(handle)`` on a temporary file in ``path``'s folder, then rename it over ``path``.

    The previous file (if any) stays intact until the new one is complete.
    """
    return atomic_write_all([(path, write, fsync)])[0]


def atomic_write_all(files: Sequence[tuple[str | Path, Callable[[BinaryIO], None], bool]]) -> list[Path]:
    """:func:`atomic_write` of several ``(path, write, fsync)`` files that belong together.

    Every temporary file is written completely before the first rename, then they are renamed in
    the given order, one system call after the other. An error or a kill while writing leaves all
    the old files as they were; only a kill between two renames (no work is done there) leaves the
    first files new and the later ones old -- so put the one that commits the set last.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for path, write, fsync in files:
            path = Path(path)
            staged.append((_write_temporary(path, write, fsync), path))
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _path in staged:
            with contextlib.suppress(OSError):  # a renamed one is gone already
                os.unlink(tmp)
        raise
    return [path for _tmp, path in staged]


def _write_temporary(path: Path, write: Callable[[BinaryIO], None], fsync: bool) -> str:
    """A complete temporary copy of the new ``path`` (``.NAME.*.tmp`` beside it); its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a saved file gets the usual permissions
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _umask() -> int:
    """The process umask (read by setting it and putting it back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files an :func:`atomic_write` of ``path`` left behind when it was killed."""
    path = Path(path)
    removed = []
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()
            removed.append(leftover)
    return removed
