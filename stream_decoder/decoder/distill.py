"""Train the streaming student: towards the true stimuli, the teacher's reconstructions, or a mix.

The student sees exactly what the daemon will feed it: each neuron's latest value on the 30 Hz
grid (`held_responses`: the identity for single-plane 30 Hz input, sample-and-hold for a
multi-plane rig), raw, with behaviour and pupil centre. Its frame at tick t is trained towards
stimulus frame t - L: the true frame a lab knows it showed (`truth_weight` 1), the teacher's
reconstruction of it (0, the distillation of the gradient-based inversion), or a mix. The loss is
a mean squared error weighted towards the evaluation mask, the part of the screen the recorded
neurons see (pixels outside it get `outside_weight`). Neuron dropout during training lets missing
ROIs at run time degrade the picture gracefully.
"""

import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from stream_decoder.data import GRAY, MouseDataset, PlaneTiming, input_timing, open_mouse, student_inputs
from stream_decoder.decoder.artifact import Artifact, load_artifact, save_artifact
from stream_decoder.decoder.config import DistillConfig
from stream_decoder.decoder.residual import ResidualConfig, ResidualStudent
from stream_decoder.decoder.student import Student, StudentConfig
from stream_decoder.metrics import mean_video_correlation
from stream_decoder.paths import cache_dir, portable_path
from stream_decoder.teacher.mask import evaluation_mask
from stream_decoder.teacher.store import TeacherStore

log = logging.getLogger(__name__)


@dataclass
class Pairs:
    """Clips as the student sees them and what it is trained towards, (B, T, ...) tensors."""

    trials: list[str]
    activity: torch.Tensor  # (B, T, N) held responses
    behavior: torch.Tensor  # (B, T, 2)
    pupil: torch.Tensor  # (B, T, 2)
    truth: torch.Tensor  # (B, T, H, W)
    teacher: torch.Tensor | None = None  # (B, T, H, W) where a teacher store is used

    def __len__(self) -> int:
        return len(self.trials)

    def clip_nbytes(self) -> int:
        """Bytes one clip's inputs and true frames take (teacher targets not counted)."""
        return sum(t[0].nbytes for t in (self.activity, self.behavior, self.pupil, self.truth))

    def extended(self, clips: Iterable, count: int, prefix: str, folder: Path | None = None) -> "Pairs":
        """These pairs and the `count` `clips` (activity, behaviour, pupil, video) after them, without
        teacher targets: allocated once at the final size and filled as each clip arrives, so that
        thousands of generated clips are held once, not stacked and then joined. With `folder`, in
        files there (memory-mapped): training then reads each batch from disk, and what the page
        cache holds the system can take back, where thousands of clips in memory were killed."""
        mine = (self.activity, self.behavior, self.pupil, self.truth)
        rows = len(self) + count
        joined = [empty_like_rows(t, rows, folder, name) for t, name in zip(mine, PAIR_FILES, strict=True)]
        for tensor, recorded in zip(joined, mine, strict=True):
            tensor[: len(self)] = recorded
        made = 0
        for clip in clips:
            if made == count:
                raise ValueError(f"more than the {count} clips expected")
            for tensor, column in zip(joined, clip, strict=True):
                if column.shape != tensor.shape[1:]:
                    raise ValueError(f"clip {made}: shape {column.shape}, expected {tuple(tensor.shape[1:])}")
                tensor[len(self) + made] = torch.from_numpy(np.ascontiguousarray(column))
            made += 1
        if made != count:
            raise ValueError(f"made {made} clips, expected {count}")
        return Pairs(self.trials + [f"{prefix}{i}" for i in range(count)], *joined)

    def take(self, index) -> "Pairs":
        trials = [self.trials[i] for i in index]
        tensors = (self.activity, self.behavior, self.pupil, self.truth)
        teacher = None if self.teacher is None else self.teacher[index]
        return Pairs(trials, *(t[index] for t in tensors), teacher)


PAIR_FILES = ("activity", "behavior", "pupil", "truth")


def empty_like_rows(like: torch.Tensor, rows: int, folder: Path | None, name: str) -> torch.Tensor:
    """An uninitialised (rows, ...) float32 tensor shaped as `like`'s rows: in memory, or backed by
    `folder`/`name`.npy."""
    shape = (rows, *like.shape[1:])
    if folder is None:
        return torch.empty(shape, dtype=like.dtype)
    if like.dtype != torch.float32:
        raise ValueError(f"{name}: pairs on disk are float32, got {like.dtype}")
    return torch.from_numpy(np.lib.format.open_memmap(folder / f"{name}.npy", "w+", np.float32, shape))


def load_pairs(
    mouse: MouseDataset, trials: list[str], timing: PlaneTiming, store: TeacherStore | None = None
) -> Pairs:
    rows = [student_inputs(mouse, trial, timing) for trial in trials]
    lengths = {len(r[0]) for r in rows}
    if len(lengths) != 1:
        raise ValueError(f"{mouse.path}: distillation needs clips of one length, got {sorted(lengths)}")
    columns = [torch.from_numpy(np.stack(c)).float() for c in zip(*rows, strict=True)]
    teacher = None
    if store is not None:
        teacher = torch.from_numpy(np.stack([store.load(mouse.name, t) for t in trials])).float()
    return Pairs(list(trials), *columns, teacher)


def pixel_weights(mask: np.ndarray | None, outside_weight: float, frame_shape) -> torch.Tensor:
    """(H, W) loss weights averaging 1: the mask's pixels 1, the others `outside_weight`, before scaling."""
    if mask is None:
        return torch.ones(frame_shape)
    weights = torch.from_numpy(np.where(mask, 1.0, outside_weight)).float()
    return weights / weights.mean()


def frame_loss(student: Student, pairs: Pairs, truth_weight: float, weights: torch.Tensor) -> torch.Tensor:
    """Pixel-weighted mean squared error in stimulus time: output t against target t - L."""
    frames = student.stimulus_frames(pairs.activity, pairs.behavior, pairs.pupil)
    length = frames.shape[1]
    loss = truth_weight * torch.mean(weights * (frames - pairs.truth[:, :length]) ** 2)
    if truth_weight < 1:
        loss = loss + (1 - truth_weight) * torch.mean(weights * (frames - pairs.teacher[:, :length]) ** 2)
    return loss


@torch.no_grad()
def decode(student: Student, pairs: Pairs) -> np.ndarray:
    """(B, T, H, W) in stimulus time; the last L frames, never decoded, are left gray."""
    student.eval()
    frames = student.stimulus_frames(pairs.activity, pairs.behavior, pairs.pupil).numpy()
    padded = np.full(pairs.truth.shape, GRAY, np.float32)
    padded[:, : frames.shape[1]] = frames
    return padded


@dataclass
class TrainingData:
    mouse: MouseDataset
    timing: PlaneTiming
    train: Pairs
    validation: Pairs | None
    mask: np.ndarray | None  # (H, W) evaluation mask: where the loss concentrates and scores count


def training_data(
    data: Path, teacher: Path | None, cfg: DistillConfig, mask: np.ndarray | None, mouse_name: str | None
) -> TrainingData:
    """Training and validation clips: the store's (with a teacher), else the mouse's train tier;
    the mask from the teacher's alpha where there is one, else `mask`."""
    mouse = open_mouse(data, mouse_name)
    timing = input_timing(mouse, cfg.multi_plane, cfg.planes or None, cfg.volume_rate or None)
    held_out = set(mouse.trials(cfg.validation_tier))
    if teacher is None:
        if cfg.truth_weight < 1:
            raise ValueError(f"truth_weight {cfg.truth_weight} < 1 asks for teacher targets: give --teacher")
        trials, store = mouse.trials("train"), None
        validation_trials = sorted(held_out, key=int)
    else:
        store = TeacherStore(teacher)
        if store.manifest()["fingerprints"].get(mouse.name) != mouse.fingerprint():
            raise ValueError(
                f"{teacher}: its reconstructions are not of {mouse.path} (data fingerprint differs)"
            )
        trials = [t for t in store.trials(mouse.name) if t not in held_out]
        validation_trials = [t for t in store.trials(mouse.name) if t in held_out]
        alpha = store.alpha(mouse.name)
        mask = evaluation_mask(alpha) if alpha is not None else mask
    if not trials:
        where = f"{teacher}: no reconstructions of {mouse.name}" if teacher else f"{mouse.path}: no trials"
        raise ValueError(f"{where} outside the {cfg.validation_tier!r} tier to train on")
    train = load_pairs(mouse, trials, timing, store)
    validation = load_pairs(mouse, validation_trials, timing, store) if validation_trials else None
    return TrainingData(mouse, timing, train, validation, mask)


@contextmanager
def pairs_folder() -> Iterator[Path]:
    """A folder in the cache for generated pairs, removed with them once the student is trained."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pairs-", dir=cache_dir()) as folder:
        yield Path(folder)


def with_synthetic_pairs(
    found: TrainingData, cfg: DistillConfig, ensemble: Path, folder: Path, progress: bool
) -> Pairs:
    """The recorded training pairs and `cfg.synthetic_clips` more made by the encoder ensemble, in
    one allocation on disk in `folder`, refused before anything is generated where it would not fit."""
    from stream_decoder.decoder.synthetic import synthetic_clips
    from stream_decoder.encoder.checkpoint import load_ensemble

    total, clip = len(found.train) + cfg.synthetic_clips, found.train.clip_nbytes()
    free = shutil.disk_usage(folder).free
    if total * clip > free:
        fit = max(free // clip - len(found.train), 0)
        raise ValueError(
            f"{total} training pairs need {total * clip / 1e9:.2f} GB of disk in {folder.parent} and "
            f"{free / 1e9:.2f} GB are free; lower --synthetic-clips (about {fit} fit) or set "
            f"STREAM_DECODER_CACHE to a larger disk"
        )
    log.info(
        "training pairs: %d clips (%d synthetic), %.2f GB", total, cfg.synthetic_clips, total * clip / 1e9
    )
    mouse = found.mouse
    encoders = [e.eval().requires_grad_(False) for e in load_ensemble(ensemble, {mouse.name: mouse})]
    at_30_hz = PlaneTiming.single_plane(mouse.n_neurons)
    recorded = [student_inputs(mouse, trial, at_30_hz) for trial in found.train.trials]
    made = synthetic_clips(
        encoders, mouse.name, recorded, cfg.synthetic_clips, found.timing, seed=cfg.seed, progress=progress
    )
    return found.train.extended(made, cfg.synthetic_clips, prefix="synthetic-", folder=folder)


def new_student(cfg: DistillConfig, train: Pairs) -> Student:
    """An untrained student whose normalisation is the training clips' statistics."""
    config = StudentConfig(
        train.activity.shape[-1], cfg.latent, lookahead=cfg.lookahead, neuron_dropout=cfg.neuron_dropout
    )
    student = Student(config)
    activity = train.activity.flatten(0, 1)
    behavior4 = torch.cat([train.behavior, train.pupil], dim=-1).flatten(0, 1)
    student.set_normalisation(activity.mean(0), activity.std(0), behavior4.mean(0), behavior4.std(0))
    return student


def read_in_from(student: Student, baseline: Artifact) -> None:
    """The baseline's normalisation and leading principal components as the student's read-in: the
    directions of the activity a linear decoder reads, before the head learns what to do with them.
    A narrower student takes the leading `latent` of them (components are stored largest first)."""
    model = baseline.model()
    if baseline.meta.kind != "linear" or model.cfg.n_neurons != student.cfg.n_neurons:
        raise ValueError(
            f"--read-in-from: {baseline.path} is a {baseline.meta.kind} model of {model.cfg.n_neurons} "
            f"neurons; give a baseline artifact of this mouse's {student.cfg.n_neurons}"
        )
    if model.cfg.components < student.cfg.latent:
        raise ValueError(
            f"--read-in-from: {baseline.path} has {model.cfg.components} components, fewer than the "
            f"student's read-in of {student.cfg.latent}: fit the baseline with --components "
            f"{student.cfg.latent} or more"
        )
    student.copy_normalisation(model)
    with torch.no_grad():
        student.read_in.weight.copy_(model.read_in.weight[: student.cfg.latent])
        student.read_in.bias.zero_()


def residual_student(cfg: DistillConfig, baseline: Artifact, mouse: MouseDataset) -> ResidualStudent:
    """A student that starts as `baseline` exactly: its normalisation, read-in and ridge readout,
    frozen, and a correction (zero at first) for the nonlinear head to learn. Its latent is the
    baseline's (components and behaviour), not `cfg.latent`."""
    model = baseline.model()
    where = f"--residual-of: {baseline.path}"
    if baseline.meta.kind != "linear":
        raise ValueError(f"{where} is a {baseline.meta.kind} model; give one `stream-decoder baseline` wrote")
    if baseline.meta.data_fingerprint != mouse.fingerprint():
        raise ValueError(f"{where} was fitted on other data than {mouse.path}; fit a baseline on this mouse")
    if model.cfg.lookahead != cfg.lookahead:
        raise ValueError(
            f"{where} decodes the frame {model.cfg.lookahead} ticks back, not {cfg.lookahead}; "
            f"distill with --lookahead {model.cfg.lookahead} or fit one with --lookahead {cfg.lookahead}"
        )
    linear = model.cfg
    config = ResidualConfig(
        linear.n_neurons,
        linear.latent,
        lookahead=cfg.lookahead,
        neuron_dropout=cfg.neuron_dropout,
        frame_shape=linear.frame_shape,
        upsample=linear.upsample,
        lags=linear.lags,
        lag_step=linear.lag_step,
        gaze_gain=linear.gaze_gain,
    )
    student = ResidualStudent(config)
    student.copy_normalisation(model)
    with torch.no_grad():
        student.read_in.load_state_dict(model.read_in.state_dict())
        student.behavior_in.load_state_dict(model.behavior_in.state_dict())
        student.linear.load_state_dict(model.readout.state_dict())
    for frozen in (student.read_in, student.behavior_in, student.linear):
        frozen.requires_grad_(False)
    return student


def train_student(
    student: Student, train: Pairs, cfg: DistillConfig, weights: torch.Tensor, progress: bool
) -> None:
    """AdamW on a one-cycle schedule, batches of whole clips in a seeded random order."""
    if cfg.freeze_read_in:
        student.read_in.requires_grad_(False)
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * -(-len(train) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=steps, pct_start=0.05)
    generator = torch.Generator().manual_seed(cfg.seed)
    bar = tqdm(range(cfg.epochs), desc="distill", unit="epoch", disable=not progress)
    for _ in bar:
        student.train()
        for batch in torch.randperm(len(train), generator=generator).split(cfg.batch_size):
            loss = frame_loss(student, train.take(batch), cfg.truth_weight, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        bar.set_postfix(loss=f"{loss.item():.1f}")
    student.eval()


def distill(
    data: Path,
    teacher: Path | None,
    out: Path,
    cfg: DistillConfig,
    mouse_name: str | None = None,
    progress: bool = True,
    mask: np.ndarray | None = None,
    ensemble: Path | None = None,
    read_in: Path | None = None,
    residual_of: Path | None = None,
) -> Artifact:
    """Train a student on `data` (targets per `cfg.truth_weight`; `teacher` a store, or None for
    true stimuli only) and write it to `out` as an artifact. `mask`: the evaluation mask to use
    where the teacher store has none (e.g. another artifact's). `ensemble`: the encoder ensemble
    that generates `cfg.synthetic_clips` more training pairs. `read_in`: a baseline artifact whose
    components and normalisation start the read-in. `residual_of`: a baseline artifact the student
    learns to correct (`residual_student`)."""
    if cfg.synthetic_clips and ensemble is None:
        raise ValueError(f"synthetic_clips {cfg.synthetic_clips} asks for generated pairs: give --ensemble")
    if read_in is not None and residual_of is not None:
        raise ValueError("give --read-in-from or --residual-of, not both: a residual reads in as its own")
    torch.manual_seed(cfg.seed)
    found = training_data(data, teacher, cfg, mask, mouse_name)
    if residual_of is not None:
        student = residual_student(cfg, load_artifact(residual_of, check_onnx=False), found.mouse)
    else:
        student = new_student(cfg, found.train)  # normalised by the recorded clips alone
    if read_in is not None:
        read_in_from(student, load_artifact(read_in, check_onnx=False))
    weights = pixel_weights(found.mask, cfg.outside_weight, student.cfg.frame_shape)
    with ExitStack() as stack:
        train = found.train
        if cfg.synthetic_clips:
            folder = stack.enter_context(pairs_folder())
            train = with_synthetic_pairs(found, cfg, ensemble, folder, progress)
        train_student(student, train, cfg, weights, progress)
    scores = validation_scores(student, found.validation, found.mask) if found.validation else {}
    log.info("distilled %s: %s", found.mouse.name, scores)
    provenance = {
        "distill": asdict(cfg),
        "teacher_store": portable_path(teacher) if teacher else None,
        "ensemble": portable_path(ensemble) if cfg.synthetic_clips else None,
        "read_in_from": portable_path(read_in) if read_in else None,
        "residual_of": portable_path(residual_of) if residual_of else None,
        "mouse": found.mouse.name,
        "train_trials": found.train.trials,
        "train_pairs": len(train),  # the recorded trials and the synthetic pairs
        "validation": scores,
        "input_timing": {"n_planes": found.timing.n_planes, "volume_rate_hz": found.timing.volume_rate_hz},
        "evaluation_mask": None if found.mask is None else np.flatnonzero(found.mask).tolist(),
    }
    mouse = found.mouse
    return save_artifact(
        out, student, mouse.unit_ids, mouse.fingerprint(), provenance, neuron_set=mouse.neuron_set()
    )


def validation_scores(student: Student, pairs: Pairs, mask) -> dict[str, float]:
    decoded = decode(student, pairs)
    truth = pairs.truth.numpy()
    stop = truth.shape[1] - student.cfg.lookahead  # frames the student decoded
    scores = {"student_vs_truth": mean_video_correlation(decoded[:, :stop], truth[:, :stop], mask)}
    if pairs.teacher is not None:
        teacher = pairs.teacher.numpy()
        scores["teacher_vs_truth"] = mean_video_correlation(teacher[:, :stop], truth[:, :stop], mask)
        scores["student_vs_teacher"] = mean_video_correlation(decoded[:, :stop], teacher[:, :stop], mask)
    return scores
