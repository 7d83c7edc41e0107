"""The rig-side daemon: activity in over ZeroMQ -> Backend.step -> reconstructed frames out, at 30 Hz.

One thread, one poller over the activity SUB, the control REP and the socket monitors. Between
messages it sleeps in the poller, waking once a few milliseconds before the next message is due to
prefetch the model into the CPU caches (`[stream] prefetch_ms`). The hot path per message: zero-copy
receive, header checks, a copy of the values into the preallocated neuron vector, one `step`, one
non-blocking publish, a memcpy into the recorder's open chunk. A raw `frame` message (with a
`[frontend]`) first goes through the front end (`raw_input`, about 3 ms), then the same path.
Nothing in it waits on a subscriber or the disk, and no input can stop it: every bad message is
counted under its reason, and even an unexpected error in handling one message is counted and
logged, and the next message is served.
"""

import gc
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
import zmq

from stream_decoder.errors import UserError
from stream_decoder.runtime import Backend, open_backend
from stream_decoder.stream.assembly import Assembler
from stream_decoder.stream.config import DaemonConfig, config_warnings
from stream_decoder.stream.forecast import ArrivalForecast
from stream_decoder.stream.protocol import (
    CONTROL_COMMANDS,
    FRAME,
    FRAME_DTYPES,
    INPUT_DTYPES,
    RECON_DTYPES,
    VERSION,
    Activity,
    ReconHeader,
    Rejected,
    decode_activity,
    decode_frame,
    decode_request,
    encode_recon,
    encode_reply,
)
from stream_decoder.stream.realtime import apply_realtime
from stream_decoder.stream.recorder import Recorder
from stream_decoder.stream.sockets import REFUSED, open_sockets, publish, receive
from stream_decoder.stream.stats import DaemonStats, RateLimitedLog, kv
from stream_decoder.stream.swap import Loader, SwapRecord, refusal, thread_loader
from stream_decoder.stream.watch import InputWatch

log = logging.getLogger(__name__)
POLL_MS = 50  # longest the loop sleeps: bounds how late a stop request or a recorder flush is
DRAIN_LIMIT = 256  # activity messages handled per wake-up before control gets a turn


class FrameOut:
    """Backend frames (float32, 0-255) in the configured wire dtype; uint8 via preallocated buffers."""

    def __init__(self, dtype: str, shape: tuple[int, int]):
        self.dtype = RECON_DTYPES[dtype]
        self._scratch = np.empty(shape, np.float32)
        self._out = np.empty(shape, self.dtype)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if self.dtype == np.float32:
            return np.asarray(frame, np.float32)
        np.clip(frame, 0.0, 255.0, out=self._scratch)
        np.rint(self._scratch, out=self._scratch)
        np.copyto(self._out, self._scratch, casting="unsafe")
        return self._out


class Daemon:
    """One rig's decoding loop. Constructing it binds the sockets (so a bad endpoint fails at
    start-up); `run` serves until told to stop, one `run_once` per wake-up of `poll`.

    `clock` (monotonic seconds) times every decision the loop takes: the prefetch forecast, how
    long to sleep, socket repair, recorder flushes, log rate limits and reports. A test passes a
    fake one and steps the loop with `poll` and `run_once`, so nothing depends on the scheduler.
    """

    def __init__(
        self,
        cfg: DaemonConfig,
        backend: Backend,
        ctx: zmq.Context | None = None,
        clock: Callable[[], float] = time.monotonic,
        loader: Loader | None = None,
    ):
        self.cfg = cfg
        self.clock = clock
        meta = backend.artifact.meta
        self.n_neurons = meta.n_neurons
        self.stats = DaemonStats()
        self.forecast = ArrivalForecast(cfg.stream.prefetch_ms / 1e3)
        self.log = RateLimitedLog(log, cfg.log.interval_s, clock)
        self.load = loader  # how `load` opens an artifact off the loop; a thread when first needed
        self.pending: tuple[str, Future] | None = None  # the artifact being opened, and its job
        self.swaps: list[SwapRecord] = []
        state = backend.artifact.state_dict
        input_timing = meta.provenance.get("input_timing")
        self.raw = None
        if cfg.frontend.rois is not None:
            from stream_decoder.stream.raw_input import RawInput  # scipy and the ROI readers: only when used

            self.raw = RawInput(cfg.frontend, self.n_neurons, state["activity_mean"].numpy(), input_timing)
        self.assembler = Assembler(
            self.n_neurons,
            state["behavior_mean"].numpy(),
            cfg.stream.rate_hz,
            cfg.stream.max_catchup_ticks,
            None if self.raw is None else self.raw.resting,
        )
        self.frame_out = FrameOut(cfg.stream.output_dtype, tuple(meta.frame_shape))
        self.tick_seq = 0
        self.watch = InputWatch(self.stats.warnings, self.log, self.assembler, None)
        self.use(backend)
        self.ctx = ctx or zmq.Context()
        self._own_ctx = ctx is None
        self.sockets = open_sockets(
            self.ctx, cfg, self.n_neurons, None if self.raw is None else self.raw.frame_shape
        )
        self.poller = zmq.Poller()
        for sock in (self.sockets.activity, self.sockets.control, *self.sockets.monitors):
            self.poller.register(sock, zmq.POLLIN)
        self._next_report = clock() + cfg.log.interval_s
        self.recorder = None
        if cfg.recorder.dir is not None:
            try:
                self.recorder = Recorder(
                    cfg.recorder.dir,
                    self.n_neurons,
                    tuple(meta.frame_shape),
                    self.frame_out.dtype,
                    cfg.stream.rate_hz,
                    cfg.recorder.chunk_seconds,
                    clock=clock,
                    trace_values=self.raw.most_rois if self.raw and cfg.recorder.frontend_traces else 0,
                )
            except OSError as exc:
                self.sockets.close()
                raise UserError(f"[recorder] dir {cfg.recorder.dir}: {exc}") from exc
        log.info(
            kv(
                "serving",
                model=self.model_id,
                backend=backend.name,
                neurons=self.n_neurons,
                **self.sockets.endpoints(),
                curve=cfg.security.curve,
                recording=cfg.recorder.dir or "off",
            )
        )
        for warning in config_warnings(cfg):
            log.warning(warning)

    def use(self, backend: Backend) -> None:
        """Serve `backend` from the next tick: its id on every frame, its lookahead and input timing."""
        self.backend = backend
        meta = backend.artifact.meta
        self.model_id = meta.model_id
        self.lookahead_s = meta.lookahead / self.cfg.stream.rate_hz
        self.input_timing = meta.provenance.get("input_timing")  # None: the artifact records none
        self.watch.model_planes = None if self.input_timing is None else self.input_timing["n_planes"]
        self.watch.needs_pupil = bool(backend.artifact.config.gaze_gain)  # negative: a mirrored eye camera

    # ---- the loop ----

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set; then flush the recorder and close the sockets."""
        try:
            while not stop.is_set():
                self.run_once(self.poll())
        finally:
            self.close()

    def poll(self, timeout_ms: int | None = None) -> dict:
        """The sockets ready to read, after sleeping until one is, or until the forecast's prefetch
        is due (never longer than POLL_MS); `timeout_ms` overrides the sleep."""
        if timeout_ms is None:
            timeout_ms = self.forecast.wait_ms(self.clock(), POLL_MS)
        return dict(self.poller.poll(timeout_ms))

    def run_once(self, ready: dict) -> None:
        """One pass of the loop: serve the `ready` sockets, else prefetch if due; then the chores."""
        if self.sockets.activity in ready:
            self._drain_activity()
        elif self.forecast.take(self.clock()):
            self.backend.prefetch()
            self.stats.prefetches += 1
        if self.sockets.control in ready:
            self._serve_control()
        if self.pending is not None and self.pending[1].done():
            self._take_swap()
        for monitor in self.sockets.monitors:
            if monitor in ready:
                self._peer_event(monitor)
        if self.sockets.repair(self.clock()):
            self.stats.peers["activity.reconnected"] += 1
            self.log.warning("reconnected", "activity_reconnected", endpoint=self.cfg.endpoints.activity)
        if self.recorder is not None:
            self.recorder.tick()
        if self.clock() >= self._next_report:
            self._next_report += self.cfg.log.interval_s
            self._report()

    def close(self) -> None:
        """Flush the recording and close the sockets; once (again: nothing)."""
        if self.sockets.closed:
            return
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
        self.sockets.close()
        if self._own_ctx:
            self.ctx.term()
        log.info(kv("stopped", **self._summary()))

    def _drain_activity(self) -> None:
        sock = self.sockets.activity
        for _ in range(DRAIN_LIMIT):
            try:
                frames = receive(sock)
            except zmq.Again:
                return
            received = time.perf_counter()
            self.forecast.arrived(self.clock())
            try:
                if self.raw is not None and memoryview(frames[0]) == FRAME:
                    self.handle_frame(frames, received)
                else:
                    self.handle_activity(frames, received)
            except Exception as exc:  # one bad tick must not end the session: count, log, carry on
                self.stats.dropped["internal_error"] += 1
                self.log.warning("internal_error", "internal_error", error=f"{type(exc).__name__}: {exc}")

    # ---- activity in, frames out ----

    def handle_activity(self, frames, received: float) -> None:
        """Validate, assemble and decode one activity message (frames as received, not copied)."""
        self.stats.received += 1
        try:
            msg = decode_activity(frames, self.n_neurons)
            admitted = self.assembler.admit(msg)
        except Rejected as exc:
            self._rejected(exc)
            return
        self.stats.accepted += 1
        self._decode(msg, [msg], admitted, received)

    def handle_frame(self, frames, received: float) -> None:
        """Validate one raw frame, run it through the front end, decode its plane's activity."""
        self.stats.received += 1
        try:
            raw = decode_frame(frames, self.raw.frame_shape, self.raw.n_planes)
            admitted = self.assembler.admit(raw)
        except Rejected as exc:
            self._rejected(exc)
            return
        try:
            parts = self.raw.parts(raw)
            self.stats.accepted += 1
        except Rejected as exc:  # in sequence but unusable: counted as rejected, time still moves on
            self._rejected(exc)
            parts = None
        self._decode(raw, parts or [self.raw.held(raw)], admitted, received)
        if parts and self.recorder is not None:  # after the frame is out, as the activity records
            self.recorder.frame(raw, self.raw.latest)

    def _rejected(self, exc: Rejected) -> None:
        self.stats.rejected[exc.reason] += 1
        self.log.warning(f"rejected.{exc.reason}", "rejected", reason=exc.reason, detail=exc.detail)

    def _decode(self, msg, parts: list[Activity], admitted: tuple[bool, int], received: float) -> None:
        """Emit the frames `msg` completes and apply its `parts` (one per contiguous neuron run)."""
        new_session, missed = admitted
        if new_session:
            self._new_session(msg)
        if missed:
            self.stats.gaps += 1
            self.stats.lost += missed
            self.log.warning("gap", "seq_gap", session=msg.session, seq=msg.seq, missed=missed)
        self.watch.message(msg)
        try:
            skipped = self.assembler.skipped_ticks
            for t in self.assembler.take(msg, parts):
                self._emit(t, received)
            if self.assembler.skipped_ticks > skipped:
                self.stats.dropped["catchup_ticks"] += self.assembler.skipped_ticks - skipped
        finally:  # recorded after the frame is out, so the disk copy never delays it
            if self.recorder is not None:
                for part in parts:
                    self.recorder.activity(part, time.time())

    def _new_session(self, msg: Activity) -> None:
        self.backend.reset()
        self.tick_seq = 0
        self.stats.sessions += 1
        log.info(kv("session", session=msg.session, seq=msg.seq, t=msg.t, n_planes=msg.n_planes))
        self.watch.session_started(msg)

    def _emit(self, tick_t: float, received: float) -> None:
        """Decode the assembled state as the frame for rig time `tick_t` and publish it."""
        a = self.assembler
        frame = self.frame_out(self.backend.step(a.activity, a.behavior))
        newest = a.newest
        stale = a.stale_fraction(tick_t)
        header = ReconHeader(
            a.session,
            self.tick_seq,
            newest.t,
            newest.seq,
            tick_t - self.lookahead_s,
            self.model_id,
            stale,
        )
        try:
            publish(self.sockets.recon, encode_recon(header, frame))
        except zmq.Again:  # a PUB drops for slow subscribers itself; this is the belt to its braces
            self.stats.dropped["send_again"] += 1
        self.tick_seq += 1
        self.stats.emitted += 1
        self.stats.latency.add(time.perf_counter() - received)
        self.watch.frame(tick_t, stale)
        if self.recorder is not None:
            self.recorder.recon(header, frame, time.time())

    # ---- control and peers ----

    def _serve_control(self) -> None:
        sock = self.sockets.control
        try:
            frames = receive(sock)
        except zmq.Again:
            return
        try:
            request = decode_request(frames)
            reply = self.reply(request.cmd, request.artifact)
        except Rejected as exc:
            self.stats.control_errors[exc.reason] += 1
            reply = {"ok": False, "error": str(exc)}
        except Exception as exc:  # a REP socket that does not answer can never receive again
            self.stats.control_errors["internal_error"] += 1
            reply = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        sock.send(encode_reply(reply))

    def reply(self, cmd: str, artifact: str | None = None) -> dict:
        """The control socket's answer to `cmd` (ping, info, stats, load `artifact`; anything else
        is an error)."""
        if cmd == "load":
            return self._begin_swap(artifact)
        if cmd == "ping":
            return {"ok": True, "version": VERSION}
        if cmd == "info":
            return {
                "ok": True,
                **self.backend.info,  # the model: id, neurons, shapes, lookahead, backend and options
                "neuron_set": self.backend.artifact.meta.neuron_set or None,
                "input_timing": self.input_timing,
                "rate_hz": self.cfg.stream.rate_hz,
                "input_dtypes": list(INPUT_DTYPES),
                "inputs": ["activity"] if self.raw is None else ["activity", "frame"],
                "frame_input": None
                if self.raw is None
                else {
                    "shape": list(self.raw.frame_shape),
                    "n_planes": self.raw.n_planes,
                    "dtypes": list(FRAME_DTYPES),
                },
                "output_dtype": self.cfg.stream.output_dtype,
                "version": VERSION,
                "endpoints": self.sockets.endpoints(),
                "swaps": [record.to_dict() for record in self.swaps],
                "loading": None if self.pending is None else self.pending[0],
            }
        if cmd == "stats":
            return {"ok": True, "model": self.model_id, **self._summary()}
        self.stats.control_errors["unknown_cmd"] += 1
        return {"ok": False, "error": f"unknown command {cmd!r:.60}; known: {', '.join(CONTROL_COMMANDS)}"}

    # ---- live model swap (stream/swap.py) ----

    def _begin_swap(self, artifact: str) -> dict:
        """Start opening `artifact` off the loop; the reply says it is loading, or why not."""
        if self.pending is not None:
            return {"ok": False, "error": f"still loading {self.pending[0]}; ask again when info shows it"}
        running, planes, model = self.backend.artifact, self.watch.stream_planes, self.cfg.model

        def open_checked() -> Backend:
            backend = open_backend(artifact, model.backend, **model.backend_options())
            reason = refusal(running, backend.artifact, planes)
            if reason is not None:
                raise ValueError(f"{backend.artifact.model_id} refused: {reason}")
            backend.warmup()
            return backend

        self.load = self.load or thread_loader()
        self.pending = (artifact, self.load(open_checked))
        log.info(kv("loading", artifact=artifact, running=self.model_id))
        return {"ok": True, "loading": artifact, "model": self.model_id}

    def _take_swap(self) -> None:
        """Serve the opened model from the next tick, or record why it was refused."""
        artifact, job = self.pending
        self.pending = None
        try:
            backend = job.result()
        except Exception as exc:  # any failure to open is a refusal: the running model serves on
            self.swaps.append(SwapRecord(artifact, False, previous=self.model_id, error=str(exc)))
            self.stats.control_errors["load_refused"] += 1
            log.warning(kv("swap_refused", artifact=artifact, error=str(exc)))
            return
        record = SwapRecord(
            artifact, True, backend.artifact.model_id, self.model_id, self.tick_seq, self.assembler.session
        )
        self.use(backend)
        self.swaps.append(record)
        log.info(kv("swapped", **record.to_dict()))

    def _summary(self) -> dict:
        summary = self.stats.snapshot()
        summary["session"] = self.assembler.session
        summary["recorder_dropped"] = self.recorder.dropped if self.recorder is not None else 0
        if self.raw is not None:
            summary["frontend"] = self.raw.stats()
        return summary

    def _peer_event(self, monitor: zmq.Socket) -> None:
        event = self.sockets.peer_event(monitor, self.clock())
        if event is None:
            return
        self.stats.peers[event] += 1
        if event.split(".")[1] in REFUSED:
            self.log.warning(f"peer.{event}", "peer_refused", socket_event=event)

    def _report(self) -> None:
        s = self.stats
        latency = s.latency.percentiles_ms()
        log.info(
            kv(
                "stats",
                received=s.received,
                emitted=s.emitted,
                lost=s.lost,
                rejected=sum(s.rejected.values()),
                dropped=sum(s.dropped.values()),
                p50_ms=latency.get("p50", float("nan")),
                p99_ms=latency.get("p99", float("nan")),
            )
        )


def serve(cfg: DaemonConfig, stop: threading.Event) -> None:
    """Schedule as configured, load the model, warm it up, and serve until `stop` is set."""
    log.info(kv("scheduling", **apply_realtime(cfg.realtime)))
    backend = open_backend(cfg.model.artifact, cfg.model.backend, **cfg.model.backend_options())
    backend.warmup()
    daemon = Daemon(cfg, backend)
    # Everything allocated so far lives as long as the process: take it out of the cyclic garbage
    # collector's full passes, which would otherwise walk torch's objects mid-session (milliseconds).
    gc.collect()
    gc.freeze()
    daemon.run(stop)
