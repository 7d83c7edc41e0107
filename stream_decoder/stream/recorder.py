"""Session recording: every accepted activity message and every emitted frame, appended in chunks.

The hot loop copies each record into a preallocated chunk (a memcpy, no allocation). About once a
second (`chunk_seconds`) a full chunk goes to a background thread that writes it as one `.npz`
(to a temporary name, then renamed, so a chunk on disk is always complete) and appends a line to
`index.jsonl`. The hot loop never waits on the disk: if the writer falls so far behind that no
chunk buffer is free, records are dropped and counted. `close()` writes everything (the daemon
calls it on SIGTERM); after SIGKILL at most the open chunk is lost.

    DIR/activity-000000.npz   session_index, sessions, seq, t, first, n, plane, n_planes,
                              behavior (k, 4: pupil, speed, pupil x, pupil y; NaN if not sent),
                              received (unix time), values (all messages' values, concatenated)
    DIR/recon-000000.npz      session_index, sessions, seq, t_newest, seq_newest, t_stim, stale,
                              sent (unix time), frames (k, H, W)
    DIR/frame-000000.npz      raw frames through the front end only: session_index, sessions, seq,
                              t, plane, dy, dx (the shift estimated, px), peak_sd (registration
                              peak), n; with traces on, values: per record F, Fneu and dF/F, n
                              each, of the plane's neurons in model order (its activity records)
    DIR/index.jsonl           one line per chunk: file, kind, records, seq range, t range
"""

import json
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_decoder.atomic import write_atomic_with
from stream_decoder.errors import UserError
from stream_decoder.stream.protocol import Activity, Frame, ReconHeader

CHUNK_PATTERN = re.compile(r"^(activity|recon|frame)-(\d{6})\.npz$")
KINDS = ("activity", "recon", "frame")
BURST_FACTOR = 10  # a chunk holds ten times the nominal rate before rolling over early
POOL_SIZE = 4  # chunk buffers per kind; more in flight than this means the disk cannot keep up


class _Chunk:
    """Preallocated columns for up to `rows` records, plus a flat column of `flat` values (None:
    none, not even an empty one on disk)."""

    def __init__(self, kind: str, columns: dict[str, tuple], rows: int, flat: int | None = None):
        self.kind = kind
        self.columns = {name: np.empty((rows, *shape), dtype) for name, (dtype, shape) in columns.items()}
        self.has_values = flat is not None
        self.values = np.empty(flat or 0, np.float32)
        self.rows = rows
        self.clear()

    def clear(self) -> None:
        self.count = 0
        self.filled = 0
        self.sessions: list[str] = []
        self.opened = 0.0

    def fits(self, n_values: int) -> bool:
        return self.count < self.rows and self.filled + n_values <= self.values.size

    def session_index(self, session: str) -> int:
        if not self.sessions or self.sessions[-1] != session:
            self.sessions.append(session)
        return len(self.sessions) - 1

    def arrays(self) -> dict[str, np.ndarray]:
        out = {name: column[: self.count] for name, column in self.columns.items()}
        out["sessions"] = np.array(self.sessions, dtype=str)
        if self.has_values:
            out["values"] = self.values[: self.filled]
        return out


class Recorder:
    def __init__(
        self,
        directory: Path,
        n_neurons: int,
        frame_shape: tuple[int, int],
        frame_dtype,
        rate_hz: float = 30.0,
        chunk_seconds: float = 1.0,
        clock=time.monotonic,
        trace_values: int = 0,
    ):
        """`trace_values`: the most ROIs of one plane whose F, Fneu and dF/F each raw frame's record
        holds (0: its shift only)."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.chunk_seconds = chunk_seconds
        self.clock = clock
        self.dropped = 0  # records lost because the disk fell behind
        rows = max(64, int(BURST_FACTOR * rate_hz * chunk_seconds))
        self._make = {
            "activity": lambda: _Chunk(
                "activity",
                {
                    "session_index": (np.int32, ()),
                    "seq": (np.int64, ()),
                    "t": (np.float64, ()),
                    "first": (np.int64, ()),
                    "n": (np.int64, ()),
                    "plane": (np.int32, ()),
                    "n_planes": (np.int32, ()),
                    "behavior": (np.float32, (4,)),
                    "received": (np.float64, ()),
                },
                rows=4 * rows,
                flat=rows * n_neurons,
            ),
            "recon": lambda: _Chunk(
                "recon",
                {
                    "session_index": (np.int32, ()),
                    "seq": (np.int64, ()),
                    "t_newest": (np.float64, ()),
                    "seq_newest": (np.int64, ()),
                    "t_stim": (np.float64, ()),
                    "stale": (np.float32, ()),
                    "sent": (np.float64, ()),
                    "frames": (np.dtype(frame_dtype), tuple(frame_shape)),
                },
                rows=rows,
            ),
            "frame": lambda: _Chunk(
                "frame",
                {
                    "session_index": (np.int32, ()),
                    "seq": (np.int64, ()),
                    "t": (np.float64, ()),
                    "plane": (np.int32, ()),
                    "dy": (np.float32, ()),
                    "dx": (np.float32, ()),
                    "peak_sd": (np.float32, ()),
                    "n": (np.int64, ()),
                },
                rows=rows,
                flat=rows * 3 * trace_values,
            ),
        }
        self.traces = trace_values > 0
        self._free = {kind: queue.SimpleQueue() for kind in self._make}
        self._allocated = dict.fromkeys(self._make, 1)
        self._open = {kind: make() for kind, make in self._make.items()}
        self._numbers = {kind: _next_number(self.directory, kind) for kind in self._make}
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_loop, name="recorder", daemon=True)
        self._writer.start()

    def activity(self, msg: Activity, received: float) -> None:
        chunk = self._chunk_for("activity", msg.values.size)
        if chunk is None:
            return
        i, c = chunk.count, chunk.columns
        c["session_index"][i] = chunk.session_index(msg.session)
        c["seq"][i], c["t"][i], c["received"][i] = msg.seq, msg.t, received
        c["first"][i], c["n"][i] = msg.first, msg.values.size
        c["plane"][i], c["n_planes"][i] = msg.plane, msg.n_planes
        c["behavior"][i, :2] = msg.behavior if msg.behavior is not None else np.nan
        c["behavior"][i, 2:] = msg.pupil_center if msg.pupil_center is not None else np.nan
        chunk.values[chunk.filled : chunk.filled + msg.values.size] = msg.values
        chunk.filled += msg.values.size
        chunk.count += 1

    def recon(self, header: ReconHeader, frame: np.ndarray, sent: float) -> None:
        chunk = self._chunk_for("recon", 0)
        if chunk is None:
            return
        i, c = chunk.count, chunk.columns
        c["session_index"][i] = chunk.session_index(header.session)
        c["seq"][i], c["t_newest"][i], c["seq_newest"][i] = header.seq, header.t_newest, header.seq_newest
        c["t_stim"][i], c["stale"][i], c["sent"][i] = header.t_stim, header.stale, sent
        c["frames"][i] = frame
        chunk.count += 1

    def frame(self, raw: Frame, out) -> None:
        """A raw frame's front-end record: `out` is its `frontend.PlaneOutput`."""
        n = out.values.size if self.traces else 0
        chunk = self._chunk_for("frame", 3 * n)
        if chunk is None:
            return
        i, c = chunk.count, chunk.columns
        c["session_index"][i] = chunk.session_index(raw.session)
        c["seq"][i], c["t"][i], c["plane"][i] = raw.seq, raw.t, raw.plane
        c["dy"][i], c["dx"][i], c["peak_sd"][i], c["n"][i] = out.dy, out.dx, out.peak_sd, n
        for trace in (out.f, out.fneu, out.dff) if n else ():
            chunk.values[chunk.filled : chunk.filled + n] = trace
            chunk.filled += n
        chunk.count += 1

    def tick(self) -> None:
        """Hand over chunks open longer than `chunk_seconds` (the daemon calls this when idle too)."""
        now = self.clock()
        for kind, chunk in self._open.items():
            if chunk.count and now - chunk.opened >= self.chunk_seconds:
                self._hand_over(kind)

    def close(self) -> None:
        """Write every record held and wait for the disk; raises what the writer thread hit, if anything."""
        for kind, chunk in self._open.items():
            if chunk.count:
                self._hand_over(kind)
        self._todo.put(None)
        self._writer.join()
        if self._error is not None:
            raise UserError(f"recorder: writing {self.directory} failed: {self._error}") from self._error

    def _chunk_for(self, kind: str, n_values: int) -> _Chunk | None:
        chunk = self._open[kind]
        if chunk.count and (not chunk.fits(n_values) or self.clock() - chunk.opened >= self.chunk_seconds):
            chunk = self._hand_over(kind)
        elif chunk.rows == 0:  # the disk was behind: a buffer may have come back since
            chunk = self._open[kind] = self._take_free(kind)
        if not chunk.fits(n_values):
            self.dropped += 1
            return None
        if chunk.count == 0:
            chunk.opened = self.clock()
        return chunk

    def _hand_over(self, kind: str) -> _Chunk:
        number = self._numbers[kind]
        self._numbers[kind] += 1
        self._todo.put((self.directory / f"{kind}-{number:06d}.npz", self._open[kind]))
        self._open[kind] = self._take_free(kind)
        return self._open[kind]

    def _take_free(self, kind: str) -> _Chunk:
        """A written-out buffer, a new one while fewer than POOL_SIZE exist, else an empty stand-in."""
        try:
            return self._free[kind].get_nowait()
        except queue.Empty:
            if self._allocated[kind] < POOL_SIZE:
                self._allocated[kind] += 1
                return self._make[kind]()
            return _Chunk(kind, {}, rows=0)

    def _write_loop(self) -> None:
        while (job := self._todo.get()) is not None:
            path, chunk = job
            if self._error is None:
                try:
                    _write_chunk(path, chunk)
                except OSError as exc:
                    self._error = exc
            chunk.clear()
            self._free[chunk.kind].put(chunk)


def _write_chunk(path: Path, chunk: _Chunk) -> None:
    arrays = chunk.arrays()
    write_atomic_with(path, lambda f: np.savez(f, **arrays))
    seq, t = arrays["seq"], arrays["t_newest" if chunk.kind == "recon" else "t"]
    line = {
        "file": path.name,
        "kind": chunk.kind,
        "records": int(chunk.count),
        "seq": [int(seq[0]), int(seq[-1])],
        "t": [float(t[0]), float(t[-1])],
        "sessions": chunk.sessions,
    }
    with open(path.parent / "index.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


def _next_number(directory: Path, kind: str) -> int:
    """Numbering continues after chunks already there, so a restarted daemon appends."""
    numbers = [int(m[2]) for p in directory.iterdir() if (m := CHUNK_PATTERN.match(p.name)) and m[1] == kind]
    return max(numbers, default=-1) + 1


@dataclass
class Recording:
    """A recording read back: one array per column over all complete chunks, in order."""

    activity: dict[str, np.ndarray]
    recon: dict[str, np.ndarray]
    frame: dict[str, np.ndarray]  # raw frames' front-end records; empty without a front end

    def activity_values(self, i: int) -> np.ndarray:
        """The values of the i-th recorded activity message (neurons first .. first+n-1)."""
        start = int(self.activity["offsets"][i])
        return self.activity["values"][start : start + int(self.activity["n"][i])]

    def frame_traces(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """F, Fneu and dF/F of the i-th recorded raw frame's neurons (empty: traces were off)."""
        start, n = int(self.frame["offsets"][i]), int(self.frame["n"][i])
        values = self.frame["values"][start : start + 3 * n] if n else np.zeros(0, np.float32)
        return values[:n], values[n : 2 * n], values[2 * n :]


def read_recording(directory: Path) -> Recording:
    """Read every complete chunk (a chunk being written when the daemon died is skipped)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"recording {directory} does not exist")
    files = sorted((m[1], int(m[2]), p) for p in directory.iterdir() if (m := CHUNK_PATTERN.match(p.name)))
    parts = {kind: [] for kind in KINDS}
    for kind, _, path in files:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        sessions = arrays.pop("sessions")
        arrays["session"] = sessions[arrays.pop("session_index")]
        parts[kind].append(arrays)
    activity, recon, frame = (_concatenate(parts[kind]) for kind in KINDS)
    if "n" in activity:
        activity["offsets"] = _offsets(activity["n"])
    if "n" in frame:
        frame["offsets"] = _offsets(3 * frame["n"])
    return Recording(activity, recon, frame)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def _concatenate(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not chunks:
        return {}
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
