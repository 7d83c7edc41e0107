"""A recorded trial as a streaming decoder sees it: what distillation, evaluation and the teacher's
warm start all feed a student, so that offline and online decoding are one computation."""

from __future__ import annotations

import numpy as np

from .planes import PlaneTiming, held_responses
from .sensorium import CLIP_FRAMES, MouseDataset


def input_timing(
    mouse: MouseDataset, multi_plane: bool, n_planes: int | None = None, volume_rate_hz: float | None = None
) -> PlaneTiming:
    """The mouse's own rig timing or single-plane 30 Hz input. A synthetic mouse's timing is its
    simulator truth's; a recording's is `n_planes` planes by cell depth at `volume_rate_hz`."""
    if not multi_plane:
        return PlaneTiming.single_plane(mouse.n_neurons)
    return PlaneTiming.for_mouse(mouse.path, n_planes, volume_rate_hz)


def student_inputs(
    mouse: MouseDataset, trial: str, timing: PlaneTiming
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(activity, behavior, pupil centre, video) of one trial as the daemon would feed them, (T, ...)."""
    clip = mouse.clip(trial)
    activity = held_responses(clip.responses[:CLIP_FRAMES], timing)
    return activity, clip.behavior[:CLIP_FRAMES], clip.pupil_center[:CLIP_FRAMES], clip.video[:CLIP_FRAMES]
