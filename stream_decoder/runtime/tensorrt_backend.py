"""TensorRT on a CUDA GPU: an engine built from the step graph, replayed as a CUDA graph.

Build: Builder -> strongly typed network -> OnnxParser -> config (workspace, timing cache) ->
build_serialized_network. Strong typing is used on TensorRT 10.x and 11.x alike (11 dropped the
FP16 builder flag): precision comes from the ONNX graph, so fp16 means the fp16 step graph
(`model.fp16.onnx`, float32 at its inputs and outputs). Engines are tied to the GPU model and the
TensorRT version, which are part of their file name.

Run: static batch-1 shapes; pinned host buffers; device tensors bound once with
set_tensor_address; per tick copy in -> execute_async_v3 -> state copy -> copy out on a
non-default stream, captured once as a CUDA graph (plain enqueue if capture fails). CUDA memory,
streams and graphs come from torch, already a dependency.
"""

import logging
import re
from pathlib import Path

import numpy as np
import torch

from stream_decoder.decoder.artifact import Artifact
from stream_decoder.errors import UserError
from stream_decoder.runtime.backend import Backend
from stream_decoder.runtime.step_io import ACTIVITY, BEHAVIOR, FRAME, next_state_names, state_names

log = logging.getLogger(__name__)
WORKSPACE_BYTES = 256 << 20
FP16_ONNX_FILE = "model.fp16.onnx"


def require_tensorrt():
    """The tensorrt module, or a RuntimeError naming everything this machine lacks for it."""
    missing = []
    try:
        import tensorrt
    except ImportError:
        tensorrt = None
        missing.append(
            "the `tensorrt` Python package (pip install 'stream-decoder[tensorrt]' where "
            "NVIDIA's package index is reachable)"
        )
    if not torch.cuda.is_available():
        missing.append(f"a CUDA GPU visible to torch (this torch {torch.__version__} sees none)")
    if missing:
        raise UserError("tensorrt backend needs " + " and ".join(missing))
    return tensorrt


def engine_path(artifact: Artifact, trt, fp16: bool) -> Path:
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name()).strip("-")
    precision = "fp16" if fp16 else "fp32"
    return artifact.path / f"model.{artifact.model_id}.{precision}.trt-{trt.__version__}.{gpu}.engine"


def build_engine(artifact: Artifact, fp16: bool = False) -> Path:
    """Build and save the engine for this GPU from model.onnx (or model.fp16.onnx)."""
    trt = require_tensorrt()
    onnx_file = artifact.path / FP16_ONNX_FILE if fp16 else artifact.onnx_path
    if not onnx_file.is_file():
        raise FileNotFoundError(f"{onnx_file} is missing: run `stream-decoder export {artifact.path}` first")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT cannot parse {onnx_file}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    path = engine_path(artifact, trt, fp16)
    cache_file = path.with_suffix(".timing-cache")
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"TensorRT failed to build an engine from {onnx_file} (see its log above)")
    path.write_bytes(bytes(serialized))
    cache_file.write_bytes(bytes(config.get_timing_cache().serialize()))
    return path


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, artifact: Artifact, fp16: bool = False, cuda_graph: bool = True):
        super().__init__(artifact, fp16=fp16, cuda_graph=cuda_graph)
        trt = require_tensorrt()
        path = engine_path(artifact, trt, fp16)
        if not path.is_file():
            other = "fp32" if fp16 else "fp16"
            hint = (
                f" (an {other} engine is there: set [model.options] fp16 = {str(not fp16).lower()})"
                if engine_path(artifact, trt, not fp16).is_file()
                else ""
            )
            raise FileNotFoundError(
                f"{path} is missing: run `stream-decoder export {artifact.path} "
                f"--tensorrt{' --fp16' if fp16 else ''}` on this machine{hint}"
            )
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise UserError(
                f"{path}: TensorRT {trt.__version__} cannot load this engine (built "
                f"for another GPU or TensorRT version?): rebuild it with export --tensorrt"
            )
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        n_blocks = len(artifact.config.dilations)
        self._device = {
            name: self._bind(name, trt)
            for name in [ACTIVITY, BEHAVIOR, FRAME, *state_names(n_blocks), *next_state_names(n_blocks)]
        }
        self._states = [self._device[n] for n in state_names(n_blocks)]
        self._next_states = [self._device[n] for n in next_state_names(n_blocks)]
        self._host = {
            name: torch.zeros(self._device[name].shape, pin_memory=True)
            for name in (ACTIVITY, BEHAVIOR, FRAME)
        }
        self._host_np = {name: tensor.numpy() for name, tensor in self._host.items()}
        self._graph = self._capture() if cuda_graph else None
        self.reset()

    def _bind(self, name: str, trt) -> torch.Tensor:
        """A device tensor for one engine I/O tensor, its address given to the context once."""
        dtype = self.engine.get_tensor_dtype(name)
        if dtype != trt.float32:
            raise RuntimeError(f"engine tensor {name} is {dtype}, expected float32")
        tensor = torch.zeros(tuple(self.engine.get_tensor_shape(name)), device="cuda")
        self.context.set_tensor_address(name, tensor.data_ptr())
        return tensor

    def _enqueue(self) -> None:
        stream = torch.cuda.current_stream()
        self._device[ACTIVITY].copy_(self._host[ACTIVITY], non_blocking=True)
        self._device[BEHAVIOR].copy_(self._host[BEHAVIOR], non_blocking=True)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        for state, next_state in zip(self._states, self._next_states, strict=True):
            state.copy_(next_state)
        self._host[FRAME].copy_(self._device[FRAME], non_blocking=True)

    def _capture(self) -> torch.cuda.CUDAGraph | None:
        """Enqueue once (TensorRT's first run initialises lazily), then capture; None if capture fails."""
        with torch.cuda.stream(self.stream):
            self._enqueue()
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                self._enqueue()
        except RuntimeError as exc:
            log.warning("CUDA graph capture failed (%s): running TensorRT with plain enqueue", exc)
            return None
        return graph

    def _step(self, activity: np.ndarray, behavior: np.ndarray) -> np.ndarray:
        np.copyto(self._host_np[ACTIVITY][0], activity, casting="same_kind")
        np.copyto(self._host_np[BEHAVIOR][0], behavior, casting="same_kind")
        with torch.cuda.stream(self.stream):
            if self._graph is not None:
                self._graph.replay()
            else:
                self._enqueue()
        self.stream.synchronize()
        return self._host_np[FRAME][0].copy()

    def prefetch(self) -> None:
        """Nothing to warm: the engine's weights live in GPU memory, which nothing else evicts."""

    def reset(self) -> None:
        with torch.cuda.stream(self.stream):
            for state in self._states:
                state.zero_()
        self.stream.synchronize()
