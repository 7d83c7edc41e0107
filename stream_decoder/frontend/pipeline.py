"""The front end: a raw frame of one plane in, that plane's neurons' activity out.

Per plane: motion correction -> ROI extraction with neuropil subtraction -> dF/F and online
deconvolution, each stage its own module, each usable on a stack offline (`process_stack`) and
one frame at a time online (`step`), with the same numbers. Its state (the reference, baselines,
noise estimates) belongs to the field of view, not to a session: it lives as long as the process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .deconvolution import DeconvolutionConfig, Deconvolver
from .extraction import ExtractionConfig, Extractor
from .motion import MotionConfig, MotionCorrector, NoMatch
from .rois import RoiSet

__all__ = ["BadPixels", "FrontEnd", "FrontEndConfig", "NoMatch", "PlaneOutput"]

STRIPE_SHARE = 0.5  # a row with this share of its pixels at the ceiling is a saturated stripe


@dataclass(frozen=True)
class FrontEndConfig:
    motion: MotionConfig = field(default_factory=MotionConfig)
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    deconvolution: DeconvolutionConfig = field(default_factory=DeconvolutionConfig)
    # The detector's ceiling (ADU); None: the integer dtype's largest value (float frames: none)
    saturation_adu: float | None = None


class BadPixels(ValueError):
    """A frame that cannot be measured: pixels that are not finite, or a saturated stripe (a PMT
    overload or a scan glitch). Used, it would put a false transient into every ROI it crosses
    and drag their baselines."""


def check_pixels(image: np.ndarray, saturation_adu: float | None) -> None:
    """Raise BadPixels for a non-finite pixel or a row mostly at the ceiling; one reduction when
    nothing reaches the ceiling."""
    ceiling = saturation_adu
    if np.issubdtype(image.dtype, np.integer):
        ceiling = np.iinfo(image.dtype).max if ceiling is None else ceiling
    elif not np.isfinite(image).all():
        raise BadPixels(f"{int((~np.isfinite(image)).sum())} pixels are NaN or infinite")
    if ceiling is None or image.max() < ceiling:
        return
    rows = np.flatnonzero((image >= ceiling).mean(axis=1) >= STRIPE_SHARE)
    if rows.size:
        raise BadPixels(
            f"{rows.size} rows (from row {rows[0]}) are saturated at {ceiling:g} ADU: a PMT overload or "
            "a scan glitch; lower the gain, or set [frontend] saturation_adu to the detector's ceiling"
        )


@dataclass(frozen=True, eq=False)
class PlaneOutput:
    neurons: np.ndarray  # model neuron of each value, increasing (ROIs feeding no neuron left out)
    values: np.ndarray  # float32 activity on the dataset's scale
    dy: float
    dx: float
    peak_sd: float  # the registration's correlation peak, in sd of the correlation
    f: np.ndarray  # the ROIs' fluorescence, neuropil, and dF/F, in `neurons` order
    fneu: np.ndarray
    dff: np.ndarray


class PlaneFrontEnd:
    def __init__(self, rois: RoiSet, plane: int, dt_s: float, cfg: FrontEndConfig, reference=None):
        self.saturation_adu = cfg.saturation_adu
        self.motion = MotionCorrector(rois.frame_shape, cfg.motion, reference)
        self.extractor = Extractor(rois, plane, cfg.extraction)
        self.deconvolver = Deconvolver(self.extractor.members.size, dt_s, cfg.deconvolution)
        neuron = self.extractor.neuron
        mapped = np.flatnonzero(neuron >= 0)
        self.take = mapped[np.argsort(neuron[mapped], kind="stable")]  # ROI of each output, by neuron
        self.neurons = neuron[self.take]

    def step(self, image: np.ndarray) -> PlaneOutput:
        check_pixels(image, self.saturation_adu)
        registered, shift = self.motion.step(image)
        f, fneu = self.extractor.step(registered)
        events = self.deconvolver.step(self.extractor.corrected(f, fneu))
        take, dff = self.take, self.deconvolver.dff
        return PlaneOutput(
            self.neurons, events[take], shift.dy, shift.dx, shift.peak_sd, f[take], fneu[take], dff[take]
        )


class FrontEnd:
    """All planes of one field of view. `dt_s`: seconds between two frames of the same plane."""

    def __init__(
        self,
        rois: RoiSet,
        dt_s: float,
        cfg: FrontEndConfig | None = None,
        references: list[np.ndarray] | None = None,
    ):
        if dt_s <= 0:
            raise ValueError(f"front end: a plane's sampling interval must be > 0 s, got {dt_s}")
        self.rois = rois
        self.cfg = cfg = cfg or FrontEndConfig()
        if references is not None and len(references) != rois.n_planes:
            raise ValueError(f"{len(references)} motion references for {rois.n_planes} planes")
        self.planes = [
            PlaneFrontEnd(rois, p, dt_s, cfg, None if references is None else references[p])
            for p in range(rois.n_planes)
        ]

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.rois.frame_shape

    @property
    def n_planes(self) -> int:
        return self.rois.n_planes

    @property
    def bound_hits(self) -> int:
        return sum(p.motion.bound_hits for p in self.planes)

    def step(self, plane: int, image: np.ndarray) -> PlaneOutput:
        """One raw frame of `plane`; raises BadPixels for a frame that cannot be measured (before
        any state sees it) and NoMatch for one unlike the plane's reference."""
        return self.planes[plane].step(image)

    def process_stack(self, plane: int, stack: np.ndarray) -> np.ndarray:
        """Offline: (T, the plane's neurons in `planes[plane].neurons` order) activity of a stack
        of one plane's raw frames."""
        front = self.planes[plane]
        registered, _ = front.motion.register(stack)
        f, fneu = front.extractor.stack(registered)
        return front.deconvolver.run(front.extractor.corrected(f, fneu))[:, front.take]
