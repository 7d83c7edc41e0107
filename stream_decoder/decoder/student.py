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
state. `forward` runs whole clips (training); `step` runs one tick (serving). Both compute the
same numbers; `StepGraph` is the serving form of `step` (normalisation folded into the read-in
weights, so a tick is one matrix-vector product plus the head), exported to ONNX as is.

Lookahead L: the frame emitted at tick t reconstructs the stimulus shown at tick t - L, because
responses lag the stimulus; the head sees L ticks of activity after its target.
"""

import json
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

BEHAVIOR_CHANNELS = 4  # pupil dilation, running speed, pupil x, pupil y


@dataclass(frozen=True)
class StudentConfig:
    n_neurons: int
    latent: int = 256  # D, the read-in width
    kernel: int = 5  # taps of each block's temporal filter
    dilations: tuple[int, ...] = (1, 2, 4)  # one causal block each; window = 1 + (kernel-1)*sum
    lookahead: int = 8  # L: ticks between a stimulus frame and the tick that emits it
    neuron_dropout: float = 0.0  # training only: fraction of neurons zeroed per clip (inverted dropout)
    frame_shape: tuple[int, int] = (36, 64)
    upsample: int = 2  # the generator's map is frame_shape / upsample, then bilinear upsampling

    def __post_init__(self):
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        object.__setattr__(self, "frame_shape", tuple(int(s) for s in self.frame_shape))
        if self.n_neurons < 1 or self.latent < 1:
            raise ValueError(f"StudentConfig: n_neurons and latent must be >= 1, got {self}")
        if self.kernel < 2 or not self.dilations or any(d < 1 for d in self.dilations):
            raise ValueError(f"StudentConfig: need kernel >= 2 and at least one dilation >= 1, got {self}")
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

    def state_shapes(self, batch: int = 1) -> list[tuple[int, int, int]]:
        return [(batch, span, self.latent) for span in self.spans]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

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


class Student(nn.Module):
    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.cfg = cfg
        # Normalisation statistics are part of the model so that a daemon feeds raw responses.
        self.register_buffer("activity_mean", torch.zeros(cfg.n_neurons))
        self.register_buffer("activity_std", torch.ones(cfg.n_neurons))
        self.register_buffer("behavior_mean", torch.zeros(BEHAVIOR_CHANNELS))
        self.register_buffer("behavior_std", torch.ones(BEHAVIOR_CHANNELS))
        self.read_in = nn.Linear(cfg.n_neurons, cfg.latent)
        self.behavior_in = nn.Linear(BEHAVIOR_CHANNELS, cfg.latent, bias=False)
        self.blocks = nn.ModuleList(CausalBlock(cfg.latent, cfg.kernel, d) for d in cfg.dilations)
        self.norm = nn.LayerNorm(cfg.latent)
        self.to_frame = nn.Linear(cfg.latent, cfg.coarse_shape[0] * cfg.coarse_shape[1])

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
                raise ValueError(
                    f"set_normalisation: {name} has shape {tuple(value.shape)}, "
                    f"expected {tuple(buffer.shape)}"
                )
            if not torch.isfinite(value).all():
                raise ValueError(f"set_normalisation: {name} has non-finite values")
            buffer.copy_(value.clamp_min(eps) if name.endswith("_std") else value)

    def _latent(self, activity: torch.Tensor, behavior4: torch.Tensor) -> torch.Tensor:
        x = (activity - self.activity_mean) / self.activity_std
        if self.training and self.cfg.neuron_dropout > 0:
            # One mask per sample, held over time: a missing ROI stays missing for the whole clip.
            keep = 1.0 - self.cfg.neuron_dropout
            shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
            x = x * torch.bernoulli(torch.full(shape, keep, device=x.device)) / keep
        b = (behavior4 - self.behavior_mean) / self.behavior_std
        return self.read_in(x) + self.behavior_in(b)

    def _frames(self, z: torch.Tensor) -> torch.Tensor:
        """(M, D) -> (M, H, W) in 0-255. Constant reshapes only, so the exported graph has no Shape ops."""
        coarse = 255.0 * torch.sigmoid(self.to_frame(self.norm(z)))
        coarse = coarse.reshape(-1, 1, *self.cfg.coarse_shape)
        if self.cfg.upsample > 1:
            coarse = F.interpolate(coarse, scale_factor=self.cfg.upsample, mode="bilinear")
        return coarse.reshape(-1, *self.cfg.frame_shape)

    def forward(self, activity, behavior, pupil_center) -> torch.Tensor:
        """(B, T, N), (B, T, 2), (B, T, 2) raw -> (B, T, H, W) in 0-255; frame t shows stimulus t - L."""
        if activity.shape[-1] != self.cfg.n_neurons:
            raise ValueError(
                f"Student: activity has {activity.shape[-1]} neurons, model expects {self.cfg.n_neurons}"
            )
        z = self._latent(activity, torch.cat([behavior, pupil_center], dim=-1))
        for block in self.blocks:
            z = block(z)
        return self._frames(z.flatten(0, 1)).unflatten(0, z.shape[:2])

    def stimulus_frames(self, activity, behavior, pupil_center) -> torch.Tensor:
        """Clip decoded in stimulus time: (B, T - L, H, W), frame i reconstructs stimulus frame i."""
        return self(activity, behavior, pupil_center)[:, self.cfg.lookahead :]

    def initial_state(self, batch: int = 1) -> list[torch.Tensor]:
        """Zero history, the same as `forward`'s causal padding: one (B, span, D) tensor per block."""
        p = self.read_in.weight
        return [p.new_zeros(shape) for shape in self.cfg.state_shapes(batch)]

    def step(self, activity, behavior4, state: list[torch.Tensor]):
        """One tick: (B, N), (B, 4) raw, state -> frame (B, H, W), next state."""
        return self.head_step(self._latent(activity, behavior4), state)

    def head_step(self, z: torch.Tensor, state: list[torch.Tensor]):
        """Newest latent (B, D), state -> frame (B, H, W), next state: the head's share of a tick."""
        next_state = []
        for block, past in zip(self.blocks, state, strict=True):
            z, past = block.step(z, past)
            next_state.append(past)
        return self._frames(z), next_state

    @torch.no_grad()
    def folded_read_in(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Read-in weights with the normalisation folded in: z = W_a @ raw_a + W_b @ raw_b + bias."""
        w_activity = self.read_in.weight / self.activity_std
        w_behavior = self.behavior_in.weight / self.behavior_std
        bias = self.read_in.bias - w_activity @ self.activity_mean - w_behavior @ self.behavior_mean
        return w_activity, w_behavior, bias


class StepGraph(nn.Module):
    """One tick as a pure function `(activity, behavior, *state) -> (frame, *next_state)`.

    The graph the runtime serves and exports, at batch 1: activity (1, N), behavior (1, 4),
    state (1, span, D) per block, frame (1, H, W). A snapshot: rebuild it after the weights change.
    """

    def __init__(self, student: Student):
        super().__init__()
        self.student = student
        w_activity, w_behavior, bias = student.folded_read_in()
        self.register_buffer("w_activity", w_activity.contiguous())
        self.register_buffer("w_behavior", w_behavior.contiguous())
        self.register_buffer("bias", bias)

    def forward(self, activity: torch.Tensor, behavior: torch.Tensor, *state: torch.Tensor):
        z = F.linear(activity, self.w_activity, self.bias) + F.linear(behavior, self.w_behavior)
        frame, next_state = self.student.head_step(z, list(state))
        return (frame, *next_state)
