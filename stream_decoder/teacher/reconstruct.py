"""The teacher: reconstruct a clip by inverting the encoder ensemble with gradient descent.

Bauer, Margrie & Clopath (eLife 2026), REFERENCE.md §1: start from a gray video, push it so that
each encoder's predicted responses match the recorded ones (Poisson loss, behaviour held at its
recorded values), one reconstruction per ensemble member, average them, smooth in space and time.

    for every iteration:
        gradient of the loss on every window (evaluated as one batch), each divided by its L2 norm,
        averaged where windows overlap, times the training mask, clipped to +-1
        bias-corrected momentum (+ Adam's second moment in the `cpu` preset), warm-up of the rate
        video -= rate * step, then clipped to [0, 255]

Several clips of equal length reconstruct together as one batch.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from stream_decoder.data import GRAY
from stream_decoder.teacher.config import PRESETS, TeacherConfig


def window_index(frames: int, window: int | None, stride: int) -> torch.Tensor:
    """(windows, window) frame indices: every `stride` frames, the last window aligned to the end."""
    if window is None or window >= frames:
        return torch.arange(frames)[None]
    starts = list(range(0, frames - window + 1, stride))
    if starts[-1] != frames - window:
        starts.append(frames - window)
    return torch.tensor(starts)[:, None] + torch.arange(window)


def poisson_loss(predicted: torch.Tensor, recorded: torch.Tensor) -> torch.Tensor:
    """Poisson negative log-likelihood with rates as input (log_input=False), summed."""
    return torch.nn.functional.poisson_nll_loss(predicted, recorded, log_input=False, reduction="sum")


def neuron_subset(n_neurons: int, cfg: TeacherConfig) -> torch.Tensor:
    count = max(1, round(cfg.neuron_fraction * n_neurons))
    generator = torch.Generator().manual_seed(cfg.seed)
    return torch.randperm(n_neurons, generator=generator)[:count].sort().values


def window_gradient(encoder, video, behavior, pupil, recorded, mouse, index, neurons) -> torch.Tensor:
    """Loss gradient for (B, T, H, W) `video`: one per window, each normalised, overlaps averaged."""
    batch, frames = video.shape[:2]
    windows = video[:, index].detach().flatten(0, 1).requires_grad_(True)  # (B * W, window, H, W)
    predicted = encoder(windows, behavior[:, index].flatten(0, 1), pupil[:, index].flatten(0, 1), mouse)
    loss = poisson_loss(predicted[..., neurons], recorded[:, index].flatten(0, 1)[..., neurons])
    (grad,) = torch.autograd.grad(loss, windows)
    grad = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
    grad = grad.unflatten(0, (batch, len(index)))
    total = video.new_zeros(video.shape).index_add_(1, index.flatten(), grad.flatten(1, 2))
    counts = torch.bincount(index.flatten(), minlength=frames).to(video)
    return total / counts[None, :, None, None]


def learning_rate(cfg: TeacherConfig, iteration: int) -> float:
    rate = cfg.lr * min(1.0, (iteration + 1) / cfg.warmup)
    if cfg.cosine and iteration >= cfg.warmup:
        progress = (iteration - cfg.warmup) / max(1, cfg.iterations - cfg.warmup)
        rate *= 0.5 * (1 + math.cos(math.pi * progress))
    return rate


def invert(encoder, clips: "ClipBatch", mouse: str, mask, cfg: TeacherConfig, init=None, progress=True):
    """One member's reconstruction of a batch of clips: (B, T, H, W) float32 tensor in 0-255, on
    the encoder's device."""
    device = next(encoder.parameters()).device
    clips = clips.to(device)
    video = torch.full(clips.shape, GRAY) if init is None else torch.as_tensor(init).float().clamp(0.0, 255.0)
    video = video.to(device)
    mask = torch.ones(clips.shape[2:]) if mask is None else torch.as_tensor(mask, dtype=torch.float32)
    mask = mask.to(device)
    index = window_index(clips.shape[1], cfg.window, cfg.stride).to(device)
    neurons = neuron_subset(clips.recorded.shape[-1], cfg).to(device)
    first, second = torch.zeros_like(video), torch.zeros_like(video)
    bar = tqdm(range(cfg.iterations), desc="teacher", unit="it", leave=False, disable=not progress)
    for it in bar:
        grad = window_gradient(
            encoder, video, clips.behavior, clips.pupil, clips.recorded, mouse, index, neurons
        )
        grad = (grad * mask).clamp_(-1.0, 1.0)
        first.mul_(cfg.beta1).add_(grad, alpha=1 - cfg.beta1)
        step = first / (1 - cfg.beta1 ** (it + 1))
        if cfg.adam:
            second.mul_(cfg.beta2).addcmul_(grad, grad, value=1 - cfg.beta2)
            step = step / ((second / (1 - cfg.beta2 ** (it + 1))).sqrt() + 1e-8)
        video.sub_(learning_rate(cfg, it) * step).clamp_(0.0, 255.0)
    return video


@dataclass
class ClipBatch:
    """Clips of equal length as (B, T, ...) tensors: what the teacher holds fixed."""

    recorded: torch.Tensor  # (B, T, N) responses
    behavior: torch.Tensor  # (B, T, 2)
    pupil: torch.Tensor  # (B, T, 2)
    frame_shape: tuple[int, int]

    @classmethod
    def of(cls, clips) -> "ClipBatch":
        """From a list of `ClipTensors` (stream_decoder.encoder.batches)."""
        lengths = {len(c.responses) for c in clips}
        if len(lengths) != 1:
            raise ValueError(f"clips reconstructed together must have one length, got {sorted(lengths)}")
        stack = [
            torch.stack([getattr(c, name) for c in clips])
            for name in ("responses", "behavior", "pupil_center")
        ]
        return cls(*stack, tuple(clips[0].video.shape[1:]))

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.recorded.shape[:2], *self.frame_shape)

    def to(self, device: torch.device) -> "ClipBatch":
        move = (t.to(device) for t in (self.recorded, self.behavior, self.pupil))
        return ClipBatch(*move, self.frame_shape)


def smooth(videos: np.ndarray, sigma: float) -> np.ndarray:
    """3D gaussian over (t, y, x) of each (T, H, W) video in a (B, T, H, W) batch."""
    if sigma <= 0:
        return videos
    return gaussian_filter(videos, sigma=(0, sigma, sigma, sigma), mode="nearest")


def reconstruct(
    clips, encoders, mouse: str, mask=None, cfg: TeacherConfig | None = None, init=None, progress=True
) -> np.ndarray:
    """Ensemble reconstruction of `clips` (a list of `ClipTensors`): (B, T, H, W) float32 in 0-255.

    Each member inverts on its own; their videos are averaged, then smoothed. `mask` is the training
    mask (1 where pixels may change); `init` a starting video (e.g. the student's) instead of gray.
    """
    cfg = cfg or PRESETS["published"]
    batch = ClipBatch.of(clips)
    members = [invert(encoder, batch, mouse, mask, cfg, init, progress).cpu() for encoder in encoders]
    return smooth(torch.stack(members).mean(0).numpy(), cfg.smooth_sigma).astype(np.float32)
