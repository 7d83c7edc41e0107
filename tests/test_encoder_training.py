"""Ensemble training on the tiny synthetic mouse: it learns, it records what it learned from, it
resumes exactly, bad checkpoints fail clearly, and DDP ranks agree."""

import itertools
import json
import os
import shutil
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from stream_decoder.cli import main
from stream_decoder.data import open_mice
from stream_decoder.distributed import Ranks
from stream_decoder.encoder import (
    EncoderConfig,
    load_encoder,
    load_ensemble,
    member_dirs,
    predict_clip,
    preset,
)
from stream_decoder.encoder import training as training_module
from stream_decoder.encoder.batches import ClipTensors
from stream_decoder.encoder.training import EMA, TrainConfig, TrainingData, lr_factor, train_member
from stream_decoder.metrics import single_trial_correlation

SMALL = preset("cpu", features=(8, 8, 16), strides=(1, 2, 1), cortex_features=(32, 64))


def mean_correlation(predicted, clips):
    return float(np.nanmean(single_trial_correlation(predicted, [c.responses.numpy() for c in clips])))


def test_trained_members_predict_held_out_responses_far_better_than_chance(tiny_encoders, tiny_mouse):
    encoders = load_ensemble(tiny_encoders, {tiny_mouse.name: tiny_mouse})
    assert len(encoders) == 2
    # Held out: the validation tier, never trained on. Chance: the same predictions against the
    # responses of trials that showed the other movie (and had their own behaviour).
    movies = tiny_mouse.repeats("oracle")
    assert len(movies) == 2
    clips = [ClipTensors.from_clip(tiny_mouse.clip(t)) for movie in movies for t in movie]
    swapped = [ClipTensors.from_clip(tiny_mouse.clip(t)) for movie in movies[::-1] for t in movie]
    predicted = [[predict_clip([e], c, tiny_mouse.name) for c in clips] for e in encoders]
    members = [mean_correlation(p, clips) for p in predicted]
    for score, p in zip(members, predicted, strict=True):
        chance = mean_correlation(p, swapped)
        assert chance < 0.05
        assert score > max(chance, 0.0) + 0.1
    ensemble = [np.mean(parts, axis=0) for parts in zip(*predicted, strict=True)]
    assert mean_correlation(ensemble, clips) >= np.mean(members)
    # Members differ only in seed, yet they are different models.
    assert not torch.equal(encoders[0].stem[0].weight, encoders[1].stem[0].weight)


def test_checkpoint_records_config_neurons_data_and_history(tiny_encoders, tiny_mouse):
    meta = json.loads((tiny_encoders[0] / "meta.json").read_text())
    assert meta["neurons"] == {tiny_mouse.name: tiny_mouse.n_neurons}
    assert meta["fingerprints"] == {tiny_mouse.name: tiny_mouse.fingerprint()}
    assert meta["epoch"] == meta["epochs"] == 2
    assert [h["epoch"] for h in meta["history"]] == [1, 2]
    assert meta["history"][-1]["val_correlation"] > meta["history"][0]["val_correlation"] > 0
    config = json.loads((tiny_encoders[0] / "config.json").read_text())
    assert EncoderConfig.from_dict(config) == preset("cpu")
    model = load_encoder(tiny_encoders[0])
    assert not model.training
    weights = torch.load(tiny_encoders[0] / "weights.pt", weights_only=True)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_bad_checkpoints_fail_clearly(tiny_encoders, tiny_mouse, tmp_path):
    mice = {tiny_mouse.name: tiny_mouse}
    member = tmp_path / "member"

    def fresh_copy():
        shutil.rmtree(member, ignore_errors=True)
        shutil.copytree(tiny_encoders[0], member)
        return json.loads((member / "meta.json").read_text())

    fresh_copy()
    (member / "weights.pt").write_bytes((member / "weights.pt").read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"member/weights\.pt: unreadable"):
        load_encoder(member)

    fresh_copy()
    torch.save({"stem": torch.nn.Linear(2, 2)}, member / "weights.pt")  # pickled code, not tensors
    with pytest.raises(ValueError, match=r"weights\.pt: unreadable or not a weights-only"):
        load_encoder(member)

    meta = fresh_copy()
    n = tiny_mouse.n_neurons
    meta["neurons"][tiny_mouse.name] = n - 2  # readouts round up to whole groups: n - 1 would fit
    (member / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"meta\.json: mouse .* has {n - 2} neurons here, {n} in the data"):
        load_encoder(member, mice)
    with pytest.raises(ValueError, match=r"weights\.pt: does not fit"):
        load_encoder(member)

    meta = fresh_copy()
    meta["fingerprints"][tiny_mouse.name] = "0123456789abcdef"
    (member / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"meta\.json: mouse .* other data \(fingerprint differs\)"):
        load_ensemble([member], mice)
    assert load_encoder(member) is not None  # without data to compare, the fingerprint is only recorded

    fresh_copy()
    with pytest.raises(ValueError, match="no readout for mouse 'other'"):
        load_encoder(member, {"other": tiny_mouse})
    (member / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_encoder(member)
    with pytest.raises(FileNotFoundError, match="no encoder checkpoints"):
        load_ensemble(tmp_path / "empty")


def few_clips(root) -> TrainingData:
    """Six training and two validation clips per mouse: enough to exercise training, and quick."""
    data = TrainingData.load(root, "train", "oracle", progress=False)
    for mouse in data.neurons:
        data.train[mouse] = data.train[mouse][:6]
        data.val[mouse] = data.val[mouse][:2]
    return data


def test_resume_continues_exactly_where_training_stopped(tiny_root, tmp_path, monkeypatch):
    data = few_clips(tiny_root)
    settings = TrainConfig(epochs=2, batch_size=8)
    ranks = Ranks.start("cpu")
    straight = train_member(tmp_path / "straight", data, SMALL, settings, seed=3, resume=False, ranks=ranks)

    save = training_module._save

    def save_then_crash(member):
        save(member)
        raise KeyboardInterrupt

    monkeypatch.setattr(training_module, "_save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train_member(tmp_path / "stopped", data, SMALL, settings, seed=3, resume=False, ranks=ranks)
    monkeypatch.setattr(training_module, "_save", save)
    assert json.loads((tmp_path / "stopped/meta.json").read_text())["epoch"] == 1

    with pytest.raises(ValueError, match="already holds a checkpoint; pass --resume"):
        train_member(tmp_path / "stopped", data, SMALL, settings, seed=3, resume=False, ranks=ranks)
    with pytest.raises(ValueError, match="trained with other settings"):
        train_member(tmp_path / "stopped", data, SMALL, TrainConfig(epochs=2, lr=1e-3), 3, True, ranks)
    with pytest.raises(ValueError, match="other model settings"):
        train_member(tmp_path / "stopped", data, preset("cpu"), settings, seed=3, resume=True, ranks=ranks)

    resumed = train_member(tmp_path / "stopped", data, SMALL, settings, seed=3, resume=True, ranks=ranks)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0, msg=key)
    history = json.loads((tmp_path / "stopped/meta.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]


def test_published_shape_trains_on_frame_stacks_and_predicts_by_sliding_windows(tiny_root, tmp_path):
    # The dwiseneuro preset's code path (16-frame stacks at step 2, sliding inference), shrunk, on
    # few clips and a short validation clip: sliding inference runs one stack per frame.
    cfg = preset(
        "dwiseneuro", features=(8, 16), strides=(2, 2), expansion=2, se_reduce=4, cortex_features=(32, 64)
    )
    settings = TrainConfig(epochs=1, batch_size=4, train_tier="oracle", val_tier="live_test_bonus")
    data = TrainingData.load(tiny_root, settings.train_tier, settings.val_tier)
    (mouse,) = data.neurons
    data.train[mouse] = data.train[mouse][:4]
    first = data.val[mouse][0]
    clip = ClipTensors(
        first.trial, *(x[:80] for x in (first.video, first.behavior, first.pupil_center, first.responses))
    )
    data.val[mouse] = [clip]
    train_member(tmp_path / "m", data, cfg, settings, seed=0, resume=False, ranks=Ranks.start("cpu"))
    (history,) = json.loads((tmp_path / "m/meta.json").read_text())["history"]
    assert np.isfinite(history["loss"]) and np.isfinite(history["val_correlation"])
    model = load_encoder(tmp_path / "m")
    assert model.cfg.sliding and model.cfg.stack_step == 2
    rates = predict_clip([model], clip, mouse)
    assert rates.shape == clip.responses.shape and (rates >= 0).all()


def _ddp_worker(rank: int, root, out, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)
    ranks = Ranks.start("cpu")
    data = few_clips(root)
    model = train_member(out / "member_00", data, SMALL, TrainConfig(epochs=1, batch_size=4), 0, False, ranks)
    torch.save(model.state_dict(), out / f"rank{rank}.pt")
    ranks.close()


def test_ddp_with_two_gloo_processes_ends_with_identical_weights_on_both_ranks(tiny_root, tmp_path):
    # Two mice (the tiny one under two names): each step's batch uses one readout, so DDP must
    # also handle parameters that get no gradient on a rank.
    source = open_mice(tiny_root)
    root = tmp_path / "two_mice"
    for name in ("mouse_a", "mouse_b"):
        shutil.copytree(next(iter(source.values())).path, root / name, copy_function=os.link)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(root, tmp_path, port), nprocs=2, join=True)

    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    saved = torch.load(tmp_path / "member_00/weights.pt", weights_only=True)
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key
        assert torch.equal(value, saved[key]), key
    model = load_encoder(tmp_path / "member_00", open_mice(root))
    assert set(model.readouts) == {"mouse_a", "mouse_b"}
    torch.manual_seed(0)
    for mouse in ("mouse_a", "mouse_b"):  # both readouts learned, starting from the same weights
        start = training_module.Encoder(SMALL, model.neurons).readouts[mouse].conv.weight
        assert not torch.allclose(model.readouts[mouse].conv.weight, start)


def test_learning_rate_warms_up_linearly_then_decays_to_the_floor():
    factors = [lr_factor(s, total=100, warmup=10, floor=0.01) for s in range(100)]
    np.testing.assert_allclose(factors[:10], np.arange(1, 11) / 10)
    assert factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert lr_factor(100, total=100, warmup=10, floor=0.01) == pytest.approx(0.01)


def test_ema_follows_fast_at_first_then_slowly_and_copies_batchnorm_statistics():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    ema = EMA(model, decay=0.999)
    before = ema.model[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(5.0)
    ema.update(model, step=1)  # early: decay (1 + 1) / (10 + 1)
    torch.testing.assert_close(ema.model[0].weight, before + 9 / 11)
    assert torch.equal(ema.model[1].running_mean, torch.full((3,), 5.0))
    late = ema.model[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model, step=100_000)
    torch.testing.assert_close(ema.model[0].weight, late + 0.001 * (model[0].weight - late))


def test_cli_rejects_bad_arguments_with_a_clear_error(tmp_path, capsys):
    assert main(["train-encoder", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "nowhere: no such dataset folder" in capsys.readouterr().err
    assert main(["train-encoder", "--data", str(tmp_path), "--members", "0"]) == 2
    assert "--members must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_member_dirs_lists_an_ensemble_in_order(tiny_encoders):
    assert member_dirs(tiny_encoders[0].parent) == tiny_encoders
    assert member_dirs(tiny_encoders[1]) == [tiny_encoders[1]]
