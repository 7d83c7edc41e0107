"""The CPU default: model.onnx in ONNX Runtime, bound once to preallocated buffers.

Two sets of state buffers alternate between input and output (tick k reads set k % 2 and writes
the other), each with its own IOBinding made at start-up, so a tick allocates nothing but the
returned frame. The optimised graph is saved beside model.onnx on first open and reused.
"""

import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stream_decoder.decoder.artifact import Artifact
from stream_decoder.runtime.backend import Backend
from stream_decoder.runtime.step_io import ACTIVITY, BEHAVIOR, FRAME, next_state_names, state_names

log = logging.getLogger(__name__)
OPTIMISED_GRAPH = "model.{model_id}.ort-{version}.onnx"


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, artifact: Artifact, threads: int = 1):
        """threads: intra-op threads. Two halve the read-in on an idle box but, when other work
        wants the cores, stretch the tail several-fold; one keeps p99 near p50 (bench_step.py)."""
        super().__init__(artifact)
        if not artifact.onnx_path.is_file():
            raise FileNotFoundError(f"{artifact.onnx_path} is missing: run `stream-decoder export "
                                    f"{artifact.path}` first")
        self.session = _open_session(artifact, threads)
        cfg = artifact.config
        self._activity = np.zeros((1, cfg.n_neurons), np.float32)
        self._behavior = np.zeros((1, 4), np.float32)
        self._frame = np.zeros((1, *cfg.frame_shape), np.float32)
        self._states = [[np.zeros(shape, np.float32) for shape in cfg.state_shapes(1)] for _ in range(2)]
        self._bindings = [self._bind(self._states[p], self._states[1 - p]) for p in (0, 1)]
        self._parity = 0

    def _bind(self, states_in: list[np.ndarray], states_out: list[np.ndarray]) -> ort.IOBinding:
        binding = self.session.io_binding()
        names_in = [ACTIVITY, BEHAVIOR, *state_names(len(states_in))]
        for name, array in zip(names_in, [self._activity, self._behavior, *states_in], strict=True):
            binding.bind_input(name, "cpu", 0, np.float32, array.shape, array.ctypes.data)
        names_out = [FRAME, *next_state_names(len(states_out))]
        for name, array in zip(names_out, [self._frame, *states_out], strict=True):
            binding.bind_output(name, "cpu", 0, np.float32, array.shape, array.ctypes.data)
        return binding

    def _step(self, activity: np.ndarray, behavior: np.ndarray) -> np.ndarray:
        np.copyto(self._activity[0], activity, casting="same_kind")
        np.copyto(self._behavior[0], behavior, casting="same_kind")
        self.session.run_with_iobinding(self._bindings[self._parity])
        self._parity ^= 1
        return self._frame[0].copy()

    def reset(self) -> None:
        for states in self._states:
            for state in states:
                state.fill(0.0)
        self._parity = 0


def _open_session(artifact: Artifact, threads: int) -> ort.InferenceSession:
    """Sequential, `threads` intra-op threads; reuse the saved optimised graph, or save it now."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    optimised = artifact.path / OPTIMISED_GRAPH.format(model_id=artifact.model_id, version=ort.__version__)
    if optimised.is_file():
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(str(optimised), options, providers=["CPUExecutionProvider"])
    # Extended (not "all") optimisations are hardware independent, so the saved graph travels.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    if os.access(artifact.path, os.W_OK):
        options.optimized_model_filepath = str(optimised)
    else:
        log.info("artifact %s is read-only: the optimised graph is not saved", artifact.path)
    return ort.InferenceSession(str(artifact.onnx_path), options, providers=["CPUExecutionProvider"])


def remove_optimised_graphs(directory: Path) -> None:
    """Drop saved optimised graphs, which a newly exported model.onnx makes stale."""
    for path in directory.glob(OPTIMISED_GRAPH.format(model_id="*", version="*")):
        path.unlink()
