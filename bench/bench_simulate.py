"""How fast the synthetic rig writes each preset, how much memory it needs, and how repeatable
the data it writes are.

Each preset runs in its own process (so its peak resident memory is its own): the full
`simulate` for tiny and demo; for mouse, by default only the first --mouse-trials trials of the
plan, through the same generator and writer `simulate` uses, with the full run's time
extrapolated from them (labelled as such in the results). Writes bench/results/bench_simulate.json.

    python bench/bench_simulate.py                       # tiny, demo, mouse (partial)
    python bench/bench_simulate.py --mouse-trials 0      # mouse in full (about 10+ minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import arguments, write_result


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(preset: str, trials: int, root: Path) -> dict:
    """Run in a child process: generate one mouse of `preset` (all trials if trials == 0)."""
    import numpy as np

    from stream_decoder.data import MouseDataset, simulate
    from stream_decoder.data.presets import preset_config
    from stream_decoder.data.reliability import repeat_reliability
    from stream_decoder.data.rig import SyntheticMouse
    from stream_decoder.data.sensorium import CLIP_FRAMES
    from stream_decoder.data.simulate import plan_trials, recorded_trials
    from stream_decoder.data.truth import TruthWriter
    from stream_decoder.data.writer import MouseWriter

    cfg = preset_config(preset)
    baseline = peak_rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    result = {"preset": preset, "neurons": cfg.population.n_neurons, "planned_trials": cfg.trials.n_trials}
    if trials:
        specs = plan_trials(cfg.trials, seed=0)[:trials]
        mouse = SyntheticMouse.create(cfg, seed=0)
        setup = time.perf_counter() - wall
        writer = MouseWriter(root / "partial", mouse.n_neurons, CLIP_FRAMES)
        truth = TruthWriter(root / "partial")
        for spec, video, _, recording in recorded_trials(mouse, specs, seed=0):
            behavior = recording.behavior
            writer.write_trial(
                spec.trial, video, recording.responses, behavior.behavior, behavior.pupil_center, True
            )
            truth.write_rates(spec.trial, recording.rates)
        elapsed = time.perf_counter() - wall
        per_trial = (elapsed - setup) / trials
        result |= {
            "partial": True,
            "trials": trials,
            "setup_s": round(setup, 2),
            "steady_clips_per_s": round(1 / per_trial, 2),
            "extrapolated_full_run_s": round(setup + per_trial * cfg.trials.n_trials, 1),
        }
    else:
        (folder,) = simulate(preset, seed=0, out=root)
        elapsed = time.perf_counter() - wall
        mouse = MouseDataset(folder)
        reliability = repeat_reliability(mouse)
        result |= {
            "partial": False,
            "trials": len(mouse.trial_ids),
            "repeat_reliability_mean": round(float(np.nanmean(reliability)), 3),
            "repeat_reliability_median": round(float(np.nanmedian(reliability)), 3),
            "fingerprint": mouse.fingerprint(),
        }
    return result | {
        "wall_s": round(elapsed, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "clips_per_s": round(result["trials"] / elapsed, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_mb": round(baseline, 1),
    }


def main() -> None:
    parser = arguments(__doc__, "bench_simulate")
    parser.add_argument("--presets", nargs="+", default=["tiny", "demo", "mouse"])
    parser.add_argument("--mouse-trials", type=int, default=60, help="0: the whole mouse preset")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.trials, args.root)))
        return

    runs = []
    for preset in args.presets:
        trials = args.mouse_trials if preset == "mouse" else 0
        with tempfile.TemporaryDirectory() as root:
            load = os.getloadavg()[0]
            child = [sys.executable, __file__, "--child", preset, "--trials", str(trials), "--root", root]
            output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
            run = json.loads(output.strip().splitlines()[-1])
            run["load_average_1m"] = [round(load, 2), round(os.getloadavg()[0], 2)]
            runs.append(run)
        label = (
            f"{run['trials']} of {run['planned_trials']} trials"
            if run["partial"]
            else f"{run['trials']} trials"
        )
        extra = (
            f"extrapolated full run {run['extrapolated_full_run_s']} s"
            if run["partial"]
            else f"repeat reliability {run['repeat_reliability_mean']}"
        )
        print(
            f"{preset:5s} {run['neurons']:5d} neurons, {label}: {run['wall_s']:7.1f} s "
            f"({run['clips_per_s']} clips/s, cpu {run['cpu_s']} s), peak RSS {run['peak_rss_mb']} MB; {extra}"
        )
    write_result(
        "bench_simulate",
        {
            "note": "clips/s counts trials written (video, responses, behaviour, truth rates) per wall "
            "second, setup (photographs, population, calibration) included; a partial run extrapolates "
            "the full preset from its per-trial time. load_average_1m: before and after, other work on "
            "the machine slows these numbers.",
            "runs": runs,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
