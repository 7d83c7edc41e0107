"""When the next activity message is due, so the daemon can prefetch the model just before it.

A rig sends at a steady rate. From the spacing of recent arrivals the daemon knows roughly when the
next message will come, and runs `Backend.prefetch` a few milliseconds earlier: the tick then finds
the weights in cache. Messages closer together than a few leads keep the cache warm by themselves,
and a pause longer than `MAX_INTERVAL_S` is not a rate: neither is forecast.
"""

import math
import statistics
from collections import deque

MAX_INTERVAL_S = 1.0
RECENT_GAPS = 5  # arrivals the rate is estimated from: a new rate is followed within three messages


class ArrivalForecast:
    def __init__(self, lead_s: float):
        self.lead_s = lead_s
        self._gaps: deque[float] = deque(maxlen=RECENT_GAPS)
        self._last: float | None = None
        self._due: float | None = None  # when to prefetch; None: nothing pending

    @property
    def interval_s(self) -> float | None:
        """The rate's interval: the median of the recent gaps, robust to one late or early message."""
        return statistics.median(self._gaps) if self._gaps else None

    def arrived(self, now: float) -> None:
        """A message was received at `now` (monotonic seconds)."""
        if self._last is not None:
            gap = now - self._last
            if gap > MAX_INTERVAL_S:
                self._gaps.clear()
            else:
                self._gaps.append(gap)
        self._last = now
        interval = self.interval_s
        forecast = self.lead_s > 0 and interval is not None and interval > 4 * self.lead_s
        self._due = now + interval - self.lead_s if forecast else None

    def wait_ms(self, now: float, longest_ms: int) -> int:
        """How long the loop may sleep before it has a prefetch to run."""
        if self._due is None:
            return longest_ms
        return max(0, min(longest_ms, math.floor((self._due - now) * 1e3)))

    def take(self, now: float) -> bool:
        """True, once per forecast, when it is time to prefetch (up to a millisecond early)."""
        if self._due is None or now < self._due - 1e-3:
            return False
        self._due = None
        return True
