"""CLI verbs of the daemon: serve (the rig-side decoder) and swap (another model served live); and
what every verb that speaks the wire shares: the CurveZMQ options, stopping cleanly on a signal."""

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path


def register_serve(sub) -> None:
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
    p.add_argument(
        "--record-traces",
        action="store_true",
        help="with a front end: record each raw frame's F, Fneu and dF/F beside its shift "
        "([recorder] frontend_traces)",
    )
    p.add_argument(
        "--frontend",
        type=Path,
        help="a TOML file whose [frontend] section replaces the config's: take raw frames too "
        "(stream-decoder microscope writes one for a synthetic mouse)",
    )
    p.set_defaults(func=_serve)


def _serve(args) -> int:
    from stream_decoder.stream.config import load_config, load_frontend
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
    if args.record_traces:
        cfg = replace(cfg, recorder=replace(cfg.recorder, frontend_traces=True))
    if args.frontend:
        cfg = replace(cfg, frontend=load_frontend(args.frontend))
    with stop_on(signal.SIGTERM, signal.SIGINT) as stop:
        serve(cfg, stop)
    return 0


def register_swap(sub) -> None:
    p = sub.add_parser(
        "swap",
        help="swap the model a running daemon serves, without stopping the stream",
        description="Ask the daemon on --control to load ARTIFACT (a directory on the daemon's host) "
        "and serve it from the next tick (docs/protocol.md section 5.5). The running model keeps "
        "serving while the new one opens; an artifact that reads other neurons, draws other frames or "
        "was distilled on another plane count is refused with the reason. Waits for the outcome and "
        "prints the swap record; exit code 2 if refused.",
    )
    p.add_argument("artifact", type=Path, metavar="ARTIFACT", help="artifact directory to serve")
    p.add_argument("--control", default="tcp://127.0.0.1:5557", help="the daemon's control socket")
    p.add_argument(
        "--wait-s", type=float, default=60.0, help="give up waiting for the outcome after this long"
    )
    curve_arguments(p)
    p.set_defaults(func=_swap)


def _swap(args) -> int:
    import json

    from stream_decoder.stream.client import ControlClient
    from stream_decoder.stream.config import check_endpoint

    check_endpoint(args.control, "--control", allow_remote=True)
    artifact = str(args.artifact.resolve())
    with ControlClient(args.control, timeout_s=5.0, curve=curve_keys(args)) as control:
        record = control.swap(artifact, args.wait_s)
    print(json.dumps(record, indent=1))
    if not record["ok"]:
        raise ValueError(f"{artifact}: {record['error']}")
    return 0


def curve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curve-key", type=Path, help="this client's CurveZMQ certificate (.key_secret)")
    p.add_argument("--server-key", type=Path, help="the daemon's public CurveZMQ certificate (.key)")


def curve_keys(args):
    from stream_decoder.stream.client import CurveKeys

    if (args.curve_key is None) != (args.server_key is None):
        raise ValueError("CurveZMQ needs both --curve-key and --server-key")
    for path in (args.curve_key, args.server_key):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"CurveZMQ certificate {path} does not exist")
    return None if args.curve_key is None else CurveKeys(args.curve_key, args.server_key)


@contextlib.contextmanager
def stop_on(*signals: signal.Signals) -> Iterator[threading.Event]:
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
