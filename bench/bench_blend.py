"""Does the student see what the linear baseline misses? Each alone, and their frame-by-frame average.

    python bench/bench_blend.py --data <cache>/data/demo --baseline <cache>/artifacts/<mouse>-baseline \
        --student stream_decoder/assets/demo [--student <cache>/artifacts/demo-pca-frozen ...]

Masked video correlation with the true stimulus on the held-out groups, the student's evaluation
mask, the last L frames (never decoded) left out. An average well above both would say their
errors differ, so a better student could take what the baseline misses; an average at the
baseline's level says the student makes the baseline's errors.
"""

from pathlib import Path

import numpy as np
from common import REQUIRED, arguments, picture_path, write_result

from stream_decoder.data import open_mouse
from stream_decoder.decoder.evaluate import Contestant
from stream_decoder.metrics import video_correlation

TIERS = ("oracle", "final_test_main")


def scores(mouse, student: Contestant, baseline: Contestant, tier: str) -> dict:
    mask = student.artifact.evaluation_mask
    stop = -max(student.artifact.meta.lookahead, baseline.artifact.meta.lookahead)
    rows = []
    for trial in mouse.trials(tier):
        truth = mouse.clip(trial).video[:stop]
        ours, theirs = student.decode(mouse, trial)[:stop], baseline.decode(mouse, trial)[:stop]
        rows.append([video_correlation(v, truth, mask) for v in (ours, theirs, (ours + theirs) / 2)])
    mean = np.mean(rows, axis=0)
    return {
        "clips": len(rows),
        "student": float(mean[0]),
        "baseline": float(mean[1]),
        "average": float(mean[2]),
        "average_over_baseline": float(mean[2] / mean[1]),
    }


def plot(path: Path, results: dict) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TIERS), figsize=(5 * len(TIERS), 3.2), squeeze=False)
    for ax, tier in zip(axes[0], TIERS, strict=True):
        names = list(results)
        x = np.arange(len(names))
        for k, key in enumerate(("student", "baseline", "average")):
            ax.bar(x + (k - 1) * 0.27, [results[n][tier][key] for n in names], 0.27, label=key)
        ax.set_xticks(x, names, fontsize=7)
        ax.set_ylim(0.4, 0.7)
        ax.set_title(f"{tier}: masked correlation")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = arguments(__doc__, "bench_blend", data=REQUIRED)
    p.add_argument("--baseline", type=Path, required=True, help="the linear baseline artifact")
    p.add_argument("--student", type=Path, action="append", required=True, help="student artifacts")
    args = p.parse_args()
    mouse = open_mouse(args.data)
    baseline = Contestant.open(args.baseline, mouse, "baseline")
    results = {}
    for path in args.student:
        student = Contestant.open(path, mouse, "student")
        results[student.artifact.model_id] = {tier: scores(mouse, student, baseline, tier) for tier in TIERS}
        print(path, results[student.artifact.model_id])
    picture = picture_path(args.out)
    plot(picture, results)
    write_result(
        "bench_blend",
        {
            "mouse": mouse.name,
            "baseline": baseline.artifact.model_id,
            "students": results,
            "picture": picture.name,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
