"""DwiseNeuro-style dynamic neural encoding model: movie + behaviour -> firing rate of every neuron.

Read top to bottom: the config and its two presets, the building blocks, then `Encoder`.

    video, behaviour, pupil centre -> 5 input channels (B, 5, T, H, W)
    core:   stem conv, then inverted-residual 3D blocks (spatial conv, temporal conv,
            squeeze-excitation), a sinusoidal position code added before each block
    pool:   average over space -> (B, C, T); the position code let the core put "where" into channels
            (or, cpu preset, flatten the small final grid: a learned spatial readout needs less data)
    cortex: grouped 1D convs with channel shuffle, shared by all mice -> (B, 4096, T)
    readout per mouse: dropout, grouped 1D conv -> N neurons, Softplus -> rates >= 0

`dwiseneuro` is the published Sensorium 2023 winner (REFERENCE.md §2), sized for a GPU: frames
zero-padded to 64 x 64, depthwise convs, 16-frame stacks at half the frame rate, and sliding-window
averaging at inference. `cpu` is shaped for a 2-core machine (REFERENCE.md §5): a 4 x 4 patch stem
on the unpadded 36 x 64 frame, dense (2+1)D convs, and the whole clip in one causal pass; its 3 x 4
final grid is flattened into the cortex: trained on a few dozen clips, that predicted responses to
movies of new photographs clearly better than average pooling (0.17 vs 0.10 on the tiny dataset).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from stream_decoder.data import BEHAVIOR_CHANNELS, FRAME_SHAPE, GRAY
from stream_decoder.encoder.config import EncoderConfig

IN_CHANNELS = 1 + BEHAVIOR_CHANNELS  # video, pupil dilation, running speed, pupil centre x, pupil centre y


def encoder_inputs(video, behavior, pupil_center, size: tuple[int, int]) -> torch.Tensor:
    """(B, T, 36, 64), (B, T, 2), (B, T, 2) -> (B, 5, T, *size): the video zero-padded to `size`,
    centred; each behaviour value fills its own channel for its frame (no normalisation, as published)."""
    batch, frames, height, width = video.shape
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    padded = F.pad(video, (left, size[1] - width - left, top, size[0] - height - top))
    extra = torch.cat([behavior, pupil_center], dim=-1).transpose(1, 2)
    extra = extra[..., None, None].expand(batch, BEHAVIOR_CHANNELS, frames, *size)
    return torch.cat([padded.unsqueeze(1), extra.to(padded.dtype)], dim=1)


def shifted(frames: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W) frames sampled at (y + dy, x + dx), bilinear, zero off the frame; `shift`
    (B, T, 2) is (dx, dy) in px, one per frame: where the eye's position moves the image."""
    batch, frames_, height, width = frames.shape
    size = (batch, frames_, height, width)
    ys = torch.arange(height, dtype=frames.dtype, device=frames.device)[:, None] + shift[..., 1, None, None]
    xs = torch.arange(width, dtype=frames.dtype, device=frames.device)[None, :] + shift[..., 0, None, None]
    normalised = (2 * xs.expand(size) / (width - 1) - 1, 2 * ys.expand(size) / (height - 1) - 1)
    grid = torch.stack(normalised, dim=-1).flatten(0, 1)  # (B * T, H, W, 2) as (x, y) in [-1, 1]
    sampled = F.grid_sample(frames.flatten(0, 1)[:, None], grid, padding_mode="zeros", align_corners=True)
    return sampled.view(size)


def position_code(channels: int, sizes: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Sinusoidal code of the position along each axis in `sizes`, shape (channels, *sizes);
    each axis gets an equal share of the channels, as sine/cosine pairs of geometric frequencies."""
    per_axis = 2 * math.ceil(channels / (2 * len(sizes)))
    frequencies = 1.0 / 10000 ** (torch.arange(0, per_axis, 2, device=like.device) / per_axis)
    parts = []
    for axis, size in enumerate(sizes):
        angle = torch.arange(size, device=like.device)[:, None] * frequencies  # (size, per_axis / 2)
        wave = torch.cat([angle.sin(), angle.cos()], dim=1).T  # (per_axis, size)
        shape = [per_axis] + [size if a == axis else 1 for a in range(len(sizes))]
        parts.append(wave.reshape(shape).expand(per_axis, *sizes))
    return torch.cat(parts)[:channels].to(like.dtype)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop a block's whole residual branch for random samples of the batch."""
    if not training or rate == 0.0:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - rate)
    return x * keep / (1.0 - rate)


def tile_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Parameter-free channel matching for shortcuts: repeat the channels cyclically, then cut."""
    if x.shape[1] == channels:
        return x
    repeats = math.ceil(channels / x.shape[1])
    return x.repeat(1, repeats, *[1] * (x.ndim - 2))[:, :channels]


def conv_bn(conv: nn.Module, channels: int, act: bool = True, bn=nn.BatchNorm3d) -> nn.Sequential:
    return nn.Sequential(conv, bn(channels), nn.SiLU() if act else nn.Identity())


class TemporalConv(nn.Module):
    """A (k, 1, 1) conv over time: symmetric zero padding, or causal (all padding in the past)."""

    def __init__(self, channels: int, kernel: int, groups: int, causal: bool):
        super().__init__()
        self.pad = (kernel - 1, 0) if causal else (kernel // 2, kernel // 2)
        self.conv = nn.Conv3d(channels, channels, (kernel, 1, 1), groups=groups, bias=False)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 0, 0, 0, *self.pad)))


class SqueezeExcite(nn.Module):
    """Channel gates from pooled features: pooled over the whole window, or (causal) per frame."""

    def __init__(self, channels: int, reduce: int, per_frame: bool):
        super().__init__()
        hidden = max(1, channels // reduce)
        self.pool_dims = (3, 4) if per_frame else (2, 3, 4)
        self.reduce = nn.Conv3d(channels, hidden, 1)
        self.expand = nn.Conv3d(hidden, channels, 1)

    def forward(self, x):
        gate = self.expand(F.silu(self.reduce(x.mean(self.pool_dims, keepdim=True))))
        return x * gate.sigmoid()


class InvertedResidual(nn.Module):
    """Pointwise expansion -> spatial conv -> temporal conv -> squeeze-excitation -> pointwise
    projection, plus a parameter-free shortcut (nearest downsampling, tiled channels, BatchNorm)."""

    def __init__(self, cfg: EncoderConfig, in_ch: int, out_ch: int, stride: int, drop_rate: float):
        super().__init__()
        mid = in_ch * cfg.expansion
        groups = mid if cfg.depthwise else 1
        k = cfg.spatial_kernel
        self.stride, self.out_ch, self.drop_rate = stride, out_ch, drop_rate
        self.expand = (
            conv_bn(nn.Conv3d(in_ch, mid, 1, bias=False), mid) if cfg.expansion > 1 else nn.Identity()
        )
        self.spatial = conv_bn(
            nn.Conv3d(
                mid, mid, (1, k, k), (1, stride, stride), (0, k // 2, k // 2), groups=groups, bias=False
            ),
            mid,
        )
        self.temporal = conv_bn(TemporalConv(mid, cfg.temporal_kernel, groups, cfg.causal), mid)
        self.excite = SqueezeExcite(mid, cfg.se_reduce, per_frame=cfg.causal)
        self.project = conv_bn(nn.Conv3d(mid, out_ch, 1, bias=False), out_ch, act=False)
        self.shortcut_bn = nn.BatchNorm3d(out_ch)

    def forward(self, x):
        branch = self.project(self.excite(self.temporal(self.spatial(self.expand(x)))))
        shortcut = x
        if self.stride > 1:
            shortcut = F.interpolate(shortcut, size=branch.shape[2:], mode="nearest")
        shortcut = self.shortcut_bn(tile_channels(shortcut, self.out_ch))
        return drop_path(branch, self.drop_rate, self.training) + shortcut


class CortexLayer(nn.Module):
    """Grouped pointwise 1D conv, BatchNorm, SiLU, channel shuffle (so the next layer's groups mix),
    with a tiled-channel shortcut."""

    def __init__(self, in_ch: int, out_ch: int, groups: int, drop_rate: float):
        super().__init__()
        self.groups, self.out_ch, self.drop_rate = groups, out_ch, drop_rate
        self.layer = conv_bn(
            nn.Conv1d(in_ch, out_ch, 1, groups=groups, bias=False), out_ch, bn=nn.BatchNorm1d
        )
        self.shortcut_bn = nn.BatchNorm1d(out_ch)

    def forward(self, x):
        y = self.layer(x)
        batch, channels, frames = y.shape
        y = y.view(batch, self.groups, channels // self.groups, frames).transpose(1, 2).reshape_as(y)
        return drop_path(y, self.drop_rate, self.training) + self.shortcut_bn(tile_channels(x, self.out_ch))


class Readout(nn.Module):
    """One mouse's neurons: dropout of whole cortex channels, a grouped pointwise conv, Softplus."""

    def __init__(self, in_ch: int, neurons: int, cfg: EncoderConfig):
        super().__init__()
        self.neurons = neurons
        self.dropout = nn.Dropout1d(cfg.readout_dropout)
        self.conv = nn.Conv1d(in_ch, math.ceil(neurons / cfg.groups) * cfg.groups, 1, groups=cfg.groups)
        self.gate = nn.Softplus(beta=cfg.softplus_beta)

    def forward(self, x):
        return self.gate(self.conv(self.dropout(x))[:, : self.neurons])

    @torch.no_grad()
    def set_baseline(self, mean_rates: torch.Tensor) -> None:
        """Start every neuron at its mean rate: bias = Softplus^-1(rate), so early steps learn tuning
        rather than scale."""
        beta = self.gate.beta
        rates = mean_rates.clamp_min(1e-3).to(self.conv.bias)
        inverse = rates + torch.log(-torch.expm1(-beta * rates)) / beta
        self.conv.bias.zero_()
        self.conv.bias[: self.neurons] = inverse


class Shifter(nn.Module):
    """One mouse's eye: pupil centre -> a shift (dx, dy) in screen px of the whole image, so the
    core sees the screen as the retina did (the shifter of the Sensorium baselines, Lurz et al.,
    ICLR 2021: a small tanh MLP; here it moves the input, since the cpu core's readout has no
    positions to move). Its last layer starts at zero: no shift until the data ask for one."""

    def __init__(self, hidden: int = 5):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 2))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.register_buffer("centre", torch.zeros(2))
        self.register_buffer("scale", torch.ones(2))

    def forward(self, pupil_center: torch.Tensor) -> torch.Tensor:
        return self.net((pupil_center - self.centre) / self.scale)

    @torch.no_grad()
    def set_centre(self, pupil_center: torch.Tensor) -> None:
        """Normalise by the training clips' pupil positions (N, 2): their mean and sd."""
        self.centre.copy_(pupil_center.mean(0))
        self.scale.copy_(pupil_center.std(0).clamp_min(1e-3))


class Encoder(nn.Module):
    """All mice share the core and cortex; each mouse has its own readout, by name."""

    def __init__(self, cfg: EncoderConfig, neurons: dict[str, int]):
        super().__init__()
        if not neurons:
            raise ValueError("an encoder needs at least one mouse")
        self.cfg = cfg
        self.neurons = dict(neurons)
        self.windows_per_pass = 32  # sliding inference: windows evaluated as one batch
        p = cfg.stem_patch
        width = cfg.features
        self.stem = conv_bn(
            nn.Conv3d(IN_CHANNELS, width[0], (1, p, p), (1, p, p), bias=False), width[0], act=False
        )
        self.blocks = nn.ModuleList(
            InvertedResidual(cfg, in_ch, out_ch, stride, cfg.drop_path * i / len(width))
            for i, (in_ch, out_ch, stride) in enumerate(
                zip(width, (*width[1:], width[-1]), cfg.strides, strict=True)
            )
        )
        pooled = width[-1] * (math.prod(cfg.core_grid) if cfg.pooling == "flatten" else 1)
        cortex_in = (pooled, *cfg.cortex_features[:-1])
        self.cortex = nn.Sequential(
            *(
                CortexLayer(in_ch, out_ch, cfg.groups, cfg.drop_path)
                for in_ch, out_ch in zip(cortex_in, cfg.cortex_features, strict=True)
            )
        )
        self.readouts = nn.ModuleDict(
            {mouse: Readout(cfg.cortex_features[-1], n, cfg) for mouse, n in neurons.items()}
        )
        self.shifters = nn.ModuleDict({mouse: Shifter() for mouse in neurons} if cfg.shifter else {})

    def forward(self, video, behavior, pupil_center, mouse: str) -> torch.Tensor:
        """(B, T, 36, 64) video in 0-255, (B, T, 2) behaviour, (B, T, 2) pupil centre -> rates (B, T, N)."""
        x = self.inputs(video, behavior, pupil_center, mouse)
        if self.cfg.sliding:
            return self.sliding_average(x, mouse)
        return self.predict_frames(x, mouse)

    def inputs(self, video, behavior, pupil_center, mouse: str) -> torch.Tensor:
        """(B, 5, T, H, W) what the core reads; with a shifter the video as the mouse's eye saw it."""
        self.check_mouse(mouse)
        if video.ndim != 4 or tuple(video.shape[2:]) != FRAME_SHAPE:
            raise ValueError(
                f"video must be (B, T, {FRAME_SHAPE[0]}, {FRAME_SHAPE[1]}), got {tuple(video.shape)}"
            )
        for name, value in (("behavior", behavior), ("pupil_center", pupil_center)):
            if tuple(value.shape) != (*video.shape[:2], 2):
                raise ValueError(
                    f"{name} must be (B, T, 2) = {(*video.shape[:2], 2)}, got {tuple(value.shape)}"
                )
        if self.cfg.shifter:
            video = shifted(video - GRAY, self.shifters[mouse](pupil_center)) + GRAY
        return encoder_inputs(video, behavior, pupil_center, self.cfg.input_size)

    def check_mouse(self, mouse: str) -> None:
        if mouse not in self.readouts:
            raise ValueError(f"unknown mouse {mouse!r}; this encoder knows {', '.join(self.readouts)}")

    def predict_frames(self, x: torch.Tensor, mouse: str) -> torch.Tensor:
        """One pass over the frames of `x` (B, 5, T, H, W) as given -> rates (B, T, N)."""
        self.check_mouse(mouse)
        x = self.stem(x)
        for block in self.blocks:
            x = block(self.add_position(x))
        flat = self.cfg.pooling == "flatten"
        x = x.movedim(2, -1).flatten(1, 3) if flat else x.mean(dim=(3, 4))  # (B, C [* h * w], T)
        x = self.cortex(x)
        return self.readouts[mouse](x).transpose(1, 2)

    def add_position(self, x: torch.Tensor) -> torch.Tensor:
        channels, frames, height, width = x.shape[1:]
        if self.cfg.causal:
            return x + position_code(channels, (height, width), x)[:, None]
        return x + position_code(channels, (frames, height, width), x)

    def sliding_average(self, x: torch.Tensor, mouse: str) -> torch.Tensor:
        """One stack ending at every frame (history before frame 0 repeats frame 0); each frame's rate
        is the mean of every stack's prediction for it."""
        frames = x.shape[2]
        offsets = self.cfg.stack_step * torch.arange(self.cfg.stack_frames - 1, -1, -1, device=x.device)
        ends = torch.arange(frames, device=x.device)
        total = x.new_zeros(x.shape[0], frames, self.neurons[mouse])
        counts = x.new_zeros(frames)
        for chunk in ends.split(self.windows_per_pass):
            index = (chunk[:, None] - offsets).clamp_min(0)  # (windows, stack_frames)
            stacks = x[:, :, index].permute(0, 2, 1, 3, 4, 5).flatten(0, 1)  # (B * windows, 5, S, H, W)
            rates = self.predict_frames(stacks, mouse).unflatten(0, (x.shape[0], len(chunk)))
            total = total.index_add(1, index.flatten(), rates.flatten(1, 2))
            counts = counts.index_add(0, index.flatten(), torch.ones_like(index.flatten(), dtype=x.dtype))
        return total / counts[:, None]
