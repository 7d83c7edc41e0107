"""Scanbox bridge: frames from Scanbox's memory-mapped file, published as `frame` messages.

The file (Scanbox's `mmap` option): 16 int16 header words, then channel A's frame, then channel
B's, uint16. Word 1 is a semaphore: -1 the buffer is free, -2 Scanbox stopped imaging (for about
0.15 s, then -1 again), n >= 0 frame n is in the buffer. Words 2-3 are the frame size (lines,
pixels per line), word 4 the TTL line. Scanbox writes a frame only into a free buffer and
numbers it last; the reader copies it and writes -1 to hand the buffer back. A frame Scanbox
took while the buffer was still full never reaches the file: its number is skipped, and the
bridge skips its `seq` too, so the daemon counts it lost.

Scanbox is MATLAB: a frame is stored column-major, and as 65535 minus the PMT value (its own
plug-ins show `intmax('uint16') - chA`); the bridge publishes it row-major, bright where the
fluorescence is (`invert=False` publishes the stored values). The frame number is an int16 that
stops at 32767: from there on frames are counted, not numbered, and a frame lost there goes
unnoticed. Each acquisition is a session of its own; the frame size may change between
acquisitions, never within one (the bridge refuses: the file is not being written as Scanbox does).
"""

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stream_decoder.rig.bridge import FrameTiming
from stream_decoder.rig.replay import Rig
from stream_decoder.stream.stats import kv

log = logging.getLogger(__name__)
HEADER_WORDS = 16
HEADER_BYTES = HEADER_WORDS * 2
FREE, STOPPED = -1, -2
LAST_NUMBER = 32767  # the int16 frame number saturates here
CHANNELS = ("A", "B")


class ScanboxBridge:
    """Reads frames from Scanbox's memory-mapped file, one `poll_once` at a time."""

    def __init__(
        self,
        path: Path,
        rig: Rig,
        rate_hz: float,
        n_planes: int = 1,
        t0: float | None = None,
        channel: str = "A",
        invert: bool = True,
        clock: Callable[[], float] = time.time,
    ):
        self.path = Path(path)
        self.rig = rig
        self.timing = FrameTiming(rate_hz, n_planes, t0, clock)
        if channel not in CHANNELS:
            raise ValueError(f"Scanbox channel {channel!r} is not one of {', '.join(CHANNELS)}")
        self.channel = CHANNELS.index(channel)
        self.invert = invert
        self._mm = _open_mmap(self.path)
        self._header = self._mm[:HEADER_BYTES].view("<i2")
        self._first_session = rig.session
        self.published = 0
        self.missed = 0  # frames Scanbox numbered that never reached the file (the buffer was full)
        self.acquisitions = 0
        self._acquiring = False
        self._shape: tuple[int, int] = (0, 0)
        self._number = 0  # the header's number of the last frame read
        self._index = 0  # that frame's index in the acquisition (past the number's saturation)

    def poll_once(self) -> str:
        """'frame' (one frame read, handed back and published), 'idle' (the buffer is free) or
        'stopped' (Scanbox stopped imaging)."""
        number = int(self._header[0])
        if number == STOPPED:
            self._stop()
            return "stopped"
        if number < 0:
            return "idle"
        shape = (int(self._header[1]), int(self._header[2]))
        index = self._advance(number, shape)
        image = self._read(shape)
        if int(self._header[0]) == number:  # (not if Scanbox stopped meanwhile: leave it its -2)
            self._header[0] = FREE
        self.rig.send_frame(image, **self.timing.fields(index))
        self.published += 1
        return "frame"

    def run(self, stop: threading.Event, idle_sleep_s: float = 0.001, once: bool = False) -> None:
        """Poll until `stop` is set (or, `once`, until the first acquisition with frames stops).
        Sleep well under Scanbox's frame period: it drops every frame while the buffer is full."""
        while not stop.is_set():
            state = self.poll_once()
            if state == "stopped" and once and self.published:
                return
            if state != "frame":
                stop.wait(idle_sleep_s)

    def report(self) -> str:
        return (
            f"published {self.published} frames of {self.acquisitions} acquisition(s); {self.missed} "
            "missed (Scanbox's buffer was still full)"
        )

    def _advance(self, number: int, shape: tuple[int, int]) -> int:
        """The acquisition index of frame `number`: a new acquisition where it starts one (the first
        frame, or a number that went back: a stop whose -2 was missed), else past any frames missed."""
        if self._acquiring and number > self._number:
            step = number - self._number
        elif self._acquiring and number == self._number == LAST_NUMBER:
            step = 1
        else:
            self._start(number, shape)
            return number
        if shape != self._shape:
            raise ValueError(
                f"{self.path}: the frame size changed from {self._shape[0]} x {self._shape[1]} to "
                f"{shape[0]} x {shape[1]} at frame {number}, within an acquisition; Scanbox does not do "
                "that: is another program writing the file?"
            )
        for _ in range(step - 1):
            self.rig.skip()
        self.missed += step - 1
        self._number, self._index = number, self._index + step
        return self._index

    def _start(self, number: int, shape: tuple[int, int]) -> None:
        rows, cols = shape
        need = HEADER_BYTES + (self.channel + 1) * rows * cols * 2
        if rows <= 0 or cols <= 0 or need > self._mm.size:
            raise ValueError(
                f"{self.path}: {self._mm.size} bytes, but its header declares {rows} x {cols} frames, "
                f"channel {CHANNELS[self.channel]} needing {need}; is this Scanbox's memory-mapped file?"
            )
        self._stop()
        self.acquisitions += 1
        if self.acquisitions > 1:
            self.rig.restart(f"{self._first_session}-{self.acquisitions}")
        self._acquiring, self._shape, self._number, self._index = True, shape, number, number
        self.timing.start(number)
        log.info(kv("scanbox_acquisition", session=self.rig.session, frame=number, rows=rows, cols=cols))

    def _stop(self) -> None:
        if self._acquiring:
            log.info(
                kv(
                    "scanbox_stopped",
                    session=self.rig.session,
                    last_frame=self._index,
                    published_total=self.published,
                    missed_total=self.missed,
                )
            )
        self._acquiring = False

    def _read(self, shape: tuple[int, int]) -> np.ndarray:
        """A row-major copy of the frame in the buffer (MATLAB stores [lines, pixels] column-major)."""
        rows, cols = shape
        start = HEADER_BYTES + self.channel * rows * cols * 2
        stored = self._mm[start : start + rows * cols * 2].view("<u2").reshape((rows, cols), order="F")
        image = np.iinfo(np.uint16).max - stored if self.invert else stored
        return np.ascontiguousarray(image, dtype=np.uint16)


def _open_mmap(path: Path) -> np.memmap:
    if not path.is_file():
        raise FileNotFoundError(
            f"Scanbox memory-mapped file {path} does not exist; set mmap=1 in scanbox_config.m and tick "
            "'Memory map' in Scanbox's real-time panel (the file is scanbox.mmap in its mmap folder)"
        )
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise ValueError(f"{path}: {size} bytes, shorter than Scanbox's {HEADER_BYTES}-byte header")
    try:
        return np.memmap(path, dtype=np.uint8, mode="r+")
    except PermissionError as exc:
        raise PermissionError(
            f"cannot open {path} for writing: the bridge hands each frame back by writing its header"
        ) from exc
