"""Distillation: the student learns its targets from activity, generalises to held-out clips, degrades
gracefully with missing neurons, and refuses targets made from other data.

The targets here are a store written by the test (each clip's true video, blurred like a teacher's
reconstruction) so that the distillation is tested on its own; the teacher is tested in test_teacher.
"""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from stream_decoder.data import CLIP_FRAMES
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.distill import DistillConfig, distill
from stream_decoder.decoder.evaluate import evaluate
from stream_decoder.teacher.store import TeacherStore

FAST = DistillConfig(latent=64, epochs=30, batch_size=4, lookahead=4, neuron_dropout=0.2)


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
    cfg = DistillConfig(latent=16, epochs=1, batch_size=8, lookahead=2)
    artifact = distill(tiny_root, tmp_path / "store", tmp_path / "artifact", cfg, progress=False)
    assert artifact.meta.provenance["validation"] == {}
    assert len(artifact.meta.provenance["train_trials"]) == len(train)


def test_artifact_records_where_the_teacher_scores():
    from stream_decoder.decoder.distill import mask_pixels

    alpha = np.zeros((36, 64), np.float32)
    alpha[1, 2] = alpha[3, 4] = 1.2
    alpha[5, 6] = 0.9  # may change in the teacher, but is not scored
    assert mask_pixels(alpha) == [1 * 64 + 2, 3 * 64 + 4]
    assert mask_pixels(None) is None
