"""CLI verbs of the display side: view (the daemon's frames live), demo (replay -> serve -> view in
one process) and report (a demo run as one HTML page)."""

import signal
import sys
from pathlib import Path

from stream_decoder.errors import UserError
from stream_decoder.rig.commands import plan_arguments, plan_of
from stream_decoder.stream.commands import curve_arguments, curve_keys, stop_on


def register_view(sub) -> None:
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
    plan_arguments(p)
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
    curve_arguments(p)
    p.set_defaults(func=_view)


def _view(args) -> int:
    from stream_decoder.display.viewer import MovieSink, TruthLookup, WindowSink, has_display, watch
    from stream_decoder.stream.client import ReconClient
    from stream_decoder.stream.config import check_endpoint

    check_endpoint(args.endpoint, "--endpoint", allow_remote=True)
    truth = TruthLookup(plan_of(args), args.restart_after) if args.data else None
    curve = curve_keys(args)
    window = has_display() and not args.no_window
    sink = WindowSink() if window else MovieSink(args.out, keep=args.keep)
    patience = "until Ctrl-C" if args.wait_s is None else f"for up to {args.wait_s:g} s"
    print(f"view: waiting for frames on {args.endpoint} {patience}", file=sys.stderr)
    with stop_on(signal.SIGINT) as interrupted, ReconClient(args.endpoint, curve=curve) as client:
        figures = watch(
            client, sink, truth, args.frames, timeout_s=args.timeout_s, wait_s=args.wait_s, stop=interrupted
        )
    for path in sink.close():
        print(f"view: wrote {path}", file=sys.stderr)
    if interrupted.is_set():
        raise KeyboardInterrupt  # the movies are written: now the CLI's one line and exit code 130
    if not figures.received and args.wait_s is not None:  # (else the window was closed: nothing wrong)
        raise UserError(f"no frame from {args.endpoint} within {args.wait_s:g} s; is serve running there?")
    return 0


def register_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the closed-loop demo: replay -> serve -> view in one process",
        description="Decode held-out clips of the demo dataset live with the bundled demo "
        "student: a rig replay, the daemon and a display run together on private endpoints "
        "at the rig's 30 Hz. Simulates the demo dataset first if it is missing. Writes "
        "view.gif, view.mp4, view_strip.png (decoded beside the stimulus), summary.json, run.npz (every "
        "frame, for the report) and report.html.",
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
    p.add_argument(
        "--out",
        type=Path,
        default=Path("demo-out"),
        help="folder for the movies, summary, run record and report",
    )
    p.set_defaults(func=_demo)


def _demo(args) -> int:
    from stream_decoder.display.demo import DEMO_ARTIFACT, DemoConfig, run_demo
    from stream_decoder.display.report import write_report

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
    print(f"demo: wrote {write_report(args.out, summary['data'])}")
    return 0


def register_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="one HTML page of a demo run, to open offline",
        description="Write RUN_DIR/report.html from the run.npz and summary.json `demo` wrote there: "
        "the stimulus with the evaluation mask, the student as streamed, the baseline the demo scored it "
        "beside (the gaze baseline) decoding the same clips offline (and the teacher on the clips its "
        "store holds, with --teacher), masked correlation per clip beside a shuffled control, latency, "
        "output cadence and the figures table (with the student's compute per clip against the "
        "teacher's). Images are embedded; report.gif (under 2 MB) and report_strip.png are written "
        "beside it.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the folder `demo --out` wrote")
    p.add_argument("--data", type=Path, help="dataset root of the run (default: the one the demo used)")
    p.add_argument("--teacher", type=Path, help="teacher store (shown on the clips it holds; default: none)")
    p.set_defaults(func=_write_report)


def _write_report(args) -> int:
    from stream_decoder.display.report import write_report

    print(f"report: wrote {write_report(args.run_dir, args.data, args.teacher)}")
    return 0
