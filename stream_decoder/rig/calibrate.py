"""Same-session calibration: a block of the day's activity beside what the screen showed, the gaze
baseline fitted on it in seconds, written as an artifact the daemon serves or swaps in.

A lab images a new field of view each day, with neurons no model has seen. The stimulus program
publishes each frame it shows (`stimulus`, docs/protocol.md §9) to the calibrator as to the
screen, stamped with the rig time it is shown from; the rig's activity comes in as the daemon
takes it. The calibrator assembles the activity exactly as the daemon does (`Assembler.take`: a
tick per single-plane message, the 30 Hz grid for multi-plane input), so the model is fitted on
what it will be served, in the stream's own timing; it pairs each tick with the frame on the
screen at its time and cuts the block into 10 s clips, the last fifth of which choose the
penalty and the gaze gain (decoder/ridge.py).
"""

import dataclasses
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from stream_decoder.data import FRAME_RATE_HZ, FRAME_SHAPE, TIME_TOLERANCE_S, MouseDataset
from stream_decoder.decoder.artifact import Artifact, save_artifact
from stream_decoder.decoder.config import GAZE_BASELINE, RidgeConfig
from stream_decoder.decoder.ridge import fit_ridge
from stream_decoder.rig.replay import fresh_session_id
from stream_decoder.rig.virtual_rig import VirtualRig
from stream_decoder.stream.assembly import Assembler
from stream_decoder.stream.protocol import (
    ACTIVITY,
    STIMULUS,
    Activity,
    Rejected,
    Stimulus,
    decode_activity,
    decode_stimulus,
    encode_activity,
    encode_stimulus,
)
from stream_decoder.stream.sockets import attach

CLIP_TICKS = 300  # 10 s clips, a Sensorium trial's length
MIN_CLIPS = 5  # one chooses the penalty, four fit: a minute of paired activity at least
HELD_STIMULUS_S = 0.1  # a tick pairs with the latest frame shown at most this long before it
MIN_PAIRED = 0.8  # of the ticks; fewer, and the stimulus is not stamped on the rig's clock


class CalibrationError(ValueError):
    """A block the baseline cannot be fitted on; the message says what to do."""


@dataclass
class CalibrationStats:
    activity: int = 0  # activity messages taken
    stimuli: int = 0  # stimulus frames taken
    ticks: int = 0  # ticks assembled
    rejected: Counter = field(default_factory=Counter)  # reason -> messages refused
    planes: int = 1  # the stream's plane count (its latest message's)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "rejected": dict(self.rejected)}


@dataclass
class CalibrationBlock:
    """Paired ticks: held activity (T, N), behaviour (T, 4) and the frame on the screen (T, 36, 64),
    cut into clips of consecutive ticks."""

    clips: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    paired: int  # ticks with a frame
    unpaired: int  # ticks without one (left out)
    n_planes: int
    volume_rate_hz: float

    @property
    def seconds(self) -> float:
        return self.paired / FRAME_RATE_HZ

    def fingerprint(self) -> str:
        """16 hex digits over the block's activity and frames: which block a model was fitted on."""
        digest = hashlib.sha256(b"calibration-block-v1")
        for activity, _, video in self.clips:
            digest.update(activity.tobytes())
            digest.update(video.tobytes())
        return digest.hexdigest()[:16]


class Calibrator:
    """Takes activity and stimulus messages as they come; `block()` pairs them."""

    def __init__(self, n_neurons: int, rate_hz: float = FRAME_RATE_HZ):
        self.rate_hz = rate_hz
        self.assembler = Assembler(n_neurons, np.zeros(4, np.float32), rate_hz)
        self.times: list[float] = []
        self.activity: list[np.ndarray] = []
        self.behavior: list[np.ndarray] = []
        self.stimulus_times: list[float] = []
        self.stimulus_images: list[np.ndarray] = []
        self.stats = CalibrationStats()

    def handle(self, frames) -> None:
        """One message off the wire: activity from the rig or a frame the stimulus program showed."""
        try:
            if bytes(frames[0]) == STIMULUS:
                self.take_stimulus(decode_stimulus(frames, FRAME_SHAPE))
            else:
                self.take_activity(decode_activity(frames, self.assembler.activity.size))
        except Rejected as exc:
            self.stats.rejected[exc.reason] += 1

    def take_activity(self, msg: Activity) -> None:
        try:
            self.assembler.admit(msg)
        except Rejected as exc:
            self.stats.rejected[exc.reason] += 1
            return
        self.stats.activity += 1
        self.stats.planes = msg.n_planes
        for t in self.assembler.take(msg, [msg]):
            self.times.append(t)
            self.activity.append(self.assembler.activity.copy())
            self.behavior.append(self.assembler.behavior.copy())
            self.stats.ticks += 1

    def take_stimulus(self, stimulus: Stimulus) -> None:
        if self.stimulus_times and stimulus.t <= self.stimulus_times[-1]:
            self.stats.rejected["stimulus_out_of_order"] += 1
            return
        self.stimulus_times.append(float(stimulus.t))
        self.stimulus_images.append(np.asarray(stimulus.image, np.float32))
        self.stats.stimuli += 1

    def seconds(self) -> float:
        """Rig time the assembled ticks span so far."""
        return self.times[-1] - self.times[0] if self.times else 0.0

    def block(self, seconds: float | None = None) -> CalibrationBlock:
        """The paired ticks (of the first `seconds` of rig time, default all), cut into clips;
        CalibrationError when they cannot make a fit."""
        if not self.times:
            raise CalibrationError("no activity arrived: is the rig publishing to the calibrator's endpoint?")
        if not self.stimulus_times:
            raise CalibrationError(
                "no stimulus frame arrived: the stimulus program must publish what it shows to the "
                "calibrator's stimulus endpoint as well as to the screen"
            )
        times = np.asarray(self.times)
        if seconds is not None:
            times = times[times <= times[0] + seconds + TIME_TOLERANCE_S]
        shown = np.asarray(self.stimulus_times)
        latest = np.searchsorted(shown, times + TIME_TOLERANCE_S, side="right") - 1
        paired = (latest >= 0) & (times - shown[np.maximum(latest, 0)] <= HELD_STIMULUS_S)
        if paired.mean() < MIN_PAIRED:
            raise CalibrationError(
                f"only {paired.mean():.0%} of the activity ticks have a frame shown within "
                f"{HELD_STIMULUS_S * 1e3:.0f} ms before them (activity at rig time {times[0]:.2f}-"
                f"{times[-1]:.2f} s, stimuli at {shown[0]:.2f}-{shown[-1]:.2f} s): stamp the stimulus "
                "with the rig's clock, the one the activity's t is on"
            )
        clips = self._clips(times, paired, latest)
        if len(clips) < MIN_CLIPS:
            raise CalibrationError(
                f"the block holds {int(paired.sum())} paired ticks ({paired.sum() / self.rate_hz:.0f} s) "
                f"in {len(clips)} clips of {CLIP_TICKS}; record at least "
                f"{MIN_CLIPS * CLIP_TICKS / self.rate_hz:.0f} s"
            )
        period = [p.period for p in self.assembler.planes if p.period]
        return CalibrationBlock(
            clips,
            int(paired.sum()),
            int((~paired).sum()),
            self.stats.planes,
            round(1.0 / min(period), 4) if period else self.rate_hz,
        )

    def _clips(self, times: np.ndarray, paired: np.ndarray, latest: np.ndarray) -> list:
        """Runs of consecutive paired ticks, cut into CLIP_TICKS-long clips (shorter tails dropped)."""
        steps = np.diff(times) * self.rate_hz
        breaks = np.flatnonzero(~paired[1:] | ~paired[:-1] | (np.abs(steps - 1) > 0.5)) + 1
        clips = []
        for run in np.split(np.arange(len(times)), breaks):
            run = run[paired[run]]
            for start in range(0, len(run) - CLIP_TICKS + 1, CLIP_TICKS):
                ticks = run[start : start + CLIP_TICKS]
                clips.append(
                    (
                        np.stack([self.activity[k] for k in ticks]),
                        np.stack([self.behavior[k] for k in ticks]),
                        np.stack([self.stimulus_images[latest[k]] for k in ticks]),
                    )
                )
        return clips


def record(
    calibrator: Calibrator, activity: str, stimulus: str, seconds: float, wait_s: float = 30.0, bar=None
) -> None:
    """Take the rig's activity (connected to `activity`, as the daemon is) and the stimulus
    program's frames (bound at `stimulus`) until the assembled ticks span `seconds` of rig time;
    `bar` (tqdm, in seconds) follows. CalibrationError after `wait_s` without a message."""
    ctx = zmq.Context.instance()
    sockets = []
    try:
        for endpoint, topic, bind in ((activity, ACTIVITY, False), (stimulus, STIMULUS, True)):
            sock = ctx.socket(zmq.SUB)
            sockets.append(sock)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, 0)  # a block loses nothing: it is seconds, not hours
            sock.setsockopt(zmq.SUBSCRIBE, topic)
            attach(sock, endpoint, bind, what=f"calibration {topic.decode()} endpoint")
        poller = zmq.Poller()
        for sock in sockets:
            poller.register(sock, zmq.POLLIN)
        while calibrator.seconds() < seconds:
            ready = poller.poll(wait_s * 1e3)
            if not ready:
                raise CalibrationError(
                    f"nothing arrived for {wait_s:g} s (activity from {activity}, stimuli to {stimulus}): "
                    "is the rig publishing, and the stimulus program publishing to this endpoint too?"
                )
            for sock, _ in ready:
                calibrator.handle(sock.recv_multipart())
            if bar is not None:
                bar.update(round(min(calibrator.seconds(), seconds) - bar.n, 1))
    finally:
        for sock in sockets:
            sock.close()


class CallbackRig:
    """A rig that hands each message's frames to `deliver` instead of a socket: the virtual rig as
    fast as it computes, in one process (a rehearsal of the calibration, its bench and tests)."""

    def __init__(self, deliver):
        self.deliver = deliver
        self.session = "rig"
        self.seq = 0

    def send(self, values: np.ndarray, t: float, **fields) -> int:
        self.deliver(encode_activity(self.session, self.seq, t, values, **fields))
        self.seq += 1
        return self.seq - 1

    def restart(self, session: str) -> None:
        self.session, self.seq = session, 0


def rehearse(
    dataset: MouseDataset, movie: np.ndarray, seed: int = 0, t0: float = 1000.0, bar=None
) -> Calibrator:
    """A calibration block of `dataset`'s mouse watching `movie` (T, 36, 64) on its virtual rig,
    every frame stamped from rig time `t0` on and published to the calibrator as to the screen;
    `bar` (tqdm) is advanced per frame."""
    calibrator = Calibrator(dataset.n_neurons)
    virtual = VirtualRig.of(dataset, CallbackRig(calibrator.handle), seed)
    session = fresh_session_id("calibration")
    for k, frame in enumerate(movie):
        message = encode_stimulus(session, k, t0 + k / FRAME_RATE_HZ, np.asarray(frame, np.float32))
        calibrator.handle(message)
        virtual.handle(message)
        if bar is not None:
            bar.update()
    return calibrator


def fit_block(
    block: CalibrationBlock,
    neurons: MouseDataset,
    out: Path,
    cfg: RidgeConfig = GAZE_BASELINE,
    mask: np.ndarray | None = None,
    progress: bool = False,
) -> Artifact:
    """The gaze baseline fitted on the block (its last fifth choosing penalty and gain), saved at
    `out` with the identity of `neurons` (the day's neuron table: unit ids and positions)."""
    carried = block.clips[0][0].shape[1]
    if carried != neurons.n_neurons:
        raise CalibrationError(
            f"the stream carries {carried} neurons, the neuron table {neurons.path} has {neurons.n_neurons}"
        )
    cfg = dataclasses.replace(cfg, validation_clips=max(1, len(block.clips) // 5))
    model, report = fit_ridge(block.clips, cfg, mask, progress=progress)
    provenance = {
        "baseline": report,
        "mouse": neurons.name,
        "calibration": {
            "seconds": block.seconds,
            "clips": len(block.clips),
            "unpaired_ticks": block.unpaired,
            "block": block.fingerprint(),
        },
        "input_timing": {"n_planes": block.n_planes, "volume_rate_hz": block.volume_rate_hz},
        "evaluation_mask": None if mask is None else np.flatnonzero(mask).tolist(),
    }
    return save_artifact(
        out, model, neurons.unit_ids, block.fingerprint(), provenance, neuron_set=neurons.neuron_set()
    )
