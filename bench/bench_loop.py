"""Closed-loop latency through the virtual rig, the lookahead trade, and the virtual rig's cost.

    python bench/bench_loop.py --data <cache>/data/demo [--steps 12 --clips 2]

A stimulus program (as examples/closed_loop.py) shows the virtual mouse grey, then a still
held-out photograph, `--steps` times, then `--clips` held-out movies, at 30 Hz; the daemon in the
same process decodes its activity (display.loopback.virtual_loop). For each step, the first
reconstruction received whose masked correlation with the new picture reaches half its plateau
(the median over the step's second half) is the one that reflects it. Its loop latency, from
the step's rig time to its arrival, splits exactly into
  - the picture's delay, t_stim - t_step: how much later than the step the frame it shows is
    (biology, indicator and scan beyond what the lookahead covers; negative if it shows the
    step early, smeared back from later activity);
  - the lookahead, t_newest - t_stim (L ticks);
  - the rest, arrival - t_newest: the virtual rig reads a plane out at the end of the 30 Hz
    tick it was scanned in, then ZeroMQ and one step (the daemon's own receive-to-publish time is
    recorded beside it; bench_loop_split.py splits this part in separate processes).
The lookahead part is L ticks less how long before its tick the newest sample was acquired (a
tick holds the samples acquired at or before it).
Beside it, biology and indicator alone: the simulated population's half-rise time after the
step, from the same mouse offline. Models: the ridge baseline fitted on the rig's 3-plane timing
at L = 0, 2, 4, 8 (fitted into <cache>/loop/ once, ~15 s each) and the bundled student. The
movies give each model's masked correlation with the stimulus through the loop.

The virtual rig's own cost per tick (`LiveMouse.show`) is timed at 2,000 (the demo mouse) and
8,000 neurons (the `mouse` preset), paced at 30 Hz and back to back, next to its floor measured
in the same loop: the sparse product with the receptive fields, the bytes every tick reads.
"""

import json
import time
from pathlib import Path

import numpy as np
from common import REQUIRED, arguments, picture_path, write_result

from stream_decoder.data import FRAME_RATE_HZ, open_mouse
from stream_decoder.data.live import LiveMouse
from stream_decoder.data.presets import preset_config
from stream_decoder.data.rig import SyntheticMouse
from stream_decoder.data.simulate import rebuild_mouse
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.baseline import fit_baseline
from stream_decoder.decoder.config import RidgeConfig
from stream_decoder.display.demo import DEMO_ARTIFACT
from stream_decoder.display.loopback import private_endpoints, virtual_loop
from stream_decoder.metrics import frame_correlations, video_correlation
from stream_decoder.paths import cache_dir
from stream_decoder.rig.virtual_rig import Screen
from stream_decoder.runtime import open_backend
from stream_decoder.runtime.export import export_artifact
from stream_decoder.stream.config import DaemonConfig, LogConfig, ModelConfig

LOOKAHEADS = (0, 2, 4, 8)
GREY_TICKS, STEP_TICKS = 30, 30  # each step: 1 s of grey, then 1 s of the picture
TIER = "final_test_main"


def percentiles(values) -> dict:
    values = np.asarray(values, dtype=np.float64) * 1e3
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}


def ridge_artifacts(data: Path, mask: np.ndarray) -> dict[str, Path]:
    """The 3-plane ridge baseline at each lookahead, fitted into the cache the first time."""
    out = {}
    for lookahead in LOOKAHEADS:
        folder = cache_dir() / "loop" / f"ridge-L{lookahead}"
        if not (folder / "model.onnx").is_file():
            fit_baseline(
                data, folder, RidgeConfig(lookahead=lookahead), mask, multi_plane=True, progress=False
            )
            export_artifact(folder)
        out[f"ridge L={lookahead}"] = folder
    return out


def stimulus_plan(pictures: list[np.ndarray], movies: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """(ticks, 36, 64) frames: grey then a still picture per step, then the movies; the step ticks."""
    grey = np.full(pictures[0].shape, 128.0, np.float32)
    frames, steps = [], []
    for picture in pictures:
        frames += [grey] * GREY_TICKS
        steps.append(len(frames))
        frames += [picture] * STEP_TICKS
    return np.stack(frames + [f for movie in movies for f in movie]).astype(np.float32), steps


def run_loop(artifact: Path, mouse, frames: np.ndarray) -> tuple[float, list, dict]:
    """Show `frames` at 30 Hz through the virtual loop: (t0, [(arrival, t_stim, t_newest, frame)],
    the daemon's stats)."""
    backend = open_backend(artifact, "onnxruntime")
    backend.warmup()
    received = []
    with private_endpoints() as endpoints:
        cfg = DaemonConfig(
            model=ModelConfig(artifact, "onnxruntime"), endpoints=endpoints, log=LogConfig(interval_s=60.0)
        )
        with virtual_loop(cfg, backend, mouse) as (loop, _, stimulus), Screen(stimulus, bind=False) as screen:
            assert screen.wait_for_subscriber(30.0, topic=b"stimulus")
            t0 = np.ceil(time.time() * FRAME_RATE_HZ) / FRAME_RATE_HZ + 0.5
            start = time.monotonic() + (t0 - time.time())
            for tick, frame in enumerate([*frames, *[None] * 30]):  # then a second for the last frames
                while (left := start + tick / FRAME_RATE_HZ - time.monotonic()) > 0:
                    if (item := loop.display.receive(timeout_s=left)) is not None:  # arrival to the ms
                        received.append((time.time(), item[1].t_stim, item[1].t_newest, np.array(item[0])))
                if frame is not None:
                    screen.show(frame, t0 + tick / FRAME_RATE_HZ)
            stats = loop.stats()
    return t0, received, stats


def reflecting_frames(t0: float, received: list, steps: list[int], pictures: list, mask) -> list[tuple]:
    """Per step the model decodes: (its rig time, the index in `received` of the first
    reconstruction that reflects it).

    Each reconstruction is scored by how its change from the model's picture of grey (its mean
    over the half second before the step) correlates with the new picture in the mask, so a
    decoder's prior (natural images are alike) does not count as seeing the step."""
    arrival, t_stim = (np.array([r[i] for r in received]) for i in range(2))
    recons = np.stack([r[3] for r in received]).astype(np.float32)
    found = []
    for step, picture in zip(steps, pictures, strict=True):
        t_step = t0 + step / FRAME_RATE_HZ
        grey = (t_stim >= t_step - 0.5) & (t_stim < t_step)
        change = recons - recons[grey].mean(0)
        corr = frame_correlations(change, np.broadcast_to(picture, change.shape), mask)
        late = (t_stim >= t_step + STEP_TICKS / 2 / FRAME_RATE_HZ) & (
            t_stim < t_step + STEP_TICKS / FRAME_RATE_HZ
        )
        plateau = np.nanmedian(corr[late])
        if not plateau > 0.1:
            continue  # this model does not decode the picture: no latency to speak of
        candidates = np.flatnonzero((arrival >= t_step) & (corr >= plateau / 2))
        if candidates.size:
            found.append((t_step, int(candidates[0])))
    return found


def step_latencies(t0: float, received: list, steps: list[int], pictures: list, mask) -> dict:
    """Per step, the reconstruction that first reflects it, and its latency split in three."""
    parts = {"total": [], "picture_delay": [], "lookahead": [], "transport_compute": []}
    for t_step, k in reflecting_frames(t0, received, steps, pictures, mask):
        arrival, t_stim, t_newest = received[k][:3]
        parts["total"].append(arrival - t_step)
        parts["picture_delay"].append(t_stim - t_step)
        parts["lookahead"].append(t_newest - t_stim)
        parts["transport_compute"].append(arrival - t_newest)
    return {"steps_timed": len(parts["total"]), **{k: percentiles(v) for k, v in parts.items() if v}}


def movie_fidelity(t0: float, received: list, frames: np.ndarray, first_movie_tick: int, mask) -> float:
    """Masked correlation of the reconstructions of the movies with the frames shown at t_stim."""
    ticks = np.array([round((r[1] - t0) * FRAME_RATE_HZ) for r in received])
    inside = (ticks >= first_movie_tick + 30) & (ticks < len(frames))
    recon = np.stack([r[3] for r, keep in zip(received, inside, strict=True) if keep])
    return video_correlation(recon, frames[ticks[inside]], mask, skip=0)


def biology_delay(mouse: SyntheticMouse, pictures: list) -> float:
    """Seconds from the step until the population's mean activity change reaches half its plateau."""
    frames, steps = stimulus_plan(pictures, [])
    ticks = LiveMouse(mouse, seed=1).watch(frames)
    times = np.array([s.t_acq for tick in ticks for s in tick.samples])
    level = np.array([s.values.mean() for tick in ticks for s in tick.samples])
    delays = []
    for step in steps:
        t_step = step / FRAME_RATE_HZ
        before = level[(times >= t_step - 0.5) & (times < t_step)].mean()
        after = (times >= t_step) & (times < t_step + STEP_TICKS / FRAME_RATE_HZ)
        change = np.abs(level[after] - before)
        half = np.flatnonzero(change >= change.max() / 2)
        delays.append(times[after][half[0]] - t_step)
    return float(np.median(delays))


def tick_cost(mouse: SyntheticMouse, ticks: int, paced: bool) -> dict:
    """`LiveMouse.show` and its floor (the receptive-field product) per tick, in ms."""
    live = LiveMouse(mouse, seed=0)
    frames = np.random.default_rng(0).uniform(0, 255, (64, 36, 64)).astype(np.float32)
    show, floor = [], []
    start = time.monotonic()
    for k in range(ticks):
        if paced:
            time.sleep(max(0.0, start + k / FRAME_RATE_HZ - time.monotonic()))
        frame = frames[k % len(frames)]
        t = time.perf_counter()
        live.drive.spatial @ frame.ravel()
        floor.append(time.perf_counter() - t)
        t = time.perf_counter()
        live.show(frame)
        show.append(time.perf_counter() - t)
    return {"show": percentiles(show), "floor": percentiles(floor)}


def plot(path: Path, models: dict, cost: dict, biology: float) -> None:
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    names = [n for n in models if "total" in models[n]]
    parts = (
        ("total", "k"),
        ("picture_delay", "tab:green"),
        ("lookahead", "tab:orange"),
        ("transport_compute", "tab:blue"),
    )
    x, width = np.arange(len(names)), 0.2
    for k, (part, colour) in enumerate(parts):
        at = x + (k - 1.5) * width
        left.bar(
            at,
            [models[n][part]["p50"] for n in names],
            width,
            color=colour,
            label=f"{part.replace('_', ' ')} p50",
        )
        left.scatter(at, [models[n][part]["p99"] for n in names], color=colour, marker="_", s=80)
    left.axhline(biology * 1e3, color="tab:red", ls="--", label="biology + indicator (simulated)")
    left.axhline(0, color="grey", lw=0.5)
    left.set_xticks(x, [n.replace(" (", "\n(") for n in names], fontsize=7)
    left.set_ylabel("ms (bars p50, dashes p99)")
    left.set_title("loop latency: step shown -> reconstruction that shows it")
    left.legend(fontsize=6, loc="lower left")
    ridge = [n for n in names if n.startswith("ridge")]
    middle.plot([models[n]["total"]["p50"] for n in ridge], [models[n]["fidelity"] for n in ridge], "o-")
    for n in ridge:
        middle.annotate(n.split()[-1], (models[n]["total"]["p50"], models[n]["fidelity"]))
    middle.set_xlabel("loop latency p50, ms")
    middle.set_ylabel("masked correlation, held-out movies")
    middle.set_title("the lookahead trade (3-plane ridge)")
    labels = list(cost)
    x = np.arange(len(labels))
    right.bar(x - 0.2, [cost[k]["show"]["p50"] for k in labels], 0.4, label="show p50")
    right.bar(x + 0.2, [cost[k]["floor"]["p50"] for k in labels], 0.4, label="floor p50")
    right.scatter(
        x - 0.2, [cost[k]["show"]["p99"] for k in labels], color="k", marker="_", s=200, label="show p99"
    )
    right.set_xticks(x, labels, rotation=20, fontsize=8)
    right.set_ylabel("ms per tick")
    right.set_title("virtual rig cost per 30 Hz tick")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = arguments(
        __doc__, "bench_loop", data=REQUIRED, data_help="the demo dataset (synthetic, with its truth)"
    )
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--ticks", type=int, default=900, help="ticks per cost measurement")
    p.add_argument("--plot-only", action="store_true", help="redraw the picture from the last results")
    args = p.parse_args()
    if args.plot_only:
        last = json.loads(args.out.read_text())
        plot(
            picture_path(args.out),
            last["models"],
            last["virtual_rig_cost_ms"],
            last["biology_indicator_half_rise_ms"] / 1e3,
        )
        return
    dataset = open_mouse(args.data)
    mouse, _ = rebuild_mouse(dataset.path)
    mask = load_artifact(DEMO_ARTIFACT).evaluation_mask
    trials = dataset.trials(TIER)
    movies = [dataset.clip(t).video for t in trials[: args.clips]]
    pictures = [dataset.clip(trials[k % len(trials)]).video[150] for k in range(args.steps)]
    frames, steps = stimulus_plan(pictures, movies)
    models = {**ridge_artifacts(args.data, mask), "student (bundled, L=8, 1-plane)": DEMO_ARTIFACT}
    results = {}
    for name, artifact in models.items():
        print(f"loop: {name}")
        t0, received, stats = run_loop(artifact, dataset, frames)
        results[name] = {
            **step_latencies(t0, received, steps, pictures, mask),
            "fidelity": movie_fidelity(t0, received, frames, steps[-1] + STEP_TICKS, mask),
            "received": len(received),
            "daemon_receive_to_publish_ms": stats["latency_ms"],
        }
        print(f"  {results[name]}")
    biology = biology_delay(mouse, pictures)
    print(f"biology + indicator half-rise: {biology * 1e3:.0f} ms")
    big = SyntheticMouse.create(preset_config("mouse"), 0)
    cost = {}
    for label, m in ((f"{mouse.n_neurons} neurons", mouse), (f"{big.n_neurons} neurons", big)):
        for paced in (True, False):
            key = f"{label}, {'paced 30 Hz' if paced else 'back to back'}"
            cost[key] = tick_cost(m, args.ticks, paced)
            print(f"cost {key}: {cost[key]}")
    picture = picture_path(args.out)
    plot(picture, results, cost, biology)
    write_result(
        "bench_loop",
        {
            "mouse": dataset.name,
            "mask_pixels": int(mask.sum()),
            "protocol": {
                "steps": args.steps,
                "grey_s": GREY_TICKS / 30,
                "picture_s": STEP_TICKS / 30,
                "movies": args.clips,
                "tier": TIER,
            },
            "biology_indicator_half_rise_ms": biology * 1e3,
            "models": results,
            "virtual_rig_cost_ms": cost,
            "picture": picture.name,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
