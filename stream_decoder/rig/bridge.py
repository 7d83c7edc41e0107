"""What the rig bridges (scanbox.py, tiff_watch.py) share: the time and plane of each frame.

Acquisition software numbers frames, it does not stamp them: the index-th frame of an acquisition
was taken at `t0 + index / rate_hz` and, planes interleaved, shows plane `index % n_planes`. Without
a `t0` the bridge takes this host's clock when the first frame comes, so the rig clock is the
host's and `view`'s latency means something.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class FrameTiming:
    rate_hz: float  # the imaging frame rate: frames (planes, for a volume) per second
    n_planes: int = 1
    t0: float | None = None  # rig time of frame 0; None: this host's clock at the first frame
    clock: Callable[[], float] = time.time
    _origin: float = field(default=0.0, init=False)

    def __post_init__(self):
        if not self.rate_hz > 0 or self.n_planes < 1:
            raise ValueError(f"need a frame rate > 0 and planes >= 1, got {self.rate_hz} Hz, {self.n_planes}")

    def start(self, index: int) -> None:
        """A new acquisition whose first frame seen is number `index`."""
        self._origin = self.clock() - index / self.rate_hz if self.t0 is None else self.t0

    def fields(self, index: int) -> dict:
        """t, plane and n_planes of frame number `index`, as `Rig.send_frame` takes them."""
        return {
            "t": self._origin + index / self.rate_hz,
            "plane": index % self.n_planes,
            "n_planes": self.n_planes,
        }
