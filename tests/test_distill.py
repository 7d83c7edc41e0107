"""Distillation: the student learns its targets from activity, generalises to held-out clips, degrades
gracefully with missing neurons, and refuses targets made from other data.

The targets here are a store written by the test (each clip's true video, blurred like a teacher's
reconstruction) so that the distillation is tested on its own; the teacher is tested in test_teacher.
"""

import inspect
import shutil
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from stream_decoder.data import CLIP_FRAMES
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.distill import (
    PAIR_FILES,
    DistillConfig,
    Pairs,
    distill,
    new_student,
    pixel_weights,
    train_student,
    training_data,
    validation_scores,
)
from stream_decoder.decoder.evaluate import evaluate
from stream_decoder.paths import cache_dir
from stream_decoder.teacher.store import TeacherStore

FAST = DistillConfig(latent=64, epochs=30, batch_size=4, lookahead=4, neuron_dropout=0.2, truth_weight=0.0)


def write_store(root, mouse, trials, videos) -> TeacherStore:
    store = TeacherStore(root)
    store.begin({"teacher": "test targets", "fingerprints": {mouse.name: mouse.fingerprint()}})
    for trial, video in zip(trials, videos, strict=True):
        store.save(mouse.name, trial, video, {"seconds": 1.0})
    return store


@pytest.fixture(scope="module")
def targets(tiny_mouse):
    trials = tiny_mouse.trials(["train", "oracle"])
    videos = [gaussian_filter(tiny_mouse.clip(t).video[:CLIP_FRAMES], (0.5, 1.5, 1.5)) for t in trials]
    return trials, videos


@pytest.fixture(scope="module")
def distilled(tiny_root, tiny_mouse, targets, tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    write_store(root / "store", tiny_mouse, *targets)
    return distill(tiny_root, root / "store", root / "artifact", FAST, progress=False), root / "store"


def test_student_learns_held_out_clips_from_activity(distilled, tiny_root, tiny_mouse, targets, tmp_path):
    artifact, _ = distilled
    scores = artifact.meta.provenance["validation"]
    trials, videos = targets
    shuffled = videos[1:] + videos[:1]  # every clip paired with another clip's target
    write_store(tmp_path / "store", tiny_mouse, trials, shuffled)
    control = distill(tiny_root, tmp_path / "store", tmp_path / "artifact", FAST, progress=False)
    control_scores = control.meta.provenance["validation"]
    assert scores["student_vs_teacher"] > 0.2
    assert scores["student_vs_truth"] > control_scores["student_vs_truth"] + 0.1
    assert set(artifact.meta.provenance["train_trials"]).isdisjoint(tiny_mouse.trials("oracle"))


def test_artifact_is_self_describing(distilled, tiny_mouse):
    artifact, store = distilled
    loaded = load_artifact(artifact.path)
    assert loaded.meta.n_neurons == tiny_mouse.n_neurons
    assert loaded.meta.lookahead == FAST.lookahead
    assert loaded.meta.data_fingerprint == tiny_mouse.fingerprint()
    assert loaded.meta.neuron_set == tiny_mouse.neuron_set()  # what `info` reports (docs/protocol.md §5.3)
    assert loaded.meta.provenance["teacher_store"] == str(store.resolve())


def test_missing_neurons_degrade_gracefully(distilled, tiny_root):
    artifact, store = distilled
    result = evaluate(artifact.path, tiny_root, store, tiers=("oracle",), missing=(0.0, 0.25, 0.75))
    oracle = result["groups"]["oracle"]
    assert oracle["missing"]["0.0"] == pytest.approx(oracle["student"])
    assert oracle["missing"]["0.25"] > 0.5 * oracle["student"]
    assert oracle["missing"]["0.75"] < oracle["missing"]["0.0"]
    assert oracle["teacher_clips"] == oracle["clips"] and np.isfinite(oracle["student_vs_teacher"])


def test_distill_refuses_targets_of_other_data(tiny_root, tiny_mouse, targets, tmp_path):
    store = TeacherStore(tmp_path / "store")
    store.begin({"fingerprints": {tiny_mouse.name: "not-this-data"}})
    with pytest.raises(ValueError, match="fingerprint"):
        distill(tiny_root, tmp_path / "store", tmp_path / "artifact", FAST, progress=False)


def test_distills_from_a_store_of_training_clips_only(tiny_root, tiny_mouse, targets, tmp_path):
    trials, videos = targets
    train = [(t, v) for t, v in zip(trials, videos, strict=True) if t in set(tiny_mouse.trials("train"))]
    write_store(tmp_path / "store", tiny_mouse, *zip(*train, strict=True))
    cfg = DistillConfig(latent=16, epochs=1, batch_size=8, lookahead=2, truth_weight=0.0)
    artifact = distill(tiny_root, tmp_path / "store", tmp_path / "artifact", cfg, progress=False)
    assert artifact.meta.provenance["validation"] == {}
    assert len(artifact.meta.provenance["train_trials"]) == len(train)


def test_artifact_records_where_the_teacher_scores(tiny_root, tiny_mouse, targets, tmp_path):
    trials, videos = targets
    store = write_store(tmp_path / "store", tiny_mouse, trials, videos)
    alpha = np.zeros((36, 64), np.float32)
    alpha[1, 2] = alpha[3, 4] = 1.2
    alpha[5, 6] = 0.9  # may change in the teacher, but is not scored
    store.save_alpha(tiny_mouse.name, alpha)
    cfg = DistillConfig(latent=16, epochs=1, batch_size=8, lookahead=2, truth_weight=0.0)
    artifact = distill(tiny_root, tmp_path / "store", tmp_path / "artifact", cfg, progress=False)
    assert artifact.meta.provenance["evaluation_mask"] == [1 * 64 + 2, 3 * 64 + 4]
    assert np.flatnonzero(load_artifact(artifact.path).evaluation_mask).tolist() == [1 * 64 + 2, 3 * 64 + 4]


TRUTH = DistillConfig(
    latent=64, epochs=30, batch_size=4, lookahead=4
)  # the default: true frames, mask-weighted


def test_a_student_trained_on_the_true_stimuli_beats_one_trained_on_shuffled_responses(tiny_root):
    """No teacher: the true frames are the targets. The control pairs every clip's responses with
    another clip's frames, so it can learn only what the frames share."""
    found = training_data(tiny_root, None, TRUTH, mask=None, mouse_name=None)
    weights = pixel_weights(None, TRUTH.outside_weight, (36, 64))
    scores = {}
    for name, train in (("real", found.train), ("shuffled", shuffled_responses(found.train))):
        torch.manual_seed(0)
        student = new_student(TRUTH, train)
        train_student(student, train, TRUTH, weights, progress=False)
        scores[name] = validation_scores(student, found.validation, None)["student_vs_truth"]
    assert scores["real"] > 0.15 and scores["real"] > scores["shuffled"] + 0.1, scores  # 0.20 and -0.03 here


def shuffled_responses(pairs: Pairs) -> Pairs:
    order = np.roll(np.arange(len(pairs)), 1)
    return Pairs(pairs.trials, pairs.activity[order], pairs.behavior[order], pairs.pupil[order], pairs.truth)


def test_teacher_targets_without_a_teacher_store_are_refused_clearly(tiny_root, tmp_path):
    with pytest.raises(ValueError, match=r"truth_weight 0.5 < 1 asks for teacher targets: give --teacher"):
        distill(tiny_root, None, tmp_path / "artifact", DistillConfig(truth_weight=0.5), progress=False)


def test_the_loss_weights_the_evaluation_mask_above_the_rest_and_average_one():
    mask = np.zeros((36, 64), bool)
    mask[10:20, 20:40] = True
    weights = pixel_weights(mask, 0.1, (36, 64))
    assert weights.mean().item() == pytest.approx(1.0)
    assert weights[15, 30].item() == pytest.approx(10 * weights[0, 0].item())
    assert torch.equal(pixel_weights(None, 0.1, (36, 64)), torch.ones(36, 64))


def test_the_ensemble_generates_new_movies_with_each_neurons_recorded_noise(tiny_encoders, tiny_mouse):
    from stream_decoder.data import PlaneTiming, student_inputs
    from stream_decoder.decoder.synthetic import ensemble_rates, noise_scale, synthetic_clips
    from stream_decoder.encoder import load_ensemble

    encoders = [e.eval() for e in load_ensemble(tiny_encoders, {tiny_mouse.name: tiny_mouse})]
    timing = PlaneTiming.single_plane(tiny_mouse.n_neurons)
    recorded = [student_inputs(tiny_mouse, t, timing) for t in tiny_mouse.trials("train")[:4]]
    made = synthetic_clips(encoders, tiny_mouse.name, recorded, 3, timing, noise_clips=4, progress=False)
    sigma = noise_scale(encoders, tiny_mouse.name, recorded)
    for activity, behavior, pupil, video in made:
        assert activity.shape == recorded[0][0].shape and (activity >= 0).all()
        assert not any(np.array_equal(video, r[3]) for r in recorded)  # a new movie, not a recorded one
        rates = ensemble_rates(encoders, tiny_mouse.name, video, behavior, pupil)
        above = activity > 0  # unclipped values: the rates plus the neuron's noise
        spread = (activity - rates)[above].std() / sigma[np.nonzero(above)[1]].mean()
        assert 0.7 < spread < 1.3
        assert np.corrcoef(activity.ravel(), rates.ravel())[0, 1] > 0.3


def test_synthetic_clips_are_made_one_at_a_time_and_repeat_for_a_seed(tiny_encoders, tiny_mouse):
    from stream_decoder.data import PlaneTiming, student_inputs
    from stream_decoder.decoder.synthetic import synthetic_clips
    from stream_decoder.encoder import load_ensemble

    encoders = [e.eval() for e in load_ensemble(tiny_encoders, {tiny_mouse.name: tiny_mouse})]
    timing = PlaneTiming.single_plane(tiny_mouse.n_neurons)
    recorded = [student_inputs(tiny_mouse, t, timing) for t in tiny_mouse.trials("train")[:4]]

    def made(seed):
        return synthetic_clips(encoders, tiny_mouse.name, recorded, 2, timing, noise_clips=4, seed=seed)

    clips = made(seed=3)
    assert inspect.isgenerator(clips)  # a clip at a time: never all of them in memory at once
    first, again, other = list(clips), list(made(seed=3)), list(made(seed=4))
    assert len(first) == 2
    for mine, same, different in zip(first, again, other, strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(mine, same, strict=True))
        assert not np.array_equal(mine[3], different[3])


def test_synthetic_pairs_fill_one_allocation_equal_to_stacking_them_in_memory_or_on_disk(
    tiny_root, tiny_encoders, tmp_path
):
    from stream_decoder.data import PlaneTiming, student_inputs
    from stream_decoder.decoder.synthetic import synthetic_clips
    from stream_decoder.encoder import load_ensemble

    cfg = DistillConfig(latent=16, epochs=1, batch_size=8, lookahead=2, synthetic_clips=3)
    found = training_data(tiny_root, None, cfg, None, None)
    mouse = found.mouse
    encoders = [e.eval() for e in load_ensemble(tiny_encoders, {mouse.name: mouse})]
    at_30_hz = PlaneTiming.single_plane(mouse.n_neurons)
    recorded = [student_inputs(mouse, t, at_30_hz) for t in found.train.trials[:4]]
    clips = list(synthetic_clips(encoders, mouse.name, recorded, 3, found.timing, noise_clips=4))
    filled = found.train.extended(iter(clips), 3, prefix="synthetic-")
    on_disk = found.train.extended(iter(clips), 3, prefix="synthetic-", folder=tmp_path)
    assert filled.trials == [*found.train.trials, "synthetic-0", "synthetic-1", "synthetic-2"]
    assert on_disk.trials == filled.trials and filled.teacher is None and on_disk.teacher is None
    recorded_tensors = (found.train.activity, found.train.behavior, found.train.pupil, found.train.truth)
    for column, (mine, tensor, streamed) in enumerate(
        zip(
            recorded_tensors,
            (filled.activity, filled.behavior, filled.pupil, filled.truth),
            (on_disk.activity, on_disk.behavior, on_disk.pupil, on_disk.truth),
            strict=True,
        )
    ):
        stacked = torch.from_numpy(np.stack([clip[column] for clip in clips])).float()
        assert tensor.dtype == torch.float32 and torch.equal(tensor, torch.cat([mine, stacked]))
        assert streamed.dtype == torch.float32 and torch.equal(streamed, tensor)
    batch = torch.tensor([len(found.train) + 2, 0])
    for mine, streamed in zip(
        vars(filled.take(batch)).values(), vars(on_disk.take(batch)).values(), strict=True
    ):
        assert mine == streamed if isinstance(mine, list | None) else torch.equal(mine, streamed)
    files = {path.name: np.load(path, mmap_mode="r").shape for path in tmp_path.glob("*.npy")}
    assert files == {f"{name}.npy": tuple(getattr(filled, name).shape) for name in PAIR_FILES}
    with pytest.raises(ValueError, match="made 3 clips, expected 4"):
        found.train.extended(iter(clips), 4, prefix="synthetic-")
    with pytest.raises(ValueError, match="more than the 2 clips expected"):
        found.train.extended(iter(clips), 2, prefix="synthetic-")


def test_distill_refuses_synthetic_pairs_that_do_not_fit_on_disk(
    tiny_root, tiny_encoders, tmp_path, monkeypatch
):
    cfg = DistillConfig(latent=16, epochs=1, batch_size=8, lookahead=2, synthetic_clips=4)
    found = training_data(tiny_root, None, cfg, None, None)
    need = (len(found.train) + 4) * found.train.clip_nbytes()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=need - 1))
    with pytest.raises(ValueError, match="free; lower --synthetic-clips") as refused:
        distill(tiny_root, None, tmp_path / "a", cfg, progress=False, ensemble=tiny_encoders[0].parent)
    assert f"need {need / 1e9:.2f} GB of disk" in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "a").exists() and not list(cache_dir().glob("pairs-*"))


def test_distill_with_synthetic_pairs_trains_on_them_and_records_the_ensemble(
    tiny_root, tiny_encoders, tmp_path, caplog
):
    cfg = DistillConfig(latent=16, epochs=1, batch_size=8, lookahead=2, synthetic_clips=4)
    ensemble = tiny_encoders[0].parent
    with caplog.at_level("INFO", logger="stream_decoder.decoder.distill"):
        artifact = distill(tiny_root, None, tmp_path / "artifact", cfg, progress=False, ensemble=ensemble)
    provenance = artifact.meta.provenance
    assert provenance["ensemble"] == str(ensemble.resolve()) and provenance["distill"]["synthetic_clips"] == 4
    assert provenance["train_pairs"] == len(provenance["train_trials"]) + 4
    assert f"training pairs: {provenance['train_pairs']} clips (4 synthetic)" in caplog.text
    assert not list(cache_dir().glob("pairs-*"))  # the pairs on disk went with the training
    with pytest.raises(ValueError, match="give --ensemble"):
        distill(tiny_root, None, tmp_path / "other", cfg, progress=False)
    with pytest.raises(ValueError, match="need truth_weight 1"):
        DistillConfig(synthetic_clips=4, truth_weight=0.5)


def test_the_read_in_starts_from_a_baselines_components_and_stays_there_frozen(tiny_root, baseline, tmp_path):
    ridge = baseline.model()
    components = ridge.cfg.components
    cfg = DistillConfig(latent=components, epochs=2, batch_size=8, lookahead=2, freeze_read_in=True)
    artifact = distill(tiny_root, None, tmp_path / "frozen", cfg, progress=False, read_in=baseline.path)
    student = artifact.model()
    assert torch.equal(student.read_in.weight, ridge.read_in.weight[:components])
    assert torch.equal(student.activity_std, ridge.activity_std)
    assert artifact.meta.provenance["read_in_from"] == str(baseline.path.resolve())
    unfrozen = replace(cfg, freeze_read_in=False)
    free = distill(
        tiny_root, None, tmp_path / "free", unfrozen, progress=False, read_in=baseline.path
    ).model()
    assert not torch.equal(free.read_in.weight, ridge.read_in.weight[:components])  # trained on from there
    narrower = replace(cfg, latent=components // 2)
    half = distill(tiny_root, None, tmp_path / "half", narrower, progress=False, read_in=baseline.path)
    leading = ridge.read_in.weight[: components // 2]
    assert torch.equal(half.model().read_in.weight, leading)
    wider = DistillConfig(latent=components + 1, epochs=1)
    with pytest.raises(ValueError, match=f"--components {components + 1} or more"):
        distill(tiny_root, None, tmp_path / "x", wider, progress=False, read_in=baseline.path)
