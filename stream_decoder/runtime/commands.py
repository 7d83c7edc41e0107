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
        "also build the engine for this machine's GPU and compare it the same way.",
    )
    parser.add_argument("artifact", type=Path, help="artifact directory (config.json, weights.pt, meta.json)")
    parser.add_argument("--tensorrt", action="store_true", help="also build a TensorRT engine (needs a GPU)")
    parser.add_argument("--fp16", action="store_true", help="build the engine from the float16 graph")
    parser.add_argument("--steps", type=int, default=64, help="ticks compared between backends")
    parser.set_defaults(func=run)


def run(args) -> int:
    from stream_decoder.runtime.export import export_artifact

    if args.steps < 1:
        raise ValueError("--steps must be at least 1")
    report = export_artifact(args.artifact, tensorrt=args.tensorrt, fp16=args.fp16, steps=args.steps)
    print(
        json.dumps(
            {
                "onnx": str(report.onnx_path),
                "engine": str(report.engine_path) if report.engine_path else None,
                "ops": report.ops,
                "steps_compared": report.steps_compared,
                "max_abs_frame_difference_vs_torch": report.max_abs_diff,
            },
            indent=2,
        )
    )
    return 0
