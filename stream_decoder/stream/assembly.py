"""Per-plane messages -> one activity vector in the model's neuron order, and when to emit a frame.

Each neuron holds its latest value and the rig time it was acquired (its age is the difference
to the tick). Before its first value of a session a neuron holds 0, as `data.held_responses` gives
the distillation (a neuron the raw-frame front end has no ROI for: its training mean); behaviour
holds the model's training mean until the rig sends some. Single-plane input is decoded once per
message; multi-plane input on a grid of rig time, tick k at k / rate_hz: a tick is complete, and
emitted with each neuron's latest value acquired at or before it, once a message acquired after
it arrives, or as soon as every plane's next sample is known to fall after it (each plane's
period learned from the stream, its latest sample whole): the frame then waits for no message it
does not need.
"""

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from stream_decoder.data import TIME_TOLERANCE_S
from stream_decoder.stream.protocol import Activity, Rejected

RECENT_SESSIONS = 16  # replaced sessions remembered, so a late message cannot flip the state back
# Messages of one session refused in a row (a second at 30 Hz) that mean its sender restarted
# keeping the session id and its seq 0 was lost on the way (docs/protocol.md §6.4).
RESTART_AFTER_REFUSED = 30


def contiguous_runs(neurons: np.ndarray) -> list[tuple[int, int, int]]:
    """(first neuron, start, stop) of each run of consecutive indices in a sorted index array: the
    activity messages (docs/protocol.md §3.3) that carry values for these neurons."""
    if neurons.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(neurons) != 1) + 1
    bounds = np.concatenate([[0], breaks, [neurons.size]])
    return [(int(neurons[a]), int(a), int(b)) for a, b in itertools.pairwise(bounds)]


@dataclass
class PlaneClock:
    """One plane's sampling as the stream shows it: when its latest sample was acquired, how many
    values of it came so far and how many its previous sample had (the whole plane, in however
    many messages), and its period: the shortest gap seen, so a dropped volume only lengthens one
    gap and jitter in the rig's times makes the next sample look due earlier, never later."""

    t: float = -math.inf
    values: int = 0
    size: int = 0
    period: float | None = None

    def take(self, t: float, values: int) -> None:
        if t > self.t + TIME_TOLERANCE_S:
            if math.isfinite(self.t):
                gap = t - self.t
                self.period = gap if self.period is None else min(self.period, gap)
                self.size = self.values
            self.t, self.values = t, 0
        self.values += values

    def next_sample(self) -> float | None:
        """When its next sample is due; None until a whole sample and the period are known."""
        if self.period is None or self.values < self.size:
            return None
        return self.t + self.period


class Assembler:
    def __init__(
        self,
        n_neurons: int,
        resting_behavior: np.ndarray,
        rate_hz: float,
        max_catchup_ticks: int = 30,
        resting_activity: np.ndarray | None = None,
    ):
        """`resting_activity`: what each neuron holds before its first value (default 0; the front
        end holds neurons without an ROI at their training mean)."""
        self.resting_behavior = np.asarray(resting_behavior, np.float32).copy()
        self.resting_activity = (
            np.zeros(n_neurons, np.float32)
            if resting_activity is None
            else np.asarray(resting_activity, np.float32).copy()
        )
        self.rate_hz = rate_hz
        self.max_catchup_ticks = max_catchup_ticks
        self.activity = np.zeros(n_neurons, np.float32)
        self.behavior = self.resting_behavior.copy()
        self.acquired = np.full(n_neurons, -np.inf)  # rig time of each neuron's latest value
        # rig time of the latest pupil centre, or of the session's first message before one came
        self.pupil_t = -np.inf
        self._older = np.empty(n_neurons, bool)
        self.session: str | None = None
        self._replaced: list[str] = []
        self.last_seq = -1
        self.newest: Activity | None = None  # newest accepted message (its t and seq go into recon)
        self.next_tick: int | None = None  # multi-plane: first grid tick not emitted yet
        self.planes: list[PlaneClock] = []  # multi-plane: each plane's sampling in this session
        self.skipped_ticks = 0  # multi-plane ticks never emitted, after jumps in rig time
        self.restarted: str | None = None  # why the last admitted message restarted a known session
        self._refused = 0  # messages of `_refused_session` refused in a row
        self._refused_session: str | None = None

    def admit(self, msg: Activity) -> tuple[bool, int]:
        """Check `msg` against the session's sequence: (starts a new session, messages missed before it).

        Raises `Rejected` for duplicates, out-of-order messages and messages of replaced sessions,
        unless the message shows its sender restarted keeping its session id (seq back to 0, or
        RESTART_AFTER_REFUSED refused in a row): then the session starts over and `restarted`
        says why (None otherwise).
        """
        self.restarted = None
        if msg.session == self.session and msg.seq > self.last_seq:
            missed = msg.seq - self.last_seq - 1
            self.last_seq = msg.seq
            self._refused = 0
            return False, missed
        if msg.session != self.session and msg.session not in self._replaced:
            self._start(msg)
            return True, 0
        refusal = self._refusal(msg)
        self._refused = self._refused + 1 if msg.session == self._refused_session else 1
        self._refused_session = msg.session
        if msg.seq == 0 and msg.session == self.session and self.last_seq > 0:
            self.restarted = "its seq went back to 0"
        elif self._refused >= RESTART_AFTER_REFUSED:
            self.restarted = f"{self._refused} messages in a row were refused as {refusal.reason}"
        else:
            raise refusal
        self._start(msg)
        return True, 0

    def _refusal(self, msg: Activity) -> Rejected:
        if msg.session != self.session:
            return Rejected(
                "old_session", f"session {msg.session!r:.60} was replaced by {self.session!r:.60}"
            )
        if msg.seq == self.last_seq:
            return Rejected("duplicate", f"seq {msg.seq} again in session {msg.session!r:.60}")
        return Rejected("out_of_order", f"seq {msg.seq} after {self.last_seq} in session {msg.session!r:.60}")

    def apply(self, msg: Activity) -> None:
        """Take the message's values (converted to float32, no allocation) and behaviour as the latest."""
        end = msg.first + msg.values.size
        np.copyto(self.activity[msg.first : end], msg.values, casting="unsafe")
        self.acquired[msg.first : end] = msg.t
        if msg.behavior is not None:
            self.behavior[:2] = msg.behavior
        if msg.pupil_center is not None:
            self.behavior[2:] = msg.pupil_center
            self.pupil_t = msg.t
        self.newest = msg
        if msg.n_planes > 1:
            if len(self.planes) != msg.n_planes:
                self.planes = [PlaneClock() for _ in range(msg.n_planes)]
            self.planes[msg.plane].take(msg.t, msg.values.size)

    def take(self, msg: Activity, parts: Sequence[Activity]) -> Iterator[float]:
        """Apply an admitted message (`parts`: it, or its contiguous neuron runs), yielding the rig
        time of each tick due on the way, when its frame is to be decoded from the held values:
        a single-plane message's own, after it; for multi-plane input the ticks it completes
        before it is applied (after a jump only the last `max_catchup_ticks`, the others counted
        in `skipped_ticks`), then those no sample still to come can change."""
        if msg.n_planes == 1:
            for part in parts:
                self.apply(part)
            yield msg.t
            return
        ticks, skipped = self.due_ticks(msg.t)
        self.skipped_ticks += skipped
        for tick in ticks:
            yield self.tick_time(tick)
        for part in parts:
            self.apply(part)
        for tick in self.complete_ticks():
            yield self.tick_time(tick)

    def complete_ticks(self) -> range:
        """Multi-plane, after applying a message: the grid ticks no sample still to come can
        change, because every plane's next one falls in a later tick. Emit them now."""
        due = [plane.next_sample() for plane in self.planes]
        if self.next_tick is None or not due or None in due:
            return range(0)
        end = min(self.tick_of(t) for t in due)
        if end <= self.next_tick:
            return range(0)
        ticks = range(self.next_tick, end)
        self.next_tick = end
        return ticks

    def due_ticks(self, t: float) -> tuple[range, int]:
        """Multi-plane: (grid ticks that a message acquired at `t` completes, ticks skipped).

        Emit them before applying the message. After a jump in rig time only the last
        `max_catchup_ticks` are emitted: older ones hold the same values and would only delay
        the frames that matter.
        """
        tick = self.tick_of(t)
        if self.next_tick is None:
            self.next_tick = tick
        if tick <= self.next_tick:
            return range(0), 0
        start = max(self.next_tick, tick - self.max_catchup_ticks)
        skipped = start - self.next_tick
        self.next_tick = tick
        return range(start, tick), skipped

    def tick_of(self, t: float) -> int:
        """The first grid tick whose frame holds a sample acquired at `t`: at or after it."""
        return math.ceil((t - TIME_TOLERANCE_S) * self.rate_hz)

    def tick_time(self, tick: int) -> float:
        return tick / self.rate_hz

    def stale_fraction(self, now: float, max_age_s: float | None = None) -> float:
        """Fraction of neurons whose latest value was acquired more than `max_age_s` (default: one
        tick) before `now`, or never in this session."""
        age = 1 / self.rate_hz if max_age_s is None else max_age_s
        np.less(self.acquired, now - age - TIME_TOLERANCE_S, out=self._older)
        return np.count_nonzero(self._older) / self._older.size

    def _start(self, msg: Activity) -> None:
        if self.session is not None and self.session != msg.session:
            kept = [s for s in self._replaced[-(RECENT_SESSIONS - 1) :] if s != msg.session]
            self._replaced = [*kept, self.session]
        self.session = msg.session
        self.last_seq = msg.seq
        self._refused = 0
        self.activity[:] = self.resting_activity
        self.behavior[:] = self.resting_behavior
        self.acquired[:] = -np.inf
        self.pupil_t = msg.t
        self.newest = None
        self.next_tick = None
        self.planes = []
