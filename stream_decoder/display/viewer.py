"""The display client: reconstructed frames on screen (or to GIF/MP4 + a PNG strip), with live figures.

Beside each reconstruction it shows the ground-truth stimulus frame when it knows the replayed
plan: the recon's `seq_newest` names the activity message (and so the rig clock's origin), and
its `t_stim` then names the clip frame it reconstructs.

A window shows the newest frame only: each paint takes every frame that has arrived, draws the
last and counts the others as stale, so a window that draws slower than 30 Hz never falls behind.
A movie keeps every frame.
"""

import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream_decoder.rig.replay import ReplayPlan
from stream_decoder.stream.client import ReconClient
from stream_decoder.stream.protocol import ReconHeader

SCALE = 4  # pixels per frame pixel in the written movies (36x64 -> 144x256)
GIF_SCALE = 2  # in the GIF: 900 frames at SCALE are 14 MB; at 2, the report's size, a quarter
GAP = 4  # frame pixels between reconstruction and ground truth
PLAUSIBLE_LATENCY_S = 10.0  # beyond this (or negative) the rig clock is not this host's clock
POLL_S = 0.02  # longest wait for a frame before the window handles its own events and Ctrl-C is seen


class TruthLookup:
    """Ground-truth stimulus frame of a reconstruction, from the plan the replay played.

    Sessions are numbered in the order seen: the first starts at plan message 0, the next (the
    replay's rig restart) at `restart_after`. Start the viewer before the replay.
    """

    def __init__(self, plan: ReplayPlan, restart_after: int = 0):
        self.plan = plan
        self.times = plan.message_times()
        self.restart_after = restart_after
        self.sessions: list[str] = []
        self._video: tuple[int, np.ndarray] | None = None  # the clip being played, loaded once

    def where(self, header: ReconHeader) -> tuple[int, int] | None:
        """(clip, frame) of the plan that a reconstruction shows, or None outside every clip."""
        if header.session not in self.sessions:
            self.sessions.append(header.session)
        k = header.seq_newest + (self.restart_after if self.sessions.index(header.session) else 0)
        if not 0 <= k < len(self.times):
            return None
        origin = header.t_newest - self.times[k]  # rig clock at plan time 0
        return self.plan.locate(header.t_stim - origin)

    def frame(self, header: ReconHeader) -> np.ndarray | None:
        where = self.where(header)
        if where is None:
            return None
        clip, frame = where
        if self._video is None or self._video[0] != clip:
            self._video = (clip, self.plan.dataset.clip(self.plan.trials[clip]).video)
        return self._video[1][frame]


@dataclass
class LiveFigures:
    """Frames in and shown, fps shown, latency (rig send -> shown, when the rig clock is this
    host's) and losses, as they happen."""

    received: int = 0
    shown: int = 0
    stale_dropped: int = 0  # arrived while the window was drawing an older one: never shown
    # Gaps in seq_newest beyond those in the daemon's seq (frames lost on the way here, which the
    # client counts as `lost`): with single-plane input (one frame per message) these are rig
    # messages that never became a frame; with multi-plane input several messages make one frame.
    seq_newest_gaps: int = 0
    shown_at: deque = field(default_factory=lambda: deque(maxlen=300))
    latencies: deque = field(default_factory=lambda: deque(maxlen=300))
    _last: ReconHeader | None = None

    def arrived(self, header: ReconHeader) -> None:
        self.received += 1
        last = self._last
        if last is not None and last.session == header.session:
            missed_here = header.seq - last.seq - 1
            self.seq_newest_gaps += max(0, header.seq_newest - last.seq_newest - 1 - missed_here)
        self._last = header

    def painted(self, header: ReconHeader, now_wall: float, now: float) -> None:
        self.shown += 1
        self.shown_at.append(now)
        self.latencies.append(now_wall - header.t_newest)

    def fps(self) -> float:
        if len(self.shown_at) < 2:
            return 0.0
        return (len(self.shown_at) - 1) / max(self.shown_at[-1] - self.shown_at[0], 1e-9)

    def latency(self) -> str:
        lat = np.asarray(self.latencies)
        if lat.size and (lat.min() < 0 or lat.max() > PLAUSIBLE_LATENCY_S):
            return "latency n/a (rig clock is not this host's)"
        if lat.size:
            return f"latency p50 {np.median(lat) * 1e3:.2f} ms, max {lat.max() * 1e3:.2f} ms"
        return "latency -"

    def caption(self) -> str:
        """The window's one line: what a person watching needs to trust the picture."""
        return f"{self.fps():.1f} fps, {self.latency()}, stale dropped {self.stale_dropped}"

    def line(self, lost: int) -> str:
        return (
            f"view: {self.received} frames, {self.shown} shown, {self.fps():.1f} fps, {self.latency()}, "
            f"lost here {lost}, stale dropped {self.stale_dropped}, seq_newest gaps {self.seq_newest_gaps}"
        )


def side_by_side(recon: np.ndarray, truth: np.ndarray | None) -> np.ndarray:
    """uint8 image: reconstruction, a gap, ground truth (gray if unknown), scaled up for viewing."""
    h, w = recon.shape
    out = np.full((h, 2 * w + GAP), 255, np.uint8)
    out[:, :w] = np.clip(np.rint(recon), 0, 255)
    out[:, w + GAP :] = 127 if truth is None else np.clip(np.rint(truth), 0, 255)
    return np.kron(out, np.ones((SCALE, SCALE), np.uint8))


class MovieSink:
    """Keeps the last frames and writes them as GIF, MP4 and a PNG strip when closed."""

    live = False  # every frame is kept, none is stale
    open = True

    def idle(self) -> None:
        pass

    def __init__(self, out: Path, keep: int = 900, rate_hz: float = 30.0):
        self.out = Path(out)
        self.rate_hz = rate_hz
        self.frames: deque = deque(maxlen=keep)

    def show(self, recon: np.ndarray, truth: np.ndarray | None, header: ReconHeader) -> None:
        self.frames.append((recon.astype(np.float32), None if truth is None else truth.copy(), header.t_stim))

    def close(self) -> list[Path]:
        if not self.frames:
            return []
        import imageio.v3 as iio

        self.out.mkdir(parents=True, exist_ok=True)
        images = np.stack([side_by_side(r, t) for r, t, _ in self.frames])
        written = [self.out / "view.gif", self.out / "view.mp4", self.out / "view_strip.png"]
        step = SCALE // GIF_SCALE  # each frame pixel is SCALE x SCALE: every step-th keeps it whole
        iio.imwrite(written[0], images[:, ::step, ::step], duration=1000 / self.rate_hz, loop=0)
        iio.imwrite(written[1], images, fps=self.rate_hz, codec="libx264", macro_block_size=16)
        self._strip(written[2])
        return written

    def _strip(self, path: Path, columns: int = 8) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        picks = np.linspace(0, len(self.frames) - 1, min(columns, len(self.frames))).astype(int)
        has_truth = any(self.frames[i][1] is not None for i in picks)
        rows = 2 if has_truth else 1
        fig, axes = plt.subplots(rows, len(picks), figsize=(2 * len(picks), 1.3 * rows), squeeze=False)
        t_first = self.frames[0][2]
        for col, i in enumerate(picks):
            recon, truth, t_stim = self.frames[i]
            axes[0, col].imshow(recon, cmap="gray", vmin=0, vmax=255)
            axes[0, col].set_title(f"t_stim {t_stim - t_first:+.2f} s", fontsize=7)
            if has_truth:
                axes[1, col].imshow(
                    truth if truth is not None else np.full_like(recon, 127), cmap="gray", vmin=0, vmax=255
                )
        axes[0, 0].set_ylabel("decoded", fontsize=8)
        if has_truth:
            axes[1, 0].set_ylabel("stimulus", fontsize=8)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


class WindowSink:
    """A matplotlib window updated in place with the newest frame, fps and latency in its title."""

    live = True  # shows the newest frame only (see `paint`)

    def __init__(self):
        import matplotlib.pyplot as plt

        self.plt = plt
        plt.ion()
        self.fig, self.ax = plt.subplots(figsize=(8, 2.6))
        self.ax.set_axis_off()
        self.title = self.ax.set_title("decoded | stimulus", fontsize=9)
        self.image = None

    @property
    def open(self) -> bool:
        """False once the person watching has closed the window."""
        return self.plt.fignum_exists(self.fig.number)

    def caption(self, text: str) -> None:
        self.title.set_text(f"decoded | stimulus    {text}")

    def show(self, recon: np.ndarray, truth: np.ndarray | None, header: ReconHeader) -> None:
        picture = side_by_side(recon, truth)
        if self.image is None:
            self.image = self.ax.imshow(picture, cmap="gray", vmin=0, vmax=255)
        else:
            self.image.set_data(picture)
        self.plt.pause(0.001)

    def idle(self) -> None:
        """Handle the window's events (resize, close) while no frame comes."""
        self.fig.canvas.flush_events()

    def close(self) -> list[Path]:
        self.plt.close(self.fig)
        return []


def has_display() -> bool:
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import matplotlib

    return matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo", "template")


def paint(
    arrived: list[tuple[np.ndarray, ReconHeader]],
    sink,
    truth: TruthLookup | None,
    figures: LiveFigures,
    now_wall: float,
    now: float,
) -> None:
    """Count every frame that has arrived; a live sink (a window) shows only the newest and the rest
    are stale, counted and dropped: drawing them would put the window further behind. A movie
    sink shows each."""
    for _, header in arrived:
        figures.arrived(header)
    shown = arrived[-1:] if sink.live else arrived
    figures.stale_dropped += len(arrived) - len(shown)
    for frame, header in shown:
        figures.painted(header, now_wall, now)
        if sink.live:
            sink.caption(figures.caption())
        sink.show(frame, None if truth is None else truth.frame(header), header)


def watch(
    client: ReconClient,
    sink,
    truth: TruthLookup | None = None,
    max_frames: int | None = None,
    *,
    timeout_s: float | None = 30.0,
    wait_s: float | None = None,
    stop: threading.Event | None = None,
    print_every_s: float = 1.0,
    stream=None,
    clock=time.monotonic,
    wall_clock=time.time,
) -> LiveFigures:
    """Show frames until `max_frames` have come, `timeout_s` passes without one after the first
    (`wait_s` before it; None: no limit), `stop` is set (Ctrl-C) or the window is closed. Prints
    the figures to `stream` (stderr) every `print_every_s`."""
    stream = stream or sys.stderr
    figures = LiveFigures()
    last = clock()  # of the newest frame; until the first, of the start
    next_print = last + print_every_s
    while sink.open and not (stop is not None and stop.is_set()):
        arrived = client.drain(POLL_S, limit=None if max_frames is None else max_frames - figures.received)
        now = clock()
        if arrived:
            last = now
            paint(arrived, sink, truth, figures, wall_clock(), now)
        else:
            sink.idle()
        if now >= next_print:
            next_print = now + print_every_s
            print(figures.line(client.lost), file=stream, flush=True)
        if max_frames is not None and figures.received >= max_frames:
            break
        silence = timeout_s if figures.received else wait_s
        if silence is not None and now - last >= silence:
            break
    print(figures.line(client.lost), file=stream, flush=True)
    return figures
