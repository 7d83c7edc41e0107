"""`stream-decoder export`: the student's step graph as a checked ONNX file (and a TensorRT engine).

Checks, in order: onnx.checker (full), every op against what TensorRT's ONNX parser accepts, and
the frames of ONNX Runtime against torch over a stream of ticks with the state carried. The int8
read-in variant (model.int8.onnx, ONNX Runtime on CPU only) gets the same checks but the TensorRT one.
"""

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from stream_decoder.data import BEHAVIOR_CHANNELS
from stream_decoder.decoder.artifact import ONNX_MODEL_ID_KEY, Artifact, load_artifact
from stream_decoder.decoder.streaming import StepGraph
from stream_decoder.errors import UserError
from stream_decoder.runtime.backend import Backend
from stream_decoder.runtime.onnxruntime_backend import INT8_ONNX_FILE, OnnxRuntimeBackend
from stream_decoder.runtime.step_io import ACTIVITY, BEHAVIOR, FRAME, next_state_names, state_names
from stream_decoder.runtime.tensorrt_backend import (
    FP16_ONNX_FILE,
    TensorRTBackend,
    build_engine,
    require_tensorrt,
)
from stream_decoder.runtime.torch_backend import TorchBackend

log = logging.getLogger(__name__)

OPSET = 18
# Frames are 0-255: a hundredth of a grey level covers float32 reordering across runtimes;
# float16 weights and activations through a few layers stay within a couple of grey levels.
FRAME_TOLERANCE = 1e-2
FP16_FRAME_TOLERANCE = 2.0
# int8 read-in weights (per output channel) and activity quantized per tick to uint8: the largest
# frame difference from torch over stream_inputs (seeds 0, 7, 11, 23; 300 ticks each, state carried)
# was 3.66 grey levels for the bundled demo student (N = 2,000) and 1.70 for a random-weight
# 8,000-neuron student of the default shape (bench_step.py's); per-tensor weights: 8.60 and 1.60.
# Twice the worst seen, so that another trained student's larger weights do not fail its export: the
# check is there to catch a broken graph (tens of grey levels); bench_precision.py measures the cost.
INT8_FRAME_TOLERANCE = 8.0

# The ops the step graph can contain after torch's exporter at OPSET, each marked supported (Y) in
# onnx-tensorrt's docs/operators.md for TensorRT 10.15 (opsets 9-24); the restrictions listed there
# hold for our graph (ReduceSum axes an initializer; Resize linear with half_pixel). A new op in the
# graph fails the export until someone checks it there and adds it here.
TENSORRT_ONNX_OPS = frozenset(
    {
        "Abs",  # the gaze correction's bilinear weights (decoder/gaze.py)
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
    int8_path: Path | None = None
    int8_weight_bits: int | None = None  # 8, or 7 where 8-bit weights failed the check on this CPU


class Float16Step(nn.Module):
    """The step graph computed in float16, float32 at its inputs, outputs and state (for TensorRT)."""

    def __init__(self, graph: StepGraph):
        super().__init__()
        self.graph = graph.half()

    def forward(self, activity: torch.Tensor, behavior: torch.Tensor, *state: torch.Tensor):
        outputs = self.graph(activity.half(), behavior.half(), *(s.half() for s in state))
        return tuple(o.float() for o in outputs)


class MatMulReadInStep(StepGraph):
    """The step graph with its read-in as MatMul(activity, W (N, D)) + bias instead of one Gemm:
    ONNX Runtime's dynamic quantizer makes int8 weights of a MatMul's constant input, not a Gemm's."""

    def read_in(self, activity: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        # the exporter folds the transpose into an (N, D) initializer
        return activity @ self.w_activity.T + self.bias + F.linear(behavior, self.w_behavior)


class MatMulLinear(nn.Module):
    """`linear` as MatMul(x, W^T) + b, W^T an initializer: the form the dynamic quantizer takes."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.register_buffer("weight_t", linear.weight.detach().T.contiguous())
        self.register_buffer("bias", linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight_t + self.bias


def export_onnx(artifact: Artifact, fp16: bool = False) -> Path:
    """Trace the batch-1 step graph to model.onnx (or model.fp16.onnx), stamped with the model id."""
    graph = StepGraph(artifact.model())
    path = artifact.path / FP16_ONNX_FILE if fp16 else artifact.onnx_path
    return save_stamped(trace(Float16Step(graph) if fp16 else graph, artifact), artifact, path)


def int8_step_graph(artifact: Artifact) -> tuple[StepGraph, tuple[int, int] | None]:
    """The step graph in quantizable form: read-in and ridge readout (where the head has one) as
    MatMuls; returns it and the readout's (inputs, outputs) weight shape, by which its node is found."""
    model = artifact.model()
    if model.ridge_readout is None:
        return MatMulReadInStep(model), None
    readout = getattr(model, model.ridge_readout)
    setattr(model, model.ridge_readout, MatMulLinear(readout))
    return MatMulReadInStep(model), (readout.in_features, readout.out_features)


def export_int8_read_in(artifact: Artifact, reduce_range: bool = False) -> Path:
    """model.int8.onnx: the step graph with int8 read-in weights (per output channel, QInt8) and the
    tick's activity quantized to uint8 on the fly (ONNX Runtime's dynamic quantization:
    DynamicQuantizeLinear -> MatMulInteger); the same for the ridge readout of the baseline and the
    residual student. Only those are quantized: their weights are the bytes a 30 Hz tick pulls into
    cold caches (N x D, and K D x h w: 4 MB of float32 in the residual student); the rest of the head
    stays float32. For ONNX Runtime on CPU only: its integer ops are not in TENSORRT_ONNX_OPS, and
    check_onnx skips that check for it.
    `reduce_range`: 7-bit weights. On x86 CPUs without VNNI (AVX2 alone) ONNX Runtime's uint8 x int8
    kernel adds pairs of products in int16 and can saturate: the tests' random-weight student came
    out 12.8 grey levels from torch there with 8-bit weights, 2.5 with 7-bit; trained students, whose
    weights have few near the channel's largest, stayed within 4.1 at 8 bits."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph, readout_shape = int8_step_graph(artifact)
    traced = trace(graph, artifact)
    nodes = [read_in_node(traced)] + ([weight_node(traced, readout_shape)] if readout_shape else [])
    path = artifact.path / INT8_ONNX_FILE
    with quiet_quantizer():
        quantize_dynamic(
            traced,
            path,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=nodes,
            weight_type=QuantType.QInt8,
            # per output channel: the demo student's frames 3.37 grey levels from torch at most over
            # the same 200 ticks where one scale for the whole matrix gives 8.60
            per_channel=True,
            reduce_range=reduce_range,
        )
    return save_stamped(onnx.load(str(path)), artifact, path, " (int8 read-in)")


def trace(module: nn.Module, artifact: Artifact) -> onnx.ModelProto:
    """The batch-1 step function `module` as an ONNX graph with the step_io names."""
    state = artifact.model().initial_state(1)
    n_blocks = len(state)
    example = (torch.zeros(1, artifact.config.n_neurons), torch.zeros(1, BEHAVIOR_CHANNELS), *state)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (small single-file graph, no onnxscript).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            example,
            buffer,
            dynamo=False,
            opset_version=OPSET,
            external_data=False,
            do_constant_folding=True,
            input_names=[ACTIVITY, BEHAVIOR, *state_names(n_blocks)],
            output_names=[FRAME, *next_state_names(n_blocks)],
        )
    return onnx.load_from_string(buffer.getvalue())


def save_stamped(model: onnx.ModelProto, artifact: Artifact, path: Path, variant: str = "") -> Path:
    """Write `model` to `path` stamped with the model id, which the backends check on load."""
    onnx.helper.set_model_props(model, {ONNX_MODEL_ID_KEY: artifact.model_id})
    model.doc_string = f"stream_decoder student step graph{variant}, model {artifact.model_id}"
    onnx.save(model, str(path))
    return path


def read_in_node(model: onnx.ModelProto) -> str:
    """The name of the one MatMul that multiplies the activity input by the read-in weights."""
    return one_matmul(model, lambda name: name == ACTIVITY, f"reading {ACTIVITY!r}")


def weight_node(model: onnx.ModelProto, shape: tuple[int, int]) -> str:
    """The name of the one MatMul whose constant weight input has `shape`."""
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    return one_matmul(model, lambda name: shapes.get(name) == shape, f"with {shape} weights")


def one_matmul(model: onnx.ModelProto, reads, what: str) -> str:
    """The name of the one MatMul with an input `reads` accepts; an error naming `what` otherwise."""
    names = [n.name for n in model.graph.node if n.op_type == "MatMul" and any(map(reads, n.input))]
    if len(names) != 1:
        raise RuntimeError(f"export: expected one MatMul {what}, found {names}")
    return names[0]


@contextlib.contextmanager
def quiet_quantizer():
    """quantize_dynamic logs on the root logger a hint to pre-process the graph (shape inference,
    fusions: the traced step graph already has static shapes and folded constants) and a note per
    tensor it quantizes on the fly: they would only confuse. Its errors still pass."""
    quiet = logging.Filter()
    quiet.filter = lambda record: record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname
    logging.getLogger().addFilter(quiet)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(quiet)


def check_onnx(path: Path, tensorrt: bool = True) -> dict[str, int]:
    """Full onnx.checker pass and the TensorRT op check (tensorrt=False skips it: for the int8 graph,
    which only ONNX Runtime runs); returns the op counts."""
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    if tensorrt:
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
    artifact_dir: str | Path,
    tensorrt: bool = False,
    fp16: bool = False,
    steps: int = 64,
    int8_read_in: bool = False,
) -> ExportReport:
    """Write and check model.onnx (and the TensorRT engine, and model.int8.onnx); raise if a runtime
    disagrees with torch by more than its tolerance."""
    if fp16 and not tensorrt:
        raise ValueError("export: fp16 applies to the TensorRT engine; pass tensorrt=True (--tensorrt) too")
    if tensorrt:
        require_tensorrt()
    artifact = load_artifact(artifact_dir, check_onnx=False)
    path = export_onnx(artifact)
    ops = check_onnx(path)
    reference = TorchBackend(artifact)
    candidates: dict[str, Backend] = {"onnxruntime": OnnxRuntimeBackend(artifact)}
    tolerances = {"onnxruntime": FRAME_TOLERANCE}
    engine_path = int8_path = None
    if tensorrt:
        if fp16:
            check_onnx(export_onnx(artifact, fp16=True))
        engine_path = build_engine(artifact, fp16=fp16)
        candidates["tensorrt"] = TensorRTBackend(artifact, fp16=fp16)
        tolerances["tensorrt"] = FP16_FRAME_TOLERANCE if fp16 else FRAME_TOLERANCE
    activity, behavior = stream_inputs(artifact, steps)
    diffs = {
        name: max_frame_difference(reference, backend, activity, behavior)
        for name, backend in candidates.items()
    }
    bits = None
    if int8_read_in:
        int8_path, bits, diffs["onnxruntime-int8"] = checked_int8(artifact, reference, activity, behavior)
        tolerances["onnxruntime-int8"] = INT8_FRAME_TOLERANCE
    for name, diff in diffs.items():
        if diff > tolerances[name]:
            raise UserError(
                f"export {artifact.path}: {name} frames differ from torch by up to {diff:.4g} "
                f"grey levels over {steps} ticks (tolerance {tolerances[name]})"
            )
    return ExportReport(path, ops, steps, diffs, engine_path, int8_path, bits)


def checked_int8(artifact: Artifact, reference: Backend, activity, behavior) -> tuple[Path, int, float]:
    """model.int8.onnx with 8-bit weights, or with 7-bit ones where the 8-bit graph strays past the
    tolerance on this CPU (int16 saturation, `export_int8_read_in`): path, weight bits, frame difference."""
    for bits in (8, 7):
        path = export_int8_read_in(artifact, reduce_range=bits == 7)
        check_onnx(path, tensorrt=False)
        backend = OnnxRuntimeBackend(artifact, int8_read_in=True)
        diff = max_frame_difference(reference, backend, activity, behavior)
        if diff <= INT8_FRAME_TOLERANCE:
            break
        log.warning("int8 read-in: 8-bit weights %.3g grey levels from torch on this CPU; trying 7-bit", diff)
    return path, bits, diff
