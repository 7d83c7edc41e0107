"""How close a reconstructed movie is to the one the mouse saw (REFERENCE.md §1, "Metric"), and
how well an encoder predicts responses (the Sensorium community metric, REFERENCE.md §3).

The video functions take videos `(T, H, W)` in 0-255 (time first) and an optional boolean `(H, W)` mask
(the population receptive-field evaluation mask, alpha >= 1); without one every pixel counts.

A correlation is undefined where either side has no variance (a constant gray start, a blank
frame): it is returned as nan, never as 0, so that averaging with `np.nanmean` stays honest and a
gray video can never look "uncorrelated but fine".
"""

import numpy as np
from skimage.metrics import structural_similarity

# skimage's SSIM window: 7 x 7 pixels, so map values closer than 3 pixels to the border are not
# trusted (skimage drops them from its own mean).
SSIM_WINDOW = 7


def video_correlation(recon, truth, mask=None, skip: int = 30) -> float:
    """One Pearson correlation over every pixel x frame inside the mask, as published.

    The first `skip` frames are left out: the encoder's temporal receptive field is not yet
    filled there, so no method can reconstruct them.
    """
    recon, truth = _videos(recon, truth)
    inside = _mask(mask, truth.shape[1:])
    _check_skip(skip, len(truth))
    return float(pearson(recon[skip:, inside], truth[skip:, inside]))


def mean_video_correlation(videos, references, mask=None) -> float:
    """`video_correlation` of each clip of `(B, T, H, W)` videos with its reference, averaged over clips."""
    return float(np.nanmean([video_correlation(v, r, mask) for v, r in zip(videos, references, strict=True)]))


def frame_correlations(recon, truth, mask=None) -> np.ndarray:
    """Spatial Pearson correlation of each frame inside the mask, `(T,)`; nan for flat frames."""
    recon, truth = _videos(recon, truth)
    inside = _mask(mask, truth.shape[1:])
    return pearson(recon[:, inside], truth[:, inside], axis=1)


def ssim(recon, truth, mask=None, skip: int = 30) -> float:
    """Mean structural similarity over frames (first `skip` frames left out, as for the correlation).

    Each frame's SSIM is skimage's (7 x 7 uniform window, data_range 255); with a mask, the mean of
    its SSIM map over the masked pixels at least 3 pixels from the border, which without a mask is
    exactly skimage's own per-frame mean.
    """
    recon, truth = _videos(recon, truth)
    inside = _mask(mask, truth.shape[1:])
    _check_skip(skip, len(truth))
    border = SSIM_WINDOW // 2
    trusted = np.zeros_like(inside)
    trusted[border:-border, border:-border] = True
    counted = inside & trusted
    if not counted.any():
        raise ValueError(f"mask leaves no pixels at least {border} px from the border for SSIM")
    per_frame = [
        structural_similarity(t, r, data_range=255.0, win_size=SSIM_WINDOW, full=True)[1][counted].mean()
        for r, t in zip(recon[skip:], truth[skip:], strict=True)
    ]
    return float(np.mean(per_frame))


def single_trial_correlation(predicted, recorded, skip: int = 50) -> np.ndarray:
    """Per-neuron Pearson correlation between predicted and recorded responses, `(N,)`.

    `predicted` and `recorded` are lists of `(T, N)` trials (one array is one trial); each trial's
    first `skip` frames are dropped, the rest concatenated. The Sensorium score is the mean over
    neurons (`np.nanmean`: a neuron that never varies has nan).
    """
    if len(predicted) != len(recorded) or not len(recorded):
        raise ValueError(f"need matching non-empty trial lists, got {len(predicted)} and {len(recorded)}")
    kept_p, kept_r = [], []
    for i, (p, r) in enumerate(zip(predicted, recorded, strict=True)):
        p, r = np.asarray(p, dtype=np.float64), np.asarray(r, dtype=np.float64)
        if p.ndim != 2 or p.shape != r.shape:
            raise ValueError(f"trial {i}: predicted {p.shape} and recorded {r.shape} must be the same (T, N)")
        if len(r) <= skip:
            raise ValueError(f"trial {i}: skip={skip} leaves none of its {len(r)} frames")
        kept_p.append(p[skip:])
        kept_r.append(r[skip:])
    return pearson(np.concatenate(kept_p), np.concatenate(kept_r), axis=0)


def pearson(a, b, axis: int | None = None):
    """Pearson correlation of `a` and `b` (same shape) along `axis`, over every value when None.

    The one correlation every score here and in the data checks uses: float64, and nan (never 0)
    where either side does not vary.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"pearson: shapes {a.shape} and {b.shape} differ")
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=axis) * (b * b).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(axis=axis) / denominator, np.nan)


def _videos(recon, truth) -> tuple[np.ndarray, np.ndarray]:
    recon = np.asarray(recon, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    for name, video in (("recon", recon), ("truth", truth)):
        if video.ndim != 3:
            raise ValueError(f"{name} must be a video (T, H, W), got shape {video.shape}")
        if not np.isfinite(video).all():
            raise ValueError(f"{name} has non-finite values")
    if recon.shape != truth.shape:
        raise ValueError(f"recon shape {recon.shape} differs from truth shape {truth.shape}")
    return recon, truth


def _mask(mask, frame_shape: tuple[int, ...]) -> np.ndarray:
    if mask is None:
        return np.ones(frame_shape, dtype=bool)
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise ValueError(f"mask must be boolean (threshold an alpha mask first), got dtype {mask.dtype}")
    if mask.shape != frame_shape:
        raise ValueError(f"mask shape {mask.shape} does not match frame shape {frame_shape}")
    if not mask.any():
        raise ValueError("mask selects no pixels")
    return mask


def _check_skip(skip: int, n_frames: int) -> None:
    if not 0 <= skip < n_frames:
        raise ValueError(f"skip={skip} leaves no frames of a {n_frames}-frame video")
