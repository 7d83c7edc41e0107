"""Simulation settings: one typed configuration, and the three presets."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from .behavior import BehaviorConfig
from .imaging import ImagingConfig
from .neurons import PopulationConfig


@dataclass(frozen=True)
class TrialPlan:
    """How many trials of each tier and stimulus; repeats show the identical video."""

    train: int  # natural movies of the training photographs
    oracle_clips: int  # natural movies of the training photographs, repeated
    oracle_repeats: int
    test_clips: int  # final_test_main: natural movies of held-out photographs, repeated
    test_repeats: int
    gratings: int  # live_test_bonus
    pink_noise: int  # final_test_bonus
    gaussian_dots: int  # final_test_bonus
    ood_repeats: int
    ood_frames: tuple[int, int] = (240, 300)  # shorter trials are NaN-padded, as in the release

    @property
    def n_trials(self) -> int:
        ood = (self.gratings + self.pink_noise + self.gaussian_dots) * self.ood_repeats
        return (
            self.train + self.oracle_clips * self.oracle_repeats + self.test_clips * self.test_repeats + ood
        )


@dataclass(frozen=True)
class SimulationConfig:
    preset: str
    population: PopulationConfig
    trials: TrialPlan
    imaging: ImagingConfig = field(default_factory=ImagingConfig)
    behavior: BehaviorConfig = field(default_factory=BehaviorConfig)
    calibration_clips: int = 2  # natural movies that set each neuron's threshold and gain
    preroll_frames: int = 30  # 1 s of grey before the clip, so filters and calcium start settled


PRESETS = {
    # Every test of every stage uses this: seconds to generate, and decodable from 320 neurons, so
    # it keeps the easier mouse of the first simulator (unbalanced fields, fewer complex cells,
    # denser firing, no retinal noise or hidden behaviour, brighter imaging); `demo` and `mouse`
    # are calibrated against real mice (bench/bench_realism.py).
    "tiny": SimulationConfig(
        "tiny",
        PopulationConfig(
            n_neurons=320,  # not 300 = frames: a (T, N) / (N, T) mix-up cannot hide
            complex_fraction=0.55, balance=(0.0, 0.0), cycles_per_px=(0.08, 0.4),
            mean_rate_hz=(1.5, 0.6), spontaneous_hz=(0.3, 0.5), sparseness=(0.5, 0.85),
            retinal_noise_sd=0.0,
        ),
        TrialPlan(
            train=20, oracle_clips=2, oracle_repeats=4, test_clips=2, test_repeats=3,
            gratings=2, pink_noise=1, gaussian_dots=1, ood_repeats=1,
        ),
        imaging=ImagingConfig(noise_dff=(0.08, 0.35), private_gain_sd=0.3),
        behavior=BehaviorConfig(hidden_dims=0),
    ),
    "demo": SimulationConfig(
        "demo",
        PopulationConfig(n_neurons=2000),
        TrialPlan(
            train=64, oracle_clips=3, oracle_repeats=6, test_clips=2, test_repeats=5,
            gratings=2, pink_noise=1, gaussian_dots=1, ood_repeats=2,
        ),
        # A quarter of the mouse's cells in the same scan time: each gets 4x the photons, so half
        # the shot noise (Huang et al., eLife 2021: fewer cells per field, more spikes detected).
        imaging=ImagingConfig(noise_dff=(0.1, 0.35)),
    ),
    # One Sensorium-sized mouse: ~8,000 neurons, ~700 trials.
    "mouse": SimulationConfig(
        "mouse",
        PopulationConfig(n_neurons=8000),
        TrialPlan(
            train=480, oracle_clips=6, oracle_repeats=10, test_clips=6, test_repeats=10,
            gratings=10, pink_noise=10, gaussian_dots=10, ood_repeats=3,
        ),
    ),
}  # fmt: skip


def simulator_version() -> str:
    """What the presets simulate, as a short hash: a figure recorded under another version was
    measured on another mouse and must be re-made (bench/results_doc.py marks it)."""
    return hashlib.sha256(repr(PRESETS).encode()).hexdigest()[:12]


def preset_config(
    name: str,
    n_neurons: int | None = None,
    n_planes: int | None = None,
    volume_rate_hz: float | None = None,
    noise_dff: float | None = None,
) -> SimulationConfig:
    """A preset, optionally with another neuron count, imaging rate or imaging noise (the median
    noise sd of one sample, dF/F; the spread over neurons stays the preset's)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    cfg = PRESETS[name]
    if n_neurons is not None:
        if n_neurons < 1:
            raise ValueError(f"n_neurons must be positive, got {n_neurons}")
        cfg = replace(cfg, population=replace(cfg.population, n_neurons=n_neurons))
    if noise_dff is not None and not noise_dff > 0:
        raise ValueError(f"imaging noise (noise_dff, dF/F) must be positive, got {noise_dff}")
    noise = None if noise_dff is None else (float(noise_dff), cfg.imaging.noise_dff[1])
    imaging = {"n_planes": n_planes, "volume_rate_hz": volume_rate_hz, "noise_dff": noise}
    imaging = {k: v for k, v in imaging.items() if v is not None}
    if imaging:
        cfg = replace(cfg, imaging=replace(cfg.imaging, **imaging))
    return cfg
