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
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from stream_decoder.encoder.batches import ClipTensors, epoch_batches, load_clips, open_mice, stack_batch
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
from stream_decoder.encoder.model import Encoder, EncoderConfig
from stream_decoder.metrics import single_trial_correlation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0  # never more than a quarter of all steps
    min_lr_ratio: float = 0.01  # the cosine ends at lr x this
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
        rates = self.encoder.predict_frames(self.encoder.inputs(video, behavior, pupil_center), mouse)
        return F.poisson_nll_loss(rates, responses, log_input=False, full=False, eps=1e-8)


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int
    world: int
    device: torch.device

    @classmethod
    def start(cls, device: str | None = None) -> "Ranks":
        """Join the process group torchrun describes in the environment, if there is one."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        gpu = torch.cuda.is_available() if device is None else device.startswith("cuda")
        if world == 1:
            return cls(0, 1, torch.device(device or ("cuda" if gpu else "cpu")))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if gpu else "gloo")
        if gpu:
            torch.cuda.set_device(local_rank)
        return cls(
            dist.get_rank(), dist.get_world_size(), torch.device(f"cuda:{local_rank}" if gpu else "cpu")
        )

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Make every rank hold rank 0's BatchNorm statistics (each rank updated its own)."""
        if self.world > 1:
            for buffer in module.buffers():
                dist.broadcast(buffer, 0)

    def check_agree(self, module: nn.Module, what: str) -> None:
        if self.world == 1:
            return
        flat = torch.cat([t.detach().double().flatten() for t in module.state_dict().values()])
        gathered = [torch.empty_like(flat) for _ in range(self.world)]
        dist.all_gather(gathered, flat)
        if not all(torch.equal(gathered[0], other) for other in gathered[1:]):
            raise RuntimeError(f"{what}: ranks ended with different weights")


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
    state = _resume_state(out, data, cfg, train, seed) if resume else None
    if state is None and (out / META).exists():
        raise ValueError(
            f"{out} already holds a checkpoint; pass --resume to continue it or choose another --out"
        )
    torch.manual_seed(seed)
    model = Encoder(cfg, data.neurons)
    for mouse, clips in data.train.items():
        model.readouts[mouse].set_baseline(torch.cat([c.responses for c in clips]).mean(0))
    model.to(ranks.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    ema = EMA(model, train.ema_decay)
    first_epoch, step, history = 0, 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        ema.model.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        first_epoch, step = int(state["epoch"]), int(state["step"])
        history = [h for h in read_json(out / META)["history"] if h["epoch"] <= first_epoch]
    objective = PoissonObjective(model)
    if ranks.world > 1:
        objective = nn.parallel.DistributedDataParallel(
            objective, find_unused_parameters=len(data.neurons) > 1
        )

    span = (cfg.stack_frames - 1) * cfg.stack_step + 1
    per_rank = (
        len(epoch_batches(data.train, span, train.batch_size, np.random.default_rng(seed))) // ranks.world
    )
    if per_rank == 0:
        raise ValueError(f"too few training windows of {span} frames for {ranks.world} rank(s)")
    total = train.epochs * per_rank
    warmup = min(round(train.warmup_epochs * per_rank), total // 4)
    bar = tqdm(total=total, initial=step, desc=out.name, unit="step", disable=ranks.rank != 0)
    if history:
        bar.set_postfix(val_corr=f"{history[-1]['val_correlation']:.3f}")
    for epoch in range(first_epoch, train.epochs):
        started, losses = time.perf_counter(), []
        torch.manual_seed(seed * 100_003 + epoch)
        batches = epoch_batches(data.train, span, train.batch_size, np.random.default_rng([seed, epoch]))
        model.train()
        for batch in batches[ranks.rank :: ranks.world][:per_rank]:
            for group in optimizer.param_groups:
                group["lr"] = train.lr * lr_factor(step, total, warmup, train.min_lr_ratio)
            tensors = stack_batch(data.train, batch, cfg.stack_frames, cfg.stack_step, ranks.device)
            loss = objective(*tensors, batch[0].mouse)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            ema.update(model, step)
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", **_last_val(history))
        ranks.broadcast_buffers(model)
        ranks.broadcast_buffers(ema.model)
        if ranks.rank == 0:
            scores = response_correlation([ema.model], data.val, train.val_skip)
            history.append(
                {
                    "epoch": epoch + 1,
                    "loss": float(np.mean(losses)),
                    "val_correlation": float(np.mean(list(scores.values()))),
                    "val_correlation_per_mouse": scores,
                    "seconds": time.perf_counter() - started,  # training and validation
                }
            )
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", **_last_val(history))
            log.info("%s epoch %d/%d: %s", out.name, epoch + 1, train.epochs, history[-1])
            _save(out, model, ema, optimizer, epoch + 1, step, cfg, train, seed, data, history)
    bar.close()
    ranks.check_agree(ema.model, str(out))
    return ema.model


def _last_val(history: list[dict]) -> dict:
    return {"val_corr": f"{history[-1]['val_correlation']:.3f}"} if history else {}


def _save(out, model, ema, optimizer, epoch, step, cfg, train, seed, data, history) -> None:
    """Training state first (self-consistent, enough to resume), then the inference files."""
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(
        out / TRAINING_STATE,
        {
            "model": model.state_dict(),
            "ema": ema.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "step": step,
        },
    )
    save_tensors(out / WEIGHTS, ema.model.state_dict())
    write_json(out / CONFIG, cfg.to_dict())
    meta = {"epoch": epoch, "epochs": train.epochs, "seed": seed, "train": asdict(train), **data.describe()}
    write_json(out / META, {**meta, "history": history})


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
