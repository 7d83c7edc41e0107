"""What the daemon says about input it accepts but should not decode in silence (docs/protocol.md
§6.5): a sender that restarted keeping its session id, most of the model's neurons not arriving (a
partial stream, or another mouse), a stream timed unlike the input the model was distilled on, a
gaze-corrected model given no pupil centre (it decodes as if the eye never moved).
Each is counted under `warnings.<kind>` in `stats` and logged at most once per interval with its fix.
"""

from collections import Counter

from stream_decoder.stream.assembly import Assembler
from stream_decoder.stream.protocol import Activity
from stream_decoder.stream.stats import RateLimitedLog

# A neuron with no value for MISSING_AFTER_S of rig time is missing; more than MOSTLY_MISSING of
# them in MISSING_RUN frames in a row is warned about, and every frame from then on counted.
MISSING_AFTER_S = 1.0
MOSTLY_MISSING = 0.5
MISSING_RUN = 30


class InputWatch:
    """Counts into `counts` (the daemon's `warnings`), logs through `log`; reads the assembler's state."""

    def __init__(
        self,
        counts: Counter,
        log: RateLimitedLog,
        assembler: Assembler,
        model_planes: int | None,
        needs_pupil: bool = False,
    ):
        self.counts = counts
        self.log = log
        self.assembler = assembler
        self.model_planes = model_planes  # None: the artifact records no input timing
        self.needs_pupil = needs_pupil  # a gaze-corrected model: it moves its frames by the eye's shift
        self.missing_run = 0  # frames in a row decoded with most neurons missing
        self.stream_planes: int | None = None  # the plane count of the latest message, None before one

    def session_started(self, msg: Activity) -> None:
        """`session_restarted`, when the session `msg` started is one its sender had already."""
        self.missing_run = 0
        if self.assembler.restarted is None:
            return
        self.counts["session_restarted"] += 1
        self.log.warning(
            "session_restarted",
            "session_restarted",
            session=msg.session,
            seq=msg.seq,
            why=self.assembler.restarted,
            fix="its sender restarted keeping the session id: decoded from here as a new session; "
            "give each run its own session id",
        )

    def message(self, msg: Activity) -> None:
        """`input_timing`, for a message with another plane count than the model's input had."""
        self.stream_planes = msg.n_planes
        if self.model_planes is None or msg.n_planes == self.model_planes:
            return
        self.counts["input_timing"] += 1
        self.log.warning(
            "input_timing",
            "input_timing_mismatch",
            session=msg.session,
            n_planes=msg.n_planes,
            model_n_planes=self.model_planes,
            fix=f"the model was distilled on {self.model_planes}-plane input and decodes this "
            f"{msg.n_planes}-plane stream timed differently: serve a model distilled for this rig's planes",
        )

    def frame(self, tick_t: float, stale: float) -> None:
        """`pupil_missing` and `neurons_missing`, for the frame of tick `tick_t` whose `stale`
        fraction was just computed."""
        if self.needs_pupil and tick_t - self.assembler.pupil_t > MISSING_AFTER_S:
            self._pupil_missing(tick_t)
        self._neurons_missing(tick_t, stale)

    def _pupil_missing(self, tick_t: float) -> None:
        self.counts["pupil_missing"] += 1
        self.log.warning(
            "pupil_missing",
            "pupil_missing",
            session=self.assembler.session,
            seconds=tick_t - self.assembler.pupil_t,
            fix=f"the model corrects for eye movements and no pupil_center came for {MISSING_AFTER_S:g} s: "
            "it decodes as if the eye rested at its training mean; send the eye camera's pupil centre",
        )

    def _neurons_missing(self, tick_t: float, stale: float) -> None:
        if stale <= MOSTLY_MISSING:  # a missing neuron is stale too: the common case costs a comparison
            self.missing_run = 0
            return
        missing = self.assembler.stale_fraction(tick_t, MISSING_AFTER_S)
        if missing <= MOSTLY_MISSING:
            self.missing_run = 0
            return
        self.missing_run += 1
        if self.missing_run < MISSING_RUN:
            return
        self.counts["neurons_missing"] += 1
        self.log.warning(
            "neurons_missing",
            "neurons_missing",
            session=self.assembler.session,
            missing=missing,
            neurons=self.assembler.activity.size,
            frames=self.missing_run,
            fix=f"most neurons sent nothing for {MISSING_AFTER_S:g} s: the rig streams fewer neurons, "
            "or another mouse, than the model's; compare info.neuron_set with the rig's",
        )
