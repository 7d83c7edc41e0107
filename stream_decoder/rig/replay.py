"""A rig simulator: plays a Sensorium-format mouse the way an acquisition rig publishes it.

Per plane and volume, at the imaging rate (`plane_samples`), with acquisition timestamps and the
behaviour at that time; in real time or faster, with optional send jitter, dropped messages and a
rig restart (a new session). A plane whose neurons are not one contiguous range of the model's
order goes out as one message per contiguous run, all with the plane's acquisition time.

`ReplayPlan` is the schedule (which clip frame every message carries); the viewer rebuilds it
to find the ground-truth frame of each reconstruction. `replay` plays a recording's
`playback.PlaybackPlan` the same way. Each run is a session of its own
(`fresh_session_id`), and `check_neuron_set` refuses data whose neurons the served model does not read.
"""

import contextlib
import logging
import math
import queue
import random
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import zmq
from tqdm import tqdm

from stream_decoder.data import FRAME_RATE_HZ, TIME_TOLERANCE_S, MouseDataset, PlaneTiming, plane_samples
from stream_decoder.data.microscope import Microscope, MicroscopeConfig
from stream_decoder.data.planes import frame_of
from stream_decoder.data.simulate import raw_trial, rebuild_mouse
from stream_decoder.data.truth import Truth
from stream_decoder.stream.assembly import contiguous_runs
from stream_decoder.stream.client import CurveKeys
from stream_decoder.stream.protocol import (
    ACTIVITY,
    FRAME,
    INPUT_DTYPES,
    STIMULUS,
    encode_activity,
    encode_frame,
)
from stream_decoder.stream.sockets import attach
from stream_decoder.stream.stats import kv

log = logging.getLogger(__name__)
# What an XPUB receives when a subscriber asks for activity, raw frames or stimulus frames.
SUBSCRIPTIONS = {topic: b"\x01" + topic for topic in (ACTIVITY, FRAME, STIMULUS)}


class Rig:
    """A publisher of activity or raw frames that numbers its messages per session, like a rig's
    acquisition software.

    XPUB (wire-compatible with PUB) so that it can wait until the daemon has subscribed before
    the first message: a PUB drops everything sent before a subscriber is attached.
    """

    def __init__(
        self,
        endpoint: str = "tcp://127.0.0.1:5555",
        bind: bool = True,
        session: str = "rig",
        hwm: int = 0,
        curve: CurveKeys | None = None,
        ctx: zmq.Context | None = None,
    ):
        self.ctx = ctx or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.XPUB)
        try:
            self.sock.setsockopt(zmq.LINGER, 1000)  # give queued messages a second to leave on close
            self.sock.setsockopt(zmq.SNDHWM, hwm)
            self.sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscriber's subscription, for the count
            if curve is not None:
                curve.apply(self.sock)
            attach(self.sock, endpoint, bind, what="rig activity endpoint")
        except BaseException:
            self.sock.close(linger=0)
            raise
        self.session = session
        self.seq = 0

    def wait_for_subscriber(self, timeout_s: float, topic: bytes = ACTIVITY, count: int = 1) -> bool:
        """True once `count` subscribers subscribed to `topic` (a stimulus program publishing to
        the screen and to the calibrator waits for both); False after `timeout_s` without."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if self.sock.poll(int(left * 1000)) and self.sock.recv() == SUBSCRIPTIONS[topic]:
                count -= 1
                if count == 0:
                    return True
        return False

    def connect(self, endpoint: str) -> None:
        """Publish to one more listener that binds (a stimulus program's second: the calibrator)."""
        attach(self.sock, endpoint, bind=False, what="rig endpoint")

    def send(self, values: np.ndarray, t: float, **fields) -> int:
        """Publish one activity message (fields: first, plane, n_planes, behavior, pupil_center)."""
        seq = self.seq
        self.sock.send_multipart(encode_activity(self.session, seq, t, values, **fields))
        self.seq += 1
        return seq

    def send_frame(self, image: np.ndarray, t: float, **fields) -> int:
        """Publish one raw `frame` message (fields: plane, n_planes, behavior, pupil_center)."""
        seq = self.seq
        self.sock.send_multipart(encode_frame(self.session, seq, t, image, **fields))
        self.seq += 1
        return seq

    def skip(self) -> None:
        """A message lost on the way: its seq is used up, the daemon sees a gap."""
        self.seq += 1

    def restart(self, session: str) -> None:
        """The rig software restarted: a new session, numbering from 0."""
        self.session = session
        self.seq = 0

    def close(self, linger_ms: int | None = None) -> None:
        """Close, by default after giving queued messages a second to leave."""
        self.sock.close(linger=linger_ms)

    def __enter__(self) -> "Rig":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(linger_ms=0 if exc_type is not None else None)  # interrupted: nothing left to deliver


def fresh_session_id(prefix: str = "replay") -> str:
    """`<prefix>-<UTC time>-<random>`: a new id for every run, so a daemon that saw the last run
    takes this one as a new session instead of refusing its seq numbers (docs/protocol.md §6.4)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


def check_neuron_set(info: dict, mouse: MouseDataset, identity: bool = True) -> str:
    """Refuse to play `mouse` into a daemon whose `info` names other neurons; returns what was compared.

    The neuron count, then (unless `identity` is False) the neuron-set identity (docs/protocol.md
    §5.3), or, for an artifact from before identities, the data fingerprint it was trained on.
    """
    model, neurons = info.get("model"), info.get("neurons")
    if neurons != mouse.n_neurons:
        raise ValueError(
            f"the daemon serves model {model} for {neurons} neurons, the data has {mouse.n_neurons}"
        )
    if not identity:
        return "neurons"
    for key, ours in (("neuron_set", mouse.neuron_set), ("data_fingerprint", mouse.fingerprint)):
        theirs = info.get(key)
        if not theirs:
            continue
        if theirs != ours():
            raise ValueError(
                f"the daemon serves model {model} for {key} {theirs}, {mouse.path} is {key} {ours()}: "
                "another mouse or scan; replay the data the model was trained on, or pass "
                "--ignore-neuron-set to play it anyway"
            )
        return key
    return "neurons"


@dataclass(frozen=True)
class PlannedMessage:
    time: float  # seconds from the plan's start (the rig adds its clock origin)
    clip: int | None  # index into plan.trials; None: a recording's message (no clip behind it)
    frame: int | None  # 30 Hz frame of the clip whose responses and behaviour the message carries
    plane: int
    first: int
    values: np.ndarray | None  # activity of neurons first.., or None for a raw frame
    behavior: np.ndarray | None  # (2,) pupil dilation, running speed; None: not sent
    pupil_center: np.ndarray | None  # (2,); None: not sent
    image: np.ndarray | None = None  # a raw frame of the plane (`replay --raw`)
    n_planes: int = 1
    session: int = 0  # the plan's session: where it changes, the rig starts over under a new id


@dataclass(frozen=True, eq=False)
class RawSource:
    """The raw frames of a synthetic mouse: its microscope and the truth beside the dataset."""

    microscope: Microscope
    truth: Truth

    @classmethod
    def of(cls, dataset: MouseDataset, cfg: MicroscopeConfig | None = None) -> "RawSource":
        mouse, truth = rebuild_mouse(dataset.path)
        return cls(Microscope(mouse, cfg), truth)


class ReplayPlan:
    """Clips played back to back (`gap_s` apart), each sampled per plane by `timing`; or, with
    `raw`, the raw frames the synthetic mouse's microscope took of them, at its own timing."""

    def __init__(
        self,
        dataset: MouseDataset,
        trials: list[str],
        timing: PlaneTiming,
        gap_s: float = 0.0,
        raw: RawSource | None = None,
    ):
        if not trials:
            raise ValueError(f"{dataset.path}: no trials to replay")
        if len(timing.plane) != dataset.n_neurons:
            raise ValueError(
                f"plane timing covers {len(timing.plane)} neurons, {dataset.path} has {dataset.n_neurons}"
            )
        self.dataset = dataset
        self.trials = list(trials)
        self.timing = timing
        self.lengths = [dataset.length(trial) for trial in self.trials]
        durations = np.asarray(self.lengths) / FRAME_RATE_HZ + gap_s
        self.starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
        self.runs = [contiguous_runs(timing.neurons_of(p)) for p in range(timing.n_planes)]
        self.raw = raw

    def messages(self) -> Iterator[PlannedMessage]:
        if self.raw is not None:
            yield from self._raw_messages()
            return
        for i, trial in enumerate(self.trials):
            clip = self.dataset.clip(trial)
            if not np.isfinite(clip.responses).all():
                raise ValueError(
                    f"{self.dataset.path}: trial {trial} has no recorded responses (NaN), "
                    f"a release withholds them for its test tiers; replay another tier"
                )
            for sample in plane_samples(clip.responses, self.timing):
                frame = int(frame_of(sample.t_acq))
                for first, start, stop in self.runs[sample.plane]:
                    yield PlannedMessage(
                        float(self.starts[i] + sample.t_acq),
                        i,
                        frame,
                        sample.plane,
                        first,
                        sample.values[start:stop],
                        clip.behavior[frame],
                        clip.pupil_center[frame],
                        n_planes=self.timing.n_planes,
                    )

    def _raw_messages(self) -> Iterator[PlannedMessage]:
        for i, trial in enumerate(self.trials):
            clip = self.dataset.clip(trial)
            for raw in raw_trial(self.raw.microscope, self.raw.truth, trial):
                if not 0 <= raw.t < self.lengths[i] / FRAME_RATE_HZ:
                    continue  # the grey before and after the clip
                frame = int(frame_of(raw.t))
                yield PlannedMessage(
                    float(self.starts[i] + raw.t),
                    i,
                    frame,
                    raw.plane,
                    0,
                    None,
                    clip.behavior[frame],
                    clip.pupil_center[frame],
                    raw.image,
                    self.timing.n_planes,
                )

    def message_times(self) -> np.ndarray:
        """Plan time of every message in send order: entry k is what seq k carries (before a restart)."""
        if self.raw is None:
            return np.array([m.time for m in self.messages()], dtype=np.float64)
        times = []  # from the microscope's schedule at each trial's scan phase, without rendering
        for i, trial in enumerate(self.trials):
            phase = self.raw.truth.trials[trial]["scan_phase_s"]
            end = self.lengths[i] / FRAME_RATE_HZ
            times += [self.starts[i] + t for t, _ in self.raw.microscope.schedule(phase, 0.0, end) if t < end]
        return np.array(times, dtype=np.float64)

    def locate(self, plan_time: float) -> tuple[int, int] | None:
        """(clip, frame) shown at `plan_time`, or None outside every clip."""
        i = int(np.searchsorted(self.starts, plan_time + TIME_TOLERANCE_S, side="right")) - 1
        if i < 0:
            return None
        frame = int(frame_of(plan_time - self.starts[i]))
        return (i, frame) if frame < self.lengths[i] else None

    def describe(self) -> str:
        return f"{len(self.trials)} clips of {self.dataset.name}, {self.timing.n_planes} plane(s)"

    def check_model(self, info: dict, identity: bool = True) -> str:
        """`check_neuron_set` against the daemon's `info`: what was compared."""
        return check_neuron_set(info, self.dataset, identity)


@dataclass(frozen=True)
class ReplayOptions:
    speed: float = 1.0  # 1: real time; 2: twice as fast; 0: as fast as possible
    jitter_ms: float = 0.0  # std of a gaussian delay added to each send (t stays the acquisition time)
    drop: float = 0.0  # probability that a message is lost (its seq is skipped)
    restart_after: int = 0  # messages before the rig restarts with a new session; 0: never
    t0: float | None = None  # rig clock at the plan's start; None: this host's clock (a 30 Hz boundary)
    dtype: str = "float32"  # payload dtype on the wire
    seed: int = 0

    def __post_init__(self):
        if self.speed < 0 or self.jitter_ms < 0 or not 0 <= self.drop < 1 or self.restart_after < 0:
            raise ValueError(
                f"replay: need speed >= 0, jitter_ms >= 0, 0 <= drop < 1, restart_after >= 0; got {self}"
            )
        if self.dtype not in INPUT_DTYPES:
            raise ValueError(f"replay: dtype {self.dtype!r} not in {sorted(INPUT_DTYPES)}")


@dataclass
class ReplayReport:
    sent: int = 0
    dropped: int = 0
    restarts: int = 0
    seconds: float = 0.0


RENDER_AHEAD = 90  # raw frames rendered ahead of the paced sender (a few seconds of imaging)


def ahead(items: Iterator, depth: int) -> Iterator:
    """`items` produced by a thread up to `depth` ahead of the consumer, so producing them (raw
    frames take milliseconds to render) never delays a paced send. Errors arrive in order."""
    buffer: queue.Queue = queue.Queue(depth)
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    with contextlib.suppress(queue.Full):
                        buffer.put((item, None), timeout=0.1)
                        break
                if stop.is_set():
                    return
            buffer.put((done, None))
        except Exception as exc:
            buffer.put((done, exc))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()


class Plan(Protocol):
    """What `replay` plays: a dataset's `ReplayPlan`, or a recording's `playback.PlaybackPlan`."""

    raw: RawSource | None  # raw frames take time to render: `replay` renders them ahead of the sender

    def messages(self) -> Iterator[PlannedMessage]: ...


def replay(plan: Plan, rig: Rig, options: ReplayOptions, progress: bool = True) -> ReplayReport:
    """Publish the plan through `rig`, paced by acquisition time / speed. The plan's session k > 0
    goes out as `<rig session>-k`."""
    rng = random.Random(options.seed)
    dtype = INPUT_DTYPES[options.dtype]
    report = ReplayReport()
    session, part = rig.session, 0
    if options.t0 is None:
        # Stamp with this host's clock, starting on a 30 Hz boundary so multi-plane times land on
        # the daemon's grid as they do in the data; then `t` is the send time give or take jitter.
        t0 = math.ceil(time.time() * FRAME_RATE_HZ) / FRAME_RATE_HZ
        start = time.monotonic() + (t0 - time.time())
    else:
        t0, start = options.t0, time.monotonic()
    # Closed however the loop ends, so an interrupt leaves a finished bar line, not a torn one.
    messages = plan.messages() if plan.raw is None else ahead(plan.messages(), RENDER_AHEAD)
    with tqdm(messages, desc="replay", unit="msg", disable=not progress) as bar:
        for k, msg in enumerate(bar):
            if msg.session != part:
                part = msg.session
                rig.restart(f"{session}-{part}")
                log.info(kv("plan_session", session=rig.session, after=k))
            if options.restart_after and k == options.restart_after:
                rig.restart(f"{session}-restart")
                report.restarts += 1
                log.info(kv("rig_restart", session=rig.session, after=k))
            if options.speed > 0:
                due = start + msg.time / options.speed + max(0.0, rng.gauss(0.0, options.jitter_ms / 1e3))
                time.sleep(max(0.0, due - time.monotonic()))
            if options.drop and rng.random() < options.drop:
                rig.skip()
                report.dropped += 1
                continue
            common = {
                "plane": msg.plane,
                "n_planes": msg.n_planes,
                "behavior": msg.behavior,
                "pupil_center": msg.pupil_center,
            }
            if msg.image is not None:
                rig.send_frame(msg.image, t0 + msg.time, **common)
            else:
                rig.send(msg.values.astype(dtype, copy=False), t0 + msg.time, first=msg.first, **common)
            report.sent += 1
    report.seconds = time.monotonic() - start
    return report


def plane_timing(
    mouse: MouseDataset, planes: int, volume_rate_hz: float | None, rig_timing: bool
) -> PlaneTiming:
    """Single-plane 30 Hz by default; `planes` > 1 split by cell depth; or the mouse's own rig timing."""
    if rig_timing:
        return PlaneTiming.for_mouse(mouse.path)
    if planes == 1:
        return PlaneTiming.single_plane(mouse.n_neurons, volume_rate_hz or FRAME_RATE_HZ)
    rate = volume_rate_hz or FRAME_RATE_HZ / planes
    return PlaneTiming.from_depths(mouse.cell_motor_coordinates[:, 2], planes, rate)


def select_trials(
    mouse: MouseDataset, tier: str | None, trials: list[str] | None, limit: int | None
) -> list[str]:
    chosen = list(trials) if trials else mouse.trials(tier)
    return chosen[:limit] if limit else chosen
