"""The teacher on held-out demo clips: quality against the true stimulus, and what it costs.

    python bench/bench_teacher.py [--data DIR] [--models DIR] [--iterations 100] [--out STORE]

On a few held-out clips (distinct oracle movies and movies of photographs never shown in
training), with the `cpu` preset, masked video correlation (first 30 frames skipped) with the truth:
- each ensemble member alone and the ensemble average, each with and without the 3D smoothing;
- one member (member 0) with 100 / 50 / 25 / 12.5 % of neurons in the loss, and without the mask
  (the paper's neuron curve on real data, with its 7-member ensemble: 0.569 / 0.512 / 0.427 / 0.344);
- the published settings, cut to the same iteration count, against the `cpu` preset on one clip
  (their full 1,000 iterations take ~27 min per clip and member here), with seconds per iteration;
- seconds per clip per member, and per iteration as more clips are batched together.
The ensemble's reconstructions go to a teacher store (--out), which bench_fidelity.py compares the
student against. Writes bench/results/bench_teacher.json and bench_teacher.png.
"""

import argparse
import time
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from common import RESULTS, arguments, held_out_trials, write_result

from stream_decoder.data import open_mice
from stream_decoder.encoder.batches import ClipTensors
from stream_decoder.encoder.checkpoint import load_ensemble
from stream_decoder.metrics import mean_video_correlation
from stream_decoder.paths import cache_dir
from stream_decoder.teacher.config import preset
from stream_decoder.teacher.job import clip_metrics, manifest
from stream_decoder.teacher.mask import MaskConfig, evaluation_mask, train_alpha_mask, training_mask
from stream_decoder.teacher.reconstruct import ClipBatch, invert, smooth
from stream_decoder.teacher.store import TeacherStore

FRACTIONS = (1.0, 0.5, 0.25, 0.125)
PAPER_FRACTIONS = {"1.0": 0.569, "0.5": 0.512, "0.25": 0.427, "0.125": 0.344}
BATCH_SIZES = (1, 2, 4, 6)


def teacher_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every teacher bench takes: dataset, ensemble, held-out clips, alpha-mask length."""
    parser.add_argument("--data", type=Path, default=cache_dir() / "data" / "demo", help="dataset root")
    parser.add_argument("--models", type=Path, default=cache_dir() / "encoders" / "demo")
    parser.add_argument(
        "--per-tier", type=int, default=3, help="distinct movies from oracle and final_test_main"
    )
    parser.add_argument("--mask-iterations", type=int, default=200)


def fit_alpha(encoders, mouse, name: str, cfg: MaskConfig) -> np.ndarray:
    """The alpha mask fitted on the mouse's first 8 training clips, its time printed."""
    started = time.perf_counter()
    train = [ClipTensors.from_clip(mouse.clip(t)) for t in mouse.trials("train")[:8]]
    alpha = train_alpha_mask(encoders, train, name, cfg)
    print(f"alpha mask: {time.perf_counter() - started:.0f} s")
    return alpha


def timed_invert(encoder, batch, name, mask, cfg) -> tuple[np.ndarray, float]:
    """(B, T, H, W) unsmoothed reconstruction and the seconds it took per clip."""
    started = time.perf_counter()
    video = invert(encoder, batch, name, mask, cfg, progress=False).numpy()
    return video, (time.perf_counter() - started) / len(video)


def correlation(videos: np.ndarray, truths: np.ndarray, mask) -> float:
    return round(mean_video_correlation(videos, truths, mask), 4)


def batching(encoder, clips, name, iterations: int) -> dict[str, float]:
    """Seconds per clip per iteration with 1, 2, 4, 6 clips inverted together (after one warm-up)."""
    cfg = preset("cpu", iterations=iterations, warmup=1)  # timing only: the rate schedule does not matter
    seconds = {}
    for size in BATCH_SIZES:
        batch = ClipBatch.of([clips[i % len(clips)] for i in range(size)])
        invert(encoder, batch, name, None, replace(cfg, iterations=1), progress=False)
        _, per_clip = timed_invert(encoder, batch, name, None, cfg)
        seconds[str(size)] = round(per_clip / iterations, 4)
        print(f"batch {size}: {seconds[str(size)]:.3f} s per clip per iteration")
    return seconds


def picture(result: dict, examples: dict, out: Path) -> None:
    fig = plt.figure(figsize=(12, 7))
    ax = fig.add_subplot(2, 3, 1)
    q = result["quality"]
    bars = {f"member {i}": v for i, v in enumerate(q["members"])} | {"ensemble": q["ensemble"]}
    ax.bar(list(bars), list(bars.values()), color=["C0"] * len(q["members"]) + ["C1"])
    ax.bar(
        list(bars),
        [q["members_unsmoothed"][i] for i in range(len(q["members"]))] + [q["ensemble_unsmoothed"]],
        fill=False,
        edgecolor="k",
        linestyle="--",
        label="unsmoothed",
    )
    ax.set_ylabel("masked video correlation")
    ax.legend(fontsize=7)
    ax.set_title("single members vs ensemble", fontsize=9)
    ax = fig.add_subplot(2, 3, 2)
    fractions = [float(f) for f in q["neuron_fraction"]]
    ax.plot([100 * f for f in fractions], list(q["neuron_fraction"].values()), "o-", label="ours (member 0)")
    ax.plot(
        [100 * float(f) for f in PAPER_FRACTIONS],
        list(PAPER_FRACTIONS.values()),
        "s--",
        label="paper (real, 7 members)",
    )
    ax.axhline(q["no_mask"], color="gray", linestyle=":", label="member 0, no mask")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("% of neurons in the loss")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(2, 3, 3)
    sizes = list(result["cost"]["seconds_per_clip_iteration_by_batch"])
    ax.plot(
        [int(s) for s in sizes], list(result["cost"]["seconds_per_clip_iteration_by_batch"].values()), "o-"
    )
    ax.set_xlabel("clips batched together")
    ax.set_ylabel("s per clip per iteration")
    for row, name in enumerate(("truth", "ensemble", "member 0")):
        for col, t in enumerate(examples["frames"]):
            ax = fig.add_subplot(6, len(examples["frames"]), (3 + row) * len(examples["frames"]) + col + 1)
            ax.imshow(examples[name][t], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=7)
    fig.suptitle(
        f"teacher ({result['settings']['iterations']} it, cpu preset), trial {examples['trial']}", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = arguments(__doc__)
    teacher_arguments(parser)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--out", type=Path, default=cache_dir() / "teacher" / "demo-heldout")
    args = parser.parse_args()

    mice = open_mice(args.data)
    name, mouse = next(iter(mice.items()))
    encoders = [e.requires_grad_(False) for e in load_ensemble([args.models], mice)]
    trials = held_out_trials(mouse, args.per_tier)
    clips = [ClipTensors.from_clip(mouse.clip(t)) for t in trials]
    truths = np.stack([c.video.numpy() for c in clips])
    batch = ClipBatch.of(clips)
    cfg = preset("cpu", iterations=args.iterations)
    mask_cfg = MaskConfig(iterations=args.mask_iterations)

    store = TeacherStore(args.out)
    store.begin(manifest(cfg, mask_cfg, [args.models], mice))
    alpha = store.alpha(name)
    if alpha is None:
        alpha = fit_alpha(encoders, mouse, name, mask_cfg)
        store.save_alpha(name, alpha)
    train_mask, eval_mask = training_mask(alpha), evaluation_mask(alpha)

    members, seconds = zip(*(timed_invert(e, batch, name, train_mask, cfg) for e in encoders), strict=True)
    members = np.stack(members)
    ensemble = smooth(members.mean(0), cfg.smooth_sigma)
    for i, (clip, video) in enumerate(zip(clips, ensemble, strict=True)):
        store.save(
            name, clip.trial, video, clip_metrics(video, truths[i], eval_mask) | {"seconds": sum(seconds)}
        )
    smoothed = [smooth(m, cfg.smooth_sigma) for m in members]
    quality = {
        "members": [correlation(m, truths, eval_mask) for m in smoothed],
        "members_unsmoothed": [correlation(m, truths, eval_mask) for m in members],
        "ensemble": correlation(ensemble, truths, eval_mask),
        "ensemble_unsmoothed": correlation(members.mean(0), truths, eval_mask),
        "ensemble_per_clip": dict(
            zip(
                trials,
                (correlation(v[None], t[None], eval_mask) for v, t in zip(ensemble, truths, strict=True)),
                strict=True,
            )
        ),
    }
    quality["neuron_fraction"] = {"1.0": quality["members"][0]}
    print(f"members {quality['members']}, ensemble {quality['ensemble']}")
    for fraction in FRACTIONS[1:]:
        video, _ = timed_invert(encoders[0], batch, name, train_mask, replace(cfg, neuron_fraction=fraction))
        quality["neuron_fraction"][str(fraction)] = correlation(
            smooth(video, cfg.smooth_sigma), truths, eval_mask
        )
        print(f"{fraction:.3f} of neurons: {quality['neuron_fraction'][str(fraction)]}")
    no_mask, _ = timed_invert(encoders[0], batch, name, None, cfg)
    quality["no_mask"] = correlation(smooth(no_mask, cfg.smooth_sigma), truths, eval_mask)
    quality["no_mask_scored_everywhere"] = correlation(smooth(no_mask, cfg.smooth_sigma), truths, None)
    quality["mask_scored_everywhere"] = correlation(smoothed[0], truths, None)
    print(f"no mask: {quality['no_mask']}")

    one = ClipBatch.of(clips[:1])
    published_cfg = preset("published", iterations=args.iterations)
    published, published_s = timed_invert(encoders[0], one, name, train_mask, published_cfg)
    published_vs_cpu = {
        "trial": trials[0],
        "member": 0,
        "iterations": args.iterations,
        "published": correlation(smooth(published, cfg.smooth_sigma), truths[:1], eval_mask),
        "cpu": correlation(smoothed[0][:1], truths[:1], eval_mask),
        "published_seconds_per_iteration": round(published_s / args.iterations, 3),
        "published_full_seconds_per_clip_per_member": round(published_s / args.iterations * 1000, 1),
    }
    print(f"published vs cpu: {published_vs_cpu}")

    result = {
        "data": str(args.data),
        "models": str(args.models),
        "mouse": name,
        "members": len(encoders),
        "trials": trials,
        "settings": cfg.to_dict(),
        "mask": mask_cfg.to_dict() | {"eval_pixels": int(eval_mask.sum()) if eval_mask is not None else None},
        "quality": quality,
        "published_vs_cpu": published_vs_cpu,
        "cost": {
            "seconds_per_clip_per_member": round(float(np.mean(seconds)), 2),
            "seconds_per_clip_ensemble": round(float(np.sum(seconds)), 2),
            "batch_size": len(clips),
            "threads": torch.get_num_threads(),
            "seconds_per_clip_iteration_by_batch": batching(encoders[0], clips, name, iterations=5),
        },
        "store": str(args.out),
    }
    examples = {
        "trial": trials[0],
        "frames": [60, 120, 180, 240],
        "truth": truths[0],
        "ensemble": ensemble[0],
        "member 0": smoothed[0][0],
    }
    png = RESULTS / "bench_teacher.png"
    picture(result, examples, png)
    write_result("bench_teacher", result | {"picture": png.name})


if __name__ == "__main__":
    main()
