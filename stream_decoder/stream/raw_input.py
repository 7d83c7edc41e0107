"""Raw `frame` messages in (docs/protocol.md §8): the daemon's front end, set up from [frontend].

A frame of one plane goes through the front end (motion correction, ROI extraction, deconvolution)
and comes out as that plane's activity, split into the contiguous runs of the model's neuron order
that `activity` messages would carry (§3.3), so everything after it is the activity path.
"""

import logging
import time
from pathlib import Path

import numpy as np

from stream_decoder.data.microscope import Microscope
from stream_decoder.frontend import BadPixels, FrontEnd, FrontEndConfig, NoMatch
from stream_decoder.frontend.deconvolution import DeconvolutionConfig
from stream_decoder.frontend.extraction import ExtractionConfig
from stream_decoder.frontend.motion import MotionConfig
from stream_decoder.frontend.roi_sources import load_rois, save_npz
from stream_decoder.frontend.synthetic import simulator_rois
from stream_decoder.stream.assembly import contiguous_runs
from stream_decoder.stream.config import FrontEndSection
from stream_decoder.stream.protocol import Activity, Frame, Rejected
from stream_decoder.stream.stats import LatencyWindow, RateLimitedLog, kv

log = logging.getLogger(__name__)
EMPTY = np.zeros(0, np.float32)


# A registration peak under this many times [frontend] min_peak_sd still matches, but is counted
# and warned about: the field is going (z drift, focus), before frames are refused outright.
WEAK_PEAK = 1.5


def frontend_config(section: FrontEndSection) -> FrontEndConfig:
    s = section
    return FrontEndConfig(
        MotionConfig(s.max_shift_fraction, reference_frames=s.reference_frames, min_peak_sd=s.min_peak_sd,
                     estimate_px=s.estimate_px, fft_workers=s.fft_workers),
        ExtractionConfig(s.neuropil_coefficient, dark_level=s.dark_level, extract_unused=s.extract_unused,
                         overlap=s.overlap, demix_ridge=s.demix_ridge),
        DeconvolutionConfig(s.tau_decay_s, s.spike_dff, s.event_threshold_sd,
                            baseline_fall_s=s.baseline_fall_s, baseline_rise_s=s.baseline_rise_s),
        s.saturation_adu,
    )  # fmt: skip


def load_references(path, n_planes: int, frame_shape: tuple[int, int]) -> list[np.ndarray]:
    """Motion references from an .npy of shape (planes, H, W) (or (H, W) for one plane)."""
    try:
        stack = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"[frontend] references {path}: not a numeric .npy ({exc})") from None
    if stack.ndim == 2:
        stack = stack[None]
    if stack.shape != (n_planes, *frame_shape):
        raise ValueError(
            f"[frontend] references {path}: shape {stack.shape}, the ROIs need ({n_planes}, "
            f"{frame_shape[0]}, {frame_shape[1]}): one reference image per plane"
        )
    return list(stack.astype(np.float32))


class RawInput:
    """The daemon's front end for its model: the ROIs checked against the model's neurons, the
    plane rate from [frontend] or the model's input timing, what unmapped neurons hold."""

    def __init__(
        self, section: FrontEndSection, n_neurons: int, activity_mean: np.ndarray, input_timing: dict | None
    ):
        rois = load_rois(section.rois)
        if rois.n_rois and rois.neuron.max() >= n_neurons:
            raise ValueError(
                f"[frontend] rois {section.rois}: an ROI feeds neuron {rois.neuron.max()}, "
                f"the model reads {n_neurons}: ROIs of another mouse or session"
            )
        rate = section.volume_rate_hz or (input_timing or {}).get("volume_rate_hz")
        if rate is None:
            raise ValueError(
                "[frontend] volume_rate_hz is unset and the model records no input timing: "
                "set it to the frames per second of each plane"
            )
        references = (
            None
            if section.references is None
            else load_references(section.references, rois.n_planes, rois.frame_shape)
        )
        self.frontend = FrontEnd(rois, 1.0 / rate, frontend_config(section), references)
        self.runs = [contiguous_runs(plane.neurons) for plane in self.frontend.planes]
        self.unmapped = rois.unmapped_neurons(n_neurons)
        self.resting = np.zeros(n_neurons, np.float32)
        self.resting[self.unmapped] = np.asarray(activity_mean, np.float32)[self.unmapped]
        self.frames = 0
        self.cost = LatencyWindow(4096)  # the front end's own time per frame
        self.shift: dict[int, tuple[float, float, float]] = {}  # plane -> latest (dy, dx, peak sd)
        self.min_peak_sd = section.min_peak_sd
        self.weak = 0  # frames registered with a peak under WEAK_PEAK x min_peak_sd
        self.latest = None  # the front end's output for the last frame `parts` took
        self.log = RateLimitedLog(log, interval_s=10.0)
        log.info(
            kv(
                "frontend",
                rois=rois.n_rois,
                planes=rois.n_planes,
                frame_shape=f"{rois.frame_shape[0]}x{rois.frame_shape[1]}",
                plane_rate_hz=rate,
                neurons_without_roi=self.unmapped.size,
                reference="loaded" if references is not None else f"first {section.reference_frames} frames",
            )
        )
        if self.unmapped.size:
            log.warning(
                kv(
                    "neurons_without_roi",
                    count=self.unmapped.size,
                    first=self.unmapped[:8].tolist(),
                    held_at="their training mean",
                )
            )

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.frontend.frame_shape

    @property
    def n_planes(self) -> int:
        return self.frontend.n_planes

    @property
    def most_rois(self) -> int:
        """The most neurons one plane's frame gives values for."""
        return max((p.neurons.size for p in self.frontend.planes), default=0)

    def parts(self, raw: Frame) -> list[Activity]:
        """The plane's activity as activity messages; Rejected(bad_pixels) for a frame with a
        saturated stripe, Rejected(reference_mismatch) for one unlike the plane's reference."""
        started = time.perf_counter()
        try:
            out = self.frontend.step(raw.plane, raw.image)
        except BadPixels as exc:
            raise Rejected("bad_pixels", str(exc)) from None
        except NoMatch as exc:
            raise Rejected("reference_mismatch", str(exc)) from None
        self.cost.add(time.perf_counter() - started)
        self.latest = out
        self.frames += 1
        self.shift[raw.plane] = (out.dy, out.dx, out.peak_sd)
        if out.peak_sd < WEAK_PEAK * self.min_peak_sd:
            self.weak += 1
            self.log.warning(
                "weak_registration",
                "weak_registration",
                plane=raw.plane,
                peak_sd=round(out.peak_sd, 1),
                fix="the field drifted, lost focus or moved in z: check the image, or give new references",
            )
        runs = self.runs[raw.plane] or [(0, 0, 0)]
        return [self._part(raw, out.values[a:b], first) for first, a, b in runs]

    def held(self, raw: Frame) -> Activity:
        """A frame whose values are unusable, as a message carrying none: time still moves on."""
        return self._part(raw, EMPTY, 0)

    @staticmethod
    def _part(raw: Frame, values: np.ndarray, first: int) -> Activity:
        return Activity(
            raw.session,
            raw.seq,
            raw.t,
            values,
            first,
            raw.plane,
            raw.n_planes,
            raw.behavior,
            raw.pupil_center,
        )

    def stats(self) -> dict:
        return {
            "frames": self.frames,
            "bound_hits": self.frontend.bound_hits,
            "neurons_without_roi": int(self.unmapped.size),
            "rois_skipped": sum(p.extractor.skipped for p in self.frontend.planes),  # feed no neuron
            "cost_ms": self.cost.percentiles_ms(),
            "shift_px": {
                str(p): {"dy": dy, "dx": dx, "peak_sd": peak} for p, (dy, dx, peak) in self.shift.items()
            },
            "weak_registration": self.weak,
        }


def write_microscope(microscope: Microscope, out: Path) -> list[Path]:
    """A synthetic mouse's ROIs, motion references and the [frontend] section serving them."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rois = simulator_rois(microscope)
    references = np.stack([microscope.reference_image(p) for p in range(rois.n_planes)])
    paths = [out / "rois.npz", out / "references.npy", out / "frontend.toml"]
    save_npz(rois, paths[0])
    np.save(paths[1], references)
    paths[2].write_text(
        "# The [frontend] section of a rig config serving this synthetic mouse's raw frames.\n"
        "[frontend]\n"
        f'rois = "{paths[0].name}"  # relative to this file\'s folder\n'
        f'references = "{paths[1].name}"\n'
        f"dark_level = {microscope.cfg.offset_adu}\n"
        f"volume_rate_hz = {microscope.timing.volume_rate_hz}\n"
    )
    return paths
