"""Reconstruct every clip of some tiers of a dataset into a teacher store, sharded across ranks.

Under torchrun, rank r takes every world-th remaining clip; rank 0 writes the manifest and trains
each mouse's alpha mask first. Clips already in the store are skipped, so an interrupted run resumes.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from stream_decoder.data import MouseDataset, open_mice
from stream_decoder.distributed import Ranks
from stream_decoder.encoder.batches import ClipTensors
from stream_decoder.encoder.checkpoint import load_ensemble, member_dirs
from stream_decoder.metrics import frame_correlations, ssim, video_correlation
from stream_decoder.teacher.mask import MaskConfig, evaluation_mask, train_alpha_mask, training_mask
from stream_decoder.teacher.reconstruct import TeacherConfig, reconstruct
from stream_decoder.teacher.store import TeacherStore, relative_to_store

StartVideos = Callable[[list[ClipTensors]], np.ndarray]  # clips -> their starting videos (B, T, H, W)


@dataclass(frozen=True)
class WarmStart:
    """Where each clip's inversion starts instead of gray; the command builds it (from a student).

    `source` names it in the store's manifest; `for_mouse(mouse)` makes that mouse's starting videos.
    """

    source: Path
    for_mouse: Callable[[MouseDataset], StartVideos]


@dataclass(frozen=True)
class Job:
    data: Path
    models: tuple[Path, ...]
    out: Path
    tiers: tuple[str, ...]
    teacher: TeacherConfig
    mask: MaskConfig | None  # None: no mask, every pixel is reconstructed and evaluated
    mask_tier: str = "train"
    mask_clips: int = 8  # clips of `mask_tier` the mask is fitted on
    batch_size: int = 1  # clips reconstructed together
    limit: int | None = None  # at most this many clips per mouse (in trial order)
    warm_start: WarmStart | None = None  # None: every clip starts gray
    device: str | None = None  # cpu or cuda; None: cuda when a GPU is visible (one per rank)


FRAME_SCORE_SKIP = 30  # leading frames left out of the frame-wise score: the models' warm-up


def clip_metrics(recon: np.ndarray, truth: np.ndarray, eval_mask) -> dict[str, float]:
    """Scores of one clip; the frame-wise score is NaN when no frame after the warm-up has contrast."""
    late = frame_correlations(recon[FRAME_SCORE_SKIP:], truth[FRAME_SCORE_SKIP:], eval_mask)
    return {
        "correlation": video_correlation(recon, truth, eval_mask),
        "correlation_unmasked": video_correlation(recon, truth),
        "frame_correlation": float(np.nanmean(late)) if np.isfinite(late).any() else float("nan"),
        "ssim": ssim(recon, truth, eval_mask),
    }


def manifest(
    teacher: TeacherConfig, mask: MaskConfig | None, models, mice: dict, root: Path, warm_start=None
) -> dict:
    """What a store at `root` records of how it was made; a resumed run must match it. Paths are
    relative to the store, so a store moved with its models (or copied to another machine) resumes."""
    return {
        "teacher": teacher.to_dict(),
        "mask": mask.to_dict() if mask else None,
        "models": [relative_to_store(p, root) for m in models for p in member_dirs(m)],
        "fingerprints": {name: mouse.fingerprint() for name, mouse in mice.items()},
        "warm_start": relative_to_store(warm_start, root) if warm_start else None,
    }


def run(job: Job, progress: bool = True) -> TeacherStore:
    ranks = Ranks.start(job.device)
    mice = open_mice(job.data)
    encoders = [e.requires_grad_(False).to(ranks.device) for e in load_ensemble(list(job.models), mice)]
    store = TeacherStore(job.out)
    if ranks.rank == 0:
        warm_source = job.warm_start.source if job.warm_start else None
        store.begin(manifest(job.teacher, job.mask, job.models, mice, job.out, warm_source))
    try:
        for name, mouse in mice.items():
            alpha = _alpha(job, store, ranks, name, mouse, encoders)
            train_mask = training_mask(alpha)
            eval_mask = evaluation_mask(alpha)
            trials = mouse.trials(list(job.tiers))[: job.limit]
            mine = [t for t in trials[ranks.rank :: ranks.world] if not store.has(name, t)]
            start = job.warm_start.for_mouse(mouse) if job.warm_start else None
            bar = tqdm(total=len(mine), desc=f"reconstruct {name}", unit="clip", disable=not progress)
            for first in range(0, len(mine), job.batch_size):
                clips = [ClipTensors.from_clip(mouse.clip(t)) for t in mine[first : first + job.batch_size]]
                started = time.perf_counter()
                init = start(clips) if start else None
                videos = reconstruct(clips, encoders, name, train_mask, job.teacher, init, progress=progress)
                seconds = (time.perf_counter() - started) / len(clips)
                for clip, video in zip(clips, videos, strict=True):
                    metrics = clip_metrics(video, clip.video.numpy(), eval_mask) | {"seconds": seconds}
                    store.save(name, clip.trial, video, metrics)
                bar.update(len(clips))
            bar.close()
        ranks.barrier()
    finally:
        ranks.close()
    return store


def _alpha(job: Job, store: TeacherStore, ranks: Ranks, name: str, mouse, encoders):
    """The mouse's alpha mask: from the store, else fitted by rank 0 and shared through the store."""
    if job.mask is None:
        return None
    if ranks.rank == 0 and store.alpha(name) is None:
        clips = [ClipTensors.from_clip(mouse.clip(t)) for t in mouse.trials(job.mask_tier)[: job.mask_clips]]
        store.save_alpha(name, train_alpha_mask(encoders, clips, name, job.mask))
    ranks.barrier()
    return store.alpha(name)
