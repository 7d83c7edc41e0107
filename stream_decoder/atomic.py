"""Atomic file (and folder) writes: readers (the rig, a resumed job) see the old file or the new one,
never half of one."""

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def write_atomic_with(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write` on a file beside `path`, flush it to disk, then rename it over `path`.

    The temporary name carries the process id, so two writers never share one; on any error it is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write `data` (text is UTF-8 encoded) to `path` atomically."""
    payload = data.encode() if isinstance(data, str) else data
    write_atomic_with(path, lambda f: f.write(payload))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name beside `path` (same suffix) for a writer that wants a file name, not a file
    (ONNX Runtime); renamed over `path` when the block succeeds, removed when it fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def replace_folder_with(path: str | Path, fill: Callable[[Path], object]) -> None:
    """Call `fill` on a new folder beside `path` (writing its files with `write_atomic*`, which flush
    them to disk), then rename it to `path`: a reader finds the old folder or the whole new one.

    A folder already at `path` is renamed aside first and deleted after: a crash between the two
    renames leaves nothing at `path`, never a mix, and the old folder beside it (`.<name>.<pid>.old`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    for stale in (tmp, old):  # left by a crashed process that had this pid
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    try:
        fill(tmp)
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
    except BaseException:
        if old.exists() and not path.exists():
            os.rename(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
