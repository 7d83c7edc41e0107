"""Raw two-photon frames of the synthetic mouse: what the rig's microscope would write to disk.

Each neuron is a soma (a disk of `soma_radius_um`, soft edge) at its field-of-view position in a
512 x 512 image of its plane, as bright at rest as its indicator's noise needs: the photons a soma
collects set its shot noise, so a neuron whose dF/F is noisy in the dataset is a dim one here.
Around the somata lies neuropil, a smooth texture whose activity follows the neurons near it; a
soma displaces neuropil, so only `neuropil_in_soma` (0.7, the coefficient suite2p subtracts) of it
shines through a cell. Then the whole scene moves (a slow drift and a fast jitter), photons arrive
(shot noise of Poisson variance), the detector adds read noise and an offset, and the frame is
stored as uint16.

Planes are sampled at the times the dataset's responses were (the same scan phase, the same
calcium: `SyntheticMouse.watch`), so a clip's frames and its recorded responses are one recording.
Lines are not timed separately: a whole plane is one instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.ndimage import gaussian_filter, shift

from .imaging import interpolate, sample_times, scan_phase, trial_grid
from .rig import Calcium, SyntheticMouse


@dataclass(frozen=True)
class MicroscopeConfig:
    frame_shape: tuple[int, int] = (512, 512)
    soma_radius_um: float = 6.0  # layer 2/3 somata are ~12 um across
    neuropil_photons: float = 1.0  # mean photons per neuropil pixel per frame at rest
    neuropil_in_soma: float = 0.7  # fraction of the neuropil seen through a soma
    neuropil_gain: float = 0.5  # neuropil dF/F per unit of its neighbours' mean dF/F
    neuropil_sigma_um: float = 40.0  # how far a neuron's activity spreads into the neuropil
    read_noise_photons: float = 0.3  # detector noise sd, in photons
    adu_per_photon: float = 20.0
    offset_adu: float = 200.0
    drift_sd_px: float = 3.0  # slow drift of the brain over a clip (sd of the position)
    drift_tau_s: float = 3.0
    jitter_sd_px: float = 0.4  # fast jitter, frame to frame (heartbeat, breathing)

    def __post_init__(self):
        if min(self.frame_shape) < 16 or self.soma_radius_um <= 0 or not 0 <= self.neuropil_in_soma <= 1:
            raise ValueError(
                "microscope: need frames >= 16 px, a soma radius > 0, 0 <= neuropil_in_soma <= 1"
            )


@dataclass(frozen=True, eq=False)
class RawFrame:
    t: float  # trial time (s) of the plane's sample; the clip starts at 0
    plane: int
    image: np.ndarray  # (H, W) uint16
    shift_px: np.ndarray  # (2,) (dy, dx): the scene moved by this much in the image
    dff: np.ndarray  # (n,) the plane's neurons' true dF/F at t
    spikes: np.ndarray  # (n,) their spikes since the plane's previous sample (30 Hz frames)


@dataclass(frozen=True, eq=False)
class Footprints:
    """Each neuron's soma in its plane's image: weights (N x pixels, sparse) and its plane."""

    matrix: sp.csr_matrix  # (N, H * W), soft disk, peak 1
    plane: np.ndarray  # (N,)
    frame_shape: tuple[int, int]


def soma_footprints(mouse: SyntheticMouse, cfg: MicroscopeConfig) -> Footprints:
    """Disks at each neuron's field-of-view position, in the plane it is imaged in."""
    height, width = cfg.frame_shape
    fov = mouse.cfg.population.fov_um
    px_per_um = np.array([height, width]) / fov
    centre = (mouse.cortex_xy_um[:, ::-1] + fov / 2) * px_per_um  # (row, col) in px
    radius = cfg.soma_radius_um * px_per_um.mean()
    reach = int(np.ceil(radius + 1))
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    rows, cols, values = [], [], []
    for n, (cy, cx) in enumerate(centre):
        y, x = np.floor(cy).astype(int) + dy, np.floor(cx).astype(int) + dx
        distance = np.hypot(y + 0.5 - cy, x + 0.5 - cx)
        weight = np.clip(radius + 0.5 - distance, 0.0, 1.0)  # one-pixel soft edge
        keep = (weight > 0) & (y >= 0) & (y < height) & (x >= 0) & (x < width)
        rows.append(np.full(keep.sum(), n))
        cols.append((y * width + x)[keep])
        values.append(weight[keep])
    matrix = sp.csr_matrix(
        (np.concatenate(values).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(mouse.n_neurons, height * width),
    )
    return Footprints(matrix, mouse.plane.copy(), (height, width))


class Microscope:
    """Renders the raw frames of one synthetic mouse's planes; deterministic for (mouse, cfg, seed)."""

    def __init__(self, mouse: SyntheticMouse, cfg: MicroscopeConfig | None = None, seed: int = 0):
        self.mouse = mouse
        self.cfg = cfg = cfg or MicroscopeConfig()
        self.footprints = soma_footprints(mouse, cfg)
        self.timing = mouse.timing
        rng = np.random.default_rng([mouse.seed, 7, seed])
        height, width = cfg.frame_shape
        texture = gaussian_filter(rng.lognormal(0.0, 0.5, (height, width)), 8.0)
        self.neuropil_rest = (cfg.neuropil_photons * texture / texture.mean()).astype(np.float32)
        self.brightness = self._brightness(mouse.indicator.noise_dff)
        self.planes = [self._plane(p) for p in range(self.timing.n_planes)]

    def _brightness(self, noise_dff: np.ndarray) -> np.ndarray:
        """Resting photons per soma pixel that give each neuron its dataset noise after extraction:
        solve sd(dF/F) = sqrt((b + 0.7 n + r^2) / A) / b for b (shot plus read noise over A pixels,
        neuropil seen through the soma; the neuropil estimate's own noise is smaller and ignored)."""
        cfg = self.cfg
        area = np.asarray(self.footprints.matrix.sum(axis=1)).ravel()
        background = cfg.neuropil_in_soma * cfg.neuropil_photons + cfg.read_noise_photons**2
        sd2 = noise_dff.astype(np.float64) ** 2
        b = (1 / area + np.sqrt(1 / area**2 + 4 * sd2 * background / area)) / (2 * sd2)
        return b.astype(np.float32)

    def _plane(self, plane: int) -> dict:
        """What rendering one plane needs: its neurons' footprints, how much neuropil shows at each
        pixel, and how each neuron's activity spreads into the neuropil (on a coarse grid)."""
        cfg = self.cfg
        neurons = self.timing.neurons_of(plane)
        matrix = self.footprints.matrix[neurons]
        cover = np.minimum(np.asarray(matrix.sum(axis=0)).ravel(), 1.0)
        shows = (1.0 - (1.0 - cfg.neuropil_in_soma) * cover).astype(np.float32)
        height, width = cfg.frame_shape
        fov = self.mouse.cfg.population.fov_um
        grid = 32
        gy, gx = (np.mgrid[:grid, :grid] + 0.5) * fov / grid - fov / 2
        xy = self.mouse.cortex_xy_um[neurons]
        d2 = (gx.ravel()[:, None] - xy[None, :, 0]) ** 2 + (gy.ravel()[:, None] - xy[None, :, 1]) ** 2
        spread = np.exp(-d2 / (2 * cfg.neuropil_sigma_um**2))
        spread /= np.maximum(spread.sum(1, keepdims=True), 1e-9)
        upsample = [_linear_upsample(grid, size) for size in (height, width)]
        return {"neurons": neurons, "matrix": matrix, "shows": shows, "spread": spread, "up": upsample}

    def reference_image(self, plane: int) -> np.ndarray:
        """The plane at rest and in place, without noise, in ADU: the motion reference of the truth."""
        cfg, p = self.cfg, self.planes[plane]
        rest = (p["matrix"].T @ self.brightness[p["neurons"]]).reshape(cfg.frame_shape)
        scene = rest + self.neuropil_rest * p["shows"].reshape(cfg.frame_shape)
        return (cfg.offset_adu + cfg.adu_per_photon * scene).astype(np.float32)

    def render(
        self, plane: int, dff: np.ndarray, shift_px: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """One uint16 frame of `plane` whose neurons have dF/F `dff`, the scene moved by `shift_px`."""
        cfg, p = self.cfg, self.planes[plane]
        height, width = cfg.frame_shape
        somata = p["matrix"].T @ (self.brightness[p["neurons"]] * (1.0 + dff))
        local = (p["spread"] @ dff).reshape(32, 32)
        neuropil_dff = p["up"][0] @ local @ p["up"][1].T
        neuropil = (
            self.neuropil_rest * (1.0 + cfg.neuropil_gain * neuropil_dff) * p["shows"].reshape(height, width)
        )
        scene = somata.reshape(height, width).astype(np.float32) + neuropil.astype(np.float32)
        moved = np.maximum(shift(scene, shift_px, order=1, mode="nearest"), 0.0)
        # Shot noise (variance = photons) and read noise in one Gaussian draw: what extraction
        # sums over an ROI's pixels is Gaussian either way, and Poisson draws cost 4x the frame.
        noise = rng.standard_normal(moved.shape, dtype=np.float32)
        noise *= np.sqrt(moved + cfg.read_noise_photons**2)
        adu = cfg.offset_adu + cfg.adu_per_photon * (moved + noise)
        return np.clip(np.rint(adu), 0, 65535).astype(np.uint16)

    def motion(self, times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(len(times), 2) shifts in px: an AR(1) drift of sd `drift_sd_px` plus white jitter."""
        cfg = self.cfg
        drift = np.zeros((len(times), 2))
        state = rng.normal(0, cfg.drift_sd_px, 2)
        for k in range(len(times)):
            if k:
                state = self.drift(state, times[k] - times[k - 1], rng)
            drift[k] = state
        return drift + rng.normal(0, cfg.jitter_sd_px, drift.shape)

    def drift(self, state: np.ndarray, dt: float, rng: np.random.Generator) -> np.ndarray:
        """The slow drift `dt` seconds on from `state` (px): an AR(1) of sd `drift_sd_px`."""
        cfg = self.cfg
        phi = np.exp(-dt / cfg.drift_tau_s)
        return phi * state + rng.normal(0, cfg.drift_sd_px * np.sqrt(1 - phi**2), 2)

    def schedule(self, phase_s: float, start: float, stop: float) -> list[tuple[float, int]]:
        """(trial time, plane) of every plane sample between `start` and `stop`, in order."""
        timing = self.timing
        samples = []
        for plane in range(timing.n_planes):
            times = sample_times(phase_s, timing.plane_offsets_s[plane], timing, start, stop)
            samples += [(float(t), plane) for t in times]
        return sorted(samples)

    def frames(self, seen: Calcium, phase_s: float, rng: np.random.Generator) -> Iterator[RawFrame]:
        """Every plane sample of one trial in acquisition order, at the trial's scan phase."""
        grid = trial_grid(seen.first_frame, len(seen.dff))
        samples = self.schedule(phase_s, grid[0], grid[-1])
        times = np.array([t for t, _ in samples])
        shifts = self.motion(times, rng)
        last = [-1] * self.timing.n_planes  # each plane's latest 30 Hz frame sampled
        for (t, plane), shift_px in zip(samples, shifts, strict=True):
            neurons = self.planes[plane]["neurons"]
            dff = interpolate(seen.dff[:, neurons], grid, np.array([t]))[0].astype(np.float32)
            frame = int(np.searchsorted(grid, t, side="right")) - 1
            spikes = seen.spikes[last[plane] + 1 : frame + 1, neurons].sum(0)
            last[plane] = frame
            image = self.render(plane, dff, shift_px, rng)
            yield RawFrame(float(t), plane, image, shift_px, dff, spikes)


def _linear_upsample(n: int, size: int) -> np.ndarray:
    """(size, n) matrix that interpolates n cell-centred values linearly onto size pixels."""
    at = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    low = np.minimum(np.floor(at).astype(int), n - 2)
    frac = at - low
    out = np.zeros((size, n), np.float32)
    out[np.arange(size), low] = 1 - frac
    out[np.arange(size), low + 1] = frac
    return out


def trial_frames(
    microscope: Microscope, video: np.ndarray, trial_rng: np.random.Generator, trial: int
) -> tuple[Calcium, float, Iterator[RawFrame]]:
    """The raw frames of one trial, sharing its calcium and scan phase with `mouse.record` given the
    same trial generator: (calcium, scan phase, frames). Photon noise and motion have their own
    generator, so the frames do not change the dataset's responses."""
    mouse = microscope.mouse
    seen = mouse.watch(video, trial_rng)
    phase = scan_phase(trial_rng, mouse.timing)
    return seen, phase, microscope.frames(seen, phase, np.random.default_rng([mouse.seed, 8, trial]))
