"""What the int8 graph costs in fidelity: every held-out clip streamed tick by tick through ONNX
Runtime with the float32 graph and with model.int8.onnx (int8 read-in weights, and the ridge
readout's where the decoder has one: the baseline, the residual student), scored against the true
stimulus.

    python bench/bench_precision.py --data DATA --artifact ARTIFACT [--data DATA --artifact ...]
        [--previous JSON]

Each artifact is exported with `--int8-read-in` into a temporary copy (the original is left as it
is) and decodes its own mouse's held-out clips (`--data` pairs with `--artifact` in order). Reported
per group: masked video correlation of float32 and int8 frames against the true stimulus (the
artifact's evaluation mask), and the largest frame difference between them. Its time per tick is
the onnxruntime-1thread-int8 row of bench_step.py. Writes bench/results/bench_precision.json;
`--previous` keeps an earlier run's models that this one does not measure, marked with that run.
"""

import shutil
import tempfile
from pathlib import Path

import numpy as np
from common import GROUPS, TIERS, arguments, carried, write_result

from stream_decoder.data import GRAY, input_timing, open_mouse, student_inputs
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.evaluate import clip_groups
from stream_decoder.metrics import video_correlation
from stream_decoder.runtime import open_backend
from stream_decoder.runtime.export import export_artifact

PRECISIONS = {"float32": {}, "int8": {"int8_read_in": True}}


def streamed(backend, activity: np.ndarray, behavior4: np.ndarray, lookahead: int) -> np.ndarray:
    """(T, H, W) in stimulus time from one tick at a time; the last L frames left gray."""
    backend.reset()
    frames = np.stack([backend.step(a, b).copy() for a, b in zip(activity, behavior4, strict=True)])
    out = np.full(frames.shape, GRAY, np.float32)
    out[: len(frames) - lookahead] = frames[lookahead:]
    return out


def measure(data: Path, artifact_dir: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / artifact_dir.name
        shutil.copytree(artifact_dir, copy)
        export_artifact(copy, int8_read_in=True)
        artifact = load_artifact(copy)
        backends = {name: open_backend(copy, "onnxruntime", threads=1, **o) for name, o in PRECISIONS.items()}
        mouse = open_mouse(data, artifact.meta.provenance["mouse"])
        timing = input_timing(mouse, multi_plane=False)
        groups = clip_groups(mouse, TIERS)
        mask, lookahead = artifact.evaluation_mask, artifact.config.lookahead
        scores = {name: {} for name in PRECISIONS}
        largest = 0.0
        for group in GROUPS:
            per_clip = {name: [] for name in PRECISIONS}
            for trial in groups.get(group, []):
                activity, behavior, pupil, video = student_inputs(mouse, trial, timing)
                behavior4 = np.concatenate([behavior, pupil], axis=1)
                end = len(video) - lookahead
                decoded = {n: streamed(b, activity, behavior4, lookahead) for n, b in backends.items()}
                for name, frames in decoded.items():
                    per_clip[name].append(video_correlation(frames[:end], video[:end], mask))
                largest = max(largest, float(np.abs(decoded["float32"] - decoded["int8"]).max()))
            for name in PRECISIONS:
                scores[name][group] = float(np.nanmean(per_clip[name])) if per_clip[name] else float("nan")
        result = {
            "artifact": str(artifact_dir),
            "model": artifact.model_id,
            "kind": artifact.meta.kind,
            "neurons": artifact.config.n_neurons,
            "int8_weights": ["read_in"] + (["ridge_readout"] if artifact.model().ridge_readout else []),
            "groups": scores,
            "int8_minus_float32": {g: scores["int8"][g] - scores["float32"][g] for g in GROUPS},
            "max_frame_difference": largest,
        }
    print(result)
    return result


def main() -> None:
    parser = arguments(__doc__, "bench_precision")
    parser.add_argument("--data", type=Path, action="append", required=True, help="dataset root")
    parser.add_argument("--artifact", type=Path, action="append", required=True, help="decoder artifact")
    parser.add_argument(
        "--previous",
        type=Path,
        help="an earlier bench_precision.json: its runs of models this run does not measure are kept, "
        "marked with the run that measured them",
    )
    args = parser.parse_args()
    if len(args.data) != len(args.artifact):
        parser.error("give one --data per --artifact")
    runs = [measure(d, a) for d, a in zip(args.data, args.artifact, strict=True)]
    if args.previous:
        runs += carried(args.previous, "runs", runs, lambda run: run["model"])
    write_result("bench_precision", {"runs": runs}, args.out)


if __name__ == "__main__":
    main()
