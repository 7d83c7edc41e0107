"""Calibrate on the day's mouse, then close the loop with the decoder fitted on it.

The lab's day in one script. A field of view no model has seen (`--data`: a synthetic mouse of
another seed, say), a calibration block of natural movies shown at 30 Hz while the calibrator
takes the rig's activity and every frame the screen showed, the gaze baseline fitted on the block
in the stream's own timing, then the closed-loop experiment of examples/closed_loop.py served by
that model: no `input_timing` warning, since the model was fitted on the rig's own planes.

    stream-decoder simulate --preset demo --seed 1 --out .cache/stream_decoder/data/demo-seed1
    python examples/calibrate_closed_loop.py --data .cache/stream_decoder/data/demo-seed1

Everything runs in this process on private endpoints: the virtual rig of the dataset's mouse (as
`stream-decoder virtual-rig`), the calibrator (as `stream-decoder calibrate`), then the daemon.
On a rig the same day is `stream-decoder calibrate --data DAY --out DIR` beside the stimulus
program, which publishes what it shows to the calibrator as to the screen, then
`stream-decoder serve --artifact DIR` (or `--control` to swap it into a daemon already serving
this field of view).
"""

import argparse
import dataclasses
import importlib.util
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from stream_decoder.data import FRAME_RATE_HZ, open_mouse
from stream_decoder.data.stimuli import TRAINING_PHOTOGRAPHS, natural_movie
from stream_decoder.decoder.config import GAZE_BASELINE
from stream_decoder.errors import UserError
from stream_decoder.rig.calibrate import Calibrator, fit_block, record
from stream_decoder.rig.replay import Rig, fresh_session_id
from stream_decoder.rig.virtual_rig import Screen, VirtualRig
from stream_decoder.runtime.export import export_artifact
from stream_decoder.stream.protocol import ACTIVITY, STIMULUS

LEAD_IN_S = 1.0  # grey before the calibration movie, and after it until the block is whole


def closed_loop_example():
    """examples/closed_loop.py, the experiment this one hands its model to."""
    spec = importlib.util.spec_from_file_location("closed_loop", Path(__file__).with_name("closed_loop.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def show_calibration(screen: Screen, movie: np.ndarray, done: threading.Event, paced: bool) -> None:
    """Grey, the movie, then grey until the calibrator has its block: one frame per 1/30 s of rig
    time (real time when `paced`, else as fast as the rig takes them)."""
    grey = np.full(movie.shape[1:], 128.0, np.float32)
    lead = int(LEAD_IN_S * FRAME_RATE_HZ)
    t0 = np.ceil(time.time() * FRAME_RATE_HZ) / FRAME_RATE_HZ
    start = time.monotonic() + (t0 - time.time())
    tick = 0
    while not done.is_set():
        if paced:
            time.sleep(max(0.0, start + tick / FRAME_RATE_HZ - time.monotonic()))
        frame = movie[tick - lead] if lead <= tick < lead + len(movie) else grey
        screen.show(frame, t0 + tick / FRAME_RATE_HZ)
        tick += 1
        if tick > len(movie) + 10 * lead and not paced:
            time.sleep(0.01)  # the movie is out; the calibrator is catching up


def calibrate(data: Path, seconds: float, out: Path, lookahead: int, seed: int, paced: bool):
    """Record `seconds` of the virtual rig watching a calibration movie, fit and export the gaze
    baseline at `out`: the artifact and the calibrator's stats."""
    mouse = open_mouse(data)
    movie, _ = natural_movie(np.random.default_rng(seed), int(seconds * FRAME_RATE_HZ), TRAINING_PHOTOGRAPHS)
    folder = tempfile.mkdtemp(prefix="sd-cal-", dir="/tmp")
    ep = {name: f"ipc://{folder}/{name}" for name in ("activity", "screen", "calibrator")}
    calibrator = Calibrator(mouse.n_neurons)
    stop, done, failure = threading.Event(), threading.Event(), []

    def take_block():
        try:
            record(calibrator, ep["activity"], ep["calibrator"], seconds)
        except Exception as exc:  # reported by the main thread
            failure.append(exc)
        done.set()

    try:
        with (
            Rig(ep["activity"], session="virtual") as rig,
            Screen(ep["screen"], bind=False, session=fresh_session_id("calibration")) as screen,
        ):
            virtual = VirtualRig.of(mouse, rig, seed)
            rig_thread = threading.Thread(target=virtual.run, args=(ep["screen"], stop), daemon=True)
            rig_thread.start()
            block_thread = threading.Thread(target=take_block, daemon=True)
            block_thread.start()
            screen.connect(ep["calibrator"])
            if not rig.wait_for_subscriber(30.0, topic=ACTIVITY):
                raise UserError("the calibrator did not subscribe to the rig's activity")
            if not screen.wait_for_subscriber(30.0, topic=STIMULUS, count=2):
                raise UserError("the virtual rig and the calibrator did not both subscribe to the stimulus")
            show_calibration(screen, movie, done, paced)
            block_thread.join()
            stop.set()
            rig_thread.join(10)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if failure:
        raise failure[0]
    cfg = dataclasses.replace(GAZE_BASELINE, lookahead=lookahead)
    artifact = fit_block(calibrator.block(), mouse, out, cfg)
    export_artifact(out)
    return artifact, calibrator.stats


def main(argv: list[str] | None = None, log=sys.stdout):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--data", type=Path, required=True, help="the day's mouse: a synthetic dataset")
    p.add_argument("--calibration-s", type=float, default=120.0, help="rig time to calibrate on (>= 50 s)")
    p.add_argument("--lookahead", type=int, default=8, help="the fitted decoder's lookahead, ticks")
    p.add_argument("--out", type=Path, default=Path("demo-out/calibrated"), help="the fitted artifact")
    p.add_argument("--seed", type=int, default=0, help="the virtual mouse's noise seed")
    p.add_argument(
        "--unpaced",
        action="store_true",
        help="show the calibration movie as fast as the virtual rig takes it, not at 30 Hz (tests)",
    )
    args, loop_args = p.parse_known_args(argv)
    artifact, stats = calibrate(
        args.data, args.calibration_s, args.out, args.lookahead, args.seed, paced=not args.unpaced
    )
    calibration = artifact.meta.provenance["calibration"]
    print(
        f"calibrate: {calibration['seconds']:.0f} s in {calibration['clips']} clips, {stats.planes}-plane "
        f"timing, fitted {artifact.model_id} into {args.out}",
        file=sys.stderr,
    )
    loop = closed_loop_example()
    argv = ["--data", str(args.data), "--artifact", str(args.out), "--seed", str(args.seed), *loop_args]
    return artifact, loop.main(argv, log=log)


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, UserError) as exc:  # one line, no traceback: what to fix
        raise SystemExit(f"calibrate_closed_loop: {exc}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
