"""CLI verb of the data stage: `stream-decoder simulate`."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from ..paths import cache_dir
from .presets import PRESETS, SimulationConfig, preset_config
from .sensorium import MouseDataset
from .simulate import mouse_name, simulate
from .truth import load_truth


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "simulate",
        help="write a synthetic mouse V1 dataset in the Sensorium 2023 format",
        description="Simulate a mouse watching natural and out-of-distribution movies under a "
        "two-photon microscope, and write it as a Sensorium 2023 mouse folder (readable by the "
        "community's loaders) with the simulator's ground truth beside it in <mouse>.truth/. "
        "Deterministic for a seed. Presets: tiny (320 neurons, for tests), demo (2,000 neurons, "
        "~100 trials), mouse (8,000 neurons, ~700 trials, like one Sensorium mouse).",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="size of the dataset")
    parser.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[0],
        metavar="S",
        help="one mouse per seed, all into one root",
    )
    parser.add_argument("--out", type=Path, help="dataset root (default: <cache>/data/<preset>)")
    parser.add_argument("--neurons", type=int, help="neuron count instead of the preset's")
    parser.add_argument("--planes", type=int, help="imaging planes (default 3)")
    parser.add_argument(
        "--volume-rate", type=float, help="volume rate in Hz (default 7.5: 3 planes + flyback at 30 Hz)"
    )
    parser.add_argument(
        "--imaging-noise",
        type=float,
        metavar="DFF",
        help="noise sd of one imaging sample in dF/F, median over neurons (default: the preset's, "
        + ", ".join(f"{name} {cfg.imaging.noise_dff[0]}" for name, cfg in PRESETS.items())
        + "; a dimmer indicator or a faster scan is noisier)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace mouse folders that already exist (without it, one simulated from the same "
        "preset, seed and settings is reused, another is an error)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = args.out if args.out is not None else cache_dir() / "data" / args.preset
    cfg = preset_config(args.preset, args.neurons, args.planes, args.volume_rate, args.imaging_noise)
    for seed in args.seed:
        start = time.perf_counter()
        folder = out / mouse_name(cfg, seed)
        if not args.force and simulated_before(folder, cfg, seed):
            print(f"{folder}: simulated before from the same preset, seed and settings; reusing it")
        elif folder.exists() and not args.force:
            raise ValueError(f"{folder}: already exists, not from these settings; pass --force to replace it")
        else:
            simulate(
                args.preset,
                seed,
                out,
                n_neurons=args.neurons,
                n_planes=args.planes,
                volume_rate_hz=args.volume_rate,
                noise_dff=args.imaging_noise,
                overwrite=args.force,
                progress=True,
            )
        mouse = MouseDataset(folder)
        print(
            f"{folder}: {mouse.n_neurons} neurons, {len(mouse.trial_ids)} trials in "
            f"{time.perf_counter() - start:.1f} s; fingerprint {mouse.fingerprint()}"
        )
    return 0


def simulated_before(folder: Path, cfg: SimulationConfig, seed: int) -> bool:
    """Whether `folder` is a finished mouse simulated from these very settings: the simulator is
    deterministic, so it holds the data a new run would write."""
    try:
        recorded = load_truth(folder).simulation
    except (OSError, ValueError):  # no folder, or no (finished) truth beside it
        return False
    return recorded["seed"] == seed and recorded["config"] == json.loads(json.dumps(asdict(cfg)))
