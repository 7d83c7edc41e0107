"""A population of mouse V1 layer 2/3 neurons: what each neuron's firing rate is, given the movie,
the mouse's running and where its eye points.

Receptive-field centres follow the retinotopic map of the imaged patch of cortex, so together
they cover only part of the screen. Each neuron is a Gabor simple cell (rectified linear) or an
energy-model complex cell (quadrature pair), with a biphasic temporal kernel (40-100 ms to its
peak), divisive normalisation by local contrast, a thresholded power-law output and its own gain.
Simple cells' ON and OFF subregions balance, so uniform luminance drives them little; most cells
are complex, and each is silent for most frames (a high threshold), so a linear read-out gets
little from any one neuron and needs many. Running multiplies the gain (about doubling it on
average); the eye position shifts every receptive field on the screen; retinal noise
(`RetinalNoise`) is added to what every field reads, and hidden behavioural factors scale each
neuron's gain (`hidden_loading`). The values were calibrated against the paper's real-data figures
with bench/bench_realism.py. Filtering is one matrix product per stage, never a loop over
neurons, and the parameter draws use the sizes of REFERENCE.md section 7 (2 degrees per px).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sensorium import FRAME_RATE_HZ, FRAME_SHAPE
from .stimuli import LUMINANCE_STD, MEAN_LUMINANCE
from .temporal import leaky_sum

KERNEL_FRAMES = 18  # 600 ms: the slowest biphasic kernel has decayed by then
POOL_SIGMA_PX = 4.5  # normalisation pool: about twice a typical field (~20 degrees across)
MAX_RATE_HZ = 60.0  # firing saturates smoothly towards this
CONTRAST_TAU_S = 0.1  # the normalisation pool integrates contrast energy over about this long
_PIXELS = FRAME_SHAPE[0] * FRAME_SHAPE[1]
_ROW, _COL = (g.ravel().astype(np.float32) for g in np.mgrid[: FRAME_SHAPE[0], : FRAME_SHAPE[1]])


@dataclass(frozen=True)
class PopulationConfig:
    n_neurons: int
    # Phase-invariant cells, from which a linear read-out gets little: in layer 2/3 most cells have
    # overlapping ON and OFF subfields (Liu et al., J. Neurosci. 2009); simple cells gather in layer 4
    # (Niell & Stryker, J. Neurosci. 2008).
    complex_fraction: float = 0.85
    # How much of a simple cell's response to uniform luminance its OFF subregion cancels: V1
    # fields are band-pass, their ON and OFF subregions roughly balanced (Niell & Stryker 2008).
    balance: tuple[float, float] = (1.0, 1.0)  # uniform
    fov_um: float = 630.0  # square field of view of the imaged cortex
    px_per_um: float = 0.028  # retinotopic magnification: the field of view spans ~18 px
    rf_centre_px: tuple[float, float] = (18.0, 34.0)  # (row, col) seen by the field-of-view centre
    rf_scatter_px: float = 2.0
    rf_sigma_px: tuple[float, float] = (2.0, 0.25)  # median, log-sd: 10-25 degree receptive fields
    # Median, log-sd: 0.04 cycles/degree, spread over 0.02-0.16 (REFERENCE.md section 7).
    cycles_per_px: tuple[float, float] = (0.08, 0.6)
    latency_s: tuple[float, float] = (0.04, 0.10)  # peak of the temporal kernel, uniform
    # Median, log-sd of the mean evoked rate: a few Hz at most, and a wide spread, many neurons weakly
    # driven (REFERENCE.md section 7).
    mean_rate_hz: tuple[float, float] = (1.2, 0.9)
    spontaneous_hz: tuple[float, float] = (0.4, 0.7)  # median, log-sd: well under 1 Hz
    # Quantile of the drive below which a neuron is silent: each movie frame drives a small subset
    # (Yoshida & Ohki, Nat. Commun. 2020).
    sparseness: tuple[float, float] = (0.7, 0.95)
    exponent: tuple[float, float] = (1.5, 2.5)
    normalisation: tuple[float, float] = (0.5, 0.3)  # semi-saturation contrast: median, log-sd
    run_gain: tuple[float, float] = (1.0, 0.4)  # extra gain when running: median, log-sd
    # Noise upstream of the cortex (photoreceptors, retina, thalamus), added to the contrast every
    # receptive field reads: neurons that see the same pixels share it, so no number of neurons
    # averages it away (information-limiting correlations, Moreno-Bote et al., Nat. Neurosci. 2014).
    retinal_noise_sd: float = 0.6  # in units of the stimuli's contrast sd, per pixel and frame
    retinal_noise_sigma_px: float = 1.5  # spatial correlation (gaussian sd)
    retinal_noise_tau_s: float = 0.05  # temporal correlation
    hidden_gain_sd: float = 0.6  # log-sd of the gain the hidden behavioural factors give a neuron


CONTRAST_KEEP = float(np.exp(-1.0 / (CONTRAST_TAU_S * FRAME_RATE_HZ)))


def local_contrast(energy: np.ndarray) -> np.ndarray:
    """Root-mean-square local contrast from the pool energy summed with `CONTRAST_KEEP` per frame."""
    return np.sqrt(np.maximum((1 - CONTRAST_KEEP) * energy, 0.0))


def to_contrast(video: np.ndarray) -> np.ndarray:
    """Screen luminance (0-255) -> contrast, in units of the stimuli's luminance sd."""
    return (np.asarray(video, dtype=np.float32) - MEAN_LUMINANCE) / LUMINANCE_STD


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    """Uniform draws in `bounds`; (0, 0), the feature off, draws nothing, so a population without
    it draws what it drew before the feature existed."""
    if bounds == (0.0, 0.0):
        return np.zeros(n, np.float32)
    return rng.uniform(*bounds, n).astype(np.float32)


def _lognormal(rng: np.random.Generator, median_logsd: tuple[float, float], n: int) -> np.ndarray:
    median, log_sd = median_logsd
    return median * np.exp(rng.normal(0.0, log_sd, n))


def biphasic_kernels(latency_s: np.ndarray, rebound: np.ndarray) -> np.ndarray:
    """(KERNEL_FRAMES, N) temporal kernels: a gamma-shaped lobe peaking at the latency minus a
    slower, weaker one, each averaged over the 33 ms frames; unit L2 norm."""
    fine = (np.arange(KERNEL_FRAMES * 10) + 0.5) / (10 * FRAME_RATE_HZ)
    tau = latency_s[None, :] / 2.0  # t^2 exp(-t / tau) peaks at 2 tau

    def gamma(tau_s):
        return (fine[:, None] / tau_s) ** 2 * np.exp(-fine[:, None] / tau_s) / tau_s

    kernel = gamma(tau) - rebound[None, :] * gamma(1.8 * tau)
    kernel = kernel.reshape(KERNEL_FRAMES, 10, -1).mean(1)
    return (kernel / np.linalg.norm(kernel, axis=0)).astype(np.float32)


def shift_frames(frames: np.ndarray, shift_px: np.ndarray, margin: int = 16) -> np.ndarray:
    """frames (T, H, W) sampled at (y + dy_t, x + dx_t), bilinear, zero outside the screen.

    One sub-pixel shift per frame: copy each frame's (H+1, W+1) window out of a zero-padded
    frame, then blend the window's four corners for all frames at once."""
    n, height, width = frames.shape
    padded = np.zeros((n, height + 2 * margin, width + 2 * margin), dtype=np.float32)
    padded[:, margin:-margin, margin:-margin] = frames
    shift = np.clip(np.asarray(shift_px, dtype=np.float64), -margin + 1, margin - 2)
    corner = np.floor(shift).astype(np.int64) + margin
    fy, fx = (shift - np.floor(shift)).astype(np.float32).T[:, :, None, None]
    window = np.empty((n, height + 1, width + 1), dtype=np.float32)
    for t, (row, col) in enumerate(corner):
        window[t] = padded[t, row : row + height + 1, col : col + width + 1]
    top = (1 - fx) * window[:, :-1, :-1] + fx * window[:, :-1, 1:]
    bottom = (1 - fx) * window[:, 1:, :-1] + fx * window[:, 1:, 1:]
    return (1 - fy) * top + fy * bottom


def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) gaussian blur along one axis of length n, as a matrix (unit area kernel)."""
    distance = np.arange(n)[:, None] - np.arange(n)[None, :]
    kernel = np.exp(-(distance**2) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
    kernel[kernel < 1e-6] = 0.0  # no float32 denormals: they slow matrix products many times over
    return kernel.astype(np.float32)


def _blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """(T, pixels): frames (T, H, W) blurred by a gaussian, zero beyond the screen; two
    matrix products, one along each axis."""
    n, height, width = frames.shape
    along_x = frames.reshape(n * height, width) @ _gaussian_matrix(width, sigma)
    along_y = along_x.reshape(n, height, width).transpose(0, 2, 1).reshape(n * width, height)
    blurred = (along_y @ _gaussian_matrix(height, sigma)).reshape(n, width, height)
    return blurred.transpose(0, 2, 1).reshape(n, height * width)


def _causal_filter(x: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Each column of x (T, N) convolved with its own kernel, keeping only the past."""
    # Imported here: scipy.signal takes 0.5 s to import, and only simulating needs it.
    from scipy.signal import fftconvolve

    return fftconvolve(x, kernels, axes=0)[: len(x)].astype(np.float32)


@dataclass(eq=False)
class Population:
    """Per-neuron parameters (arrays of length N) and the filters built from them."""

    rf_row: np.ndarray
    rf_col: np.ndarray
    sigma: np.ndarray
    aspect: np.ndarray
    orientation: np.ndarray
    cycles_per_px: np.ndarray
    phase: np.ndarray
    balance: np.ndarray
    is_complex: np.ndarray
    latency_s: np.ndarray
    rebound: np.ndarray
    normalisation: np.ndarray
    exponent: np.ndarray
    spontaneous_hz: np.ndarray
    run_gain: np.ndarray
    threshold: np.ndarray  # set by calibrate()
    gain: np.ndarray  # Hz per unit of drive above threshold, set by calibrate()
    hidden_loading: np.ndarray  # (N, hidden factors): log-gain per unit of each hidden factor

    def hidden_log_gain(self, hidden: np.ndarray) -> np.ndarray:
        """(T, N) log-gain from the hidden behavioural factors (T, K), mean gain 1 over time."""
        return hidden @ self.hidden_loading.T - 0.5 * np.square(self.hidden_loading).sum(1)

    def __post_init__(self):
        self.even, self.odd = self._spatial_filters()
        # The normalisation pool of a neuron is read at its field's centre from the contrast
        # energy blurred once per frame (not one window per neuron).
        row, col = np.rint(self.rf_row).astype(np.int64), np.rint(self.rf_col).astype(np.int64)
        self.centre_pixel = row * FRAME_SHAPE[1] + col
        self.kernels = biphasic_kernels(self.latency_s, self.rebound)

    @property
    def n_neurons(self) -> int:
        return len(self.rf_row)

    def parameters(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def _spatial_filters(self, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """(pixels, N) even Gabors and (pixels, N complex) odd Gabors, unit norm.

        Built in chunks of neurons so an 8,000-neuron mouse never holds more than a few
        (pixels x chunk) temporaries."""
        n = self.n_neurons
        even = np.empty((_PIXELS, n), dtype=np.float32)
        odd = np.empty((_PIXELS, n), dtype=np.float32)
        for lo in range(0, n, chunk):
            s = slice(lo, min(lo + chunk, n))
            dy = _ROW[:, None] - self.rf_row[None, s]
            dx = _COL[:, None] - self.rf_col[None, s]
            cos, sin = np.cos(self.orientation[s]), np.sin(self.orientation[s])
            along = dx * cos + dy * sin
            across = -dx * sin + dy * cos
            sigma = self.sigma[s]
            envelope = np.exp(-(along**2 + (across / self.aspect[s]) ** 2) / (2 * sigma**2))
            envelope[envelope < 1e-4] = 0.0  # finite support; float32 denormals would slow matmuls 50x
            carrier = 2 * np.pi * self.cycles_per_px[s] * along + self.phase[s]
            for out, wave in ((even, np.cos(carrier)), (odd, np.sin(carrier))):
                dc = (envelope * wave).sum(0) / envelope.sum(0)
                out[:, s] = envelope * (wave - self.balance[s] * dc)
        even /= np.linalg.norm(even, axis=0)
        odd = np.ascontiguousarray(odd[:, self.is_complex])
        odd /= np.linalg.norm(odd, axis=0)
        return even, odd

    def drive(
        self, video: np.ndarray, shift_px: np.ndarray | None = None, noise: np.ndarray | None = None
    ) -> np.ndarray:
        """(T, N) normalised drive before the output nonlinearity.

        video (T, 36, 64) in 0-255; shift_px (T, 2) moves every receptive field by (dy, dx)
        screen px (from the eye position): sampling the screen at x + shift is the same as
        moving each field to x + shift. Off-screen counts as mean grey. `noise` (T, 36, 64), the
        retinal noise, is added to the contrast on the retina."""
        contrast = self.screen_contrast(video, shift_px)
        if noise is not None:
            contrast = contrast + noise
        linear, quadrature = self.filter_outputs(contrast)
        response = np.maximum(linear, 0.0)
        if quadrature.shape[1]:
            response[:, self.is_complex] = np.hypot(linear[:, self.is_complex], quadrature)
        energy = leaky_sum(self.pool_energy(contrast), CONTRAST_KEEP)
        return response / (self.normalisation + local_contrast(energy))

    @staticmethod
    def screen_contrast(video: np.ndarray, shift_px: np.ndarray | None = None) -> np.ndarray:
        """(T, 36, 64) contrast of the screen as the eye sees it: shifted by `shift_px` (T, 2)."""
        contrast = to_contrast(video)
        if shift_px is not None and np.any(shift_px):
            contrast = shift_frames(contrast, shift_px)
        return contrast

    def filter_outputs(self, contrast: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The linear stage, before any nonlinearity: (T, N) each neuron's Gabor and (T, N
        complex) each complex cell's quadrature Gabor, each through its temporal kernel."""
        frames = contrast.reshape(len(contrast), _PIXELS)
        linear = _causal_filter(frames @ self.even, self.kernels)
        if not self.odd.shape[1]:
            return linear, np.zeros((len(frames), 0), dtype=np.float32)
        return linear, _causal_filter(frames @ self.odd, self.kernels[:, self.is_complex])

    def pool_energy(self, contrast: np.ndarray) -> np.ndarray:
        """(T, N) contrast energy in a gaussian window around each field's centre, this frame."""
        return _blur(np.square(contrast), POOL_SIGMA_PX)[:, self.centre_pixel]

    def pool_weights(self) -> np.ndarray:
        """(pixels, N) the gaussian window of each field's normalisation pool: squared contrast
        (T, pixels) @ this is `pool_energy`, as one matrix for a differentiable copy."""
        row, col = np.divmod(self.centre_pixel, FRAME_SHAPE[1])
        down = _gaussian_matrix(FRAME_SHAPE[0], POOL_SIGMA_PX)[:, row]
        across = _gaussian_matrix(FRAME_SHAPE[1], POOL_SIGMA_PX)[:, col]
        return (down[:, None, :] * across[None, :, :]).reshape(_PIXELS, -1)

    def rates(
        self, video: np.ndarray, shift_px: np.ndarray | None = None, running: np.ndarray | None = None
    ) -> np.ndarray:
        """(T, N) noise-free firing rates in Hz; `running` (T,) in 0-1 scales the gain (before
        the output saturates)."""
        return self.rates_from_drive(self.drive(video, shift_px), running)

    def rates_from_drive(self, drive: np.ndarray, running: np.ndarray | None = None) -> np.ndarray:
        """The output nonlinearity: (T, N) drive -> rates in Hz, gain scaled by `running` (T,)."""
        evoked = np.maximum(drive - self.threshold, 0.0) ** self.exponent
        modulation = 1.0 if running is None else 1.0 + np.asarray(running)[:, None] * self.run_gain
        saturating = MAX_RATE_HZ * -np.expm1(-self.gain * modulation * evoked / MAX_RATE_HZ)
        return (self.spontaneous_hz + saturating).astype(np.float32)

    def calibrate(self, videos: list[np.ndarray], rng: np.random.Generator, cfg: PopulationConfig) -> None:
        """Set thresholds and gains from the drive natural movies evoke in a still mouse: each
        neuron is silent for a drawn fraction of the time and fires at a drawn mean rate."""
        drive = np.concatenate([self.drive(video) for video in videos])
        n = self.n_neurons
        rank = (rng.uniform(*cfg.sparseness, n) * (len(drive) - 1)).astype(np.int64)
        self.threshold = np.sort(drive, axis=0)[rank, np.arange(n)].astype(np.float32)
        evoked = np.maximum(drive - self.threshold, 0.0) ** self.exponent
        target = _lognormal(rng, cfg.mean_rate_hz, n)
        self.gain = (target / np.maximum(evoked.mean(0), 1e-6)).astype(np.float32)


@dataclass(frozen=True)
class RetinalNoise:
    """The retinal noise as a field over the screen: white noise blurred by a gaussian (unit sd
    inside the screen), then an AR(1) over frames, stationary from the first frame."""

    sd: float
    sigma_px: float
    keep: float

    @classmethod
    def of(cls, cfg: PopulationConfig) -> RetinalNoise:
        keep = float(np.exp(-1.0 / (cfg.retinal_noise_tau_s * FRAME_RATE_HZ)))
        return cls(cfg.retinal_noise_sd, cfg.retinal_noise_sigma_px, keep)

    def innovations(self, rng: np.random.Generator, n_frames: int) -> np.ndarray:
        """(T, 36, 64) independent fields, each of sd `sd` per pixel."""
        white = rng.standard_normal((n_frames, *FRAME_SHAPE), dtype=np.float32)
        unit = 2.0 * np.sqrt(np.pi) * self.sigma_px  # a blurred unit white field has sd 1 / unit
        return (_blur(white, self.sigma_px) * (unit * self.sd)).reshape(white.shape)

    def field(self, rng: np.random.Generator, n_frames: int) -> np.ndarray | None:
        """(T, 36, 64) one trial's noise; None, drawing nothing, where there is none (sd 0)."""
        if not self.sd:
            return None
        shocks = self.innovations(rng, n_frames)
        shocks[1:] *= np.sqrt(1.0 - self.keep**2)
        return leaky_sum(shocks.reshape(n_frames, -1), self.keep).reshape(shocks.shape)

    def step(self, rng: np.random.Generator, previous: np.ndarray | None) -> np.ndarray | None:
        """The next frame's noise (36, 64) after `previous` (None: the first frame); None, drawing
        nothing, where there is none."""
        if not self.sd:
            return None
        shock = self.innovations(rng, 1)[0]
        return shock if previous is None else self.keep * previous + np.sqrt(1.0 - self.keep**2) * shock


def hidden_loadings(rng: np.random.Generator, n: int, dims: int, gain_sd: float) -> np.ndarray:
    """(N, dims): each neuron's weight on each hidden factor. Factor k's variance falls as 1/k,
    the power law of the population's non-visual activity (Stringer et al., Science 2019); a
    neuron's total log-gain from them has sd `gain_sd`."""
    share = 1.0 / np.arange(1, dims + 1)
    return (rng.normal(0.0, 1.0, (n, dims)) * gain_sd * np.sqrt(share / share.sum())).astype(np.float32)


def make_population(
    rng: np.random.Generator,
    cfg: PopulationConfig,
    cortex_xy_um: np.ndarray,
    calibration_videos: list[np.ndarray],
    hidden_dims: int,
) -> Population:
    """Draw a population whose receptive fields follow the retinotopy of the given cortical
    positions (N, 2) and that weights `hidden_dims` hidden behavioural factors, then calibrate
    it on the given movies."""
    n = cfg.n_neurons
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.asarray(cfg.rf_centre_px) + rng.normal(0, 2.0, 2)
    rf = centre + cfg.px_per_um * cortex_xy_um @ rotation.T + rng.normal(0, cfg.rf_scatter_px, (n, 2))
    rf = np.clip(rf, 0, np.array(FRAME_SHAPE) - 1)
    f32 = np.float32
    population = Population(
        rf_row=rf[:, 0].astype(f32),
        rf_col=rf[:, 1].astype(f32),
        sigma=np.clip(_lognormal(rng, cfg.rf_sigma_px, n), 1.2, 3.5).astype(f32),
        aspect=rng.uniform(1.0, 1.6, n).astype(f32),
        orientation=rng.uniform(0, np.pi, n).astype(f32),
        cycles_per_px=np.clip(_lognormal(rng, cfg.cycles_per_px, n), 0.02, 0.22).astype(f32),
        phase=rng.uniform(0, 2 * np.pi, n).astype(f32),
        balance=_uniform(rng, cfg.balance, n),
        is_complex=rng.random(n) < cfg.complex_fraction,
        latency_s=rng.uniform(*cfg.latency_s, n).astype(f32),
        rebound=rng.uniform(0.3, 0.8, n).astype(f32),
        normalisation=_lognormal(rng, cfg.normalisation, n).astype(f32),
        exponent=rng.uniform(*cfg.exponent, n).astype(f32),
        spontaneous_hz=_lognormal(rng, cfg.spontaneous_hz, n).astype(f32),
        run_gain=_lognormal(rng, cfg.run_gain, n).astype(f32),
        threshold=np.zeros(n, f32),
        gain=np.ones(n, f32),
        hidden_loading=hidden_loadings(rng, n, hidden_dims, cfg.hidden_gain_sd),
    )
    population.calibrate(calibration_videos, rng, cfg)
    return population
