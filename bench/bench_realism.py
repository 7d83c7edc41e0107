"""How real is the synthetic mouse? The figures the paper and the literature measured on real mice,
beside the same figures measured on this simulator's mouse.

    python bench/bench_realism.py --preset demo [--neurons 8000] [--imaging-noise DFF]
        [--components K] [--label after] [--mask-from ARTIFACT] [--previous JSON]

Simulates the preset's mouse in memory (its train, oracle and held-out photograph trials; nothing
is written), then measures on the same clips and mask (the artifact's evaluation mask):

- neuron curve: the gaze baseline (ridge with the eye-shift correction at the rig's gain) fitted on
  12.5 / 25 / 50 / 100 % of the neurons (random subsets, seed 0), as a fraction of its score with
  all of them (paper: 0.60 / 0.75 / 0.90);
- noise gap: the gaze baseline on the recorded responses over the gaze baseline fitted and decoded
  on the noise-free rates (paper: 0.569 / 0.766 = 0.74), and the noise-free curve at 12.5 %. The
  ridge reads `--components` principal components of the activity (the baseline's 256 by
  default): on noise-free rates of thousands of neurons more of them still add, so 256 understate
  the noise-free score and overstate the gap;
- the linear baselines' held-out scores (earlier methods on real mice 0.24-0.27, the paper 0.57);
- the single-trial ceiling: each neuron's recorded responses against its noise-free rates, the
  correlation a perfect encoder would reach (a real mouse's is above DwiseNeuro's 0.29);
- the population: repeat reliability, each neuron's stimulus-explained variance and signal-to-noise
  ratio in 33 ms bins (from the repeats), spikes per bin, lifetime sparseness of the noise-free
  rates, the share of trial-to-trial variability in the top 10 shared dimensions, the effective
  dimensionality (participation ratio) of the noise-free signal against the number of neurons,
  how many neurons' receptive fields cover each masked pixel, and the power-law exponent of the
  signal's eigenspectrum (V1's is near 1) beside the stimulus's own over the masked pixels: a
  population cannot be higher-dimensional about the pixels than the pixels it is shown.

Each run is one entry, keyed by --label, preset and neurons; --previous keeps the other entries of an
earlier run (the "before" column: run this script on the simulator before a change). Writes
bench/results/bench_realism.json and bench_realism.png, and prints the table.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from common import Subset, arguments, carried, picture_path, write_result
from tqdm import tqdm

from stream_decoder.data.presets import preset_config
from stream_decoder.data.rig import SyntheticMouse
from stream_decoder.data.sensorium import FRAME_RATE_HZ
from stream_decoder.data.simulate import plan_trials, recorded_trials
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.config import RidgeConfig
from stream_decoder.decoder.evaluate import decode_clip
from stream_decoder.decoder.ridge import fit_ridge
from stream_decoder.metrics import pearson, video_correlation

FRACTIONS = (0.125, 0.25, 0.5, 1.0)
HELD_OUT = ("oracle", "final_test_main")
SKIP_FRAMES = 50  # as repeat_reliability: the first frames of a trial are left out of the statistics
SHARED_DIMS = 10
SPECTRUM_RANKS = (10, 500)  # past the few largest dims, within what the frames resolve
DEFAULT_COMPONENTS = RidgeConfig().components
PAPER = {
    "curve": {"0.125": 0.60, "0.25": 0.75, "0.5": 0.90},  # 0.344 / 0.427 / 0.512 of 0.569
    "noise_gap": 0.74,  # 0.569 from recorded responses / 0.766 from the ensemble's predicted activity
    "linear_baseline": "earlier methods 0.24-0.27; the ensemble inversion 0.57",
    "encoder_single_trial": 0.29,  # DwiseNeuro's ensemble on Sensorium 2023
    "single_trial_ceiling": "> 0.29 (DwiseNeuro's ensemble reaches 0.29)",
    "rates": "spontaneous well under 1 Hz, evoked a few Hz (REFERENCE.md section 7)",
    "spectrum": "~1 (Stringer et al. 2019, 2,800 natural images)",
}


@dataclass
class Trials:
    """One simulated session in memory: clips as the daemon feeds them (activity, behaviour and
    pupil (T, 4), video), the same clips with the noise-free rates, and the repeats of each
    held-out video."""

    train: list
    train_rates: list
    held: list  # (tier, clip)
    held_rates: list
    repeats: dict  # video id -> list of (T, N) recorded responses


def simulate_session(cfg, seed: int) -> tuple[SyntheticMouse, Trials]:
    specs = [s for s in plan_trials(cfg.trials, seed) if s.tier in ("train", *HELD_OUT)]
    mouse = SyntheticMouse.create(cfg, seed)
    trials = Trials([], [], [], [], {})
    for spec, video, _, rec in tqdm(recorded_trials(mouse, specs, seed), total=len(specs), desc="simulate"):
        behavior4 = np.concatenate([rec.behavior.behavior, rec.behavior.pupil_center], axis=1)
        clip, rates = (rec.responses, behavior4, video), (rec.rates, behavior4, video)
        if spec.tier == "train":
            trials.train.append(clip)
            trials.train_rates.append(rates)
        else:
            trials.held.append((spec.tier, clip))
            trials.held_rates.append((spec.tier, rates))
            trials.repeats.setdefault(spec.video_id, []).append(rec.responses)
    return mouse, trials


def ridge_scores(train, held, cells, cfg: RidgeConfig, mask) -> dict[str, float]:
    """Fit on `train` with only `cells`, score each held-out tier (mean over its clips)."""
    model, _ = fit_ridge(Subset(train, cells), cfg, mask, progress=False)
    scores: dict[str, list] = {}
    for tier, (activity, behavior4, video) in held:
        end = len(video) - model.cfg.lookahead
        decoded = decode_clip(model, activity[:, cells], behavior4[:, :2], behavior4[:, 2:])
        scores.setdefault(tier, []).append(video_correlation(decoded[:end], video[:end], mask))
    return {tier: round(float(np.mean(values)), 4) for tier, values in scores.items()}


def single_trial_ceiling(trials: Trials) -> dict[str, float]:
    """Per tier, the mean over neurons of each neuron's correlation between its recorded responses
    and its noise-free rates over the held-out clips (first frames skipped): the single-trial
    correlation a perfect encoder would reach, measured as bench_encoder measures the ensemble's.
    A real mouse's must be above DwiseNeuro's 0.29, which no encoder reaches in full."""
    ceiling = {}
    for tier in HELD_OUT:
        held = zip(trials.held, trials.held_rates, strict=True)
        clips = [(c[0][SKIP_FRAMES:], r[0][SKIP_FRAMES:]) for (t, c), (_, r) in held if t == tier]
        recorded, rates = (np.concatenate(xs).astype(np.float64) for xs in zip(*clips, strict=True))
        with np.errstate(invalid="ignore", divide="ignore"):
            ceiling[tier] = round(float(np.nanmean(pearson(recorded, rates, axis=0))), 3)
    return ceiling


def repeat_statistics(repeats: dict) -> dict[str, float]:
    """Reliability (one repeat against the mean of the others), stimulus-explained variance and SNR
    per neuron in 33 ms bins, and the share of trial-to-trial variability in the top shared dims."""
    reliability, signal, noise, residuals = [], [], [], []
    for responses in repeats.values():
        r = np.stack([x[SKIP_FRAMES:] for x in responses]).astype(np.float64)  # (k, T, N)
        k = len(r)
        others = (r.sum(0) - r) / (k - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            reliability.append(np.nanmean([pearson(a, b, axis=0) for a, b in zip(r, others, strict=True)], 0))
        trial_noise = r.var(0, ddof=1).mean(0)
        noise.append(trial_noise)
        signal.append(np.maximum(r.mean(0).var(0) - trial_noise / k, 0.0))  # unbiased by the repeats
        residuals.append((r - r.mean(0)).reshape(-1, r.shape[2]))
    signal, noise = np.mean(signal, 0), np.mean(noise, 0)
    live = noise > 0
    explained = signal[live] / (signal[live] + noise[live])
    residual = np.concatenate(residuals)
    residual = residual[:, residual.std(0) > 0]
    residual = (residual - residual.mean(0)) / residual.std(0)
    values = np.linalg.eigvalsh(residual.T @ residual if residual.shape[1] < 3000 else _subset_gram(residual))
    values = np.sort(values)[::-1]
    reliability = np.nanmean(reliability, 0)
    return {
        "reliability_mean": round(float(np.nanmean(reliability)), 3),
        "reliability_median": round(float(np.nanmedian(reliability)), 3),
        "explained_variance_median": round(float(np.median(explained)), 3),
        "explained_variance_q90": round(float(np.quantile(explained, 0.9)), 3),
        "snr_median": round(float(np.median(signal[live] / noise[live])), 3),
        "shared_noise_top10": round(float(values[:SHARED_DIMS].sum() / values.sum()), 3),
    }


def _subset_gram(x: np.ndarray, n: int = 2000) -> np.ndarray:
    """The correlation matrix (times rows) of a random `n` of the columns: enough for the top dims."""
    cells = np.random.default_rng(0).permutation(x.shape[1])[:n]
    return x[:, cells].T @ x[:, cells]


def spectrum(x: np.ndarray) -> np.ndarray:
    """The covariance eigenvalues of x (T, D) over time, largest first, summing to 1."""
    centred = x - x.mean(0)
    gram = centred @ centred.T if len(x) < x.shape[1] else centred.T @ centred  # same nonzero values
    values = np.sort(np.maximum(np.linalg.eigvalsh(gram), 0.0))[::-1]
    return values / values.sum()


def participation_ratio(x: np.ndarray) -> float:
    """(sum of covariance eigenvalues)^2 / sum of their squares: the signal's effective dimensions."""
    return float(1.0 / np.square(spectrum(x)).sum())


def power_law_exponent(x: np.ndarray) -> float:
    """alpha of the eigenvalue at rank n falling as n^-alpha, fitted over `SPECTRUM_RANKS`: 1 for
    V1's response to natural images (Stringer et al. 2019), larger for a lower-dimensional code."""
    values = spectrum(x)
    ranks = np.arange(1, len(values) + 1)
    fit = (ranks >= SPECTRUM_RANKS[0]) & (ranks <= min(SPECTRUM_RANKS[1], len(values) // 2))
    return float(-np.polyfit(np.log(ranks[fit]), np.log(values[fit]), 1)[0])


def population_statistics(mouse: SyntheticMouse, trials: Trials, order: np.ndarray, mask) -> dict:
    clips = trials.train_rates[:10]
    rates = np.concatenate([r[SKIP_FRAMES:] for r, _, _ in clips]).astype(np.float64)
    pixels = np.concatenate([video[SKIP_FRAMES:, mask] for _, _, video in clips]).astype(np.float64)
    mean = rates.mean(0)
    treves_rolls = mean**2 / np.maximum(np.square(rates).mean(0), 1e-12)
    sparseness = (1 - treves_rolls) / (1 - 1 / len(rates))
    n = mouse.n_neurons
    population = mouse.population
    rows, cols = np.nonzero(mask)
    near = (rows[:, None] - population.rf_row[None]) ** 2 + (cols[:, None] - population.rf_col[None]) ** 2
    covering = (near <= population.sigma[None] ** 2).sum(1)
    return {
        **repeat_statistics(trials.repeats),
        "mean_rate_hz_median": round(float(np.median(mean)), 3),
        "mean_rate_hz_mean": round(float(mean.mean()), 3),
        "spikes_per_bin_median": round(float(np.median(mean) / FRAME_RATE_HZ), 4),
        "lifetime_sparseness_median": round(float(np.nanmedian(sparseness)), 3),
        "participation_ratio": {
            f"{f:g}": round(participation_ratio(rates[:, np.sort(order[: round(f * n)])]), 1)
            for f in FRACTIONS
        },
        "neurons_per_masked_pixel_median": int(np.median(covering)),
        "spectrum_exponent": round(power_law_exponent(rates), 2),
        "stimulus_spectrum_exponent": round(power_law_exponent(pixels), 2),
        "stimulus_participation_ratio": round(participation_ratio(pixels), 1),
    }


def measure(
    preset: str, neurons: int | None, noise_dff: float | None, seed: int, mask, components: int
) -> dict:
    cfg = preset_config(preset, n_neurons=neurons, noise_dff=noise_dff)
    started = time.perf_counter()
    mouse, trials = simulate_session(cfg, seed)
    n = mouse.n_neurons
    order = np.random.default_rng(0).permutation(n)
    subsets = {f"{f:g}": np.sort(order[: round(f * n)]) for f in FRACTIONS}
    gaze = RidgeConfig(components=components, gaze_gains=(cfg.behavior.screen_px_per_eye_px,))
    curve = {}
    for key, cells in tqdm(subsets.items(), desc="neuron curve"):
        curve[key] = ridge_scores(trials.train, trials.held, cells, gaze, mask)
    noise_free = {
        key: ridge_scores(trials.train_rates, trials.held_rates, subsets[key], gaze, mask)
        for key in ("0.125", "1")
    }
    plain = ridge_scores(trials.train, trials.held, subsets["1"], RidgeConfig(components=components), mask)
    full = curve["1"]
    return {
        "preset": preset,
        "neurons": n,
        "imaging_noise_dff": cfg.imaging.noise_dff[0],
        "ridge_components": components,
        "seed": seed,
        "train_clips": len(trials.train),
        "held_out_clips": {tier: sum(t == tier for t, _ in trials.held) for tier in HELD_OUT},
        "gaze_baseline": curve,
        "plain_baseline": plain,
        "noise_free_gaze_baseline": noise_free,
        "curve_ratio": {key: {t: round(curve[key][t] / full[t], 3) for t in full} for key in curve},
        "noise_gap": {t: round(full[t] / noise_free["1"][t], 3) for t in full},
        "noise_free_curve_ratio_0.125": {
            t: round(noise_free["0.125"][t] / noise_free["1"][t], 3) for t in full
        },
        "single_trial_ceiling": single_trial_ceiling(trials),
        "population": population_statistics(mouse, trials, order, mask),
        "seconds": round(time.perf_counter() - started),
    }


def table(runs: list[dict]) -> str:
    """One markdown row per figure, one column per run, the paper's value first."""

    def tiers(key: str, *inner: str):
        def cell(run: dict) -> str:
            values = run[key]
            for name in inner:
                values = values[name]
            return " / ".join(f"{values[t]:.2f}" for t in HELD_OUT)

        return cell

    def stat(name: str, digits: int = 3):
        return lambda run: f"{run['population'][name]:.{digits}f}"

    def ceiling(run: dict) -> str:
        values = run.get("single_trial_ceiling")  # runs before the row existed have none
        return " / ".join(f"{values[t]:.2f}" for t in HELD_OUT) if values else "-"

    def spectral(name: str, digits: int = 2):  # runs before the rows existed have none
        return lambda run: f"{run['population'][name]:.{digits}f}" if name in run["population"] else "-"

    def dims(run: dict) -> str:
        ratio = run["population"]["participation_ratio"]
        return f"{ratio['0.125']} / {ratio['1']}"

    linear = PAPER["linear_baseline"]
    rows = [
        ("neuron curve 12.5 %", tiers("curve_ratio", "0.125"), PAPER["curve"]["0.125"]),
        ("neuron curve 25 %", tiers("curve_ratio", "0.25"), PAPER["curve"]["0.25"]),
        ("neuron curve 50 %", tiers("curve_ratio", "0.5"), PAPER["curve"]["0.5"]),
        ("noise gap (recorded / noise-free)", tiers("noise_gap"), PAPER["noise_gap"]),
        ("noise-free curve 12.5 %", tiers("noise_free_curve_ratio_0.125"), "-"),
        ("gaze baseline, all neurons", tiers("gaze_baseline", "1"), linear),
        ("plain linear baseline", tiers("plain_baseline"), linear),
        ("single-trial ceiling (recorded vs noise-free rates)", ceiling, PAPER["single_trial_ceiling"]),
        ("repeat reliability, mean", stat("reliability_mean"), "-"),
        ("stimulus-explained variance, median", stat("explained_variance_median"), "-"),
        ("mean rate (Hz), median", stat("mean_rate_hz_median", 2), PAPER["rates"]),
        ("spikes per 33 ms bin, median", stat("spikes_per_bin_median"), "-"),
        ("lifetime sparseness, median", stat("lifetime_sparseness_median", 2), "-"),
        ("shared variability, top 10 dims", stat("shared_noise_top10"), "-"),
        ("participation ratio, 12.5 / 100 %", dims, "-"),
        ("neurons covering a masked pixel", stat("neurons_per_masked_pixel_median", 0), "-"),
        ("signal spectrum exponent, all neurons", spectral("spectrum_exponent"), PAPER["spectrum"]),
        ("stimulus spectrum exponent, masked pixels", spectral("stimulus_spectrum_exponent"), "-"),
        ("stimulus participation ratio, masked pixels", spectral("stimulus_participation_ratio", 1), "-"),
    ]
    head = ["figure (oracle / held-out photographs)", "real mice", *(run_name(r) for r in runs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, cell, paper in rows:
        lines.append("| " + " | ".join([name, str(paper), *(cell(r) for r in runs)]) + " |")
    return "\n".join(lines)


def run_key(run: dict) -> tuple:
    return run["label"], run["preset"], run["neurons"], run.get("imaging_noise_dff"), components_of(run)


def components_of(run: dict) -> int:
    """The ridge's principal components (runs before the option existed used the default)."""
    return run.get("ridge_components", DEFAULT_COMPONENTS)


def run_name(run: dict) -> str:
    noise = f", imaging noise {run['imaging_noise_dff']}" if run.get("noise_set") else ""
    ridge = f", ridge of {components_of(run)} PCs" if components_of(run) != DEFAULT_COMPONENTS else ""
    return f"{run['label']}: {run['preset']} n{run['neurons']}{noise}{ridge}"


def picture(runs: list[dict], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    xs = [float(k) for k in ("0.125", "0.25", "0.5", "1")]
    ax.plot(xs, [*PAPER["curve"].values(), 1.0], "k*-", ms=10, label="paper, real mice")
    for i, run in enumerate(runs):
        ratio = run["curve_ratio"]
        style = "--" if run["label"] == "before" else "-"
        for j, tier in enumerate(HELD_OUT):
            ys = [ratio[k][tier] for k in ("0.125", "0.25", "0.5", "1")]
            ax.plot(xs, ys, style, marker="os"[j], color=f"C{i}", label=f"{run_name(run)}, {tier}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("fraction of the neurons")
    ax.set_ylabel("score / score with all neurons")
    ax.set_title("neuron curve of the gaze baseline", fontsize=9)
    ax.legend(fontsize=6)
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = arguments(__doc__, "bench_realism", mask_from=Path("stream_decoder/assets/demo"))
    parser.add_argument("--preset", default="demo", help="simulator preset (default demo)")
    parser.add_argument("--neurons", type=int, help="another neuron count than the preset's")
    parser.add_argument(
        "--imaging-noise",
        type=float,
        metavar="DFF",
        help="another imaging noise than the preset's (median sd of one sample, dF/F)",
    )
    parser.add_argument(
        "--components",
        type=int,
        default=DEFAULT_COMPONENTS,
        help=f"principal components of the activity the ridge reads (default {DEFAULT_COMPONENTS}, the "
        "baseline's): more let the noise-free rates of many neurons show what the default leaves",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default="after", help="the run's name in the table (default after)")
    parser.add_argument(
        "--previous", type=Path, help="an earlier bench_realism.json whose other runs to keep"
    )
    args = parser.parse_args()  # fmt: skip

    mask = load_artifact(args.mask_from).evaluation_mask
    run = {"label": args.label, "noise_set": args.imaging_noise is not None}
    run |= measure(args.preset, args.neurons, args.imaging_noise, args.seed, mask, args.components)
    runs = [run]
    if args.previous:
        runs = carried(args.previous, "runs", runs, run_key) + runs
    runs.sort(key=lambda r: (r["preset"], r["neurons"], r["label"] != "before"))
    text = table(runs)
    print(text)
    png = picture_path(args.out)
    picture(runs, png)
    figures = {"paper": PAPER, "runs": runs, "table": text, "picture": png.name}
    write_result("bench_realism", figures, args.out)


if __name__ == "__main__":
    main()
