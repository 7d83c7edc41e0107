"""Gaze correction: the warp, its streaming form, the fit that chooses its gain, and serving it."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import TINY_RIDGE, stepped_frames
from scipy.ndimage import gaussian_filter

from stream_decoder.data import input_timing, student_inputs
from stream_decoder.data.neurons import shift_frames
from stream_decoder.decoder import gaze
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.baseline import fit_baseline
from stream_decoder.decoder.distill import DistillConfig, residual_student, training_data
from stream_decoder.decoder.evaluate import decode_clip
from stream_decoder.decoder.linear import LinearConfig, LinearDecoder
from stream_decoder.decoder.ridge import fit_ridge
from stream_decoder.metrics import video_correlation
from stream_decoder.runtime import open_backend
from stream_decoder.runtime.export import export_artifact

RIG_GAIN = 0.5  # the simulated rig moves every field 0.5 screen px per eye-camera px of pupil movement


@pytest.fixture(scope="module")
def gaze_baseline(tmp_path_factory, tiny_root):
    out = tmp_path_factory.mktemp("gaze-baseline")
    # The gain a calibrated rig gives (on the tiny mouse's few clips the fit cannot tell the gains apart)
    artifact = fit_baseline(tiny_root, out, replace(TINY_RIDGE, gaze_gains=(RIG_GAIN,)), progress=False)
    export_artifact(out)
    return artifact


def test_the_warp_samples_the_screen_as_the_simulated_eye_sees_it():
    frames = torch.rand(3, 36, 64) * 255
    shift = torch.tensor([[1.3, -2.6], [0.0, 0.0], [-4.2, 7.5]])
    seen = shift_frames(frames.numpy() - gaze.GRAY, shift.numpy()) + gaze.GRAY  # the simulator's eye
    np.testing.assert_allclose(gaze.warp(frames, shift).numpy(), seen, atol=1e-3)


def test_warping_back_puts_the_image_where_it_was_and_grey_beyond_the_screen():
    frames = torch.rand(2, 36, 64) * 255
    shift = torch.tensor([[2.0, -3.0], [-1.0, 5.0]])
    back = gaze.warp(gaze.warp(frames, shift), shift, back=True)
    torch.testing.assert_close(back[:, 6:30, 6:58], frames[:, 6:30, 6:58], atol=1e-3, rtol=0)
    assert (back[0, :, -3:] == gaze.GRAY).all()  # what the eye never saw of the screen


def random_decoder(gain: float) -> LinearDecoder:
    torch.manual_seed(0)
    cfg = LinearConfig(n_neurons=30, components=6, lags=3, lag_step=3, lookahead=5, gaze_gain=gain)
    model = LinearDecoder(cfg).eval()
    model.set_read_in(torch.linalg.qr(torch.randn(30, 6))[0])
    with torch.no_grad():
        model.readout.weight.normal_(0.0, 30.0)
        model.readout.bias.fill_(127.5)
        model.behavior_mean[2:] = torch.tensor([160.0, 120.0])
    return model


def test_a_gaze_corrected_decoder_streams_the_frames_it_decodes_offline():
    corrected, plain = random_decoder(0.5), random_decoder(0.0)
    activity, behavior = torch.randn(1, 25, 30), torch.randn(1, 25, 2)
    pupil = torch.tensor([160.0, 120.0]) + 6.0 * torch.randn(1, 25, 2)
    with torch.no_grad():
        clip = corrected(activity, behavior, pupil)[0]
        # the correction moves frame t by the shift at its stimulus frame t - L: a retinal image
        # decoded as the plain decoder decodes it, moved back to the screen
        then = gaze.gaze_shift(pupil[0, :-5], corrected.behavior_mean[2:], 0.5)
        expected = gaze.warp(plain(activity, behavior, pupil)[0, 5:], then, back=True)
    torch.testing.assert_close(clip[5:], expected, atol=1e-3, rtol=0)
    assert (clip[5:] - plain(activity, behavior, pupil)[0, 5:]).abs().max() > 10  # the eye moved
    torch.testing.assert_close(stepped_frames(corrected, activity, behavior, pupil), clip, atol=1e-3, rtol=0)


def test_a_decoder_without_gaze_correction_writes_the_config_it_always_did():
    plain, corrected = LinearConfig(300), LinearConfig(300, gaze_gain=0.5)
    assert "gaze_gain" not in json.loads(plain.to_json())  # so the model ids of older artifacts hold
    assert LinearConfig.from_json(corrected.to_json()) == corrected
    assert corrected.state_shapes(1)[-1] == (1, corrected.lookahead, 2)
    with pytest.raises(ValueError, match="needs lookahead >= 1"):
        LinearConfig(300, lags=1, lookahead=0, gaze_gain=0.5)


def retinal_clips(n_clips: int, rng: np.random.Generator, frames: int = 90, neurons: int = 150):
    """Clips whose neurons see the screen through a moving eye: a smooth random image per fixation,
    the pupil jumping between fixations, each neuron a fixed random weighting of the retinal image."""
    weights = rng.normal(0, 1, (36 * 64, neurons)).astype(np.float32) / 36
    clips = []
    for _ in range(n_clips):
        images = gaussian_filter(rng.normal(0, 1, (frames // 15, 36 + 16, 64 + 16)), (0, 4, 4))[:, 8:-8, 8:-8]
        video = np.repeat(128 + 60 * images / images.std(), 15, axis=0).astype(np.float32)
        fixations = np.repeat(rng.uniform(-10, 10, (frames // 15, 2)), 15, axis=0)
        pupil = (np.array([160.0, 120.0]) + fixations).astype(np.float32)
        shift = gaze.gaze_shift(torch.from_numpy(pupil), torch.tensor([160.0, 120.0]), RIG_GAIN)
        seen = gaze.warp(torch.from_numpy(video), shift).numpy()
        activity = (seen - 128).reshape(frames, -1) @ weights + rng.normal(0, 1, (frames, neurons))
        behavior4 = np.column_stack([np.ones((frames, 2)), pupil]).astype(np.float32)
        clips.append((activity.astype(np.float32), behavior4, video))
    return clips


def test_the_fit_chooses_the_rigs_gain_and_decodes_held_out_clips_better():
    rng = np.random.default_rng(0)
    clips = retinal_clips(34, rng)  # one population, so the held-out clips are the same neurons
    train, held_out = clips[:30], clips[30:]
    cfg = replace(TINY_RIDGE, components=64, lags=2, lag_step=1, lookahead=1, validation_clips=6)
    corrected, report = fit_ridge(train, replace(cfg, gaze_gains=(0.0, 0.25, RIG_GAIN, 1.0)), progress=False)
    plain, _ = fit_ridge(train, cfg, progress=False)
    scores = report["gaze_validation_correlation"]
    assert report["gaze_gain"] == RIG_GAIN == corrected.cfg.gaze_gain
    assert scores["0.5"] > max(scores["0"], scores["0.25"], scores["1"]) + 0.02

    def score(model):  # decode_clip is in stimulus time, its last L = 1 frame never decoded
        return np.mean(
            [
                video_correlation(decode_clip(model, a, b[:, :2], b[:, 2:])[:-1], v[:-1])
                for a, b, v in held_out
            ]
        )

    assert score(corrected) > score(plain) + 0.05


def test_the_gaze_baseline_serves_through_onnxruntime_like_torch(gaze_baseline, tiny_mouse):
    rng = np.random.default_rng(1)
    activity = rng.gamma(0.5, 1.0, (20, tiny_mouse.n_neurons)).astype(np.float32)
    behavior = np.column_stack([np.full((20, 2), 1.0), 160.0 + rng.normal(0, 6, (20, 2))]).astype(np.float32)
    torch_backend = open_backend(gaze_baseline.path, "torch")
    ort_backend = open_backend(gaze_baseline.path, "onnxruntime")
    for row, behavior4 in zip(activity, behavior, strict=True):
        np.testing.assert_allclose(
            ort_backend.step(row, behavior4), torch_backend.step(row, behavior4), atol=1e-2
        )


def test_a_residual_student_keeps_its_baselines_gain_and_starts_as_it(tiny_root, tiny_mouse, gaze_baseline):
    cfg = DistillConfig(epochs=1, batch_size=4, lookahead=TINY_RIDGE.lookahead)
    found = training_data(tiny_root, None, cfg, mask=None, mouse_name=None)
    student = residual_student(cfg, load_artifact(gaze_baseline.path), found.mouse).eval()
    assert student.cfg.gaze_gain == RIG_GAIN
    inputs = student_inputs(tiny_mouse, tiny_mouse.trials("oracle")[0], input_timing(tiny_mouse, False))[:3]
    np.testing.assert_allclose(
        decode_clip(student, *inputs), decode_clip(gaze_baseline.model(), *inputs), atol=1e-3
    )


def test_the_daemon_names_the_gain_and_warns_when_a_gaze_model_gets_no_pupil(
    step_daemon, gaze_baseline, tiny_mouse, caplog
):
    # docs/protocol.md §5.2 gaze_gain, §6.5 pupil_missing
    s = step_daemon(backend=open_backend(gaze_baseline.path, "torch"))
    assert s.daemon.reply("info")["gaze_gain"] == RIG_GAIN
    ones = np.ones(tiny_mouse.n_neurons, np.float32)
    s.rig.restart("no-eye-camera")
    for k in range(40):
        s.rig.send(ones, k / 30.0, behavior=(1.0, 0.0))
    s.rig.restart("eye-camera")  # the pupil at half the rate of the frames: never a second without
    for k in range(40):
        s.rig.send(ones, k / 30.0, behavior=(1.0, 0.0), pupil_center=(160.0, 120.0) if k % 2 else None)
    s.deliver(80)
    assert s.daemon.stats.emitted == 80
    assert s.daemon.stats.warnings == {"pupil_missing": 40 - 31}  # the frames more than 1 s in
    (warning,) = [r.getMessage() for r in caplog.records if "event=pupil_missing " in r.getMessage()]
    assert "session=no-eye-camera" in warning and "send the eye camera's pupil centre" in warning
