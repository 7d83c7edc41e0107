"""A second, simple raw-movie generator, made apart from the simulator: what a lab's own field of
view looks like to an extraction, for bench_frontend_vs_suite2p.py.

Elliptical somata of real size (8-15 px across at 512 px over 700 um, any orientation), packed
densely at random, so footprints overlap; each with its own brightness, Poisson spikes (a few with
bursts) and a GCaMP6s-like kernel (rise ~70 ms, decay 0.5-1.1 s, one spike 0.15-0.35 dF/F).
Behind them a smooth neuropil whose activity follows the population's; 70 % of it shines through a
soma. The scene moves as a whole (a slow drift of ~2 px sd plus a 0.3 px jitter, sub-pixel), and
for `z_episode_s` it leaves focus (dimmer, blurred), as a z-motion would. Photons are Poisson,
the detector adds read noise and an offset, the frame is uint16. The truth: each cell's dF/F and
spikes per frame, the shift of each frame, the footprints (the ROIs a lab's segmentation gives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.ndimage import gaussian_filter, shift


@dataclass(frozen=True)
class LabMovieConfig:
    frame_shape: tuple[int, int] = (512, 512)
    cells: int = 2000
    frames: int = 1800  # 60 s at 30 Hz
    rate_hz: float = 30.0
    diameter_px: tuple[float, float] = (8.0, 15.0)  # 11-20 um somata at 1.37 um per px
    spike_rate_hz: tuple[float, float] = (0.3, 1.0)  # median, log-sd
    burst_fraction: float = 0.2  # cells that fire in bursts of 2-5 spikes
    tau_rise_s: float = 0.07
    tau_decay_s: tuple[float, float] = (0.5, 1.1)  # uniform
    spike_dff: tuple[float, float] = (0.15, 0.35)  # uniform
    soma_photons: tuple[float, float] = (1.5, 0.4)  # resting photons per soma pixel: median, log-sd
    neuropil_photons: float = 1.0
    neuropil_in_soma: float = 0.7
    neuropil_gain: float = 0.4  # neuropil dF/F per unit of the population's mean dF/F
    read_noise_photons: float = 0.3
    adu_per_photon: float = 20.0
    offset_adu: float = 100.0
    drift_sd_px: float = 2.0
    drift_tau_s: float = 5.0
    jitter_sd_px: float = 0.3
    z_episode_s: tuple[float, float] = (30.0, 33.0)  # start, end of the out-of-focus episode
    z_dimming: float = 0.6  # light kept in the episode's deepest frame
    z_blur_px: float = 1.5


@dataclass(frozen=True, eq=False)
class LabMovie:
    frames: np.ndarray  # (T, H, W) uint16
    footprints: sp.csr_matrix  # (cells, H * W) weights, peak 1
    dff: np.ndarray  # (T, cells) true dF/F
    spikes: np.ndarray  # (T, cells) true spikes per frame
    shift_px: np.ndarray  # (T, 2) (dy, dx) the scene moved by
    in_focus: np.ndarray  # (T,) bool: outside the z episode
    cfg: LabMovieConfig


def ellipses(rng: np.random.Generator, cfg: LabMovieConfig) -> sp.csr_matrix:
    """(cells, H * W) soft-edged ellipses at uniform random centres: dense, so they overlap."""
    height, width = cfg.frame_shape
    rows, cols, values = [], [], []
    for n in range(cfg.cells):
        a, b = rng.uniform(*cfg.diameter_px, 2) / 2
        angle = rng.uniform(0, np.pi)
        cy, cx = rng.uniform(8, height - 8), rng.uniform(8, width - 8)
        reach = int(np.ceil(max(a, b) + 1))
        y, x = np.mgrid[-reach : reach + 1, -reach : reach + 1]
        y, x = y + int(cy), x + int(cx)
        u = (x + 0.5 - cx) * np.cos(angle) + (y + 0.5 - cy) * np.sin(angle)
        v = -(x + 0.5 - cx) * np.sin(angle) + (y + 0.5 - cy) * np.cos(angle)
        radius = np.hypot(u / a, v / b)  # 1 on the edge
        weight = np.clip((1.0 - radius) * min(a, b) + 0.5, 0.0, 1.0)
        keep = (weight > 0) & (y >= 0) & (y < height) & (x >= 0) & (x < width)
        rows.append(np.full(keep.sum(), n))
        cols.append((y * width + x)[keep])
        values.append(weight[keep])
    return sp.csr_matrix(
        (np.concatenate(values).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(cfg.cells, height * width),
    )


def spike_trains(rng: np.random.Generator, cfg: LabMovieConfig) -> np.ndarray:
    """(T, cells) spike counts per frame: Poisson, bursts of 2-5 for a share of the cells."""
    rate = cfg.spike_rate_hz[0] * np.exp(rng.normal(0, cfg.spike_rate_hz[1], cfg.cells))
    bursty = rng.random(cfg.cells) < cfg.burst_fraction
    events = rng.poisson(rate / cfg.rate_hz * np.where(bursty, 1 / 3.5, 1.0), (cfg.frames, cfg.cells))
    sizes = np.where(bursty, rng.integers(2, 6, events.shape), 1)
    return (events * sizes).astype(np.float32)


def calcium(spikes: np.ndarray, rng: np.random.Generator, cfg: LabMovieConfig) -> np.ndarray:
    """(T, cells) dF/F: each cell's spikes through a rise-and-decay kernel of its own."""
    dt = 1.0 / cfg.rate_hz
    decay = rng.uniform(*cfg.tau_decay_s, cfg.cells)
    size = rng.uniform(*cfg.spike_dff, cfg.cells)
    keep_decay, keep_rise = np.exp(-dt / decay), np.exp(-dt / cfg.tau_rise_s)
    slow, fast = np.zeros(cfg.cells), np.zeros(cfg.cells)
    out = np.empty_like(spikes)
    for t, s in enumerate(spikes):
        slow = keep_decay * slow + s
        fast = keep_rise * fast + s
        out[t] = size * (slow - fast)
    lags = np.arange(1, 60) * dt
    peak = np.max(np.exp(-lags / decay[:, None]) - np.exp(-lags / cfg.tau_rise_s), axis=1)
    return (out / peak).astype(np.float32)  # one spike peaks at `size`


def motion(rng: np.random.Generator, cfg: LabMovieConfig) -> np.ndarray:
    """(T, 2) shifts: a slow AR(1) drift plus white jitter."""
    keep = np.exp(-1.0 / (cfg.drift_tau_s * cfg.rate_hz))
    drift = np.zeros((cfg.frames, 2))
    drift[0] = rng.normal(0, cfg.drift_sd_px, 2)
    for t in range(1, cfg.frames):
        drift[t] = keep * drift[t - 1] + np.sqrt(1 - keep**2) * rng.normal(0, cfg.drift_sd_px, 2)
    return drift + rng.normal(0, cfg.jitter_sd_px, (cfg.frames, 2))


def focus(cfg: LabMovieConfig) -> np.ndarray:
    """(T,) light kept per frame: 1 in focus, a dip to `z_dimming` over the z episode."""
    t = np.arange(cfg.frames) / cfg.rate_hz
    start, end = cfg.z_episode_s
    inside = (t >= start) & (t < end)
    depth = np.sin(np.pi * (t - start) / (end - start)) * inside
    return 1.0 - (1.0 - cfg.z_dimming) * depth


def lab_movie(cfg: LabMovieConfig | None = None, seed: int = 0) -> LabMovie:
    cfg = cfg or LabMovieConfig()
    rng = np.random.default_rng(seed)
    height, width = cfg.frame_shape
    footprints = ellipses(rng, cfg)
    spikes = spike_trains(rng, cfg)
    dff = calcium(spikes, rng, cfg)
    brightness = cfg.soma_photons[0] * np.exp(rng.normal(0, cfg.soma_photons[1], cfg.cells))
    texture = gaussian_filter(rng.lognormal(0.0, 0.5, (height, width)), 8.0)
    neuropil = cfg.neuropil_photons * texture / texture.mean()
    covered = np.minimum(np.asarray(footprints.sum(axis=0)).reshape(height, width), 1.0)
    neuropil = neuropil * (1 - (1 - cfg.neuropil_in_soma) * covered)  # a soma hides some neuropil
    shifts, light = motion(rng, cfg), focus(cfg)
    frames = np.empty((cfg.frames, height, width), np.uint16)
    for t in range(cfg.frames):
        cells = (footprints.T @ (brightness * (1 + dff[t]))).reshape(height, width)
        scene = cells + neuropil * (1 + cfg.neuropil_gain * dff[t].mean())
        if light[t] < 1:
            scene = light[t] * gaussian_filter(scene, cfg.z_blur_px * (1 - light[t]) / (1 - cfg.z_dimming))
        scene = shift(scene, shifts[t], order=1, mode="nearest")
        photons = rng.poisson(np.maximum(scene, 0)) + rng.normal(0, cfg.read_noise_photons, scene.shape)
        frames[t] = np.clip(cfg.offset_adu + cfg.adu_per_photon * photons, 0, 65535)
    return LabMovie(frames, footprints, dff, spikes, shifts.astype(np.float32), light == 1.0, cfg)
