"""A student that corrects the linear baseline: the baseline's frame plus a learned nonlinear term.

    z_t (the baseline's latent) ─┬─► lagged taps ─► ridge readout ─────┐
                                 └─► causal blocks ─► correction map ─┴─► sum ─► clip ─► upsample

Built from a fitted baseline (`distill --residual-of`), it starts as that baseline exactly, because
the correction's map starts at zero; training moves it away only where the loss falls. So the
nonlinear head spends its capacity on what a linear read-out of the same latents misses, instead of
first relearning the linear part. The read-in and the ridge readout stay the baseline's (frozen).
"""

from dataclasses import dataclass

import torch
from torch import nn

from stream_decoder.decoder.streaming import lagged, lagged_step
from stream_decoder.decoder.student import Student, StudentConfig

# Pixels per unit of the correction map: the plain student's sigmoid map moves 255 / 4 pixels per
# unit at mid-grey, so a correction trains at the same rate as the student's own map.
CORRECTION_GAIN = 255.0 / 4


@dataclass(frozen=True)
class ResidualConfig(StudentConfig):
    """The student's config plus the lags its baseline's readout reads (its latent: the baseline's)."""

    lags: int = 7  # K taps of the baseline's readout: latents at lags 0, s, ..., (K - 1) s
    lag_step: int = 2  # s

    def __post_init__(self):
        if self.lags < 1 or self.lag_step < 1:
            raise ValueError(f"ResidualConfig: lags and lag_step must be >= 1, got {self}")
        super().__post_init__()

    @property
    def linear_span(self) -> int:
        return (self.lags - 1) * self.lag_step

    @property
    def window(self) -> int:
        return max(super().window, 1 + self.linear_span)

    def head_state_shapes(self, batch: int = 1) -> list[tuple[int, int, int]]:
        linear = [(batch, self.linear_span, self.latent)] if self.linear_span else []
        return super().head_state_shapes(batch) + linear


class ResidualStudent(Student):
    """The baseline's ridge readout over lagged latents plus the student's head as a correction."""

    ridge_readout = "linear"

    def __init__(self, cfg: ResidualConfig):
        super().__init__(cfg)
        coarse = cfg.coarse_shape[0] * cfg.coarse_shape[1]
        self.linear = nn.Linear(cfg.lags * cfg.latent, coarse)
        nn.init.zeros_(self.to_frame.weight)
        nn.init.zeros_(self.to_frame.bias)

    def _frames(self, z: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
        correction = CORRECTION_GAIN * self.to_frame(self.norm(z))
        return self.upsampled((self.linear(taps) + correction).clamp(0.0, 255.0))

    def head(self, z: torch.Tensor) -> torch.Tensor:
        taps = lagged(z, self.cfg.lags, self.cfg.lag_step).flatten(0, 1)
        frames = self._frames(self.blocks_forward(z).flatten(0, 1), taps)
        return frames.unflatten(0, z.shape[:2])

    def head_step(self, z: torch.Tensor, state: list[torch.Tensor]):
        blocks_state, linear_past = (state[:-1], state[-1]) if self.cfg.linear_span else (state, None)
        taps, linear_past = lagged_step(z, linear_past, self.cfg.lag_step)
        h, next_state = self.blocks_step(z, blocks_state)
        return self._frames(h, taps), next_state + ([] if linear_past is None else [linear_past])
