"""dF/F and online deconvolution, per ROI, one sample at a time.

Running baseline: an asymmetric tracker of the neuropil-corrected fluorescence, falling faster
(`baseline_fall_s`) than it rises (`baseline_rise_s`), so it sits under the calcium transients
at the trace's quiet level. It falls over 10 s and rises over 5 minutes (it fell in 2 s and rose
over 60 s): the fast tracker chased every dip of the noise slower than a frame (neuropil, small z
motion) and climbed back after it, so the baseline of the lab movie of bench_frontend_vs_suite2p
wandered by 7.8 % (now 2.8 %), as much as the cells' true dF/F, whose median r with the front
end's rose 0.380 -> 0.435 (the simulator's movie 0.896 -> 0.917). A drop of the light
(bleaching, a z step) is followed over tens of seconds; a rise, over minutes.
dF/F = (F - F0) / F0, clipped at `max_dff`.

Deconvolution: the AR(1) model of the indicator, c_t = g c_{t-1} + s_t, with g = exp(-dt / tau).
Each sample's innovation e_t = dff_t - g dff_{t-1} is an event where it exceeds
`event_threshold_sd` noise sd; events are scaled by rate / spike_dff into spikes per second. This
is the causal step of OASIS (its pool merging revises past samples, which a live decoder has
already shown): the same estimator the dataset's responses were made with, so the daemon feeds
the decoder what it was trained on. The noise sd is learnt online from the negative innovations
only, which spikes (always positive) never reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DeconvolutionConfig:
    tau_decay_s: float = 0.8  # indicator decay (GCaMP6s; the dataset's deconvolution assumes the same)
    spike_dff: float = 0.25  # dF/F of one spike: events -> spikes per second
    event_threshold_sd: float = 1.0
    baseline_fall_s: float = 10.0
    baseline_rise_s: float = 300.0
    noise_window_s: float = 20.0
    # |dF/F| beyond this is a baseline near zero (a dim ROI, neuropil over-subtracted), not calcium;
    # GCaMP saturates around dF/F 4-10
    max_dff: float = 10.0

    def __post_init__(self):
        if min(self.tau_decay_s, self.spike_dff, self.baseline_fall_s, self.baseline_rise_s) <= 0:
            raise ValueError("[frontend] tau_decay_s, spike_dff and the baseline times must be > 0")


class Deconvolver:
    """State of one plane's ROIs sampled every `dt_s` seconds; `step` per sample, `run` on traces."""

    def __init__(self, n_rois: int, dt_s: float, cfg: DeconvolutionConfig):
        self.cfg = cfg
        self.gamma = float(np.exp(-dt_s / cfg.tau_decay_s))
        self.scale = 1.0 / (dt_s * cfg.spike_dff)
        self.fall = 1.0 - np.exp(-dt_s / cfg.baseline_fall_s)
        self.rise = 1.0 - np.exp(-dt_s / cfg.baseline_rise_s)
        self.noise_rate = 1.0 - np.exp(-dt_s / cfg.noise_window_s)
        self.baseline = np.zeros(n_rois)
        self.dff = np.zeros(n_rois)  # the last sample's dF/F
        self.noise_var = np.zeros(n_rois)
        self.negatives = np.zeros(n_rois)  # negative innovations seen: the noise estimate's sample size
        self.samples = 0

    def step(self, corrected: np.ndarray) -> np.ndarray:
        """Events (spikes/s-like, >= 0) of one sample of neuropil-corrected fluorescence."""
        f = np.asarray(corrected, np.float64)
        if self.samples == 0:
            self.baseline[:] = f
        rate = np.where(f < self.baseline, self.fall, self.rise)
        self.baseline += rate * (f - self.baseline)
        dff = np.clip(
            (f - self.baseline) / np.maximum(np.abs(self.baseline), 1e-6), -self.cfg.max_dff, self.cfg.max_dff
        )
        innovation = dff - self.gamma * self.dff
        negative = innovation < 0
        self.negatives += negative
        # running mean over the first negatives, then an exponential window
        weight = np.where(negative, np.maximum(1.0 / np.maximum(self.negatives, 1), self.noise_rate), 0.0)
        self.noise_var += weight * (innovation**2 - self.noise_var)
        threshold = self.cfg.event_threshold_sd * np.sqrt(self.noise_var)
        events = np.maximum(innovation - threshold, 0.0) * self.scale
        events[self.negatives == 0] = 0.0  # no noise estimate yet: nothing is an event
        self.dff = dff
        self.samples += 1
        return events.astype(np.float32)

    def run(self, corrected: np.ndarray) -> np.ndarray:
        """Offline: (T, R) events of (T, R) traces, sample by sample as `step` would."""
        return np.stack([self.step(row) for row in corrected]) if len(corrected) else corrected
