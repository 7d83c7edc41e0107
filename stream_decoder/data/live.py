"""The synthetic mouse, live: it watches whatever a stimulus program shows, one 30 Hz frame at a
time, and its rig publishes each plane as the scan reaches it.

Every filter of the dataset's simulation is carried as state from tick to tick: the temporal
kernels, the normalisation pool, the slow gains, the calcium, each plane's scan clock and the
deconvolution's previous sample. The population, the indicator and every constant are the
dataset's own (`neurons`, `imaging`, `behavior`). The noise comes from one generator per source,
drawn tick by tick, so a movie shown in one call or frame by frame over a socket gives the same
responses for the same seed. Those draws are not the ones `SyntheticMouse.record` makes over a
whole trial of the dataset: a live session is a new trial of the same mouse, not a replay of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import sparse

from .behavior import running_state, screen_shift, simulate_behavior
from .imaging import CalciumKernel, Deconvolution, GainProcess, poisson_spikes, scan_phase
from .neurons import CONTRAST_KEEP, KERNEL_FRAMES, RetinalNoise, local_contrast, shift_frames, to_contrast
from .planes import PlaneSample
from .rig import SyntheticMouse
from .sensorium import FRAME_RATE_HZ, FRAME_SHAPE
from .stimuli import MEAN_LUMINANCE

if TYPE_CHECKING:
    from .microscope import Microscope

# Behaviour does not depend on what is shown, so it is simulated ahead in blocks this long.
BEHAVIOR_BLOCK_FRAMES = int(3600 * FRAME_RATE_HZ)


class PlaneImage(NamedTuple):
    t_acq: float  # session seconds
    plane: int
    image: np.ndarray  # (H, W) uint16, the microscope's raw frame


@dataclass(frozen=True, eq=False)
class Tick:
    """What one 30 Hz frame of the screen led to: the planes acquired since the previous tick."""

    index: int  # 30 Hz frames since the session started (the first shown frame is 0)
    samples: list[PlaneSample | PlaneImage]  # in acquisition order: activity, or raw frames
    behavior: np.ndarray  # (2,) pupil dilation, running speed, in the Sensorium order
    pupil_center: np.ndarray  # (2,) x, y


class Drive:
    """The population's normalised drive, one frame at a time: the spatial filters as one sparse
    product (the Gabors have finite support), the temporal kernels over a ring of past frames."""

    def __init__(self, mouse: SyntheticMouse):
        self.population = population = mouse.population
        self.spatial = sparse.csr_array(np.concatenate([population.even, population.odd], axis=1).T)
        self.complex = np.flatnonzero(population.is_complex)
        n_odd = population.odd.shape[1]
        self.kernels = np.concatenate([population.kernels, population.kernels[:, self.complex]], axis=1)
        self.history = np.zeros((KERNEL_FRAMES, population.n_neurons + n_odd), np.float32)
        self.energy = np.zeros(population.n_neurons, np.float32)

    def step(self, frame: np.ndarray, shift_px: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """(N,) drive for one shown frame (36, 64) with the receptive fields moved by `shift_px`,
        seen through the retinal noise `noise` (36, 64)."""
        contrast = to_contrast(frame)[None]
        if np.any(shift_px):
            contrast = shift_frames(contrast, shift_px[None])
        if noise is not None:
            contrast = contrast + noise[None]
        self.history = np.roll(self.history, 1, axis=0)
        self.history[0] = self.spatial @ contrast.ravel()
        filtered = np.einsum("kn,kn->n", self.kernels, self.history)
        n = self.population.n_neurons
        response = np.maximum(filtered[:n], 0.0)
        response[self.complex] = np.hypot(filtered[:n][self.complex], filtered[n:])
        self.energy = CONTRAST_KEEP * self.energy + self.population.pool_energy(contrast)[0]
        return response / (self.population.normalisation + local_contrast(self.energy))


class Scanner:
    """Each plane sampled at its own phase of the volume, between the dF/F of the last two ticks,
    then read out as the rig does: with the read noise and the rig's deconvolution against the
    plane's previous sample, or, given a microscope, as its raw frame (the brain drifting)."""

    def __init__(
        self, mouse: SyntheticMouse, rng: np.random.Generator, start_s: float, microscope: Microscope | None
    ):
        self.timing = timing = mouse.timing
        self.rng = rng
        self.noise = mouse.indicator.noise_dff
        self.deconvolution = Deconvolution.of(timing, mouse.cfg.imaging)
        self.neurons = [timing.neurons_of(p) for p in range(timing.n_planes)]
        self.next = scan_phase(rng, timing) + start_s + timing.plane_offsets_s  # each plane's next sample
        self.previous: list[np.ndarray | None] = [None] * timing.n_planes
        self.microscope = microscope
        if microscope is not None:
            self.position = rng.normal(0, microscope.cfg.drift_sd_px, 2)  # of the brain, px
            self.last_image_s = start_s

    def step(self, t: float, dff_before: np.ndarray, dff_now: np.ndarray) -> list[PlaneSample | PlaneImage]:
        """The planes acquired in (t - 1/30, t] (no activity for a plane's first sample)."""
        acquired = []
        period = 1.0 / self.timing.volume_rate_hz
        while self.next.min() <= t:
            plane = int(np.argmin(self.next))
            at = float(self.next[plane])
            self.next[plane] += period
            neurons = self.neurons[plane]
            weight = (at - (t - 1.0 / FRAME_RATE_HZ)) * FRAME_RATE_HZ
            dff = (1 - weight) * dff_before[neurons] + weight * dff_now[neurons]
            read = (
                self._deconvolved(at, plane, dff) if self.microscope is None else self._imaged(at, plane, dff)
            )
            if read is not None:
                acquired.append(read)
        return acquired

    def _deconvolved(self, at: float, plane: int, dff: np.ndarray) -> PlaneSample | None:
        neurons = self.neurons[plane]
        noise = self.noise[neurons]
        sample = dff + self.rng.standard_normal(len(neurons)) * noise
        before, self.previous[plane] = self.previous[plane], sample
        if before is None:
            return None
        return PlaneSample(
            at, plane, neurons, self.deconvolution.events(sample, before, noise).astype(np.float32)
        )

    def _imaged(self, at: float, plane: int, dff: np.ndarray) -> PlaneImage:
        scope = self.microscope
        self.position = scope.drift(self.position, at - self.last_image_s, self.rng)
        self.last_image_s = at
        shift = self.position + self.rng.normal(0, scope.cfg.jitter_sd_px, 2)
        return PlaneImage(at, plane, scope.render(plane, dff.astype(np.float32), shift, self.rng))


class LiveMouse:
    """`show` one frame per 30 Hz tick; the mouse has looked at grey for the dataset's pre-roll
    when the session starts, so its filters and calcium are settled as in every trial. With a
    `microscope` (of this mouse) the ticks carry its raw frames instead of activity."""

    def __init__(self, mouse: SyntheticMouse, seed: int, microscope: Microscope | None = None):
        self.mouse = mouse
        self.behavior_rng, self.gain_rng, self.spike_rng, imaging, self.retina_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence([mouse.seed, 9, seed]).spawn(5)
        )
        cfg = mouse.cfg
        self.gain = GainProcess.of(cfg.imaging)
        n = mouse.n_neurons
        self.private = self.gain_rng.normal(0.0, self.gain.sd, n).astype(np.float32)
        self.shared = self.gain_rng.normal(0.0, cfg.imaging.shared_gain_sd)
        self.calcium = CalciumKernel.of(mouse.indicator, cfg.imaging)
        self.keep_decay = self.calcium.keep_decay.astype(np.float32)  # as leaky_sum multiplies
        self.keep_rise = np.float32(self.calcium.keep_rise)
        self.decay = np.zeros(n, np.float32)
        self.rise = np.zeros(n, np.float32)
        self.dff = np.zeros(n, np.float32)
        self.drive = Drive(mouse)
        self.retina = RetinalNoise.of(cfg.population)
        self.noise: np.ndarray | None = None  # the retinal noise of the last frame shown
        self.index = -cfg.preroll_frames
        self.scanner = Scanner(mouse, imaging, self.index / FRAME_RATE_HZ, microscope)
        self._behavior_block = 0
        self._behavior = simulate_behavior(self.behavior_rng, BEHAVIOR_BLOCK_FRAMES, cfg.behavior)
        grey = np.full(FRAME_SHAPE, MEAN_LUMINANCE, np.float32)
        while self.index < 0:
            self.show(grey)

    def show(self, frame: np.ndarray) -> Tick:
        """The screen shows `frame` (36, 64, luminance 0-255) for the next 1/30 s."""
        running, pupil, centre, hidden = self._behavior_now()
        shift = screen_shift(centre[None], self.mouse.cfg.behavior)[0]
        self.noise = self.retina.step(self.retina_rng, self.noise)
        drive = self.drive.step(frame, shift, self.noise)
        population = self.mouse.population
        rates = population.rates_from_drive(drive[None], running_state(running)[None])[0]
        spikes = self._spikes(rates, population.hidden_log_gain(hidden[None])[0])
        self.decay = self.keep_decay * self.decay + spikes
        self.rise = self.keep_rise * self.rise + spikes
        before, self.dff = self.dff, self.calcium.dff(self.decay, self.rise)
        samples = self.scanner.step(self.index / FRAME_RATE_HZ, before, self.dff)
        tick = Tick(self.index, samples, np.array([pupil, running], np.float32), centre)
        self.index += 1
        return tick

    def _spikes(self, rates: np.ndarray, hidden_log_gain: np.ndarray) -> np.ndarray:
        shocks = self.gain_rng.normal(0.0, self.gain.innovation_sd, len(rates)).astype(np.float32)
        self.private = np.float32(self.gain.keep) * self.private + shocks
        log_gain = self.private + self.shared + self.gain.offset + hidden_log_gain
        return poisson_spikes(rates, log_gain, self.spike_rng).astype(np.float32)

    def _behavior_now(self) -> tuple[float, float, np.ndarray, np.ndarray]:
        """(running cm/s, pupil, pupil centre, hidden factors) at this tick; a new block after
        each hour."""
        k = self.index + self.mouse.cfg.preroll_frames - self._behavior_block * BEHAVIOR_BLOCK_FRAMES
        if k == BEHAVIOR_BLOCK_FRAMES:
            self._behavior_block += 1
            self._behavior = simulate_behavior(
                self.behavior_rng, BEHAVIOR_BLOCK_FRAMES, self.mouse.cfg.behavior
            )
            k = 0
        b = self._behavior
        return float(b.running[k]), float(b.pupil[k]), b.pupil_center[k].astype(np.float64), b.hidden[k]

    def watch(self, video: np.ndarray) -> list[Tick]:
        """Show a whole movie (T, 36, 64): the offline form of the same session."""
        return [self.show(frame) for frame in video]
