"""Fit the linear baseline in closed form: ridge regression, its penalty chosen on held-back clips.

Three passes over the training clips, each one clip at a time (memory stays at a few feature
matrices, whatever the number of clips): normalisation statistics, the principal components of
the standardised activity, then the sufficient statistics X'X and X'Y of the lagged latents X
against the targets Y (the stimulus frame L ticks back, as the coarse map whose bilinear upsampling
is closest to it). One eigendecomposition of X'X gives the fit for every penalty; the penalty
with the best masked video correlation on the last `validation_clips` training clips is refitted
on all of them. Inputs are exactly what the daemon feeds (the caller builds them with
`data.student_inputs`), so the served decoder is the fitted one.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from stream_decoder.decoder import gaze
from stream_decoder.decoder.config import RidgeConfig
from stream_decoder.decoder.linear import LinearConfig, LinearDecoder
from stream_decoder.metrics import video_correlation

# A clip as the daemon feeds it and what it showed: activity (T, N), behaviour + pupil (T, 4), video (T, H, W)
ClipArrays = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Moments:
    """Sums over rows of features x and targets y: enough to solve a centred ridge regression."""

    xx: torch.Tensor
    xy: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    n: int = 0

    @classmethod
    def zeros(cls, features: int, targets: int) -> "Moments":
        shapes = ((features, features), (features, targets), (features,), (targets,))
        return cls(*(torch.zeros(shape, dtype=torch.float64) for shape in shapes))

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.double(), y.double()
        self.xx += x.T @ x
        self.xy += x.T @ y
        self.x += x.sum(0)
        self.y += y.sum(0)
        self.n += len(x)

    def __add__(self, other: "Moments") -> "Moments":
        sums = (self.xx + other.xx, self.xy + other.xy, self.x + other.x, self.y + other.y)
        return Moments(*sums, self.n + other.n)

    def solver(self):
        """penalty -> (weights (F, P), bias (P,)) of the centred fit; one eigendecomposition for all."""
        mx, my = self.x / self.n, self.y / self.n
        cxx = self.xx - self.n * torch.outer(mx, mx)
        cxy = self.xy - self.n * torch.outer(mx, my)
        values, vectors = torch.linalg.eigh(cxx)
        projected = vectors.T @ cxy

        def solve(penalty: float):
            weights = vectors @ (projected / (values.clamp_min(0) + penalty)[:, None])
            return weights, my - mx @ weights

        return solve


def fit_ridge(
    clips: Sequence[ClipArrays],
    cfg: RidgeConfig,
    mask: np.ndarray | None = None,
    progress: bool = True,
) -> tuple[LinearDecoder, dict]:
    """The fitted decoder and a report: the penalty grid's validation scores and the choice."""
    if len(clips) <= cfg.validation_clips:
        raise ValueError(
            f"fit_ridge: {len(clips)} training clips cannot spare {cfg.validation_clips} for validation"
        )
    n_neurons = clips[0][0].shape[1]
    frame_shape = tuple(clips[0][2].shape[1:])
    model = LinearDecoder(
        LinearConfig(
            n_neurons,
            min(cfg.components, n_neurons),
            cfg.lags,
            cfg.lag_step,
            cfg.lookahead,
            frame_shape,
            cfg.upsample,
        )
    ).eval()
    bar = tqdm(total=3 * len(clips), desc="fit ridge", unit="clip", disable=not progress)
    _set_normalisation(model, clips, bar)
    model.set_read_in(_principal_components(model, clips, bar))
    fit_at, validation = _moments(model, clips, cfg, bar)
    bar.close()
    solve = fit_at.solver()
    scores = {
        (g, p): _score(model, solve, cfg.gaze_gains, g, p, validation, mask)
        for g in cfg.gaze_gains
        for p in cfg.penalties
    }
    gain, best = max(scores, key=lambda key: -np.inf if np.isnan(scores[key]) else scores[key])
    weights, bias = _columns(model, *(fit_at + validation.moments).solver()(best), cfg.gaze_gains.index(gain))
    with torch.no_grad():
        model.readout.weight.copy_(weights.T)
        model.readout.bias.copy_(bias)
    model.cfg = LinearConfig(**{**asdict(model.cfg), "penalty": best, "gaze_gain": gain})
    report = {
        "ridge": settings(cfg),
        "penalty": best,
        "penalty_at_grid_edge": best in (min(cfg.penalties), max(cfg.penalties)),
        "validation_correlation": {f"{p:g}": scores[gain, p] for p in cfg.penalties},
        "gaze_gain": gain,
        "gaze_validation_correlation": {
            f"{g:g}": max(scores[g, p] for p in cfg.penalties) for g in cfg.gaze_gains
        },
    }
    return model, report


def settings(cfg: RidgeConfig) -> dict:
    """The config as the plain JSON an artifact records."""
    return asdict(cfg) | {"penalties": list(cfg.penalties), "gaze_gains": list(cfg.gaze_gains)}


def _inputs(clip: ClipArrays) -> tuple[torch.Tensor, torch.Tensor]:
    activity, behavior4, _ = clip
    return tuple(torch.from_numpy(np.asarray(a, np.float32)) for a in (activity, behavior4))


def _set_normalisation(model: LinearDecoder, clips: Sequence[ClipArrays], bar) -> None:
    """Mean and std per neuron and behaviour channel over every training frame."""
    width = model.cfg.n_neurons + model.behavior_mean.numel()
    total, squares, n = torch.zeros(width, dtype=torch.float64), torch.zeros(width, dtype=torch.float64), 0
    for clip in clips:
        x = torch.cat(_inputs(clip), dim=1).double()
        total += x.sum(0)
        squares += (x**2).sum(0)
        n += len(x)
        bar.update()
    mean = total / n
    std = (squares / n - mean**2).clamp_min(0).sqrt()
    split = model.cfg.n_neurons
    model.set_normalisation(mean[:split], std[:split], mean[split:], std[split:])


def _principal_components(model: LinearDecoder, clips: Sequence[ClipArrays], bar) -> torch.Tensor:
    """(N, D): the leading eigenvectors of the standardised activity's covariance."""
    n_neurons = model.cfg.n_neurons
    moments = Moments.zeros(n_neurons, 0)
    with torch.no_grad():
        for clip in clips:
            x = model.normalised(_inputs(clip)[0])
            moments.add(x, x[:, :0])
            bar.update()
    mean = moments.x / moments.n
    _, vectors = torch.linalg.eigh(moments.xx - moments.n * torch.outer(mean, mean))
    return vectors[:, -model.cfg.components :].flip(1).float()


@dataclass
class Validation:
    """The held-back clips' features, true videos and gaze inputs, and their moments for the final refit."""

    features: list[torch.Tensor]
    videos: list[np.ndarray]
    pupils: list[torch.Tensor]  # (T, 2) pupil centres, raw
    moments: Moments


def _retinal_targets(model: LinearDecoder, video: np.ndarray, pupil: torch.Tensor, gains, to_coarse):
    """(T, G P): each stimulus frame as the eye saw it under each candidate gaze gain, as the coarse
    map (gain 0: the screen itself), side by side."""
    frames = torch.from_numpy(np.asarray(video, np.float32))
    centre = model.behavior_mean[gaze.PUPIL]
    seen = [gaze.warp(frames, gaze.gaze_shift(pupil, centre, g)) if g else frames for g in gains]
    return torch.cat([frame.flatten(1) @ to_coarse.T for frame in seen], dim=1)


def _moments(model: LinearDecoder, clips: Sequence[ClipArrays], cfg: RidgeConfig, bar):
    lookahead = model.cfg.lookahead
    to_coarse = coarse_projection(model)
    n_features, n_targets = model.cfg.lags * model.cfg.latent, len(cfg.gaze_gains) * to_coarse.shape[0]
    fit_at = Moments.zeros(n_features, n_targets)
    validation = Validation([], [], [], Moments.zeros(n_features, n_targets))
    with torch.no_grad():
        for index, clip in enumerate(clips):
            activity, behavior4 = _inputs(clip)
            features = model.features(model.latent(activity, behavior4)[None])[0]
            video = np.asarray(clip[2], np.float32)
            stop = len(video) - lookahead
            pupil = behavior4[:, gaze.PUPIL]
            targets = _retinal_targets(model, video[:stop], pupil[:stop], cfg.gaze_gains, to_coarse)
            rows = features[lookahead:]
            if index < len(clips) - cfg.validation_clips:
                fit_at.add(rows, targets)
            else:
                validation.moments.add(rows, targets)
                validation.features.append(features)
                validation.videos.append(video)
                validation.pupils.append(pupil)
            bar.update()
    return fit_at, validation


def coarse_projection(model: LinearDecoder) -> torch.Tensor:
    """(h w, H W): the map whose bilinear upsampling is closest (least squares) to a frame."""
    pixels = model.cfg.coarse_shape[0] * model.cfg.coarse_shape[1]
    upsampling = model.upsampled(torch.eye(pixels)).flatten(1)  # (h w, H W): row i is basis map i upsampled
    return torch.linalg.pinv(upsampling.T.double()).float()


def _columns(model: LinearDecoder, weights: torch.Tensor, bias: torch.Tensor, index: int):
    """The fit of the `index`-th candidate gain's targets, out of the fit of all of them side by side."""
    width = model.readout.out_features
    return weights[:, index * width : (index + 1) * width], bias[index * width : (index + 1) * width]


def _score(model: LinearDecoder, solve, gains, gain: float, penalty: float, validation: Validation, mask):
    """Masked video correlation on the held-back clips of the fit at this gaze gain and penalty,
    each decoded frame moved back to the screen by the eye's shift at its stimulus frame."""
    weights, bias = _columns(model, *solve(penalty), gains.index(gain))
    lookahead = model.cfg.lookahead
    centre = model.behavior_mean[gaze.PUPIL]
    scores = []
    for features, video, pupil in zip(validation.features, validation.videos, validation.pupils, strict=True):
        stop = len(video) - lookahead
        coarse = (features[lookahead:].double() @ weights + bias).clamp(0.0, 255.0).float()
        frames = model.upsampled(coarse)
        if gain:
            frames = gaze.warp(frames, gaze.gaze_shift(pupil[:stop], centre, gain), back=True)
        scores.append(video_correlation(frames.numpy(), video[:stop], mask))
    return float(np.nanmean(scores))
