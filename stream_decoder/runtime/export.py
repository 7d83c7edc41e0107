"""`stream-decoder export`: the student's step graph as a checked ONNX file (and a TensorRT engine).

Checks, in order: onnx.checker (full), every op against what TensorRT's ONNX parser accepts, and
the frames of ONNX Runtime against torch over a stream of ticks with the state carried.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from stream_decoder.data import BEHAVIOR_CHANNELS
from stream_decoder.decoder.artifact import ONNX_MODEL_ID_KEY, Artifact, load_artifact
from stream_decoder.decoder.streaming import StepGraph
from stream_decoder.runtime.backend import Backend
from stream_decoder.runtime.onnxruntime_backend import OnnxRuntimeBackend
from stream_decoder.runtime.step_io import ACTIVITY, BEHAVIOR, FRAME, next_state_names, state_names
from stream_decoder.runtime.tensorrt_backend import (
    FP16_ONNX_FILE,
    TensorRTBackend,
    build_engine,
    require_tensorrt,
)
from stream_decoder.runtime.torch_backend import TorchBackend

OPSET = 18
# Frames are 0-255: a hundredth of a grey level covers float32 reordering across runtimes;
# float16 weights and activations through a few layers stay within a couple of grey levels.
FRAME_TOLERANCE = 1e-2
FP16_FRAME_TOLERANCE = 2.0

# The ops the step graph can contain after torch's exporter at OPSET, each marked supported (Y) in
# onnx-tensorrt's docs/operators.md for TensorRT 10.15 (opsets 9-24); the restrictions listed there
# hold for our graph (ReduceSum axes an initializer; Resize linear with half_pixel). A new op in the
# graph fails the export until someone checks it there and adds it here.
TENSORRT_ONNX_OPS = frozenset(
    {
        "Add",
        "Cast",
        "Clip",  # the linear baseline's map held to 0-255
        "Concat",
        "Constant",
        "Div",
        "Erf",
        "Flatten",
        "Gemm",
        "Identity",
        "ReduceSum",
        "LayerNormalization",
        "MatMul",
        "Mul",
        "Reshape",
        "Resize",
        "Sigmoid",
        "Slice",
        "Sub",
        "Unsqueeze",
    }
)


@dataclass(frozen=True)
class ExportReport:
    onnx_path: Path
    ops: dict[str, int]
    steps_compared: int
    max_abs_diff: dict[str, float]  # per backend, frames vs torch over the stream
    engine_path: Path | None = None


class Float16Step(nn.Module):
    """The step graph computed in float16, float32 at its inputs, outputs and state (for TensorRT)."""

    def __init__(self, graph: StepGraph):
        super().__init__()
        self.graph = graph.half()

    def forward(self, activity: torch.Tensor, behavior: torch.Tensor, *state: torch.Tensor):
        outputs = self.graph(activity.half(), behavior.half(), *(s.half() for s in state))
        return tuple(o.float() for o in outputs)


def export_onnx(artifact: Artifact, fp16: bool = False) -> Path:
    """Trace the batch-1 step graph to model.onnx (or model.fp16.onnx), stamped with the model id."""
    graph = StepGraph(artifact.model())
    path = artifact.path / FP16_ONNX_FILE if fp16 else artifact.onnx_path
    state = artifact.model().initial_state(1)
    n_blocks = len(state)
    example = (torch.zeros(1, artifact.config.n_neurons), torch.zeros(1, BEHAVIOR_CHANNELS), *state)
    with warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (small single-file graph, no onnxscript).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            Float16Step(graph) if fp16 else graph,
            example,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            external_data=False,
            do_constant_folding=True,
            input_names=[ACTIVITY, BEHAVIOR, *state_names(n_blocks)],
            output_names=[FRAME, *next_state_names(n_blocks)],
        )
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {ONNX_MODEL_ID_KEY: artifact.model_id})
    model.doc_string = f"stream_decoder student step graph, model {artifact.model_id}"
    onnx.save(model, str(path))
    return path


def check_onnx(path: Path) -> dict[str, int]:
    """Full onnx.checker pass and the TensorRT op check; returns the op counts."""
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    check_tensorrt_ops(model)
    return op_counts(model)


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def check_tensorrt_ops(model: onnx.ModelProto) -> None:
    """Refuse a graph with an op outside TENSORRT_ONNX_OPS, or outside the default ONNX domain."""
    foreign = sorted({f"{n.domain}:{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    unsupported = sorted(set(op_counts(model)) - TENSORRT_ONNX_OPS)
    if foreign or unsupported:
        raise ValueError(
            f"step graph uses ops not checked against TensorRT's ONNX parser: "
            f"{', '.join(foreign + unsupported)}"
        )


def stream_inputs(artifact: Artifact, steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw-looking activity (steps, N) and behaviour (steps, 4) drawn from the normalisation stats."""
    rng = np.random.default_rng(seed)
    sd = artifact.state_dict

    def draw(mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
        noise = rng.standard_normal((steps, mean.numel()))
        return (mean.numpy() + std.numpy() * noise).astype(np.float32)

    return draw(sd["activity_mean"], sd["activity_std"]), draw(sd["behavior_mean"], sd["behavior_std"])


def max_frame_difference(reference: Backend, candidate: Backend, activity, behavior) -> float:
    """Largest |frame difference| over a stream of ticks, both backends starting from reset."""
    reference.reset()
    candidate.reset()
    worst = 0.0
    for a, b in zip(activity, behavior, strict=True):
        worst = max(worst, float(np.abs(reference.step(a, b) - candidate.step(a, b)).max()))
    reference.reset()
    candidate.reset()
    return worst


def export_artifact(
    artifact_dir: str | Path, tensorrt: bool = False, fp16: bool = False, steps: int = 64
) -> ExportReport:
    """Write and check model.onnx (and the TensorRT engine); raise if a runtime disagrees with torch."""
    if fp16 and not tensorrt:
        raise ValueError("export: fp16 applies to the TensorRT engine; pass tensorrt=True (--tensorrt) too")
    if tensorrt:
        require_tensorrt()
    artifact = load_artifact(artifact_dir, check_onnx=False)
    path = export_onnx(artifact)
    ops = check_onnx(path)
    reference = TorchBackend(artifact)
    candidates: dict[str, Backend] = {"onnxruntime": OnnxRuntimeBackend(artifact)}
    engine_path = None
    if tensorrt:
        if fp16:
            check_onnx(export_onnx(artifact, fp16=True))
        engine_path = build_engine(artifact, fp16=fp16)
        candidates["tensorrt"] = TensorRTBackend(artifact, fp16=fp16)
    activity, behavior = stream_inputs(artifact, steps)
    diffs = {
        name: max_frame_difference(reference, backend, activity, behavior)
        for name, backend in candidates.items()
    }
    for name, diff in diffs.items():
        tolerance = FP16_FRAME_TOLERANCE if name == "tensorrt" and fp16 else FRAME_TOLERANCE
        if diff > tolerance:
            raise RuntimeError(
                f"export {artifact.path}: {name} frames differ from torch by up to {diff:.4g} "
                f"grey levels over {steps} ticks (tolerance {tolerance})"
            )
    return ExportReport(path, ops, steps, diffs, engine_path)
