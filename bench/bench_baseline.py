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

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from common import (
    GROUPS,
    REQUIRED,
    RESULTS,
    arguments,
    fit_and_score,
    held_out_setup,
    picture_path,
    write_result,
)

from stream_decoder.decoder.config import RidgeConfig
from stream_decoder.decoder.ridge import settings


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
    parser = arguments(__doc__, data=REQUIRED, mask_from=REQUIRED)
    parser.add_argument(
        "--out",
        type=Path,
        metavar="JSON",
        help="results file; the picture goes beside it as .png (default: bench/results/bench_baseline.json, "
        "bench_baseline_gaze.json with --gaze-gains)",
    )
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
        fit_and_score(clips, held_out, everyone, dataclasses.replace(default, components=c), mask, groups)
        for c in args.components
    ]
    rng = np.random.default_rng(0)
    n = mouse.n_neurons
    subsets = [np.sort(rng.permutation(n)[: round(f * n)]) for f in args.fractions]
    result["neurons"] = [fit_and_score(clips, held_out, cells, default, mask, groups) for cells in subsets]
    if any(args.gaze_gains):
        plain = RidgeConfig()
        result["neurons_plain"] = [
            fit_and_score(clips, held_out, cells, plain, mask, groups) for cells in subsets
        ]
    out = args.out or RESULTS / f"{name}.json"
    png = picture_path(out)
    picture(result, png)
    write_result(name, result | {"picture": png.name}, out)


if __name__ == "__main__":
    main()
