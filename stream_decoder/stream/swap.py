"""Live model swap: another artifact opened beside the running one and taken between two messages.

`load` on the control socket (docs/protocol.md §5.5) starts it. The artifact is opened (its files
and ONNX model checked as at start-up), compared with the running model and warmed up on a worker
thread while the running model keeps serving; the daemon's loop takes it on its next pass, after
the messages in hand are decoded, so no frame is lost and none is half one model's. It is refused,
with the reason, when it reads another number or set of neurons, draws frames of another shape, or
was distilled on another plane count than the stream's; the running model then serves on.
"""

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass

from stream_decoder.decoder.artifact import Artifact
from stream_decoder.runtime import Backend

Loader = Callable[[Callable[[], Backend]], Future]  # runs a job off the loop, returns its future


def thread_loader() -> Loader:
    """The daemon's loader: one worker thread, so a slow open never holds the loop up."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-swap").submit


def refusal(running: Artifact, candidate: Artifact, stream_planes: int | None) -> str | None:
    """Why `candidate` cannot replace `running` on this stream (`stream_planes`: the plane count of
    the session in progress, None before one), or None."""
    old, new = running.meta, candidate.meta
    if new.n_neurons != old.n_neurons:
        return f"it reads {new.n_neurons} neurons, the stream carries {old.n_neurons}"
    if old.neuron_set and new.neuron_set and new.neuron_set != old.neuron_set:
        return f"it reads other neurons (neuron set {new.neuron_set}, the running model's {old.neuron_set})"
    if (not old.neuron_set or not new.neuron_set) and new.unit_ids != old.unit_ids:
        return "it reads other neurons (its unit ids differ from the running model's)"
    if tuple(new.frame_shape) != tuple(old.frame_shape):
        return f"its frames are {list(new.frame_shape)}, the displays take {list(old.frame_shape)}"
    planes = new.provenance.get("input_timing", {}).get("n_planes")
    if stream_planes is not None and planes is not None and planes != stream_planes:
        return f"it was distilled on {planes}-plane input, the stream has {stream_planes} planes"
    return None


@dataclass(frozen=True)
class SwapRecord:
    """One `load`, as `info` lists it: what was asked for and what came of it."""

    artifact: str
    ok: bool
    model: str | None = None  # the model id now serving (ok) or the one refused
    previous: str | None = None
    tick: int | None = None  # the session's first tick the new model decoded
    session: str | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)
