"""CLI verb of the data stage: `stream-decoder simulate`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..paths import cache_dir
from .presets import PRESETS
from .sensorium import MouseDataset
from .simulate import simulate


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
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="demo", help="size of the dataset (default: demo)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[0],
        metavar="S",
        help="one mouse per seed, all into one root (default: 0)",
    )
    parser.add_argument("--out", type=Path, help="dataset root (default: <cache>/data/<preset>)")
    parser.add_argument("--neurons", type=int, help="neuron count instead of the preset's")
    parser.add_argument("--planes", type=int, help="imaging planes (default 3)")
    parser.add_argument(
        "--volume-rate", type=float, help="volume rate in Hz (default 7.5: 3 planes + flyback at 30 Hz)"
    )
    parser.add_argument("--force", action="store_true", help="replace mouse folders that already exist")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = args.out if args.out is not None else cache_dir() / "data" / args.preset
    for seed in args.seed:
        start = time.perf_counter()
        (folder,) = simulate(
            args.preset,
            seed,
            out,
            n_neurons=args.neurons,
            n_planes=args.planes,
            volume_rate_hz=args.volume_rate,
            overwrite=args.force,
            progress=True,
        )
        mouse = MouseDataset(folder)
        print(
            f"{folder}: {mouse.n_neurons} neurons, {len(mouse.trial_ids)} trials in "
            f"{time.perf_counter() - start:.1f} s; fingerprint {mouse.fingerprint()}"
        )
    return 0
