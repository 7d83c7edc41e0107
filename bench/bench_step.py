"""Latency of one `Backend.step` at N = 2,000 and 8,000 neurons, next to the read-in floor.

The floor is one numpy float32 matrix-vector product with the read-in weights (D x N, as stored):
no decoder step can beat reading those weights once. It is timed with numpy's own BLAS threads
(all cores, the issue's definition) and on one thread (for the one-thread ONNX Runtime
configuration). Target on the 2-core CPU box: ONNX Runtime p99 <= 1 ms at 8,000 neurons and
within 2x the floor.

    pytest bench/bench_step_tables.py --benchmark-enable  # pytest-benchmark tables (the test extra)
    python bench/bench_step.py [--steps 2000 --repeats 5]  # p50/p99/p99.9, writes results/bench_step.json

Repeats interleave floors and backends so that load from other processes hits all of them
alike; the load average is recorded with every measurement.

Back to back, a step finds the model in the CPU caches. At 30 Hz it does not: between ticks other
work evicts the weights and code, and a step costs several times more. `paced_30hz` times steps
one tick apart, cold and after `Backend.prefetch` a lead before the tick (what the daemon does),
next to the paced floor: the read-in matvec timed the same way (its prefetch: one matvec a lead
before the tick), on one BLAS thread; each backend's figure has its ratio to the floor of its N
and mode. onnxruntime-1thread-int8 serves model.int8.onnx (`export --int8-read-in`): a quarter
of the read-in bytes per tick. `--latent 256 128` times a narrower read-in (and head) beside the
default one: half the read-in bytes again, each row also over the default width's paced floor.
`--residual` times residual students (`distill --residual-of`) instead: D components plus the
behaviour pass-through read in, and the baseline's ridge readout over 7 lagged latents beside the
head, the bytes a tick adds over the plain student's; the floor stays the read-in matvec.
`--gaze-gain 0.5` times gaze-corrected decoders (`baseline --gaze-gains`): each frame moved back by
the eye's shift, two bilinear matrix products a tick, and the last L shifts in the state.
"""

import contextlib
import ctypes
import functools
import glob
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import arguments, write_result

from stream_decoder.data import BEHAVIOR_CHANNELS
from stream_decoder.decoder.artifact import save_artifact
from stream_decoder.decoder.residual import ResidualConfig, ResidualStudent
from stream_decoder.decoder.student import Student, StudentConfig
from stream_decoder.runtime import open_backend
from stream_decoder.runtime.export import export_artifact

NEURONS = (2000, 8000)
INPUT_BANK = 64  # distinct activity vectors cycled through, so no step sees the previous input
DEFAULT_LATENT = StudentConfig(n_neurons=1).latent
NOTES = (
    "Wall-clock per step() call, inputs cycled from a bank of 64 vectors. onnxruntime-1thread is "
    "the default backend (intra_op_num_threads=1), onnxruntime-2threads the same graph on two. floor: numpy "
    "matvec with the read-in weights on numpy's BLAS threads (all cores); floor_1thread: the same "
    "on one thread. onnxruntime-1thread-int8: model.int8.onnx (int8 read-in weights, and ridge "
    "readout with --residual) on one thread. "
    "paced_30hz: steps one 30 Hz tick apart, cold and prefetched; 'numpy read-in' rows there are the "
    "paced floor (the float32 read-in matvec on one BLAS thread, prefetched with one matvec), and each "
    "backend row's p50/p99_over_paced_floor are against the floor of its N, latent and mode (and "
    "_over_paced_floor_d256 against the default width's float32 floor at that N). Other jobs "
    "shared the CPU: load_average_1m is recorded per measurement (before, after); best_repeat is the "
    "least disturbed figure, median_over_repeats the typical."
)


def backend_options() -> dict[str, tuple[str, dict]]:
    """Label -> (kind, options); TensorRT only where it can run."""
    options = {
        "torch": ("torch", {}),
        "onnxruntime-1thread": ("onnxruntime", {"threads": 1}),
        "onnxruntime-2threads": ("onnxruntime", {"threads": 2}),
        "onnxruntime-1thread-int8": ("onnxruntime", {"threads": 1, "int8_read_in": True}),
    }
    try:
        from stream_decoder.runtime.tensorrt_backend import require_tensorrt

        require_tensorrt()
        options["tensorrt"] = ("tensorrt", {})
    except RuntimeError:
        pass
    return options


def build_artifact(
    folder: Path, n_neurons: int, latent: int = DEFAULT_LATENT, residual: bool = False, gaze_gain: float = 0.0
) -> Path:
    """Default-shaped student (or residual student of a `latent`-component baseline) with random
    weights and plausible normalisation, exported (with the int8 read-in graph)."""
    torch.manual_seed(0)
    if residual:
        config = ResidualConfig(n_neurons=n_neurons, latent=latent + BEHAVIOR_CHANNELS, gaze_gain=gaze_gain)
        student = ResidualStudent(config).eval()
    else:
        student = Student(StudentConfig(n_neurons=n_neurons, latent=latent, gaze_gain=gaze_gain)).eval()
    mean, std = torch.rand(n_neurons), torch.rand(n_neurons) + 0.5
    student.set_normalisation(mean, std, torch.zeros(4), torch.ones(4))
    save_artifact(folder, student, unit_ids=np.arange(n_neurons), data_fingerprint="bench")
    export_artifact(folder, steps=8, int8_read_in=True)
    return folder


def inputs(n_neurons: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((INPUT_BANK, n_neurons), dtype=np.float32), np.zeros((INPUT_BANK, 4), np.float32)


def read_in_matvec(artifact_dir: Path):
    weight = torch.load(artifact_dir / "weights.pt", weights_only=True)["read_in.weight"].numpy()
    return lambda activity, behavior: weight @ activity


@contextlib.contextmanager
def blas_threads(n: int):
    """numpy's OpenBLAS on n threads inside the block (no-op, returning False, if not found)."""
    libraries = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*"))
    library = ctypes.CDLL(libraries[0]) if libraries else None
    get = getattr(library, "scipy_openblas_get_num_threads64_", None)
    set_ = getattr(library, "scipy_openblas_set_num_threads64_", None)
    if get is None or set_ is None:
        yield False
        return
    before = get()
    set_(n)
    try:
        yield True
    finally:
        set_(before)


def time_calls(call, activity: np.ndarray, behavior: np.ndarray, steps: int) -> dict:
    """p50/p99/p99.9 in microseconds over `steps` calls (after 200 warm-up calls), with the load."""
    for i in range(200):
        call(activity[i % INPUT_BANK], behavior[i % INPUT_BANK])
    load = os.getloadavg()[0]
    times = np.empty(steps)
    for i in range(steps):
        a, b = activity[i % INPUT_BANK], behavior[i % INPUT_BANK]
        start = time.perf_counter()
        call(a, b)
        times[i] = time.perf_counter() - start
    p50, p99, p999 = np.percentile(times, [50, 99, 99.9]) * 1e6
    return {
        "p50_us": round(p50, 1),
        "p99_us": round(p99, 1),
        "p99.9_us": round(p999, 1),
        "load_average_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
    }


def time_paced(
    step,
    prefetch,
    activity: np.ndarray,
    behavior: np.ndarray,
    ticks: int,
    lead_s: float,
    rate_hz: float = 30.0,
) -> dict:
    """p50/p99 of `step(activity, behavior)` one tick apart; with lead_s > 0, `prefetch()` runs that
    long before each."""
    times = np.empty(ticks)
    start = time.perf_counter() + 0.1
    for k in range(ticks):
        due = start + k / rate_hz
        if lead_s:
            time.sleep(max(0.0, due - lead_s - time.perf_counter()))
            prefetch()
        time.sleep(max(0.0, due - time.perf_counter()))
        t0 = time.perf_counter()
        step(activity[k % INPUT_BANK], behavior[k % INPUT_BANK])
        times[k] = time.perf_counter() - t0
    p50, p99 = np.percentile(times, [50, 99]) * 1e6
    return {"p50_us": round(p50, 1), "p99_us": round(p99, 1), "load_average_1m": round(os.getloadavg()[0], 2)}


def paced(opened: dict, artifacts: dict, ticks: int, leads_s: list[float]) -> list[dict]:
    """Per shape at 30 Hz, cold and prefetched: the read-in floor on one BLAS thread, then each
    onnxruntime configuration with its ratios to the floor of the same shape and mode, and to the
    float32 floor of the default read-in width at that N (what a narrower read-in buys)."""
    modes = [("cold", 0.0)] + [(f"prefetch {lead * 1e3:g} ms ahead", lead) for lead in leads_s]
    results, floors = [], {}
    for (n, latent), folder in artifacts.items():
        activity, behavior = inputs(n)
        matvec = read_in_matvec(folder)
        warm = functools.partial(matvec, activity[0], behavior[0])  # the floor's prefetch: one matvec
        with blas_threads(1) as controlled:
            for mode, lead in modes:
                floors[n, latent, mode] = floor = time_paced(matvec, warm, activity, behavior, ticks, lead)
                threads = {"blas_threads": 1 if controlled else "numpy's default"}
                results.append(shape_row(n, latent, "numpy read-in", mode=mode, **threads, **floor))
                print_paced(n, latent, "numpy read-in", mode, floor)
        for (label, shape), backend in opened.items():
            if shape != (n, latent) or not label.startswith("onnxruntime"):
                continue
            for mode, lead in modes:
                backend.reset()
                p = time_paced(backend.step, backend.prefetch, activity, behavior, ticks, lead)
                p |= floor_ratios(p, floors[n, latent, mode], "paced_floor")
                if (n, DEFAULT_LATENT, mode) in floors:
                    p |= floor_ratios(p, floors[n, DEFAULT_LATENT, mode], f"paced_floor_d{DEFAULT_LATENT}")
                results.append(shape_row(n, latent, label, mode=mode, **p))
                print_paced(n, latent, label, mode, p)
    return results


def shape_row(n: int, latent: int, backend: str, **figures) -> dict:
    return {"neurons": n, "latent": latent, "backend": backend, **figures}


def floor_ratios(p: dict, floor: dict, name: str) -> dict:
    return {
        f"p50_over_{name}_p50": round(p["p50_us"] / floor["p50_us"], 2),
        f"p99_over_{name}_p99": round(p["p99_us"] / floor["p99_us"], 2),
    }


def print_paced(n: int, latent: int, label: str, mode: str, p: dict) -> None:
    ratio = p.get("p99_over_paced_floor_p99")
    print(
        f"30 Hz N={n:5d} D={latent:4d} {label:24s} {mode:22s} p50 {p['p50_us']:7.1f} us  "
        f"p99 {p['p99_us']:7.1f} us" + (f"  x{ratio:.2f} paced floor p99" if ratio else "")
    )


def measure_floors(matvec, activity, behavior, steps: int) -> dict:
    floors = {"floor": time_calls(matvec, activity, behavior, steps)}
    with blas_threads(1) as controlled:
        if controlled:
            floors["floor_1thread"] = time_calls(matvec, activity, behavior, steps)
    return floors


def run(
    steps: int,
    repeats: int,
    latents: list[int],
    paced_ticks: int,
    leads_s: list[float],
    residual: bool,
    gaze_gain: float = 0.0,
) -> dict:
    backends = backend_options()
    shapes = [(n, latent) for latent in latents for n in NEURONS]
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = {
            (n, d): build_artifact(Path(tmp) / f"{n}-{d}", n, d, residual, gaze_gain) for n, d in shapes
        }
        opened = {
            (label, shape): open_backend(artifacts[shape], kind, **options)
            for label, (kind, options) in backends.items()
            for shape in shapes
        }
        for backend in opened.values():
            backend.warmup()
        runs = []
        for repeat in range(repeats):
            for n, latent in shapes:
                activity, behavior = inputs(n)
                floors = measure_floors(read_in_matvec(artifacts[n, latent]), activity, behavior, steps)
                runs.append(shape_row(n, latent, "numpy read-in", repeat=repeat, **floors))
                floor = floors["floor"]
                one_thread = floors.get("floor_1thread", {}).get("p50_us")
                print(
                    f"repeat {repeat} N={n:5d} D={latent:4d} {'numpy read-in':24s} "
                    f"p50 {floor['p50_us']:7.1f} us  p99 {floor['p99_us']:7.1f} us  "
                    f"(one thread: p50 {one_thread} us)"
                )
                for label in backends:
                    backend = opened[label, (n, latent)]
                    backend.reset()
                    p = time_calls(backend.step, activity, behavior, steps)
                    runs.append(shape_row(n, latent, label, repeat=repeat, **p))
                    print(
                        f"repeat {repeat} N={n:5d} D={latent:4d} {label:24s} p50 {p['p50_us']:7.1f} us  "
                        f"p99 {p['p99_us']:7.1f} us  p99.9 {p['p99.9_us']:8.1f} us  "
                        f"x{p['p50_us'] / floor['p50_us']:.2f} floor p50"
                    )
        paced_runs = paced(opened, artifacts, paced_ticks, leads_s)
    return {
        "student": json.loads(StudentConfig(n_neurons=NEURONS[0], latent=latents[0]).to_json())
        | {"n_neurons": list(NEURONS), "latent": list(latents), "residual": residual, "gaze_gain": gaze_gain},
        "steps_per_measurement": steps,
        "paced_ticks": paced_ticks,
        "notes": NOTES,
        "summary": summarise(runs, shapes),
        "paced_30hz": paced_runs,
        "runs": runs,
    }


def summarise(runs: list[dict], shapes: list[tuple[int, int]]) -> list[dict]:
    """Per backend and shape: the best repeat (lowest p50: the least disturbed by other processes,
    as timeit takes the minimum) against the best floor of that shape, and medians over repeats."""
    fields = ("p50_us", "p99_us", "p99.9_us")
    summary = []
    for n, latent in shapes:
        of_shape = [r for r in runs if (r["neurons"], r["latent"]) == (n, latent)]
        floor_runs = [r for r in of_shape if r["backend"] == "numpy read-in"]
        floors = {
            kind: min((r[kind] for r in floor_runs), key=lambda f: f["p50_us"])
            for kind in ("floor", "floor_1thread")
            if kind in floor_runs[0]
        }
        for backend in dict.fromkeys(r["backend"] for r in of_shape if r["backend"] != "numpy read-in"):
            mine = [r for r in of_shape if r["backend"] == backend]
            best = min(mine, key=lambda r: r["p50_us"])
            entry = {
                **shape_row(n, latent, backend),
                "best_repeat": {f: best[f] for f in fields},
                "median_over_repeats": {f: float(np.median([r[f] for r in mine])) for f in fields},
            }
            for kind, floor in floors.items():
                entry["best_repeat"] |= floor_ratios(best, floor, kind)
            summary.append(entry)
        summary.append(shape_row(n, latent, "numpy read-in", best_repeat=floors))
    return summary


def main() -> None:
    parser = arguments(__doc__, "bench_step")
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per backend, N and repeat")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (contention varies)")
    parser.add_argument(
        "--latent",
        type=int,
        nargs="+",
        default=[DEFAULT_LATENT],
        help="D, the read-in width; several are timed side by side (e.g. 256 128: a narrower read-in)",
    )
    parser.add_argument("--paced-ticks", type=int, default=300, help="steps timed at 30 Hz per configuration")
    parser.add_argument(
        "--prefetch-ms",
        type=float,
        nargs="+",
        default=[2.0],
        help="lead of the prefetch before a tick ([stream] prefetch_ms); several: one paced mode each",
    )
    parser.add_argument(
        "--residual",
        action="store_true",
        help="time residual students of D-component baselines (write them with --out elsewhere)",
    )
    parser.add_argument(
        "--gaze-gain", type=float, default=0.0, help="time gaze-corrected decoders of this gain (0: none)"
    )
    args = parser.parse_args()
    latents = sorted(set(args.latent), key=lambda d: (d != DEFAULT_LATENT, -d))  # the default's floor first
    leads = [ms / 1e3 for ms in args.prefetch_ms]
    figures = run(args.steps, args.repeats, latents, args.paced_ticks, leads, args.residual, args.gaze_gain)
    write_result("bench_step", figures, args.out)


if __name__ == "__main__":
    main()
