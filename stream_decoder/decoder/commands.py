"""`stream-decoder distill`, `baseline` and `evaluate`: train the streaming student, fit the linear
baseline beside it, and score both (and the teacher) on held-out clips."""

import json
import sys
from dataclasses import fields
from pathlib import Path

from stream_decoder.decoder.config import GAZE_BASELINE, GAZE_GAINS, DistillConfig, RidgeConfig
from stream_decoder.paths import cache_dir

HELP = {
    "lookahead": "L: ticks between the newest activity and the frame decoded (responses lag the stimulus)",
    "latent": "D: width of the per-tick read-in (neurons -> D)",
    "epochs": "passes over the training clips",
    "batch_size": "clips per optimiser step",
    "lr": "peak learning rate of the one-cycle schedule",
    "weight_decay": "AdamW weight decay",
    "truth_weight": "0: teacher targets only; 1: true frames only; in between: a mix",
    "outside_weight": "loss weight of pixels outside the evaluation mask, relative to those inside",
    "neuron_dropout": "fraction of neurons silenced per training clip, so lost ROIs degrade gracefully",
    "synthetic_clips": "training pairs the encoder ensemble (--ensemble) generates: new natural movies and "
    "its predicted responses with each neuron's recorded noise; written with the recorded clips to a "
    "temporary folder in the cache (T x (N + 4 + H x W) x 4 bytes each, refused up front where the disk "
    "has no room) and read from there a batch at a time",
    "multi_plane": "train on the rig's per-plane timing (sample-and-hold), as a multi-plane daemon feeds it",
    "planes": "with --multi-plane on a recording without simulator truth: its imaging planes (neurons "
    "assigned by cell depth); 0: from the simulator truth",
    "volume_rate": "with --planes: volumes per second of the recording",
    "freeze_read_in": "train only the head: the read-in stays as initialised (--read-in-from)",
    "validation_tier": "tier kept out of training and scored after it",
    "seed": "seed of initialisation, shuffling and dropout",
}


RIDGE_HELP = {
    "components": "principal components of the standardised activity the fit uses (the read-in width)",
    "lags": "K: activity at lags 0, s, ..., (K - 1) s ticks",
    "lag_step": "s: ticks between lags",
    "lookahead": "L: ticks between the newest activity and the frame decoded",
    "upsample": "the fitted map is the frame / upsample, bilinearly upsampled (as the student's)",
    "validation_clips": "last training clips held back to choose the penalty (then refitted on all)",
}


def register(sub) -> None:
    register_distill(sub)
    register_baseline(sub)
    register_evaluate(sub)


def _mask_arguments(parser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--mask-from", type=Path, help="use the evaluation mask an artifact recorded")
    where.add_argument("--teacher", type=Path, help="use the alpha mask of a teacher store")


def _mask(args, mouse: str):
    """The (H, W) evaluation mask the options name for `mouse`, or None (every pixel)."""
    from stream_decoder.decoder.artifact import load_artifact
    from stream_decoder.teacher.mask import evaluation_mask
    from stream_decoder.teacher.store import TeacherStore

    if args.mask_from:
        return load_artifact(args.mask_from).evaluation_mask
    if args.teacher:
        store = TeacherStore(args.teacher)
        return evaluation_mask(store.alpha(mouse))
    return None


def register_distill(sub) -> None:
    defaults = DistillConfig()
    parser = sub.add_parser(
        "distill",
        help="distil the teacher into the streaming student (writes a model artifact)",
        description="Train the amortised decoder, fed exactly what the daemon will feed it, towards the "
        "true stimuli of the training trials and/or the teacher store's reconstructions (clips outside "
        "--validation-tier), and write an artifact directory (config, weights, meta). Without --teacher, "
        "--truth-weight must be 1 and --mask-from names where the loss concentrates. "
        "`stream-decoder export` then adds the ONNX graph.",
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="dataset root (Sensorium 2023 mouse folders)"
    )
    parser.add_argument("--teacher", type=Path, help="teacher store from `stream-decoder reconstruct`")
    parser.add_argument("--mask-from", type=Path, help="evaluation mask of this artifact (without --teacher)")
    parser.add_argument("--ensemble", type=Path, help="encoder ensemble generating --synthetic-clips pairs")
    parser.add_argument("--out", type=Path, help="artifact directory (default: <cache>/artifacts/<mouse>)")
    parser.add_argument("--mouse", help="mouse folder name (default: the first under --data)")
    parser.add_argument(
        "--read-in-from",
        type=Path,
        metavar="BASELINE",
        help="start the read-in from a baseline artifact's leading principal components and "
        "normalisation (it needs at least --latent components)",
    )
    parser.add_argument(
        "--residual-of",
        type=Path,
        metavar="BASELINE",
        help="train a correction to this baseline artifact of the mouse: the student starts as the "
        "baseline exactly (its read-in and ridge readout, frozen; its latent is the baseline's, not "
        "--latent) and its nonlinear head learns what to add to the baseline's frames; a gaze "
        "baseline's (baseline --gaze-gains) correction for eye movements is kept, with its gain",
    )
    for field in fields(DistillConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.type is bool or field.type == "bool":
            parser.add_argument(flag, action="store_true", help=HELP[field.name])
        else:
            default = getattr(defaults, field.name)
            parser.add_argument(flag, type=type(default), default=default, help=HELP[field.name])
    parser.set_defaults(func=distill_main)


def distill_main(args) -> int:
    from stream_decoder.decoder.artifact import load_artifact
    from stream_decoder.decoder.distill import distill

    cfg = DistillConfig(**{f.name: getattr(args, f.name) for f in fields(DistillConfig)})
    out = args.out or cache_dir() / "artifacts" / (args.mouse or args.data.resolve().name)
    mask = load_artifact(args.mask_from).evaluation_mask if args.mask_from else None
    artifact = distill(
        args.data,
        args.teacher,
        out,
        cfg,
        args.mouse,
        mask=mask,
        ensemble=args.ensemble,
        read_in=args.read_in_from,
        residual_of=args.residual_of,
    )
    print(
        json.dumps(
            {
                "artifact": str(out),
                "model": artifact.model_id,
                "validation": artifact.meta.provenance.get("validation", {}),
            },
            indent=2,
        )
    )
    return 0


def register_baseline(sub) -> None:
    defaults = RidgeConfig()
    parser = sub.add_parser(
        "baseline",
        help="fit the linear baseline: a ridge decoder on the true stimuli (writes a model artifact)",
        description="Fit a causal ridge decoder in closed form on the training trials' true stimuli: the "
        "frame L ticks back from the activity at K lags (principal components of the standardised "
        "activity), the penalty chosen on the last training clips by masked video correlation. The "
        "artifact serves through `serve` like a student (after `stream-decoder export`): what a lab "
        "would pick instead, on the rig beside it.",
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="dataset root (Sensorium 2023 mouse folders)"
    )
    parser.add_argument("--mouse", help="mouse folder name (default: the first under --data)")
    parser.add_argument(
        "--out", type=Path, help="artifact directory (default: <cache>/artifacts/<mouse>-baseline)"
    )
    _mask_arguments(parser)
    parser.add_argument("--multi-plane", action="store_true", help="fit on the rig's per-plane timing")
    parser.add_argument(
        "--planes",
        type=int,
        help="with --multi-plane on a recording without simulator truth: its imaging planes "
        "(neurons assigned by cell depth; needs --volume-rate)",
    )
    parser.add_argument(
        "--volume-rate", type=float, help="with --planes: volumes per second of the recording"
    )
    parser.add_argument(
        "--gaze-gains",
        type=float,
        nargs="+",
        default=list(defaults.gaze_gains),
        metavar="GAIN",
        help="correct for eye movements: decode the image on the retina and move it back by the eye's "
        "screen shift, GAIN screen px per eye-camera px of pupil movement; the best of the GAINs (0: "
        "no correction) is chosen with the penalty on the held-back clips, e.g. --gaze-gains 0 0.25 "
        "0.5 0.75 1; 0 alone is the plain baseline. A student built on it (distill --residual-of) "
        "keeps the gain",
    )
    for name, help_text in RIDGE_HELP.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, default=getattr(defaults, name), help=help_text)
    parser.set_defaults(func=baseline_main)


def baseline_main(args) -> int:
    from stream_decoder.data import open_mouse
    from stream_decoder.decoder.baseline import fit_baseline

    cfg = RidgeConfig(**{name: getattr(args, name) for name in RIDGE_HELP}, gaze_gains=tuple(args.gaze_gains))
    mouse = open_mouse(args.data, args.mouse).name
    out = args.out or cache_dir() / "artifacts" / f"{mouse}-baseline"
    if (args.planes is None) != (args.volume_rate is None):
        raise ValueError("--planes and --volume-rate go together: the recording's planes and volume rate")
    planes = (args.planes, args.volume_rate) if args.planes is not None else None
    artifact = fit_baseline(
        args.data, out, cfg, _mask(args, mouse), mouse, multi_plane=args.multi_plane, planes=planes
    )
    report = artifact.meta.provenance["baseline"]
    if report["penalty_at_grid_edge"]:
        print(f"baseline: the best penalty {report['penalty']:g} is at the edge of the grid", file=sys.stderr)
    print(
        json.dumps(
            {
                "artifact": str(out),
                "model": artifact.model_id,
                "penalty": report["penalty"],
                "gaze_gain": report["gaze_gain"],
            },
            indent=2,
        )
    )
    return 0


def register_evaluate(sub) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="score a decoder beside the gaze baseline and the teacher on held-out clips",
        description="Masked video correlation and SSIM against the true stimulus, per group of held-out "
        "clips, for the artifact, the strongest simple baseline (the gaze baseline: ridge on the true "
        "stimuli with the eye-shift correction, its gain chosen among "
        f"{' '.join(f'{g:g}' for g in GAZE_GAINS)} as `baseline --gaze-gains` does, fitted into the "
        "cache unless --baseline names one or --no-baseline) and the teacher where --teacher has the "
        "clip, on the same clips, frames and mask (the artifact's recorded evaluation mask, else the "
        "teacher's).",
    )
    parser.add_argument("artifact", type=Path, help="the decoder's artifact directory")
    parser.add_argument("--data", type=Path, required=True, help="dataset root it was trained on")
    parser.add_argument("--teacher", type=Path, help="teacher store with reconstructions of held-out clips")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--baseline", type=Path, help="baseline artifact (default: the gaze baseline, fitted into the cache)"
    )
    which.add_argument("--no-baseline", action="store_true", help="score without a baseline")
    parser.add_argument("--json", type=Path, help="also write the full result here")
    parser.set_defaults(func=evaluate_main)


def evaluate_main(args) -> int:
    from stream_decoder.decoder.artifact import load_artifact
    from stream_decoder.decoder.baseline import ensure_baseline
    from stream_decoder.decoder.evaluate import evaluate

    artifact = load_artifact(args.artifact)
    baseline = args.baseline
    if baseline is None and not args.no_baseline:
        baseline = ensure_baseline(
            args.data,
            artifact.evaluation_mask,
            artifact.meta.provenance.get("mouse"),
            GAZE_BASELINE,
        )
    result = evaluate(args.artifact, args.data, args.teacher, baseline)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(evaluation_table(result))
    return 0


def evaluation_table(result: dict) -> str:
    """One line per clip group: the decoder, the baseline and their ratio, the teacher on its clips."""
    mask = f"{result['mask_pixels']} px ({result['mask_source']})" if result["mask_pixels"] else "every pixel"
    lines = [
        f"{result['kind']} {result['model']} on {result['mouse']}; masked video correlation, mask {mask}",
        f"{'group':22s} {'clips':>5s} {'decoder':>8s} {'baseline':>9s} {'ratio':>6s}  teacher on its clips",
    ]
    for group, row in result["groups"].items():
        baseline = row.get("baseline", float("nan"))
        teacher = ""
        if row["teacher_clips"]:
            decoder = row["student_on_teacher_clips"]
            teacher = f"{row['teacher']:.3f} vs decoder {decoder:.3f} ({row['teacher_clips']} clips)"
        lines.append(
            f"{group:22s} {row['clips']:5d} {row['student']:8.3f} {baseline:9.3f} "
            f"{row['student'] / baseline:6.2f}  {teacher}"
        )
    return "\n".join(lines)
