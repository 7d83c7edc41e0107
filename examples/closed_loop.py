"""A closed-loop experiment: show movies, read the live reconstructions, act on them.

The template a lab copies. It shows clips to the (virtual) mouse at 30 Hz, receives the decoded
frames through `ReconClient`, and scores each against the frame that was on the screen at its
`t_stim`, inside the model's evaluation mask. It moves on to the next clip once the last
`--window` decoded frames of a clip match the shown ones above `--threshold` (mean correlation),
or after `--max-s` seconds of a clip; the next clip is one not yet shown, then the one decoding
has been weakest on. Each decision is logged as one JSON line with the rig times it was based on.

By default everything runs in this process on private endpoints: the virtual rig of a synthetic
dataset's mouse (`stream-decoder virtual-rig`) and the daemon serving --artifact, by default the
mouse's gaze baseline in the rig's own plane timing (fitted into the cache the first time, under a
minute for the demo mouse), so the daemon decodes the timing its model was fitted on:

    python examples/closed_loop.py --data .cache/stream_decoder/data/demo

Against running programs (`serve`, `virtual-rig`, or a real rig whose screen listens to the
stimulus topic), give their endpoints:

    python examples/closed_loop.py --data DIR --stimulus tcp://127.0.0.1:5558 --recon tcp://127.0.0.1:5556
"""

import argparse
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from stream_decoder.data import FRAME_RATE_HZ, PlaneTiming, open_mouse
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.baseline import ensure_baseline
from stream_decoder.decoder.config import GAZE_BASELINE
from stream_decoder.display.demo import DEMO_ARTIFACT
from stream_decoder.display.loopback import private_endpoints, virtual_loop
from stream_decoder.errors import UserError
from stream_decoder.metrics import frame_correlations
from stream_decoder.rig.replay import fresh_session_id
from stream_decoder.rig.virtual_rig import Screen
from stream_decoder.runtime import open_backend
from stream_decoder.runtime.export import export_artifact
from stream_decoder.stream.client import ReconClient
from stream_decoder.stream.config import DaemonConfig, LogConfig, ModelConfig

SETTLE_FRAMES = 15  # decoded frames of a clip's first half second still carry the clip before
HISTORY_FRAMES = 300  # what was shown is kept this long: a reconstruction older than this is not scored


@dataclass
class Decision:
    clip: int  # the clip that was on the screen
    next_clip: int
    reason: str  # "matched": decoded frames matched the shown ones; "timeout": --max-s passed
    score: float  # mean masked correlation of the last decoded frames of the clip
    frames_scored: int
    t_decided: float  # rig time of the tick the decision was taken at
    t_stim_first: float  # rig times of the stimulus frames behind the scored reconstructions
    t_stim_last: float
    t_newest_last: float  # rig time of the newest activity the last of them was decoded from


@dataclass
class Experiment:
    """The experiment's state: what is on the screen, what was shown when, how decoding went."""

    clips: list[np.ndarray]  # (T, 36, 64) movies, luminance 0-255
    mask: np.ndarray | None
    threshold: float
    window: int
    max_frames: int
    t0: float = 0.0  # rig time of tick 0, set when the experiment starts
    clip: int = 0
    started: int = 0  # tick at which the current clip started
    shown: dict[int, tuple[int, np.ndarray]] = field(default_factory=dict)  # tick -> (clip, frame)
    scores: dict[int, list[float]] = field(default_factory=dict)  # clip -> masked correlations
    recent: list[tuple[float, float, float]] = field(default_factory=list)  # (score, t_stim, t_newest)
    decisions: list[Decision] = field(default_factory=list)
    warnings: dict[str, int] = field(default_factory=dict)  # the daemon's, when run in this process

    def frame(self, tick: int) -> np.ndarray:
        """What the screen shows at `tick`: the current clip, looped."""
        movie = self.clips[self.clip]
        image = movie[(tick - self.started) % len(movie)]
        self.shown[tick] = (self.clip, image)
        self.shown.pop(tick - HISTORY_FRAMES, None)
        return image

    def decoded(self, recon: np.ndarray, t_stim: float, t_newest: float) -> None:
        """Score a reconstruction against the frame shown at its t_stim, if it is of this clip."""
        tick = round((t_stim - self.t0) * FRAME_RATE_HZ)
        clip, image = self.shown.get(tick, (None, None))
        if clip != self.clip or tick < self.started + SETTLE_FRAMES:
            return
        score = float(frame_correlations(recon[None], image[None], self.mask)[0])
        if np.isfinite(score):
            self.scores.setdefault(clip, []).append(score)
            self.recent.append((score, t_stim, t_newest))

    def decide(self, tick: int) -> Decision | None:
        """Move on when the last `window` scores match, or when the clip has run `max_frames`."""
        recent = self.recent[-self.window :]
        score = float(np.mean([s for s, _, _ in recent])) if recent else float("nan")
        if len(recent) == self.window and score >= self.threshold:
            reason = "matched"
        elif tick - self.started >= self.max_frames:
            reason = "timeout"
        else:
            return None
        unseen = [c for c in range(len(self.clips)) if c not in self.scores and c != self.clip]
        mean = {c: np.mean(s) for c, s in self.scores.items()}
        nxt = unseen[0] if unseen else min(mean, key=mean.get)
        first, last = (recent[0], recent[-1]) if recent else ((np.nan,) * 3, (np.nan,) * 3)
        decision = Decision(
            self.clip,
            nxt,
            reason,
            score,
            len(recent),
            self.t0 + tick / FRAME_RATE_HZ,
            first[1],
            last[1],
            last[2],
        )
        self.decisions.append(decision)
        self.clip, self.started, self.recent = nxt, tick + 1, []
        return decision


def run(exp: Experiment, screen: Screen, client: ReconClient, decisions: int, max_s: float, log) -> None:
    """Show a frame every 1/30 s, read whatever decoded frames arrived, decide; until `decisions`
    decisions were taken or `max_s` seconds passed. Tick 0 is the next 30 Hz boundary of the
    host clock, the rig time the frames are stamped with."""
    exp.t0 = np.ceil(time.time() * FRAME_RATE_HZ) / FRAME_RATE_HZ
    start = time.monotonic() + (exp.t0 - time.time())
    for tick in range(int(max_s * FRAME_RATE_HZ)):
        time.sleep(max(0.0, start + tick / FRAME_RATE_HZ - time.monotonic()))
        screen.show(exp.frame(tick), exp.t0 + tick / FRAME_RATE_HZ)
        for recon, header in client.drain(wait_s=0.0):
            exp.decoded(recon, header.t_stim, header.t_newest)
        if (decision := exp.decide(tick)) is not None:
            print(json.dumps(asdict(decision)), file=log, flush=True)
            if len(exp.decisions) >= decisions:
                return


@contextlib.contextmanager
def standalone(data: Path, artifact: Path, seed: int):
    """The virtual rig of the dataset's mouse and a daemon serving `artifact`, in this process:
    yields (stimulus endpoint, reconstruction client, the loop: its daemon's stats)."""
    backend = open_backend(artifact, "onnxruntime")
    backend.warmup()
    with private_endpoints() as endpoints:
        cfg = DaemonConfig(
            model=ModelConfig(artifact, "onnxruntime"), endpoints=endpoints, log=LogConfig(interval_s=60.0)
        )
        with virtual_loop(cfg, backend, open_mouse(data), seed) as (loop, _, stimulus):
            yield stimulus, loop.display, loop


def rig_timed_baseline(mouse) -> Path:
    """The mouse's gaze baseline fitted on its rig's own plane timing, scored in the bundled
    model's mask: what the virtual rig's stream is decoded with when no model is named."""
    planes = PlaneTiming.for_mouse(mouse.path).n_planes
    mask = load_artifact(DEMO_ARTIFACT).evaluation_mask
    print(f"closed_loop: serving {mouse.name}'s gaze baseline on its {planes}-plane timing", file=sys.stderr)
    path = ensure_baseline(mouse.path.parent, mask, mouse.name, GAZE_BASELINE, multi_plane=planes > 1)
    if not load_artifact(path).onnx_path.is_file():
        export_artifact(path)
    return path


def main(argv: list[str] | None = None, log=sys.stdout) -> Experiment:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--data", type=Path, required=True, help="synthetic dataset root or mouse folder")
    p.add_argument(
        "--artifact",
        type=Path,
        help="model the daemon serves (default: the mouse's gaze baseline in its rig's plane timing)",
    )
    p.add_argument("--tier", default="final_test_main", help="tier whose movies are shown")
    p.add_argument("--clips", type=int, default=4, help="how many of its clips to choose from")
    p.add_argument(
        "--threshold", type=float, default=0.4, help="mean masked correlation that counts as a match"
    )
    p.add_argument("--window", type=int, default=15, help="decoded frames the match is judged on")
    p.add_argument("--max-s", type=float, default=10.0, help="longest a clip stays on the screen")
    p.add_argument("--decisions", type=int, default=4, help="stop after this many decisions")
    p.add_argument("--total-s", type=float, default=60.0, help="stop after this long in any case")
    p.add_argument("--seed", type=int, default=0, help="the virtual mouse's noise seed")
    p.add_argument("--stimulus", help="stimulus endpoint of a running virtual rig (default: run one here)")
    p.add_argument("--recon", default="tcp://127.0.0.1:5556", help="with --stimulus: the daemon's frames")
    args = p.parse_args(argv)
    mouse = open_mouse(args.data)
    clips = [mouse.clip(trial).video for trial in mouse.trials(args.tier)[: args.clips]]
    if len(clips) < 2:
        raise SystemExit(f"closed_loop: {mouse.path} has {len(clips)} clip(s) in tier {args.tier!r}; need 2")
    args.artifact = args.artifact or rig_timed_baseline(mouse)
    mask = load_artifact(args.artifact).evaluation_mask
    exp = Experiment(clips, mask, args.threshold, args.window, int(args.max_s * FRAME_RATE_HZ))
    with contextlib.ExitStack() as stack:
        loop = None
        if args.stimulus is None:
            stimulus, client, loop = stack.enter_context(standalone(args.data, args.artifact, args.seed))
        else:
            stimulus, client = args.stimulus, stack.enter_context(ReconClient(args.recon))
        screen = stack.enter_context(Screen(stimulus, bind=False, session=fresh_session_id("closed-loop")))
        if not screen.wait_for_subscriber(30.0, topic=b"stimulus"):
            raise SystemExit(f"closed_loop: no virtual rig subscribed at {stimulus} within 30 s")
        run(exp, screen, client, args.decisions, args.total_s, log)
        if loop is not None:
            exp.warnings = loop.stats()["warnings"]
            print(f"closed_loop: the daemon's warnings: {exp.warnings or 'none'}", file=sys.stderr)
    matched = sum(d.reason == "matched" for d in exp.decisions)
    print(f"closed_loop: {len(exp.decisions)} decisions, {matched} on decoded frames", file=sys.stderr)
    return exp


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, UserError) as exc:  # one line, no traceback: what to fix
        raise SystemExit(f"closed_loop: {exc}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
