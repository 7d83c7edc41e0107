"""The linear baseline's figures: how many principal components it needs, how it grows with the
number of neurons recorded (the paper's curve rises steeply; is ours flat?), and its fit time.

    python bench/bench_baseline.py --data DATA --mask-from ARTIFACT [--fractions 0.125 0.25 0.5 1]
        [--components 64 128 256 512] [--gaze-gains 0.5]

Each point is a ridge fit on the train tier (penalty chosen on its last 10 clips, as
`stream-decoder baseline`) scored on the held-out groups in the artifact's evaluation mask.
Neuron subsets are drawn at random (seed 0), the same subset at fit and at decoding. Writes
bench/results/bench_baseline.json and bench_baseline.png; with --gaze-gains (the gaze baseline,
`stream-decoder baseline --gaze-gains`), bench_baseline_gaze.json and .png, the neuron sweep
then fitted with and without the correction on the same subsets (`neurons`, `neurons_plain`).
The mask is the artifact's; the mouse is the first under --data.
"""

import argparse
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from common import RESULTS, write_result

from stream_decoder.data import open_mouse
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.baseline import TrialClips
from stream_decoder.decoder.config import RidgeConfig
from stream_decoder.decoder.evaluate import clip_groups, decode_clip
from stream_decoder.decoder.ridge import fit_ridge, settings
from stream_decoder.metrics import video_correlation

GROUPS = ("oracle", "final_test_main", "gaussian_dots", "pink_noise", "drifting_gratings")
TIERS = ("oracle", "live_test_bonus", "final_test_main", "final_test_bonus")


class Subset(Sequence):
    """The clips with only some neurons (columns), as a rig recording fewer of them would give."""

    def __init__(self, clips: TrialClips, neurons: np.ndarray):
        self.clips, self.neurons = clips, neurons

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int):
        activity, behavior4, video = self.clips[index]
        return activity[:, self.neurons], behavior4, video


def score(model, held_out: TrialClips, neurons: np.ndarray, groups: dict, mask) -> dict[str, float]:
    scores = {}
    for group in GROUPS:
        values = []
        for trial in groups.get(group, []):
            activity, behavior4, video = Subset(held_out, neurons)[held_out.trials.index(trial)]
            end = len(video) - model.cfg.lookahead
            decoded = decode_clip(model, activity, behavior4[:, :2], behavior4[:, 2:])
            values.append(video_correlation(decoded[:end], video[:end], mask))
        scores[group] = float(np.nanmean(values)) if values else float("nan")
    return scores


def held_out_setup(data: Path, mask_from: Path):
    """The mask of artifact `mask_from`, the first mouse under `data`, its train clips, its
    held-out groups and their clips: what every fit-and-score bench starts from."""
    mask = load_artifact(mask_from).evaluation_mask
    mouse = open_mouse(data)
    clips = TrialClips(mouse, mouse.trials("train"), multi_plane=False)
    groups = clip_groups(mouse, TIERS)
    held_out = TrialClips(mouse, sorted({t for g in GROUPS for t in groups.get(g, [])}, key=int), False)
    return mask, mouse, clips, groups, held_out


def point(clips, held_out, neurons, cfg, mask, groups) -> dict:
    started = time.perf_counter()
    model, report = fit_ridge(Subset(clips, neurons), cfg, mask, progress=False)
    seconds = time.perf_counter() - started
    result = {"neurons": len(neurons), "components": model.cfg.components, "fit_seconds": seconds}
    result |= {key: report[key] for key in ("penalty", "penalty_at_grid_edge", "gaze_gain")}
    result["groups"] = score(model, held_out, neurons, groups, mask)
    print(result)
    return result


def picture(result: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for ax, sweep, key, label in (
        (axes[0], result["components"], "components", "principal components"),
        (axes[1], result["neurons"], "neurons", "neurons recorded"),
    ):
        xs = [p[key] for p in sweep]
        for color, group in enumerate(GROUPS):
            ax.plot(xs, [p["groups"][group] for p in sweep], "o-", color=f"C{color}", label=group)
            if key == "neurons" and "neurons_plain" in result:
                plain = [p["groups"][group] for p in result["neurons_plain"]]
                ax.plot(xs, plain, "o--", color=f"C{color}", alpha=0.5, label=f"{group}, no gaze correction")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(label)
        ax.set_ylabel("baseline masked video correlation")
        ax.legend(fontsize=7)
    gains = result["ridge"]["gaze_gains"]
    kind = f"gaze baseline (gains {', '.join(map(str, gains))})" if any(gains) else "linear baseline"
    fig.suptitle(f"{kind} on {result['mouse']}", fontsize=9)
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset root")
    parser.add_argument("--mask-from", type=Path, required=True, help="artifact whose evaluation mask to use")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0])
    parser.add_argument("--components", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--gaze-gains", type=float, nargs="+", default=[0.0], help="as baseline --gaze-gains")
    args = parser.parse_args()

    mask, mouse, clips, groups, held_out = held_out_setup(args.data, args.mask_from)
    everyone = np.arange(mouse.n_neurons)
    default = RidgeConfig(gaze_gains=tuple(args.gaze_gains))
    name = "bench_baseline_gaze" if any(args.gaze_gains) else "bench_baseline"
    result = {"mouse": mouse.name, "mask_pixels": int(mask.sum()), "ridge": settings(default)}
    result["components"] = [
        point(clips, held_out, everyone, dataclasses.replace(default, components=c), mask, groups)
        for c in args.components
    ]
    rng = np.random.default_rng(0)
    n = mouse.n_neurons
    subsets = [np.sort(rng.permutation(n)[: round(f * n)]) for f in args.fractions]
    result["neurons"] = [point(clips, held_out, cells, default, mask, groups) for cells in subsets]
    if any(args.gaze_gains):
        plain = RidgeConfig()
        result["neurons_plain"] = [point(clips, held_out, cells, plain, mask, groups) for cells in subsets]
    png = RESULTS / f"{name}.png"
    picture(result, png)
    write_result(name, result | {"picture": png.name})


if __name__ == "__main__":
    main()
