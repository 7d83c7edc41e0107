"""`stream-decoder export`: write and check the serving graphs of a student artifact."""

import json
from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser(
        "export",
        help="export a student artifact's step graph to ONNX (and a TensorRT engine)",
        description="Write ARTIFACT/model.onnx (one tick as a pure function of activity, behaviour "
        "and state), check it with onnx.checker and against the ops TensorRT's ONNX parser supports, "
        "and compare ONNX Runtime's frames with torch's over a stream of ticks. With --tensorrt, "
        "also build the engine for this machine's GPU and compare it the same way. With "
        "--int8-read-in, also write ARTIFACT/model.int8.onnx for the onnxruntime backend on CPU "
        "rigs and compare it the same way.",
    )
    parser.add_argument("artifact", type=Path, help="artifact directory (config.json, weights.pt, meta.json)")
    parser.add_argument("--tensorrt", action="store_true", help="also build a TensorRT engine (needs a GPU)")
    parser.add_argument("--fp16", action="store_true", help="build the engine from the float16 graph")
    parser.add_argument(
        "--int8-read-in",
        action="store_true",
        help="also write model.int8.onnx: int8 read-in weights, a quarter of the bytes a 30 Hz tick pulls "
        "into cold caches on a CPU rig (8 MB -> 2 MB at 8,000 neurons), and int8 ridge-readout weights "
        "for the linear baseline and the residual student (4 MB -> 1 MB at 256 components); served with "
        "[model.options] int8_read_in = true. Cost: frames a few grey levels (of 255) from torch's, "
        "checked here against a tolerance of 8; its time per tick is the onnxruntime-1thread-int8 row "
        "of bench/bench_step.py",
    )
    parser.add_argument("--steps", type=int, default=64, help="ticks compared between backends")
    parser.set_defaults(func=run)


def run(args) -> int:
    from stream_decoder.runtime.export import export_artifact

    if args.steps < 1:
        raise ValueError("--steps must be at least 1")
    report = export_artifact(
        args.artifact,
        tensorrt=args.tensorrt,
        fp16=args.fp16,
        steps=args.steps,
        int8_read_in=args.int8_read_in,
    )
    print(
        json.dumps(
            {
                "onnx": str(report.onnx_path),
                "int8_onnx": str(report.int8_path) if report.int8_path else None,
                "int8_weight_bits": report.int8_weight_bits,
                "engine": str(report.engine_path) if report.engine_path else None,
                "ops": report.ops,
                "steps_compared": report.steps_compared,
                "max_abs_frame_difference_vs_torch": report.max_abs_diff,
            },
            indent=2,
        )
    )
    return 0
