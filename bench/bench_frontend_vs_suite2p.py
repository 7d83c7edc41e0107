"""The live front end against the field's own extraction, on the same frames and ROIs.

    python bench/bench_frontend_vs_suite2p.py --suite2p-python PYTHON [--frames 1800] [--cells 2000]

Movies:
- `lab`: bench/lab_movie.py, a generator made apart from the simulator: real-sized elliptical
  somata packed densely (footprints overlap), neuropil, Poisson photons, a slow drift plus jitter
  and a z-motion episode; one plane at 30 Hz;
- `simulator`: the project's own raw frames of the demo mouse (plane 0, its training clips in a
  row, 7.5 Hz), ROIs from its footprints.

Per movie and ROI, each method's dF/F against the true dF/F and its events against the true
spikes (both smoothed by a 2-frame gaussian), Pearson r; the median over ROIs. Methods:
- live: `frontend.FrontEnd`, causal, frame by frame, in each of its overlap modes (keep, the
  default; demix; exclude);
- suite2p 1.1: registration, extraction with the same ROIs, F - 0.7 Fneu, maximin baseline and
  OASIS, offline on all frames at once (bench/suite2p_offline.py, run by PYTHON, any Python with
  suite2p: it needs a torchvision built for its torch, which a CPU-only torch from PyPI lacks, so
  it lives in its own environment);
- naive: each ROI's weighted pixel mean with the true shift undone, over its 8th percentile.
Both registrations get the image the ROIs were drawn on as their reference, as a lab's are (its
registered mean image). Also each method's rigid shift error (rms, px) and
cost per frame (live: each step timed; suite2p: its stages' seconds over the frames).

Writes bench/results/bench_frontend_vs_suite2p.json and .png.
"""

import subprocess
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from common import arguments, picture_path, write_result
from lab_movie import LabMovieConfig, lab_movie
from scipy.ndimage import gaussian_filter1d, shift
from tqdm import tqdm

from stream_decoder.data import open_mouse
from stream_decoder.data.microscope import Microscope
from stream_decoder.data.simulate import raw_trial, rebuild_mouse
from stream_decoder.frontend import FrontEnd, FrontEndConfig, RoiSet
from stream_decoder.frontend.extraction import OVERLAP_MODES, ExtractionConfig
from stream_decoder.frontend.synthetic import simulator_rois
from stream_decoder.metrics import pearson
from stream_decoder.paths import cache_dir

HELPER = Path(__file__).with_name("suite2p_offline.py")
REFERENCE_FRAMES = 100  # the lab movie's reference: these first frames registered and averaged
SPIKE_SMOOTH_FRAMES = 2.0
TARGET_RATIO = 0.95  # the live front end's median r over suite2p's, on every movie
TARGET_SHIFT_RMS_PX = 0.2


class Movie:
    """Raw frames of one plane, their ROIs and truth: dF/F and spikes (T, R), shifts (T, 2), and the
    reference image the ROIs were drawn on (as a lab draws them on its registered mean image)."""

    def __init__(self, name, frames, rois: RoiSet, dff, spikes, shifts, rate_hz, dark_adu, reference):
        self.name, self.frames, self.rois = name, frames, rois
        self.dff, self.spikes, self.shifts = dff, spikes, shifts
        self.rate_hz, self.dark_adu, self.reference = rate_hz, dark_adu, reference


def lab(frames: int, cells: int, seed: int) -> Movie:
    movie = lab_movie(LabMovieConfig(frames=frames, cells=cells), seed)
    fp = movie.footprints
    rois = RoiSet.from_matrix(fp, np.zeros(fp.shape[0], np.int64), movie.cfg.frame_shape)
    truth = (movie.dff, movie.spikes, movie.shift_px)
    first = zip(movie.frames[:REFERENCE_FRAMES], movie.shift_px, strict=False)
    reference = np.mean([shift(f.astype(np.float32), -s, order=1, mode="nearest") for f, s in first], axis=0)
    return Movie("lab", movie.frames, rois, *truth, movie.cfg.rate_hz, movie.cfg.offset_adu, reference)


def simulator(data: Path, clips: int) -> Movie:
    """Plane 0 of the demo mouse's first training clips, its ROIs restricted to that plane."""
    dataset = open_mouse(data)
    mouse, truth = rebuild_mouse(dataset.path)
    mic = Microscope(mouse)
    trials = dataset.trials("train")[:clips]
    raw = [f for trial in trials for f in raw_trial(mic, truth, trial) if f.plane == 0]
    every = simulator_rois(mic)
    cells = every.of_plane(0)
    pixels = [every.roi_pixels(r)[0] for r in cells]
    weights = [every.roi_pixels(r)[1] for r in cells]
    rois = RoiSet.from_lists(every.frame_shape, pixels, weights)
    return Movie(
        "simulator",
        np.stack([f.image for f in raw]),
        rois,
        np.stack([f.dff for f in raw]),
        np.stack([f.spikes for f in raw]),
        np.stack([f.shift_px for f in raw]),
        mic.timing.volume_rate_hz,
        mic.cfg.offset_adu,
        mic.reference_image(0),
    )


def live(movie: Movie, overlap: str) -> dict:
    cfg = FrontEndConfig(extraction=ExtractionConfig(dark_level=movie.dark_adu, overlap=overlap))
    front = FrontEnd(movie.rois, 1.0 / movie.rate_hz, cfg, [movie.reference])
    dff, events, shifts, cost = [], [], [], []
    for image in tqdm(movie.frames, desc=f"live {movie.name} {overlap}", leave=False):
        started = time.perf_counter()
        out = front.step(0, image)
        cost.append(time.perf_counter() - started)
        dff.append(out.dff)
        events.append(out.values)
        shifts.append((out.dy, out.dx))
    return {"dff": np.array(dff), "events": np.array(events), "shifts": np.array(shifts), "cost_s": cost}


def suite2p(movie: Movie, python: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "movie.npy", movie.frames)
        np.save(tmp / "reference.npy", movie.reference)
        rois = movie.rois
        np.savez(tmp / "rois.npz", pixel=rois.pixel, weight=rois.weight, offsets=rois.offsets)
        command = [python, str(HELPER), str(tmp / "movie.npy"), str(tmp / "rois.npz"), str(tmp / "out.npz")]
        subprocess.run(
            [*command, "--fs", str(movie.rate_hz), "--reference", str(tmp / "reference.npy")], check=True
        )
        with np.load(tmp / "out.npz") as out:
            result = {k: out[k] for k in out.files}
    return {
        "dff": result["dff"].T,
        "events": result["spks"].T,
        "shifts": np.stack([result["yoff"], result["xoff"]], 1),  # how far the scene moved, as ours
        "seconds": dict(zip(("registration", "extraction", "deconvolution"), result["seconds"], strict=True)),
    }


def naive(movie: Movie) -> dict:
    """Each ROI's weighted pixel mean with the true shift undone: what a perfect registration and
    no neuropil model give."""
    rois = movie.rois
    height, width = rois.frame_shape
    rows = np.repeat(np.arange(rois.n_rois), np.diff(rois.offsets))
    weights = rois.weight / np.bincount(rows, weights=rois.weight)[rows]
    matrix = np.zeros((rois.n_rois, height * width), np.float32)
    matrix[rows, rois.pixel] = weights
    f = np.array(
        [
            matrix @ shift(image.astype(np.float32) - movie.dark_adu, -s, order=1, mode="nearest").ravel()
            for image, s in tqdm(zip(movie.frames, movie.shifts, strict=True), desc="naive", leave=False)
        ]
    )
    baseline = np.percentile(f, 8, axis=0)
    return {"dff": f / np.maximum(baseline, 1e-6) - 1}


def correlations(estimate: np.ndarray, truth: np.ndarray, smooth: float = 0.0) -> np.ndarray:
    if smooth:
        estimate, truth = (gaussian_filter1d(np.asarray(a, float), smooth, axis=0) for a in (estimate, truth))
    with np.errstate(invalid="ignore", divide="ignore"):
        return pearson(estimate, truth, axis=0)


def shift_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """rms of the estimate's error, px (both register to the ROIs' own reference)."""
    return float(np.sqrt(np.mean(np.sum((estimate - truth) ** 2, axis=1))))


def measure(movie: Movie, python: str) -> dict:
    """Per method: median r of dF/F (and events) with the truth, shift error, cost per frame."""
    results = {f"live {mode}": live(movie, mode) for mode in OVERLAP_MODES}
    results |= {"suite2p": suite2p(movie, python), "naive": naive(movie)}
    row = {"frames": len(movie.frames), "rois": movie.rois.n_rois, "rate_hz": movie.rate_hz, "methods": {}}
    for name, result in results.items():
        dff_r = correlations(result["dff"], movie.dff)
        entry = {"dff_r_median": round(float(np.nanmedian(dff_r)), 3), "dff_r": dff_r}
        if "events" in result:
            spike_r = correlations(result["events"], movie.spikes, SPIKE_SMOOTH_FRAMES)
            entry["spike_r_median"] = round(float(np.nanmedian(spike_r)), 3)
        if "shifts" in result:
            entry["shift_rms_px"] = round(shift_error(result["shifts"], movie.shifts), 3)
        if "cost_s" in result:
            cost = np.array(result["cost_s"]) * 1e3
            entry["cost_ms"] = {f"p{q}": round(float(np.percentile(cost, q)), 2) for q in (50, 99)}
        row["methods"][name] = entry
    seconds = results["suite2p"]["seconds"]
    s2p = row["methods"]["suite2p"]
    s2p["cost_ms"] = {"mean": round(1e3 * sum(seconds.values()) / len(movie.frames), 2)}
    s2p["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    for entry in row["methods"].values():
        entry["over_suite2p"] = round(entry["dff_r_median"] / s2p["dff_r_median"], 3)
    return row


def table(rows: dict) -> str:
    lines = [
        "| movie (ROIs, frames) | method | dF/F r | over suite2p | spikes r | shift rms px | ms per frame |",
        "|---|---|---|---|---|---|---|",
    ]
    for movie, r in rows.items():
        for name, m in r["methods"].items():
            cost = m.get("cost_ms", {})
            ms = f"{cost['p50']:.1f} / {cost['p99']:.1f} (p50 / p99)" if "p50" in cost else ""
            ms = ms or (f"{cost['mean']:.1f} (mean, offline)" if cost else "-")
            spikes, shift_px = m.get("spike_r_median"), m.get("shift_rms_px")
            lines.append(
                f"| {movie} ({r['rois']}, {r['frames']}) | {name} | {m['dff_r_median']:.3f} | "
                f"{m['over_suite2p']:.2f} | {'-' if spikes is None else f'{spikes:.3f}'} | "
                f"{'-' if shift_px is None else f'{shift_px:.2f}'} | {ms} |"
            )
    return "\n".join(lines)


def picture(rows: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 4), layout="constrained", squeeze=False)
    for ax, (name, r) in zip(axes[0], rows.items(), strict=True):
        methods = r["methods"]
        for mode in OVERLAP_MODES:
            ax.scatter(
                methods["suite2p"]["dff_r"], methods[f"live {mode}"]["dff_r"], s=2, alpha=0.3, label=mode
            )
        ax.plot([-0.2, 1], [-0.2, 1], "k--", lw=0.8)
        ax.set_xlabel("suite2p (offline): r with the true dF/F")
        ax.set_ylabel("live front end: r with the true dF/F")
        medians = ", ".join(f"{k} {m['dff_r_median']:.2f}" for k, m in methods.items())
        ax.set_title(f"{name}: {medians}", fontsize=6)
        ax.legend(fontsize=6, markerscale=3, title="overlap", title_fontsize=6)
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = arguments(__doc__, "bench_frontend_vs_suite2p", data=cache_dir() / "data" / "demo")
    parser.add_argument("--suite2p-python", required=True, help="a Python with suite2p 1.1 installed")
    parser.add_argument("--frames", type=int, default=1800, help="frames of the lab movie (30 Hz)")
    parser.add_argument("--cells", type=int, default=2000, help="cells of the lab movie")
    parser.add_argument("--clips", type=int, default=6, help="training clips of the simulator movie")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = {}
    for movie in (lab(args.frames, args.cells, args.seed), simulator(args.data, args.clips)):
        rows[movie.name] = measure(movie, args.suite2p_python)
    text = table(rows)
    print(text)
    png = picture_path(args.out)
    picture(rows, png)
    for r in rows.values():
        for entry in r["methods"].values():
            entry.pop("dff_r")
    write_result(
        "bench_frontend_vs_suite2p",
        {
            "movies": rows,
            "table": text,
            "picture": png.name,
            "targets": {"live_over_suite2p": TARGET_RATIO, "shift_rms_px": TARGET_SHIFT_RMS_PX},
        },
        args.out,
    )


if __name__ == "__main__":
    main()
