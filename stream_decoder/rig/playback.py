"""Recording playback: the activity a daemon recorded, sent again the way its rig sent it.

`PlaybackPlan` turns a recording (`stream.recorder`) back into `PlannedMessage`s that `replay`
paces, drops and restarts as it does a dataset's, so a session can be re-examined offline or
decoded by another model. Each recorded session becomes a session of the playback (a fresh id,
seq from 0), back to back, with its recorded values, neurons, plane, n_planes and behaviour, and
its times relative to its first message: shifted by whole 30 Hz frames, so multi-plane input lands
on the daemon's tick grid as it did when recorded, and gives the same frames.

A recorded session is a run of records with one session id and a seq that does not go back (the
daemon started a session over where it did, docs/protocol.md §6.4). The daemon records a raw frame
as one record per contiguous run of its plane's neurons, all with the frame's seq: consecutive
records of one seq whose neurons follow on are one message again. Runs of one seq that do not
follow on go out as separate messages with the same t, as `replay` sends such a plane, so a
single-plane model then emits one frame per run where the recording has one per raw frame; and a
model served without a front end holds a neuron it gets no value for at 0, not at its training
mean. Records without values (a raw frame the front end could not use) and seq numbers never
recorded (messages lost on the way) are left out. A recording holds no neuron identity: only the
neuron count can be checked against the served model.
"""

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_decoder.data import FRAME_RATE_HZ, TIME_TOLERANCE_S
from stream_decoder.data.planes import frame_of
from stream_decoder.rig.replay import PlannedMessage
from stream_decoder.stream.recorder import Recording, read_recording


@dataclass(frozen=True)
class RecordedSession:
    """Records start..stop-1 of a recording's activity columns: one session as the daemon saw it."""

    name: str
    start: int
    stop: int


def recorded_sessions(activity: dict[str, np.ndarray]) -> list[RecordedSession]:
    """The recording's sessions in order: a new one where the session id changes or seq goes back."""
    session, seq = activity["session"], activity["seq"]
    breaks = np.flatnonzero((session[1:] != session[:-1]) | (seq[1:] < seq[:-1])) + 1
    bounds = [0, *breaks.tolist(), len(seq)]
    return [RecordedSession(str(session[a]), a, b) for a, b in itertools.pairwise(bounds)]


def _messages_of(activity: dict[str, np.ndarray], part: RecordedSession) -> list[tuple[int, int]]:
    """(first record, records) of each message: consecutive records of one seq with contiguous
    neurons are one; a message without values is left out."""
    seq, first, n = (activity[key][part.start : part.stop] for key in ("seq", "first", "n"))
    follows = (seq[1:] == seq[:-1]) & (first[1:] == first[:-1] + n[:-1])
    starts = np.concatenate([[0], np.flatnonzero(~follows) + 1])
    stops = np.concatenate([starts[1:], [len(seq)]])
    sizes = np.add.reduceat(n, starts)
    return [
        (part.start + int(a), int(b - a)) for a, b, size in zip(starts, stops, sizes, strict=True) if size
    ]


class PlaybackPlan:
    """The recorded sessions `sessions` of `recording`, played back to back, `gap_s` (rounded up to
    whole 30 Hz frames) between the last message of one and the first of the next."""

    raw = None  # activity only: nothing to render ahead of the sender

    def __init__(
        self, recording: Recording, sessions: list[RecordedSession], source: Path, gap_s: float = 0.0
    ):
        if not sessions:
            raise ValueError(f"recording {source}: no session to play")
        if gap_s < 0:
            raise ValueError(f"--gap-s must be >= 0, got {gap_s}")
        self.recording = recording
        self.sessions = sessions
        self.source = Path(source)
        activity = recording.activity
        self.groups = [_messages_of(activity, part) for part in sessions]
        t = activity["t"]
        gap = math.ceil(gap_s * FRAME_RATE_HZ - TIME_TOLERANCE_S)
        self.shifts = []  # per session: plan time minus recorded time, whole frames
        start = 0  # the session's first frame on the plan's grid
        for part in sessions:
            times = t[part.start : part.stop]
            first = int(frame_of(times[0]))
            self.shifts.append((start - first) / FRAME_RATE_HZ)
            start += int(frame_of(times.max())) - first + 1 + gap
        played = np.concatenate([np.arange(part.start, part.stop) for part in sessions])
        self.n_neurons = int((activity["first"][played] + activity["n"][played]).max())

    @classmethod
    def open(
        cls, directory: Path, index: int | None = None, name: str | None = None, gap_s: float = 0.0
    ) -> "PlaybackPlan":
        """The recording in `directory`: every session, or the `index`-th, or those of id `name`."""
        recording = read_recording(directory)
        if not recording.activity.get("seq", np.empty(0)).size:
            raise ValueError(
                f"recording {directory} holds no activity records (no complete activity-NNNNNN.npz); "
                "is it a [recorder] dir the daemon wrote?"
            )
        sessions = recorded_sessions(recording.activity)
        if index is not None and name is not None:
            raise ValueError("--session-index and --session-name both pick the session to play: give one")
        if index is not None:
            if not 0 <= index < len(sessions):
                raise ValueError(
                    f"--session-index {index}: recording {directory} holds sessions 0..{len(sessions) - 1}"
                )
            sessions = [sessions[index]]
        elif name is not None:
            names = list(dict.fromkeys(s.name for s in sessions))
            sessions = [s for s in sessions if s.name == name]
            if not sessions:
                shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                raise ValueError(f"--session-name {name!r}: recording {directory} holds sessions {shown}")
        return cls(recording, sessions, directory, gap_s)

    @property
    def n_messages(self) -> int:
        return sum(len(groups) for groups in self.groups)

    def describe(self) -> str:
        return f"{len(self.sessions)} recorded session(s) of {self.source}, {self.n_messages} messages"

    def check_model(self, info: dict, identity: bool = True) -> str:
        """Refuse a daemon whose model reads fewer neurons than the recording has values for; a
        recording names no neurons, so `identity` cannot be checked."""
        model, neurons = info.get("model"), info.get("neurons")
        if not isinstance(neurons, int) or neurons < self.n_neurons:
            raise ValueError(
                f"the daemon serves model {model} for {neurons} neurons, recording {self.source} has "
                f"values for {self.n_neurons} (a recording names no neuron set: only the count is checked)"
            )
        return "neurons"

    def messages(self) -> Iterator[PlannedMessage]:
        a = self.recording.activity
        for k, (groups, shift) in enumerate(zip(self.groups, self.shifts, strict=True)):
            for i, records in groups:
                start = int(a["offsets"][i])
                size = int(a["n"][i : i + records].sum())
                behavior = a["behavior"][i]
                yield PlannedMessage(
                    float(a["t"][i]) + shift,
                    None,
                    None,
                    int(a["plane"][i]),
                    int(a["first"][i]),
                    a["values"][start : start + size],
                    None if np.isnan(behavior[:2]).all() else behavior[:2],
                    None if np.isnan(behavior[2:]).all() else behavior[2:],
                    n_planes=int(a["n_planes"][i]),
                    session=k,
                )
