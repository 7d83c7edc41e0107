"""The student and the gaze baseline against the neuron count: the paper's curve measured here.

    python bench/bench_neurons.py --data DATA [DATA ...] --mask-from ARTIFACT [--epochs 5]

Each DATA is the same mouse and clips simulated with another neuron count (`stream-decoder simulate
--preset demo --neurons N --out DATA`): its neurons are a fresh draw from the same population, as a
random fraction of one recording is. For each: the gaze baseline (`stream-decoder baseline
--gaze-gains 0 0.25 0.5 0.75 1`, cached), and the residual student trained on it from the recorded
clips alone (`distill --residual-of`, distill's defaults but `--epochs`: the bundled student's
recipe), both scored by `evaluate` on every held-out group with the same mask (`--mask-from`). The
paper's decoder (Bauer et al. 2026, real mice) goes 0.344 / 0.427 / 0.512 / 0.569 at 12.5 / 25 / 50
/ 100 % of its neurons. Writes bench/results/bench_neurons.json and bench_neurons.png.
"""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from common import GROUPS, REQUIRED, arguments, picture_path, write_result

from stream_decoder.data import open_mouse
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.baseline import ensure_baseline
from stream_decoder.decoder.config import GAZE_BASELINE, DistillConfig
from stream_decoder.decoder.distill import distill
from stream_decoder.decoder.evaluate import evaluate
from stream_decoder.paths import cache_dir

PAPER = {"fractions": [0.125, 0.25, 0.5, 1.0], "correlation": [0.344, 0.427, 0.512, 0.569]}


def point(data: Path, mask, epochs: int) -> dict:
    """Baseline and residual student of one dataset, scored on its held-out groups."""
    mouse = open_mouse(data)
    baseline = ensure_baseline(data, mask, cfg=GAZE_BASELINE)
    out = cache_dir() / "artifacts" / f"{mouse.name}-gaze-residual-recorded-{epochs}ep"
    print(f"{mouse.name}: residual student, recorded clips, {epochs} epochs -> {out}")
    student = distill(data, None, out, DistillConfig(epochs=epochs), mask=mask, residual_of=baseline)
    report = evaluate(student.path, data, baseline=baseline, missing=())
    groups = report["groups"]
    return {
        "mouse": mouse.name,
        "neurons": mouse.n_neurons,
        "student": {"model": student.model_id, "groups": {g: groups[g]["student"] for g in GROUPS}},
        "baseline": {
            "model": report["baseline"]["model"],
            "groups": {g: groups[g]["baseline"] for g in GROUPS},
        },
        "clips": {g: groups[g]["clips"] for g in GROUPS},
    }


def picture(points: list[dict], out: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained", sharey=True)
    neurons = [p["neurons"] for p in points]
    most = max(neurons)
    for ax, group in zip(axes, ("oracle", "final_test_main"), strict=True):
        for name, style, label in (
            ("student", "o-", "gaze residual student"),
            ("baseline", "s--", "gaze baseline"),
        ):
            ax.plot(neurons, [p[name]["groups"][group] for p in points], style, label=label)
        paper = [f * most for f in PAPER["fractions"]]
        ax.plot(paper, PAPER["correlation"], "k:", marker="x", label="paper, real mice (same fractions)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(neurons, [str(n) for n in neurons])
        ax.set_xlabel("neurons")
        ax.set_title(group, fontsize=9)
    axes[0].set_ylabel("masked video correlation")
    axes[0].legend(fontsize=8)
    fig.suptitle("decoders against the neuron count (same clips and mask at every count)", fontsize=9)
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = arguments(__doc__, "bench_neurons", mask_from=REQUIRED)
    parser.add_argument(
        "--data", type=Path, nargs="+", required=True, help="one dataset root per neuron count"
    )
    parser.add_argument("--epochs", type=int, default=5, help="the residual student's epochs (default: 5)")
    args = parser.parse_args()
    mask = load_artifact(args.mask_from, check_onnx=False).evaluation_mask
    points = sorted((point(d, mask, args.epochs) for d in args.data), key=lambda p: p["neurons"])
    for p in points:
        ratios = {g: p["student"]["groups"][g] / p["baseline"]["groups"][g] for g in GROUPS}
        print(p["neurons"], {g: round(r, 3) for g, r in ratios.items()})
    png = picture_path(args.out)
    picture(points, png)
    figures = {"mask_pixels": int(np.sum(mask)), "epochs": args.epochs, "paper": PAPER, "points": points}
    write_result("bench_neurons", figures | {"picture": png.name}, args.out)


if __name__ == "__main__":
    main()
