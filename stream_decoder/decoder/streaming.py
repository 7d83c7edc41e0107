"""What every streaming decoder shares: raw activity in, one read-in per tick, a causal head.

    activity (N) ─► normalise ─► read-in (N -> D) ─┐
    behaviour (4) ─► normalise ─► (4 -> D) ────────┴─► latent z_t (D) ─► head (causal, with state)

A decoder's head sees the newest latent plus the state it carries (one (B, span, D) tensor per
piece of history it keeps) and emits the frame showing the stimulus L ticks back. `forward` runs
whole clips (training, offline decoding); `step` runs one tick (serving). Both compute the same
numbers; `StepGraph` is the serving form of `step`, exported to ONNX as is. The student (a trained
nonlinear head) and the linear baseline (a ridge head over lagged latents) are the two decoders.
"""

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from stream_decoder.data import BEHAVIOR_CHANNELS
from stream_decoder.decoder import gaze


class StreamingDecoder(nn.Module, ABC):
    """Normalisation statistics, read-in and the clip/tick entry points; subclasses give the head.

    `cfg` must provide n_neurons, latent, lookahead, frame_shape, upsample and state_shapes(batch).
    """

    # The nn.Linear attribute holding the head's ridge readout over lagged latents, if it has one:
    # after the read-in, the largest weights a tick reads (the int8 graph quantizes both).
    ridge_readout: ClassVar[str | None] = None

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        # Normalisation statistics are part of the model so that a daemon feeds raw responses.
        self.register_buffer("activity_mean", torch.zeros(cfg.n_neurons))
        self.register_buffer("activity_std", torch.ones(cfg.n_neurons))
        self.register_buffer("behavior_mean", torch.zeros(BEHAVIOR_CHANNELS))
        self.register_buffer("behavior_std", torch.ones(BEHAVIOR_CHANNELS))
        self.read_in = nn.Linear(cfg.n_neurons, cfg.latent)
        self.behavior_in = nn.Linear(BEHAVIOR_CHANNELS, cfg.latent, bias=False)

    def set_normalisation(self, activity_mean, activity_std, behavior_mean, behavior_std, eps=1e-3):
        """Per-neuron and per-behaviour-channel statistics of the training data; std floored at eps."""
        stats = {
            "activity_mean": activity_mean,
            "activity_std": activity_std,
            "behavior_mean": behavior_mean,
            "behavior_std": behavior_std,
        }
        for name, value in stats.items():
            value = torch.as_tensor(value, dtype=torch.float32)
            buffer = getattr(self, name)
            if value.shape != buffer.shape:
                shapes = f"{tuple(value.shape)}, expected {tuple(buffer.shape)}"
                raise ValueError(f"set_normalisation: {name} has shape {shapes}")
            if not torch.isfinite(value).all():
                raise ValueError(f"set_normalisation: {name} has non-finite values")
            buffer.copy_(value.clamp_min(eps) if name.endswith("_std") else value)

    @torch.no_grad()
    def copy_normalisation(self, other: "StreamingDecoder") -> None:
        """`other`'s statistics: a decoder reading in through another's weights normalises as it does."""
        for name in ("activity_mean", "activity_std", "behavior_mean", "behavior_std"):
            getattr(self, name).copy_(getattr(other, name))

    def normalised(self, activity: torch.Tensor) -> torch.Tensor:
        return (activity - self.activity_mean) / self.activity_std

    def latent(self, activity: torch.Tensor, behavior4: torch.Tensor) -> torch.Tensor:
        b = (behavior4 - self.behavior_mean) / self.behavior_std
        return self.read_in(self.normalised(activity)) + self.behavior_in(b)

    def upsampled(self, coarse: torch.Tensor) -> torch.Tensor:
        """(M, h, w) coarse maps -> (M, H, W). Constant reshapes only: the graph has no Shape ops."""
        coarse = coarse.reshape(-1, 1, *self.cfg.coarse_shape)
        if self.cfg.upsample > 1:
            coarse = F.interpolate(coarse, scale_factor=self.cfg.upsample, mode="bilinear")
        return coarse.reshape(-1, *self.cfg.frame_shape)

    @property
    def gaze_gain(self) -> float:
        """Screen px per eye-camera px of the gaze correction (decoder/gaze.py); 0 for none."""
        return self.cfg.gaze_gain

    def gaze_shift(self, behavior4: torch.Tensor) -> torch.Tensor:
        """(..., 4) raw behaviour -> (..., 2) the eye's screen shift (dy, dx)."""
        return gaze.gaze_shift(behavior4[..., gaze.PUPIL], self.behavior_mean[gaze.PUPIL], self.gaze_gain)

    def forward(self, activity, behavior, pupil_center) -> torch.Tensor:
        """(B, T, N), (B, T, 2), (B, T, 2) raw -> (B, T, H, W) in 0-255; frame t shows stimulus t - L."""
        if activity.shape[-1] != self.cfg.n_neurons:
            raise ValueError(
                f"{type(self).__name__}: activity has {activity.shape[-1]} neurons, model expects "
                f"{self.cfg.n_neurons}"
            )
        behavior4 = torch.cat([behavior, pupil_center], dim=-1)
        frames = self.head(self.latent(activity, behavior4))
        if not self.gaze_gain:
            return frames
        then = gaze.delayed(self.gaze_shift(behavior4), self.cfg.lookahead)
        return gaze.warp(frames.flatten(0, 1), then.flatten(0, 1), back=True).unflatten(0, frames.shape[:2])

    @abstractmethod
    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Latents of whole clips (B, T, D), zero history before the first -> frames (B, T, H, W)."""

    @abstractmethod
    def head_step(self, z: torch.Tensor, state: list[torch.Tensor]):
        """Newest latent (B, D), state -> frame (B, H, W), next state: the head's share of a tick."""

    def stimulus_frames(self, activity, behavior, pupil_center) -> torch.Tensor:
        """Clip decoded in stimulus time: (B, T - L, H, W), frame i reconstructs stimulus frame i."""
        return self(activity, behavior, pupil_center)[:, self.cfg.lookahead :]

    def initial_state(self, batch: int = 1) -> list[torch.Tensor]:
        """Zero history, the same as `forward`'s causal padding."""
        p = self.read_in.weight
        return [p.new_zeros(shape) for shape in self.cfg.state_shapes(batch)]

    def step(self, activity, behavior4, state: list[torch.Tensor]):
        """One tick: (B, N), (B, 4) raw, state -> frame (B, H, W), next state."""
        return self.tick(self.latent(activity, behavior4), behavior4, state)

    def tick(self, z, behavior4, state: list[torch.Tensor]):
        """A tick from its latent: the head's frame, moved by the eye's shift L ticks back if the
        decoder corrects gaze (the last state tensor then holds the last L shifts)."""
        if not self.gaze_gain:
            return self.head_step(z, state)
        frame, next_state = self.head_step(z, state[:-1])
        then, shifts = gaze.delayed_step(self.gaze_shift(behavior4), state[-1])
        return gaze.warp(frame, then, back=True), [*next_state, shifts]

    @torch.no_grad()
    def folded_read_in(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Read-in weights with the normalisation folded in: z = W_a @ raw_a + W_b @ raw_b + bias."""
        w_activity = self.read_in.weight / self.activity_std
        w_behavior = self.behavior_in.weight / self.behavior_std
        bias = self.read_in.bias - w_activity @ self.activity_mean - w_behavior @ self.behavior_mean
        return w_activity, w_behavior, bias


def lagged(z: torch.Tensor, lags: int, step: int) -> torch.Tensor:
    """(B, T, D) latents, zero history -> (B, T, K D): the latents at lags (K - 1) s, ..., s, 0,
    oldest first (as `lagged_step`)."""
    span = (lags - 1) * step
    padded = torch.cat([z.new_zeros(z.shape[0], span, z.shape[2]), z], dim=1)
    length = z.shape[1]
    return torch.cat([padded[:, start : start + length] for start in range(0, span + 1, step)], dim=-1)


def lagged_step(z: torch.Tensor, past: torch.Tensor | None, step: int):
    """Newest latent (B, D), the last span latents (B, span, D) or None (lag 0 only) -> the taps
    (B, K D) and the next past: one tick of `lagged`."""
    if past is None:
        return z, None
    window = torch.cat([past, z.unsqueeze(1)], dim=1)  # (B, span + 1, D)
    return window[:, ::step].flatten(1), window[:, 1:]


class StepGraph(nn.Module):
    """One tick as a pure function `(activity, behavior, *state) -> (frame, *next_state)`.

    The graph the runtime serves and exports, at batch 1: activity (1, N), behavior (1, 4),
    state per `cfg.state_shapes(1)`, frame (1, H, W); normalisation folded into the read-in, so a
    tick is one matrix-vector product plus the head. A snapshot: rebuild it after weights change.
    """

    def __init__(self, decoder: StreamingDecoder):
        super().__init__()
        self.decoder = decoder
        w_activity, w_behavior, bias = decoder.folded_read_in()
        self.register_buffer("w_activity", w_activity.contiguous())
        self.register_buffer("w_behavior", w_behavior.contiguous())
        self.register_buffer("bias", bias)

    def forward(self, activity: torch.Tensor, behavior: torch.Tensor, *state: torch.Tensor):
        frame, next_state = self.decoder.tick(self.read_in(activity, behavior), behavior, list(state))
        return (frame, *next_state)

    def read_in(self, activity: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        """The latent z_t: one Gemm with the folded weights (the runtime's int8 variant overrides it)."""
        return F.linear(activity, self.w_activity, self.bias) + F.linear(behavior, self.w_behavior)
