"""TIFF folder bridge: pages of the TIFF files an acquisition writes (ScanImage and others),
published as `frame` messages while the files grow.

Each poll lists the folder's files matching the pattern, in name order (ScanImage numbers the
files of an acquisition `..._00001.tif`, `..._00002.tif`), and publishes every page completed since
the last poll: a page counts once its IFD, the pointer to it and its pixel data are all in the
file. Where the last published page's IFD ended is remembered per file, so a poll reads only the
new pages, however long the file. A file the writer has not finished may not parse: it is tried
again next poll, and later files wait for it, so pages go out in acquisition order. Pages are
numbered across the files: page index k is taken at `t0 + k / rate_hz` and shows plane
`k % n_planes`, so each page must be one plane of one channel (save one channel).

Pages must be uint16 or int16, or convert to one of them without loss (uint8, int8, bool); any
other type is refused. Files already in the folder when the bridge starts are left alone unless
`include_existing`: they are an earlier acquisition's.
"""

import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from stream_decoder.rig.bridge import FrameTiming
from stream_decoder.rig.replay import Rig
from stream_decoder.stream.stats import kv

log = logging.getLogger(__name__)
FIRST_IFD_POINTER = {42: 4, 43: 8}  # where the offset of the first IFD is: classic TIFF, BigTIFF
WIRE_TYPES = (np.dtype(np.uint16), np.dtype(np.int16))


@dataclass
class _FileState:
    published: int = 0  # pages of this file published
    pointer: int | None = None  # file position of the offset of the next IFD; None: the first one's
    finished: bool = False  # a later file existed before this one was read to its end


class TiffFolderBridge:
    """Watches a folder for TIFF files, one `poll_once` at a time."""

    def __init__(
        self,
        folder: Path,
        rig: Rig,
        rate_hz: float,
        n_planes: int = 1,
        pattern: str = "*.tif*",
        t0: float | None = None,
        include_existing: bool = False,
        clock: Callable[[], float] = time.time,
    ):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"TIFF folder {self.folder} does not exist or is not a folder")
        self.rig = rig
        self.timing = FrameTiming(rate_hz, n_planes, t0, clock)
        self.pattern = pattern
        self.published = 0  # pages published, all files: the next page's index
        self._files: dict[Path, _FileState] = {}
        self._waiting_on: Path | None = None
        existing = [] if include_existing else self._listing()
        for path in existing:
            self._files[path] = _FileState(finished=True)
        if existing:
            log.info(kv("tiff_existing_ignored", folder=self.folder, files=len(existing)))

    def poll_once(self) -> int:
        """Publish the pages completed since the last poll; how many."""
        listing = self._listing()
        before = self.published
        for i, path in enumerate(listing):
            state = self._files.setdefault(path, _FileState())
            if state.finished:
                continue
            ready = self._publish_new_pages(path, state)
            if not ready:
                if i + 1 < len(listing) and self._waiting_on != path:
                    log.warning(
                        kv("tiff_waiting", path=path.name, published=state.published, later_files=True)
                    )
                    self._waiting_on = path
                break
            state.finished = i + 1 < len(listing)  # the writer had moved on before this read
        return self.published - before

    def run(self, stop: threading.Event, idle_sleep_s: float = 0.05) -> None:
        """Poll until `stop` is set, sleeping `idle_sleep_s` after a poll that found nothing."""
        while not stop.is_set():
            if not self.poll_once():
                stop.wait(idle_sleep_s)

    def report(self) -> str:
        files = sum(state.published > 0 for state in self._files.values())
        return f"published {self.published} pages of {files} file(s)"

    def _listing(self) -> list[Path]:
        return sorted(p for p in self.folder.glob(self.pattern) if p.is_file())

    def _publish_new_pages(self, path: Path, state: _FileState) -> bool:
        """Publish the file's complete pages not yet published; False if it stopped at one that is not
        (yet) readable, True at the end of its IFD chain."""
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:  # a file being written may not parse yet at all
            log.debug(kv("tiff_not_ready", path=path.name, why=repr(exc)))
            return False
        with tif:
            try:
                while (image := _next_image(tif, path, state)) is not None:
                    if self.published == 0:
                        self.timing.start(0)
                    if state.published == 0:
                        log.info(kv("tiff_file", path=path.name, first_page=self.published))
                    self.rig.send_frame(
                        _wire_image(image, path, state.published), **self.timing.fields(self.published)
                    )
                    self.published += 1
                    state.published += 1
            except _NotReady as exc:
                log.debug(kv("tiff_not_ready", path=path.name, page=state.published, why=exc.args[0]))
                return False
        return True


class _NotReady(Exception):
    """The next page is not complete in the file (yet)."""


def _next_image(tif: tifffile.TiffFile, path: Path, state: _FileState) -> np.ndarray | None:
    """The pixels of the file's next page, its pointer advanced past it; None at the chain's end."""
    fmt, fh = tif.tiff, tif.filehandle
    if state.pointer is None:
        if fmt.version not in FIRST_IFD_POINTER:
            raise ValueError(f"{path}: TIFF version {fmt.version} is neither classic TIFF nor BigTIFF")
        state.pointer = FIRST_IFD_POINTER[fmt.version]
    try:
        offset = _read(fh, state.pointer, fmt.offsetformat)
        if offset == 0:
            return None
        (tag_count,) = struct.unpack(fmt.tagnoformat, _bytes(fh, offset, fmt.tagnosize))
        pointer = offset + fmt.tagnosize + tag_count * fmt.tagsize
        if pointer + fmt.offsetsize > fh.size:
            raise EOFError(f"the IFD at {offset} ends past the end of the file")
        fh.seek(offset)
        page = tifffile.TiffPage(tif, index=state.published)
        # Checked, not left to the decoder: a short strip must never come out as a zero-filled page.
        if any(o + n > fh.size for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)):
            raise EOFError("the pixel data end past the end of the file")
        image = page.asarray()
    except Exception as exc:  # anything a half-written IFD or strip makes the parser raise
        raise _NotReady(repr(exc)) from exc
    state.pointer = pointer
    return image


def _bytes(fh, position: int, count: int) -> bytes:
    fh.seek(position)
    data = fh.read(count)
    if len(data) < count:
        raise EOFError(f"{count} bytes at {position}, the file ends first")
    return data


def _read(fh, position: int, fmt: str) -> int:
    (value,) = struct.unpack(fmt, _bytes(fh, position, struct.calcsize(fmt)))
    if value >= fh.size:
        raise EOFError(f"offset {value} at {position} is past the end ({fh.size} bytes)")
    return value


def _wire_image(image: np.ndarray, path: Path, number: int) -> np.ndarray:
    """A page as a 2-D uint16 or int16 image, converted only where no value changes."""
    if image.ndim != 2:
        raise ValueError(
            f"{path.name} page {number} has shape {image.shape}: one grayscale plane a page is needed "
            "(save one channel)"
        )
    if image.dtype in WIRE_TYPES:
        return image
    for wire in WIRE_TYPES:
        if np.can_cast(image.dtype, wire, casting="safe"):
            return image.astype(wire)
    raise ValueError(
        f"{path.name} page {number} is {image.dtype}, which does not fit uint16 or int16 without loss; "
        "save the acquisition as 16-bit integers"
    )
