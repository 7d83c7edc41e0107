"""What gradient inversion reaches with a perfect encoder, next to the trained one and the gaze baseline.

    python bench/bench_teacher_ceiling.py [--data DIR] [--simulator DIR] [--models DIR]
        [--baseline ARTIFACT] [--per-tier 3]

The perfect encoder is the mouse's own encoding (`stream-decoder simulator-encoder`): the simulator's
filters, eye shift, normalisation and nonlinearity, with a readout fitted to the recorded responses;
it lacks only what no encoder can know (retinal noise, hidden behavioural gains, spikes). Each
encoder (it, and member 0 of the trained ensemble) is inverted
- from gray for 300 iterations at the `cpu` preset's rate, and
- from the gaze baseline's decoding for 100 iterations at 1/20 of it (Adam moves every pixel by about
  the rate per iteration: from a good start the preset's rate is a large step),
every pixel free (no alpha mask: the mask is part of what is measured, not assumed). Each run's
smoothing (a 3D gaussian of sd 0, 0.5, 1, 1.5 or 2) is chosen on 2 training clips, then applied to
held-out clips (distinct oracle movies and held-out photographs); the baseline gets its own choice
the same way (on training clips it decodes in-sample). Scored as bench_teacher_start.py scores:
masked correlation with the true stimulus in the bundled student's mask, frames 30 to T - L; beside
it the perfect encoder's Poisson loss of each video (a video it likes better than the truth while
scoring lower against the truth is fitting the recording's noise).
Writes bench/results/bench_teacher_ceiling.json and bench_teacher_ceiling.png.
"""

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from bench_teacher_start import encoder_loss, picture, scores
from common import arguments, held_out_trials, picture_path, write_result

from stream_decoder.data import open_mice
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.display.demo import DEMO_ARTIFACT
from stream_decoder.encoder.batches import ClipTensors
from stream_decoder.encoder.checkpoint import load_ensemble
from stream_decoder.paths import cache_dir
from stream_decoder.teacher.commands import student_start
from stream_decoder.teacher.config import preset
from stream_decoder.teacher.reconstruct import ClipBatch, invert, smooth

SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0)
SELECTION_CLIPS = 2  # training clips each run's smoothing is chosen on
RUNS = {"from gray": ("gray", 300, 1.0), "from the baseline": ("baseline", 100, 1 / 20)}


class Clips:
    """A set of clips with what every run needs: the batch, the truths and the baseline's start."""

    def __init__(self, mouse, trials: list[str], baseline: Path):
        clips = [ClipTensors.from_clip(mouse.clip(t)) for t in trials]
        self.trials = trials
        self.batch = ClipBatch.of(clips)
        self.truths = np.stack([c.video.numpy() for c in clips])
        self.starts = {"gray": None, "baseline": student_start(baseline, mouse)(clips)}


def best_sigma(video: np.ndarray, clips: Clips, mask, end: int) -> float:
    """The smoothing whose mean score on `clips` is highest."""
    return max(SIGMAS, key=lambda s: np.mean(scores(smooth(video, s), clips.truths, mask, end)))


def main() -> None:
    parser = arguments(__doc__, "bench_teacher_ceiling", data=cache_dir() / "data" / "demo")
    parser.add_argument("--simulator", type=Path, default=cache_dir() / "encoders" / "demo-simulator")
    parser.add_argument("--models", type=Path, default=cache_dir() / "encoders" / "demo")
    parser.add_argument("--baseline", type=Path, default=cache_dir() / "artifacts" / "demo-gaze-baseline")
    parser.add_argument("--student", type=Path, default=DEMO_ARTIFACT, help="whose mask and lookahead score")
    parser.add_argument("--per-tier", type=int, default=3, help="distinct movies per held-out tier")
    args = parser.parse_args()
    if not args.simulator.is_dir():
        raise SystemExit(f"{args.simulator}: no simulator member; run stream-decoder simulator-encoder first")

    mice = open_mice(args.data)
    name, mouse = next(iter(mice.items()))
    encoders = {
        "perfect encoder": load_ensemble(args.simulator, mice)[0].requires_grad_(False),
        "trained member 0": load_ensemble(args.models, mice)[0].requires_grad_(False),
    }
    judge = encoders["perfect encoder"]
    held_out = Clips(mouse, held_out_trials(mouse, args.per_tier), args.baseline)
    selection = Clips(mouse, mouse.trials("train")[:SELECTION_CLIPS], args.baseline)
    student = load_artifact(args.student)
    mask, end = student.evaluation_mask, held_out.truths.shape[1] - student.meta.lookahead
    cfg = preset("cpu")

    rows = {}

    def record(label: str, videos: dict[str, np.ndarray], seconds: float | None = None) -> None:
        """A run's held-out scores at the smoothing chosen on the selection clips."""
        sigma = best_sigma(videos["selection"], selection, mask, end)
        video = smooth(videos["held_out"], sigma)
        per_clip = scores(video, held_out.truths, mask, end)
        rows[label] = {"mean": round(float(np.mean(per_clip)), 4), "per_clip": per_clip, "sigma": sigma}
        rows[label]["by_sigma"] = {
            str(s): round(
                float(np.mean(scores(smooth(videos["held_out"], s), held_out.truths, mask, end))), 4
            )
            for s in SIGMAS
        }
        rows[label]["encoder_loss"] = encoder_loss(judge, video, held_out.batch, name)
        if seconds is not None:
            rows[label]["seconds_per_clip"] = round(seconds, 1)
        print(label, rows[label], flush=True)

    rows["true stimulus"] = {
        "mean": 1.0,
        "per_clip": [1.0] * len(held_out.trials),
        "encoder_loss": encoder_loss(judge, held_out.truths, held_out.batch, name),
    }
    record(
        "gaze baseline", {"selection": selection.starts["baseline"], "held_out": held_out.starts["baseline"]}
    )
    for encoder_name, encoder in encoders.items():
        for run_name, (start, iterations, lr_scale) in RUNS.items():
            run_cfg = replace(cfg, iterations=iterations, lr=cfg.lr * lr_scale)
            videos, seconds = {}, 0.0
            for part, clips in (("selection", selection), ("held_out", held_out)):
                began = time.perf_counter()
                videos[part] = invert(
                    encoder, clips.batch, name, None, run_cfg, clips.starts[start], False
                ).numpy()
                seconds = (time.perf_counter() - began) / len(clips.trials)
            record(f"{encoder_name} {run_name}", videos, seconds)

    png = picture_path(args.out)
    picture(rows, held_out.trials, png, judge="the perfect encoder")
    result = {
        "data": str(args.data),
        "simulator": str(args.simulator),
        "models": str(args.models),
        "baseline": str(args.baseline),
        "student": str(args.student),
        "mouse": name,
        "trials": held_out.trials,
        "selection_trials": selection.trials,
        "runs": {label: {"start": s, "iterations": i, "lr": cfg.lr * k} for label, (s, i, k) in RUNS.items()},
        "settings": cfg.to_dict(),
        "eval_pixels": int(mask.sum()),
        "frames_scored": [30, int(end)],
        "rows": rows,
        "picture": png.name,
    }
    write_result("bench_teacher_ceiling", result, args.out)


if __name__ == "__main__":
    main()
