"""Encoder ensemble on the demo dataset: how well it predicts held-out responses, and what it costs.

Trains `--members` cpu-preset members on the demo dataset (simulated first if missing) into
<cache>/encoders/demo, where the teacher stage finds them, then reports on held-out clips:
- single-trial response correlation (per neuron over all frames, first 50 skipped, mean over
  neurons) per member and for the ensemble, on final_test_main (natural movies of photographs
  never shown in training) and on oracle (the validation tier: training photographs, new clips),
  next to the simulator's noise-free rates (the ceiling any model can reach);
- seconds per training epoch (each member's history);
- forward+backward seconds per 300-frame clip for both presets. The published `dwiseneuro` shape is
  timed per 16-frame stack and scaled to a clip (labelled): one clip is 9 training stacks, or 300
  stacks for sliding-window inference and for inverting it.
Writes bench/results/bench_encoder.json.

    python bench/bench_encoder.py                 # train 3 members x 8 epochs (~15 min on 2 free cores)
    python bench/bench_encoder.py --reuse         # measure the ensemble already in <cache>/encoders/demo
    python bench/bench_encoder.py --reuse --out <cache>/encoders/demo-no-shifter --results \
        bench/results/bench_encoder_no_shifter.json   # the ablation: members without a shifter
"""

import json
import os
import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, arguments, write_result

from stream_decoder.data import FRAME_SHAPE, load_truth, open_mice, simulate
from stream_decoder.encoder import Encoder, load_ensemble, member_dirs, predict_clip, preset
from stream_decoder.encoder.batches import load_clips
from stream_decoder.encoder.config import TRAINING_PRESETS
from stream_decoder.encoder.training import train_ensemble
from stream_decoder.metrics import single_trial_correlation
from stream_decoder.paths import cache_dir

SKIP = 50


def correlation(predicted: list[np.ndarray], clips) -> float:
    recorded = [c.responses.numpy() for c in clips]
    return round(float(np.nanmean(single_trial_correlation(predicted, recorded, SKIP))), 4)


def quality(encoders, dataset, tier: str) -> dict:
    clips = load_clips(dataset, tier)
    per_member = [[predict_clip([e], c, dataset.name) for c in clips] for e in encoders]
    ensemble = [np.mean(parts, axis=0) for parts in zip(*per_member, strict=True)]
    truth = load_truth(dataset.path)
    ceiling = [np.asarray(truth.rates(c.trial))[: len(c.video)] for c in clips]
    return {
        "clips": len(clips),
        "members": [correlation(p, clips) for p in per_member],
        "ensemble": correlation(ensemble, clips),
        "noise_free_rates": correlation(ceiling, clips),
    }


@torch.no_grad()
def shifter_fit(encoders, dataset, tier: str = "final_test_main") -> list[dict] | None:
    """Per member with a shifter: its shift (dx, dy) against the simulator's eye on `tier`'s pupil
    positions: correlation per axis, rms error and the true shift's sd, in screen px."""
    if not encoders[0].cfg.shifter:
        return None
    eye = load_truth(dataset.path).simulation["eye"]
    pupil = torch.cat([c.pupil_center for c in load_clips(dataset, tier)])
    true = eye["screen_px_per_eye_px"] * (pupil - torch.tensor(eye["center_px"]))
    fits = []
    for encoder in encoders:
        learned = encoder.shifters[dataset.name](pupil)
        fits.append(
            {
                "correlation": [
                    round(float(np.corrcoef(learned[:, a], true[:, a])[0, 1]), 3) for a in (0, 1)
                ],
                "rms_error_px": round(float((learned - true).square().mean().sqrt()), 3),
                "true_sd_px": [round(float(v), 3) for v in true.std(0)],
            }
        )
    return fits


def seconds(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(round(time.perf_counter() - start, 3))
    return times


def forward_backward(cfg, neurons: int, frames: int, batch: int, repeats: int) -> list[float]:
    torch.manual_seed(0)
    model = Encoder(cfg, {"m": neurons}).train()
    video = torch.rand(batch, frames, *FRAME_SHAPE) * 255
    behavior, pupil = torch.randn(batch, frames, 2), torch.randn(batch, frames, 2)

    def step():
        rates = model.predict_frames(model.inputs(video, behavior, pupil, "m"), "m")
        rates.mean().backward()

    step()  # warm-up
    return seconds(step, repeats)


def cost(neurons: int) -> dict:
    cpu = forward_backward(preset("cpu"), neurons, frames=300, batch=1, repeats=5)
    stack = preset("dwiseneuro")
    per_stack = forward_backward(stack, neurons, frames=stack.stack_frames, batch=1, repeats=3)
    span = (stack.stack_frames - 1) * stack.stack_step + 1
    p50 = statistics.median(per_stack)
    return {
        "cpu_preset_clip_s": {
            "neurons": neurons,
            "runs": cpu,
            "p50": statistics.median(cpu),
            "min": min(cpu),
        },
        "dwiseneuro_stack_s": {
            "neurons": neurons,
            "frames": stack.stack_frames,
            "runs": per_stack,
            "p50": p50,
            "min": min(per_stack),
        },
        "dwiseneuro_clip_s_scaled": {
            "training_9_stacks": round(300 // span * p50, 2),
            "sliding_inference_300_stacks": round(300 * p50, 1),
            "note": "scaled from the per-stack time, not measured on whole clips",
        },
    }


def main() -> None:
    parser = arguments(__doc__, data=cache_dir() / "data" / "demo")
    parser.add_argument(
        "--out", type=Path, default=cache_dir() / "encoders" / "demo", help="where the ensemble is trained"
    )
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--no-shifter", action="store_true", help="train without the shifter (the ablation)")
    parser.add_argument("--reuse", action="store_true", help="measure the ensemble in --out, do not train")
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS / "bench_encoder.json",
        help="results JSON (an --out of its own)",
    )
    args = parser.parse_args()

    load_before = os.getloadavg()
    if not args.data.exists():
        simulate("demo", seed=0, out=args.data, progress=True)
    if not args.reuse:
        shutil.rmtree(args.out, ignore_errors=True)
        train = replace(TRAINING_PRESETS["cpu"], epochs=args.epochs)
        train_ensemble(args.data, args.out, args.members, preset("cpu", shifter=not args.no_shifter), train)
    mice = open_mice(args.data)
    encoders = load_ensemble(args.out, mice)
    metas = [json.loads((d / "meta.json").read_text()) for d in member_dirs(args.out)]
    epoch_s = [h["seconds"] for meta in metas for h in meta["history"]]
    (dataset,) = mice.values()  # the demo preset is one mouse
    report = {
        "note": "Shared 2-core machine: load_average_1m (before, after) shows the other work running "
        "meanwhile, which slows every timing here. Correlations: single-trial, per neuron over all "
        "frames (first 50 of each clip skipped), mean over neurons.",
        "dataset": {
            "root": str(args.data),
            "mouse": dataset.name,
            "neurons": dataset.n_neurons,
            "train_clips": len(dataset.trials("train")),
            "fingerprint": dataset.fingerprint(),
        },
        "ensemble": {
            "dir": str(args.out),
            "members": len(encoders),
            "preset": "cpu",
            "shifter": encoders[0].cfg.shifter,
            "epochs": metas[0]["epochs"],
            "train": metas[0]["train"],
            "validation_history": [[h["val_correlation"] for h in m["history"]] for m in metas],
        },
        "correlation": {tier: quality(encoders, dataset, tier) for tier in ("final_test_main", "oracle")},
        "shifter": shifter_fit(encoders, dataset),
        "epoch_s": {
            "runs": [round(s, 1) for s in epoch_s],
            "p50": round(statistics.median(epoch_s), 1),
            "min": round(min(epoch_s), 1),
            "total": round(sum(epoch_s), 1),
        },
        "forward_backward": cost(dataset.n_neurons),
    }
    report["load_average_1m"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    write_result("bench_encoder", report, args.results)
    print(json.dumps({k: report[k] for k in ("correlation", "epoch_s", "forward_backward")}, indent=1))
    print(f"ensemble in {args.out}")


if __name__ == "__main__":
    main()
