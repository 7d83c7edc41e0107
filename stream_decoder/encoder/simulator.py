"""The simulator's own encoding as an ensemble member: the ceiling of gradient inversion.

A synthetic mouse's truth folder holds every parameter of its encoding (`data.neurons`). This is
that encoding in torch, differentiable end to end, so the teacher can invert the mouse itself:

    video, pupil centre -> contrast on the retina (the eye's shift, bilinear, zero off-screen)
    -> each neuron's Gabor (and quadrature Gabor) through its temporal kernel -> rectified or
    energy response / (semi-saturation + local contrast) -> thresholded power law, gain scaled by
    running, saturating -> noise-free rates (Hz), what the truth folder's `rates/` hold
    -> per-neuron readout: responses ~ bias + a lag kernel over the rates, fitted by ridge on
    the training tier, standing in for calcium, imaging and deconvolution.

What it leaves out is what no encoder can know: the retinal noise, the hidden behavioural gains and
the spikes. Trained members and this one are interchangeable (`reconstruct --models`).
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from stream_decoder.data import MouseDataset, load_truth, open_mice
from stream_decoder.data.behavior import RUN_ONSET_CM_S, RUN_WIDTH_CM_S
from stream_decoder.data.neurons import CONTRAST_KEEP, MAX_RATE_HZ, Population
from stream_decoder.data.stimuli import LUMINANCE_STD, MEAN_LUMINANCE
from stream_decoder.encoder.checkpoint import (
    CONFIG,
    META,
    SIMULATOR_KIND,
    WEIGHTS,
    save_tensors,
    unit_ids_hash,
    write_json,
)
from stream_decoder.encoder.model import shifted

LAGS = (-4, 15)  # readout kernel: responses lead the rates by up to 4 frames, trail them by 15
READOUT_RIDGE = 1e-3  # ridge on the readout's lag weights, relative to the rates' mean power
RATE_FLOOR = 1e-3  # predicted responses are clamped here: the Poisson loss needs them positive


def leaky_matrix(frames: int, keep: float) -> torch.Tensor:
    """(T, T) lower-triangular keep^(t - s): y = L @ x is y[t] = keep * y[t-1] + x[t]."""
    t = torch.arange(frames)
    power = (t[:, None] - t[None, :]).clamp_min(0).float()
    return torch.where(t[:, None] >= t[None, :], keep**power, torch.zeros(()))


def lagged(rates: np.ndarray) -> np.ndarray:
    """(T, N, lags) each neuron's rates shifted by every lag of `LAGS`, zero where unknown."""
    frames = len(rates)
    out = np.zeros((frames, rates.shape[1], LAGS[1] - LAGS[0] + 1), np.float32)
    for i, lag in enumerate(range(LAGS[0], LAGS[1] + 1)):
        if lag >= 0:
            out[lag:, :, i] = rates[: frames - lag]
        else:
            out[:lag, :, i] = rates[-lag:]
    return out


class SimulatedMouse(nn.Module):
    """One synthetic mouse's encoding; its filters are rebuilt from the truth folder, never saved."""

    def __init__(self, population: Population, eye: dict, n_lags: int = LAGS[1] - LAGS[0] + 1):
        super().__init__()
        p = population
        n = p.n_neurons
        for name, value in {
            "even": p.even,
            "odd": p.odd,
            "kernels": p.kernels.T[:, None, ::-1].copy(),  # (N, 1, K), flipped for conv1d
            "pool": p.pool_weights(),
            "complex": p.is_complex,
            **{k: getattr(p, k) for k in ("normalisation", "threshold", "exponent", "gain", "run_gain")},
            "spontaneous": p.spontaneous_hz,
        }.items():
            self.register_buffer(name, torch.as_tensor(np.asarray(value)), persistent=False)
        self.register_buffer(
            "eye_center", torch.tensor(eye["center_px"], dtype=torch.float32), persistent=False
        )
        self.screen_px_per_eye_px = float(eye["screen_px_per_eye_px"])
        self.weight = nn.Parameter(torch.zeros(n, 1, n_lags))  # (N, 1, lags) in the order of LAGS
        self.bias = nn.Parameter(torch.zeros(n))

    def contrast(self, video: torch.Tensor, pupil_center: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W) contrast as the eye sees it: the screen sampled at (y + dy, x + dx)."""
        shift = self.screen_px_per_eye_px * (pupil_center - self.eye_center)  # (B, T, 2) as (dx, dy)
        return shifted((video - MEAN_LUMINANCE) / LUMINANCE_STD, shift)

    def temporal(self, x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """(B, T, M) each column through its own causal kernel (M, 1, K)."""
        padded = F.pad(x.transpose(1, 2), (kernels.shape[-1] - 1, 0))
        return F.conv1d(padded, kernels, groups=kernels.shape[0]).transpose(1, 2)

    def rates(self, video: torch.Tensor, behavior: torch.Tensor, pupil_center: torch.Tensor) -> torch.Tensor:
        """(B, T, N) noise-free rates in Hz, as `Population.rates` computes them."""
        contrast = self.contrast(video, pupil_center)
        frames = contrast.flatten(2)  # (B, T, pixels)
        linear = self.temporal(frames @ self.even, self.kernels)
        quadrature = linear.new_zeros(linear.shape)
        quadrature[..., self.complex] = self.temporal(frames @ self.odd, self.kernels[self.complex])
        energy_response = torch.sqrt(linear**2 + quadrature**2 + 1e-12)
        response = torch.where(self.complex, energy_response, linear.clamp_min(0.0))
        energy = leaky_matrix(frames.shape[1], CONTRAST_KEEP).to(frames) @ (frames**2 @ self.pool)
        local = torch.sqrt(((1 - CONTRAST_KEEP) * energy).clamp_min(0.0) + 1e-12)
        drive = response / (self.normalisation + local)
        evoked = (drive - self.threshold).clamp_min(0.0) ** self.exponent
        running = torch.sigmoid(
            (behavior[..., 1:2] - RUN_ONSET_CM_S) / RUN_WIDTH_CM_S
        )  # data.behavior.running_state
        modulation = 1.0 + running * self.run_gain
        return self.spontaneous + MAX_RATE_HZ * -torch.expm1(-self.gain * modulation * evoked / MAX_RATE_HZ)

    def readout(self, rates: torch.Tensor) -> torch.Tensor:
        """(B, T, N) rates -> predicted responses through each neuron's lag kernel."""
        padded = F.pad(rates.transpose(1, 2), (LAGS[1], -LAGS[0]))
        out = F.conv1d(padded, self.weight.flip(-1), groups=len(self.bias)).transpose(1, 2)
        return (out + self.bias).clamp_min(RATE_FLOOR)

    def forward(self, video, behavior, pupil_center) -> torch.Tensor:
        return self.readout(self.rates(video, behavior, pupil_center))


class SimulatorEncoder(nn.Module):
    """Ensemble-member interface, `encoder(video, behavior, pupil_center, mouse)`, over the
    simulated mice of a dataset root."""

    def __init__(self, mice: dict[str, SimulatedMouse]):
        super().__init__()
        self.mice = nn.ModuleDict(mice)

    def forward(self, video, behavior, pupil_center, mouse: str) -> torch.Tensor:
        return self.mice[mouse](video, behavior, pupil_center)


def simulated_mouse(mouse_path: Path) -> SimulatedMouse:
    """The encoding behind one synthetic mouse folder, its readout not yet fitted."""
    truth = load_truth(mouse_path)
    fields = Population.__dataclass_fields__
    population = Population(**{k: v for k, v in truth.neurons.items() if k in fields})
    return SimulatedMouse(population, truth.simulation["eye"])


def fit_readout(module: SimulatedMouse, dataset: MouseDataset, tier: str, clips: int) -> np.ndarray:
    """Ridge fit of each neuron's lag kernel and bias from the truth's noise-free rates to the
    recorded responses of the first `clips` trials of `tier`; returns each neuron's correlation
    between fitted and recorded responses on them."""
    truth = load_truth(dataset.path)
    trials = dataset.trials(tier)[:clips]
    if not trials:
        raise ValueError(f"{dataset.path}: no {tier!r} trials to fit the readout on")
    n, lags = len(module.bias), module.weight.shape[-1]
    gram = np.zeros((n, lags + 1, lags + 1))
    cross = np.zeros((n, lags + 1))
    pairs = []
    for trial in trials:
        responses = np.asarray(dataset.clip(trial).responses, np.float32)
        x = lagged(np.asarray(truth.rates(trial), np.float32)[: len(responses)])
        x = np.concatenate([x, np.ones((*x.shape[:2], 1), np.float32)], axis=2)
        gram += np.einsum("tnl,tnm->nlm", x, x, dtype=np.float64)
        cross += np.einsum("tnl,tn->nl", x, responses, dtype=np.float64)
        pairs.append((x, responses))
    power = np.trace(gram[:, :lags, :lags], axis1=1, axis2=2) / lags
    gram[:, np.arange(lags), np.arange(lags)] += READOUT_RIDGE * power[:, None]
    solution = np.linalg.solve(gram, cross[..., None])[..., 0]
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(solution[:, None, :lags]).float())
        module.bias.copy_(torch.from_numpy(solution[:, lags]).float())
    fitted = np.concatenate([np.einsum("tnl,nl->tn", x, solution) for x, _ in pairs])
    recorded = np.concatenate([r for _, r in pairs])
    return _column_correlation(np.maximum(fitted, RATE_FLOOR), recorded)


def _column_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a - a.mean(0), b - b.mean(0)
    denominator = np.sqrt((a**2).sum(0) * (b**2).sum(0))
    return np.where(denominator > 0, (a * b).sum(0) / np.maximum(denominator, 1e-12), np.nan)


def save_simulator_member(root: Path, out: Path, tier: str = "train", clips: int = 32, progress=True) -> Path:
    """Write the simulator encoding of every synthetic mouse under dataset `root` as a member
    directory (config.json naming the mouse folders, weights.pt the fitted readouts, meta.json)."""
    datasets = open_mice(root)
    mice, fits = {}, {}
    for name, dataset in tqdm(datasets.items(), desc="fit readouts", unit="mouse", disable=not progress):
        mice[name] = simulated_mouse(dataset.path)
        correlation = fit_readout(mice[name], dataset, tier, clips)
        fits[name] = {
            "trials": min(clips, len(dataset.trials(tier))),
            "median_correlation": round(float(np.nanmedian(correlation)), 4),
        }
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / WEIGHTS, SimulatorEncoder(mice).state_dict())
    folders = {name: str(dataset.path.resolve()) for name, dataset in datasets.items()}
    write_json(out / CONFIG, {"kind": SIMULATOR_KIND, "mice": folders})
    meta = {
        "kind": SIMULATOR_KIND,
        "neurons": {n: d.n_neurons for n, d in datasets.items()},
        "unit_ids": {n: unit_ids_hash(d.unit_ids) for n, d in datasets.items()},
        "fingerprints": {n: d.fingerprint() for n, d in datasets.items()},
        "readout": {"tier": tier, "lags": list(LAGS), "ridge": READOUT_RIDGE, "fit": fits},
    }
    write_json(out / META, meta)
    return out


def load_simulator_member(config: dict) -> SimulatorEncoder:
    """The member `save_simulator_member` wrote, readouts still zero (the caller loads weights.pt)."""
    return SimulatorEncoder({name: simulated_mouse(Path(path)) for name, path in config["mice"].items()})
