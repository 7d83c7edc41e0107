"""Decoder vs linear baseline vs teacher vs truth on held-out clips, the cost of each per clip, and
the lookahead sweep: what a lab would pick instead stands beside every figure.

    python bench/bench_fidelity.py --data DATA --artifact ARTIFACT [--teacher STORE] [--baseline ARTIFACT]
        [--lookaheads 0 2 4 8 16]

The baseline is the ridge decoder fitted on the training trials' true stimuli (`stream-decoder
baseline`; fitted into the cache with the decoder's evaluation mask when --baseline is not given).
Writes bench/results/bench_fidelity.json and bench_fidelity.png (correlation per clip group for
decoder, baseline and teacher; vs missing neurons; vs lookahead; example frames).
"""

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from common import REQUIRED, RESULTS, arguments, picture_path, write_result

from stream_decoder.data import BEHAVIOR_CHANNELS, CLIP_FRAMES, open_mouse
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.baseline import ensure_baseline, fit_baseline
from stream_decoder.decoder.config import RidgeConfig
from stream_decoder.decoder.distill import DistillConfig, distill
from stream_decoder.decoder.evaluate import Contestant, evaluate
from stream_decoder.paths import local_path
from stream_decoder.runtime import open_backend
from stream_decoder.runtime.export import export_artifact
from stream_decoder.teacher.store import TeacherStore

SWEEP_TIERS = ("oracle", "final_test_main")
CONTESTANTS = ("student", "baseline", "teacher")


def seconds_per_clip(artifact: Path, kind: str) -> float:
    """One 300-tick clip, tick by tick, on the serving backend (after warm-up)."""
    if kind == "onnxruntime" and not load_artifact(artifact).onnx_path.is_file():
        export_artifact(artifact)
    backend = open_backend(artifact, kind)
    backend.warmup()
    activity = np.random.default_rng(0).random((CLIP_FRAMES, backend.n_neurons), dtype=np.float32)
    behavior = np.zeros(BEHAVIOR_CHANNELS, np.float32)
    backend.reset()
    started = time.perf_counter()
    for row in activity:
        backend.step(row, behavior)
    return time.perf_counter() - started


def teacher_seconds_per_clip(store: TeacherStore, mouse: str) -> float:
    return float(np.nanmedian([store.metrics(mouse, t)["seconds"] for t in store.trials(mouse)]))


def published_seconds_per_clip(members: int) -> float | None:
    """The published settings per clip: 1,000 iterations per member, at the seconds per iteration
    bench_teacher.py timed on this machine (None before it has run)."""
    path = RESULTS / "bench_teacher.json"
    if not path.exists():
        return None
    per_member = json.loads(path.read_text())["published_vs_cpu"][
        "published_full_seconds_per_clip_per_member"
    ]
    return per_member * members


def compute(args, result: dict, baseline: Path) -> dict:
    student_s = seconds_per_clip(args.artifact, args.backend)
    figures = {
        "backend": args.backend,
        "student_seconds_per_clip": student_s,
        "baseline_seconds_per_clip": seconds_per_clip(baseline, args.backend),
    }
    if args.teacher:
        store = TeacherStore(args.teacher)
        teacher_s = teacher_seconds_per_clip(store, result["mouse"])
        members = len(store.manifest()["models"])
        figures |= {
            "teacher_seconds_per_clip": teacher_s,
            "teacher_over_student": teacher_s / student_s,
            "teacher_settings": store.manifest()["teacher"],
            "teacher_members": members,
        }
        published_s = published_seconds_per_clip(members)
        if published_s:
            figures |= {
                "published_teacher_seconds_per_clip": published_s,
                "published_over_student": published_s / student_s,
            }
    return figures


def lookahead_sweep(args, mask) -> dict:
    """Per lookahead: the artifact's recipe retrained at that lookahead beside the baseline it stands
    against, both scored on the held-out tiers in the same mask. A residual
    student's baseline (gaze correction and all) is refitted at each lookahead and corrected again;
    for a plain student the baseline is the plain ridge."""
    provenance = load_artifact(args.artifact).meta.provenance
    settings = DistillConfig(**provenance["distill"])
    store, ensemble = provenance.get("teacher_store"), provenance.get("ensemble")
    residual_of = provenance.get("residual_of")
    ridge = RidgeConfig()
    if residual_of is not None:
        ridge = RidgeConfig(**load_artifact(local_path(residual_of)).meta.provenance["baseline"]["ridge"])
    scores = {}
    for lookahead in args.lookaheads:
        cfg = dataclasses.replace(settings, lookahead=lookahead, epochs=args.sweep_epochs or settings.epochs)
        with tempfile.TemporaryDirectory() as tmp:
            student, baseline = Path(tmp) / "student", Path(tmp) / "baseline"
            fit_baseline(
                args.data, baseline, dataclasses.replace(ridge, lookahead=lookahead), mask, progress=False
            )
            distill(
                args.data,
                store and local_path(store),
                student,
                cfg,
                progress=False,
                mask=mask,
                ensemble=ensemble and local_path(ensemble),
                residual_of=baseline if residual_of is not None else None,
            )
            groups = evaluate(student, args.data, args.teacher, baseline, tiers=SWEEP_TIERS, missing=())[
                "groups"
            ]
        scores[str(lookahead)] = {tier: _rounded(groups[tier]) for tier in SWEEP_TIERS if tier in groups}
        print(f"lookahead {lookahead:2d}: {scores[str(lookahead)]}")
    return scores


def _rounded(row: dict) -> dict:
    return {k: round(v, 4) for k, v in row.items() if k in (*CONTESTANTS, "student_vs_teacher")}


def examples(args, result: dict, baseline: Path) -> dict:
    """Frames of one oracle clip (one the teacher reconstructed, where it has any) for the picture."""
    mouse = open_mouse(args.data, result["mouse"])
    store = TeacherStore(args.teacher) if args.teacher else None
    trials = mouse.trials("oracle")
    trial = next((t for t in trials if store and store.has(mouse.name, t)), trials[0])
    shown = {
        "trial": trial,
        "frames": [60, 120, 180, 240],
        "truth": mouse.clip(trial).video[:CLIP_FRAMES],
        "baseline": Contestant.open(baseline, mouse, "baseline").decode(mouse, trial),
        "student": Contestant.open(args.artifact, mouse, "artifact").decode(mouse, trial),
    }
    if store and store.has(mouse.name, trial):
        shown["teacher"] = store.load(mouse.name, trial)
    return shown


def picture(result: dict, shown: dict, out: Path) -> None:
    groups = result["groups"]
    fig = plt.figure(figsize=(13, 10), layout="constrained")
    plots, movies = fig.subfigures(2, 1, height_ratios=[1, 1.2])
    axes = plots.subplots(1, 3)
    names = list(groups)
    x = np.arange(len(names))
    for offset, who in zip((-0.27, 0.0, 0.27), CONTESTANTS, strict=True):
        axes[0].bar(x + offset, [groups[g].get(who, np.nan) for g in names], 0.27, label=who)
    axes[0].set_xticks(x, names, rotation=45, ha="right", fontsize=7)
    axes[0].set_ylabel("masked video correlation")
    axes[0].legend(fontsize=7)
    for g in names:
        fractions = list(groups[g]["missing"])
        axes[1].plot(
            [float(f) for f in fractions], [groups[g]["missing"][f] for f in fractions], "o-", label=g
        )
    axes[1].set_xlabel("fraction of neurons missing at run time")
    axes[1].set_ylabel("student correlation")
    axes[1].legend(fontsize=6)
    sweep = result.get("lookahead_sweep") or {}
    ls = sorted(sweep, key=int)
    for tier in SWEEP_TIERS:
        for who, style in (("student", "o-"), ("baseline", "s--")):
            axes[2].plot(
                [int(v) for v in ls], [sweep[v][tier][who] for v in ls], style, label=f"{tier}: {who}"
            )
    axes[2].set_ylabel("correlation with the stimulus")
    axes[2].set_xlabel("lookahead L (frames)")
    if sweep:
        axes[2].legend(fontsize=6)
    rows = [name for name in ("truth", "teacher", "baseline", "student") if name in shown]
    frames = shown["frames"]
    grid = movies.subplots(len(rows), len(frames), squeeze=False)
    for row, name in enumerate(rows):
        for col, t in enumerate(frames):
            ax = grid[row][col]
            ax.imshow(shown[name][t], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
            if row == 0:
                ax.set_title(f"frame {t}", fontsize=8)
    fig.suptitle(f"{result['mouse']}: {result['kind']} {result['model']}, trial {shown['trial']}", fontsize=9)
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = arguments(
        __doc__, "bench_fidelity", data=REQUIRED, data_help="dataset root the artifact was trained on"
    )
    parser.add_argument("--artifact", type=Path, required=True, help="the decoder to score")
    parser.add_argument("--teacher", type=Path, help="teacher store of held-out clips (bench_teacher.py's)")
    parser.add_argument("--baseline", type=Path, help="baseline artifact (default: fitted into the cache)")
    parser.add_argument("--backend", default="onnxruntime", help="backend the cost per clip is timed on")
    parser.add_argument(
        "--lookaheads", type=int, nargs="*", default=[], help="retrain the decoder and its baseline per L"
    )
    parser.add_argument(
        "--sweep-epochs", type=int, help="epochs of each lookahead's student (default: the artifact's)"
    )
    args = parser.parse_args()

    artifact = load_artifact(args.artifact)
    mask = artifact.evaluation_mask
    baseline = args.baseline or ensure_baseline(args.data, mask, artifact.meta.provenance.get("mouse"))
    result = evaluate(args.artifact, args.data, args.teacher, baseline)
    result["compute"] = compute(args, result, baseline)
    if args.lookaheads:
        result["lookahead_sweep"] = lookahead_sweep(args, mask)
    png = picture_path(args.out)
    picture(result, examples(args, result, baseline), png)
    write_result("bench_fidelity", result | {"picture": png.name}, args.out)
    print(f"{'group':22s} clips  student  baseline  ratio  teacher (its clips: student, baseline)")
    for group, row in result["groups"].items():
        teacher = ""
        if row["teacher_clips"]:
            teacher = (
                f"{row['teacher']:.3f} ({row['teacher_clips']}: {row['student_on_teacher_clips']:.3f}, "
                f"{row['baseline_on_teacher_clips']:.3f})"
            )
        print(
            f"{group:22s} {row['clips']:5d}  {row['student']:.3f}    {row['baseline']:.3f}    "
            f"{row['student'] / row['baseline']:.2f}  {teacher}"
        )
    c = result["compute"]
    print(
        f"per clip on {c['backend']}: student {c['student_seconds_per_clip'] * 1e3:.1f} ms, "
        f"baseline {c['baseline_seconds_per_clip'] * 1e3:.1f} ms"
        + (f", teacher {c['teacher_seconds_per_clip']:.1f} s" if "teacher_seconds_per_clip" in c else "")
    )


if __name__ == "__main__":
    main()
