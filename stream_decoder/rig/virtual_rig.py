"""A live virtual rig: the synthetic mouse watching whatever a stimulus program shows it.

The program publishes `stimulus` messages (docs/protocol.md §9), one per 30 Hz frame of its
screen, stamped with the rig time it is shown from; the rig shows each to `data.live.LiveMouse`
and publishes the planes acquired meanwhile as `activity` messages, as `replay` does (or, with
`raw`, as the raw `frame`s of the mouse's microscope, as `replay --raw` does). Ticks
the program skips are the last frame held on the screen. So experiment code can be written and
tested against the decoder without an animal.
"""

import logging
import threading
from dataclasses import dataclass

import numpy as np
import zmq

from stream_decoder.data import FRAME_RATE_HZ, FRAME_SHAPE, MouseDataset
from stream_decoder.data.live import LiveMouse, PlaneImage, Tick
from stream_decoder.data.simulate import rebuild_mouse
from stream_decoder.data.truth import truth_dir
from stream_decoder.rig.replay import Rig, fresh_session_id
from stream_decoder.stream.assembly import contiguous_runs
from stream_decoder.stream.client import CurveKeys
from stream_decoder.stream.protocol import STIMULUS, Rejected, decode_stimulus, encode_stimulus
from stream_decoder.stream.sockets import attach
from stream_decoder.stream.stats import RateLimitedLog, kv

log = logging.getLogger(__name__)
# A stimulus this long after the previous one starts a new rig session rather than hold the
# screen for every tick in between (and simulate them all at once).
MAX_HELD_S = 2.0
POLL_MS = 50  # longest `run` sleeps before it looks at its stop event


class Screen(Rig):
    """What a stimulus program publishes: one `stimulus` message per frame it shows."""

    def show(self, image: np.ndarray, t: float) -> int:
        """Publish `image` (36, 64) as shown from rig time `t` (s)."""
        seq = self.seq
        self.sock.send_multipart(encode_stimulus(self.session, seq, t, image))
        self.seq += 1
        return seq


@dataclass
class VirtualRigStats:
    shown: int = 0  # stimulus frames shown to the mouse
    held: int = 0  # ticks without a stimulus message: the last frame stayed on the screen
    late: int = 0  # stimulus messages for a tick already simulated, dropped
    rejected: int = 0  # malformed stimulus messages
    sessions: int = 0  # stimulus sessions (a rig session each)
    published: int = 0  # activity messages sent


class VirtualRig:
    """The stimulus topic in, the live mouse's activity out through `rig` (an activity publisher)."""

    def __init__(self, mouse: LiveMouse, rig: Rig):
        self.mouse = mouse
        self.rig = rig
        timing = mouse.mouse.timing
        self.n_planes = timing.n_planes
        self.runs = [contiguous_runs(timing.neurons_of(p)) for p in range(timing.n_planes)]
        self.stats = VirtualRigStats()
        self.session: str | None = None
        self.t0 = 0.0  # rig time of the session's tick 0
        self.next_tick = 0
        self.screen = np.zeros(FRAME_SHAPE, np.float32)
        self._bad = RateLimitedLog(log, interval_s=5.0)

    @classmethod
    def of(cls, dataset: MouseDataset, rig: Rig, seed: int = 0, raw: bool = False) -> "VirtualRig":
        """The virtual rig of a synthetic dataset's mouse (its truth folder rebuilds it); `raw`:
        it publishes the mouse's microscope frames (`stream-decoder microscope`) instead of activity."""
        if not truth_dir(dataset.path).is_dir():
            raise ValueError(
                f"{dataset.path}: not a synthetic mouse (no simulator truth beside it); the virtual rig "
                "simulates the simulator's own mouse, so give it a dataset `stream-decoder simulate` wrote"
            )
        from stream_decoder.data.microscope import Microscope  # scipy.ndimage: only for raw frames

        mouse, _ = rebuild_mouse(dataset.path)
        return cls(LiveMouse(mouse, seed, Microscope(mouse) if raw else None), rig)

    def handle(self, frames) -> None:
        """One stimulus message: its tick (and any skipped before it) simulated and published."""
        try:
            stimulus = decode_stimulus(frames, FRAME_SHAPE)
        except Rejected as exc:
            self.stats.rejected += 1
            self._bad.warning(exc.reason, "stimulus_rejected", reason=exc.reason, detail=exc.detail)
            return
        tick = round((stimulus.t - self.t0) * FRAME_RATE_HZ)
        if stimulus.session != self.session or tick - self.next_tick > MAX_HELD_S * FRAME_RATE_HZ:
            self._new_session(stimulus.session, stimulus.t)
            tick = 0
        if tick < self.next_tick:
            self.stats.late += 1
            return
        while self.next_tick < tick:
            self.stats.held += 1
            self._publish(self.mouse.show(self.screen))
        self.screen = np.clip(np.asarray(stimulus.image, np.float32), 0.0, 255.0)
        self._publish(self.mouse.show(self.screen))
        self.stats.shown += 1

    def _new_session(self, stimulus_session: str, t: float) -> None:
        self.session, self.t0, self.next_tick = stimulus_session, t, 0
        self.rig.restart(fresh_session_id("virtual"))
        self.stats.sessions += 1
        log.info(kv("virtual_session", stimulus=stimulus_session, rig=self.rig.session, t0=t))

    def _publish(self, tick: Tick) -> None:
        self.next_tick += 1
        common = {"n_planes": self.n_planes, "behavior": tick.behavior, "pupil_center": tick.pupil_center}
        for sample in tick.samples:
            t = self.t0 + sample.t_acq
            if isinstance(sample, PlaneImage):
                self.rig.send_frame(sample.image, t, plane=sample.plane, **common)
                self.stats.published += 1
                continue
            for first, start, stop in self.runs[sample.plane]:
                self.rig.send(sample.values[start:stop], t, first=first, plane=sample.plane, **common)
                self.stats.published += 1

    def run(self, endpoint: str, stop: threading.Event, bind: bool = True, curve: CurveKeys | None = None):
        """Serve the stimulus topic at `endpoint` until `stop` is set."""
        sock = self.rig.ctx.socket(zmq.SUB)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, 0)  # never drop a shown frame: the mouse saw it
            if curve is not None:
                curve.apply(sock)
            sock.setsockopt(zmq.SUBSCRIBE, STIMULUS)
            attach(sock, endpoint, bind, what="virtual rig stimulus endpoint")
            while not stop.is_set():
                if sock.poll(POLL_MS):
                    self.handle(sock.recv_multipart(copy=False))
        finally:
            sock.close(linger=0)
