"""Where the decoders lose fidelity: a loss budget from the screen to the reconstruction.

    python bench/bench_budget.py --data DATA --mask-from ARTIFACT [--data-8000 DATA]
        [--noisier DATA] [--more-data DATA] [--student ARTIFACT ...] [--previous JSON]

Every row is the masked video correlation on the same held-out clips, frames and mask (the
artifact's evaluation mask), per group:

- output map: the true stimulus through the coarse map every decoder here emits (least squares,
  bilinearly upsampled): no decoder of this shape can score higher;
- ridge, linear filter outputs: the baseline fitted on every neuron's filter outputs (its Gabor
  through its temporal kernel, and a complex cell's quadrature Gabor) before any rectification,
  normalisation or noise: what the encoding's filters keep, for a linear read-out;
- ridge, noise-free rates: the linear baseline fitted and decoded on the simulator's noise-free
  firing rates (no spikes, gain noise or calcium): what the encoding itself lets a linear read-out
  recover;
- ridge, recorded: the baseline as `stream-decoder baseline` fits it; and on half the training
  clips (how much more recorded data would buy);
- with --data-8000 (the same mouse and clips simulated with 8,000 neurons: `stream-decoder simulate
  --preset demo --neurons 8000`): both ridge rows again, and ridge at 12.5-50 % of the 8,000
  neurons, on the recorded responses and on the noise-free rates (the paper's neuron curve; a
  flat noise-free curve says the population's signal, not its noise, is redundant);
- with --noisier (that mouse imaged with more noise: `... --imaging-noise 0.4`, four times the
  default): ridge at 12.5-100 % of its neurons; every neuron-curve row carries the mouse's repeat
  reliability;
- with --more-data (the same neurons recorded for more trials: `stream-decoder simulate --preset
  mouse --neurons 2000`, 480 training clips): ridge on as many training clips as the demo mouse
  has and on all of them, scored on that dataset's held-out clips;
- each --student artifact, on the clips of its own dataset.

The gaps between rows split the loss: map resolution, encoding, noise, neuron count, training data,
decoder. Writes bench/results/bench_budget.json and bench_budget.png.
"""

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from common import (
    GROUPS,
    REQUIRED,
    TIERS,
    arguments,
    carried,
    fit_and_score,
    picture_path,
    score,
    write_result,
)

from stream_decoder.data import held_responses, load_truth, open_mouse
from stream_decoder.data.reliability import repeat_reliability
from stream_decoder.data.simulate import rebuild_mouse, trial_filter_outputs
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.baseline import TrialClips
from stream_decoder.decoder.config import RidgeConfig
from stream_decoder.decoder.evaluate import clip_groups
from stream_decoder.decoder.linear import LinearConfig, LinearDecoder
from stream_decoder.decoder.ridge import coarse_projection
from stream_decoder.metrics import video_correlation

FRACTIONS = (0.125, 0.25, 0.5, 1.0)


class RateClips(TrialClips):
    """The trials with the simulator's noise-free rates in place of the recorded responses."""

    def __init__(self, mouse, trials, multi_plane: bool = False):
        super().__init__(mouse, trials, multi_plane)
        self.rates = load_truth(mouse.path).path / "rates"

    def __getitem__(self, index: int):
        activity, behavior4, video = super().__getitem__(index)
        rates = np.load(self.rates / f"{self.trials[index]}.npy")[: len(activity)]
        return held_responses(rates, self.timing), behavior4, video


class FilterClips(TrialClips):
    """The trials with every neuron's linear filter outputs (and each complex cell's quadrature
    one) in place of the recorded responses: the encoding before its nonlinearities and noise."""

    def __init__(self, mouse, trials):
        super().__init__(mouse, trials, False)
        self.simulated, self.truth = rebuild_mouse(mouse.path)

    def __getitem__(self, index: int):
        activity, behavior4, video = super().__getitem__(index)
        outputs = trial_filter_outputs(self.simulated, self.truth, self.trials[index])
        return outputs[: len(activity)], behavior4, video


@dataclasses.dataclass
class Mouse:
    """One dataset's training and held-out clips, recorded and noise-free."""

    name: str
    n_neurons: int
    groups: dict
    train: TrialClips
    held_out: TrialClips
    train_rates: RateClips
    held_out_rates: RateClips
    reliability: float  # mean over neurons of the repeat reliability (data/reliability.py)
    imaging_noise: float  # median noise sd of one imaging sample, dF/F (simulate --imaging-noise)

    @classmethod
    def open(cls, data: Path, name: str | None = None) -> "Mouse":
        mouse = open_mouse(data, name)
        groups = clip_groups(mouse, TIERS)
        train = mouse.trials("train")
        held = sorted({t for g in GROUPS for t in groups.get(g, [])}, key=int)
        return cls(
            mouse.name,
            mouse.n_neurons,
            groups,
            TrialClips(mouse, train, False),
            TrialClips(mouse, held, False),
            RateClips(mouse, train),
            RateClips(mouse, held),
            float(np.nanmean(repeat_reliability(mouse))),
            load_truth(mouse.path).simulation["config"]["imaging"]["noise_dff"][0],
        )


def output_map(mouse: Mouse, mask, lookahead: int) -> dict[str, float]:
    """Each held-out stimulus through the coarse map's least-squares projection and upsampling."""
    frame_shape = mouse.held_out[0][2].shape[1:]
    model = LinearDecoder(LinearConfig(1, 1, lookahead=lookahead, frame_shape=frame_shape))
    to_coarse = coarse_projection(model)
    scores = {}
    for group in GROUPS:
        values = []
        for trial in mouse.groups.get(group, []):
            video = mouse.held_out[mouse.held_out.trials.index(trial)][2].astype(np.float32)
            coarse = torch.from_numpy(video).flatten(1) @ to_coarse.T
            through = model.upsampled(coarse.clamp(0, 255)).numpy()
            end = len(video) - lookahead
            values.append(video_correlation(through[:end], video[:end], mask))
        scores[group] = float(np.nanmean(values)) if values else float("nan")
    return scores


def ridge_rows(mouse: Mouse, mask, label: str) -> list[dict]:
    """Ridge on noise-free rates, on the recorded responses, and on half the training clips."""
    everyone = np.arange(mouse.n_neurons)
    cfg = RidgeConfig()
    half = TrialClips(mouse.train.mouse, mouse.train.trials[: len(mouse.train) // 2], False)
    rows = []
    for name, train, held in (
        ("ridge, noise-free rates", mouse.train_rates, mouse.held_out_rates),
        ("ridge, recorded", mouse.train, mouse.held_out),
        (f"ridge, recorded, {len(half)} training clips", half, mouse.held_out),
    ):
        print(f"{label}: {name}")
        found = fit_and_score(train, held, everyone, cfg, mask, mouse.groups)
        rows.append({"row": name, "mouse": mouse.name} | found)
    return rows


def filter_row(mouse: Mouse, mask) -> dict:
    """Ridge on the neurons' linear filter outputs: what a linear read-out could recover if the
    neurons passed on their filters' outputs whole (signed, phase kept, noise-free)."""
    train = FilterClips(mouse.train.mouse, mouse.train.trials)
    held = FilterClips(mouse.held_out.mouse, mouse.held_out.trials)
    print(f"{mouse.name}: ridge on the linear filter outputs")
    found = fit_and_score(train, held, np.arange(train[0][0].shape[1]), RidgeConfig(), mask, mouse.groups)
    return {"row": "ridge, linear filter outputs (noise-free)", "mouse": mouse.name} | found


def data_curve(mouse: Mouse, mask, clips: int) -> list[dict]:
    """Ridge on the first `clips` training clips and on all of them."""
    everyone = np.arange(mouse.n_neurons)
    rows = []
    for count in (clips, len(mouse.train)):
        train = TrialClips(mouse.train.mouse, mouse.train.trials[:count], False)
        print(f"{mouse.name}: ridge on {count} training clips")
        found = fit_and_score(train, mouse.held_out, everyone, RidgeConfig(), mask, mouse.groups)
        rows.append({"row": f"ridge, recorded, {count} training clips", "mouse": mouse.name} | found)
    return rows


def neuron_curve(mouse: Mouse, mask, fractions=FRACTIONS, rates: bool = False) -> list[dict]:
    """Ridge on random subsets of the neurons (the same subsets for every mouse), on the recorded
    responses or on the noise-free rates."""
    rng = np.random.default_rng(0)
    kind = "noise-free rates" if rates else "recorded"
    train, held = (mouse.train_rates, mouse.held_out_rates) if rates else (mouse.train, mouse.held_out)
    rows = []
    for fraction in fractions:
        neurons = np.sort(rng.permutation(mouse.n_neurons)[: round(fraction * mouse.n_neurons)])
        print(f"{mouse.name}: ridge on {len(neurons)} neurons, {kind}")
        found = fit_and_score(train, held, neurons, RidgeConfig(), mask, mouse.groups)
        row = f"ridge, {kind}, {fraction:.1%} of neurons, imaging noise {mouse.imaging_noise:g}"
        measured = {"reliability": mouse.reliability, "imaging_noise_dff": mouse.imaging_noise}
        rows.append({"row": row, "mouse": mouse.name} | measured | found)
    return rows


def student_row(path: Path, mice: dict[str, Mouse], mask) -> dict:
    artifact = load_artifact(path, check_onnx=False)
    mouse = mice[artifact.meta.provenance["mouse"]]
    everyone = np.arange(mouse.n_neurons)
    groups = score(artifact.model(), mouse.held_out, everyone, mouse.groups, mask)
    return {"row": f"student {path.name} ({artifact.model_id})", "mouse": mouse.name, "groups": groups}


def picture(rows: list[dict], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.5), layout="constrained")
    shown = ("oracle", "final_test_main")
    height = 0.8 / len(shown)
    for k, group in enumerate(shown):
        values = [r["groups"][group] for r in rows]
        ax.barh(np.arange(len(rows)) + k * height, values, height, label=group)
    ax.set_yticks(np.arange(len(rows)) + height / 2)
    ax.set_yticklabels([f"{r['row']} [{'-'.join(r['mouse'].split('-')[1:3])}]" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("masked video correlation (same clips, frames and mask)")
    ax.legend(fontsize=8)
    fig.suptitle("loss budget: screen -> map -> encoding -> noise -> neurons -> data -> decoder", fontsize=9)
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = arguments(
        __doc__, "bench_budget", data=REQUIRED, data_help="dataset root (the demo mouse)", mask_from=REQUIRED
    )
    parser.add_argument("--data-8000", type=Path, help="the same mouse simulated with 8,000 neurons")
    parser.add_argument("--more-data", type=Path, help="the same neurons recorded for more trials")
    parser.add_argument(
        "--noisier", type=Path, help="the 8,000-neuron mouse imaged with more noise (--imaging-noise)"
    )
    parser.add_argument("--student", type=Path, nargs="*", default=[], help="student artifacts to score")
    parser.add_argument(
        "--previous",
        type=Path,
        help="an earlier bench_budget.json: its rows this run does not measure are kept, marked "
        "with the run that measured them",
    )
    args = parser.parse_args()

    mask = load_artifact(args.mask_from, check_onnx=False).evaluation_mask
    demo = Mouse.open(args.data)
    mice = {demo.name: demo}
    ceiling = output_map(demo, mask, RidgeConfig().lookahead)
    rows = [{"row": "output map", "mouse": demo.name, "groups": ceiling}]
    rows += [filter_row(demo, mask)]
    rows += ridge_rows(demo, mask, demo.name)
    if args.data_8000:
        many = Mouse.open(args.data_8000)
        mice[many.name] = many
        rows += ridge_rows(many, mask, many.name)
        rows += neuron_curve(many, mask, FRACTIONS[:-1])  # 100 %: the ridge rows just above
        rows += neuron_curve(many, mask, FRACTIONS[:-1], rates=True)
    if args.noisier:
        noisier = Mouse.open(args.noisier)
        rows += neuron_curve(noisier, mask)
    if args.more_data:
        longer = Mouse.open(args.more_data)
        mice[longer.name] = longer
        rows += data_curve(longer, mask, len(demo.train))
    rows += [student_row(path, mice, mask) for path in args.student]
    if args.previous:
        rows += carried(args.previous, "rows", rows, lambda r: (r["row"], r["mouse"]))
    png = picture_path(args.out)
    picture(rows, png)
    figures = {"mask_pixels": int(mask.sum()), "rows": rows, "picture": png.name}
    write_result("bench_budget", figures, args.out)


if __name__ == "__main__":
    main()
