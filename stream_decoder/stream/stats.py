"""What the daemon counts and how it talks about it: counters, latency percentiles, rate-limited logs."""

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np


def kv(event: str, **fields) -> str:
    """One structured log line: `event=NAME key=value ...` (values with spaces are quoted)."""
    parts = [f"event={event}"]
    for key, value in fields.items():
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        parts.append(f"{key}={text!r}" if (" " in text or not text) else f"{key}={text}")
    return " ".join(parts)


class RateLimitedLog:
    """Logs each key at most once per interval, reporting how many were suppressed in between."""

    def __init__(self, logger: logging.Logger, interval_s: float, clock=time.monotonic):
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: Counter = Counter()

    def warning(self, key: str, event: str, **fields) -> None:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] += 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            fields["suppressed"] = suppressed
        self.logger.warning(kv(event, **fields))


class LatencyWindow:
    """The last `size` latencies in a preallocated ring; percentiles only when asked."""

    def __init__(self, size: int = 8192):
        self._ring = np.zeros(size, np.float64)
        self._count = 0

    def add(self, seconds: float) -> None:
        self._ring[self._count % self._ring.size] = seconds
        self._count += 1

    def percentiles_ms(self) -> dict[str, float]:
        n = min(self._count, self._ring.size)
        if n == 0:
            return {}
        p50, p99, p999 = np.percentile(self._ring[:n], [50, 99, 99.9]) * 1e3
        return {
            "p50": float(p50),
            "p99": float(p99),
            "p99.9": float(p999),
            "max": float(self._ring[:n].max() * 1e3),
            "samples": n,
        }


@dataclass
class DaemonStats:
    """Counters for `stats`; `rejected` are contract breaks, `dropped` valid data that went unused."""

    received: int = 0  # activity messages read off the socket, good or bad
    accepted: int = 0
    emitted: int = 0  # recon frames published
    sessions: int = 0  # sessions seen (a new `session` resets the decoder)
    lost: int = 0  # activity messages missing from seq gaps (lost between rig and daemon)
    gaps: int = 0  # seq gaps seen
    prefetches: int = 0  # model prefetches run just before a message was due
    rejected: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    peers: Counter = field(default_factory=Counter)  # connections, disconnections, refused handshakes
    control_errors: Counter = field(default_factory=Counter)
    # accepted input that is probably not what the model needs (docs/protocol.md §6.5): restarts
    # kept their session id, frames with most neurons missing, messages timed unlike the model's input
    warnings: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    latency: LatencyWindow = field(default_factory=LatencyWindow)  # receive -> publish, this process

    def snapshot(self) -> dict:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "emitted": self.emitted,
            "sessions": self.sessions,
            "lost": self.lost,
            "gaps": self.gaps,
            "prefetches": self.prefetches,
            "rejected": dict(self.rejected),
            "dropped": dict(self.dropped),
            "peers": dict(self.peers),
            "control_errors": dict(self.control_errors),
            "warnings": dict(self.warnings),
            "latency_ms": self.latency.percentiles_ms(),
            "uptime_s": time.monotonic() - self.started,
        }
