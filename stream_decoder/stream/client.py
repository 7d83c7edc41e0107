"""Clients of the daemon: frames for closed-loop code in three lines, and the control socket.

with ReconClient("tcp://127.0.0.1:5556") as client:
    for frame, header in client:
        ...  # frame (36, 64) read-only; header.t_stim: rig time of the stimulus it shows
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq
import zmq.auth

from stream_decoder.errors import UserError
from stream_decoder.stream.protocol import (
    RECON,
    ReconHeader,
    Rejected,
    decode_recon,
    decode_reply,
    encode_request,
)


@dataclass(frozen=True)
class CurveKeys:
    """A CurveZMQ client identity: its own certificate (with secret) and the daemon's public one."""

    client_secret_file: Path
    server_public_file: Path

    def apply(self, sock: zmq.Socket) -> None:
        public, secret = zmq.auth.load_certificate(self.client_secret_file)
        if secret is None:
            raise ValueError(f"{self.client_secret_file} holds no secret key (use the .key_secret file)")
        server_public, _ = zmq.auth.load_certificate(self.server_public_file)
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_serverkey = server_public


class ReconClient:
    """Subscribes to `recon` frames; iterating yields (frame, header) until `timeout_s` passes in silence.

    Counts frames this subscriber missed (gaps in the daemon's tick counter) in `lost`, and
    rejected (malformed) messages in `rejected`.
    """

    def __init__(
        self,
        endpoint: str = "tcp://127.0.0.1:5556",
        timeout_s: float | None = None,
        curve: CurveKeys | None = None,
        hwm: int = 1000,
        ctx: zmq.Context | None = None,
    ):
        self.timeout_ms = None if timeout_s is None else int(timeout_s * 1000)
        self.ctx = ctx or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        if curve is not None:
            curve.apply(self.sock)
        self.sock.setsockopt(zmq.SUBSCRIBE, RECON)
        self.sock.connect(endpoint)
        self.received = 0
        self.lost = 0
        self.rejected = 0
        self._last: tuple[str, int] | None = None

    def receive(self, timeout_s: float | None = None) -> tuple[np.ndarray, ReconHeader] | None:
        """The next frame, or None after `timeout_s` (default: the client's) without one."""
        timeout_ms = self.timeout_ms if timeout_s is None else int(timeout_s * 1000)
        while self.sock.poll(timeout_ms):
            try:
                frame, header = decode_recon(self.sock.recv_multipart(copy=False))
            except Rejected:
                self.rejected += 1
                continue
            self._count(header)
            return frame, header
        return None

    def drain(self, wait_s: float, limit: int | None = None) -> list[tuple[np.ndarray, ReconHeader]]:
        """Every frame that has arrived (at most `limit`), waiting up to `wait_s` for the first; empty
        if none came. A display shows the newest of them rather than fall behind drawing each."""
        arrived: list[tuple[np.ndarray, ReconHeader]] = []
        while limit is None or len(arrived) < limit:
            item = self.receive(timeout_s=0 if arrived else wait_s)
            if item is None:
                break
            arrived.append(item)
        return arrived

    def __iter__(self) -> Iterator[tuple[np.ndarray, ReconHeader]]:
        while (item := self.receive()) is not None:
            yield item

    def _count(self, header: ReconHeader) -> None:
        self.received += 1
        if self._last is not None and self._last[0] == header.session and header.seq > self._last[1] + 1:
            self.lost += header.seq - self._last[1] - 1
        self._last = (header.session, header.seq)

    def close(self) -> None:
        self.sock.close(linger=0)

    def __enter__(self) -> "ReconClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ControlClient:
    """Request/reply on the daemon's control socket; a request unanswered in `timeout_s` raises."""

    def __init__(
        self,
        endpoint: str = "tcp://127.0.0.1:5557",
        timeout_s: float = 2.0,
        curve: CurveKeys | None = None,
        ctx: zmq.Context | None = None,
    ):
        self.endpoint = endpoint
        self.timeout_ms = int(timeout_s * 1000)
        self.curve = curve
        self.ctx = ctx or zmq.Context.instance()
        self.sock = self._connect()

    def _connect(self) -> zmq.Socket:
        sock = self.ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            self.curve.apply(sock)
        sock.connect(self.endpoint)
        return sock

    def request(self, cmd: str, **fields) -> dict:
        """`cmd` with its `fields` (`load`: artifact=...), its reply once it comes."""
        self.sock.send(encode_request(cmd, **fields))
        if not self.sock.poll(self.timeout_ms):
            # A REQ socket that lost its reply cannot send again; start over with a fresh one.
            self.sock.close(linger=0)
            self.sock = self._connect()
            raise TimeoutError(f"no reply to {cmd!r} from {self.endpoint} within {self.timeout_ms} ms")
        return decode_reply(self.sock.recv())

    def swap(self, artifact: str, wait_s: float = 60.0) -> dict:
        """Ask the daemon to load `artifact` (a path on its host) and wait for the outcome: its
        swap record (`ok` false and `error` when refused; docs/protocol.md §5.5)."""
        before = len(self.request("info").get("swaps", []))
        reply = self.request("load", artifact=artifact)
        if not reply.get("ok"):
            raise UserError(f"{self.endpoint}: {reply.get('error')}")
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            swaps = self.request("info")["swaps"]
            if len(swaps) > before:
                return swaps[before]
            time.sleep(0.2)
        raise TimeoutError(f"{self.endpoint}: {artifact} still loading after {wait_s:g} s; see info")

    def close(self) -> None:
        self.sock.close(linger=0)

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
