"""The teacher's settings as data: the inversion (with its presets) and the alpha mask.

Torch-free, so that `stream-decoder --help` and the CLI's parser do not load torch.
"""

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class TeacherConfig:
    iterations: int = 1000
    lr: float = 1000.0
    warmup: int = 10  # iterations of linear warm-up of the rate
    window: int | None = 32  # frames per gradient window; None: the whole clip in one pass
    stride: int = 8
    beta1: float = 0.9
    adam: bool = False  # also divide by the root of the bias-corrected second moment
    beta2: float = 0.999
    cosine: bool = False  # decay the rate to zero over the iterations after warm-up
    smooth_sigma: float = 0.5  # 3D gaussian over (t, y, x) after averaging members; 0 turns it off
    neuron_fraction: float = 1.0  # fraction of neurons whose responses enter the loss
    seed: int = 0  # picks the neuron subset

    def __post_init__(self):
        if self.iterations < 1 or self.warmup < 1:
            raise ValueError("iterations and warmup must be >= 1")
        if self.iterations < self.warmup:
            raise ValueError(
                f"iterations={self.iterations} is below the rate's warmup={self.warmup}: the rate never "
                f"reaches lr and the video stays near gray; use at least {self.warmup} iterations"
            )
        if not 0.0 < self.neuron_fraction <= 1.0:
            raise ValueError(f"neuron_fraction must be in (0, 1], got {self.neuron_fraction}")
        if self.window is not None and (self.window < 1 or self.stride < 1):
            raise ValueError("window and stride must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    # The published settings (REFERENCE.md §1).
    "published": TeacherConfig(),
    # The whole clip in one causal pass, Adam's step rule with a cosine decay, 10x fewer iterations.
    # lr: on the tiny preset at 30 iterations, 12 / 30 / 60 gave video correlation 0.056 / 0.088 / 0.112.
    "cpu": TeacherConfig(iterations=100, lr=60.0, window=None, adam=True, cosine=True),
}


def preset(name: str, **overrides) -> TeacherConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown teacher preset {name!r}; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


@dataclass(frozen=True)
class MaskConfig:
    iterations: int = 1000
    lr: float = 10.0
    init_scale: float = 0.05  # m starts as uniform noise in [0, init_scale)
    blur_sigma: float = 5.0  # pixels
    size_weight: float = 1.0  # weight of the small-mask penalty against the relative response error
    clips_per_step: int = 2
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)
