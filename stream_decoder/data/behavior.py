"""Behaviour of a head-fixed mouse during one trial: running, pupil dilation and eye position.

A slow arousal process drives both running bouts and pupil dilation, so the two covary as they
do in real mice. The eye drifts around its resting position and makes occasional, mostly
horizontal saccades (more of them while running), each shifting the retinal image, and so every
receptive field, on the screen. Beside what the rig films, the mouse has hidden behavioural
states (whisking, facial motion, posture: Stringer et al., Science 2019), a few slow factors of
power-law variance that modulate the whole population and that no decoder is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sensorium import FRAME_RATE_HZ


@dataclass(frozen=True)
class BehaviorConfig:
    arousal_tau_s: float = 6.0
    run_threshold: float = 0.4  # arousal (unit variance) above which the mouse runs: ~1/3 of the time
    run_speed_cm_s: float = 14.0  # running speed per unit of arousal above threshold
    pupil_baseline: float = 18.0  # dilation in eye-camera px
    pupil_gain: float = 4.0  # dilation per unit arousal
    pupil_tau_s: float = 1.5
    eye_center: tuple[float, float] = (160.0, 120.0)  # resting pupil centre (x, y), eye-camera px
    eye_drift_sd: float = 1.0
    eye_tau_s: float = 2.0  # the eye returns towards rest after a saccade over about this time
    saccade_rate_hz: float = 0.25  # while still; doubled while running
    saccade_px: tuple[float, float] = (4.0, 10.0)
    screen_px_per_eye_px: float = 0.5  # eye-camera px to screen px (about 2 degrees each)
    hidden_dims: int = 16  # unfilmed behavioural factors, each unit variance (neurons weight them)
    hidden_tau_s: float = 2.0


@dataclass(frozen=True, eq=False)
class Behavior:
    """One trial's behaviour, time first."""

    running: np.ndarray  # (T,) cm/s
    pupil: np.ndarray  # (T,) dilation
    pupil_center: np.ndarray  # (T, 2) x, y in eye-camera px
    hidden: np.ndarray  # (T, hidden_dims) unfilmed behavioural factors: never written to the dataset

    @property
    def behavior(self) -> np.ndarray:
        """(T, 2) in the Sensorium order: pupil dilation, running speed."""
        return np.stack([self.pupil, self.running], axis=1).astype(np.float32)

    def __getitem__(self, frames: slice) -> Behavior:
        return Behavior(
            self.running[frames], self.pupil[frames], self.pupil_center[frames], self.hidden[frames]
        )


def _ar1(rng: np.random.Generator, n: int, tau_s: float, sd: float, drive: np.ndarray | None = None):
    """Stationary Ornstein-Uhlenbeck samples at 30 Hz (plus optional extra input per frame)."""
    phi = np.exp(-1.0 / (tau_s * FRAME_RATE_HZ))
    shocks = rng.normal(0.0, sd * np.sqrt(1 - phi**2), n)
    if drive is not None:
        shocks = shocks + drive
    start = rng.normal(0.0, sd)
    # Imported here (and below): scipy.signal takes 0.5 s to import, and only simulating needs it.
    from scipy.signal import lfilter

    return lfilter([1.0], [1.0, -phi], shocks, zi=[phi * start])[0]


def _low_pass(x: np.ndarray, tau_s: float) -> np.ndarray:
    phi = np.exp(-1.0 / (tau_s * FRAME_RATE_HZ))
    from scipy.signal import lfilter

    return lfilter([1 - phi], [1.0, -phi], x, zi=[phi * x[0]])[0]


RUN_ONSET_CM_S = 2.0  # running_state is one half at this speed
RUN_WIDTH_CM_S = 0.7  # and rises from 0 to 1 over a few times this


def running_state(running_cm_s: np.ndarray) -> np.ndarray:
    """0 when still, 1 when clearly running: what scales visual gain."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(running_cm_s) - RUN_ONSET_CM_S) / RUN_WIDTH_CM_S))


def simulate_behavior(rng: np.random.Generator, n_frames: int, cfg: BehaviorConfig) -> Behavior:
    arousal = _ar1(rng, n_frames, cfg.arousal_tau_s, 1.0)
    excess = np.logaddexp(0.0, 4.0 * (arousal - cfg.run_threshold)) / 4.0
    running = _low_pass(cfg.run_speed_cm_s * excess, 0.3) + np.abs(rng.normal(0, 0.15, n_frames))
    pupil = cfg.pupil_baseline + cfg.pupil_gain * _low_pass(arousal, cfg.pupil_tau_s)
    pupil = pupil + rng.normal(0, 0.2, n_frames)

    rate = cfg.saccade_rate_hz * (1.0 + running_state(running)) / FRAME_RATE_HZ
    onsets = rng.random(n_frames) < rate
    angle = rng.normal(0.0, 0.35, n_frames) + np.pi * rng.integers(0, 2, n_frames)  # mostly horizontal
    size = rng.uniform(*cfg.saccade_px, n_frames) * onsets
    pupil_center = np.stack(
        [
            cfg.eye_center[0] + _ar1(rng, n_frames, cfg.eye_tau_s, cfg.eye_drift_sd, size * np.cos(angle)),
            cfg.eye_center[1] + _ar1(rng, n_frames, cfg.eye_tau_s, cfg.eye_drift_sd, size * np.sin(angle)),
        ],
        axis=1,
    )
    hidden = [_ar1(rng, n_frames, cfg.hidden_tau_s, 1.0) for _ in range(cfg.hidden_dims)]
    hidden = np.stack(hidden, axis=1) if hidden else np.zeros((n_frames, 0))
    f32 = np.float32
    return Behavior(running.astype(f32), pupil.astype(f32), pupil_center.astype(f32), hidden.astype(f32))


def screen_shift(pupil_center: np.ndarray, cfg: BehaviorConfig) -> np.ndarray:
    """(T, 2) shift (dy, dx) in screen px of every receptive field, from the pupil centre (x, y)."""
    offset = np.asarray(pupil_center, dtype=np.float64) - np.asarray(cfg.eye_center)
    return cfg.screen_px_per_eye_px * offset[:, ::-1]
