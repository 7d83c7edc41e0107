"""How good a decoder is, next to the linear baseline, its teacher and the truth, on held-out clips.

Per group of held-out clips (each tier; the natural movies made of photographs kept out of
training, from the simulator's truth; each out-of-distribution stimulus kind): masked video
correlation (first 30 frames skipped) and SSIM against the true stimulus of the decoder, of the
linear baseline (a ridge decoder fitted on the training trials' true stimuli: what a lab would
pick instead) and of the teacher where its store has the clip, all on the same clips, frames and
mask. Then the decoder with a fraction of neurons missing (their activity held at the training
mean, as a lost ROI looks after normalisation). bench/bench_fidelity.py adds the compute per clip.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stream_decoder.data import (
    CLIP_FRAMES,
    GRAY,
    MouseDataset,
    PlaneTiming,
    load_truth,
    open_mouse,
    student_inputs,
    truth_dir,
)
from stream_decoder.decoder.artifact import Artifact, load_artifact
from stream_decoder.decoder.streaming import StreamingDecoder
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
def decode_clip(decoder, activity, behavior, pupil, missing: np.ndarray | None = None) -> np.ndarray:
    """(T, H, W) in stimulus time, the last L frames left gray (never decoded)."""
    if missing is not None:
        activity = activity.copy()
        activity[:, missing] = decoder.activity_mean.numpy()[missing]
    tensors = [
        torch.from_numpy(np.ascontiguousarray(a, np.float32))[None] for a in (activity, behavior, pupil)
    ]
    frames = decoder.stimulus_frames(*tensors)[0].numpy()
    out = np.full((len(activity), *frames.shape[1:]), GRAY, np.float32)
    out[: len(frames)] = frames
    return out


@dataclass
class Contestant:
    """A decoder under evaluation and the input timing it was trained on."""

    artifact: Artifact
    decoder: StreamingDecoder
    timing: PlaneTiming

    @classmethod
    def open(cls, path: Path, mouse: MouseDataset, role: str) -> "Contestant":
        artifact = load_artifact(path)
        if artifact.meta.data_fingerprint != mouse.fingerprint():
            raise ValueError(
                f"{role} {path}: trained on other data than {mouse.path} (data fingerprint differs)"
            )
        return cls(artifact, artifact.model(), artifact.timing(mouse))

    def decode(self, mouse: MouseDataset, trial: str, missing=None) -> np.ndarray:
        activity, behavior, pupil, _ = student_inputs(mouse, trial, self.timing)
        return decode_clip(self.decoder, activity, behavior, pupil, missing)


def evaluation_mask_of(artifact: Artifact, store: TeacherStore | None, mouse: str):
    """(mask, source): the decoder's own recorded mask, else the teacher's alpha mask, else none."""
    if artifact.evaluation_mask is not None:
        return artifact.evaluation_mask, "artifact"
    alpha = store.alpha(mouse) if store else None
    if alpha is not None:
        return evaluation_mask(alpha), "teacher"
    return None, "none"


def evaluate(
    artifact_dir: Path,
    data: Path,
    teacher: Path | None = None,
    baseline: Path | None = None,
    tiers=HELD_OUT_TIERS,
    missing=MISSING_FRACTIONS,
    seed: int = 0,
) -> dict:
    artifact = load_artifact(artifact_dir)
    mouse = open_mouse(data, artifact.meta.provenance.get("mouse"))
    decoder = Contestant.open(artifact_dir, mouse, "artifact")
    rival = Contestant.open(baseline, mouse, "baseline") if baseline else None
    store = TeacherStore(teacher) if teacher else None
    mask, mask_source = evaluation_mask_of(artifact, store, mouse.name)
    lookahead = max(c.artifact.meta.lookahead for c in (decoder, rival) if c)
    rng = np.random.default_rng(seed)
    results = {}
    for group, trials in clip_groups(mouse, tiers).items():
        rows = []
        for trial in trials:
            truth = mouse.clip(trial).video[:CLIP_FRAMES]
            end = len(truth) - lookahead  # frames every contestant decoded
            scored = {"student": decoder.decode(mouse, trial)}
            if rival:
                scored["baseline"] = rival.decode(mouse, trial)
            if store and store.has(mouse.name, trial):
                scored["teacher"] = store.load(mouse.name, trial)
            row = score(scored, truth, end, mask)
            row["missing"] = {
                str(f): video_correlation(decoder.decode(mouse, trial, lost)[:end], truth[:end], mask)
                for f, lost in lost_neurons(missing, mouse.n_neurons, rng)
            }
            rows.append(row)
        results[group] = summarise(rows)
    return {
        "artifact": str(artifact_dir),
        "model": artifact.model_id,
        "kind": artifact.meta.kind,
        "baseline": None if rival is None else {"artifact": str(baseline), "model": rival.artifact.model_id},
        "mouse": mouse.name,
        "mask_pixels": int(mask.sum()) if mask is not None else None,
        "mask_source": mask_source,
        "groups": results,
    }


def lost_neurons(fractions, n_neurons: int, rng):
    """(fraction, indices of the neurons lost) for each fraction: a fresh random draw per clip."""
    return [(f, rng.permutation(n_neurons)[: round(f * n_neurons)]) for f in fractions]


def score(videos: dict[str, np.ndarray], truth: np.ndarray, end: int, mask) -> dict[str, float]:
    """Correlation and SSIM of each video against the truth, and the decoder against the teacher."""
    row = {}
    for name, video in videos.items():
        row[name] = video_correlation(video[:end], truth[:end], mask)
        row[f"{name}_ssim"] = ssim(video[:end], truth[:end], mask)
    if "teacher" in videos:
        row["student_vs_teacher"] = video_correlation(videos["student"][:end], videos["teacher"][:end], mask)
    return row


def summarise(rows: list[dict]) -> dict:
    """Means over the group's clips; the decoder and baseline also on the teacher's clips alone."""
    keys = dict.fromkeys(k for r in rows for k in r if k != "missing")
    summary = {k: float(np.nanmean([r[k] for r in rows if k in r])) for k in keys}
    summary["clips"] = len(rows)
    summary["teacher_clips"] = sum("teacher" in r for r in rows)
    if summary["teacher_clips"]:  # like-for-like with the teacher, which has only some clips
        for name in ("student", "baseline"):
            if name in summary:
                summary[f"{name}_on_teacher_clips"] = float(
                    np.nanmean([r[name] for r in rows if "teacher" in r])
                )
    summary["missing"] = {f: float(np.nanmean([r["missing"][f] for r in rows])) for f in rows[0]["missing"]}
    return summary
