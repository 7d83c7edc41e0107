"""Stimulus movies at 36 x 64 px, 30 Hz, 0-255: natural movies from real photographs, and the
out-of-distribution sets (drifting gratings, pink noise, moving gaussian dots).

Natural movies pan, drift, saccade and zoom over photographs that scikit-image ships (so they
load offline) and cut to a new scene every 1-4 s, at the luminance statistics of the Sensorium
clips (mean about 80, standard deviation about 57). A fixed set of photographs never appears in
training tiers, so generalisation to unseen images can be measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

from .sensorium import FRAME_RATE_HZ, FRAME_SHAPE

MEAN_LUMINANCE = 80.0
LUMINANCE_STD = 57.0

# Photographs bundled with scikit-image (no download needed).
PHOTOGRAPHS = (
    "astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "horse", "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket", "text", "page",
    "cell",
)  # fmt: skip
HELD_OUT_PHOTOGRAPHS = ("chelsea", "coffee", "gravel", "rocket")
TRAINING_PHOTOGRAPHS = tuple(p for p in PHOTOGRAPHS if p not in HELD_OUT_PHOTOGRAPHS)

_PHOTO_SIDE = 128  # shorter side after downscaling: a crop of up to 2 photo px per screen px fits
_ROWS, _COLS = FRAME_SHAPE
_Y = np.arange(_ROWS, dtype=np.float32)[:, None] - (_ROWS - 1) / 2
_X = np.arange(_COLS, dtype=np.float32)[None, :] - (_COLS - 1) / 2


@cache
def photograph(name: str) -> np.ndarray:
    """A photograph as standardised grey levels (zero mean, unit std), shorter side 128 px."""
    if name not in PHOTOGRAPHS:
        raise ValueError(f"unknown photograph {name!r}; expected one of {PHOTOGRAPHS}")
    # Imported here: skimage and the scipy it loads take 0.3 s to import, and only simulating needs them.
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.transform import downscale_local_mean, rescale

    image = np.asarray(getattr(skimage.data, name)(), dtype=np.float32)
    if image.ndim == 3:
        image = rgb2gray(image[..., :3])
    block = int(min(image.shape) // _PHOTO_SIDE)
    if block > 1:  # box-average big photographs first: cheap, and already anti-aliased
        image = downscale_local_mean(image, (block, block))
    image = rescale(image, _PHOTO_SIDE / min(image.shape), anti_aliasing=True, preserve_range=True)
    image = ((image - image.mean()) / image.std()).astype(np.float32)
    image.setflags(write=False)
    return image


def to_luminance(z: np.ndarray, mean: float = MEAN_LUMINANCE, std: float = LUMINANCE_STD) -> np.ndarray:
    return np.clip(mean + std * z, 0.0, 255.0).astype(np.float32)


def scene_lengths(rng: np.random.Generator, n_frames: int, shortest_s: float, longest_s: float) -> list[int]:
    lengths = []
    while sum(lengths) < n_frames:
        lengths.append(int(rng.uniform(shortest_s, longest_s) * FRAME_RATE_HZ))
    lengths[-1] -= sum(lengths) - n_frames
    return lengths


def _camera_path(rng: np.random.Generator, n: int, image_shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Crop centre (y, x) and scale (photo px per screen px) per frame: slow drift and zoom, plus
    saccade-like jumps; the crop always stays on the photograph."""
    height, width = image_shape
    most = min(2.0, 0.95 * height / _ROWS, 0.95 * width / _COLS)
    t = np.arange(n) / FRAME_RATE_HZ
    scale = np.clip(np.exp(rng.uniform(np.log(0.8), np.log(most)) + rng.normal(0, 0.08) * t), 0.6, most)
    drift = rng.normal(0, 2.5, size=2)[:, None] * t  # screen px
    jumps = np.zeros((2, n))
    for frame in np.flatnonzero(rng.random(n) < 0.4 / FRAME_RATE_HZ):
        angle = rng.uniform(0, 2 * np.pi)
        jumps[:, frame:] += rng.uniform(3, 8) * np.array([[np.sin(angle)], [np.cos(angle)]])
    centre = np.array([[rng.uniform(0, height)], [rng.uniform(0, width)]]) + (drift + jumps) * scale
    half = np.array([[_ROWS / 2], [_COLS / 2]]) * scale
    centre = np.clip(centre, half, np.array([[height], [width]]) - half)
    return centre[0], centre[1], scale


def _sample_crops(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples image[rows[t, i], cols[t, j]] -> (T, H, W): four flat gathers, blended."""

    def corners(coords: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        low = np.clip(np.floor(coords).astype(np.int64), 0, size - 2)
        return low, np.clip(coords - low, 0.0, 1.0).astype(np.float32)

    r0, fr = corners(rows, image.shape[0])
    c0, fc = corners(cols, image.shape[1])
    stride = image.shape[1]
    index = r0[:, :, None] * stride + c0[:, None, :]
    fr, fc = fr[:, :, None], fc[:, None, :]
    flat = image.ravel()
    top = (1 - fc) * flat[index] + fc * flat[index + 1]
    bottom = (1 - fc) * flat[index + stride] + fc * flat[index + stride + 1]
    return (1 - fr) * top + fr * bottom


def natural_movie(
    rng: np.random.Generator, n_frames: int, photographs: Sequence[str]
) -> tuple[np.ndarray, list[dict]]:
    """A natural movie and its scenes (photograph, first frame, length)."""
    video = np.empty((n_frames, *FRAME_SHAPE), dtype=np.float32)
    scenes, start = [], 0
    for length in scene_lengths(rng, n_frames, 1.0, 4.0):
        name = str(rng.choice(list(photographs)))
        image = photograph(name)
        cy, cx, scale = _camera_path(rng, length, image.shape)
        z = _sample_crops(
            image, cy[:, None] + scale[:, None] * _Y[:, 0], cx[:, None] + scale[:, None] * _X[0]
        )
        # Clipping at 0 and 255 lifts the mean and shrinks the spread: these ranges land the
        # clips at mean ~80, std ~57 over a dataset.
        mean = rng.normal(MEAN_LUMINANCE - 3.0, 6.0)
        std = LUMINANCE_STD * rng.uniform(1.1, 1.5)
        video[start : start + length] = to_luminance(z, mean, std)
        scenes.append({"photograph": name, "start": start, "frames": length})
        start += length
    return video, scenes


def drifting_gratings(rng: np.random.Generator, n_frames: int) -> tuple[np.ndarray, list[dict]]:
    """Full-field sinusoidal gratings, a new orientation, spatial and temporal frequency every 1-2 s."""
    video = np.empty((n_frames, *FRAME_SHAPE), dtype=np.float32)
    blocks, start = [], 0
    for length in scene_lengths(rng, n_frames, 1.0, 2.0):
        block = {
            "start": start,
            "frames": length,
            "orientation": float(rng.uniform(0, np.pi)),
            "cycles_per_px": float(rng.uniform(0.03, 0.15)),
            "hz": float(rng.uniform(1.0, 4.0) * rng.choice([-1, 1])),
            "contrast": float(rng.uniform(30, 75)),
        }
        t = np.arange(length)[:, None, None] / FRAME_RATE_HZ
        along = _X * np.cos(block["orientation"]) + _Y * np.sin(block["orientation"])
        phase = 2 * np.pi * (block["cycles_per_px"] * along - block["hz"] * t) + rng.uniform(0, 2 * np.pi)
        video[start : start + length] = MEAN_LUMINANCE + block["contrast"] * np.sin(phase)
        blocks.append(block)
        start += length
    return np.clip(video, 0, 255), blocks


def pink_noise(rng: np.random.Generator, n_frames: int) -> tuple[np.ndarray, list[dict]]:
    """Spatiotemporal noise with a 1/f amplitude spectrum in space and time."""
    spectrum = np.fft.rfftn(rng.standard_normal((n_frames, *FRAME_SHAPE)))
    ft = np.abs(np.fft.fftfreq(n_frames, 1 / FRAME_RATE_HZ))[:, None, None]
    fy = np.fft.fftfreq(_ROWS)[None, :, None]
    fx = np.fft.rfftfreq(_COLS)[None, None, :]
    spectrum /= (np.hypot(fy, fx) + 0.02) * (ft + 0.5)
    noise = np.fft.irfftn(spectrum, s=(n_frames, *FRAME_SHAPE), axes=(0, 1, 2))
    return to_luminance((noise - noise.mean()) / noise.std()), [{"start": 0, "frames": n_frames}]


def gaussian_dots(rng: np.random.Generator, n_frames: int) -> tuple[np.ndarray, list[dict]]:
    """One to three bright or dark gaussian blobs gliding over grey, bouncing off the edges; a new
    set every 1-3 s."""
    video = np.empty((n_frames, *FRAME_SHAPE), dtype=np.float32)
    blocks, start = [], 0
    size = np.array([_ROWS - 1, _COLS - 1], dtype=np.float64)
    for length in scene_lengths(rng, n_frames, 1.0, 3.0):
        n_dots = int(rng.integers(1, 4))
        position = rng.random((n_dots, 2)) * size
        angle = rng.uniform(0, 2 * np.pi, n_dots)
        velocity = rng.uniform(5, 25, n_dots)[:, None] * np.stack([np.sin(angle), np.cos(angle)], 1)
        sigma = rng.uniform(2.0, 4.0, n_dots)
        amplitude = rng.uniform(60, 140, n_dots) * rng.choice([-1, 1], n_dots)
        t = np.arange(length)[:, None, None] / FRAME_RATE_HZ
        path = position[None] + velocity[None] * t  # (frames, dots, 2), unfolded
        path = size - np.abs(np.mod(path, 2 * size) - size)  # bounce: reflect into the screen
        dy = _Y[None, None] + (_ROWS - 1) / 2 - path[..., 0, None, None]
        dx = _X[None, None] + (_COLS - 1) / 2 - path[..., 1, None, None]
        blobs = amplitude[None, :, None, None] * np.exp(
            -(dy**2 + dx**2) / (2 * sigma[None, :, None, None] ** 2)
        )
        video[start : start + length] = MEAN_LUMINANCE + blobs.sum(1)
        blocks.append({"start": start, "frames": length, "dots": n_dots})
        start += length
    return np.clip(video, 0, 255), blocks


STIMULUS_KINDS = ("natural", "drifting_gratings", "pink_noise", "gaussian_dots")


def render(
    kind: str, rng: np.random.Generator, n_frames: int, photographs: Sequence[str] = ()
) -> tuple[np.ndarray, list[dict]]:
    """One stimulus movie of a kind: (video (T, 36, 64) float32, description of its parts)."""
    if kind == "natural":
        return natural_movie(rng, n_frames, photographs)
    makers = {
        "drifting_gratings": drifting_gratings,
        "pink_noise": pink_noise,
        "gaussian_dots": gaussian_dots,
    }
    if kind not in makers:
        raise ValueError(f"unknown stimulus kind {kind!r}; expected one of {STIMULUS_KINDS}")
    return makers[kind](rng, n_frames)
