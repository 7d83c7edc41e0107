"""ROI extraction: one sparse product per frame gives every ROI's soma and neuropil fluorescence.

The neuropil of an ROI is the ring around it (from `neuropil_gap_px` beyond its radius outwards
until it holds `neuropil_pixels` pixels), leaving out every pixel of any ROI, as suite2p builds
it, drawn on 2 x 2 bins of the frame. Soma weights are the ROI's own (normalised to sum 1),
neuropil weights uniform; both sit in one CSR matrix, so a frame costs one product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .rois import RoiSet


@dataclass(frozen=True)
class ExtractionConfig:
    neuropil_coefficient: float = 0.7  # F - 0.7 * Fneu, suite2p's default
    # The detector's output with no light (ADU): ScanImage's channel offset, or the mean of frames
    # with the shutter closed. Left in, it inflates the baseline and shrinks every dF/F.
    dark_level: float = 0.0
    neuropil_gap_px: float = 2.0  # ring starts this far outside the ROI's radius
    neuropil_pixels: int = 350  # ring grows until it holds this many pixels (suite2p's min_neuropil_pixels)
    neuropil_max_radius_px: float = 60.0  # ...or reaches this radius
    neuropil_bin: int = 2  # rings are drawn on the frame binned this many px square
    # Extract (and deconvolve) ROIs that feed no model neuron too; by default they cost nothing,
    # though their pixels stay out of every neuropil ring.
    extract_unused: bool = False

    def __post_init__(self):
        if not 0 <= self.neuropil_coefficient <= 1.5 or self.neuropil_pixels < 1 or self.neuropil_bin < 1:
            raise ValueError(
                "[frontend] need 0 <= neuropil_coefficient <= 1.5, neuropil_pixels >= 1 and neuropil_bin >= 1"
            )


def neuropil_masks(
    rois: RoiSet, members: np.ndarray, cfg: ExtractionConfig, occupied: np.ndarray | None = None
) -> list[np.ndarray]:
    """Indices into the binned image (`neuropil_bin` px square bins) of each member ROI's neuropil
    ring: the bins nearest the ROI beyond its radius plus the gap, none touching an ROI of
    `occupied` (default: the members)."""
    height, width = rois.frame_shape
    b = cfg.neuropil_bin
    bh, bw = height // b, width // b
    taken = np.zeros(height * width, bool)
    for r in members if occupied is None else occupied:
        taken[rois.roi_pixels(r)[0]] = True
    taken = taken.reshape(height, width)[: bh * b, : bw * b].reshape(bh, b, bw, b).any(axis=(1, 3)).ravel()
    wanted = max(1, round(cfg.neuropil_pixels / b**2))
    reach = int(min(cfg.neuropil_max_radius_px, max(height, width)) / b)
    rings = []
    for r in members:
        pixels, weights = rois.roi_pixels(r)
        if pixels.size == 0:
            rings.append(np.zeros(0, np.int64))
            continue
        y, x = np.divmod(pixels, width)
        w = np.abs(weights) + 1e-12
        cy, cx = (np.average(y, weights=w) + 0.5) / b - 0.5, (np.average(x, weights=w) + 0.5) / b - 0.5
        inner = (np.sqrt(pixels.size / np.pi) + cfg.neuropil_gap_px) / b
        y0, y1 = max(0, int(cy) - reach), min(bh, int(cy) + reach + 1)
        x0, x1 = max(0, int(cx) - reach), min(bw, int(cx) + reach + 1)
        gy, gx = np.mgrid[y0:y1, x0:x1]
        distance = np.hypot(gy - cy, gx - cx).ravel()
        flat = (gy * bw + gx).ravel()
        free = (distance >= inner) & ~taken[flat]
        order = np.argsort(distance[free], kind="stable")[:wanted]
        rings.append(np.sort(flat[free][order]))
    return rings


class Extractor:
    """Fluorescence of the ROIs of one plane: `step` for a frame, `stack` for many; one matrix.

    Its columns are the frame's pixels, then the bins of the binned frame the neuropil rings are
    drawn on (a smooth signal: binning keeps every photon and quarters the ring's nonzeros)."""

    def __init__(self, rois: RoiSet, plane: int, cfg: ExtractionConfig):
        self.cfg = cfg
        in_plane = rois.of_plane(plane)
        used = rois.neuron[in_plane] >= 0
        self.members = in_plane if cfg.extract_unused else in_plane[used]  # the ROIs extracted
        self.skipped = int((~used).sum()) if not cfg.extract_unused else 0
        self.neuron = rois.neuron[self.members]
        self.shape = height, width = rois.frame_shape
        b = cfg.neuropil_bin
        self.binned = (height // b, width // b)
        rings = neuropil_masks(rois, self.members, cfg, occupied=in_plane)
        rows, cols, values = [], [], []
        n = self.members.size
        for i, r in enumerate(self.members):
            pixels, weights = rois.roi_pixels(r)
            total = weights.sum()
            rows.append(np.full(pixels.size, i))
            cols.append(pixels)
            values.append(weights / total if total > 0 else weights)
            ring = rings[i]
            rows.append(np.full(ring.size, n + i))
            cols.append(height * width + ring)
            values.append(np.full(ring.size, 1.0 / max(ring.size, 1), np.float32))
        self.matrix = sp.csr_matrix(
            (
                np.concatenate(values).astype(np.float32) if n else np.zeros(0, np.float32),
                (np.concatenate(rows) if n else [], np.concatenate(cols) if n else []),
            ),
            shape=(2 * n, height * width + self.binned[0] * self.binned[1]),
        )
        self.matrix.sort_indices()
        self._input = np.empty(self.matrix.shape[1], np.float32)
        self.ring_pixels = np.array([ring.size for ring in rings]) * b**2

    def _columns(self, image: np.ndarray) -> np.ndarray:
        """The product's input for one frame: its pixels, then its bins' means (kept buffer)."""
        b, (bh, bw) = self.cfg.neuropil_bin, self.binned
        pixels = self.shape[0] * self.shape[1]
        self._input[:pixels] = image.ravel()
        bins = self._input[pixels:].reshape(bh, bw)
        bins[...] = 0.0
        for dy in range(b):  # b * b strided adds: far cheaper than a reshaped mean
            for dx in range(b):
                bins += image[dy : bh * b : b, dx : bw * b : b]
        bins *= np.float32(1.0 / b**2)
        return self._input

    def step(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(F, Fneu) of each ROI in one registered frame."""
        both = self.matrix @ self._columns(image)
        n = self.members.size
        return both[:n], both[n:]

    def stack(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, R) F and Fneu of a stack of registered frames: one sparse-dense product."""
        columns = np.stack([self._columns(image).copy() for image in images])
        both = (self.matrix @ columns.T).T
        n = self.members.size
        return both[:, :n], both[:, n:]

    def corrected(self, f: np.ndarray, fneu: np.ndarray) -> np.ndarray:
        """Neuropil-corrected fluorescence above the dark level (weights sum to 1, so the dark
        level is subtracted once from each sum)."""
        k, dark = self.cfg.neuropil_coefficient, self.cfg.dark_level
        return (f - dark) - k * (fneu - dark)
