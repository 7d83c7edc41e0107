"""Regions of interest: which pixels of which plane make each cell, with what weight, and which
of the model's neurons each cell is.

Stored as one flat run of pixels per ROI (like a CSR matrix's rows): `pixel[offsets[r]:offsets[r+1]]`
are the flat indices `y * W + x` of ROI r in its plane's image and `weight[...]` their weights
(suite2p's `lam`). `neuron[r]` is the model neuron the ROI feeds, -1 for an ROI the model does not
read (a cell found after training, or one the lab rejected).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class RoiSet:
    frame_shape: tuple[int, int]  # (H, W) of each plane's image
    n_planes: int
    plane: np.ndarray  # (R,) int64
    offsets: np.ndarray  # (R + 1,) int64, non-decreasing, offsets[0] == 0
    pixel: np.ndarray  # (nnz,) int64 flat pixel index in the plane's image
    weight: np.ndarray  # (nnz,) float32
    neuron: np.ndarray  # (R,) int64 model neuron, -1: none

    def __post_init__(self):
        height, width = (int(v) for v in self.frame_shape)
        object.__setattr__(self, "frame_shape", (height, width))
        for name, dtype in (
            ("plane", np.int64),
            ("offsets", np.int64),
            ("pixel", np.int64),
            ("weight", np.float32),
            ("neuron", np.int64),
        ):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=dtype))
        n = self.plane.size
        problems = []
        if height < 1 or width < 1 or self.n_planes < 1:
            problems.append(f"frame_shape {self.frame_shape} and n_planes {self.n_planes} must be positive")
        if self.offsets.shape != (n + 1,) or self.offsets[0] != 0 or np.any(np.diff(self.offsets) < 0):
            problems.append(f"offsets must be {n + 1} non-decreasing indices from 0")
        elif self.offsets[-1] != self.pixel.size or self.pixel.size != self.weight.size:
            problems.append(
                f"offsets end at {self.offsets[-1]}, there are {self.pixel.size} pixels and "
                f"{self.weight.size} weights"
            )
        if self.pixel.size and (self.pixel.min() < 0 or self.pixel.max() >= height * width):
            problems.append(f"pixel indices must lie in 0..{height * width - 1} (y * W + x)")
        if n and (self.plane.min() < 0 or self.plane.max() >= self.n_planes):
            problems.append(f"planes must lie in 0..{self.n_planes - 1}")
        if self.neuron.shape != (n,) or (n and self.neuron.min() < -1):
            problems.append(f"neuron must give each of the {n} ROIs a model neuron or -1")
        if not np.isfinite(self.weight).all():
            problems.append("weights must be finite")
        mapped = self.neuron[self.neuron >= 0]
        if np.unique(mapped).size != mapped.size:
            problems.append("two ROIs feed the same model neuron")
        if problems:
            raise ValueError("ROIs: " + "; ".join(problems))

    @classmethod
    def from_lists(
        cls,
        frame_shape: tuple[int, int],
        pixels: list[np.ndarray],
        weights: list[np.ndarray],
        plane: np.ndarray | None = None,
        neuron: np.ndarray | None = None,
        n_planes: int | None = None,
    ) -> RoiSet:
        """From per-ROI pixel and weight arrays; by default plane 0 and ROI r feeding neuron r."""
        n = len(pixels)
        plane = np.zeros(n, np.int64) if plane is None else np.asarray(plane)
        lengths = [len(p) for p in pixels]
        return cls(
            frame_shape,
            int(n_planes if n_planes is not None else (plane.max() + 1 if n else 1)),
            plane,
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            np.concatenate(pixels) if n else np.zeros(0, np.int64),
            np.concatenate(weights) if n else np.zeros(0, np.float32),
            np.arange(n) if neuron is None else neuron,
        )

    @classmethod
    def from_matrix(cls, matrix, plane: np.ndarray, frame_shape: tuple[int, int]) -> RoiSet:
        """From a sparse (R x H*W) weight matrix (the simulator's footprints); ROI r feeds neuron r."""
        csr = matrix.tocsr()
        csr.sort_indices()
        plane = np.asarray(plane)
        return cls(
            frame_shape, int(plane.max() + 1), plane, csr.indptr, csr.indices, csr.data, np.arange(len(plane))
        )

    @property
    def n_rois(self) -> int:
        return self.plane.size

    def of_plane(self, plane: int) -> np.ndarray:
        """Indices of the ROIs drawn in `plane`."""
        return np.flatnonzero(self.plane == plane)

    def roi_pixels(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """(flat pixel indices, weights) of ROI r."""
        span = slice(self.offsets[r], self.offsets[r + 1])
        return self.pixel[span], self.weight[span]

    def unmapped_neurons(self, n_neurons: int) -> np.ndarray:
        """Model neurons no ROI feeds (held at their training mean while decoding)."""
        return np.setdiff1d(np.arange(n_neurons), self.neuron[self.neuron >= 0])
