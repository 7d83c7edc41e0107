"""The simulator's own encoding as an ensemble member: the same rates as the truth, a readout fitted
to the responses, loaded like any member, and inverted by the teacher."""

import json

import numpy as np
import pytest
import torch

from stream_decoder.data import load_truth
from stream_decoder.data.simulate import rebuild_mouse, replayed_trial
from stream_decoder.encoder.batches import ClipTensors
from stream_decoder.encoder.checkpoint import load_ensemble
from stream_decoder.encoder.simulator import save_simulator_member, simulated_mouse
from stream_decoder.metrics import video_correlation
from stream_decoder.teacher.config import preset
from stream_decoder.teacher.reconstruct import reconstruct


@pytest.fixture(scope="module")
def member(tiny_root, tmp_path_factory):
    return save_simulator_member(tiny_root, tmp_path_factory.mktemp("simulator"), clips=8, progress=False)


def test_rates_are_the_truths_noise_free_rates(tiny_mouse):
    module = simulated_mouse(tiny_mouse.path)
    truth = load_truth(tiny_mouse.path)
    for trial in tiny_mouse.trials("oracle")[:2]:
        clip = ClipTensors.from_clip(tiny_mouse.clip(trial))
        with torch.no_grad():
            rates = module.rates(clip.video[None], clip.behavior[None], clip.pupil_center[None])[0].numpy()
        expected = np.asarray(truth.rates(trial))[: len(rates)]
        assert np.abs(rates - expected).max() < 1e-3 * expected.max()


def test_pool_weights_give_the_pool_energy(tiny_mouse):
    mouse, truth = rebuild_mouse(tiny_mouse.path)
    _, video, _ = replayed_trial(truth, tiny_mouse.trials("train")[0])
    contrast = mouse.population.screen_contrast(video[:20])
    flat = np.square(contrast).reshape(len(contrast), -1)
    np.testing.assert_allclose(
        flat @ mouse.population.pool_weights(), mouse.population.pool_energy(contrast), rtol=1e-4, atol=1e-5
    )


def test_member_loads_like_a_trained_one_and_predicts_held_out_responses(member, tiny_root, tiny_mouse):
    from stream_decoder.data import open_mice

    meta = json.loads((member / "meta.json").read_text())
    assert meta["readout"]["fit"][tiny_mouse.name]["median_correlation"] > 0.1
    (encoder,) = load_ensemble(member, open_mice(tiny_root))
    clip = ClipTensors.from_clip(tiny_mouse.clip(tiny_mouse.trials("final_test_main")[0]))
    with torch.no_grad():
        predicted = encoder(clip.video[None], clip.behavior[None], clip.pupil_center[None], tiny_mouse.name)[
            0
        ]
    assert predicted.shape == clip.responses.shape and predicted.min() > 0
    a, b = (
        predicted.numpy() - predicted.numpy().mean(0),
        clip.responses.numpy() - clip.responses.numpy().mean(0),
    )
    per_neuron = (a * b).sum(0) / np.sqrt((a**2).sum(0) * (b**2).sum(0) + 1e-12)
    assert np.nanmedian(per_neuron) > 0.1


def test_member_from_other_data_is_refused(member, tmp_path):
    from stream_decoder.data import open_mice, simulate

    simulate("tiny", seed=1, out=tmp_path)
    with pytest.raises(ValueError, match="no readout for mouse"):
        load_ensemble(member, open_mice(tmp_path))


def test_teacher_inverting_the_simulator_recovers_the_clip(member, tiny_mouse, rf_coverage):
    (encoder,) = [e.requires_grad_(False) for e in load_ensemble(member)]
    clips = [ClipTensors.from_clip(tiny_mouse.clip(t)) for t, *_ in tiny_mouse.repeats("oracle")[:2]]
    cfg = preset("cpu", iterations=100, smooth_sigma=1.5)
    videos = reconstruct(clips, [encoder], tiny_mouse.name, cfg=cfg, progress=False)
    matched = [video_correlation(v, c.video.numpy(), rf_coverage) for v, c in zip(videos, clips, strict=True)]
    swapped = [
        video_correlation(v, c.video.numpy(), rf_coverage) for v, c in zip(videos, clips[::-1], strict=True)
    ]
    assert np.mean(matched) > 0.15
    assert np.mean(matched) > np.mean(swapped) + 0.1


def test_command_on_real_data_says_it_needs_the_simulators_truth(tiny_mouse, tmp_path, capsys):
    import shutil

    from stream_decoder.cli import main

    shutil.copytree(tiny_mouse.path, tmp_path / "real" / tiny_mouse.path.name)  # no truth beside it
    assert main(["simulator-encoder", "--data", str(tmp_path / "real"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no simulator truth" in err.strip().splitlines()[-1]
