"""Population receptive-field ("alpha") mask: the part of the screen the recorded neurons see.

REFERENCE.md §1: a 2D mask m is optimised so that blending each true clip with another clip,
video * clip(m, 0, 1) + other * (1 - clip(m, 0, 1)), keeps the ensemble's predicted responses close
to the recorded ones (MSE), while a penalty on the mean of clip(m, 0, 1) asks for a small mask.
The gradient (reaching m through every frame, so averaged over time) is normalised, clipped to
+-1 and blurred spatially before each step. The gradient is taken with respect to clip(m, 0, 1)
and applied to m, so m can pass 1 where the responses keep asking for the true pixels:
alpha >= 0.5 is where the teacher may change pixels, alpha >= 1 where it is evaluated.
"""

import logging

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from stream_decoder.teacher.config import MaskConfig

log = logging.getLogger(__name__)

TRAIN_THRESHOLD = 0.5
EVAL_THRESHOLD = 1.0


def train_alpha_mask(encoders, clips, mouse: str, cfg: MaskConfig, progress=True) -> np.ndarray:
    """Optimise the (H, W) alpha mask of one mouse over its training `clips` (`ClipTensors`)."""
    if len(clips) < 2:
        raise ValueError("the alpha mask needs at least two clips: each is blended with another")
    generator = torch.Generator().manual_seed(cfg.seed)
    device = next(encoders[0].parameters()).device
    frames = min(len(c.video) for c in clips)
    data = [
        tuple(a[None, :frames].to(device) for a in (c.video, c.behavior, c.pupil_center, c.responses))
        for c in clips
    ]
    mask = (torch.rand(clips[0].video.shape[1:], generator=generator) * cfg.init_scale).to(device)
    with torch.no_grad():
        baseline = [_response_error(encoders, *clip, mouse) for clip in data]
    bar = tqdm(range(cfg.iterations), desc="alpha mask", unit="it", leave=False, disable=not progress)
    for _ in bar:
        alpha = mask.clamp(0.0, 1.0).requires_grad_(True)
        picks = torch.randint(len(data), (cfg.clips_per_step, 2), generator=generator)
        loss = cfg.size_weight * alpha.mean()
        for i, j in picks.tolist():
            j = j if j != i else (i + 1) % len(data)
            video, behavior, pupil, recorded = data[i]
            blend = video * alpha + data[j][0] * (1 - alpha)
            error = _response_error(encoders, blend, behavior, pupil, recorded, mouse)
            loss = loss + error / baseline[i] / cfg.clips_per_step
        (grad,) = torch.autograd.grad(loss, alpha)
        grad = (grad / grad.norm().clamp_min(1e-12)).clamp(-1.0, 1.0)
        grad = torch.from_numpy(gaussian_filter(grad.cpu().numpy(), cfg.blur_sigma, mode="nearest")).to(
            device
        )
        mask = mask - cfg.lr * grad
        bar.set_postfix(mean_alpha=f"{mask.clamp(0, 1).mean():.3f}")
    return mask.cpu().numpy().astype(np.float32)


def _response_error(encoders, video, behavior, pupil, recorded, mouse) -> torch.Tensor:
    """Mean squared error between the ensemble's mean predicted responses and the recorded ones."""
    predicted = torch.stack([e(video, behavior, pupil, mouse) for e in encoders]).mean(0)
    return torch.mean((predicted - recorded) ** 2)


def training_mask(alpha: np.ndarray | None) -> np.ndarray | None:
    """Pixels the teacher may change; None (every pixel) without an alpha mask. One that passes
    TRAIN_THRESHOLD nowhere leaves every video as it started: said, since nothing else would show it."""
    if alpha is None:
        return None
    mask = alpha >= TRAIN_THRESHOLD
    if not mask.any():
        log.warning(
            "the alpha mask reaches %s at no pixel (max %.2f): the encoders' predicted responses depend "
            "too little on the video for any pixel to pay for its size, so the teacher will change "
            "nothing; fit it longer (reconstruct --mask-iterations), reconstruct every pixel "
            "(--no-mask), or train better encoders",
            TRAIN_THRESHOLD,
            float(alpha.max()),
        )
    return mask.astype(np.float32)


def evaluation_mask(alpha: np.ndarray | None) -> np.ndarray | None:
    """Pixels where reconstructions are scored; None (score every pixel) without an alpha mask or
    when it is empty, which happens only for a mask fitted too briefly to pass 1 anywhere."""
    if alpha is None:
        return None
    mask = alpha >= EVAL_THRESHOLD
    if not mask.any():
        log.warning(
            "the alpha mask reaches %.2f at most, nowhere %.1f: scoring every pixel",
            alpha.max(),
            EVAL_THRESHOLD,
        )
        return None
    return mask
