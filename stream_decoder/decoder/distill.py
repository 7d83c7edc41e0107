"""Distil the teacher into the streaming student.

The student sees exactly what the daemon will feed it: each neuron's latest value on the 30 Hz
grid (`held_responses`: the identity for single-plane 30 Hz input, sample-and-hold for a
multi-plane rig), raw, with behaviour and pupil centre. Its frame at tick t is trained towards
the teacher's reconstruction of stimulus frame t - L, optionally mixed with the true frame.
Neuron dropout during training lets missing ROIs at run time degrade the picture gracefully.
"""

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from stream_decoder.data import CLIP_FRAMES, MouseDataset, PlaneTiming, find_mice, held_responses
from stream_decoder.decoder.artifact import Artifact, save_artifact
from stream_decoder.decoder.student import Student, StudentConfig
from stream_decoder.metrics import video_correlation
from stream_decoder.teacher.mask import evaluation_mask
from stream_decoder.teacher.store import TeacherStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    lookahead: int = 8
    latent: int = 256
    epochs: int = 300
    batch_size: int = 8  # clips per step
    lr: float = 2e-3
    weight_decay: float = 0.05
    truth_weight: float = 0.0  # 0: teacher targets only; 1: true frames only
    neuron_dropout: float = 0.1
    multi_plane: bool = False  # train on the rig's per-plane timing (from the simulator truth)
    validation_tier: str = "oracle"
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.truth_weight <= 1.0:
            raise ValueError(f"truth_weight must be in [0, 1], got {self.truth_weight}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")


@dataclass
class Pairs:
    """Clips as the student sees them and what it is trained towards, (B, T, ...) tensors."""

    trials: list[str]
    activity: torch.Tensor  # (B, T, N) held responses
    behavior: torch.Tensor  # (B, T, 2)
    pupil: torch.Tensor  # (B, T, 2)
    teacher: torch.Tensor  # (B, T, H, W)
    truth: torch.Tensor  # (B, T, H, W)

    def __len__(self) -> int:
        return len(self.trials)

    def take(self, index) -> "Pairs":
        trials = [self.trials[i] for i in index]
        tensors = (self.activity, self.behavior, self.pupil, self.teacher, self.truth)
        return Pairs(trials, *(t[index] for t in tensors))


def input_timing(mouse: MouseDataset, multi_plane: bool) -> PlaneTiming:
    return PlaneTiming.for_mouse(mouse.path) if multi_plane else PlaneTiming.single_plane(mouse.n_neurons)


def student_inputs(mouse: MouseDataset, trial: str, timing: PlaneTiming):
    """(activity, behavior, pupil centre) of one trial as the daemon would feed them, (T, ...)."""
    clip = mouse.clip(trial)
    activity = held_responses(clip.responses[:CLIP_FRAMES], timing)
    return activity, clip.behavior[:CLIP_FRAMES], clip.pupil_center[:CLIP_FRAMES], clip.video[:CLIP_FRAMES]


def load_pairs(mouse: MouseDataset, store: TeacherStore, trials: list[str], timing: PlaneTiming) -> Pairs:
    rows = []
    for trial in trials:
        activity, behavior, pupil, video = student_inputs(mouse, trial, timing)
        rows.append((activity, behavior, pupil, store.load(mouse.name, trial), video))
    lengths = {len(r[0]) for r in rows}
    if len(lengths) != 1:
        raise ValueError(f"{mouse.path}: distillation needs clips of one length, got {sorted(lengths)}")
    columns = [torch.from_numpy(np.stack(c)).float() for c in zip(*rows, strict=True)]
    return Pairs(list(trials), *columns)


def pick_mouse(data: Path, name: str | None) -> MouseDataset:
    mice = [MouseDataset(p) for p in find_mice(data)]
    if name is None:
        return mice[0]
    for mouse in mice:
        if mouse.name == name:
            return mouse
    raise ValueError(f"{data}: no mouse {name!r}; it holds {', '.join(m.name for m in mice)}")


def frame_loss(student: Student, pairs: Pairs, truth_weight: float) -> torch.Tensor:
    """Mean squared error in stimulus time: output t against target t - L."""
    frames = student.stimulus_frames(pairs.activity, pairs.behavior, pairs.pupil)
    length = frames.shape[1]
    loss = (1 - truth_weight) * torch.mean((frames - pairs.teacher[:, :length]) ** 2)
    if truth_weight:
        loss = loss + truth_weight * torch.mean((frames - pairs.truth[:, :length]) ** 2)
    return loss


@torch.no_grad()
def decode(student: Student, pairs: Pairs) -> np.ndarray:
    """(B, T, H, W) in stimulus time; the last L frames, never decoded, are left gray."""
    student.eval()
    frames = student.stimulus_frames(pairs.activity, pairs.behavior, pairs.pupil).numpy()
    padded = np.full(pairs.truth.shape, 127.5, np.float32)
    padded[:, : frames.shape[1]] = frames
    return padded


def distill(
    data: Path,
    teacher: Path,
    out: Path,
    cfg: DistillConfig,
    mouse_name: str | None = None,
    progress: bool = True,
) -> Artifact:
    torch.manual_seed(cfg.seed)
    mouse = pick_mouse(data, mouse_name)
    store = TeacherStore(teacher)
    if store.manifest()["fingerprints"].get(mouse.name) != mouse.fingerprint():
        raise ValueError(f"{teacher}: its reconstructions are not of {mouse.path} (data fingerprint differs)")
    held_out = set(mouse.trials(cfg.validation_tier))
    trials = [t for t in store.trials(mouse.name) if t not in held_out]
    if not trials:
        raise ValueError(
            f"{teacher}: no reconstructions of {mouse.name} outside the {cfg.validation_tier!r} tier"
        )
    timing = input_timing(mouse, cfg.multi_plane)
    train = load_pairs(mouse, store, trials, timing)
    validation_trials = [t for t in store.trials(mouse.name) if t in held_out]
    validation = load_pairs(mouse, store, validation_trials, timing) if validation_trials else None
    student = Student(
        StudentConfig(mouse.n_neurons, cfg.latent, lookahead=cfg.lookahead, neuron_dropout=cfg.neuron_dropout)
    )
    behavior4 = torch.cat([train.behavior, train.pupil], dim=-1).flatten(0, 1)
    student.set_normalisation(
        train.activity.flatten(0, 1).mean(0),
        train.activity.flatten(0, 1).std(0),
        behavior4.mean(0),
        behavior4.std(0),
    )
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * -(-len(train) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=steps, pct_start=0.05)
    generator = torch.Generator().manual_seed(cfg.seed)
    bar = tqdm(range(cfg.epochs), desc="distill", unit="epoch", disable=not progress)
    for _ in bar:
        student.train()
        for batch in torch.randperm(len(train), generator=generator).split(cfg.batch_size):
            loss = frame_loss(student, train.take(batch), cfg.truth_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        bar.set_postfix(loss=f"{loss.item():.1f}")
    alpha = store.alpha(mouse.name)
    scores = validation_scores(student.eval(), validation, alpha) if validation else {}
    log.info("distilled %s: %s", mouse.name, scores)
    provenance = {
        "distill": asdict(cfg),
        "teacher_store": str(Path(teacher).resolve()),
        "mouse": mouse.name,
        "train_trials": trials,
        "validation": scores,
        "input_timing": {"n_planes": timing.n_planes, "volume_rate_hz": timing.volume_rate_hz},
        "evaluation_mask": mask_pixels(alpha),
    }
    return save_artifact(out, student, mouse.unit_ids, mouse.fingerprint(), provenance)


def mask_pixels(alpha) -> list[int] | None:
    """Flat indices of the teacher's evaluation mask: where the student is scored (None: everywhere)."""
    mask = evaluation_mask(alpha)
    return None if mask is None else np.flatnonzero(mask).tolist()


def validation_scores(student: Student, pairs: Pairs, alpha) -> dict[str, float]:
    mask = evaluation_mask(alpha)
    decoded = decode(student, pairs)
    truth, teacher = pairs.truth.numpy(), pairs.teacher.numpy()
    stop = truth.shape[1] - student.cfg.lookahead  # frames the student decoded
    return {
        "student_vs_truth": mean_correlation(decoded[:, :stop], truth[:, :stop], mask),
        "teacher_vs_truth": mean_correlation(teacher[:, :stop], truth[:, :stop], mask),
        "student_vs_teacher": mean_correlation(decoded[:, :stop], teacher[:, :stop], mask),
    }


def mean_correlation(videos: np.ndarray, references: np.ndarray, mask) -> float:
    """Masked video correlation per clip, averaged over clips."""
    return float(np.nanmean([video_correlation(v, r, mask) for v, r in zip(videos, references, strict=True)]))
