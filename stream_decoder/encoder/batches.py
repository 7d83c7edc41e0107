"""Clips held in memory as tensors, and the training windows cut from them each epoch."""

from dataclasses import dataclass

import numpy as np
import torch

from stream_decoder.data import CLIP_FRAMES, Clip, MouseDataset


@dataclass(frozen=True)
class ClipTensors:
    """One trial, time first: video (T, 36, 64), behavior (T, 2), pupil_center (T, 2), responses (T, N)."""

    trial: str
    video: torch.Tensor
    behavior: torch.Tensor
    pupil_center: torch.Tensor
    responses: torch.Tensor

    @classmethod
    def from_clip(cls, clip: Clip) -> "ClipTensors":
        """Only the first CLIP_FRAMES frames of a trial count (Sensorium convention)."""
        arrays = (clip.video, clip.behavior, clip.pupil_center, clip.responses)
        return cls(
            str(clip.trial), *(torch.from_numpy(np.asarray(a[:CLIP_FRAMES], np.float32)) for a in arrays)
        )


@dataclass(frozen=True)
class Window:
    """`frames` consecutive stack frames, `step` raw frames apart, starting at `start` of one clip."""

    mouse: str
    clip: int
    start: int


def load_clips(dataset: MouseDataset, tier: str) -> list[ClipTensors]:
    """Every trial of a tier with its responses; a tier whose responses are withheld is an error."""
    clips = [ClipTensors.from_clip(dataset.clip(trial)) for trial in dataset.trials(tier)]
    for clip in clips:
        if not torch.isfinite(clip.responses).all():
            raise ValueError(f"{dataset.path}: trial {clip.trial} ({tier!r}) has no recorded responses (NaN)")
    return clips


def epoch_batches(
    clips: dict[str, list[ClipTensors]], span: int, batch_size: int, rng: np.random.Generator
) -> list[list[Window]]:
    """About every frame once: each clip is cut into as many `span`-frame windows as fit, at a random
    offset; windows are shuffled and batched within a mouse (one readout per batch), batches shuffled."""
    batches = []
    for mouse, mouse_clips in clips.items():
        windows = []
        for index, clip in enumerate(mouse_clips):
            fits = len(clip.video) // span
            if fits == 0:
                continue
            offset = int(rng.integers(0, len(clip.video) - fits * span + 1))
            windows += [Window(mouse, index, offset + k * span) for k in range(fits)]
        order = rng.permutation(len(windows))
        batches += [
            [windows[i] for i in order[s : s + batch_size]] for s in range(0, len(windows), batch_size)
        ]
    return [batches[i] for i in rng.permutation(len(batches))]


def stack_batch(
    clips: dict[str, list[ClipTensors]], batch: list[Window], frames: int, step: int, device
) -> tuple[torch.Tensor, ...]:
    """The windows of one batch as (video, behavior, pupil_center, responses), batch first."""
    parts = []
    for window in batch:
        clip = clips[window.mouse][window.clip]
        index = window.start + step * torch.arange(frames)
        parts.append(
            (clip.video[index], clip.behavior[index], clip.pupil_center[index], clip.responses[index])
        )
    return tuple(torch.stack(column).to(device) for column in zip(*parts, strict=True))
