"""Sensorium 2023 data: read and write the release's folder format, and a synthetic mouse V1 rig
that writes exactly that format (with its ground truth beside it)."""

from .inputs import input_timing, student_inputs
from .planes import TIME_TOLERANCE_S, PlaneSample, PlaneTiming, held_responses, plane_samples
from .sensorium import (
    BEHAVIOR_CHANNELS,
    CLIP_FRAMES,
    FRAME_RATE_HZ,
    FRAME_SHAPE,
    GRAY,
    TIERS,
    Clip,
    MouseDataset,
    find_mice,
    open_mice,
    open_mouse,
)
from .simulate import simulate
from .truth import Truth, load_truth, truth_dir

__all__ = [
    "BEHAVIOR_CHANNELS",
    "CLIP_FRAMES",
    "FRAME_RATE_HZ",
    "FRAME_SHAPE",
    "GRAY",
    "TIERS",
    "TIME_TOLERANCE_S",
    "Clip",
    "MouseDataset",
    "PlaneSample",
    "PlaneTiming",
    "Truth",
    "find_mice",
    "held_responses",
    "input_timing",
    "load_truth",
    "open_mice",
    "open_mouse",
    "plane_samples",
    "simulate",
    "student_inputs",
    "truth_dir",
]
