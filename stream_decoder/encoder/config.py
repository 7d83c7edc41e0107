"""The encoder stage's settings as data: the model's shape and the training schedule, with presets.

Torch-free, so that `stream-decoder --help` and the CLI's parser do not load torch.
"""

import math
from dataclasses import asdict, dataclass, fields, replace

from stream_decoder.data import FRAME_SHAPE


@dataclass(frozen=True)
class EncoderConfig:
    input_size: tuple[int, int] = (64, 64)  # frames are zero-padded, centred, to this size
    stem_patch: int = 1  # the stem conv's spatial kernel and stride
    features: tuple[int, ...] = (64, 64, 64, 64, 128, 128, 128, 256, 256)
    strides: tuple[int, ...] = (2, 1, 1, 1, 2, 1, 1, 2, 1)  # spatial stride of each block
    expansion: int = 7  # inverted residual: channels inside a block = input channels x expansion
    depthwise: bool = True  # depthwise (one filter per channel) or dense spatial/temporal convs
    spatial_kernel: int = 3
    temporal_kernel: int = 5
    se_reduce: int = 32
    # Causal: a rate at frame t sees frames <= t only and nothing marks where a window starts
    # (causal temporal padding, spatial-only position code, per-frame squeeze-excitation), so one
    # pass over a whole clip gives every frame the prediction a window ending there would.
    causal: bool = False
    # After the core: "average" over space (published; the position code carried "where" into the
    # channels) or "flatten" every grid cell's channels into the cortex (a learned spatial readout).
    pooling: str = "average"
    cortex_features: tuple[int, ...] = (1024, 2048, 4096)
    groups: int = 2  # groups of the cortex and readout convs
    softplus_beta: float = 0.07
    readout_dropout: float = 0.4
    drop_path: float = 0.1  # stochastic depth, rising linearly over the blocks to this rate
    stack_frames: int = 16  # frames in one training window
    stack_step: int = 2  # raw frames between consecutive window frames
    sliding: bool = True  # inference: one window ending at every frame, overlaps averaged
    shifter: bool = False  # a per-mouse shifter moves the video by the pupil's position (model.Shifter)

    def __post_init__(self):
        if len(self.features) != len(self.strides):
            raise ValueError(f"features {self.features} and strides {self.strides} differ in length")
        if self.pooling not in ("average", "flatten"):
            raise ValueError(f"pooling must be 'average' or 'flatten', got {self.pooling!r}")
        if self.sliding and self.causal:
            raise ValueError("a causal encoder runs one pass over the clip; sliding must be False")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "EncoderConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown encoder config field(s): {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @property
    def core_grid(self) -> tuple[int, int]:
        """Spatial size of the core's output."""
        height, width = (size // self.stem_patch for size in self.input_size)
        for stride in self.strides:
            height, width = math.ceil(height / stride), math.ceil(width / stride)
        return height, width

    @property
    def receptive_frames(self) -> int:
        """Raw frames (this one included) the temporal convolutions reach back: a causal encoder's
        whole memory, so the first receptive_frames - 1 rates of a clip lack part of their history."""
        return 1 + len(self.features) * (self.temporal_kernel - 1) * self.stack_step


PRESETS = {
    "dwiseneuro": EncoderConfig(),
    "cpu": EncoderConfig(
        input_size=FRAME_SHAPE,
        stem_patch=4,
        features=(48, 48, 64, 64, 96, 96),
        strides=(1, 1, 2, 1, 2, 1),
        expansion=1,
        depthwise=False,
        causal=True,
        pooling="flatten",
        cortex_features=(256, 512),
        readout_dropout=0.2,
        drop_path=0.05,
        stack_frames=100,
        stack_step=1,
        sliding=False,
        shifter=True,
    ),
}


def preset(name: str, **overrides) -> EncoderConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown encoder preset {name!r}; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0  # never more than a quarter of all steps
    min_lr_ratio: float = 0.01  # the cosine ends at lr x this
    # The shifter's rate, as a multiple of lr, without weight decay: at lr it moved the image by
    # 0.005 px where the eye moves it by 2 px (sd) in 8 epochs on the demo mouse.
    shifter_lr_scale: float = 20.0
    ema_decay: float = 0.999  # reached after a warm-up of about 10 / (1 - decay) steps
    train_tier: str = "train"
    val_tier: str = "oracle"
    val_skip: int = 50  # frames skipped at the start of every validation clip, as in Sensorium
    seed: int = 0  # member m trains with seed + m

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**values)


TRAINING_PRESETS = {
    # Published (REFERENCE.md §2): batch 32, lr 2.4e-3, 3 warm-up epochs of 21.
    "dwiseneuro": TrainConfig(epochs=21, batch_size=32, lr=2.4e-3, warmup_epochs=3.0),
    # Few clips on 2 cores: many small steps learn more per second than few large ones.
    "cpu": TrainConfig(epochs=10, batch_size=4, lr=2e-3, warmup_epochs=1.0),
}
