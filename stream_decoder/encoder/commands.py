"""`stream-decoder train-encoder`: train an ensemble of encoding models on a dataset root."""

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

from stream_decoder.encoder.config import PRESETS, TRAINING_PRESETS, preset
from stream_decoder.paths import cache_dir


def register(sub) -> None:
    defaults = TRAINING_PRESETS["cpu"]
    parser = sub.add_parser(
        "train-encoder",
        help="train an ensemble of encoding models (movie + behaviour -> responses)",
        description="Train K encoding models that differ only in their seed, one checkpoint directory "
        "each (config.json, weights.pt, meta.json). The progress bar shows the Poisson loss and the "
        "validation single-trial correlation. Under torchrun every member trains with DDP.",
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="dataset root (Sensorium 2023 mouse folders)"
    )
    parser.add_argument("--members", type=int, default=3, help="ensemble size")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="model shape")
    per_preset = "; ".join(
        f"{name}: {t.epochs} epochs, batch {t.batch_size}, lr {t.lr:g}"
        for name, t in TRAINING_PRESETS.items()
    )
    parser.add_argument(
        "--epochs", type=int, help=f"passes over the training frames (default per preset; {per_preset})"
    )
    parser.add_argument("--batch-size", type=int, help="windows per step and rank (default per preset)")
    parser.add_argument("--lr", type=float, help="peak AdamW learning rate (default per preset)")
    parser.add_argument(
        "--shifter",
        action=argparse.BooleanOptionalAction,
        help="a per-mouse shifter that moves the video by the pupil's position (default: on for cpu, "
        "off for dwiseneuro as published)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="member m uses seed + m")
    parser.add_argument("--train-tier", default=defaults.train_tier, help="tier trained on")
    parser.add_argument(
        "--val-tier",
        default=defaults.val_tier,
        help="held-out tier for the validation score",
    )
    parser.add_argument(
        "--out", type=Path, help="ensemble directory (default: <cache>/encoders/<name of --data>)"
    )
    parser.add_argument("--resume", action="store_true", help="continue the members already under --out")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.set_defaults(func=run)
    register_simulator(sub)


def register_simulator(sub) -> None:
    parser = sub.add_parser(
        "simulator-encoder",
        help="a synthetic mouse's own encoding as an ensemble member: what a perfect encoder gives",
        description="Rebuild the encoding of every synthetic mouse under --data from its truth folder "
        "(filters, eye shift, normalisation, gains, nonlinearity) as a differentiable member, fit each "
        "neuron's readout (a lag kernel from noise-free rates to recorded responses) by ridge on the "
        "first --clips trials of --tier, and write it where a trained member would go. Give it to "
        "`reconstruct --models` to see what gradient inversion reaches with a perfect encoder.",
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset root of synthetic mice")
    parser.add_argument(
        "--out", type=Path, help="member directory (default: <cache>/encoders/<name of --data>-simulator)"
    )
    parser.add_argument("--tier", default="train", help="tier the readouts are fitted on")
    parser.add_argument("--clips", type=int, default=32, help="trials of --tier the readouts are fitted on")
    parser.set_defaults(func=run_simulator)


def run_simulator(args) -> int:
    from stream_decoder.encoder.simulator import save_simulator_member

    if args.clips < 1:
        raise ValueError("--clips must be at least 1")
    out = args.out or cache_dir() / "encoders" / f"{args.data.resolve().name}-simulator"
    save_simulator_member(args.data, out, args.tier, args.clips)
    print(json.dumps({"out": str(out), **json.loads((out / "meta.json").read_text())["readout"]}, indent=2))
    return 0


def run(args) -> int:
    from stream_decoder.encoder.training import train_ensemble

    for name in ("members", "epochs", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    train = replace(
        TRAINING_PRESETS[args.preset],
        seed=args.seed,
        train_tier=args.train_tier,
        val_tier=args.val_tier,
        **{k: v for k, v in given.items() if v is not None},
    )
    out = args.out or cache_dir() / "encoders" / args.data.resolve().name
    shape = preset(args.preset) if args.shifter is None else preset(args.preset, shifter=args.shifter)
    dirs = train_ensemble(args.data, out, args.members, shape, train, args.resume, args.device)
    if os.environ.get("RANK", "0") == "0":
        summary = {d.name: json.loads((d / "meta.json").read_text())["history"][-1] for d in dirs}
        print(json.dumps({"out": str(out), "members": summary}, indent=2))
    return 0
