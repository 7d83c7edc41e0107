"""Rigid motion correction: phase correlation against a reference image, sub-pixel, bounded.

Per frame: one real FFT of the tapered frame (or of its central `estimate_px` square: motion is
rigid, and in a dense field the centre says where the whole frame went at a quarter of the cost),
its whitened cross-power with the reference's (kept), a Gaussian low-pass (suite2p's `smooth_sigma`)
so the correlation peak is smooth, one inverse FFT, the peak searched only within the shift bound,
then a Gaussian (log- parabola) fit through the peak and its neighbours for the sub-pixel part. The
frame is moved back by bilinear interpolation (two separable blends; beyond the edge, the frame's
mean). A peak on the bound is clamped there and counted; a frame whose peak stands out from the
correlation's noise by less than `min_peak_sd` matches the reference nowhere (shutter closed,
another field of view) and is refused.

The reference is loaded, or built online from the first `reference_frames` frames of the plane: each
registered to the first frame, then averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as fft


@dataclass(frozen=True)
class MotionConfig:
    max_shift_fraction: float = 0.1  # bound on |dy|, |dx| as a fraction of the frame (suite2p's maxregshift)
    smooth_sigma_px: float = 1.15  # low-pass of the phase correlation (suite2p's smooth_sigma)
    taper_px: int = 20  # cosine taper at the edges, so the frame's border does not correlate
    estimate_px: int = (
        0  # side of a central square to estimate the shift on (dense fields: 4x faster); 0: all
    )
    reference_frames: int = 30  # frames averaged into an online reference
    min_peak_sd: float = 8.0  # a peak lower than this many sd of the correlation is no match
    fft_workers: int = 1

    def __post_init__(self):
        if not 0 < self.max_shift_fraction < 0.5 or self.reference_frames < 1 or self.fft_workers < 1:
            raise ValueError(
                "[frontend] need 0 < max_shift_fraction < 0.5, reference_frames >= 1, fft_workers >= 1"
            )


class NoMatch(ValueError):
    """A frame that matches the motion reference nowhere within the shift bound."""


@dataclass(frozen=True)
class Shift:
    dy: float
    dx: float
    peak_sd: float  # the correlation peak in sd of the correlation
    at_bound: bool  # clamped to the bound


def _taper(shape: tuple[int, int], width: int) -> np.ndarray:
    def edge(n):
        ramp = np.ones(n, np.float32)
        w = min(width, n // 4)
        if w:
            ramp[:w] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(w) + 0.5) / w)
            ramp[-w:] = ramp[:w][::-1]
        return ramp

    return np.outer(edge(shape[0]), edge(shape[1]))


class MotionCorrector:
    """Registers the frames of one plane; `step` online, `register` on a stack: the same numbers."""

    def __init__(self, frame_shape: tuple[int, int], cfg: MotionConfig, reference: np.ndarray | None = None):
        self.shape = height, width = tuple(frame_shape)
        self.cfg = cfg
        side = cfg.estimate_px or max(self.shape)
        self.window = tuple(min(side, n) for n in self.shape)  # the estimated square
        self.crop = tuple(
            slice((n - w) // 2, (n - w) // 2 + w) for n, w in zip(self.shape, self.window, strict=True)
        )
        self.bound = max(1, min(int(cfg.max_shift_fraction * min(self.shape)), min(self.window) // 2 - 2))
        self.taper = _taper(self.window, cfg.taper_px)
        ky = fft.fftfreq(self.window[0])[:, None]
        kx = fft.rfftfreq(self.window[1])[None, :]
        self.lowpass = np.exp(-2 * (np.pi * cfg.smooth_sigma_px) ** 2 * (ky**2 + kx**2)).astype(np.float32)
        self._rows = np.r_[-self.bound : self.bound + 1] % self.window[0]
        self._cols = np.r_[-self.bound : self.bound + 1] % self.window[1]
        m = self.margin = self.bound + 2
        self._padded = np.empty((height + 2 * m, width + 2 * m), np.float32)
        self._blend = np.empty((height + 1, width), np.float32)
        self.bound_hits = 0
        self._building: list[np.ndarray] = []
        self._reference_fft = None
        self.reference = None
        if reference is not None:
            reference = np.asarray(reference, np.float32)
            if reference.shape != self.shape:
                raise ValueError(f"motion reference of shape {reference.shape}, frames are {self.shape}")
            self._set_reference(reference)

    @property
    def ready(self) -> bool:
        """True once the reference is final (loaded, or built from `reference_frames` frames)."""
        return self.reference is not None and not self._building

    def _set_reference(self, image: np.ndarray) -> None:
        self.reference = image
        spectrum = self._spectrum(image)
        # whitened and low-passed once: per frame only the frame's own spectrum is normalised
        self._reference_fft = (np.conj(spectrum) * self.lowpass / (np.abs(spectrum) + 1e-12)).astype(
            np.complex64
        )

    def _spectrum(self, image: np.ndarray) -> np.ndarray:
        square = image[self.crop]
        centred = (square - square.mean()) * self.taper
        return fft.rfft2(centred, workers=self.cfg.fft_workers)

    def estimate(self, image: np.ndarray) -> Shift:
        """How far the content of `image` moved relative to the reference (rows, cols)."""
        cross = self._spectrum(image)
        cross /= np.abs(cross) + 1e-12
        cross *= self._reference_fft
        corr = fft.irfft2(cross, s=self.window, workers=self.cfg.fft_workers)
        b = self.bound
        window = corr[np.ix_(self._rows, self._cols)]
        iy, ix = np.unravel_index(int(np.argmax(window)), window.shape)
        peak_sd = float((window[iy, ix] - window.mean()) / (window.std() + 1e-12))
        at_bound = iy in (0, 2 * b) or ix in (0, 2 * b)
        dy = iy - b + _subpixel(window[max(iy - 1, 0) : iy + 2, ix], iy in (0, 2 * b))
        dx = ix - b + _subpixel(window[iy, max(ix - 1, 0) : ix + 2], ix in (0, 2 * b))
        return Shift(float(dy), float(dx), peak_sd, at_bound)

    def apply(self, image: np.ndarray, shift: Shift) -> np.ndarray:
        """`image` moved back by `shift`: registered(y, x) = image(y + dy, x + dx), bilinear."""
        (height, width), m = self.shape, self.margin
        padded = self._padded
        outside = image.mean()  # the margins only: the frame overwrites the middle
        padded[:m], padded[m + height :] = outside, outside
        padded[m : m + height, :m], padded[m : m + height, m + width :] = outside, outside
        padded[m : m + height, m : m + width] = image
        iy, ix = int(np.floor(shift.dy)), int(np.floor(shift.dx))
        fy, fx = np.float32(shift.dy - iy), np.float32(shift.dx - ix)
        rows = padded[m + iy : m + iy + height + 1]
        blend = self._blend  # along x: (1 - fx) left + fx right, for the height + 1 rows needed
        np.multiply(rows[:, m + ix + 1 : m + ix + 1 + width], fx, out=blend)
        blend += (1 - fx) * rows[:, m + ix : m + ix + width]
        out = blend[1:] * fy  # along y
        out += (1 - fy) * blend[:-1]
        return out

    def step(self, image: np.ndarray) -> tuple[np.ndarray, Shift]:
        """Register one frame: (registered float32 image, its shift). Raises NoMatch."""
        image = np.asarray(image, np.float32)
        if self.reference is None:
            self._set_reference(image)
        shift = self.estimate(image)
        if shift.peak_sd < self.cfg.min_peak_sd:
            raise NoMatch(
                f"the frame matches the motion reference nowhere within {self.bound} px "
                f"(peak {shift.peak_sd:.1f} sd < {self.cfg.min_peak_sd:g})"
            )
        if shift.at_bound:
            self.bound_hits += 1
        registered = self.apply(image, shift)
        if not self.ready:
            self._building.append(registered)
            if len(self._building) == self.cfg.reference_frames:
                self._set_reference(np.mean(self._building, axis=0, dtype=np.float32))
                self._building = []
        return registered, shift

    def register(self, stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offline: (registered stack, (T, 2) shifts), frame by frame as `step` would."""
        registered = np.empty(stack.shape, np.float32)
        shifts = np.empty((len(stack), 2))
        for k, image in enumerate(stack):
            registered[k], shift = self.step(image)
            shifts[k] = shift.dy, shift.dx
        return registered, shifts


def _subpixel(three: np.ndarray, on_edge: bool) -> float:
    """Offset of a Gaussian through a peak and its two neighbours (0 on the bound or a flat top)."""
    if on_edge or three.size != 3:
        return 0.0
    left, mid, right = np.log(np.maximum(three, 1e-12))
    denominator = left - 2 * mid + right
    return float(np.clip(0.5 * (left - right) / denominator, -0.5, 0.5)) if denominator < 0 else 0.0
