"""The whole stream in one process: a rig, the daemon in a thread, a display and a control client.

What `replay`, `serve` and `view` do as three processes on a rig, here on private ipc endpoints:
for the demo, the equivalence and fault tests, and closed-loop code that wants to try a model
without a rig (`virtual_loop`: the rig is the live virtual mouse, answering a stimulus program).
"""

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator

import numpy as np

from stream_decoder.data import MouseDataset
from stream_decoder.display.viewer import LiveFigures, TruthLookup, watch
from stream_decoder.errors import UserError
from stream_decoder.rig.replay import ReplayOptions, ReplayPlan, Rig, fresh_session_id, replay
from stream_decoder.rig.virtual_rig import VirtualRig
from stream_decoder.runtime import Backend
from stream_decoder.stream.client import ControlClient, CurveKeys, ReconClient
from stream_decoder.stream.config import DaemonConfig, EndpointsConfig
from stream_decoder.stream.daemon import Daemon


@contextlib.contextmanager
def private_endpoints(**options) -> Iterator[EndpointsConfig]:
    """ipc endpoints in a fresh short /tmp folder (ipc paths are limited to ~100 bytes)."""
    folder = tempfile.mkdtemp(prefix="sd-", dir="/tmp")
    try:
        yield EndpointsConfig(
            **{role: f"ipc://{folder}/{role}" for role in ("activity", "recon", "control")}, **options
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Loopback:
    """A daemon serving `backend` in a thread, a rig publishing to it, a display and a control client."""

    def __init__(
        self, cfg: DaemonConfig, backend: Backend, curve: CurveKeys | None = None, timeout_s: float = 5.0
    ):
        ep = cfg.endpoints
        self.cfg = cfg
        self.timeout_s = timeout_s
        self.rig = Rig(ep.activity, bind=not ep.activity_bind, session="warmup", curve=curve)
        self.daemon = Daemon(cfg, backend)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.daemon.run, args=(self.stop_event,), daemon=True)
        self.thread.start()
        self.display = ReconClient(ep.recon, timeout_s=timeout_s, curve=curve)
        self.control = ControlClient(ep.control, timeout_s=timeout_s, curve=curve)
        if not self.rig.wait_for_subscriber(timeout_s):
            self.stop()
            raise UserError("the daemon did not subscribe to the rig")

    def attach(self, client: ReconClient) -> None:
        """Publish warm-up frames until `client` gets one: after this it misses nothing.

        Subscriptions reach a PUB socket asynchronously; without this the first frames can go
        to nobody. The warm-up session is the rig's first (for a multi-plane model, a fresh one
        in its timing); restart the rig before real data.
        Once one frame arrives, the client reads on up to the last warm-up message's frame, so
        no warm-up frame still on its way is taken for data, however slow the machine.
        """
        planes = (self.daemon.input_timing or {}).get("n_planes", 1)  # the model's: no timing warning
        zeros = np.zeros(self.daemon.n_neurons, np.float32)
        rate = self.cfg.stream.rate_hz
        if planes > 1:  # its grid starts afresh, whatever an earlier attach left
            self.rig.restart(fresh_session_id("warmup"))
        for k in range(200):  # multi-plane: one tick each, a message completing the tick before
            self.rig.send(zeros, k / rate if planes > 1 else 0.0, n_planes=planes)
            if (item := client.receive(timeout_s=0.1)) is not None:
                break
        else:
            raise UserError("no frame reached the client")
        last = (self.rig.session, self.rig.seq - 1)
        if planes > 1:  # the last message's tick, completed by one more
            self.rig.send(zeros, (k + 1) / rate, n_planes=planes)
        while item is not None and (item[1].session, item[1].seq_newest) != last:
            item = client.receive(timeout_s=self.timeout_s)
        if item is None:
            raise UserError("the last warm-up frame did not reach the client")

    def play(
        self,
        plan: ReplayPlan,
        options: ReplayOptions,
        sink,
        frames: int,
        session: str | None = None,
        progress: bool = False,
    ) -> LiveFigures:
        """Replay `plan` through the daemon to the display, showing `frames` frames in `sink` with
        their ground truth: `replay`, `serve` and `view` in one call, as a session of its own
        (default: a fresh id, as `replay` gives each run)."""
        self.attach(self.display)
        self.rig.restart(session or fresh_session_id())
        sender = threading.Thread(
            target=replay, args=(plan, self.rig, options), kwargs={"progress": progress}
        )
        sender.start()
        try:
            truth = TruthLookup(plan, options.restart_after)
            return watch(self.display, sink, truth, frames, timeout_s=self.timeout_s, wait_s=self.timeout_s)
        finally:
            sender.join()

    def stats(self) -> dict:
        return self.control.request("stats")

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
        self.display.close()
        self.control.close()
        self.rig.close(linger_ms=0)
        if self.thread.is_alive():
            raise UserError("the daemon did not stop within 10 s")

    def __enter__(self) -> "Loopback":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def virtual_loop(cfg: DaemonConfig, backend: Backend, mouse: MouseDataset, seed: int = 0):
    """A Loopback whose rig is `mouse`'s virtual rig: yields (loopback, virtual rig, stimulus
    endpoint). A stimulus program publishes to the endpoint (`Screen`) and reads the frames from
    `loopback.display`, which has been attached, so it misses none. The endpoints are those of
    `private_endpoints`: the stimulus one is an ipc path beside the activity one."""
    with Loopback(cfg, backend) as loop:
        loop.attach(loop.display)
        virtual = VirtualRig.of(mouse, loop.rig, seed)
        endpoint = cfg.endpoints.activity.rsplit("/", 1)[0] + "/stimulus"
        stop = threading.Event()
        thread = threading.Thread(target=virtual.run, args=(endpoint, stop), daemon=True)
        thread.start()
        try:
            yield loop, virtual, endpoint
        finally:
            stop.set()
            thread.join(10)
