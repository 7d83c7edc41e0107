"""How repeatable a mouse's responses are: one of the numbers that say whether data behave like
real recordings (bench/bench_realism.py prints it beside the others)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ..metrics import pearson
from .sensorium import CLIP_FRAMES, MouseDataset

REPEATED_TIERS = ("oracle", "final_test_main")


def repeat_reliability(
    mouse: MouseDataset, tiers: Sequence[str] = REPEATED_TIERS, skip_frames: int = 50
) -> np.ndarray:
    """(N,) per neuron: correlation over frames between one repeat of a clip and the mean of the
    other repeats, averaged over repeats and clips. The first `skip_frames` are left out, as in
    the community's metrics; NaN for a neuron silent in every repeat."""
    per_clip = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # silent neurons: NaN, by design
        for group in mouse.repeats(tiers):
            clips = [mouse.clip(trial) for trial in group]
            frames = min(CLIP_FRAMES, *(clip.n_frames for clip in clips))
            responses = np.stack([clip.responses[skip_frames:frames] for clip in clips])  # (k, T, N)
            others = (responses.sum(0) - responses) / (len(responses) - 1)
            per_clip.append(
                np.nanmean([pearson(r, o, axis=0) for r, o in zip(responses, others, strict=True)], axis=0)
            )
        if not per_clip:
            raise ValueError(f"{mouse.path}: no repeated clips in tiers {list(tiers)}")
        return np.nanmean(np.stack(per_clip), axis=0)
