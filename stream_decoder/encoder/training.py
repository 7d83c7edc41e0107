"""Training an ensemble of encoders: members differ only in their seed.

Per member: Poisson loss (log_input=False), AdamW, linear warm-up then cosine decay, an EMA copy of
the weights that validation, checkpoints and inference use. Under `torchrun` each member trains
with DistributedDataParallel (gloo on CPU, nccl on GPU), every rank taking its share of the batches.
Epoch `e` of seed `s` always draws the same windows and dropout masks, so a resumed run continues
exactly where the interrupted one stopped.
"""

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from stream_decoder.data import open_mice
from stream_decoder.distributed import Ranks
from stream_decoder.encoder.batches import ClipTensors, epoch_batches, load_clips, stack_batch
from stream_decoder.encoder.checkpoint import (
    CONFIG,
    META,
    TRAINING_STATE,
    WEIGHTS,
    load_tensors,
    read_json,
    save_tensors,
    unit_ids_hash,
    write_json,
)
from stream_decoder.encoder.config import EncoderConfig, TrainConfig
from stream_decoder.encoder.model import Encoder
from stream_decoder.metrics import single_trial_correlation

log = logging.getLogger(__name__)


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Linear warm-up from 0 over `warmup` steps, then a cosine from 1 down to `floor` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class EMA:
    """An exponential moving average of the weights; BatchNorm statistics are copied as they are."""

    def __init__(self, model: nn.Module, decay: float):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        # Early on the average follows closely, or it would stay near the random start for thousands of steps.
        decay = min(self.decay, (1 + step) / (10 + step))
        for mine, theirs in zip(self.model.parameters(), model.parameters(), strict=True):
            mine.lerp_(theirs, 1 - decay)
        for mine, theirs in zip(self.model.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)


class PoissonObjective(nn.Module):
    """What DDP wraps: the one-pass prediction on a batch of stacks and its Poisson loss."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, video, behavior, pupil_center, responses, mouse: str) -> torch.Tensor:
        rates = self.encoder.predict_frames(self.encoder.inputs(video, behavior, pupil_center, mouse), mouse)
        return F.poisson_nll_loss(rates, responses, log_input=False, full=False, eps=1e-8)


@torch.no_grad()
def predict_clip(encoders: list[Encoder], clip: ClipTensors, mouse: str) -> np.ndarray:
    """Rates (T, N) for one clip: the mean over ensemble members, each in eval mode."""
    total = 0.0
    for encoder in encoders:
        device = next(encoder.parameters()).device
        inputs = (clip.video[None], clip.behavior[None], clip.pupil_center[None])
        total = total + encoder.eval()(*(x.to(device) for x in inputs), mouse)[0].cpu().double().numpy()
    return total / len(encoders)


def response_correlation(encoders: list[Encoder], clips: dict[str, list[ClipTensors]], skip: int) -> dict:
    """Single-trial correlation per mouse: per neuron over all frames of all clips, mean over neurons."""
    return {
        mouse: float(
            np.nanmean(
                single_trial_correlation(
                    [predict_clip(encoders, clip, mouse) for clip in mouse_clips],
                    [clip.responses.numpy() for clip in mouse_clips],
                    skip,
                )
            )
        )
        for mouse, mouse_clips in clips.items()
    }


@dataclass(frozen=True)
class TrainingData:
    """Clips in memory, and what a checkpoint records to recognise the data later."""

    train: dict[str, list[ClipTensors]]
    val: dict[str, list[ClipTensors]]
    neurons: dict[str, int]
    unit_ids: dict[str, str]
    fingerprints: dict[str, str]

    @classmethod
    def load(cls, root: Path, train_tier: str, val_tier: str, progress: bool = True) -> "TrainingData":
        mice = open_mice(root)
        train, val = {}, {}
        bar = tqdm(mice.items(), desc="loading clips", unit="mouse", leave=False, disable=not progress)
        for name, dataset in bar:
            for tier, store in ((train_tier, train), (val_tier, val)):
                store[name] = load_clips(dataset, tier)
                if not store[name]:
                    raise ValueError(f"mouse {name}: no {tier!r} trials in {root}")
        return cls(
            train,
            val,
            {name: d.n_neurons for name, d in mice.items()},
            {name: unit_ids_hash(d.unit_ids) for name, d in mice.items()},
            {name: d.fingerprint() for name, d in mice.items()},
        )

    def describe(self) -> dict:
        return {"neurons": self.neurons, "unit_ids": self.unit_ids, "fingerprints": self.fingerprints}


def train_ensemble(
    root: Path,
    out: Path,
    members: int,
    cfg: EncoderConfig,
    train: TrainConfig,
    resume: bool = False,
    device: str | None = None,
) -> list[Path]:
    """Train (or, with `resume`, finish) members 0..members-1 of an ensemble under `out`."""
    ranks = Ranks.start(device)
    data = TrainingData.load(Path(root), train.train_tier, train.val_tier, progress=ranks.rank == 0)
    dirs = [Path(out) / f"member_{m:02d}" for m in range(members)]
    try:
        for member, member_dir in enumerate(dirs):
            train_member(member_dir, data, cfg, train, train.seed + member, resume, ranks)
    finally:
        ranks.close()
    return dirs


@dataclass
class Member:
    """One member in training: its models and optimiser, how far they got, and what it learns from.

    Everything a checkpoint writes (`_save`) and a resumed run restores (`_start`).
    """

    out: Path
    cfg: EncoderConfig
    train: TrainConfig
    seed: int
    data: TrainingData
    model: Encoder
    ema: EMA
    optimizer: torch.optim.Optimizer
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    history: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Schedule:
    """Steps per rank and epoch, and the learning rate at each step (warm-up, then cosine)."""

    span: int  # raw frames one training window covers
    per_rank: int
    total: int
    warmup: int

    @classmethod
    def plan(cls, data: TrainingData, cfg: EncoderConfig, train: TrainConfig, seed: int, world: int):
        span = (cfg.stack_frames - 1) * cfg.stack_step + 1
        per_rank = (
            len(epoch_batches(data.train, span, train.batch_size, np.random.default_rng(seed))) // world
        )
        if per_rank == 0:
            raise ValueError(f"too few training windows of {span} frames for {world} rank(s)")
        total = train.epochs * per_rank
        return cls(span, per_rank, total, min(round(train.warmup_epochs * per_rank), total // 4))

    def lr(self, train: TrainConfig, step: int) -> float:
        return train.lr * lr_factor(step, self.total, self.warmup, train.min_lr_ratio)


def train_member(
    out: Path,
    data: TrainingData,
    cfg: EncoderConfig,
    train: TrainConfig,
    seed: int,
    resume: bool,
    ranks: Ranks,
) -> Encoder:
    """Train one member into directory `out` (rank 0 writes it after every epoch); its EMA model."""
    member = _start(out, data, cfg, train, seed, resume, ranks.device)
    objective = _objective(member.model, ranks, len(data.neurons))
    schedule = Schedule.plan(data, cfg, train, seed, ranks.world)
    bar = tqdm(total=schedule.total, initial=member.step, desc=out.name, unit="step", disable=ranks.rank != 0)
    _show(bar, [], member.history)
    for _ in range(member.epoch, train.epochs):
        started = time.perf_counter()
        losses = _train_epoch(member, objective, schedule, ranks, bar)
        ranks.broadcast_buffers(member.model)
        ranks.broadcast_buffers(member.ema.model)
        if ranks.rank == 0:
            _validate(member, losses, seconds=time.perf_counter() - started)
            _show(bar, losses, member.history)
            _save(member)
    bar.close()
    ranks.check_agree(member.ema.model, str(out))
    return member.ema.model


def _start(out, data, cfg, train, seed, resume: bool, device) -> Member:
    """A fresh member (each readout starting at its mouse's mean response), or the saved one resumed."""
    saved = _resume_state(out, data, cfg, train, seed) if resume else None
    if saved is None and (out / META).exists():
        raise ValueError(
            f"{out} already holds a checkpoint; pass --resume to continue it or choose another --out"
        )
    torch.manual_seed(seed)
    model = Encoder(cfg, data.neurons)
    for mouse, clips in data.train.items():
        model.readouts[mouse].set_baseline(torch.cat([c.responses for c in clips]).mean(0))
        if cfg.shifter:
            model.shifters[mouse].set_centre(torch.cat([c.pupil_center for c in clips]))
    model.to(device)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, train), lr=train.lr, weight_decay=train.weight_decay
    )
    member = Member(out, cfg, train, seed, data, model, EMA(model, train.ema_decay), optimizer)
    if saved is not None:
        model.load_state_dict(saved["model"])
        member.ema.model.load_state_dict(saved["ema"])
        optimizer.load_state_dict(saved["optimizer"])
        member.epoch, member.step = int(saved["epoch"]), int(saved["step"])
        member.history = [h for h in read_json(out / META)["history"] if h["epoch"] <= member.epoch]
    return member


def parameter_groups(model: Encoder, train: TrainConfig) -> list[dict]:
    """The optimiser's groups: every weight at the schedule's rate; the shifters (if any) at
    `shifter_lr_scale` times it, without weight decay."""
    shifter = [p for n, p in model.named_parameters() if n.startswith("shifters.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("shifters.")]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if shifter:
        groups.append({"params": shifter, "lr_scale": train.shifter_lr_scale, "weight_decay": 0.0})
    return groups


def _objective(model: Encoder, ranks: Ranks, mice: int) -> nn.Module:
    """The loss the optimiser steps on; under torchrun wrapped in DDP (built after any resume)."""
    objective = PoissonObjective(model)
    if ranks.world == 1:
        return objective
    return nn.parallel.DistributedDataParallel(objective, find_unused_parameters=mice > 1)


def _train_epoch(member: Member, objective: nn.Module, schedule: Schedule, ranks: Ranks, bar) -> list[float]:
    """This rank's share of one epoch's batches, drawn from (seed, epoch) alone; the loss of each step."""
    seed, epoch, train = member.seed, member.epoch, member.train
    torch.manual_seed(seed * 100_003 + epoch)
    batches = epoch_batches(
        member.data.train, schedule.span, train.batch_size, np.random.default_rng([seed, epoch])
    )
    member.model.train()
    losses = []
    for batch in batches[ranks.rank :: ranks.world][: schedule.per_rank]:
        for group in member.optimizer.param_groups:
            group["lr"] = schedule.lr(train, member.step) * group["lr_scale"]
        tensors = stack_batch(
            member.data.train, batch, member.cfg.stack_frames, member.cfg.stack_step, ranks.device
        )
        loss = objective(*tensors, batch[0].mouse)
        member.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        member.optimizer.step()
        member.step += 1
        member.ema.update(member.model, member.step)
        losses.append(loss.item())
        bar.update()
        _show(bar, losses, member.history)
    member.epoch = epoch + 1
    return losses


def _validate(member: Member, losses: list[float], seconds: float) -> None:
    """Score the EMA model on the validation clips; the epoch's line of the history."""
    scores = response_correlation([member.ema.model], member.data.val, member.train.val_skip)
    member.history.append(
        {
            "epoch": member.epoch,
            "loss": float(np.mean(losses)),
            "val_correlation": float(np.mean(list(scores.values()))),
            "val_correlation_per_mouse": scores,
            "seconds": seconds,  # training and validation
        }
    )
    log.info("%s epoch %d/%d: %s", member.out.name, member.epoch, member.train.epochs, member.history[-1])


def _show(bar, losses: list[float], history: list[dict]) -> None:
    """The progress bar's recent loss and last validation score."""
    recent = {"loss": f"{np.mean(losses[-50:]):.4f}"} if losses else {}
    last = {"val_corr": f"{history[-1]['val_correlation']:.3f}"} if history else {}
    bar.set_postfix(**recent, **last)


def _save(member: Member) -> None:
    """Training state first (self-consistent, enough to resume), then the inference files."""
    out = member.out
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(
        out / TRAINING_STATE,
        {
            "model": member.model.state_dict(),
            "ema": member.ema.model.state_dict(),
            "optimizer": member.optimizer.state_dict(),
            "epoch": member.epoch,
            "step": member.step,
        },
    )
    save_tensors(out / WEIGHTS, member.ema.model.state_dict())
    write_json(out / CONFIG, member.cfg.to_dict())
    meta = {
        "epoch": member.epoch,
        "epochs": member.train.epochs,
        "seed": member.seed,
        "train": asdict(member.train),
        **member.data.describe(),
    }
    write_json(out / META, {**meta, "history": member.history})


def _resume_state(out: Path, data: TrainingData, cfg: EncoderConfig, train: TrainConfig, seed: int):
    """The saved training state of `out` if it can be continued with these settings, None if fresh."""
    if not (out / META).exists():
        return None
    meta = read_json(out / META)
    stored_cfg = EncoderConfig.from_dict(read_json(out / CONFIG))
    if stored_cfg != cfg:
        raise ValueError(f"{out / CONFIG}: built with other model settings; resume with the same --preset")
    if TrainConfig.from_dict(meta["train"]) != train or meta["seed"] != seed:
        raise ValueError(
            f"{out / META}: trained with other settings {meta['train']}; resume with the same ones"
        )
    for key, value in data.describe().items():
        if meta[key] != value:
            raise ValueError(
                f"{out / META}: trained on other data ({key} differ); cannot resume on this dataset"
            )
    return load_tensors(out / TRAINING_STATE)
