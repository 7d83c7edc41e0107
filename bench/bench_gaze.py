"""Gaze correction: what moving the decoded retinal image back by the eye's screen shift is worth.

    python bench/bench_gaze.py --data DATA --mask-from ARTIFACT [--gains 0 0.25 0.5 0.75 1]
        [--off-grid 0 0.3 0.6 0.9] [--students ARTIFACT ...]

Fits, on the train tier as `stream-decoder baseline` does (penalty and gain chosen on its last 10
clips): the plain ridge baseline (gain 0 only), the gaze ridge baseline choosing among --gains, and
one choosing among --off-grid (a grid without the simulator's 0.5 px per px, so the gain is shown
not to need the true value; the dataset must be synthetic, for the simulator's gain). Scores each,
and every artifact in --students, on the held-out groups in the artifact's evaluation mask.
Writes bench/results/bench_gaze.json and bench_gaze.png.
"""

import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from common import GROUPS, REQUIRED, arguments, held_out_setup, picture_path, score, write_result

from stream_decoder.data.truth import load_truth
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.config import RidgeConfig
from stream_decoder.decoder.ridge import fit_ridge


def ridge_point(name: str, clips, held_out, gains, mask, groups) -> dict:
    started = time.perf_counter()
    model, report = fit_ridge(clips, RidgeConfig(gaze_gains=tuple(gains)), mask, progress=False)
    everyone = np.arange(model.cfg.n_neurons)
    result = {"decoder": name, "fit_seconds": time.perf_counter() - started, "gains_tried": list(gains)}
    result |= {key: report[key] for key in ("gaze_gain", "gaze_validation_correlation", "penalty")}
    result["groups"] = score(model, held_out, everyone, groups, mask)
    print(result)
    return result


def student_point(path: Path, held_out, mask, groups) -> dict:
    artifact = load_artifact(path)
    model = artifact.model()
    everyone = np.arange(model.cfg.n_neurons)
    result = {"decoder": f"student {artifact.model_id}", "artifact": str(path), "kind": artifact.meta.kind}
    result |= {"gaze_gain": model.cfg.gaze_gain}
    result["groups"] = score(model, held_out, everyone, groups, mask)
    print(result)
    return result


def picture(result: dict, out: Path) -> None:
    fig, (bars, curve) = plt.subplots(1, 2, figsize=(12, 4), layout="constrained", width_ratios=(2, 1))
    decoders = result["decoders"]
    width = 0.8 / len(decoders)
    for k, entry in enumerate(decoders):
        xs = np.arange(len(GROUPS)) + k * width
        label = f"{entry['decoder']} (gain {entry['gaze_gain']:g})"
        bars.bar(xs, [entry["groups"][g] for g in GROUPS], width, label=label)
    bars.set_xticks(np.arange(len(GROUPS)) + 0.4 - width / 2, GROUPS, fontsize=8)
    bars.set_ylabel("masked video correlation (held out)")
    bars.legend(fontsize=7)
    for entry in decoders:
        if len(entry.get("gains_tried", [])) > 1:
            gains, scores = zip(*entry["gaze_validation_correlation"].items(), strict=True)
            curve.plot([float(g) for g in gains], scores, "o-", label=entry["decoder"])
    curve.axvline(result["simulated_gain"], color="gray", ls=":", label="simulator's gain")
    curve.set_xlabel("gaze gain (screen px per eye-camera px)")
    curve.set_ylabel("validation correlation (best penalty)")
    curve.legend(fontsize=7)
    fig.suptitle(f"gaze correction on {result['mouse']}, {result['mask_pixels']}-px mask", fontsize=9)
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = arguments(__doc__, "bench_gaze", data=REQUIRED, mask_from=REQUIRED)
    parser.add_argument("--gains", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--off-grid", type=float, nargs="+", default=[0.0, 0.3, 0.6, 0.9])
    parser.add_argument("--students", type=Path, nargs="*", default=[], help="artifacts to score beside")
    args = parser.parse_args()

    mask, mouse, clips, groups, held_out = held_out_setup(args.data, args.mask_from)
    simulated_gain = load_truth(mouse.path).simulation["eye"]["screen_px_per_eye_px"]
    result = {"mouse": mouse.name, "mask_pixels": int(mask.sum()), "simulated_gain": simulated_gain}
    result["decoders"] = [
        ridge_point("plain ridge", clips, held_out, [0.0], mask, groups),
        ridge_point("gaze ridge", clips, held_out, args.gains, mask, groups),
        ridge_point("gaze ridge, grid without 0.5", clips, held_out, args.off_grid, mask, groups),
        *(student_point(path, held_out, mask, groups) for path in args.students),
    ]
    png = picture_path(args.out)
    picture(result, png)
    write_result("bench_gaze", result | {"picture": png.name}, args.out)


if __name__ == "__main__":
    main()
