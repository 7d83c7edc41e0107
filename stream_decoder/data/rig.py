"""The synthetic rig: one simulated mouse under the two-photon microscope, watching movies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .behavior import Behavior, running_state, screen_shift, simulate_behavior
from .imaging import Indicator, calcium, record, spike_counts
from .neurons import Population, RetinalNoise, make_population
from .planes import PlaneTiming
from .presets import SimulationConfig
from .sensorium import FRAME_RATE_HZ
from .stimuli import MEAN_LUMINANCE, TRAINING_PHOTOGRAPHS, natural_movie


@dataclass(frozen=True, eq=False)
class Recording:
    """One trial as the rig records it, time first."""

    responses: np.ndarray  # (T, N) deconvolved-like activity on the 30 Hz grid
    rates: np.ndarray  # (T, N) noise-free firing rates (Hz)
    behavior: Behavior
    scan_phase_s: float


@dataclass(frozen=True, eq=False)
class Calcium:
    """One trial before imaging, on the 30 Hz grid of everything shown (grey pre-roll, the clip,
    a grey post-roll): what the microscope then samples, plane by plane."""

    rates: np.ndarray  # (T_all, N) Hz
    spikes: np.ndarray  # (T_all, N) spikes per frame
    dff: np.ndarray  # (T_all, N) the indicator's dF/F
    behavior: Behavior  # (T_all)
    first_frame: int  # index of the clip's first frame
    n_frames: int  # frames of the clip


@dataclass(eq=False)
class SyntheticMouse:
    cfg: SimulationConfig
    seed: int
    population: Population
    indicator: Indicator
    plane: np.ndarray  # (N,) imaging plane, neurons ordered plane by plane
    cortex_xy_um: np.ndarray  # (N, 2) position in the field of view
    depth_um: np.ndarray  # (N,)

    @classmethod
    def create(cls, cfg: SimulationConfig, seed: int) -> SyntheticMouse:
        """Deterministic for (cfg, seed). Neurons are ordered by plane, so each plane is one
        contiguous range of the neuron order (what per-plane activity messages carry)."""
        rng = np.random.default_rng([seed, 1])
        n = cfg.population.n_neurons
        imaging = cfg.imaging
        plane = np.sort(np.arange(n) % imaging.n_planes)
        half = cfg.population.fov_um / 2
        cortex_xy = rng.uniform(-half, half, (n, 2))
        depth = imaging.plane_depths_um[plane] + rng.normal(0, 3.0, n)
        calibration = [
            natural_movie(np.random.default_rng([seed, 2, i]), 300, TRAINING_PHOTOGRAPHS)[0]
            for i in range(cfg.calibration_clips)
        ]
        population = make_population(rng, cfg.population, cortex_xy, calibration, cfg.behavior.hidden_dims)
        indicator = Indicator.draw(rng, n, imaging)
        return cls(
            cfg, seed, population, indicator, plane, cortex_xy.astype(np.float32), depth.astype(np.float32)
        )

    @property
    def n_neurons(self) -> int:
        return len(self.plane)

    @property
    def timing(self) -> PlaneTiming:
        return self.cfg.imaging.timing(self.plane)

    def unit_ids(self) -> np.ndarray:
        return np.arange(1, self.n_neurons + 1, dtype=np.int64)

    def cell_motor_coordinates(self) -> np.ndarray:
        """(N, 3) microns: field-of-view position plus a stage offset, and depth."""
        offset = np.random.default_rng([self.seed, 5]).uniform(-1000, 1000, 2)
        return np.column_stack([self.cortex_xy_um + offset, self.depth_um]).astype(np.float32)

    def neuron_truth(self) -> dict[str, np.ndarray]:
        indicator = {f"indicator_{k}": v for k, v in vars(self.indicator).items()}
        return {
            **self.population.parameters(),
            **indicator,
            "plane": self.plane,
            "cortex_xy_um": self.cortex_xy_um,
            "depth_um": self.depth_um,
        }

    def show(self, video: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Behavior]:
        """A movie (T, 36, 64) after a grey pre-roll and before a short grey post-roll (so the
        last frames can be resampled), and the behaviour simulated while it plays."""
        post = int(np.ceil(FRAME_RATE_HZ / self.cfg.imaging.volume_rate_hz)) + 2
        grey = np.full((1, *video.shape[1:]), MEAN_LUMINANCE, dtype=np.float32)
        shown = np.concatenate([np.repeat(grey, self.cfg.preroll_frames, 0), video, np.repeat(grey, post, 0)])
        return shown, simulate_behavior(rng, len(shown), self.cfg.behavior)

    def watch(self, video: np.ndarray, rng: np.random.Generator) -> Calcium:
        """Show a movie with freshly simulated behaviour: rates, spikes and calcium.

        The rates are noise-free: the screen as shown, the filmed behaviour. The spikes come from
        the same population seeing the screen through its retinal noise, modulated by the hidden
        behavioural factors, with Poisson and gain noise."""
        shown, behavior = self.show(video, rng)
        population = self.population
        shift = screen_shift(behavior.pupil_center, self.cfg.behavior)
        running = running_state(behavior.running)
        rates = population.rates(shown, shift, running)
        noise = RetinalNoise.of(self.cfg.population).field(rng, len(shown))
        seen = (
            rates
            if noise is None
            else population.rates_from_drive(population.drive(shown, shift, noise), running)
        )
        spikes = spike_counts(seen, rng, self.cfg.imaging, population.hidden_log_gain(behavior.hidden))
        calcium_dff = calcium(spikes, self.indicator, self.cfg.imaging)
        return Calcium(rates, spikes, calcium_dff, behavior, self.cfg.preroll_frames, len(video))

    def filter_outputs(self, video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(T, N + complex cells) over the movie's frames: every neuron's linear filter output
        and every complex cell's quadrature one, on the screen the eye saw (the behaviour `watch`
        draws first from the same `rng`). What the encoding keeps before its nonlinearities."""
        shown, behavior = self.show(video, rng)
        shift = screen_shift(behavior.pupil_center, self.cfg.behavior)
        linear, quadrature = self.population.filter_outputs(self.population.screen_contrast(shown, shift))
        trial = slice(self.cfg.preroll_frames, self.cfg.preroll_frames + len(video))
        return np.concatenate([linear, quadrature], axis=1)[trial]

    def record(self, video: np.ndarray, rng: np.random.Generator) -> Recording:
        """Show a movie and record the population as the rig's deconvolved responses."""
        seen = self.watch(video, rng)
        pre, n = seen.first_frame, seen.n_frames
        responses, phase = record(seen.dff, pre, n, self.timing, self.indicator, self.cfg.imaging, rng)
        trial = slice(pre, pre + n)
        return Recording(responses, seen.rates[trial], seen.behavior[trial], phase)
