"""End-to-end latency, rig send -> display receive, through `stream-decoder serve`, and its floor.

Three processes, as on a rig PC: a rig (XPUB, paced sends of 8,000-neuron float32 activity), the
daemon (`stream-decoder serve`, ONNX Runtime, tcp loopback), and a display (this process, a SUB on
the recon socket). The rig stamps `t` with CLOCK_MONOTONIC (time.perf_counter, shared by all
processes on Linux) just before sending; the daemon echoes it as `t_newest`; the display
subtracts it from its own clock at arrival. In the same run, the floor: the same messages through
a bare ZeroMQ relay (SUB -> PUB, no decoding) in place of the daemon. The two 30 Hz runs alternate
in `--blocks` blocks, so that noise from the shared host (load, and the CPU time its hypervisor
steals, recorded) falls on both alike and their ratio means something.

Figures: latency p50/p99/p99.9 at 30 Hz over `--seconds` (10 minutes = 18,000 frames for the
record), output cadence jitter (std of inter-arrival times), messages lost, and the maximum
sustained rate (a ramp of rates, `--ramp-seconds` each, until a message is lost or p99 exceeds
`--ramp-p99-ms`). Targets on the 2-core box: p99 <= 2 ms, p99.9 <= 5 ms, zero lost, jitter
<= 1 ms, sustained >= 1,000 msg/s.

    python bench/bench_e2e.py --seconds 600 --realtime 50 --threads 2  # the full run, ~25 min, as on a rig
    python bench/bench_e2e.py --seconds 60                               # a check, normal scheduling

Without `--artifact` the model is a student of the standard config with random weights (no
trained one is needed to time it: the computation is the same), built once in the cache.
"""

import argparse
import gc
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import msgpack
import numpy as np
import zmq
from common import arguments, write_result

from stream_decoder.paths import cache_dir
from stream_decoder.stream.client import ControlClient
from stream_decoder.stream.realtime import set_fifo

BANK = 64  # distinct activity vectors cycled through
WARMUP_LIMIT_S = 60.0
TARGETS = {"p99_ms": 2.0, "p99.9_ms": 5.0, "lost": 0, "jitter_ms": 1.0, "sustained_msg_per_s": 1000}


class Block(NamedTuple):
    """One paced run: each message's latency (s; NaN: lost) and arrival time, and the send times."""

    latency: np.ndarray
    arrival: np.ndarray
    sent: np.ndarray


def free_tcp_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


# ---- the rig and the relay, each in its own process ----


def rig_process(
    endpoint: str, run: str, bank: int | str, rate_hz: float, count: int, display_ready, done, send_log
):
    """Publish warm-up messages until the display sees frames, then `count` paced messages: activity
    of `bank` neurons (random vectors), or, for a path, the raw frames (`frame` messages) saved there."""
    from stream_decoder.rig.replay import Rig
    from stream_decoder.stream.protocol import ACTIVITY, FRAME

    raw = isinstance(bank, str)
    messages = np.load(bank) if raw else np.random.default_rng(0).random((BANK, bank), dtype=np.float32)
    rig = Rig(endpoint, session=f"warmup-{run}", hwm=0)
    send = rig.send_frame if raw else rig.send
    if not rig.wait_for_subscriber(WARMUP_LIMIT_S, topic=FRAME if raw else ACTIVITY):
        raise RuntimeError(f"nothing subscribed to {endpoint}")
    give_up = time.monotonic() + WARMUP_LIMIT_S
    while not display_ready.is_set() and time.monotonic() < give_up:
        send(messages[rig.seq % len(messages)], time.perf_counter())
        display_ready.wait(0.02)
    rig.restart(run)
    sent = np.empty(count)
    start = time.perf_counter() + 0.1
    for k in range(count):
        wait = start + k / rate_hz - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        sent[k] = t = time.perf_counter()
        send(messages[k % len(messages)], t)
    send_log.put(sent.tolist())
    done.set()
    rig.close(linger_ms=2000)


def relay_process(in_endpoint: str, out_endpoint: str, topic: bytes = b"activity"):
    """The floor: forward every message unchanged (as a `recon` topic), no decoding."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 10_000)
    sub.subscribe(topic)
    sub.connect(in_endpoint)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 300)
    pub.bind(out_endpoint)
    while True:
        frames = sub.recv_multipart(copy=False)
        pub.send_multipart([b"recon", frames[1], frames[2]], copy=False)


# ---- the display: this process ----


def receive(
    endpoint: str, run: str, count: int, display_ready, done, give_up: float
) -> tuple[np.ndarray, np.ndarray]:
    """(latency s, arrival time s) per bench message seq (NaN: never arrived)."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.subscribe(b"recon")
    sock.connect(endpoint)
    latency = np.full(count, np.nan)
    arrival = np.full(count, np.nan)
    got = 0
    deadline = None
    while got < count:
        if done.is_set() and deadline is None:
            deadline = time.monotonic() + 1.0  # the last messages' grace
        if deadline is not None and time.monotonic() > deadline:
            break
        if not sock.poll(100):
            if deadline is None and time.monotonic() > give_up:
                break
            continue
        frames = sock.recv_multipart(copy=False)
        now = time.perf_counter()
        header = msgpack.unpackb(frames[1].buffer)
        if header["session"] != run:
            display_ready.set()
            continue
        k = header.get("seq_newest", header.get("seq"))
        latency[k] = now - header.get("t_newest", header.get("t"))
        arrival[k] = now
        got += 1
    sock.close(linger=0)
    return latency, arrival


def cpu_steal_s() -> float:
    """CPU time the hypervisor gave to other guests since boot, all cores (NaN off Linux)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return float("nan")
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def run_block(in_ep: str, out_ep: str, n_neurons: int | str, rate_hz: float, seconds: float) -> Block:
    """One paced run through whatever serves in_ep -> out_ep (a new session each time); `n_neurons`
    a path: the raw frames saved there (`rig_process`)."""
    run = f"bench-{rate_hz:g}hz-{time.monotonic_ns()}"
    count = max(2, round(rate_hz * seconds))
    spawn = mp.get_context("spawn")
    display_ready, done, send_log = spawn.Event(), spawn.Event(), spawn.Queue()
    rig = spawn.Process(
        target=rig_process, args=(in_ep, run, n_neurons, rate_hz, count, display_ready, done, send_log)
    )
    rig.start()
    try:
        give_up = time.monotonic() + WARMUP_LIMIT_S + 2 * seconds
        latency, arrival = receive(out_ep, run, count, display_ready, done, give_up)
        sent = np.asarray(send_log.get(timeout=30))
    finally:
        rig.join(10)
        if rig.is_alive():
            rig.kill()
    return Block(latency, arrival, sent)


def summarise(blocks: list[Block], rate_hz: float) -> dict:
    """Figures over blocks; cadence and send rate are taken within each block, never across."""
    latency = np.concatenate([b.latency for b in blocks])
    ok = np.isfinite(latency)
    lat_ms = latency[ok] * 1e3
    intervals = np.concatenate([np.diff(b.arrival[np.isfinite(b.latency)]) for b in blocks]) * 1e3
    send_gaps = np.concatenate([np.diff(b.sent) for b in blocks])
    p50, p99, p999 = np.percentile(lat_ms, [50, 99, 99.9]) if lat_ms.size else (np.nan,) * 3
    return {
        "rate_hz": rate_hz,
        "sent": int(latency.size),
        "received": int(ok.sum()),
        "lost": int((~ok).sum()),
        "achieved_send_rate": float(send_gaps.size / send_gaps.sum()) if send_gaps.size else 0.0,
        "latency_ms": {
            "p50": float(p50),
            "p99": float(p99),
            "p99.9": float(p999),
            "max": float(lat_ms.max()) if lat_ms.size else np.nan,
            "mean": float(lat_ms.mean()) if lat_ms.size else np.nan,
        },
        "cadence_jitter_ms": float(intervals.std()) if intervals.size else np.nan,
        "send_interval_jitter_ms": float(send_gaps.std() * 1e3) if send_gaps.size else np.nan,
        "_latencies_ms": lat_ms,
    }


# ---- the daemon under test ----


def ensure_artifact(artifact: Path | None, n_neurons: int) -> tuple[Path, dict]:
    from bench_step import build_artifact  # the sibling bench's artifact: same model as the step timings

    from stream_decoder.decoder.artifact import load_artifact

    if artifact is not None:
        meta = load_artifact(artifact).meta
        return artifact, {
            "path": str(artifact),
            "model": meta.model_id,
            "neurons": meta.n_neurons,
            "trained": True,
        }
    folder = cache_dir() / "bench_e2e" / f"untrained-{n_neurons}"
    try:
        load_artifact(folder)
    except (FileNotFoundError, ValueError):
        build_artifact(folder, n_neurons)
    meta = load_artifact(folder).meta
    return folder, {
        "path": str(folder),
        "model": meta.model_id,
        "neurons": n_neurons,
        "trained": False,
        "note": "standard StudentConfig with random weights: no trained 8,000-neuron artifact "
        "exists here; the per-tick computation is the same",
    }


def start_daemon(artifact: Path, args: argparse.Namespace, endpoints: dict, folder: Path) -> subprocess.Popen:
    config = folder / "rig.toml"
    threads = f"threads = {args.threads}\n" if args.backend == "onnxruntime" else ""
    config.write_text(
        f'[model]\nartifact = "{artifact}"\nbackend = "{args.backend}"\n[model.options]\n{threads}'
        f'[endpoints]\nactivity = "{endpoints["activity"]}"\nrecon = "{endpoints["recon"]}"\n'
        f'control = "{endpoints["control"]}"\n[stream]\nprefetch_ms = {args.prefetch_ms}\n'
        f"[realtime]\npriority = {args.realtime}\n[log]\ninterval_s = 60.0\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_decoder.cli", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "serve.log", "w"),  # noqa: SIM115 (the daemon outlives this function)
    )
    with ControlClient(endpoints["control"], timeout_s=60.0) as control:
        if not control.request("ping")["ok"]:
            raise RuntimeError("daemon did not answer ping")
    return proc


def ramp(in_ep: str, out_ep: str, n_neurons: int, rates: list[float], seconds: float, p99_limit_ms: float):
    steps, sustained = [], 0.0
    for rate in rates:
        result = summarise([run_block(in_ep, out_ep, n_neurons, rate, seconds)], rate)
        result.pop("_latencies_ms")
        ok = (
            result["lost"] == 0
            and result["latency_ms"]["p99"] <= p99_limit_ms
            and result["achieved_send_rate"] >= 0.95 * rate
        )
        result["sustained"] = bool(ok)
        steps.append(result)
        print(
            f"  ramp {rate:7.0f} msg/s: sent at {result['achieved_send_rate']:7.0f}/s, "
            f"lost {result['lost']}, p99 {result['latency_ms']['p99']:.2f} ms -> "
            f"{'ok' if ok else 'not sustained'}"
        )
        if not ok:
            break
        sustained = rate
    return steps, sustained


def plot(path: Path, daemon: dict, floor: dict, steps: list[dict]) -> None:
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    top = max(np.percentile(daemon["_latencies_ms"], 99.95), np.percentile(floor["_latencies_ms"], 99.95))
    bins = np.linspace(0, top * 1.1, 120)
    runs = (("bare ZeroMQ relay (floor)", floor, "0.6"), ("stream-decoder serve", daemon, "C0"))
    for label, run, color in runs:
        lat = run["latency_ms"]
        ax.hist(
            run["_latencies_ms"],
            bins=bins,
            color=color,
            alpha=0.75,
            label=f"{label}: p50 {lat['p50']:.2f}, p99 {lat['p99']:.2f}, p99.9 {lat['p99.9']:.2f} ms",
        )
    ax.axvline(TARGETS["p99_ms"], color="C3", ls="--", lw=1, label="target p99 2 ms")
    ax.set_yscale("log")
    ax.set_xlabel("rig send -> display receive (ms)")
    ax.set_ylabel("frames")
    ax.set_title(
        f"{daemon['received']} frames at {daemon['rate_hz']:.0f} Hz, {daemon['lost']} lost, "
        f"cadence jitter {daemon['cadence_jitter_ms']:.2f} ms",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    rates = [s["rate_hz"] for s in steps]
    ax2.plot(rates, [s["latency_ms"]["p99"] for s in steps], "o-", label="p99")
    ax2.plot(rates, [s["latency_ms"]["p50"] for s in steps], "s-", label="p50")
    for s in steps:
        if not s["sustained"]:
            ax2.annotate(
                f"not sustained: lost {s['lost']},\np99 {s['latency_ms']['p99']:.0f} ms",
                (s["rate_hz"], s["latency_ms"]["p99"]),
                fontsize=7,
                ha="right",
                va="top",
            )
    ax2.set_xscale("log")
    ax2.set_xticks(rates, [f"{r:g}" for r in rates], fontsize=7)
    ax2.minorticks_off()
    ax2.set_yscale("log")
    ax2.set_xlabel("input rate (msg/s)")
    ax2.set_ylabel("latency (ms)")
    ax2.set_title("ramp", fontsize=9)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def interleave(targets: dict[str, dict], n_neurons: int, seconds: float, blocks: int) -> dict:
    """Each target for `seconds` at 30 Hz, in alternating blocks: host noise falls on all alike."""
    runs = {name: {"blocks": [], "cpu_steal_s": 0.0} for name in targets}
    for i in range(blocks):
        for name, eps in targets.items():
            steal = cpu_steal_s()
            block = run_block(eps["activity"], eps["recon"], n_neurons, 30.0, seconds / blocks)
            runs[name]["cpu_steal_s"] += cpu_steal_s() - steal
            runs[name]["blocks"].append(block)
            p99, lost = np.nanpercentile(block.latency, 99) * 1e3, np.isnan(block.latency).sum()
            print(f"  block {i + 1}/{blocks} {name:6s}: p99 {p99:.2f} ms, lost {lost}")
    return runs


def main() -> None:
    parser = arguments(__doc__, "bench_e2e")
    parser.add_argument("--seconds", type=float, default=600.0, help="length of each 30 Hz run")
    parser.add_argument(
        "--blocks", type=int, default=10, help="the 30 Hz runs alternate floor and daemon in this many blocks"
    )
    parser.add_argument("--neurons", type=int, default=8000)
    parser.add_argument("--artifact", type=Path, help="a trained artifact (default: untrained, standard)")
    parser.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "torch", "tensorrt"))
    parser.add_argument("--threads", type=int, default=1, help="[model.options] threads (onnxruntime)")
    parser.add_argument(
        "--realtime",
        type=int,
        default=0,
        metavar="PRIORITY",
        help="SCHED_FIFO priority for every process, rig, relay, daemon and display alike "
        "(the daemon's [realtime] priority; needs root or LimitRTPRIO); 0: normal",
    )
    parser.add_argument("--prefetch-ms", type=float, default=2.0, help="[stream] prefetch_ms; 0: off")
    parser.add_argument(
        "--ramp",
        default="250,500,1000,1500,2000,3000,4000,6000,8000",
        help="input rates tried for the sustained maximum (msg/s)",
    )
    parser.add_argument("--ramp-seconds", type=float, default=5.0)
    parser.add_argument("--ramp-p99-ms", type=float, default=10.0, help="p99 above this is not sustained")
    args = parser.parse_args()

    artifact, artifact_info = ensure_artifact(args.artifact, args.neurons)
    if args.realtime:
        set_fifo(args.realtime)  # the display; the rig and relay processes inherit it
    floor_eps = {"activity": free_tcp_endpoint(), "recon": free_tcp_endpoint()}
    daemon_eps = {role: free_tcp_endpoint() for role in ("activity", "recon", "control")}
    gc.collect()
    gc.freeze()  # the display's clock must not stop for a full collection over torch's objects
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        spawn = mp.get_context("spawn")
        relay = spawn.Process(
            target=relay_process, args=(floor_eps["activity"], floor_eps["recon"]), daemon=True
        )
        relay.start()
        daemon = start_daemon(artifact, args, daemon_eps, Path(tmp))
        try:
            print(
                f"30 Hz, {args.seconds:.0f} s each: bare ZeroMQ relay (floor) and {args.backend} daemon, "
                f"{args.neurons} neurons, in {args.blocks} alternating blocks"
            )
            targets = {"floor": floor_eps, "daemon": daemon_eps}
            runs = interleave(targets, args.neurons, args.seconds, args.blocks)
            floor, e2e = (summarise(runs[name]["blocks"], 30.0) for name in ("floor", "daemon"))
            load.append(os.getloadavg()[0])
            print("ramp:")
            rates = [float(r) for r in args.ramp.split(",")]
            steps, sustained = ramp(
                daemon_eps["activity"],
                daemon_eps["recon"],
                args.neurons,
                rates,
                args.ramp_seconds,
                args.ramp_p99_ms,
            )
            with ControlClient(daemon_eps["control"], timeout_s=10.0) as control:
                daemon_stats = control.request("stats")
            load.append(os.getloadavg()[0])
        finally:
            daemon.terminate()
            daemon.wait(30)
            relay.kill()
            relay.join(5)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    histogram = args.out.with_name(args.out.stem + "_latency.png")
    plot(histogram, e2e, floor, steps)
    met = {
        "p99_ms": e2e["latency_ms"]["p99"] <= TARGETS["p99_ms"],
        "p99.9_ms": e2e["latency_ms"]["p99.9"] <= TARGETS["p99.9_ms"],
        "lost": e2e["lost"] <= TARGETS["lost"],
        "jitter_ms": e2e["cadence_jitter_ms"] <= TARGETS["jitter_ms"],
        "sustained_msg_per_s": sustained >= TARGETS["sustained_msg_per_s"],
    }
    figures = {
        "libzmq": zmq.zmq_version(),
        "load_average_1m_during": [round(x, 2) for x in load],
        "artifact": artifact_info,
        "backend": args.backend,
        "threads": args.threads,
        "prefetch_ms": args.prefetch_ms,
        "scheduling": f"SCHED_FIFO priority {args.realtime}" if args.realtime else "normal",
        "transport": "tcp loopback",
        "blocks": args.blocks,
        "cpu_steal_s_during": {name: round(run["cpu_steal_s"], 2) for name, run in runs.items()},
        "e2e_30hz": {k: v for k, v in e2e.items() if not k.startswith("_")},
        "floor_30hz": {k: v for k, v in floor.items() if not k.startswith("_")},
        "ramp": steps,
        "sustained_msg_per_s": sustained,
        "ramp_p99_limit_ms": args.ramp_p99_ms,
        "daemon_stats": daemon_stats,
        "targets": TARGETS,
        "targets_met": met,
        "histogram": histogram.name,
    }
    write_result("bench_e2e", figures, args.out)
    for name, run in (("e2e  ", e2e), ("floor", floor)):
        lat = run["latency_ms"]
        print(
            f"{name} p50 {lat['p50']:.3f}  p99 {lat['p99']:.3f}  p99.9 {lat['p99.9']:.3f}  "
            f"max {lat['max']:.3f} ms; jitter {run['cadence_jitter_ms']:.3f} ms; lost {run['lost']} of "
            f"{run['sent']}"
        )
    print(f"sustained {sustained:.0f} msg/s; targets met: {met}; histogram {histogram}")


if __name__ == "__main__":
    main()
