"""Same-session calibration on a mouse no bundled model has seen: fidelity against calibration
minutes, beside the same decoder fitted offline on the dataset's training clips.

    python bench/bench_calibrate.py [--data <cache>/data/demo-seed1] [--minutes 2 5 10 20]

The mouse is the demo preset's at another seed (simulated into the cache the first time). Its
virtual rig watches fresh natural movies of the training photographs for the longest block, each
frame published to the calibrator as to the screen (rig.calibrate.rehearse: the rig's own
messages and timing, as fast as it computes); the gaze baseline is fitted on the first 2, 5, 10,
20 minutes of it (rig.calibrate.fit_block, its fit timed). Each model, and the gaze baseline
fitted offline on the dataset's 64 training clips (its recorded responses, about 11 minutes), is
scored on the dataset's held-out clips in their own 3-plane timing, in the bundled model's
276-px evaluation mask: masked video correlation with the true stimulus, first 30 frames skipped.
"""

import json
import time
from pathlib import Path

import numpy as np
from common import arguments, picture_path, write_result
from tqdm import tqdm

from stream_decoder.data import CLIP_FRAMES, FRAME_RATE_HZ, open_mouse, student_inputs
from stream_decoder.data.simulate import simulate
from stream_decoder.data.stimuli import TRAINING_PHOTOGRAPHS, natural_movie
from stream_decoder.decoder.artifact import Artifact, load_artifact
from stream_decoder.decoder.baseline import fit_baseline
from stream_decoder.decoder.config import GAZE_BASELINE
from stream_decoder.decoder.evaluate import clip_groups, decode_clip
from stream_decoder.display.demo import DEMO_ARTIFACT
from stream_decoder.metrics import video_correlation
from stream_decoder.paths import cache_dir
from stream_decoder.rig.calibrate import fit_block, rehearse

GROUPS = ("oracle", "held_out_photographs")
SEED = 1  # the bundled models were fitted on seed 0's mouse


def scores(artifact: Artifact, mouse, groups: dict) -> dict:
    """Mean masked correlation per clip group, decoded in the mouse's own timing."""
    decoder, timing = artifact.model(), artifact.timing(mouse)
    end = CLIP_FRAMES - artifact.meta.lookahead
    out = {}
    for group in GROUPS:
        values = []
        for trial in groups[group]:
            activity, behavior, pupil, video = student_inputs(mouse, trial, timing)
            recon = decode_clip(decoder, activity, behavior, pupil)
            values.append(video_correlation(recon[:end], video[:end], artifact.evaluation_mask))
        out[group] = float(np.mean(values))
    return out


def plot(path: Path, minutes: list, calibrated: list, offline: dict) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for group, colour in zip(GROUPS, ("tab:blue", "tab:orange"), strict=True):
        label = group.replace("_", " ")
        ax.plot(
            minutes,
            [c["scores"][group] for c in calibrated],
            "o-",
            color=colour,
            label=f"calibrated, {label}",
        )
        ax.axhline(
            offline["scores"][group], color=colour, ls="--", label=f"offline on training clips, {label}"
        )
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(minutes, [str(m) for m in minutes])
    ax.set_xlabel("calibration block, minutes")
    ax.set_ylabel("masked correlation, held-out clips")
    ax.set_title("gaze baseline fitted on the day's block")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = arguments(
        __doc__,
        "bench_calibrate",
        data=cache_dir() / "data" / f"demo-seed{SEED}",
        data_help="the mouse no bundled model has seen",
    )
    p.add_argument("--minutes", type=float, nargs="+", default=[2, 5, 10, 20])
    p.add_argument("--rig-seed", type=int, default=7, help="the virtual rig's behaviour and noise seed")
    p.add_argument("--plot-only", action="store_true", help="redraw the picture from the last results")
    args = p.parse_args()
    if args.plot_only:
        last = json.loads(args.out.read_text())
        minutes = [c["minutes"] for c in last["calibrated"]]
        plot(picture_path(args.out), minutes, last["calibrated"], last["offline"])
        return
    if not args.data.is_dir():
        simulate("demo", SEED, args.data, progress=True)
    mouse = open_mouse(args.data)
    mask = load_artifact(DEMO_ARTIFACT).evaluation_mask
    groups = clip_groups(mouse, ("oracle", "final_test_main"))
    work = cache_dir() / "calibrate"
    started = time.perf_counter()
    offline = fit_baseline(args.data, work / "offline", GAZE_BASELINE, mask, multi_plane=True, progress=False)
    offline_fit_s = time.perf_counter() - started
    ticks = int(max(args.minutes) * 60 * FRAME_RATE_HZ)
    movie, _ = natural_movie(np.random.default_rng(args.rig_seed), ticks, TRAINING_PHOTOGRAPHS)
    with tqdm(total=ticks, desc="calibration block", unit="tick") as bar:
        calibrator = rehearse(mouse, movie, seed=args.rig_seed, bar=bar)
    del movie
    calibrated = []
    for minutes in args.minutes:
        block = calibrator.block(minutes * 60)
        started = time.perf_counter()
        artifact = fit_block(block, mouse, work / f"calibrated-{minutes:g}min", mask=mask)
        fit_s = time.perf_counter() - started
        calibrated.append(
            {
                "minutes": minutes,
                "clips": len(block.clips),
                "fit_s": fit_s,
                "gaze_gain": artifact.meta.provenance["baseline"]["gaze_gain"],
                "input_timing": artifact.meta.provenance["input_timing"],
                "scores": scores(artifact, mouse, groups),
            }
        )
        print(calibrated[-1])
    reference = {
        "minutes": len(mouse.trials("train")) * CLIP_FRAMES / FRAME_RATE_HZ / 60,
        "fit_s": offline_fit_s,
        "gaze_gain": offline.meta.provenance["baseline"]["gaze_gain"],
        "scores": scores(offline, mouse, groups),
    }
    print(f"offline: {reference}")
    picture = picture_path(args.out)
    plot(picture, args.minutes, calibrated, reference)
    write_result(
        "bench_calibrate",
        {
            "mouse": mouse.name,
            "neurons": mouse.n_neurons,
            "rig_seed": args.rig_seed,
            "mask_pixels": int(mask.sum()),
            "held_out_clips": {group: len(groups[group]) for group in GROUPS},
            "calibration": calibrator.stats.to_dict(),
            "calibrated": calibrated,
            "offline": reference,
            "picture": picture.name,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
