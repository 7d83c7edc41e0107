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

from stream_decoder.data import GRAY
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
    fit_at, validation = _moments(model, clips, cfg.validation_clips, bar)
    bar.close()
    solve = fit_at.solver()
    scores = {p: _score(model, solve, p, validation, mask) for p in cfg.penalties}
    best = max(scores, key=lambda p: -np.inf if np.isnan(scores[p]) else scores[p])
    weights, bias = (fit_at + validation.moments).solver()(best)
    with torch.no_grad():
        model.readout.weight.copy_(weights.T)
        model.readout.bias.copy_(bias)
    model.cfg = LinearConfig(**{**asdict(model.cfg), "penalty": best})
    report = {
        "ridge": settings(cfg),
        "penalty": best,
        "penalty_at_grid_edge": best in (min(cfg.penalties), max(cfg.penalties)),
        "validation_correlation": {f"{p:g}": s for p, s in scores.items()},
    }
    return model, report


def settings(cfg: RidgeConfig) -> dict:
    """The config as the plain JSON an artifact records."""
    return asdict(cfg) | {"penalties": list(cfg.penalties)}


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
    """The held-back clips' features and true videos, and their moments for the final refit."""

    features: list[torch.Tensor]
    videos: list[np.ndarray]
    moments: Moments


def _moments(model: LinearDecoder, clips: Sequence[ClipArrays], held_back: int, bar):
    lookahead = model.cfg.lookahead
    to_coarse = coarse_projection(model)
    n_features = model.cfg.lags * model.cfg.latent
    fit_at = Moments.zeros(n_features, to_coarse.shape[0])
    validation = Validation([], [], Moments.zeros(n_features, to_coarse.shape[0]))
    with torch.no_grad():
        for index, clip in enumerate(clips):
            features = model.features(model.latent(*_inputs(clip))[None])[0]
            video = np.asarray(clip[2], np.float32)
            targets = torch.from_numpy(video[: len(video) - lookahead]).flatten(1) @ to_coarse.T
            rows = features[lookahead:]
            if index < len(clips) - held_back:
                fit_at.add(rows, targets)
            else:
                validation.moments.add(rows, targets)
                validation.features.append(features)
                validation.videos.append(video)
            bar.update()
    return fit_at, validation


def coarse_projection(model: LinearDecoder) -> torch.Tensor:
    """(h w, H W): the map whose bilinear upsampling is closest (least squares) to a frame."""
    pixels = model.cfg.coarse_shape[0] * model.cfg.coarse_shape[1]
    upsampling = model.upsampled(torch.eye(pixels)).flatten(1)  # (h w, H W): row i is basis map i upsampled
    return torch.linalg.pinv(upsampling.T.double()).float()


def _score(model: LinearDecoder, solve, penalty: float, validation: Validation, mask) -> float:
    weights, bias = solve(penalty)
    scores = []
    lookahead = model.cfg.lookahead
    for features, video in zip(validation.features, validation.videos, strict=True):
        coarse = (features.double() @ weights + bias).clamp(0.0, 255.0).float()
        frames = model.upsampled(coarse).numpy()[lookahead:]
        decoded = np.full(video.shape, GRAY, np.float32)
        decoded[: len(frames)] = frames
        stop = len(video) - lookahead
        scores.append(video_correlation(decoded[:stop], video[:stop], mask))
    return float(np.nanmean(scores))
