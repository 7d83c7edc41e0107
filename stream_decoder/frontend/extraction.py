"""ROI extraction: one sparse product per frame gives every ROI's soma and neuropil fluorescence.

The neuropil of an ROI is the ring around it (from `neuropil_gap_px` beyond its radius outwards
until it holds `neuropil_pixels` pixels), leaving out every pixel of any ROI, as suite2p builds
it. Soma weights are the ROI's own (normalised to sum 1), neuropil weights uniform; both sit in
one (2R x pixels) CSR matrix, so a frame costs one product.
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

    def __post_init__(self):
        if not 0 <= self.neuropil_coefficient <= 1.5 or self.neuropil_pixels < 1:
            raise ValueError("[frontend] need 0 <= neuropil_coefficient <= 1.5 and neuropil_pixels >= 1")


def neuropil_masks(rois: RoiSet, members: np.ndarray, cfg: ExtractionConfig) -> list[np.ndarray]:
    """Flat pixel indices of each member ROI's neuropil ring, no ROI's pixel in it."""
    height, width = rois.frame_shape
    taken = np.zeros(height * width, bool)
    for r in members:
        taken[rois.roi_pixels(r)[0]] = True
    rings = []
    for r in members:
        pixels, weights = rois.roi_pixels(r)
        if pixels.size == 0:
            rings.append(np.zeros(0, np.int64))
            continue
        y, x = np.divmod(pixels, width)
        cy, cx = (
            np.average(y, weights=np.abs(weights) + 1e-12),
            np.average(x, weights=np.abs(weights) + 1e-12),
        )
        inner = np.sqrt(pixels.size / np.pi) + cfg.neuropil_gap_px
        reach = int(min(cfg.neuropil_max_radius_px, max(height, width)))
        y0, y1 = max(0, int(cy) - reach), min(height, int(cy) + reach + 1)
        x0, x1 = max(0, int(cx) - reach), min(width, int(cx) + reach + 1)
        gy, gx = np.mgrid[y0:y1, x0:x1]
        distance = np.hypot(gy - cy, gx - cx).ravel()
        flat = (gy * width + gx).ravel()
        free = (distance >= inner) & ~taken[flat]
        order = np.argsort(distance[free], kind="stable")[: cfg.neuropil_pixels]
        rings.append(np.sort(flat[free][order]))
    return rings


class Extractor:
    """Fluorescence of the ROIs of one plane: `step` for a frame, `stack` for many; one matrix."""

    def __init__(self, rois: RoiSet, plane: int, cfg: ExtractionConfig):
        self.cfg = cfg
        self.members = rois.of_plane(plane)
        self.neuron = rois.neuron[self.members]
        height, width = rois.frame_shape
        rings = neuropil_masks(rois, self.members, cfg)
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
            cols.append(ring)
            values.append(np.full(ring.size, 1.0 / max(ring.size, 1), np.float32))
        self.matrix = sp.csr_matrix(
            (
                np.concatenate(values).astype(np.float32) if n else np.zeros(0, np.float32),
                (np.concatenate(rows) if n else [], np.concatenate(cols) if n else []),
            ),
            shape=(2 * n, height * width),
        )
        self.matrix.sort_indices()
        self.ring_pixels = np.array([ring.size for ring in rings])

    def step(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(F, Fneu) of each ROI in one registered frame."""
        both = self.matrix @ image.ravel()
        n = self.members.size
        return both[:n], both[n:]

    def stack(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, R) F and Fneu of a stack of registered frames: one sparse-dense product."""
        both = (self.matrix @ images.reshape(len(images), -1).T).T
        n = self.members.size
        return both[:, :n], both[:, n:]

    def corrected(self, f: np.ndarray, fneu: np.ndarray) -> np.ndarray:
        """Neuropil-corrected fluorescence above the dark level (weights sum to 1, so the dark
        level is subtracted once from each sum)."""
        k, dark = self.cfg.neuropil_coefficient, self.cfg.dark_level
        return (f - dark) - k * (fneu - dark)
