"""The distillation's and the linear baseline's settings as data. Torch-free, so that the CLI's
parser does not load torch."""

from dataclasses import dataclass


@dataclass(frozen=True)
class DistillConfig:
    lookahead: int = 8
    latent: int = 256
    epochs: int = 300
    batch_size: int = 8  # clips per step
    lr: float = 2e-3
    weight_decay: float = 0.05
    # 1: the true frames only, the best measured on the demo mouse (bench_fidelity.py); 0: the
    # teacher's reconstructions only (pure distillation); in between, a mix.
    truth_weight: float = 1.0
    outside_weight: float = 0.1  # loss weight of pixels outside the evaluation mask (those inside: 1)
    neuron_dropout: float = 0.1
    synthetic_clips: int = 0  # training pairs the encoder ensemble generates beside the recorded clips
    multi_plane: bool = False  # train on the rig's per-plane timing (from the simulator truth)
    planes: int = 0  # multi_plane on a recording without simulator truth: its planes, by cell depth
    volume_rate: float = 0.0  # ... and its volumes per second (Hz)
    freeze_read_in: bool = False  # keep the read-in as initialised (with a baseline's components)
    validation_tier: str = "oracle"
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.truth_weight <= 1.0:
            raise ValueError(f"truth_weight must be in [0, 1], got {self.truth_weight}")
        if not 0.0 <= self.outside_weight <= 1.0:
            raise ValueError(f"outside_weight must be in [0, 1], got {self.outside_weight}")
        if self.synthetic_clips < 0:
            raise ValueError(f"synthetic_clips must be >= 0, got {self.synthetic_clips}")
        if self.synthetic_clips and self.truth_weight < 1:
            raise ValueError("synthetic pairs have no teacher reconstruction: they need truth_weight 1")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")


@dataclass(frozen=True)
class RidgeConfig:
    """The linear baseline (decoder/ridge.py): lagged principal components, penalty by validation."""

    components: int = 256  # principal components of the standardised activity the fit uses
    lags: int = 7
    lag_step: int = 2
    lookahead: int = 8
    upsample: int = 2
    penalties: tuple[float, ...] = tuple(10.0 ** (k / 2) for k in range(2, 17))  # 1e1 .. 1e8
    validation_clips: int = 10  # the last training clips, held back to choose the penalty
    # Candidate screen px per eye-camera px of the gaze correction (decoder/gaze.py), chosen with the
    # penalty on the held-back clips; (0.0,) fits the plain baseline.
    gaze_gains: tuple[float, ...] = (0.0,)

    def __post_init__(self):
        object.__setattr__(self, "penalties", tuple(float(p) for p in self.penalties))
        object.__setattr__(self, "gaze_gains", tuple(float(g) for g in self.gaze_gains))
        if not self.gaze_gains or len(set(self.gaze_gains)) < len(self.gaze_gains):
            raise ValueError(f"RidgeConfig: gaze_gains must be distinct and not empty, got {self.gaze_gains}")
        if any(self.gaze_gains) and self.lookahead < 1:
            raise ValueError(
                "RidgeConfig: gaze correction needs lookahead >= 1 (it moves the frame L ticks old)"
            )
        if not self.penalties or min(self.penalties) < 0:
            raise ValueError(f"RidgeConfig: penalties must be >= 0 and not empty, got {self.penalties}")
        if self.validation_clips < 1:
            raise ValueError("RidgeConfig: validation_clips must be >= 1 (the penalty is chosen on them)")


# The gains a lab scans when it does not know its rig's screen px per eye-camera px (decoder/gaze.py),
# and the baseline fitted with them: the gaze baseline, what every decoder is scored beside by default.
GAZE_GAINS = (0.0, 0.25, 0.5, 0.75, 1.0)
GAZE_BASELINE = RidgeConfig(gaze_gains=GAZE_GAINS)
