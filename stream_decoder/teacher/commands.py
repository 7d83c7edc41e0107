"""`stream-decoder reconstruct`: the gradient-based teacher over many clips, into a store."""

import json
from dataclasses import replace
from functools import partial
from pathlib import Path

from stream_decoder.paths import cache_dir
from stream_decoder.teacher.config import PRESETS, MaskConfig, preset

MASK_ITERATIONS = {"published": MaskConfig().iterations, "cpu": 200}


def register(sub) -> None:
    parser = sub.add_parser(
        "reconstruct",
        help="reconstruct clips by inverting the encoder ensemble (the teacher)",
        description="Optimise a gray video per clip until each encoder's predicted responses match the "
        "recorded ones (Bauer, Margrie & Clopath 2026), average the members, smooth. Results go to a "
        "store the distillation reads; clips already there are skipped, so a run resumes. Under "
        "torchrun, clips are sharded across ranks, one GPU per rank where GPUs are visible.",
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="dataset root (Sensorium 2023 mouse folders)"
    )
    parser.add_argument(
        "--models", type=Path, nargs="+", required=True, help="encoder ensemble or member directories"
    )
    parser.add_argument("--tiers", nargs="+", default=["oracle"], help="tiers whose clips to reconstruct")
    parser.add_argument(
        "--out", type=Path, help="store directory (default: <cache>/teacher/<name of --data>-<preset>)"
    )
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="cpu", help="published settings or the CPU-shaped ones"
    )
    parser.add_argument("--iterations", type=int, help="override the preset's iteration count")
    parser.add_argument(
        "--mask-iterations", type=int, help="alpha-mask iterations (default: 1000 published, 200 cpu)"
    )
    parser.add_argument("--no-mask", action="store_true", help="reconstruct and evaluate every pixel")
    parser.add_argument("--no-smooth", action="store_true", help="skip the final 3D gaussian filter")
    parser.add_argument("--neuron-fraction", type=float, default=1.0, help="fraction of neurons in the loss")
    parser.add_argument("--batch-size", type=int, default=1, help="clips reconstructed together")
    parser.add_argument("--limit", type=int, help="at most this many clips per mouse")
    parser.add_argument(
        "--warm-start",
        type=Path,
        help="student or baseline artifact: start each clip from its decoding instead of gray (on the demo "
        "mouse inversion pulls a baseline start down: bench/bench_teacher_start.py)",
    )
    parser.add_argument(
        "--device",
        help="cpu or cuda (default: cuda when a GPU is visible); under torchrun each rank takes its own GPU",
    )
    parser.set_defaults(func=main)


def main(args) -> int:
    from stream_decoder.teacher.job import Job, WarmStart, run

    if args.batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    teacher = preset(args.preset, neuron_fraction=args.neuron_fraction)
    if args.iterations is not None:
        try:
            teacher = replace(teacher, iterations=args.iterations)
        except ValueError as exc:
            raise ValueError(f"--iterations {args.iterations}: {exc}") from None
    if args.no_smooth:
        teacher = replace(teacher, smooth_sigma=0.0)
    mask = (
        None if args.no_mask else MaskConfig(iterations=args.mask_iterations or MASK_ITERATIONS[args.preset])
    )
    out = args.out or cache_dir() / "teacher" / f"{args.data.resolve().name}-{args.preset}"
    warm_start = (
        WarmStart(args.warm_start, partial(student_start, args.warm_start)) if args.warm_start else None
    )
    job = Job(
        args.data,
        tuple(args.models),
        out,
        tuple(args.tiers),
        teacher,
        mask,
        batch_size=args.batch_size,
        limit=args.limit,
        warm_start=warm_start,
        device=args.device,
    )
    store = run(job)
    print(json.dumps({"store": str(out), "mice": store.summary()}, indent=2))
    return 0


def student_start(artifact: Path, mouse):
    """Starting videos decoded by a student or baseline artifact, the teacher's warm start: (B, T, H, W).

    The student sees each clip as it was distilled to (single- or multi-plane timing) and leaves the
    last L frames, which it never decodes, gray. Here, in the composition layer, because the teacher
    stage comes before the decoder and imports nothing from it.
    """
    import numpy as np

    from stream_decoder.data import student_inputs
    from stream_decoder.decoder.artifact import load_artifact
    from stream_decoder.decoder.evaluate import decode_clip

    loaded = load_artifact(artifact)
    if loaded.meta.data_fingerprint != mouse.fingerprint():
        raise ValueError(f"{artifact}: the student was distilled on other data than {mouse.path}")
    student = loaded.model()
    timing = loaded.timing(mouse)

    def start(clips) -> np.ndarray:
        return np.stack([decode_clip(student, *student_inputs(mouse, c.trial, timing)[:3]) for c in clips])

    return start
