"""Measurement: spikes -> GCaMP-like calcium -> noisy two-photon samples of each plane at the
volume rate -> deconvolved-like activity resampled onto the 30 Hz stimulus grid.

This is why recorded responses are noisier, later and blurrier than the rates: Poisson spiking
with slow gain fluctuations (shared and private), a calcium indicator that rises in ~0.2 s and
decays with a half-time of ~0.55 s (GCaMP6s), shot-like noise per sample, a plane sampled only
every 1/volume_rate s at its own phase, and a simple AR(1) deconvolution that keeps only events
above the noise, then linear interpolation onto the 30 Hz frames as in the Sensorium release.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .planes import PlaneTiming
from .sensorium import FRAME_RATE_HZ
from .temporal import leaky_sum


@dataclass(frozen=True)
class ImagingConfig:
    n_planes: int = 3
    volume_rate_hz: float = 7.5  # 3 planes + 1 flyback frame at a 30 Hz frame rate
    flyback_frames: int = 1
    first_depth_um: float = 200.0
    plane_spacing_um: float = 40.0
    tau_rise_s: float = 0.07
    tau_decay_s: tuple[float, float] = (0.8, 0.15)  # median, log-sd (half-time ~0.55 s)
    spike_dff: tuple[float, float] = (0.25, 0.3)  # dF/F of one spike: median, log-sd
    saturation_dff: float = 4.0
    # Noise sd of one sample: median, log-sd. A field of view of ~8,000 neurons gathers few photons
    # per cell, so one spike's transient stands barely above the noise and most single spikes go
    # undetected (often under 10 %; Huang et al., eLife 2021).
    noise_dff: tuple[float, float] = (0.2, 0.35)
    event_threshold_sd: float = 1.0  # deconvolved events smaller than this many noise sd are dropped
    shared_gain_sd: float = 0.15  # trial-to-trial gain shared by all neurons (log-sd)
    # Each neuron's own slow gain fluctuation (log-sd; a gain variance of exp(0.6^2) - 1 = 0.43).
    # Excitability fluctuations are a large share of V1's variability and grow along the visual
    # pathway (Goris, Movshon & Simoncelli, Nat. Neurosci. 2014), and V1's variability is not
    # inherited from its inputs (Carandini, PLoS Biol. 2004). 0.6 is set by the paper's neuron curve:
    # noise that more neurons average away (bench_realism; 0.3 left 12.5 % of the mouse at 0.72).
    private_gain_sd: float = 0.6
    private_gain_tau_s: float = 1.0

    def __post_init__(self):
        if self.n_planes < 1 or self.flyback_frames < 0 or self.volume_rate_hz <= 0:
            raise ValueError(
                f"imaging needs n_planes >= 1, flyback_frames >= 0 and volume_rate_hz > 0, got "
                f"{self.n_planes}, {self.flyback_frames}, {self.volume_rate_hz}"
            )

    @property
    def plane_offsets_s(self) -> np.ndarray:
        """Plane p is scanned p frames after the volume starts; flyback frames end the volume."""
        return np.arange(self.n_planes) / (self.volume_rate_hz * (self.n_planes + self.flyback_frames))

    @property
    def plane_depths_um(self) -> np.ndarray:
        return self.first_depth_um + self.plane_spacing_um * np.arange(self.n_planes)

    def timing(self, plane: np.ndarray) -> PlaneTiming:
        return PlaneTiming(self.n_planes, self.volume_rate_hz, plane, self.plane_offsets_s)


@dataclass(frozen=True, eq=False)
class Indicator:
    """Per-neuron indicator and noise parameters, arrays of length N."""

    tau_decay_s: np.ndarray
    spike_dff: np.ndarray
    noise_dff: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int, cfg: ImagingConfig) -> Indicator:
        def lognormal(median_logsd):
            return (median_logsd[0] * np.exp(rng.normal(0, median_logsd[1], n))).astype(np.float32)

        return cls(lognormal(cfg.tau_decay_s), lognormal(cfg.spike_dff), lognormal(cfg.noise_dff))


@dataclass(frozen=True)
class GainProcess:
    """Each neuron's slow private log-gain: an AR(1) per 30 Hz frame, stationary sd `sd`."""

    keep: float
    innovation_sd: float
    sd: float
    offset: float  # added to private + shared log-gain so that the mean gain is 1

    @classmethod
    def of(cls, cfg: ImagingConfig) -> GainProcess:
        keep = float(np.exp(-1.0 / (cfg.private_gain_tau_s * FRAME_RATE_HZ)))
        sd = cfg.private_gain_sd
        return cls(keep, sd * np.sqrt(1 - keep**2), sd, -(sd**2 + cfg.shared_gain_sd**2) / 2)


def poisson_spikes(rates_hz: np.ndarray, log_gain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Spikes per 30 Hz frame at the given rates, times the gain."""
    return rng.poisson(rates_hz * np.exp(log_gain) / FRAME_RATE_HZ)


def spike_counts(
    rates_hz: np.ndarray, rng: np.random.Generator, cfg: ImagingConfig, log_gain: np.ndarray
) -> np.ndarray:
    """(T, N) spikes per 30 Hz frame: Poisson, with gain fluctuating from trial to trial (all
    neurons together), slowly within it (each neuron on its own) and by `log_gain` (T, N)."""
    gain = GainProcess.of(cfg)
    shocks = rng.normal(0.0, gain.innovation_sd, rates_hz.shape).astype(np.float32)
    shocks[0] += gain.keep * rng.normal(0.0, gain.sd, rates_hz.shape[1])  # start in the stationary state
    private = leaky_sum(shocks, gain.keep)
    shared = rng.normal(0.0, cfg.shared_gain_sd)
    return poisson_spikes(rates_hz, private + shared + gain.offset + log_gain, rng)


@dataclass(frozen=True, eq=False)
class CalciumKernel:
    """Each neuron's spike -> dF/F response: a slow decay minus a fast rise exponential, per 30 Hz
    frame (`keep_*`), read mid-frame (`mid_*`, a spike lands mid-frame on average)."""

    amplitude: np.ndarray
    keep_decay: np.ndarray
    keep_rise: np.float64
    mid_decay: np.ndarray
    mid_rise: np.float64  # a numpy scalar, as the arrays: the same float64 products as ever
    saturation_dff: float

    @classmethod
    def of(cls, indicator: Indicator, cfg: ImagingConfig) -> CalciumKernel:
        dt = 1.0 / FRAME_RATE_HZ
        tau_d, tau_r = indicator.tau_decay_s.astype(np.float64), cfg.tau_rise_s
        peak_time = np.log(tau_d / tau_r) * tau_d * tau_r / (tau_d - tau_r)
        amplitude = indicator.spike_dff / (np.exp(-peak_time / tau_d) - np.exp(-peak_time / tau_r))
        return cls(
            amplitude,
            np.exp(-dt / tau_d),
            np.exp(-dt / tau_r),
            np.exp(-0.5 * dt / tau_d),
            np.exp(-0.5 * dt / tau_r),
            cfg.saturation_dff,
        )

    def dff(self, decay: np.ndarray, rise: np.ndarray) -> np.ndarray:
        """dF/F from the two leaky spike sums (softly saturating)."""
        dff = np.maximum(self.amplitude * (decay * self.mid_decay - rise * self.mid_rise), 0.0)
        dff = dff.astype(np.float32)
        return dff / (1.0 + dff / self.saturation_dff)


def calcium(spikes: np.ndarray, indicator: Indicator, cfg: ImagingConfig) -> np.ndarray:
    """(T, N) dF/F on the 30 Hz grid: each spike (mid-frame on average) adds a difference of a
    slow decay and a fast rise exponential peaking at its neuron's spike_dff; softly saturating."""
    kernel = CalciumKernel.of(indicator, cfg)
    counts = spikes.astype(np.float32)
    return kernel.dff(leaky_sum(counts, kernel.keep_decay), leaky_sum(counts, kernel.keep_rise))


@dataclass(frozen=True)
class Deconvolution:
    """The rig's simple AR(1) deconvolution of one plane's samples, assuming the typical indicator:
    the innovation above `threshold_sd` noise sd, scaled to roughly spikes per second."""

    gamma: float
    scale: float
    threshold_sd: float

    @classmethod
    def of(cls, timing: PlaneTiming, cfg: ImagingConfig) -> Deconvolution:
        period = 1.0 / timing.volume_rate_hz
        return cls(
            float(np.exp(-period / cfg.tau_decay_s[0])),
            timing.volume_rate_hz / cfg.spike_dff[0],
            cfg.event_threshold_sd,
        )

    def events(self, now: np.ndarray, before: np.ndarray, noise: np.ndarray) -> np.ndarray:
        innovation = now - self.gamma * before - self.threshold_sd * noise * np.hypot(1, self.gamma)
        return np.maximum(innovation, 0.0) * self.scale


def scan_phase(rng: np.random.Generator, timing: PlaneTiming) -> float:
    """Where in its volume the scan is when a trial starts: the clock is not locked to the stimulus."""
    return float(rng.uniform(0.0, 1.0 / timing.volume_rate_hz))


def sample_times(phase: float, plane_offset_s: float, timing: PlaneTiming, start: float, stop: float):
    """Trial times (s) at which one plane is sampled between `start` and `stop`."""
    return np.arange(start + phase + plane_offset_s, stop, 1.0 / timing.volume_rate_hz)


def interpolate(values: np.ndarray, times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """values (K, n) known at increasing times (K,), linearly interpolated at `at` (clamped)."""
    right = np.clip(np.searchsorted(times, at, side="right"), 1, len(times) - 1)
    weight = np.clip((at - times[right - 1]) / (times[right] - times[right - 1]), 0.0, 1.0)[:, None]
    return (1 - weight) * values[right - 1] + weight * values[right]


def trial_grid(first_frame: int, n_all: int) -> np.ndarray:
    """Trial time (s) of each 30 Hz frame of everything shown; the clip starts at 0."""
    return (np.arange(n_all) - first_frame) / FRAME_RATE_HZ


def record(
    dff: np.ndarray,
    first_frame: int,
    n_frames: int,
    timing: PlaneTiming,
    indicator: Indicator,
    cfg: ImagingConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float]:
    """Image dF/F (T_all, N) plane by plane and return the deconvolved responses (n_frames, N)
    for frames first_frame .. first_frame + n_frames - 1, and the scan phase (s) of this trial.

    The scan clock is not locked to the stimulus: each trial starts at a random volume phase."""
    phase = scan_phase(rng, timing)
    grid = trial_grid(first_frame, len(dff))
    frames = np.arange(n_frames) / FRAME_RATE_HZ
    deconvolution = Deconvolution.of(timing, cfg)
    responses = np.empty((n_frames, dff.shape[1]), dtype=np.float32)
    for plane in range(timing.n_planes):
        neurons = timing.neurons_of(plane)
        times = sample_times(phase, timing.plane_offsets_s[plane], timing, grid[0], grid[-1])
        noise = indicator.noise_dff[neurons]
        samples = (
            interpolate(dff[:, neurons], grid, times) + rng.normal(0, 1, (len(times), len(neurons))) * noise
        )
        events = deconvolution.events(samples[1:], samples[:-1], noise)
        responses[:, neurons] = interpolate(events, times[1:], frames)
    return responses, phase
