"""suite2p's offline pipeline on one movie with given ROIs: the anchor bench_frontend_vs_suite2p.py
measures the live front end against. Needs only numpy and suite2p 1.1, so it runs in whatever
Python has suite2p (bench_frontend_vs_suite2p.py --suite2p-python).

    python bench/suite2p_offline.py MOVIE.npy ROIS.npz OUT.npz --fs HZ [--tau S]

All frames at once, as a lab runs it after the session: registration (suite2p's defaults, to the
reference given), trace extraction with the ROIs given (overlapping pixels left out, neuropil
rings of at least 350 pixels), F - 0.7 Fneu, the maximin baseline, OASIS deconvolution. ROIS.npz:
`pixel` (flat y * W + x), `weight`, `offsets` (ROI r is pixel[offsets[r]:offsets[r+1]]). Writes F,
Fneu, dff ((F - 0.7 Fneu) over its baseline, minus 1), spks (R, T), yoff, xoff (T,) and the seconds
each stage took.
"""

import argparse
import time

import numpy as np


def stats_of(rois, shape: tuple[int, int]) -> list[dict]:
    """suite2p's `stat` entries for the ROIs: pixels, weights, radius and which pixels overlap."""
    pixel, weight, offsets = rois["pixel"], rois["weight"], rois["offsets"]
    counts = np.bincount(pixel, minlength=shape[0] * shape[1])
    stat = []
    for r in range(len(offsets) - 1):
        span = slice(offsets[r], offsets[r + 1])
        ypix, xpix = np.divmod(pixel[span], shape[1])
        stat.append(
            {
                "ypix": ypix,
                "xpix": xpix,
                "lam": weight[span].astype(np.float32),
                "radius": float(np.sqrt(ypix.size / np.pi)),
                "overlap": counts[pixel[span]] > 1,
                "med": [float(np.median(ypix)), float(np.median(xpix))],
            }
        )
    return stat


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("movie", help=".npy (T, H, W) uint16 or int16 raw frames")
    parser.add_argument("rois", help=".npz pixel / weight / offsets")
    parser.add_argument("out", help=".npz to write")
    parser.add_argument("--fs", type=float, required=True, help="frames per second of the plane")
    parser.add_argument("--tau", type=float, default=0.8, help="indicator decay (s), suite2p's tau")
    parser.add_argument(
        "--reference", help=".npy (H, W): the image the ROIs were drawn on; default suite2p's own"
    )
    args = parser.parse_args()

    import torch
    from suite2p.extraction import dcnv
    from suite2p.extraction.extract import extraction_wrapper
    from suite2p.parameters import default_settings
    from suite2p.registration.register import registration_wrapper

    torch.set_num_threads(2)
    device = torch.device("cpu")
    raw = np.load(args.movie)
    movie = np.clip(raw.astype(np.int32), -32768, 32767).astype(np.int16)  # suite2p's binary is int16
    settings = default_settings()
    seconds = {}
    started = time.perf_counter()
    registered = movie  # registered in place, as suite2p does its binary file
    reference = None if args.reference is None else np.load(args.reference).astype(np.int16)
    outputs = registration_wrapper(
        registered, refImg=reference, settings=settings["registration"], device=device
    )
    seconds["registration"] = time.perf_counter() - started
    started = time.perf_counter()
    stat = stats_of(np.load(args.rois), movie.shape[1:])
    extraction = settings["extraction"]
    f, fneu, _, _ = extraction_wrapper(stat, registered, settings=extraction, device=device)
    seconds["extraction"] = time.perf_counter() - started
    started = time.perf_counter()
    corrected = f - extraction["neuropil_coefficient"] * fneu
    baseline = settings["dcnv_preprocess"]
    above = dcnv.preprocess(
        corrected.copy(),
        baseline["baseline"],
        baseline["win_baseline"],
        baseline["sig_baseline"],
        args.fs,
        baseline["prctile_baseline"],
        device=device,
    )
    spks = dcnv.oasis(above, extraction["batch_size"], args.tau, args.fs)
    seconds["deconvolution"] = time.perf_counter() - started
    dff = above / np.maximum(np.abs(corrected - above), 1e-6)
    np.savez(
        args.out,
        F=f,
        Fneu=fneu,
        dff=dff,
        spks=spks,
        yoff=np.asarray(outputs["yoff"]),
        xoff=np.asarray(outputs["xoff"]),
        seconds=np.array([seconds[k] for k in ("registration", "extraction", "deconvolution")]),
        neuropil_coefficient=extraction["neuropil_coefficient"],
    )


if __name__ == "__main__":
    main()
