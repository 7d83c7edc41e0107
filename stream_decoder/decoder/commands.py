"""`stream-decoder distill`: train the streaming student on the teacher's reconstructions."""

import argparse
import json
from dataclasses import fields
from pathlib import Path

from stream_decoder.decoder.distill import DistillConfig, distill
from stream_decoder.paths import cache_dir

HELP = {
    "lookahead": "L: ticks between the newest activity and the frame decoded (responses lag the stimulus)",
    "latent": "D: width of the per-tick read-in (neurons -> D)",
    "epochs": "passes over the training clips",
    "batch_size": "clips per optimiser step",
    "lr": "peak learning rate of the one-cycle schedule",
    "weight_decay": "AdamW weight decay",
    "truth_weight": "0: teacher targets only; 1: true frames only; in between: a mix",
    "neuron_dropout": "fraction of neurons silenced per training clip, so lost ROIs degrade gracefully",
    "multi_plane": "train on the rig's per-plane timing (sample-and-hold), as a multi-plane daemon feeds it",
    "validation_tier": "tier kept out of training and scored after it",
    "seed": "seed of initialisation, shuffling and dropout",
}


def register(sub) -> None:
    defaults = DistillConfig()
    parser = sub.add_parser(
        "distill",
        help="distil the teacher into the streaming student (writes a model artifact)",
        description="Train the amortised decoder on the teacher store's reconstructions (clips outside "
        "--validation-tier), fed exactly what the daemon will feed it, and write an artifact directory "
        "(config, weights, meta). `stream-decoder export` then adds the ONNX graph.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="dataset root (Sensorium 2023 mouse folders)"
    )
    parser.add_argument(
        "--teacher", type=Path, required=True, help="teacher store from `stream-decoder reconstruct`"
    )
    parser.add_argument("--out", type=Path, help="artifact directory (default: <cache>/artifacts/<mouse>)")
    parser.add_argument("--mouse", help="mouse folder name (default: the first under --data)")
    for field in fields(DistillConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.type is bool or field.type == "bool":
            parser.add_argument(flag, action="store_true", help=HELP[field.name])
        else:
            default = getattr(defaults, field.name)
            parser.add_argument(flag, type=type(default), default=default, help=HELP[field.name])
    parser.set_defaults(func=main)


def main(args) -> int:
    cfg = DistillConfig(**{f.name: getattr(args, f.name) for f in fields(DistillConfig)})
    out = args.out or cache_dir() / "artifacts" / (args.mouse or args.data.resolve().name)
    artifact = distill(args.data, args.teacher, out, cfg, args.mouse)
    print(
        json.dumps(
            {
                "artifact": str(out),
                "model": artifact.model_id,
                "validation": artifact.meta.provenance.get("validation", {}),
            },
            indent=2,
        )
    )
    return 0
