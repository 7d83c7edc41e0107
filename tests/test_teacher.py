"""The teacher: windows as published, inversion that recovers stimuli, the alpha mask, the store."""

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from stream_decoder.data import GRAY
from stream_decoder.encoder.batches import ClipTensors
from stream_decoder.encoder.checkpoint import load_ensemble
from stream_decoder.metrics import video_correlation
from stream_decoder.teacher.config import preset
from stream_decoder.teacher.job import Job, WarmStart, run
from stream_decoder.teacher.mask import MaskConfig, train_alpha_mask
from stream_decoder.teacher.reconstruct import reconstruct, window_index

FAST = preset("cpu", iterations=30)
FRAMES = 120  # clips cut short: the encoder's cost per iteration grows with the frames


def cut(clip: ClipTensors) -> ClipTensors:
    return ClipTensors(
        clip.trial,
        clip.video[:FRAMES],
        clip.behavior[:FRAMES],
        clip.pupil_center[:FRAMES],
        clip.responses[:FRAMES],
    )


@pytest.fixture(scope="module")
def encoders(tiny_encoders):
    """One member: the tests are about the inversion, and each member costs a full inversion."""
    return [e.requires_grad_(False) for e in load_ensemble(tiny_encoders[:1])]


@pytest.fixture(scope="module")
def held_out(tiny_mouse):
    return [cut(ClipTensors.from_clip(tiny_mouse.clip(t))) for t, *_ in tiny_mouse.repeats("oracle")[:2]]


def test_published_windows_cover_a_clip_like_the_paper():
    index = window_index(300, 32, 8)
    assert index.shape == (35, 32)
    assert index[0, 0] == 0 and index[-1, -1] == 299 and index[-2, 0] == 264
    assert torch.equal(torch.bincount(index.flatten()) > 0, torch.ones(300, dtype=torch.bool))
    assert window_index(300, None, 8).shape == (1, 300)


def test_fewer_iterations_than_the_warm_up_are_refused_naming_both(tmp_path, capsys):
    # Fewer iterations than the rate's warm-up never reach the set rate: the video stays near gray.
    with pytest.raises(ValueError, match=r"iterations=5 .*warm-?up=10"):
        preset("cpu", iterations=5)
    preset("cpu", iterations=10)  # exactly the warm-up is fine
    from stream_decoder.cli import main

    argv = ["reconstruct", "--data", str(tmp_path), "--models", str(tmp_path), "--iterations", "5"]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "5" in line and "10" in line and "--iterations" in line
    assert not (tmp_path / "teacher").exists()


def test_inverting_own_predictions_recovers_that_clip_rather_than_another(encoders, held_out, tiny_mouse):
    clip = held_out[0]
    with torch.no_grad():
        predicted = torch.stack(
            [
                e(clip.video[None], clip.behavior[None], clip.pupil_center[None], tiny_mouse.name)
                for e in encoders
            ]
        ).mean(0)[0]
    own = ClipTensors(clip.trial, clip.video, clip.behavior, clip.pupil_center, predicted)
    video = reconstruct([own], encoders, tiny_mouse.name, cfg=FAST, progress=False)[0]
    own_score = video_correlation(video, clip.video.numpy())
    assert own_score > 0.02
    assert own_score > video_correlation(video, held_out[1].video.numpy()) + 0.02


def test_reconstruction_from_recorded_responses_correlates_with_held_out_clip(encoders, held_out, tiny_mouse):
    videos = reconstruct(held_out, encoders, tiny_mouse.name, cfg=FAST, progress=False)
    assert videos.shape == (2, *held_out[0].video.shape)
    assert videos.min() >= 0.0 and videos.max() <= 255.0
    matched = [video_correlation(v, c.video.numpy()) for v, c in zip(videos, held_out, strict=True)]
    swapped = [video_correlation(v, c.video.numpy()) for v, c in zip(videos, held_out[::-1], strict=True)]
    assert np.mean(matched) > 0.0
    assert np.mean(matched) > np.mean(swapped)


def test_pixels_outside_the_training_mask_stay_gray(encoders, held_out, tiny_mouse):
    mask = np.zeros(held_out[0].video.shape[1:], np.float32)
    mask[:, :32] = 1.0
    video = reconstruct(
        held_out[:1],
        encoders,
        tiny_mouse.name,
        mask,
        preset("cpu", iterations=5, warmup=5, smooth_sigma=0),
        progress=False,
    )[0]
    assert np.all(video[:, :, 32:] == GRAY)
    assert np.abs(video[:, :, :32] - GRAY).max() > 1.0


def test_alpha_mask_covers_the_receptive_fields_more_than_the_rest(encoders, tiny_mouse, rf_coverage):
    clips = [cut(ClipTensors.from_clip(tiny_mouse.clip(t))) for t in tiny_mouse.trials("train")[:4]]
    cfg = MaskConfig(iterations=30, clips_per_step=1)
    alpha = train_alpha_mask(encoders, clips, tiny_mouse.name, cfg, progress=False)
    assert alpha.shape == clips[0].video.shape[1:]
    assert alpha[rf_coverage].mean() > alpha[~rf_coverage].mean() + 0.2


def test_job_stores_clips_resumes_and_refuses_other_settings(tiny_root, tiny_encoders, tmp_path):
    job = Job(
        tiny_root,
        (tiny_encoders[0],),
        tmp_path / "store",
        ("oracle",),
        preset("cpu", iterations=3, warmup=1),
        MaskConfig(iterations=3),
        mask_clips=2,
        limit=2,
    )
    store = run(job, progress=False)
    (mouse,) = store.manifest()["fingerprints"]
    assert len(store.trials(mouse)) == 2 and store.alpha(mouse) is not None
    first = store.clip_path(mouse, store.trials(mouse)[0]).stat().st_mtime_ns
    run(job, progress=False)
    assert store.clip_path(mouse, store.trials(mouse)[0]).stat().st_mtime_ns == first
    manifest = store.manifest()
    (member,) = manifest["models"]
    assert not Path(member).is_absolute() and (store.root / member).resolve() == tiny_encoders[0].resolve()
    manifest["models"] = [str(tiny_encoders[0].resolve())]  # a store written before: absolute paths
    store.manifest_path.write_text(json.dumps(manifest))
    run(job, progress=False)  # resumes: the same member, however recorded
    assert store.clip_path(mouse, store.trials(mouse)[0]).stat().st_mtime_ns == first
    assert set(store.metrics(mouse, store.trials(mouse)[0])) >= {"correlation", "ssim"}
    with pytest.raises(ValueError, match="other teacher"):
        run(
            Job(
                tiny_root,
                (tiny_encoders[0],),
                tmp_path / "store",
                ("oracle",),
                preset("cpu", iterations=4, warmup=1),
                MaskConfig(iterations=3),
                limit=2,
            ),
            progress=False,
        )


def test_job_refuses_a_checkpoint_of_other_data_before_any_work(tiny_encoders, tmp_path):
    from stream_decoder.data import simulate

    other = tmp_path / "other"
    simulate("tiny", seed=1, out=other)
    job = Job(other, (tiny_encoders[0],), tmp_path / "store", ("oracle",), FAST, None)
    with pytest.raises(ValueError, match=r"neurons|fingerprint|readout|unit ids"):
        run(job, progress=False)
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("source", ["untrained_artifact", "baseline"])
def test_job_warm_starts_from_a_student_or_the_baseline(
    source, request, tiny_root, tiny_mouse, tiny_encoders, tmp_path
):
    from stream_decoder.teacher.commands import student_start

    value = request.getfixturevalue(source)
    artifact = getattr(value, "path", value)  # the baseline fixture is an Artifact, the other a folder
    job = Job(
        tiny_root,
        (tiny_encoders[0],),
        tmp_path / "store",
        ("oracle",),
        preset("cpu", iterations=1, warmup=1, lr=6.0),  # one step, as long as the cpu preset's first
        None,
        limit=1,
        warm_start=WarmStart(artifact, partial(student_start, artifact)),
    )
    store = run(job, progress=False)
    trial = store.trials(tiny_mouse.name)[0]
    start = student_start(artifact, tiny_mouse)([ClipTensors.from_clip(tiny_mouse.clip(trial))])[0]
    recon = store.load(tiny_mouse.name, trial)
    assert video_correlation(recon, start, skip=0) > 0.8  # one small step away from the student's video
    recorded = store.manifest()["warm_start"]
    assert not Path(recorded).is_absolute() and (store.root / recorded).resolve() == artifact.resolve()


def test_an_alpha_mask_that_lets_no_pixel_change_says_so(caplog):
    from stream_decoder.teacher.mask import TRAIN_THRESHOLD, training_mask

    alpha = np.full((36, 64), TRAIN_THRESHOLD / 2)
    with caplog.at_level("WARNING", logger="stream_decoder.teacher.mask"):
        assert training_mask(alpha).sum() == 0
    assert "reaches 0.5 at no pixel (max 0.25)" in caplog.text and "(--no-mask)" in caplog.text
    caplog.clear()
    alpha[3, 4] = TRAIN_THRESHOLD
    assert training_mask(alpha).sum() == 1 and not caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a visible GPU")
def test_reconstruct_on_a_gpu_where_none_is_visible_says_what_to_do(
    tiny_root, tiny_encoders, tmp_path, capsys
):
    from stream_decoder.cli import main

    argv = ["reconstruct", "--data", str(tiny_root), "--models", str(tiny_encoders[0]), "--device", "cuda"]
    assert main([*argv, "--out", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cpu" in err[0]
