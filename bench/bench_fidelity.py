"""Student vs teacher vs truth on held-out clips, the cost of each per clip, and the lookahead sweep.

    python bench/bench_fidelity.py --data DATA --teacher STORE --artifact ARTIFACT [--lookaheads 0 2 4 8 16]

Writes bench/results/bench_fidelity.json and bench_fidelity.png (correlation per clip group,
correlation vs missing neurons, vs lookahead, and example frames: truth, teacher, student).
"""

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from common import RESULTS, write_result

from stream_decoder.data import CLIP_FRAMES
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.distill import DistillConfig, distill, input_timing, pick_mouse, student_inputs
from stream_decoder.decoder.evaluate import decode_clip, evaluate
from stream_decoder.runtime import open_backend
from stream_decoder.teacher.store import TeacherStore

SWEEP_TIERS = ("oracle", "final_test_main")


def student_seconds_per_clip(artifact: Path, kind: str) -> float:
    """One 300-tick clip, tick by tick, on the serving backend (after warm-up)."""
    backend = open_backend(artifact, kind)
    backend.warmup()
    activity = np.random.default_rng(0).random((CLIP_FRAMES, backend.n_neurons), dtype=np.float32)
    behavior = np.zeros(4, np.float32)
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
    return (
        json.loads(path.read_text())["published_vs_cpu"]["published_full_seconds_per_clip_per_member"]
        * members
    )


def lookahead_sweep(data: Path, teacher: Path, artifact: Path, lookaheads: list[int], epochs: int) -> dict:
    """One student per lookahead, distilled like `artifact` (from its training store), scored on the
    held-out clips `teacher` reconstructed."""
    provenance = load_artifact(artifact).meta.provenance
    scores = {}
    for lookahead in lookaheads:
        cfg = dataclasses.replace(DistillConfig(**provenance["distill"]), lookahead=lookahead, epochs=epochs)
        with tempfile.TemporaryDirectory() as tmp:
            distill(data, Path(provenance["teacher_store"]), Path(tmp), cfg, progress=False)
            groups = evaluate(Path(tmp), data, teacher, tiers=SWEEP_TIERS, missing=())["groups"]
        scores[str(lookahead)] = {tier: _rounded(groups[tier]) for tier in SWEEP_TIERS if tier in groups}
        print(f"lookahead {lookahead:2d}: {scores[str(lookahead)]}")
    return scores


def _rounded(row: dict) -> dict:
    return {k: round(v, 4) for k, v in row.items() if k in ("student", "teacher", "student_vs_teacher")}


def picture(result: dict, examples: dict, out: Path) -> None:
    groups = result["groups"]
    fig = plt.figure(figsize=(13, 8))
    ax = fig.add_subplot(2, 3, 1)
    names = list(groups)
    x = np.arange(len(names))
    ax.bar(x - 0.27, [groups[g]["student"] for g in names], 0.27, label="student, all clips")
    nan = float("nan")
    ax.bar(
        x, [groups[g].get("student_on_teacher_clips", nan) for g in names], 0.27, label="student, teacher's"
    )
    ax.bar(x + 0.27, [groups[g].get("teacher", nan) for g in names], 0.27, label="teacher")
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("masked video correlation")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(2, 3, 2)
    for g in names:
        fractions = list(groups[g]["missing"])
        ax.plot([float(f) for f in fractions], [groups[g]["missing"][f] for f in fractions], "o-", label=g)
    ax.set_xlabel("fraction of neurons missing at run time")
    ax.set_ylabel("student correlation")
    ax.legend(fontsize=6)
    sweep = result.get("lookahead_sweep")
    if sweep:
        ax = fig.add_subplot(2, 3, 3)
        ls = sorted(sweep, key=int)
        for tier in SWEEP_TIERS:
            ax.plot(
                [int(v) for v in ls], [sweep[v][tier]["student"] for v in ls], "o-", label=f"{tier}: student"
            )
        ax.set_ylabel("student vs truth")
        ax.set_xlabel("lookahead L (frames)")
        ax.legend(fontsize=7)
    frames = examples["frames"]
    for row, name in enumerate(("truth", "teacher", "student")):
        for col, t in enumerate(frames):
            ax = fig.add_subplot(6, len(frames), (3 + row) * len(frames) + col + 1)
            ax.imshow(examples[name][t], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=7)
    fig.suptitle(f"{result['mouse']}: model {result['model']}, trial {examples['trial']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--lookaheads", type=int, nargs="*", default=[], help="distil one student per L")
    parser.add_argument("--sweep-epochs", type=int, default=150)
    args = parser.parse_args()

    result = evaluate(args.artifact, args.data, args.teacher)
    store = TeacherStore(args.teacher)
    student_s = student_seconds_per_clip(args.artifact, args.backend)
    teacher_s = teacher_seconds_per_clip(store, result["mouse"])
    result["compute"] = {
        "backend": args.backend,
        "student_seconds_per_clip": student_s,
        "teacher_seconds_per_clip": teacher_s,
        "teacher_over_student": teacher_s / student_s,
        "teacher_settings": store.manifest()["teacher"],
        "teacher_members": len(store.manifest()["models"]),
    }
    published_s = published_seconds_per_clip(result["compute"]["teacher_members"])
    if published_s:
        result["compute"] |= {
            "published_teacher_seconds_per_clip": published_s,
            "published_over_student": published_s / student_s,
        }
    if args.lookaheads:
        result["lookahead_sweep"] = lookahead_sweep(
            args.data, args.teacher, args.artifact, args.lookaheads, args.sweep_epochs
        )

    mouse = pick_mouse(args.data, result["mouse"])
    artifact = load_artifact(args.artifact)
    trial = next(t for t in mouse.trials("oracle") if store.has(mouse.name, t))
    timing = input_timing(mouse, artifact.meta.provenance["distill"]["multi_plane"])
    activity, behavior, pupil, truth = student_inputs(mouse, trial, timing)
    examples = {
        "trial": trial,
        "frames": [60, 120, 180, 240],
        "truth": truth,
        "teacher": store.load(mouse.name, trial),
        "student": decode_clip(artifact.student(), activity, behavior, pupil),
    }
    png = RESULTS / "bench_fidelity.png"
    picture(result, examples, png)
    write_result("bench_fidelity", result | {"picture": png.name})
    for group, row in result["groups"].items():
        print(
            f"{group:22s} student {row['student']:.3f} ({row['clips']} clips); on the teacher's "
            f"{row['teacher_clips']} clips: student {row.get('student_on_teacher_clips', float('nan')):.3f}, "
            f"teacher {row.get('teacher', float('nan')):.3f}"
        )
    print(
        f"per clip: student {student_s * 1e3:.1f} ms, teacher {teacher_s:.1f} s "
        f"-> {teacher_s / student_s:,.0f}x"
    )
    if published_s:
        print(f"published settings: {published_s:,.0f} s per clip -> {published_s / student_s:,.0f}x")


if __name__ == "__main__":
    main()
