"""Multi-plane acquisition timing: what a rig publishes per plane, and what a holder of the latest
values sees on the 30 Hz grid.

A two-photon rig imaging several planes acquires each plane once per volume, at its own phase.
`plane_samples` is what such a rig publishes (the replay tool sends these); `held_responses` is
what a daemon that keeps each neuron's latest published value sees at every 30 Hz tick (the
distillation trains on it). Both read the same 30 Hz responses at the same acquisition times,
so offline and online are one computation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .sensorium import FRAME_RATE_HZ, MouseDataset

# An acquisition time within this of a frame boundary counts as on it (float round-off): its
# sample belongs to the frame starting there and is seen at that frame's tick.
TIME_TOLERANCE_S = 1e-6


@dataclass(frozen=True, eq=False)
class PlaneTiming:
    """Which plane each neuron is imaged in, and when each plane is acquired.

    Plane p of volume k is acquired at `k / volume_rate_hz + plane_offsets_s[p]` seconds after
    the clip's first frame.
    """

    n_planes: int
    volume_rate_hz: float
    plane: np.ndarray  # (N,) int, plane index of each neuron
    plane_offsets_s: np.ndarray  # (n_planes,) seconds, each in [0, 1 / volume_rate_hz)

    def __post_init__(self):
        plane = np.asarray(self.plane, dtype=np.int64)
        offsets = np.asarray(self.plane_offsets_s, dtype=np.float64)
        if self.n_planes < 1 or self.volume_rate_hz <= 0:
            raise ValueError(
                f"need n_planes >= 1 and volume_rate_hz > 0, got {self.n_planes}, {self.volume_rate_hz}"
            )
        if (
            offsets.shape != (self.n_planes,)
            or np.any(offsets < 0)
            or np.any(offsets >= 1 / self.volume_rate_hz)
        ):
            raise ValueError(
                f"plane_offsets_s must hold {self.n_planes} offsets in [0, {1 / self.volume_rate_hz:.4f}) s, "
                f"got {offsets.tolist()}"
            )
        if plane.ndim != 1 or (plane.size and (plane.min() < 0 or plane.max() >= self.n_planes)):
            raise ValueError(f"plane must give each neuron a plane in 0..{self.n_planes - 1}")
        object.__setattr__(self, "plane", plane)
        object.__setattr__(self, "plane_offsets_s", offsets)

    @classmethod
    def evenly_spaced(cls, plane: np.ndarray, n_planes: int, volume_rate_hz: float) -> PlaneTiming:
        """Planes acquired one after another, spread evenly over the volume period."""
        offsets = np.arange(n_planes) / (n_planes * volume_rate_hz)
        return cls(n_planes, volume_rate_hz, np.asarray(plane), offsets)

    @classmethod
    def single_plane(cls, n_neurons: int, rate_hz: float = FRAME_RATE_HZ) -> PlaneTiming:
        return cls(1, rate_hz, np.zeros(n_neurons, dtype=np.int64), np.zeros(1))

    @classmethod
    def from_depths(cls, depths_um: np.ndarray, n_planes: int, volume_rate_hz: float) -> PlaneTiming:
        """Planes of a real recording from neuron depths: the n_planes - 1 widest gaps between
        distinct depths separate the planes (shallowest plane first, acquired first)."""
        depths = np.asarray(depths_um, dtype=np.float64)
        levels = np.unique(depths)
        if len(levels) < n_planes:
            raise ValueError(f"neurons lie at {len(levels)} distinct depths, too few for {n_planes} planes")
        gaps = np.diff(levels)
        cuts = np.sort(levels[1:][np.argsort(gaps, kind="stable")[len(gaps) - (n_planes - 1) :]])
        plane = np.searchsorted(cuts, depths, side="right")
        return cls.evenly_spaced(plane, n_planes, volume_rate_hz)

    @classmethod
    def for_mouse(
        cls, mouse_path: str | Path, n_planes: int | None = None, volume_rate_hz: float | None = None
    ) -> PlaneTiming:
        """A mouse's timing: the simulator's own when a truth folder sits beside the mouse, else
        planes from cell_motor_coordinates depth at the number of planes and volume rate the
        user gives (a real recording does not store them)."""
        from .truth import load_truth, truth_dir  # imported here: the truth module builds on this one

        mouse_path = Path(mouse_path)
        if truth_dir(mouse_path).is_dir():
            return load_truth(mouse_path).plane_timing
        if n_planes is None or volume_rate_hz is None:
            raise ValueError(
                f"{mouse_path}: no simulator truth beside it, so give the number of planes and the "
                "volume rate of the recording"
            )
        depths = MouseDataset(mouse_path).cell_motor_coordinates[:, 2]
        return cls.from_depths(depths, n_planes, volume_rate_hz)

    def neurons_of(self, plane: int) -> np.ndarray:
        return np.flatnonzero(self.plane == plane)

    def acquisition_times(self, plane: int, n_frames: int) -> np.ndarray:
        """Times (s) at which `plane` is acquired during a clip of n_frames at 30 Hz."""
        period = 1.0 / self.volume_rate_hz
        duration = n_frames / FRAME_RATE_HZ
        n_volumes = int(np.ceil((duration - self.plane_offsets_s[plane] - TIME_TOLERANCE_S) / period))
        return np.arange(max(n_volumes, 0)) * period + self.plane_offsets_s[plane]


def frame_of(t: np.ndarray | float) -> np.ndarray:
    """30 Hz frame that contains acquisition time t (frame i spans [i/30, (i+1)/30))."""
    return np.floor((np.asarray(t) + TIME_TOLERANCE_S) * FRAME_RATE_HZ).astype(np.int64)


class PlaneSample(NamedTuple):
    t_acq: float
    plane: int
    neurons: np.ndarray  # (n,) indices into the neuron order
    values: np.ndarray  # (n,) float32


def _check(responses30: np.ndarray, timing: PlaneTiming) -> np.ndarray:
    responses30 = np.asarray(responses30)
    if responses30.ndim != 2 or responses30.shape[1] != len(timing.plane):
        raise ValueError(
            f"responses of shape {responses30.shape} do not match the timing's {len(timing.plane)} neurons "
            "(expected (T, N))"
        )
    return responses30


def plane_samples(responses30: np.ndarray, timing: PlaneTiming) -> Iterator[PlaneSample]:
    """What the rig publishes, in acquisition order: per plane and volume, that plane's neurons'
    values read off the 30 Hz responses at the frame holding the acquisition time."""
    responses30 = _check(responses30, timing)
    n_frames = len(responses30)
    events = []
    for plane in range(timing.n_planes):
        for t in timing.acquisition_times(plane, n_frames):
            events.append((float(t), plane))
    events.sort()
    members = [timing.neurons_of(p) for p in range(timing.n_planes)]
    for t, plane in events:
        neurons = members[plane]
        values = np.asarray(responses30[frame_of(t), neurons], dtype=np.float32)
        yield PlaneSample(t, plane, neurons, values)


def held_responses(responses30: np.ndarray, timing: PlaneTiming, initial: float = 0.0) -> np.ndarray:
    """(T, N): at 30 Hz tick i (time i/30), each neuron's latest published value; `initial`
    before its plane's first acquisition. Single-plane timing at 30 Hz gives the input back."""
    responses30 = _check(responses30, timing)
    n_frames = len(responses30)
    held = np.full(responses30.shape, initial, dtype=np.float32)
    ticks = np.arange(n_frames) / FRAME_RATE_HZ
    for plane in range(timing.n_planes):
        neurons = timing.neurons_of(plane)
        times = timing.acquisition_times(plane, n_frames)
        if not len(neurons) or not len(times):
            continue
        latest = np.searchsorted(times, ticks + TIME_TOLERANCE_S, side="right") - 1
        ready = latest >= 0
        source = frame_of(times)[latest[ready]]
        held[np.ix_(np.flatnonzero(ready), neurons)] = responses30[np.ix_(source, neurons)]
    return held
