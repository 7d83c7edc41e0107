"""The closed loop in separate processes, as on a rig: where the time from a step on the screen to
the frame that shows it goes, and what the software adds.

    python bench/bench_loop_split.py --data <cache>/data/demo-n8000 [--artifact DIR] [--steps 12]

Four processes on this machine: `stream-decoder virtual-rig` (the dataset's synthetic mouse,
live), `stream-decoder serve` (the daemon, onnxruntime), a bare ZeroMQ relay of the rig's
messages (bench/zmq_relay.py) and this script, the stimulus program. It shows grey, then a
held-out photograph, `--steps` times at 30 Hz (as bench_loop.py), and subscribes to the rig's
activity, to the relay and to the daemon's frames, stamping each message as it arrives.

The first frame that reflects a step (bench_loop.reflecting_frames) splits its latency, from the
step's rig time to the frame's arrival, exactly into
  - the picture's delay, t_stim - t_step: biology, indicator and scan beyond the lookahead;
  - the lookahead, t_newest - t_stim;
  - the rig's acquisition: the arrival here of the frame's newest activity message (`seq_newest`)
    - t_newest: a plane is read out at the end of the 30 Hz tick it was scanned in, simulated and
    sent, one ZeroMQ hop;
  - the software: the frame's arrival - that message's, what the daemon adds after the last
    message it needed came: any wait for a later message, assembly, step, publish, one hop.
The software's part is also given over every frame, beside the relay's (its copy of a message's
arrival - the rig's) in the same run, and the simulated population's half-rise after a step
(bench_loop.biology_delay) beside the loop. Default model: the ridge baseline fitted on the rig's
3-plane timing at lookahead 4 (fitted into <cache>/loop/ the first time, a few minutes at 8,000
neurons).
"""

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq
from bench_loop import TIER, biology_delay, percentiles, reflecting_frames, stimulus_plan
from common import REQUIRED, arguments, picture_path, write_result

from stream_decoder.data import FRAME_RATE_HZ, open_mouse
from stream_decoder.data.simulate import rebuild_mouse
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.baseline import fit_baseline
from stream_decoder.decoder.config import RidgeConfig
from stream_decoder.display.demo import DEMO_ARTIFACT
from stream_decoder.paths import cache_dir
from stream_decoder.rig.virtual_rig import Screen
from stream_decoder.runtime.export import export_artifact
from stream_decoder.stream.client import ControlClient
from stream_decoder.stream.protocol import ACTIVITY, RECON, decode_recon

LOOKAHEAD = 4
WARMUP_S = 3.0  # grey before the first step: every subscriber joined, the daemon warm
START_S = 60.0  # most the daemon and the virtual rig take to come up


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_artifact(data: Path, mask: np.ndarray) -> Path:
    folder = cache_dir() / "loop" / f"ridge-{data.name}-L{LOOKAHEAD}"
    if not (folder / "model.onnx").is_file():
        fit_baseline(data, folder, RidgeConfig(lookahead=LOOKAHEAD), mask, multi_plane=True)
        export_artifact(folder)
    return folder


@contextlib.contextmanager
def processes(data: Path, artifact: Path, folder: Path):
    """The daemon, the virtual rig and the relay, each its own process: their endpoints."""
    ep = {
        name: f"tcp://127.0.0.1:{free_port()}"
        for name in ("activity", "recon", "control", "stimulus", "relay")
    }
    config = folder / "rig.toml"
    config.write_text(
        f'[model]\nartifact = "{artifact}"\nbackend = "onnxruntime"\n\n'
        f'[endpoints]\nactivity = "{ep["activity"]}"\nrecon = "{ep["recon"]}"\n'
        f'control = "{ep["control"]}"\n\n'
        "[log]\ninterval_s = 60.0\n"
    )
    cli = [str(Path(sys.executable).with_name("stream-decoder"))]
    logs = {name: (folder / f"{name}.log").open("w") for name in ("serve", "virtual-rig", "relay")}
    started = []
    try:
        started.append(subprocess.Popen([*cli, "serve", "--config", str(config)], stderr=logs["serve"]))
        control = ControlClient(ep["control"], timeout_s=START_S)
        control.request("ping")
        rig = ["virtual-rig", "--data", str(data), "--endpoint", ep["activity"], "--control", ep["control"]]
        started.append(
            subprocess.Popen([*cli, *rig, "--stimulus", ep["stimulus"]], stderr=logs["virtual-rig"])
        )
        relay = [sys.executable, str(Path(__file__).parent / "zmq_relay.py")]
        started.append(
            subprocess.Popen([*relay, "--source", ep["activity"], "--out", ep["relay"]], stderr=logs["relay"])
        )
        yield ep, control
    finally:
        for proc in started:
            proc.terminate()
        for proc in started:
            proc.wait(timeout=30)
        for log in logs.values():
            log.close()


def subscriber(ctx: zmq.Context, endpoint: str, topic: bytes) -> zmq.Socket:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.connect(endpoint)
    return sock


def show_and_listen(ep: dict, frames: np.ndarray) -> tuple[float, dict]:
    """Show `frames` at 30 Hz after WARMUP_S of grey, stamping every message on arrival: (t0 of
    the first frame, {"activity" | "relay" | "recon": [(arrival, message parts)]})."""
    ctx = zmq.Context.instance()
    socks = {
        "activity": subscriber(ctx, ep["activity"], ACTIVITY),
        "relay": subscriber(ctx, ep["relay"], ACTIVITY),
        "recon": subscriber(ctx, ep["recon"], RECON),
    }
    poller = zmq.Poller()
    for sock in socks.values():
        poller.register(sock, zmq.POLLIN)
    names = {sock: name for name, sock in socks.items()}
    heard = {name: [] for name in socks}
    warmup = int(WARMUP_S * FRAME_RATE_HZ)
    grey = np.full(frames.shape[1:], 128.0, np.float32)
    shown = [*[grey] * warmup, *frames, *[None] * 30]  # then a second for the last frames
    with Screen(ep["stimulus"], bind=False) as screen:
        if not screen.wait_for_subscriber(START_S, topic=b"stimulus"):
            raise RuntimeError("the virtual rig did not subscribe to the stimulus")
        t_first = np.ceil(time.time() * FRAME_RATE_HZ) / FRAME_RATE_HZ + 0.5
        start = time.monotonic() + (t_first - time.time())
        for tick, frame in enumerate(shown):
            while (left := start + tick / FRAME_RATE_HZ - time.monotonic()) > 0:
                for sock, _ in poller.poll(left * 1e3):
                    while True:
                        try:
                            parts = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        heard[names[sock]].append((time.time(), parts))
            if frame is not None:
                screen.show(frame, t_first + tick / FRAME_RATE_HZ)
    for sock in socks.values():
        sock.close()
    return t_first + warmup / FRAME_RATE_HZ, heard


def arrivals(messages: list) -> dict:
    """(session, seq) -> arrival of each activity message."""
    out = {}
    for arrival, parts in messages:
        header = msgpack.unpackb(parts[1])
        out[(header["session"], header["seq"])] = arrival
    return out


def split(t0: float, heard: dict, steps: list, pictures: list, mask) -> tuple[dict, np.ndarray, np.ndarray]:
    """(the figures, the software's part of every frame, the relay's of every message), seconds."""
    rig, relay = arrivals(heard["activity"]), arrivals(heard["relay"])
    frames = []
    for arrival, parts in heard["recon"]:
        image, h = decode_recon(parts)
        if h.t_stim >= t0 - 1.0 and (h.session, h.seq_newest) in rig:
            frames.append((arrival, h.t_stim, h.t_newest, image.copy(), rig[(h.session, h.seq_newest)]))
    parts = {"total": [], "picture_delay": [], "lookahead": [], "rig_acquisition": [], "software": []}
    for t_step, k in reflecting_frames(t0, frames, steps, pictures, mask):
        arrival, t_stim, t_newest, _, newest_arrival = frames[k]
        parts["total"].append(arrival - t_step)
        parts["picture_delay"].append(t_stim - t_step)
        parts["lookahead"].append(t_newest - t_stim)
        parts["rig_acquisition"].append(newest_arrival - t_newest)
        parts["software"].append(arrival - newest_arrival)
    every = np.array([f[0] - f[4] for f in frames])
    relayed = np.array([relay[key] - rig[key] for key in relay if key in rig])
    return (
        {
            "steps_timed": len(parts["total"]),
            "steps": {name: percentiles(values) for name, values in parts.items() if values},
            "frames": len(frames),
            "software_every_frame": percentiles(every) | {"max": float(every.max() * 1e3)},
            "relay_every_message": percentiles(relayed)
            | {"max": float(relayed.max() * 1e3), "messages": relayed.size},
            "activity_messages": len(rig),
        },
        every,
        relayed,
    )


def plot(path: Path, figures: dict, every: np.ndarray, relayed: np.ndarray, biology_s: float) -> None:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    names = list(figures["steps"])
    x = np.arange(len(names))
    left.bar(x, [figures["steps"][n]["p50"] for n in names], 0.6, label="p50")
    left.scatter(x, [figures["steps"][n]["p99"] for n in names], color="k", marker="_", s=200, label="p99")
    left.axhline(biology_s * 1e3, color="tab:red", ls="--", label="biology + indicator half-rise (simulated)")
    left.axhline(0, color="grey", lw=0.5)
    left.set_xticks(x, [n.replace("_", "\n") for n in names], fontsize=8)
    left.set_ylabel("ms")
    left.set_title(f"step shown -> the frame that shows it ({figures['steps_timed']} steps)")
    left.legend(fontsize=7)
    for values, label in ((every, "daemon: newest needed message -> frame"), (relayed, "bare ZeroMQ relay")):
        ms = np.sort(values) * 1e3
        right.plot(ms, np.arange(1, ms.size + 1) / ms.size, label=f"{label} (n={ms.size})")
    right.set_xscale("log")
    right.set_xlabel("ms, arrival here (stimulus program)")
    right.set_ylabel("fraction of messages")
    right.set_title("what the software adds, every frame")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = arguments(
        __doc__,
        "bench_loop_split",
        data=REQUIRED,
        data_help="a synthetic dataset (with its truth): the rig's mouse",
    )
    p.add_argument("--artifact", type=Path, help="the model to serve (default: 3-plane ridge, lookahead 4)")
    p.add_argument("--steps", type=int, default=12)
    args = p.parse_args()
    dataset = open_mouse(args.data)
    mouse, _ = rebuild_mouse(dataset.path)
    mask = load_artifact(DEMO_ARTIFACT).evaluation_mask
    artifact = args.artifact or default_artifact(args.data, mask)
    trials = dataset.trials(TIER)
    pictures = [dataset.clip(trials[k % len(trials)]).video[150] for k in range(args.steps)]
    frames, steps = stimulus_plan(pictures, [])
    with (
        tempfile.TemporaryDirectory(prefix="sd-loop-") as folder,
        processes(args.data, artifact, Path(folder)) as (ep, control),
    ):
        t0, heard = show_and_listen(ep, frames)
        stats = control.request("stats")
    figures, every, relayed = split(t0, heard, steps, pictures, mask)
    figures["daemon_receive_to_publish_ms"] = stats["latency_ms"]
    biology = biology_delay(mouse, pictures)
    print(f"biology + indicator half-rise: {biology * 1e3:.0f} ms")
    for name, value in figures.items():
        print(f"{name}: {value}")
    picture = picture_path(args.out)
    plot(picture, figures, every, relayed, biology)
    write_result(
        "bench_loop_split",
        {
            "mouse": dataset.name,
            "neurons": mouse.n_neurons,
            "planes": mouse.timing.n_planes,
            "model": load_artifact(artifact).meta.model_id,
            "processes": [
                "stream-decoder serve",
                "stream-decoder virtual-rig",
                "bench/zmq_relay.py",
                "the stimulus program (this script)",
            ],
            "biology_indicator_half_rise_ms": biology * 1e3,
            "target_software_ms": {"p50": 5.0, "p99": 15.0},
            **figures,
            "picture": picture.name,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
