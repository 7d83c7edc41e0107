"""The daemon's three sockets, set up from the config: limits, high-water marks, CurveZMQ, monitors.

Monitors report connection events on each socket so that refused handshakes (a peer without an
allowed key, or without CurveZMQ at all) and disconnections are counted, not just logged by libzmq.
They also catch the one disconnection libzmq does not repair: a connecting socket cut off for a
protocol error (a frame over ZMQ_MAXMSGSIZE) is never reconnected, so the daemon reconnects it.
"""

import contextlib
import functools
import operator
from dataclasses import dataclass, field

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from stream_decoder.errors import UserError
from stream_decoder.stream.config import DaemonConfig
from stream_decoder.stream.protocol import ACTIVITY, FRAME, MAX_FRAME_ITEMSIZE, MAX_HEADER_BYTES, MAX_ITEMSIZE

CONTROL_MAX_BYTES = 64 * 1024  # control requests are tiny maps
PEER_EVENTS = {
    zmq.EVENT_ACCEPTED: "accepted",
    zmq.EVENT_CONNECTED: "connected",
    zmq.EVENT_DISCONNECTED: "disconnected",
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "handshake_ok",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused_auth",  # CurveZMQ key not in the allowed set
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "refused_protocol",  # e.g. no CurveZMQ where it is required
    # The peer hung up mid-handshake: often a libzmq client without CurveZMQ that read our greeting
    # and hung up before its own (naming its mechanism) had left, so we never saw the mismatch.
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake_failed",
}
RETRY_EVENTS = (zmq.EVENT_CONNECT_DELAYED, zmq.EVENT_CONNECT_RETRIED)  # libzmq is reconnecting by itself
MONITORED = functools.reduce(operator.or_, (*PEER_EVENTS, *RETRY_EVENTS))
REPAIR_AFTER_S = 0.25  # a disconnection with no reconnect attempt after this long is final
REFUSED = ("refused_auth", "refused_protocol", "handshake_failed")
# Flags as plain ints: pyzmq's multipart helpers combine enum flags per frame, which costs more
# than libzmq takes to move the message (about 20 us a message on the 2-core box).
_NOBLOCK = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)


def receive(sock: zmq.Socket) -> list[zmq.Frame]:
    """All frames of the next message without copying them; zmq.Again if none is waiting."""
    frames = [sock.recv(_NOBLOCK, copy=False)]
    while frames[-1].more:
        frames.append(sock.recv(_NOBLOCK, copy=False))
    return frames


def publish(sock: zmq.Socket, frames: list) -> None:
    """Send a multipart message without ever blocking (a PUB drops for subscribers that lag)."""
    for frame in frames[:-1]:
        sock.send(frame, _MORE)
    sock.send(frames[-1], _NOBLOCK)


def activity_frame_limit(n_neurons: int, configured: int, frame_shape: tuple[int, int] | None = None) -> int:
    """ZMQ_MAXMSGSIZE for the activity socket: configured, else 4x the largest legal payload (an
    activity vector, or a raw frame where the front end is on).

    The slack lets slightly oversized messages through to be rejected and counted as `oversized`;
    beyond it libzmq cuts the sender off before the bytes reach memory.
    """
    largest = n_neurons * MAX_ITEMSIZE
    if frame_shape is not None:
        largest = max(largest, frame_shape[0] * frame_shape[1] * MAX_FRAME_ITEMSIZE)
    return configured or max(4 * largest, 4 * MAX_HEADER_BYTES)


@dataclass
class DaemonSockets:
    activity: zmq.Socket  # SUB
    recon: zmq.Socket  # PUB
    control: zmq.Socket  # REP
    monitors: dict[zmq.Socket, str] = field(default_factory=dict)  # monitor PAIR -> role
    authenticator: ThreadAuthenticator | None = None
    activity_connect: str | None = None  # the endpoint the SUB connects to (None: it binds)
    _repair_due: float | None = None

    def endpoints(self) -> dict[str, str]:
        """Where each socket actually is (a `*` port resolved)."""
        roles = (("activity", self.activity), ("recon", self.recon), ("control", self.control))
        return {role: sock.getsockopt_string(zmq.LAST_ENDPOINT) for role, sock in roles}

    def peer_event(self, monitor: zmq.Socket, now: float) -> str | None:
        """One monitor message as `role.event` (e.g. `recon.refused_auth`); None for a reconnect attempt."""
        event = recv_monitor_message(monitor, zmq.NOBLOCK)["event"]
        role = self.monitors[monitor]
        if role == "activity" and self.activity_connect is not None:
            self._repair_due = now + REPAIR_AFTER_S if event == zmq.EVENT_DISCONNECTED else None
        return None if event in RETRY_EVENTS else f"{role}.{PEER_EVENTS.get(event, str(event))}"

    def repair(self, now: float) -> bool:
        """Reconnect the activity SUB if libzmq gave up on it; True if it had to."""
        if self._repair_due is None or now < self._repair_due:
            return False
        self._repair_due = None
        with contextlib.suppress(zmq.ZMQError):  # libzmq may have forgotten the endpoint already
            self.activity.disconnect(self.activity_connect)
        self.activity.connect(self.activity_connect)
        return True

    @property
    def closed(self) -> bool:
        return self.control.closed

    def close(self) -> None:
        for sock in (self.activity, self.recon, self.control):
            sock.disable_monitor()
        for sock in (*self.monitors, self.activity, self.recon, self.control):
            sock.close(linger=0)
        if self.authenticator is not None:
            self.authenticator.stop()


def open_sockets(
    ctx: zmq.Context, cfg: DaemonConfig, n_neurons: int, frame_shape: tuple[int, int] | None = None
) -> DaemonSockets:
    """Create, secure, limit and bind/connect the daemon's sockets; errors name the endpoint.
    `frame_shape`: raw frames of this size come in too (the front end is on)."""
    ep, st = cfg.endpoints, cfg.stream
    activity = ctx.socket(zmq.SUB)
    activity.setsockopt(zmq.MAXMSGSIZE, activity_frame_limit(n_neurons, st.max_message_bytes, frame_shape))
    activity.setsockopt(zmq.RCVHWM, st.recv_hwm)
    activity.setsockopt(zmq.SUBSCRIBE, ACTIVITY)
    if frame_shape is not None:
        activity.setsockopt(zmq.SUBSCRIBE, FRAME)
    recon = ctx.socket(zmq.PUB)
    recon.setsockopt(zmq.SNDHWM, st.send_hwm)
    recon.setsockopt(zmq.MAXMSGSIZE, CONTROL_MAX_BYTES)  # a PUB only ever receives subscriptions
    control = ctx.socket(zmq.REP)
    control.setsockopt(zmq.MAXMSGSIZE, CONTROL_MAX_BYTES)
    connect = None if ep.activity_bind else ep.activity
    sockets = DaemonSockets(activity, recon, control, activity_connect=connect)
    roles = (("activity", activity), ("recon", recon), ("control", control))
    try:
        if cfg.security.curve:
            sockets.authenticator = _secure(ctx, cfg, [s for _, s in roles])
        for role, sock in roles:
            sockets.monitors[sock.get_monitor_socket(MONITORED)] = role
            sock.setsockopt(zmq.LINGER, 0)
        attach(activity, ep.activity, bind=ep.activity_bind, what="[endpoints] activity")
        attach(recon, ep.recon, bind=True, what="[endpoints] recon")
        attach(control, ep.control, bind=True, what="[endpoints] control")
    except BaseException:
        sockets.close()
        raise
    return sockets


def _secure(ctx: zmq.Context, cfg: DaemonConfig, sockets: list[zmq.Socket]) -> ThreadAuthenticator:
    """CurveZMQ with the daemon as server on every socket; only the listed client keys get in."""
    sec = cfg.security
    try:
        public, secret = zmq.auth.load_certificate(sec.server_secret_key)
    except (OSError, ValueError) as exc:
        raise ValueError(f"[security] server_secret_key {sec.server_secret_key}: {exc}") from None
    if secret is None:
        raise ValueError(f"[security] server_secret_key {sec.server_secret_key} holds only a public key")
    authenticator = ThreadAuthenticator(ctx)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(sec.client_keys_dir))
    for sock in sockets:
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True
    return authenticator


def attach(sock: zmq.Socket, endpoint: str, bind: bool, what: str) -> None:
    """Bind or connect; a taken port or a bad endpoint is a RuntimeError naming `what` and it."""
    try:
        if bind:
            sock.bind(endpoint)
        else:
            sock.connect(endpoint)
    except zmq.ZMQError as exc:
        raise UserError(f"{what}: cannot {'bind' if bind else 'connect'} {endpoint}: {exc}") from None
