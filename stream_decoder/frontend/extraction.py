"""ROI extraction: one sparse product per frame gives every ROI's soma and neuropil fluorescence.

The neuropil of an ROI is the ring around it (from `neuropil_gap_px` beyond its radius outwards
until it holds `neuropil_pixels` pixels), leaving out every pixel of any ROI, as suite2p builds
it, drawn on 2 x 2 bins of the frame. Soma weights are the ROI's own (normalised to sum 1),
neuropil weights uniform; both sit in one CSR matrix, so a frame costs one product.

Where ROIs overlap, a shared pixel holds light of both cells. `overlap`:
- "keep" (default): plain weighted means. Of the three it decodes best (bench_frontend): the
  decoders were trained on responses whose noise the other two amplify;
- "demix": the somata's amplitudes by ridge least squares on the frame, the footprints as the
  design: the weighted means, less each ROI's background (dark level and neuropil, as
  `corrected` takes it off), go through one solve with the footprints' Gram matrix plus
  `demix_ridge` times its diagonal (factored once; sparse as the overlaps are, so cheap). An
  isolated ROI keeps its weighted mean exactly; two overlapping ROIs each get their own light
  back (exactly, noise-free, at ridge 0; the default 0.1 damps the noise where footprints
  nearly coincide and leaves a little of the neighbour); the closest to the true dF/F
  (bench_frontend_vs_suite2p);
- "exclude": shared pixels left out of both weighted means (suite2p's default): no light of the
  neighbour, but fewer photons, and an ROI whose every pixel is shared keeps them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import factorized

from .rois import RoiSet

OVERLAP_MODES = ("keep", "demix", "exclude")


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
    overlap: str = "keep"  # shared pixels: "keep", "demix" (least squares) or "exclude" (suite2p's)
    demix_ridge: float = 0.1  # demix's ridge, relative to each footprint's own energy

    def __post_init__(self):
        if not 0 <= self.neuropil_coefficient <= 1.5 or self.neuropil_pixels < 1 or self.neuropil_bin < 1:
            raise ValueError(
                "[frontend] need 0 <= neuropil_coefficient <= 1.5, neuropil_pixels >= 1 and neuropil_bin >= 1"
            )
        if self.demix_ridge < 0:
            raise ValueError(f"[frontend] demix_ridge must be >= 0, got {self.demix_ridge}")
        if self.overlap not in OVERLAP_MODES:
            modes = ", ".join(OVERLAP_MODES)
            raise ValueError(f"[frontend] overlap must be one of {modes}, got {self.overlap!r}")


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


def coverage(rois: RoiSet, in_plane: np.ndarray) -> np.ndarray:
    """How many of the ROIs `in_plane` cover each pixel of their plane."""
    return np.asarray((footprint_matrix(rois, in_plane) != 0).sum(axis=0)).ravel()


def own_pixels(rois: RoiSet, r: int, counts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """ROI r's pixels and weights, less those another ROI covers too (`counts`, from `coverage`;
    None keeps all); all of them where every one is shared."""
    pixels, weights = rois.roi_pixels(r)
    if counts is None:
        return pixels, weights
    own = counts[pixels] == 1
    return (pixels[own], weights[own]) if own.any() else (pixels, weights)


def footprint_matrix(rois: RoiSet, members: np.ndarray) -> sp.csr_matrix:
    """(members, H * W) the members' weights."""
    height, width = rois.frame_shape
    spans = [rois.roi_pixels(r) for r in members]
    rows = np.repeat(np.arange(len(spans)), [p.size for p, _ in spans])
    cols = np.concatenate([p for p, _ in spans]) if spans else np.zeros(0, np.int64)
    values = np.concatenate([w for _, w in spans]) if spans else np.zeros(0, np.float32)
    return sp.csr_matrix((values, (rows, cols)), shape=(len(spans), height * width))


def overlapping(rois: RoiSet, members: np.ndarray, others: np.ndarray) -> np.ndarray:
    """The ROIs of `others` that share a pixel with a member."""
    if not others.size or not members.size:
        return others[:0]
    shared = footprint_matrix(rois, others) @ footprint_matrix(rois, members).T
    return others[np.asarray((shared != 0).sum(axis=1)).ravel() > 0]


class Demixer:
    """Ridge least-squares amplitudes of overlapping somata from their background-free weighted
    means: a = (1 + r) (G + r diag G)^-1 D m, with G the footprints' Gram matrix, D their weight
    sums and r the relative `ridge`; scaled by sum(w^2) / sum(w), so an ROI that overlaps none
    keeps its mean exactly. r -> 0 is plain least squares, r -> inf the plain weighted means: the
    ridge damps the noise least squares amplifies where two footprints nearly coincide."""

    def __init__(self, footprints: sp.csr_matrix, ridge: float):
        gram = (footprints @ footprints.T).astype(np.float64).tocsc()
        squares = gram.diagonal()
        ridge = max(ridge, 1e-6)  # two identical footprints still give a solvable system
        self.solve = factorized((gram + sp.diags(ridge * squares)).tocsc())
        self.sums = np.asarray(footprints.sum(axis=1), np.float64).ravel()
        self.scale = (1.0 + ridge) * squares / np.where(self.sums > 0, self.sums, 1.0)

    def __call__(self, means: np.ndarray) -> np.ndarray:
        """(k,) or (k, T) weighted means -> the demixed means, float32."""
        sums = self.sums if means.ndim == 1 else self.sums[:, None]
        scale = self.scale if means.ndim == 1 else self.scale[:, None]
        return (scale * self.solve(sums * means)).astype(np.float32)


class Extractor:
    """Fluorescence of the ROIs of one plane: `step` for a frame, `stack` for many; one matrix.

    Its columns are the frame's pixels, then the bins of the binned frame the neuropil rings are
    drawn on (a smooth signal: binning keeps every photon and quarters the ring's nonzeros). Its
    rows are the soma sums of the ROIs measured (the members, then, when demixing, the unused ROIs
    overlapping one), then their rings."""

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
        others = np.setdiff1d(in_plane, self.members)
        extra = overlapping(rois, self.members, others) if cfg.overlap == "demix" else others[:0]
        measured = np.concatenate([self.members, extra])
        rings = neuropil_masks(rois, measured, cfg, occupied=in_plane)
        counts = coverage(rois, in_plane) if cfg.overlap == "exclude" else None
        rows, cols, values = [], [], []
        k = measured.size
        for i, r in enumerate(measured):
            pixels, weights = own_pixels(rois, r, counts)
            total = weights.sum()
            rows.append(np.full(pixels.size, i))
            cols.append(pixels)
            values.append(weights / total if total > 0 else weights)
        for i, ring in enumerate(rings):
            rows.append(np.full(ring.size, k + i))
            cols.append(height * width + ring)
            values.append(np.full(ring.size, 1.0 / max(ring.size, 1), np.float32))
        self.matrix = sp.csr_matrix(
            (
                np.concatenate(values).astype(np.float32) if rows else np.zeros(0, np.float32),
                (np.concatenate(rows) if rows else [], np.concatenate(cols) if rows else []),
            ),
            shape=(2 * k, height * width + self.binned[0] * self.binned[1]),
        )
        self.matrix.sort_indices()
        self.somata = k
        demixing = cfg.overlap == "demix" and k
        self.demix = Demixer(footprint_matrix(rois, measured), cfg.demix_ridge) if demixing else None
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
        return self._split(self.matrix @ self._columns(image))

    def stack(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, R) F and Fneu of a stack of registered frames: one sparse-dense product."""
        columns = np.stack([self._columns(image).copy() for image in images])
        f, fneu = self._split(self.matrix @ columns.T)
        return f.T, fneu.T

    def _split(self, both: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The product's rows -> the members' (F, Fneu); F demixed where asked, so that
        `corrected(F, Fneu)` is the demixed soma light."""
        f, fneu, n = both[: self.somata], both[self.somata :], self.members.size
        if self.demix is not None:
            background = f - self.corrected(f, fneu)
            f = self.demix(f - background) + background
        return f[:n], fneu[:n]

    def corrected(self, f: np.ndarray, fneu: np.ndarray) -> np.ndarray:
        """Neuropil-corrected fluorescence above the dark level (weights sum to 1, so the dark
        level is subtracted once from each sum)."""
        k, dark = self.cfg.neuropil_coefficient, self.cfg.dark_level
        return (f - dark) - k * (fneu - dark)
