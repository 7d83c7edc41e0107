"""The linear baseline as a streaming decoder: ridge regression on lagged population activity.

What a neuroscientist fits first: the stimulus frame L ticks back as a linear function of the
activity at lags 0, s, 2s, ... (standardised), in closed form (decoder/ridge.py). Served through the
same read-in and `StepGraph` as the student, so a lab can put it on the rig beside the student:

    activity (N) ─► normalise ─► principal components (N -> D) ─┐
    behaviour (4) ─► normalise ──────────────────────────────────┴─► z_t (D + 4)
    [z_{t-(K-1)s}, ..., z_{t-s}, z_t] ─► linear (K (D + 4) -> coarse map) ─► clip to 0-255 ─► upsample

The components keep a tick's cost to one N x D product, as for the student (a ridge penalty
already shrinks the fit towards the leading components, so little is lost: bench_fidelity measures
it); the state is the last (K - 1) s latents.
"""

import json
from dataclasses import dataclass

import torch
from torch import nn

from stream_decoder.data import BEHAVIOR_CHANNELS, FRAME_SHAPE
from stream_decoder.decoder import gaze
from stream_decoder.decoder.streaming import StreamingDecoder, lagged, lagged_step


@dataclass(frozen=True)
class LinearConfig:
    n_neurons: int
    components: int = 256  # D: principal components of the standardised activity
    lags: int = 7  # K taps: activity at lags 0, s, ..., (K - 1) s ticks
    lag_step: int = 2  # s
    lookahead: int = 8  # L: ticks between a stimulus frame and the tick that emits it
    frame_shape: tuple[int, int] = FRAME_SHAPE
    upsample: int = 2  # the map is frame_shape / upsample, then bilinear upsampling, as the student's
    penalty: float = 0.0  # the ridge penalty the weights were fitted with (a record, not used here)
    gaze_gain: float = 0.0  # screen px per eye-camera px of the gaze correction (decoder/gaze.py); 0: none

    def __post_init__(self):
        object.__setattr__(self, "frame_shape", tuple(int(s) for s in self.frame_shape))
        if not 1 <= self.components <= self.n_neurons:
            raise ValueError(f"LinearConfig: components must lie in [1, n_neurons], got {self}")
        if self.lags < 1 or self.lag_step < 1:
            raise ValueError(f"LinearConfig: lags and lag_step must be >= 1, got {self}")
        gaze.check(self)
        if not 0 <= self.lookahead < self.window:
            raise ValueError(
                f"LinearConfig: lookahead {self.lookahead} must lie in [0, {self.window - 1}] "
                f"(the oldest lag the decoder sees)"
            )
        if self.upsample < 1 or any(s % self.upsample for s in self.frame_shape):
            raise ValueError(f"LinearConfig: upsample {self.upsample} must divide {self.frame_shape}")

    @property
    def latent(self) -> int:
        return self.components + BEHAVIOR_CHANNELS

    @property
    def span(self) -> int:
        return (self.lags - 1) * self.lag_step

    @property
    def window(self) -> int:
        return 1 + self.span

    @property
    def coarse_shape(self) -> tuple[int, int]:
        return (self.frame_shape[0] // self.upsample, self.frame_shape[1] // self.upsample)

    def state_shapes(self, batch: int = 1) -> list[tuple[int, int, int]]:
        lags = [(batch, self.span, self.latent)] if self.span else []
        return lags + gaze.state_shapes(self.gaze_gain, self.lookahead, batch)

    def to_json(self) -> str:
        return json.dumps(gaze.config_dict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "LinearConfig":
        return cls(**json.loads(text))


class LinearDecoder(StreamingDecoder):
    ridge_readout = "readout"

    def __init__(self, cfg: LinearConfig):
        super().__init__(cfg)
        self.readout = nn.Linear(cfg.lags * cfg.latent, cfg.coarse_shape[0] * cfg.coarse_shape[1])

    @torch.no_grad()
    def set_read_in(self, components: torch.Tensor) -> None:
        """components (N, D): the activity read-in; behaviour passes through as the last 4 latents."""
        d = self.cfg.components
        self.read_in.weight.zero_()
        self.read_in.bias.zero_()
        self.read_in.weight[:d] = components.T
        self.behavior_in.weight.zero_()
        self.behavior_in.weight[d:] = torch.eye(BEHAVIOR_CHANNELS)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """(B, T, D') latents, zero history -> (B, T, K D') lagged taps, oldest first (as `head_step`)."""
        return lagged(z, self.cfg.lags, self.cfg.lag_step)

    def _frames(self, features: torch.Tensor) -> torch.Tensor:
        return self.upsampled(self.readout(features).clamp(0.0, 255.0))

    def head(self, z: torch.Tensor) -> torch.Tensor:
        features = self.features(z)
        return self._frames(features.flatten(0, 1)).unflatten(0, z.shape[:2])

    def head_step(self, z: torch.Tensor, state: list[torch.Tensor]):
        taps, past = lagged_step(z, state[0] if state else None, self.cfg.lag_step)
        return self._frames(taps), [] if past is None else [past]
