"""Gaze correction: decode the image on the retina, then put it back where the eye looked.

When the eye moves, every receptive field moves over the screen with it, so the same activity
means a shifted image. A decoder of activity alone must blur over every eye position; a linear one
cannot use the pupil centre to undo a shift (a shift is not linear in it). With gaze correction a
decoder emits the image as the eye saw it, and a fixed warp moves it by the eye's screen shift at
the time of that stimulus frame:

    shift_t = gain * (pupil_t - mean training pupil), as (dy, dx) screen px
    screen(y, x) = retinal(y - dy, x - dx)   (mean grey where the eye saw beyond the screen)

`gain` (screen px per eye-camera px) is one number per rig: the baseline chooses it on held-back
clips (`RidgeConfig.gaze_gains`), and a student built on that baseline keeps it. The camera's x and
y axes are taken to be the screen's; a mirrored camera needs a negative gain.
"""

from dataclasses import asdict

import torch

from stream_decoder.data import GRAY

PUPIL = slice(2, 4)  # the pupil centre (x, y) in a tick's behaviour vector (dilation, speed, x, y)


def gaze_shift(pupil: torch.Tensor, centre: torch.Tensor, gain: float) -> torch.Tensor:
    """(..., 2) pupil centres (x, y), eye-camera px -> (..., 2) screen shifts (dy, dx), px."""
    offset = pupil - centre
    return gain * torch.cat([offset[..., 1:2], offset[..., 0:1]], dim=-1)


def _tent(n: int, offset: torch.Tensor, back: bool, transposed: bool = False) -> torch.Tensor:
    """(M, n, n) bilinear sampling along one axis for (M, 1) offsets: output i reads input position
    i + offset (i - offset if `back`), nothing beyond the ends; indexed [m, input, output] if
    `transposed`, else [m, output, input]. Slices and broadcasts only: no gather or transpose op."""
    position = torch.arange(n, dtype=offset.dtype)
    output, source = (position[None, None, :], position[None, :, None])
    if not transposed:
        output, source = source, output
    wanted = output - offset[:, :, None] if back else output + offset[:, :, None]
    return (1.0 - (source - wanted).abs()).clamp_min(0.0)


def warp(frames: torch.Tensor, shift: torch.Tensor, back: bool = False) -> torch.Tensor:
    """(M, H, W) frames sampled at (y + dy, x + dx) for each frame's (M, 2) shift (at (y - dy,
    x - dx) if `back`): bilinear, mean grey beyond the screen. `warp(screen, shift)` is what the eye
    saw; `warp(retinal, shift, back=True)` puts it back on the screen. Two small matrix products
    per frame (no resampling op), so every backend runs it as it runs the rest of the graph."""
    rows = _tent(frames.shape[-2], shift[:, 0:1], back)
    columns = _tent(frames.shape[-1], shift[:, 1:2], back, transposed=True)
    return rows @ (frames - GRAY) @ columns + GRAY


def delayed(shift: torch.Tensor, ticks: int) -> torch.Tensor:
    """(B, T, 2) shifts -> the shift `ticks` frames back, no shift before the first (as `delayed_step`)."""
    return torch.cat([shift.new_zeros(shift.shape[0], ticks, 2), shift], dim=1)[:, : shift.shape[1]]


def delayed_step(shift: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Newest shift (B, 2), the last `ticks` shifts (B, ticks, 2) -> the shift `ticks` back, next past."""
    window = torch.cat([past, shift.unsqueeze(1)], dim=1)
    return window[:, :1].flatten(1), window[:, 1:]  # a slice, not an index: no Gather in the graph


def check(cfg) -> None:
    """A config's gaze settings: a correction needs a lookahead, the frame it moves being L ticks old."""
    if cfg.gaze_gain and cfg.lookahead < 1:
        what = f"{type(cfg).__name__}: gaze correction (gaze_gain {cfg.gaze_gain})"
        raise ValueError(f"{what} needs lookahead >= 1")


def state_shapes(gain: float, lookahead: int, batch: int) -> list[tuple[int, int, int]]:
    """The gaze's share of a decoder's streaming state: the last L shifts, if it corrects gaze."""
    return [(batch, lookahead, 2)] if gain else []


def config_dict(cfg) -> dict:
    """A decoder config as JSON-ready fields; `gaze_gain` only where set, so configs written before
    gaze correction existed (and their model ids) read back unchanged."""
    fields = asdict(cfg)
    if not fields.get("gaze_gain"):
        fields.pop("gaze_gain", None)
    return fields
