"""CLI verbs of the streaming stage: serve (the rig daemon), replay (a rig simulator), view (a display)."""

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from stream_decoder.stream.protocol import INPUT_DTYPES


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="run the rig-side decoder daemon (ZeroMQ in -> frames out at 30 Hz)",
        description="Load a student artifact and serve it: activity messages in, "
        "reconstructed frames out, control requests answered (wire protocol v1: docs/protocol.md). "
        "Runs until SIGTERM or Ctrl-C; the recording is flushed on the way out.",
    )
    p.add_argument("--config", type=Path, required=True, help="rig config TOML (see deploy/rig.toml)")
    p.add_argument("--artifact", type=Path, help="override [model] artifact")
    p.add_argument("--backend", help="override [model] backend: onnxruntime, torch or tensorrt")
    p.add_argument("--record", type=Path, help="override [recorder] dir: record the session there")
    p.set_defaults(func=_serve)

    p = sub.add_parser(
        "replay",
        help="play a Sensorium-format mouse the way a rig publishes it",
        description="Publish a dataset's responses as activity messages: per plane at the "
        "imaging rate with acquisition timestamps and behaviour, in real time or faster, "
        "with optional jitter, drops and a rig restart. Binds the endpoint like a rig.",
    )
    _plan_arguments(p)
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="where to publish")
    p.add_argument("--connect", action="store_true", help="connect, not bind (daemon with activity_bind)")
    p.add_argument("--speed", type=float, default=1.0, help="1 real time, 2 twice as fast, 0 flat out")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="std of a random delay added to each send")
    p.add_argument("--drop", type=float, default=0.0, help="probability a message is lost (seq skipped)")
    p.add_argument("--t0", type=float, help="rig clock at the first frame (default: now, whole seconds)")
    p.add_argument("--dtype", choices=sorted(INPUT_DTYPES), default="float32", help="payload dtype")
    p.add_argument(
        "--session",
        help="session id (default: a fresh replay-<time>-<random> per run; the restart appends -restart)",
    )
    p.add_argument("--wait-s", type=float, default=30.0, help="how long to wait for the daemon to subscribe")
    p.add_argument(
        "--control",
        default="tcp://127.0.0.1:5557",
        help="the daemon's control socket, asked first whether its model reads the data's neurons "
        "(count and neuron set, docs/protocol.md §5.3; '' skips)",
    )
    p.add_argument(
        "--ignore-neuron-set",
        action="store_true",
        help="play data whose neurons are not the served model's (only the neuron count is checked)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of jitter and drops")
    _curve_arguments(p)
    p.set_defaults(func=_replay)

    p = sub.add_parser(
        "view",
        help="show reconstructed frames live (window, or GIF/MP4 + PNG strip)",
        description="Subscribe to the daemon's frames; show them in a window where a display "
        "exists, else write view.gif, view.mp4 and view_strip.png. Given the replayed "
        "dataset (same plan options as replay) the stimulus is shown beside each frame. "
        "The window always shows the newest frame (older ones not yet drawn are dropped and "
        "counted as stale), with fps and latency in its title. Prints fps, latency and losses "
        "every second. Stops after --frames, when frames stop for --timeout-s, when the window "
        "is closed, or on Ctrl-C; the movies are written then.",
    )
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5556", help="the daemon's recon socket")
    p.add_argument("--data", type=Path, help="the dataset being replayed, for ground truth")
    _plan_arguments(p, data_required=False)
    p.add_argument("--frames", type=int, help="stop after this many frames")
    p.add_argument(
        "--wait-s",
        type=float,
        help="give up if the first frame has not come within this long (default: wait until Ctrl-C)",
    )
    p.add_argument(
        "--timeout-s",
        type=float,
        default=30.0,
        help="after the first frame: stop after this long without one",
    )
    p.add_argument("--out", type=Path, default=Path("demo-out/view"), help="folder for the movies")
    p.add_argument("--keep", type=int, default=900, help="frames kept for the movies (the last ones)")
    p.add_argument("--no-window", action="store_true", help="write movies even where a display exists")
    _curve_arguments(p)
    p.set_defaults(func=_view)

    p = sub.add_parser(
        "demo",
        help="the closed-loop demo: replay -> serve -> view in one process",
        description="Decode held-out clips of the demo dataset live with the bundled demo "
        "student: a rig replay, the daemon and a display run together on private endpoints "
        "at the rig's 30 Hz. Simulates the demo dataset first if it is missing. Writes "
        "view.gif, view.mp4, view_strip.png (decoded beside the stimulus) and summary.json.",
    )
    p.add_argument("--artifact", type=Path, help="student artifact (default: the bundled demo student)")
    p.add_argument(
        "--data",
        type=Path,
        help="demo dataset root (default: <cache>/data/demo, simulated there if missing)",
    )
    p.add_argument(
        "--simulate",
        action="store_true",
        help="if --data holds no dataset, simulate the demo dataset there (2,000 neurons, about 700 MB)",
    )
    p.add_argument("--tier", default="final_test_main", help="tier whose clips to play")
    p.add_argument("--clips", type=int, default=2, help="how many clips")
    p.add_argument("--speed", type=float, default=1.0, help="1 real time, 0 as fast as the daemon goes")
    p.add_argument("--backend", default="onnxruntime", help="onnxruntime, torch or tensorrt")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="folder for the movies and summary")
    p.set_defaults(func=_demo)


def _demo(args) -> int:
    from stream_decoder.stream.demo import DEMO_ARTIFACT, DemoConfig, run_demo

    summary = run_demo(
        DemoConfig(
            artifact=args.artifact or DEMO_ARTIFACT,
            data=args.data,
            simulate=args.simulate,
            tier=args.tier,
            clips=args.clips,
            speed=args.speed,
            backend=args.backend,
            out=args.out,
        )
    )
    latency = summary["daemon_latency_ms"]
    print(
        f"demo: {summary['frames_received']} frames, {summary['frames_lost']} lost; correlation with the "
        f"stimulus {summary['correlation_with_stimulus_in_mask']:.3f} where the neurons see "
        f"({summary['correlation_with_stimulus_all_pixels']:.3f} over all pixels); daemon latency "
        f"p50 {latency['p50']:.2f} ms, p99 {latency['p99']:.2f} ms"
    )
    for path in summary["movies"]:
        print(f"demo: wrote {path}")
    print(f"demo: wrote {args.out / 'summary.json'}")
    return 0


def _plan_arguments(p: argparse.ArgumentParser, data_required: bool = True) -> None:
    if data_required:
        p.add_argument("--data", type=Path, required=True, help="dataset root or mouse folder (Sensorium)")
    p.add_argument("--mouse", type=int, default=0, help="which mouse of the dataset root (name order)")
    p.add_argument("--tier", default="oracle", help="tier to play")
    p.add_argument("--trials", nargs="+", help="trial ids to play instead of a tier")
    p.add_argument("--clips", type=int, help="play at most this many clips")
    p.add_argument("--gap-s", type=float, default=0.0, help="rig time between clips")
    p.add_argument("--planes", type=int, default=1, help="imaging planes (split by cell depth); 1: 30 Hz")
    p.add_argument("--volume-rate", type=float, help="volumes per second (default 30 / planes)")
    p.add_argument("--rig-timing", action="store_true", help="the mouse's own plane timing (simulator truth)")
    p.add_argument("--restart-after", type=int, default=0, help="rig restarts (new session) after N messages")


def _curve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curve-key", type=Path, help="this client's CurveZMQ certificate (.key_secret)")
    p.add_argument("--server-key", type=Path, help="the daemon's public CurveZMQ certificate (.key)")


def _curve(args):
    from stream_decoder.stream.client import CurveKeys

    if (args.curve_key is None) != (args.server_key is None):
        raise ValueError("CurveZMQ needs both --curve-key and --server-key")
    for path in (args.curve_key, args.server_key):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"CurveZMQ certificate {path} does not exist")
    return None if args.curve_key is None else CurveKeys(args.curve_key, args.server_key)


def _plan(args):
    from stream_decoder.data import open_mouse
    from stream_decoder.stream.replay import ReplayPlan, plane_timing, select_trials

    mouse = open_mouse(args.data, args.mouse)
    trials = select_trials(mouse, args.tier, args.trials, args.clips)
    timing = plane_timing(mouse, args.planes, args.volume_rate, args.rig_timing)
    return ReplayPlan(mouse, trials, timing, args.gap_s)


@contextlib.contextmanager
def _stop_on(*signals: signal.Signals) -> Iterator[threading.Event]:
    """An event the given signals set instead of interrupting (the loop checks it and stops
    cleanly); the handlers before are back afterwards. Only the main thread can take signals:
    elsewhere (a verb run by a test) the event is set by nothing."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    before = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
    try:
        yield stop
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _serve(args) -> int:
    from stream_decoder.stream.config import load_config
    from stream_decoder.stream.daemon import serve

    cfg = load_config(args.config)
    if args.artifact or args.backend:
        cfg = replace(
            cfg,
            model=replace(
                cfg.model,
                artifact=args.artifact or cfg.model.artifact,
                backend=args.backend or cfg.model.backend,
            ),
        )
    if args.record:
        cfg = replace(cfg, recorder=replace(cfg.recorder, dir=args.record))
    with _stop_on(signal.SIGTERM, signal.SIGINT) as stop:
        serve(cfg, stop)
    return 0


def _replay(args) -> int:
    from stream_decoder.stream.config import check_endpoint
    from stream_decoder.stream.replay import ReplayOptions, Rig, fresh_session_id, replay

    check_endpoint(args.endpoint, "--endpoint", allow_remote=True)
    if args.control:
        check_endpoint(args.control, "--control", allow_remote=True)
    options = ReplayOptions(
        speed=args.speed,
        jitter_ms=args.jitter_ms,
        drop=args.drop,
        restart_after=args.restart_after,
        t0=args.t0,
        dtype=args.dtype,
        seed=args.seed,
    )
    plan = _plan(args)
    if args.control:
        _check_model(args.control, plan.dataset, _curve(args), args.ignore_neuron_set)
    session = args.session or fresh_session_id()
    with Rig(args.endpoint, bind=not args.connect, session=session, curve=_curve(args)) as rig:
        print(
            f"replay: {len(plan.trials)} clips of {plan.dataset.name}, {plan.timing.n_planes} plane(s), "
            f"session {session}; waiting for a subscriber on {args.endpoint}",
            file=sys.stderr,
        )
        if not rig.wait_for_subscriber(args.wait_s):
            raise RuntimeError(
                f"no daemon subscribed to {args.endpoint} within {args.wait_s} s; is serve running?"
            )
        report = replay(plan, rig, options)
    print(
        f"replay: sent {report.sent}, dropped {report.dropped}, restarts {report.restarts}, "
        f"{report.seconds:.1f} s",
        file=sys.stderr,
    )
    return 0


def _check_model(endpoint: str, mouse, curve, ignore_neuron_set: bool) -> None:
    """Refuse to play data the served model cannot take; carry on if nobody answers (no daemon yet)."""
    from stream_decoder.stream.client import ControlClient
    from stream_decoder.stream.replay import check_neuron_set

    with ControlClient(endpoint, timeout_s=2.0, curve=curve) as control:
        try:
            info = control.request("info")
        except TimeoutError:
            print(f"replay: no answer from {endpoint}; not checking the model", file=sys.stderr)
            return
    checked = check_neuron_set(info, mouse, identity=not ignore_neuron_set)
    print(f"replay: the served model {info.get('model')} fits the data ({checked} checked)", file=sys.stderr)


def _view(args) -> int:
    from stream_decoder.stream.client import ReconClient
    from stream_decoder.stream.config import check_endpoint
    from stream_decoder.stream.viewer import MovieSink, TruthLookup, WindowSink, has_display, watch

    check_endpoint(args.endpoint, "--endpoint", allow_remote=True)
    truth = TruthLookup(_plan(args), args.restart_after) if args.data else None
    curve = _curve(args)
    window = has_display() and not args.no_window
    sink = WindowSink() if window else MovieSink(args.out, keep=args.keep)
    patience = "until Ctrl-C" if args.wait_s is None else f"for up to {args.wait_s:g} s"
    print(f"view: waiting for frames on {args.endpoint} {patience}", file=sys.stderr)
    with _stop_on(signal.SIGINT) as interrupted, ReconClient(args.endpoint, curve=curve) as client:
        figures = watch(
            client, sink, truth, args.frames, timeout_s=args.timeout_s, wait_s=args.wait_s, stop=interrupted
        )
    for path in sink.close():
        print(f"view: wrote {path}", file=sys.stderr)
    if interrupted.is_set():
        raise KeyboardInterrupt  # the movies are written: now the CLI's one line and exit code 130
    if not figures.received and args.wait_s is not None:  # (else the window was closed: nothing wrong)
        raise RuntimeError(f"no frame from {args.endpoint} within {args.wait_s:g} s; is serve running there?")
    return 0
