"""Sensorium 2023 data: read and write the release's folder format, and a synthetic mouse V1 rig
that writes exactly that format (with its ground truth beside it)."""

from .planes import PlaneSample, PlaneTiming, held_responses, plane_samples
from .sensorium import CLIP_FRAMES, FRAME_SHAPE, TIERS, Clip, MouseDataset, find_mice
from .simulate import simulate
from .truth import Truth, load_truth, truth_dir

__all__ = [
    "CLIP_FRAMES",
    "FRAME_SHAPE",
    "TIERS",
    "Clip",
    "MouseDataset",
    "PlaneSample",
    "PlaneTiming",
    "Truth",
    "find_mice",
    "held_responses",
    "load_truth",
    "plane_samples",
    "simulate",
    "truth_dir",
]
