"""Does inverting the encoder ensemble improve a good start, or pull it down?

    python bench/bench_teacher_start.py [--data DIR] [--models DIR] [--baseline ARTIFACT]
        [--student ARTIFACT] [--per-tier 3]

The teacher's rows of the loss budget (bench_budget.py has the decoders'), on a few held-out clips
(distinct oracle movies and photographs never shown in training), masked correlation with the true
stimulus in the student's evaluation mask, frames 30 to T - L (the frames every decoder emits):
- the linear baseline's decoding and the student's, the starts on offer;
- member 0 of the ensemble (`cpu` preset, --iterations 100) from gray; from the baseline's decoding
  at the preset's rate and at 1/6 and 1/30 of it (Adam moves every pixel by about the rate per
  iteration, which from a good start is a large step); from gray for 3x as many;
- the 3-member ensemble from gray and from the baseline's decoding at 1/6 of the rate (fixed before
  the run, not picked on these clips);
- the encoder's Poisson loss (member 0, per neuron and frame) of each run's video and of the true
  stimulus: a reconstruction the encoder likes better than the truth while it scores lower against
  the truth says the encoder, not the optimiser, is the limit.
Writes bench/results/bench_teacher_start.json and bench_teacher_start.png (--replot redraws it).
"""

import json
import time
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from bench_teacher import fit_alpha, teacher_arguments
from common import arguments, held_out_trials, picture_path, write_result

from stream_decoder.data import open_mice
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.display.demo import DEMO_ARTIFACT
from stream_decoder.encoder.batches import ClipTensors
from stream_decoder.encoder.checkpoint import load_ensemble
from stream_decoder.metrics import video_correlation
from stream_decoder.paths import cache_dir
from stream_decoder.teacher.commands import student_start
from stream_decoder.teacher.config import MaskConfig, preset
from stream_decoder.teacher.mask import training_mask
from stream_decoder.teacher.reconstruct import ClipBatch, invert, poisson_loss, smooth

SKIP = 30  # leading frames every score leaves out


def scores(videos: np.ndarray, truths: np.ndarray, mask, end: int) -> list[float]:
    """Per clip: masked correlation over frames SKIP..end."""
    return [
        round(video_correlation(v[:end], t[:end], mask, SKIP), 4) for v, t in zip(videos, truths, strict=True)
    ]


@torch.no_grad()
def encoder_loss(encoder, videos: np.ndarray, batch: ClipBatch, mouse: str) -> float:
    """Member's Poisson loss of `videos` against the recorded responses, per neuron and frame."""
    predicted = encoder(torch.as_tensor(videos), batch.behavior, batch.pupil, mouse)
    return round(float(poisson_loss(predicted, batch.recorded)) / batch.recorded.numel(), 5)


def picture(rows: dict, trials: list[str], out: Path, judge: str = "member 0") -> None:
    """Per run: correlation per clip and its mean; beside it, correlation against the `judge`
    encoder's loss, the true stimulus's loss marked."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), layout="constrained", width_ratios=(3, 2))
    names = list(rows)[::-1]
    for i, trial in enumerate(trials):
        left.plot([rows[n]["per_clip"][i] for n in names], names, "o", alpha=0.5, label=f"trial {trial}")
    left.plot([rows[n]["mean"] for n in names], names, "k|", markersize=16, label="mean")
    left.set_xlabel("masked video correlation with the true stimulus")
    left.tick_params(axis="y", labelsize=8)
    left.legend(fontsize=7)
    for name in names:
        right.plot(rows[name]["encoder_loss"], rows[name]["mean"], "o")
        right.annotate(name, (rows[name]["encoder_loss"], rows[name]["mean"]), fontsize=6)
    right.axvline(
        rows["true stimulus"]["encoder_loss"], color="gray", linestyle=":", label="the truth's loss"
    )
    right.set_xlabel(f"{judge}'s Poisson loss per neuron and frame")
    right.set_ylabel("mean correlation")
    right.legend(fontsize=7)
    fig.suptitle("the teacher from gray and from the linear baseline's decoding (held-out clips)", fontsize=9)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = arguments(__doc__, "bench_teacher_start")
    teacher_arguments(parser)
    parser.add_argument(
        "--baseline", type=Path, default=cache_dir() / "artifacts" / "synthetic-demo-n2000-seed0-baseline"
    )
    parser.add_argument("--student", type=Path, default=DEMO_ARTIFACT)
    parser.add_argument("--iterations", type=int, default=100, help="per run; the long run has 3x")
    parser.add_argument(
        "--replot", action="store_true", help="redraw the picture from the last JSON, no runs"
    )
    args = parser.parse_args()
    if args.replot:
        last = json.loads(args.out.read_text())
        picture(last["rows"], last["trials"], picture_path(args.out))
        return

    mice = open_mice(args.data)
    name, mouse = next(iter(mice.items()))
    encoders = [e.requires_grad_(False) for e in load_ensemble([args.models], mice)]
    trials = held_out_trials(mouse, args.per_tier)
    clips = [ClipTensors.from_clip(mouse.clip(t)) for t in trials]
    truths = np.stack([c.video.numpy() for c in clips])
    batch = ClipBatch.of(clips)
    student = load_artifact(args.student)
    eval_mask, end = student.evaluation_mask, truths.shape[1] - student.meta.lookahead
    cfg = preset("cpu", iterations=args.iterations)

    train_mask = training_mask(fit_alpha(encoders, mouse, name, MaskConfig(iterations=args.mask_iterations)))

    starts = {"gray": None, "baseline": student_start(args.baseline, mouse)(clips)}
    rows, runs = {}, {}

    def record(label: str, video: np.ndarray, seconds: float | None = None) -> None:
        per_clip = scores(video, truths, eval_mask, end)
        rows[label] = {"mean": round(float(np.mean(per_clip)), 4), "per_clip": per_clip}
        rows[label] |= {"encoder_loss": encoder_loss(encoders[0], video, batch, name)}
        if seconds is not None:
            rows[label]["seconds_per_clip"] = round(seconds / len(clips), 1)
        print(label, rows[label])

    def run(member: int, start: str, lr_scale: float = 1.0, iterations: int = cfg.iterations):
        """(video, seconds) of one member's inversion, each run once however often it is asked for."""
        key = (member, start, lr_scale, iterations)
        if key not in runs:
            run_cfg = replace(cfg, lr=cfg.lr * lr_scale, iterations=iterations)
            began = time.perf_counter()
            video = invert(
                encoders[member], batch, name, train_mask, run_cfg, starts[start], progress=False
            ).numpy()
            runs[key] = video, time.perf_counter() - began
        return runs[key]

    record("true stimulus", truths)
    record("baseline", starts["baseline"])
    record("baseline, smoothed", smooth(starts["baseline"], cfg.smooth_sigma))
    record("student", student_start(args.student, mouse)(clips))
    for label, key in {
        "member 0 from gray": (0, "gray"),
        "member 0 from baseline, rate x1": (0, "baseline"),
        "member 0 from baseline, rate /6": (0, "baseline", 1 / 6),
        "member 0 from baseline, rate /30": (0, "baseline", 1 / 30),
        f"member 0 from gray, {3 * cfg.iterations} iterations": (0, "gray", 1.0, 3 * cfg.iterations),
    }.items():
        video, seconds = run(*key)
        record(label, smooth(video, cfg.smooth_sigma), seconds)
    for label, start, scale in (
        ("ensemble from gray", "gray", 1.0),
        ("ensemble from baseline, rate /6", "baseline", 1 / 6),
    ):
        record(
            label,
            smooth(np.mean([run(m, start, scale)[0] for m in range(len(encoders))], 0), cfg.smooth_sigma),
        )

    png = picture_path(args.out)
    picture(rows, trials, png)
    result = {
        "data": str(args.data),
        "models": str(args.models),
        "baseline": str(args.baseline),
        "student": str(args.student),
        "mouse": name,
        "members": len(encoders),
        "trials": trials,
        "settings": cfg.to_dict(),
        "eval_pixels": int(eval_mask.sum()),
        "frames_scored": [SKIP, int(end)],
        "rows": rows,
        "picture": png.name,
    }
    write_result("bench_teacher_start", result, args.out)


if __name__ == "__main__":
    main()
