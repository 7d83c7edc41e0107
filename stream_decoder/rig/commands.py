"""CLI verbs of the rig side: replay (a dataset or a recording played as a rig publishes it),
microscope (a synthetic mouse's ROIs, for its raw frames), bridge (real acquisition software in),
virtual-rig (a live synthetic mouse for closed loops), calibrate (the day's block fitted, swapped in)."""

import argparse
import signal
import sys
from pathlib import Path

from stream_decoder.errors import UserError
from stream_decoder.stream.commands import curve_arguments, curve_keys, stop_on
from stream_decoder.stream.protocol import INPUT_DTYPES


def register_replay(sub) -> None:
    p = sub.add_parser(
        "replay",
        help="play a Sensorium-format mouse, or a recorded session, the way a rig publishes it",
        description="Publish a dataset's responses as activity messages: per plane at the "
        "imaging rate with acquisition timestamps and behaviour, in real time or faster, "
        "with optional jitter, drops and a rig restart. Binds the endpoint like a rig. "
        "With --recording instead of --data, play back what a daemon recorded ([recorder] dir): "
        "each recorded session as a new session, its messages at their recorded relative times "
        "with their values and behaviour, to re-examine an experiment or decode it with another "
        "model. A recording names no neurons: only their count is checked against the served model.",
    )
    p.add_argument(
        "--data", type=Path, metavar="DIR", help="dataset root or mouse folder (Sensorium) to play"
    )
    p.add_argument(
        "--recording",
        type=Path,
        metavar="DIR",
        help="instead of --data: a folder the daemon recorded sessions into, to play back (--mouse to "
        "--raw are options of --data)",
    )
    p.add_argument(
        "--session-index",
        type=int,
        metavar="K",
        help="with --recording: play only its K-th session (0: the first; default: all, in order)",
    )
    p.add_argument(
        "--session-name", metavar="ID", help="with --recording: play only the session(s) of this id"
    )
    dataset_only = plan_arguments(p)
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="where to publish")
    p.add_argument("--connect", action="store_true", help="connect, not bind (daemon with activity_bind)")
    p.add_argument("--speed", type=float, default=1.0, help="1 real time, 2 twice as fast, 0 flat out")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="std of a random delay added to each send")
    p.add_argument("--drop", type=float, default=0.0, help="probability a message is lost (seq skipped)")
    p.add_argument("--t0", type=float, help="rig clock at the first frame (default: now, on the 30 Hz grid)")
    p.add_argument("--dtype", choices=sorted(INPUT_DTYPES), default="float32", help="payload dtype")
    p.add_argument(
        "--session",
        help="session id (default: a fresh replay-<time>-<random> per run; the restart appends -restart, "
        "a recording's session K > 0 appends -K)",
    )
    p.add_argument("--wait-s", type=float, default=30.0, help="how long to wait for the daemon to subscribe")
    p.add_argument(
        "--control",
        default="tcp://127.0.0.1:5557",
        help="the daemon's control socket, asked first whether its model reads the data's neurons "
        "(count and neuron set, docs/protocol.md §5.3; with --recording the count only: the model "
        "must read at least the neurons recorded; '' skips)",
    )
    p.add_argument(
        "--ignore-neuron-set",
        action="store_true",
        help="play data whose neurons are not the served model's (only the neuron count is checked)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of jitter and drops")
    curve_arguments(p)
    p.set_defaults(
        func=_replay, dataset_only=[(a.dest, a.option_strings[0], a.default) for a in dataset_only]
    )


def _replay(args) -> int:
    from stream_decoder.rig.replay import ReplayOptions, Rig, fresh_session_id, replay
    from stream_decoder.stream.config import check_endpoint

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
    plan = _replay_plan(args)
    if args.control:
        identity = not args.ignore_neuron_set
        _check_model(args.control, lambda info: plan.check_model(info, identity), curve_keys(args))
    session = args.session or fresh_session_id()
    with Rig(args.endpoint, bind=not args.connect, session=session, curve=curve_keys(args)) as rig:
        print(
            f"replay: {plan.describe()}, session {session}; waiting for a subscriber on {args.endpoint}",
            file=sys.stderr,
        )
        if not rig.wait_for_subscriber(args.wait_s):
            raise UserError(
                f"no daemon subscribed to {args.endpoint} within {args.wait_s} s; is serve running?"
            )
        report = replay(plan, rig, options)
    print(
        f"replay: sent {report.sent}, dropped {report.dropped}, restarts {report.restarts}, "
        f"{report.seconds:.1f} s",
        file=sys.stderr,
    )
    return 0


def _replay_plan(args):
    """The plan of --data, or the playback of --recording: exactly one of them."""
    if (args.data is None) == (args.recording is None):
        raise ValueError(
            "give one thing to play: --data DIR (a dataset) or --recording DIR (a recorded session)"
        )
    if args.data is not None:
        if args.session_index is not None or args.session_name is not None:
            raise ValueError(
                "--session-index and --session-name pick a session of --recording, not of --data"
            )
        return plan_of(args)
    given = [flag for dest, flag, default in args.dataset_only if getattr(args, dest) != default]
    if given:
        raise ValueError(
            f"{', '.join(given)}: options of --data; --recording plays its sessions as they were recorded"
        )
    from stream_decoder.rig.playback import PlaybackPlan

    return PlaybackPlan.open(args.recording, args.session_index, args.session_name, args.gap_s)


def plan_arguments(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options of a dataset's plan; returns those that only a dataset's plan reads."""
    dataset_only = [
        p.add_argument("--mouse", type=int, default=0, help="which mouse of the dataset root (name order)"),
        p.add_argument("--tier", default="oracle", help="tier to play"),
        p.add_argument("--trials", nargs="+", help="trial ids to play instead of a tier"),
        p.add_argument("--clips", type=int, help="play at most this many clips"),
        p.add_argument(
            "--planes", type=int, default=1, help="imaging planes (split by cell depth); 1: 30 Hz"
        ),
        p.add_argument("--volume-rate", type=float, help="volumes per second (default 30 / planes)"),
        p.add_argument(
            "--rig-timing", action="store_true", help="the mouse's own plane timing (simulator truth)"
        ),
        p.add_argument(
            "--raw",
            action="store_true",
            help="raw two-photon frames (`frame` messages) the synthetic mouse's microscope takes of "
            "these clips, per plane at its own imaging rate, instead of activity; the daemon needs a "
            "[frontend] (stream-decoder microscope writes one)",
        ),
    ]
    p.add_argument(
        "--gap-s",
        type=float,
        default=0.0,
        help="rig time between clips (between a recording's sessions: rounded up to whole 30 Hz frames)",
    )
    p.add_argument("--restart-after", type=int, default=0, help="rig restarts (new session) after N messages")
    return dataset_only


def plan_of(args):
    from stream_decoder.data import open_mouse
    from stream_decoder.rig.replay import RawSource, ReplayPlan, plane_timing, select_trials

    mouse = open_mouse(args.data, args.mouse)
    trials = select_trials(mouse, args.tier, args.trials, args.clips)
    timing = plane_timing(mouse, args.planes, args.volume_rate, args.rig_timing or args.raw)
    return ReplayPlan(mouse, trials, timing, args.gap_s, RawSource.of(mouse) if args.raw else None)


def _check_model(endpoint: str, check, curve, verb: str = "replay") -> None:
    """Refuse to play data the served model cannot take (`check(info)` raises, else says what it
    compared); carry on if nobody answers (no daemon yet)."""
    from stream_decoder.stream.client import ControlClient

    with ControlClient(endpoint, timeout_s=2.0, curve=curve) as control:
        try:
            info = control.request("info")
        except TimeoutError:
            print(f"{verb}: no answer from {endpoint}; not checking the model", file=sys.stderr)
            return
    checked = check(info)
    print(f"{verb}: the served model {info.get('model')} fits the data ({checked} checked)", file=sys.stderr)


def register_microscope(sub) -> None:
    p = sub.add_parser(
        "microscope",
        help="write a synthetic mouse's ROIs and motion references, for serving its raw frames",
        description="The simulator's cell footprints as ROIs (rois.npz, the documented format: what "
        "a lab's offline segmentation gives), each plane's motion reference (references.npy) and "
        "frontend.toml, the [frontend] section a rig config needs for `replay --raw`.",
    )
    p.add_argument("--data", type=Path, required=True, help="synthetic dataset root or mouse folder")
    p.add_argument("--mouse", type=int, default=0, help="which mouse of the dataset root (name order)")
    p.add_argument("--out", type=Path, required=True, help="folder to write into")
    p.add_argument(
        "--training-data",
        action="store_true",
        help="also write <out>/data: the mouse with its training trials' responses extracted by the "
        "front end from their raw frames, to train a model on the representation raw frames give "
        "(baseline / distill --data <out>/data); about 7 s a trial",
    )
    p.add_argument("--trials", type=int, help="with --training-data: only the first N training trials")
    p.add_argument("--overwrite", action="store_true", help="replace an existing <out>/data")
    p.set_defaults(func=_microscope)


def _microscope(args) -> int:
    from stream_decoder.data import open_mouse
    from stream_decoder.rig.replay import RawSource
    from stream_decoder.stream.raw_input import write_microscope

    mouse = open_mouse(args.data, args.mouse)
    source = RawSource.of(mouse)
    for path in write_microscope(source.microscope, args.out):
        print(f"microscope: wrote {path}", file=sys.stderr)
    if args.training_data:
        from stream_decoder.frontend.synthetic import simulator_front_end, write_extracted_dataset

        fe = simulator_front_end(source.microscope)
        folder = write_extracted_dataset(
            fe, source.microscope, source.truth, mouse.path, args.out / "data", args.trials, args.overwrite
        )
        print(f"microscope: wrote {folder}", file=sys.stderr)
    return 0


def register_bridge(sub) -> None:
    p = sub.add_parser(
        "bridge",
        help="publish the raw frames of real acquisition software (Scanbox, TIFF files) to the daemon",
        description="Read the frames a microscope's software hands out and publish them as `frame` "
        "messages (docs/protocol.md), like a rig: from Scanbox's memory-mapped file, or from the "
        "TIFF files ScanImage and others write into a folder. Frame k of an acquisition is stamped "
        "t0 + k / --rate-hz and shows plane k % --planes. Runs until Ctrl-C or SIGTERM "
        "(see deploy/README.md, Rig bridges).",
    )
    sources = p.add_subparsers(dest="source", metavar="<source>", required=True)
    scanbox = sources.add_parser(
        "scanbox",
        help="read Scanbox's memory-mapped file (its mmap option)",
        description="Take each frame Scanbox puts into its memory-mapped file, hand the buffer back "
        "and publish the frame. Each acquisition is a session of its own; frames Scanbox could not "
        "put in (the buffer was still full) are counted, and the daemon sees them as lost.",
    )
    scanbox.add_argument(
        "path", type=Path, metavar="FILE", help="Scanbox's memory-mapped file (scanbox.mmap)"
    )
    scanbox.add_argument("--channel", choices=("A", "B"), default="A", help="which PMT channel to publish")
    scanbox.add_argument(
        "--no-invert",
        action="store_true",
        help="publish the stored values (Scanbox stores 65535 minus the PMT value; by default the "
        "bridge turns them back)",
    )
    scanbox.add_argument("--once", action="store_true", help="exit when the first acquisition stops")
    _bridge_arguments(scanbox, poll_s=0.001)
    tiff = sources.add_parser(
        "tiff",
        help="watch a folder for the TIFF files an acquisition writes (ScanImage and others)",
        description="Publish every page of the TIFF files that appear in FOLDER, in name order, as "
        "soon as each page is complete in its file; a file still being written is read again on "
        "the next poll. One page is one plane of one channel. Files already there at the start are "
        "an earlier acquisition's: left alone unless --include-existing.",
    )
    tiff.add_argument("path", type=Path, metavar="FOLDER", help="the folder the acquisition writes into")
    tiff.add_argument("--pattern", default="*.tif*", help="which files of the folder to read (glob)")
    tiff.add_argument("--include-existing", action="store_true", help="publish the files already there too")
    _bridge_arguments(tiff, poll_s=0.05)


def _bridge_arguments(p: argparse.ArgumentParser, poll_s: float) -> None:
    p.add_argument("--rate-hz", type=float, required=True, help="the imaging frame rate (planes per second)")
    p.add_argument("--planes", type=int, default=1, help="imaging planes, interleaved frame by frame")
    p.add_argument(
        "--t0", type=float, help="rig time of frame 0 (default: this host's clock at the first frame)"
    )
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="where to publish")
    p.add_argument("--connect", action="store_true", help="connect, not bind (daemon with activity_bind)")
    p.add_argument("--session", help="session id (default: a fresh <source>-<time>-<random> per run)")
    p.add_argument("--wait-s", type=float, default=30.0, help="how long to wait for the daemon to subscribe")
    p.add_argument("--poll-s", type=float, default=poll_s, help="sleep between polls that found nothing")
    curve_arguments(p)
    p.set_defaults(func=_bridge)


def _open_bridge(args, rig):
    if args.source == "scanbox":
        from stream_decoder.rig.scanbox import ScanboxBridge

        return ScanboxBridge(
            args.path,
            rig,
            args.rate_hz,
            args.planes,
            t0=args.t0,
            channel=args.channel,
            invert=not args.no_invert,
        )
    from stream_decoder.rig.tiff_watch import TiffFolderBridge

    return TiffFolderBridge(
        args.path,
        rig,
        args.rate_hz,
        args.planes,
        pattern=args.pattern,
        t0=args.t0,
        include_existing=args.include_existing,
    )


def _bridge(args) -> int:
    from stream_decoder.rig.replay import Rig, fresh_session_id
    from stream_decoder.stream.config import check_endpoint
    from stream_decoder.stream.protocol import FRAME

    check_endpoint(args.endpoint, "--endpoint", allow_remote=True)
    session = args.session or fresh_session_id(args.source)
    with Rig(args.endpoint, bind=not args.connect, session=session, curve=curve_keys(args)) as rig:
        bridge = _open_bridge(args, rig)
        print(
            f"bridge: {args.source} {args.path}, session {session}; waiting for a subscriber to frames "
            f"on {args.endpoint}",
            file=sys.stderr,
        )
        if not rig.wait_for_subscriber(args.wait_s, topic=FRAME):
            raise UserError(
                f"no daemon subscribed to frames on {args.endpoint} within {args.wait_s:g} s; is serve "
                "running, with [frontend] rois set?"
            )
        with stop_on(signal.SIGTERM, signal.SIGINT) as stop:
            if args.source == "scanbox":
                bridge.run(stop, args.poll_s, once=args.once)
            else:
                bridge.run(stop, args.poll_s)
    print(f"bridge: {bridge.report()}", file=sys.stderr)
    if stop.is_set():
        raise KeyboardInterrupt  # stopped between two polls: now the CLI's one line and exit code 130
    return 0


def register_virtual_rig(sub) -> None:
    p = sub.add_parser(
        "virtual-rig",
        help="a synthetic mouse that watches what a stimulus program shows, published like a rig",
        description="Simulate a synthetic dataset's mouse live: subscribe to `stimulus` messages "
        "(docs/protocol.md §9: one per 30 Hz screen frame, stamped with the rig time it is shown "
        "from), show each to the mouse, and publish the planes acquired meanwhile as `activity` "
        "messages, at the mouse's own imaging timing, as `replay` does. A tick the program skips "
        "keeps the last frame on the screen; a pause over 2 s starts a new session. For writing "
        "and testing closed-loop experiments without an animal (examples/closed_loop.py).",
    )
    p.add_argument("--data", type=Path, required=True, help="synthetic dataset root or mouse folder")
    p.add_argument("--mouse", type=int, default=0, help="which mouse of the dataset root (name order)")
    p.add_argument("--seed", type=int, default=0, help="seed of behaviour, spikes and imaging noise")
    p.add_argument(
        "--raw",
        action="store_true",
        help="publish the microscope's raw frames instead of activity (serve --frontend with the "
        "frontend.toml `stream-decoder microscope` wrote for this mouse)",
    )
    p.add_argument("--stimulus", default="tcp://127.0.0.1:5558", help="where to take stimulus frames (bound)")
    p.add_argument(
        "--endpoint",
        default="tcp://127.0.0.1:5555",
        help="where to publish activity or frames (bound unless --connect)",
    )
    p.add_argument("--connect", action="store_true", help="connect, not bind (daemon with activity_bind)")
    p.add_argument("--wait-s", type=float, default=30.0, help="how long to wait for the daemon to subscribe")
    p.add_argument(
        "--control",
        default="tcp://127.0.0.1:5557",
        help="the daemon's control socket, asked first whether its model reads this mouse's neurons "
        "('' skips)",
    )
    p.add_argument(
        "--ignore-neuron-set", action="store_true", help="serve a model of other neurons (count checked)"
    )
    p.set_defaults(func=_virtual_rig)


def _virtual_rig(args) -> int:
    from stream_decoder.data import open_mouse
    from stream_decoder.rig.replay import Rig, check_neuron_set
    from stream_decoder.rig.virtual_rig import VirtualRig
    from stream_decoder.stream.protocol import ACTIVITY, FRAME

    _check_endpoints(args, "stimulus", "endpoint", "control")
    mouse = open_mouse(args.data, args.mouse)
    if args.control:
        identity = not args.ignore_neuron_set
        _check_model(args.control, lambda info: check_neuron_set(info, mouse, identity), None, "virtual-rig")
    with Rig(args.endpoint, bind=not args.connect, session="virtual") as rig:
        virtual = VirtualRig.of(mouse, rig, args.seed, args.raw)
        print(
            f"virtual-rig: {mouse.name} ready; waiting for a subscriber on {args.endpoint}", file=sys.stderr
        )
        if not rig.wait_for_subscriber(args.wait_s, topic=FRAME if args.raw else ACTIVITY):
            what = "frames" if args.raw else "activity"
            raise UserError(
                f"no daemon subscribed to {what} on {args.endpoint} within {args.wait_s:g} s; is serve "
                "running (with --frontend for --raw)?"
            )
        print(f"virtual-rig: showing the stimulus frames published to {args.stimulus}", file=sys.stderr)
        with stop_on(signal.SIGTERM, signal.SIGINT) as stop:
            virtual.run(args.stimulus, stop)
    print(f"virtual-rig: {virtual.stats}", file=sys.stderr)
    return 0


def register_calibrate(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit the gaze baseline on a calibration block of today's neurons, and swap it in",
        description="Record a calibration block: the rig's activity (subscribed to --activity, as "
        "the daemon is) and each frame the stimulus program shows (published to --stimulus as well "
        "as to the screen, docs/protocol.md §9, stamped on the rig's clock), for --minutes of rig "
        "time. Then fit the gaze baseline on it (a few seconds to a minute), in the stream's own "
        "timing, write it to --out with its ONNX model and, with --control, swap it into the "
        "running daemon (refused, with the reason, if that daemon serves other neurons: then "
        "serve --artifact OUT). The lab's day: calibrate on the day's field of view, close the "
        "loop (docs/lab-guide.md, 'Calibrating on the day').",
    )
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="the day's neuron table: a mouse folder (meta/neurons: unit ids and cell positions, in "
        "the rig's neuron order) or a dataset root",
    )
    p.add_argument("--mouse", help="mouse folder name under a dataset root (default: the first)")
    p.add_argument("--minutes", type=float, default=5.0, help="rig time to record (at least 50 s)")
    p.add_argument("--activity", default="tcp://127.0.0.1:5555", help="the rig's activity PUB (connected)")
    p.add_argument(
        "--stimulus", default="tcp://127.0.0.1:5559", help="where the stimulus program publishes (bound)"
    )
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.add_argument("--mask-from", type=Path, help="an artifact whose evaluation mask scores the fit")
    p.add_argument("--lookahead", type=int, default=8, help="ticks of activity after the decoded frame")
    p.add_argument("--control", help="a running daemon's control socket: swap the fitted model in")
    p.add_argument("--wait-s", type=float, default=30.0, help="give up after this long without a message")
    p.set_defaults(func=_calibrate)


def _calibrate(args) -> int:
    import dataclasses
    import json

    from tqdm import tqdm

    from stream_decoder.data import open_mouse
    from stream_decoder.decoder.artifact import load_artifact
    from stream_decoder.decoder.config import GAZE_BASELINE
    from stream_decoder.rig.calibrate import Calibrator, fit_block, record
    from stream_decoder.runtime.export import export_artifact
    from stream_decoder.stream.client import ControlClient

    _check_endpoints(args, "activity", "stimulus", "control")
    neurons = open_mouse(args.data, args.mouse)
    mask = load_artifact(args.mask_from).evaluation_mask if args.mask_from else None
    calibrator = Calibrator(neurons.n_neurons)
    print(f"calibrate: recording {args.minutes:g} min of {neurons.n_neurons} neurons", file=sys.stderr)
    with tqdm(total=args.minutes * 60, desc="calibration block", unit="s", disable=None) as bar:
        record(calibrator, args.activity, args.stimulus, args.minutes * 60, args.wait_s, bar)
    block = calibrator.block()
    cfg = dataclasses.replace(GAZE_BASELINE, lookahead=args.lookahead)
    artifact = fit_block(block, neurons, args.out, cfg, mask, progress=True)
    export_artifact(args.out)
    summary = {
        "artifact": str(args.out),
        "model": artifact.model_id,
        **artifact.meta.provenance["calibration"],
    }
    print(json.dumps(summary | {"stream": calibrator.stats.to_dict()}, indent=1))
    if args.control:
        with ControlClient(args.control, timeout_s=5.0) as control:
            swap = control.swap(str(args.out.resolve()))
        if not swap["ok"]:
            raise ValueError(f"{args.control} kept its model: {swap['error']}; serve --artifact {args.out}")
        print(f"calibrate: the daemon now serves {swap['model']}", file=sys.stderr)
    return 0


def _check_endpoints(args, *flags: str) -> None:
    """Each endpoint flag that is set, checked (remote hosts allowed: these name other machines)."""
    from stream_decoder.stream.config import check_endpoint

    for flag in flags:
        if getattr(args, flag):
            check_endpoint(getattr(args, flag), f"--{flag}", allow_remote=True)
