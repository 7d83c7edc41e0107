"""The CPU default: model.onnx (or model.int8.onnx) in ONNX Runtime, bound once to preallocated buffers.

Two sets of state buffers alternate between input and output (tick k reads set k % 2 and writes
the other), each with its own IOBinding made at start-up, so a tick allocates nothing but the
returned frame. The optimised graph is cached under the cache folder on first open and reused.
"""

import contextlib
import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stream_decoder.atomic import atomic_path
from stream_decoder.data import BEHAVIOR_CHANNELS
from stream_decoder.decoder.artifact import Artifact, check_onnx_model_id
from stream_decoder.paths import cache_dir
from stream_decoder.runtime.backend import Backend
from stream_decoder.runtime.step_io import ACTIVITY, BEHAVIOR, FRAME, next_state_names, state_names

log = logging.getLogger(__name__)
CACHE_FOLDER = "ort"  # optimised graphs, under paths.cache_dir()
PROVIDERS = ["CPUExecutionProvider"]
# The step graph with int8 read-in weights (`stream-decoder export --int8-read-in`), for this
# backend on CPU only: its integer ops are not checked against TensorRT's parser.
INT8_ONNX_FILE = "model.int8.onnx"


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, artifact: Artifact, threads: int = 1, int8_read_in: bool = False):
        """threads: intra-op threads. Two shorten a step; their idle worker sleeps between ticks
        rather than spinning, so it leaves the cores to the rest of the rig (bench_e2e.py).
        int8_read_in: run model.int8.onnx, whose read-in weights are int8: a quarter of the bytes a
        30 Hz tick pulls into cold caches (its cost in grey levels: export.INT8_FRAME_TOLERANCE)."""
        super().__init__(artifact, threads=threads, int8_read_in=int8_read_in)
        self.onnx_file = source_graph(artifact, int8_read_in)
        self.session, self.graph_file = _open_session(artifact, self.onnx_file, threads)
        cfg = artifact.config
        self._activity = np.zeros((1, cfg.n_neurons), np.float32)
        self._behavior = np.zeros((1, BEHAVIOR_CHANNELS), np.float32)
        self._frame = np.zeros((1, *cfg.frame_shape), np.float32)
        self._states = [self._zero_states() for _ in range(2)]
        self._bindings = [
            self._bind(
                [self._activity, self._behavior, *self._states[p]], [self._frame, *self._states[1 - p]]
            )
            for p in (0, 1)
        ]
        self._parity = 0
        # prefetch runs the graph on buffers of its own: the real state and frame are never touched.
        # ONNX Runtime holds raw pointers to bound buffers, so they live as long as the backend.
        self._scratch = (
            [self._activity.copy(), self._behavior.copy(), *self._zero_states()],
            [self._frame.copy(), *self._zero_states()],
        )
        self._prefetch = self._bind(*self._scratch)

    def _zero_states(self) -> list[np.ndarray]:
        return [np.zeros(shape, np.float32) for shape in self.artifact.config.state_shapes(1)]

    def _bind(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> ort.IOBinding:
        """Inputs [activity, behavior, *states], outputs [frame, *next states], bound in place."""
        binding = self.session.io_binding()
        names_in = [ACTIVITY, BEHAVIOR, *state_names(len(inputs) - 2)]
        for name, array in zip(names_in, inputs, strict=True):
            binding.bind_input(name, "cpu", 0, np.float32, array.shape, array.ctypes.data)
        names_out = [FRAME, *next_state_names(len(outputs) - 1)]
        for name, array in zip(names_out, outputs, strict=True):
            binding.bind_output(name, "cpu", 0, np.float32, array.shape, array.ctypes.data)
        return binding

    def _step(self, activity: np.ndarray, behavior: np.ndarray) -> np.ndarray:
        np.copyto(self._activity[0], activity, casting="same_kind")
        np.copyto(self._behavior[0], behavior, casting="same_kind")
        self.session.run_with_iobinding(self._bindings[self._parity])
        self._parity ^= 1
        return self._frame[0].copy()

    def prefetch(self) -> None:
        self.session.run_with_iobinding(self._prefetch)

    def reset(self) -> None:
        for states in self._states:
            for state in states:
                state.fill(0.0)
        self._parity = 0


def source_graph(artifact: Artifact, int8_read_in: bool) -> Path:
    """model.onnx (load_artifact checked its model id), or model.int8.onnx, checked the same way."""
    if not int8_read_in:
        if not artifact.onnx_path.is_file():
            raise FileNotFoundError(
                f"{artifact.onnx_path} is missing: run `stream-decoder export {artifact.path}` first"
            )
        return artifact.onnx_path
    path = artifact.path / INT8_ONNX_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run `stream-decoder export {artifact.path} --int8-read-in` first"
        )
    check_onnx_model_id(path, artifact.model_id, " --int8-read-in")
    return path


def _open_session(artifact: Artifact, source: Path, threads: int) -> tuple[ort.InferenceSession, Path]:
    """`source` sequential on `threads` intra-op threads; reuse its cached optimised graph, or cache
    it now. Returns the session and the graph file it runs."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Idle workers sleep rather than spin: a spinning worker takes a core from the rig and the display
    # on a small PC, and under SCHED_FIFO nothing of its priority can take it back (stalls of 40-80 ms).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    cached = optimised_graph_path(artifact, source)
    if cached.is_file():
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(str(cached), options, providers=PROVIDERS), cached
    # Extended (not "all") optimisations are hardware independent, so the saved graph travels.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    with contextlib.suppress(OSError):  # a folder we cannot make is reported next, as not writable
        cached.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(cached.parent, os.W_OK):
        log.info("cache %s is not writable: the optimised graph is not saved", cached.parent)
        return ort.InferenceSession(str(source), options, providers=PROVIDERS), source
    with atomic_path(cached) as tmp:  # another daemon may open the cache meanwhile: whole or absent
        options.optimized_model_filepath = str(tmp)
        session = ort.InferenceSession(str(source), options, providers=PROVIDERS)
    prune_stale_graphs(cached)
    return session, source


def prune_stale_graphs(current: Path) -> None:
    """Remove the cached graphs `current` replaces: the same model and source file optimised from
    an older export or by another ONNX Runtime version, so the cache holds one entry per graph."""
    model_id, stem = current.name.split(".")[:2]
    for old in current.parent.glob(f"{model_id}.{stem}.*.onnx"):
        if old != current:
            with contextlib.suppress(OSError):  # another daemon's prune got there first
                old.unlink()


def optimised_graph_path(artifact: Artifact, source: Path) -> Path:
    """<cache>/ort/<model id>.<source stem>.<digest of source>.ort-<version>.onnx, never in the
    artifact (which may be read-only, or packaged). The stem keeps model.onnx and model.int8.onnx
    apart; the digest keeps a model.onnx exported again from the same weights (a newer exporter, a
    fixed step graph) from running the graph optimised from the old one."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    stem = source.name.removesuffix(".onnx").replace(".", "-")
    return cache_dir() / CACHE_FOLDER / f"{artifact.model_id}.{stem}.{digest}.ort-{ort.__version__}.onnx"
