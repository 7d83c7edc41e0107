"""The one interface the daemon calls: a loaded student, one tick in, one frame out.

A backend owns the student's streaming state (the per-block histories) and advances it by one
tick per `step`; `reset` returns to the zero history a new session starts from.
"""

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from stream_decoder.data import BEHAVIOR_CHANNELS
from stream_decoder.decoder.artifact import Artifact, load_artifact

KINDS = ("onnxruntime", "torch", "tensorrt")
# Each backend's keyword options (its constructor's, which a test holds this to) and their types:
# what `open_backend` and the rig config's [model.options] accept.
OPTIONS: dict[str, dict[str, type]] = {
    "onnxruntime": {"threads": int, "int8_read_in": bool},
    "torch": {"device": str},
    "tensorrt": {"fp16": bool, "cuda_graph": bool},
}


class Backend(ABC):
    name: str

    def __init__(self, artifact: Artifact, **options):
        """options: the subclass's keyword options as it runs with them, reported by `info` so that a
        client sees what serves its frames (int8 weights, fp16, threads)."""
        self.artifact = artifact
        self.options = options
        self.n_neurons = artifact.config.n_neurons
        self.frame_shape = artifact.config.frame_shape

    @property
    def info(self) -> dict:
        """What a client needs to know about the loaded model (ids, shapes, lookahead)."""
        meta = self.artifact.meta
        return {
            "backend": self.name,
            "backend_options": dict(self.options),
            "model": meta.model_id,
            "neurons": meta.n_neurons,
            "frame_shape": list(meta.frame_shape),
            "lookahead": meta.lookahead,
            "gaze_gain": self.artifact.config.gaze_gain,
            "data_fingerprint": meta.data_fingerprint,
            "artifact": str(self.artifact.path),
        }

    def step(self, activity: np.ndarray, behavior: np.ndarray) -> np.ndarray:
        """activity (N,) raw responses in the model's neuron order; behavior (4,) = pupil dilation,
        running speed, pupil x, pupil y -> frame (H, W) float32 in 0-255 showing stimulus t - L.
        Values are used as given: rejecting non-finite input is the caller's (the protocol's) job.
        """
        activity, behavior = np.asarray(activity), np.asarray(behavior)
        if activity.shape != (self.n_neurons,):
            raise ValueError(
                f"{self.name} backend: activity has shape {activity.shape}, "
                f"the model {self.artifact.model_id} expects ({self.n_neurons},)"
            )
        if behavior.shape != (BEHAVIOR_CHANNELS,):
            raise ValueError(
                f"{self.name} backend: behavior has shape {behavior.shape}, expected "
                f"({BEHAVIOR_CHANNELS},) = pupil dilation, running speed, pupil x, pupil y"
            )
        return self._step(activity, behavior)

    @abstractmethod
    def _step(self, activity: np.ndarray, behavior: np.ndarray) -> np.ndarray:
        """Shapes already checked; dtype may be any real type (cast on the copy in)."""

    @abstractmethod
    def reset(self) -> None:
        """Back to zero history, as at the start of a session."""

    @abstractmethod
    def prefetch(self) -> None:
        """Run the graph once on scratch buffers, leaving the state alone, so that the next `step`
        finds the weights and code in the CPU caches. Between 30 Hz ticks other work evicts them and a
        cold step costs several times a warm one; the daemon calls this just before a tick is due."""

    def warmup(self, steps: int = 32) -> None:
        """Run a few ticks so first-call costs (allocation, tuning, caches) are paid now; then reset."""
        activity = np.zeros(self.n_neurons, np.float32)
        behavior = np.zeros(BEHAVIOR_CHANNELS, np.float32)
        for _ in range(steps):
            self._step(activity, behavior)
        self.reset()


def open_backend(artifact_dir: str | Path, kind: str = "onnxruntime", **options) -> Backend:
    """Load and check an artifact, then open it on `kind`; options go to that backend."""
    if kind not in KINDS:
        raise ValueError(f"unknown backend {kind!r}; choose one of {', '.join(KINDS)}")
    check_options(kind, options)
    artifact = load_artifact(artifact_dir)
    if kind == "torch":
        from stream_decoder.runtime.torch_backend import TorchBackend

        return TorchBackend(artifact, **options)
    if kind == "onnxruntime":
        from stream_decoder.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(artifact, **options)
    from stream_decoder.runtime.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(artifact, **options)


def check_options(kind: str, options: dict) -> None:
    """Refuse an option `kind` does not take or a value of the wrong type, naming the valid keys."""
    valid = OPTIONS[kind]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for the {kind} backend; valid keys: {sorted(valid)}")
    for name, value in options.items():
        if type(value) is not valid[name]:  # exact: true is no thread count, 2.0 no int
            raise ValueError(f"{name} must be {valid[name].__name__} for the {kind} backend, got {value!r}")
    if options.get("threads", 1) < 1:
        raise ValueError(f"threads must be >= 1, got {options['threads']}")
