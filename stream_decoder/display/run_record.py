"""What a demo run leaves for its report: every received frame with where in the plan it belongs and
when it came, the daemon's figures and the evaluation mask, in one small RUN_DIR/run.npz.

The movie files are pictures; this is the data, so `stream-decoder report` can score the run
again, decode the same frames with other models and draw its figures without the rig.
"""

import json
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_decoder.atomic import write_atomic_with
from stream_decoder.display.viewer import MovieSink, TruthLookup
from stream_decoder.rig.replay import ReplayPlan
from stream_decoder.stream.protocol import ReconHeader

RUN_FILE = "run.npz"
SUMMARY_FILE = "summary.json"
NOWHERE = -1  # clip and frame of a reconstruction outside every clip of the plan


def to_uint8(frame: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


class RunSink(MovieSink):
    """The demo's movie sink, also noting per frame its (clip, frame) in the plan, its latency (shown
    on this host's clock minus the rig time of its newest input, as LiveFigures counts it) and its
    arrival time."""

    def __init__(self, out: Path, plan: ReplayPlan, keep: int, clock=time.monotonic, wall_clock=time.time):
        super().__init__(out, keep=keep)
        self.lookup = TruthLookup(plan)
        self.clock, self.wall_clock = clock, wall_clock
        self.notes: deque = deque(maxlen=keep)  # (clip, frame, latency_s, arrival_s, model), beside `frames`

    def show(self, recon: np.ndarray, truth: np.ndarray | None, header: ReconHeader) -> None:
        super().show(recon, truth, header)
        clip, frame = self.lookup.where(header) or (NOWHERE, NOWHERE)
        self.notes.append((clip, frame, self.wall_clock() - header.t_newest, self.clock(), header.model))


@dataclass
class RunRecord:
    """One demo run, frame by frame (F received frames of H x W)."""

    recon: np.ndarray  # (F, H, W) uint8: what the daemon sent
    truth: np.ndarray  # (F, H, W) uint8: the stimulus frame it reconstructs (gray where `clip` < 0)
    t_stim: np.ndarray  # (F,) rig seconds of the stimulus frame shown
    clip: np.ndarray  # (F,) index into `trials`, NOWHERE outside every clip
    frame: np.ndarray  # (F,) frame of that clip, NOWHERE outside every clip
    latency_s: np.ndarray  # (F,) shown on this host minus the rig time of the newest input
    arrival_s: np.ndarray  # (F,) this host's monotonic clock, from the first frame
    model: np.ndarray  # (F,) str: the id of the model that made each frame (a live swap changes it)
    trials: list[str]
    mask: np.ndarray | None  # (H, W) bool evaluation mask, None: every pixel
    daemon_stats: dict

    @classmethod
    def from_sink(cls, sink: RunSink, trials: list[str], mask: np.ndarray | None, stats: dict) -> "RunRecord":
        recons, truths, t_stim = zip(*sink.frames, strict=True)
        clip, frame, latency, arrival, model = (np.asarray(c) for c in zip(*sink.notes, strict=True))
        gray = np.full(recons[0].shape, 127, np.uint8)
        return cls(
            recon=np.stack([to_uint8(r) for r in recons]),
            truth=np.stack([gray if t is None else to_uint8(t) for t in truths]),
            t_stim=np.asarray(t_stim, np.float64),
            clip=clip.astype(np.int32),
            frame=frame.astype(np.int32),
            latency_s=latency.astype(np.float64),
            arrival_s=(arrival - arrival[0]).astype(np.float64),
            model=model.astype(str),
            trials=list(trials),
            mask=mask,
            daemon_stats=stats,
        )

    def save(self, run_dir: Path) -> Path:
        path = Path(run_dir) / RUN_FILE
        arrays = {k: getattr(self, k) for k in ("recon", "truth", "t_stim", "clip", "frame")}
        arrays |= {
            "latency_s": self.latency_s,
            "arrival_s": self.arrival_s,
            "model": self.model.astype(str),
            "trials": np.asarray(self.trials),
        }
        arrays["mask"] = np.zeros((0, 0), bool) if self.mask is None else self.mask
        arrays["daemon_stats"] = np.asarray(json.dumps(self.daemon_stats))
        write_atomic_with(path, lambda f: np.savez_compressed(f, **arrays))
        return path

    @classmethod
    def load(cls, run_dir: Path) -> "RunRecord":
        path = Path(run_dir) / RUN_FILE
        try:
            with np.load(path, allow_pickle=False) as z:
                mask = z["mask"]
                return cls(
                    **{
                        k: z[k]
                        for k in (
                            "recon",
                            "truth",
                            "t_stim",
                            "clip",
                            "frame",
                            "latency_s",
                            "arrival_s",
                            "model",
                        )
                    },
                    trials=[str(t) for t in z["trials"]],
                    mask=mask if mask.size else None,
                    daemon_stats=json.loads(str(z["daemon_stats"])),
                )
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{run_dir}: no {RUN_FILE} there; give a folder `stream-decoder demo --out` wrote (a demo "
                "run older than the report has none: run it again)"
            ) from None
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a demo run record ({exc}); run the demo again") from None

    def model_spans(self) -> list[dict]:
        """Each run of consecutive frames one model made: its id, first frame and frame count."""
        starts = [0, *np.flatnonzero(self.model[1:] != self.model[:-1]) + 1]
        ends = [*starts[1:], len(self.model)]
        return [
            {"model": str(self.model[a]), "first_frame": int(a), "frames": int(b - a)}
            for a, b in zip(starts, ends, strict=True)
        ]

    def located(self) -> np.ndarray:
        """(F,) bool: the frames that belong to a clip of the plan."""
        return self.clip >= 0


def load_summary(run_dir: Path) -> dict:
    path = Path(run_dir) / SUMMARY_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{run_dir}: no {SUMMARY_FILE} there: not a folder `stream-decoder demo` wrote (give its --out)"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc}); run the demo again") from None
