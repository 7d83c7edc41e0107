"""How good the student is, next to its teacher and the truth, on clips it never trained on.

Per group of held-out clips (each tier; the natural movies made of photographs kept out of
training, from the simulator's truth; each out-of-distribution stimulus kind): masked video
correlation (first 30 frames skipped) and SSIM of student and teacher against the true stimulus,
and student against teacher. Then the student with a fraction of neurons missing (their activity
held at the training mean, as a lost ROI looks after normalisation), and the compute per clip of
student and teacher (bench/bench_fidelity.py measures that on the serving backend).
"""

from pathlib import Path

import numpy as np
import torch

from stream_decoder.data import CLIP_FRAMES, load_truth, truth_dir
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.distill import input_timing, pick_mouse, student_inputs
from stream_decoder.metrics import ssim, video_correlation
from stream_decoder.teacher.mask import evaluation_mask
from stream_decoder.teacher.store import TeacherStore

HELD_OUT_TIERS = ("oracle", "live_test_main", "live_test_bonus", "final_test_main", "final_test_bonus")
MISSING_FRACTIONS = (0.0, 0.125, 0.25, 0.5, 0.75)


def clip_groups(mouse, tiers) -> dict[str, list[str]]:
    groups = {tier: mouse.trials(tier) for tier in tiers}
    if truth_dir(mouse.path).is_dir():
        records = load_truth(mouse.path).trials
        held = set().union(*map(set, groups.values()))
        groups["held_out_photographs"] = [t for t in held if records[t].get("held_out")]
        for kind in sorted({records[t]["kind"] for t in held} - {"natural"}):
            groups[kind] = [t for t in held if records[t]["kind"] == kind]
    return {name: sorted(trials, key=int) for name, trials in groups.items() if trials}


@torch.no_grad()
def decode_clip(student, activity, behavior, pupil, missing: np.ndarray | None = None) -> np.ndarray:
    """(T, H, W) in stimulus time, the last L frames left gray (never decoded)."""
    if missing is not None:
        activity = activity.copy()
        activity[:, missing] = student.activity_mean.numpy()[missing]
    tensors = [
        torch.from_numpy(np.ascontiguousarray(a, np.float32))[None] for a in (activity, behavior, pupil)
    ]
    frames = student.stimulus_frames(*tensors)[0].numpy()
    out = np.full((len(activity), *frames.shape[1:]), 127.5, np.float32)
    out[: len(frames)] = frames
    return out


def evaluate(
    artifact_dir: Path,
    data: Path,
    teacher: Path | None,
    tiers=HELD_OUT_TIERS,
    missing=MISSING_FRACTIONS,
    seed: int = 0,
) -> dict:
    artifact = load_artifact(artifact_dir)
    student = artifact.student()
    provenance = artifact.meta.provenance
    mouse = pick_mouse(data, provenance.get("mouse"))
    if mouse.fingerprint() != artifact.meta.data_fingerprint:
        raise ValueError(f"{artifact_dir}: trained on other data than {mouse.path} (fingerprint differs)")
    store = TeacherStore(teacher) if teacher else None
    alpha = store.alpha(mouse.name) if store else None
    mask = evaluation_mask(alpha)
    timing = input_timing(mouse, provenance.get("distill", {}).get("multi_plane", False))
    stop = CLIP_FRAMES - student.cfg.lookahead
    rng = np.random.default_rng(seed)
    results = {}
    for group, trials in clip_groups(mouse, tiers).items():
        rows = []
        for trial in trials:
            activity, behavior, pupil, truth = student_inputs(mouse, trial, timing)
            end = min(stop, len(truth) - student.cfg.lookahead)
            decoded = decode_clip(student, activity, behavior, pupil)
            row = {
                "student": video_correlation(decoded[:end], truth[:end], mask),
                "student_ssim": ssim(decoded[:end], truth[:end], mask),
            }
            if store and store.has(mouse.name, trial):
                recon = store.load(mouse.name, trial)
                row |= {
                    "teacher": video_correlation(recon[:end], truth[:end], mask),
                    "teacher_ssim": ssim(recon[:end], truth[:end], mask),
                    "student_vs_teacher": video_correlation(decoded[:end], recon[:end], mask),
                }
            row["missing"] = {
                str(f): video_correlation(
                    decode_clip(
                        student,
                        activity,
                        behavior,
                        pupil,
                        rng.permutation(mouse.n_neurons)[: round(f * mouse.n_neurons)],
                    )[:end],
                    truth[:end],
                    mask,
                )
                for f in missing
            }
            rows.append(row)
        results[group] = summarise(rows)
    return {
        "artifact": str(artifact_dir),
        "model": artifact.model_id,
        "mouse": mouse.name,
        "mask_pixels": int(mask.sum()) if mask is not None else None,
        "groups": results,
    }


def summarise(rows: list[dict]) -> dict:
    keys = dict.fromkeys(k for r in rows for k in r if k != "missing")
    summary = {k: float(np.nanmean([r[k] for r in rows if k in r])) for k in keys}
    summary["clips"] = len(rows)
    summary["teacher_clips"] = sum("teacher" in r for r in rows)
    if summary["teacher_clips"]:  # the student on the same clips, for a like-for-like ratio
        summary["student_on_teacher_clips"] = float(
            np.nanmean([r["student"] for r in rows if "teacher" in r])
        )
    summary["missing"] = {f: float(np.nanmean([r["missing"][f] for r in rows])) for f in rows[0]["missing"]}
    return summary
