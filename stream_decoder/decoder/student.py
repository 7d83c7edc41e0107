"""The streaming student: population activity -> the stimulus frame a few ticks back.

Factorised so that a 30 Hz stream costs one read-in per tick:

    activity (N) ─► normalise ─► read-in (N -> D) ─┐
    behaviour (4) ─► normalise ─► (4 -> D) ────────┴─► latent z_t (D)
    z ─► causal temporal blocks (dilated depthwise kernel k, then D x D mixing) ─► norm
      ─► linear (D -> coarse map) ─► 255 * sigmoid ─► fixed bilinear upsample ─► frame (36, 64)

The coarse map (18 x 32 at upsample 2) keeps the generator a small fraction of the read-in cost;
stimuli reconstructed from V1 carry little detail above that resolution.

Every temporal block is a causal convolution, so the newest output needs only the newest input
plus the last `(k - 1) * dilation` inputs of that block, which the stream carries as explicit
state (decoder/streaming.py has the parts every streaming decoder shares: normalisation, read-in,
clip and tick entry points, the exported `StepGraph`).

Lookahead L: the frame emitted at tick t reconstructs the stimulus shown at tick t - L, because
responses lag the stimulus; the head sees L ticks of activity after its target.
"""

import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stream_decoder.data import FRAME_SHAPE
from stream_decoder.decoder import gaze
from stream_decoder.decoder.streaming import StreamingDecoder


@dataclass(frozen=True)
class StudentConfig:
    n_neurons: int
    latent: int = 256  # D, the read-in width
    kernel: int = 5  # taps of each block's temporal filter
    dilations: tuple[int, ...] = (1, 2, 4)  # one causal block each; window = 1 + (kernel-1)*sum
    lookahead: int = 8  # L: ticks between a stimulus frame and the tick that emits it
    neuron_dropout: float = 0.0  # training only: fraction of neurons zeroed per clip (inverted dropout)
    frame_shape: tuple[int, int] = FRAME_SHAPE
    upsample: int = 2  # the generator's map is frame_shape / upsample, then bilinear upsampling
    gaze_gain: float = 0.0  # screen px per eye-camera px of the gaze correction (decoder/gaze.py); 0: none

    def __post_init__(self):
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        object.__setattr__(self, "frame_shape", tuple(int(s) for s in self.frame_shape))
        if self.n_neurons < 1 or self.latent < 1:
            raise ValueError(f"StudentConfig: n_neurons and latent must be >= 1, got {self}")
        if self.kernel < 2 or not self.dilations or any(d < 1 for d in self.dilations):
            raise ValueError(f"StudentConfig: need kernel >= 2 and at least one dilation >= 1, got {self}")
        gaze.check(self)
        if not 0 <= self.lookahead < self.window:
            raise ValueError(
                f"StudentConfig: lookahead {self.lookahead} must lie in [0, window - 1] = "
                f"[0, {self.window - 1}] (the head cannot use activity older than its window)"
            )
        if self.upsample < 1 or any(s % self.upsample for s in self.frame_shape):
            raise ValueError(
                f"StudentConfig: upsample {self.upsample} must divide frame_shape {self.frame_shape}"
            )
        if not 0.0 <= self.neuron_dropout < 1.0:
            raise ValueError(f"StudentConfig: neuron_dropout must lie in [0, 1), got {self.neuron_dropout}")

    @property
    def spans(self) -> tuple[int, ...]:
        """Past inputs each temporal block keeps: its share of the streaming state."""
        return tuple((self.kernel - 1) * d for d in self.dilations)

    @property
    def window(self) -> int:
        """W: how many ticks of activity one output frame depends on."""
        return 1 + sum(self.spans)

    @property
    def coarse_shape(self) -> tuple[int, int]:
        return (self.frame_shape[0] // self.upsample, self.frame_shape[1] // self.upsample)

    def head_state_shapes(self, batch: int = 1) -> list[tuple[int, int, int]]:
        return [(batch, span, self.latent) for span in self.spans]

    def state_shapes(self, batch: int = 1) -> list[tuple[int, int, int]]:
        return self.head_state_shapes(batch) + gaze.state_shapes(self.gaze_gain, self.lookahead, batch)

    def to_json(self) -> str:
        return json.dumps(gaze.config_dict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "StudentConfig":
        return cls(**json.loads(text))


class CausalBlock(nn.Module):
    """z + mix(gelu(temporal(norm(z)))): a causal depthwise temporal filter, then channel mixing.

    Depthwise-separable rather than a dense k*D*D convolution: a tick's cost is set by the bytes
    of weights it reads, and this keeps the head's weights small next to the read-in's.
    """

    def __init__(self, dim: int, kernel: int, dilation: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.temporal = nn.Conv1d(dim, dim, kernel, dilation=dilation, groups=dim)
        self.mix = nn.Linear(dim, dim)
        self.span = (kernel - 1) * dilation  # past inputs the newest output needs

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, T, D), causal (zero history before the first tick)."""
        u = self.norm(z).transpose(1, 2)
        h = self.temporal(F.pad(u, (self.span, 0))).transpose(1, 2)
        return z + self.mix(F.gelu(h))

    def step(self, z: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z: (B, D) newest tick, past: (B, span, D) filter inputs -> (B, D), the next past."""
        window = torch.cat([past, self.norm(z).unsqueeze(1)], dim=1)  # (B, span + 1, D)
        taps = window[:, :: self.temporal.dilation[0]]  # (B, k, D), oldest first like the kernel
        h = (taps * self.temporal.weight[:, 0].T).sum(1) + self.temporal.bias
        return z + self.mix(F.gelu(h)), window[:, 1:]


class Student(StreamingDecoder):
    """The trained decoder: read-in, causal temporal blocks, a sigmoid map upsampled to the frame."""

    def __init__(self, cfg: StudentConfig):
        super().__init__(cfg)
        self.blocks = nn.ModuleList(CausalBlock(cfg.latent, cfg.kernel, d) for d in cfg.dilations)
        self.norm = nn.LayerNorm(cfg.latent)
        self.to_frame = nn.Linear(cfg.latent, cfg.coarse_shape[0] * cfg.coarse_shape[1])

    def normalised(self, activity: torch.Tensor) -> torch.Tensor:
        x = super().normalised(activity)
        if self.training and self.cfg.neuron_dropout > 0:
            # One mask per sample, held over time: a missing ROI stays missing for the whole clip.
            keep = 1.0 - self.cfg.neuron_dropout
            shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
            x = x * torch.bernoulli(torch.full(shape, keep, device=x.device)) / keep
        return x

    def _frames(self, z: torch.Tensor) -> torch.Tensor:
        """(M, D) -> (M, H, W) in 0-255."""
        return self.upsampled(255.0 * torch.sigmoid(self.to_frame(self.norm(z))))

    def blocks_forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, T, D) latents of whole clips -> the temporal blocks' output, (B, T, D)."""
        for block in self.blocks:
            z = block(z)
        return z

    def blocks_step(self, z: torch.Tensor, state: list[torch.Tensor]):
        """Newest latent (B, D), the blocks' state -> their output (B, D), the next state."""
        next_state = []
        for block, past in zip(self.blocks, state, strict=True):
            z, past = block.step(z, past)
            next_state.append(past)
        return z, next_state

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self._frames(self.blocks_forward(z).flatten(0, 1)).unflatten(0, z.shape[:2])

    def head_step(self, z: torch.Tensor, state: list[torch.Tensor]):
        z, next_state = self.blocks_step(z, state)
        return self._frames(z), next_state
