"""The closed-loop demo: the bundled demo student decodes replayed clips live, end to end.

A rig replay, the daemon and a display client run in this one process on private ipc endpoints,
exactly the computation `replay`, `serve` and `view` do as three processes on a rig. The demo
dataset is simulated first where it is missing from the cache (the same preset and seed the
bundled student was distilled on; its fingerprint is checked); into a folder given by --data
only when asked to (--simulate). Clips come from tiers the student never trained on.
"""

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from stream_decoder.data import MouseDataset, PlaneTiming, open_mouse, simulate
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.baseline import ensure_baseline
from stream_decoder.decoder.config import GAZE_BASELINE
from stream_decoder.decoder.evaluate import evaluate
from stream_decoder.display.loopback import Loopback, private_endpoints
from stream_decoder.display.run_record import SUMMARY_FILE, RunRecord, RunSink
from stream_decoder.metrics import video_correlation
from stream_decoder.paths import cache_dir
from stream_decoder.rig.replay import ReplayOptions, ReplayPlan
from stream_decoder.runtime import open_backend
from stream_decoder.stream.config import DaemonConfig, LogConfig, ModelConfig

DEMO_ARTIFACT = Path(__file__).resolve().parents[1] / "assets" / "demo"
DEMO_DATA = ("demo", 0)  # simulator preset and seed of the data the bundled student was distilled on
DEMO_DATA_SIZE = "2,000 neurons, 100 clips, about 700 MB"


@dataclass(frozen=True)
class DemoConfig:
    artifact: Path = DEMO_ARTIFACT
    data: Path | None = None  # default: <cache>/data/demo, simulated if missing
    simulate: bool = False  # simulate into `data` too when it holds no dataset
    tier: str = "final_test_main"  # natural movies of photographs never shown in training
    clips: int = 2
    speed: float = 1.0  # 1: the rig's real time (30 Hz); 0: as fast as the daemon goes
    backend: str = "onnxruntime"
    out: Path = Path("demo-out")

    def __post_init__(self):
        if self.clips < 1:
            raise ValueError(f"clips must be >= 1, got {self.clips}")


def demo_mouse(data: Path, fingerprint: str, may_simulate: bool) -> MouseDataset:
    """The demo mouse at `data`, simulated there first if the folder holds none and `may_simulate`."""
    if not data.is_dir() or not any(data.iterdir()):
        if not may_simulate:
            raise FileNotFoundError(
                f"{data}: no dataset there; pass --simulate to simulate the demo dataset into it "
                f"({DEMO_DATA_SIZE}), or leave out --data to use the cache"
            )
        print(
            f"demo: simulating the demo dataset ({DEMO_DATA_SIZE}) into {data}, about a minute",
            file=sys.stderr,
        )
        simulate(*DEMO_DATA, out=data, progress=True)
    mouse = open_mouse(data)
    if mouse.fingerprint() != fingerprint:
        raise ValueError(
            f"{mouse.path}: not the data the demo student was distilled on (fingerprint "
            f"{mouse.fingerprint()}, the student's {fingerprint}); pass --data with that dataset "
            "or an empty folder and --simulate to simulate it"
        )
    return mouse


def beside_the_baseline(cfg: DemoConfig, data: Path, mask) -> dict:
    """The student and the gaze baseline (a ridge decoder on the true stimuli with the eye-shift
    correction, the strongest simple one; fitted into the cache on first use) on every clip of the
    demo's tier, as `stream-decoder evaluate` scores them."""
    print("demo: scoring the student beside the gaze baseline (fitted once into the cache)", file=sys.stderr)
    baseline = ensure_baseline(data, mask, open_mouse(data).name, GAZE_BASELINE)
    row = evaluate(cfg.artifact, data, baseline=baseline, tiers=(cfg.tier,), missing=())["groups"][cfg.tier]
    return {
        "tier": cfg.tier,
        "clips": row["clips"],
        "student": row["student"],
        "baseline": row["baseline"],
        "student_over_baseline": row["student"] / row["baseline"],
        "artifact": str(baseline),  # the report decodes the run's clips with it
        "teacher": "not run here: hours per clip on a CPU (bench/bench_teacher.py)",
    }


def run_demo(cfg: DemoConfig) -> dict:
    """Stream the clips through the daemon; write the movies, the run record (for the report) and a
    summary; return the summary."""
    artifact = load_artifact(cfg.artifact)
    data = cfg.data or cache_dir() / "data" / "demo"
    mouse = demo_mouse(data, artifact.meta.data_fingerprint, may_simulate=cfg.simulate or cfg.data is None)
    trials = mouse.trials(cfg.tier)[: cfg.clips]
    if not trials:
        raise ValueError(f"{mouse.path}: no clips in tier {cfg.tier!r}")
    plan = ReplayPlan(mouse, trials, PlaneTiming.single_plane(mouse.n_neurons))
    frames = len(plan.message_times())  # single-plane input: one frame per activity message
    sink = RunSink(cfg.out / "view", plan, keep=frames)
    backend = open_backend(cfg.artifact, cfg.backend)
    backend.warmup()
    print(
        f"demo: model {artifact.model_id} ({artifact.config.n_neurons} neurons) on {cfg.backend}; "
        f"replaying {len(trials)} {cfg.tier} clips of {mouse.name}",
        file=sys.stderr,
    )
    with private_endpoints() as endpoints:
        daemon_cfg = DaemonConfig(
            model=ModelConfig(cfg.artifact, cfg.backend), endpoints=endpoints, log=LogConfig(interval_s=60.0)
        )
        with Loopback(daemon_cfg, backend) as loop:
            figures = loop.play(plan, ReplayOptions(speed=cfg.speed), sink, frames, session="demo")
            stats = loop.stats()
            lost = loop.display.lost
    pairs = [(recon, truth) for recon, truth, _ in sink.frames if truth is not None]
    recons, truths = (np.stack(column) for column in zip(*pairs, strict=True))
    latency = np.asarray(figures.latencies) * 1e3
    mask = artifact.evaluation_mask
    summary = {
        "demo": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "model": artifact.model_id,
        "mouse": mouse.name,
        "data": str(Path(data).resolve()),
        "trials": trials,
        "frames_received": figures.received,
        # Lost between daemon and display, plus rig messages that never became a frame: each once.
        "frames_lost": lost + figures.seq_newest_gaps,
        "latency_ms_last_300": {"p50": float(np.median(latency)), "max": float(latency.max())},
        "correlation_with_stimulus_all_pixels": video_correlation(recons, truths, skip=0),
        # Where the recorded neurons see (the teacher's evaluation mask), as the benchmarks score it.
        "correlation_with_stimulus_in_mask": video_correlation(recons, truths, mask, skip=0),
        "beside_the_baseline": beside_the_baseline(cfg, data, mask),
        # The daemon's counts include the few warm-up frames sent while the display attached.
        "daemon": {k: stats[k] for k in ("received", "accepted", "emitted", "lost", "rejected", "dropped")},
        "daemon_latency_ms": stats["latency_ms"],
        "movies": [str(p) for p in sink.close()],
    }
    cfg.out.mkdir(parents=True, exist_ok=True)
    summary["run"] = str(RunRecord.from_sink(sink, trials, mask, stats).save(cfg.out))
    (cfg.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    return summary
