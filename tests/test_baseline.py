"""The linear baseline: the closed-form ridge fit, its streaming form, and serving it as an artifact."""

import numpy as np
import pytest
import torch
from conftest import HANG_GUARD_S, stepped_frames

from stream_decoder.data import input_timing, student_inputs
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.baseline import TrialClips
from stream_decoder.decoder.evaluate import decode_clip, evaluate
from stream_decoder.decoder.linear import LinearConfig, LinearDecoder
from stream_decoder.decoder.ridge import Moments
from stream_decoder.metrics import video_correlation
from stream_decoder.runtime import open_backend


def test_streaming_steps_equal_the_whole_clip_decoding():
    torch.manual_seed(0)
    model = LinearDecoder(LinearConfig(n_neurons=30, components=6, lags=3, lag_step=3, lookahead=5)).eval()
    model.set_read_in(torch.linalg.qr(torch.randn(30, 6))[0])
    with torch.no_grad():
        model.readout.weight.normal_(0.0, 30.0)
        model.readout.bias.fill_(127.5)
    activity, behavior, pupil = torch.randn(1, 25, 30), torch.randn(1, 25, 2), torch.randn(1, 25, 2)
    with torch.no_grad():
        clip = model(activity, behavior, pupil)[0]
    torch.testing.assert_close(stepped_frames(model, activity, behavior, pupil), clip, atol=1e-3, rtol=0)
    assert clip.min() == 0.0 and clip.max() == 255.0  # the map is clipped to the frame range


def test_moments_solve_the_centred_ridge_normal_equations():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 7)), rng.normal(size=(200, 3)) + 5.0
    first, second = Moments.zeros(7, 3), Moments.zeros(7, 3)
    first.add(torch.from_numpy(x[:120]), torch.from_numpy(y[:120]))
    second.add(torch.from_numpy(x[120:]), torch.from_numpy(y[120:]))
    weights, bias = (first + second).solver()(penalty=15.0)
    xc, yc = x - x.mean(0), y - y.mean(0)
    reference = np.linalg.solve(xc.T @ xc + 15.0 * np.eye(7), xc.T @ yc)
    np.testing.assert_allclose(weights.numpy(), reference, atol=1e-10)
    np.testing.assert_allclose(bias.numpy(), y.mean(0) - x.mean(0) @ reference, atol=1e-10)


def test_the_fit_equals_a_closed_form_reference_on_the_same_features(baseline, tiny_mouse):
    """Rebuild the design matrix from the served model's own features and solve it with numpy."""
    model = load_artifact(baseline.path).model()
    clips = TrialClips(tiny_mouse, tiny_mouse.trials("train"), multi_plane=False)
    lookahead, rows, targets = model.cfg.lookahead, [], []
    pixels = model.cfg.coarse_shape[0] * model.cfg.coarse_shape[1]
    upsampling = model.upsampled(torch.eye(pixels)).flatten(1).double().numpy()
    for activity, behavior4, video in clips:
        with torch.no_grad():
            latent = model.latent(torch.from_numpy(activity).float(), torch.from_numpy(behavior4).float())
            rows.append(model.features(latent[None])[0, lookahead:].double().numpy())
        targets.append(video[: len(video) - lookahead].reshape(len(video) - lookahead, -1))
    x, frames = np.concatenate(rows), np.concatenate(targets).astype(np.float64)
    y = np.linalg.solve(upsampling @ upsampling.T, upsampling @ frames.T).T  # coarse maps closest to frames
    xc, yc = x - x.mean(0), y - y.mean(0)
    weights = np.linalg.solve(xc.T @ xc + model.cfg.penalty * np.eye(x.shape[1]), xc.T @ yc)
    np.testing.assert_allclose(model.readout.weight.detach().double().numpy(), weights.T, atol=1e-3)
    bias = y.mean(0) - x.mean(0) @ weights
    np.testing.assert_allclose(model.readout.bias.detach().double().numpy(), bias, atol=1e-2)


def test_the_baseline_decodes_held_out_clips_better_than_a_shuffled_control(baseline, tiny_mouse):
    model = load_artifact(baseline.path).model()
    timing = input_timing(tiny_mouse, multi_plane=False)
    real, shuffled = [], []
    for trial in tiny_mouse.trials("oracle"):
        activity, behavior, pupil, video = student_inputs(tiny_mouse, trial, timing)
        end = len(video) - model.cfg.lookahead
        real.append(video_correlation(decode_clip(model, activity, behavior, pupil)[:end], video[:end]))
        permuted = np.random.default_rng(0).permutation(activity, axis=0)  # time shuffled per neuron set
        shuffled.append(video_correlation(decode_clip(model, permuted, behavior, pupil)[:end], video[:end]))
    assert np.mean(real) > 0.2 and np.mean(real) > np.mean(shuffled) + 0.08


def test_the_artifact_records_its_fit_and_serves_through_onnxruntime_like_torch(baseline, tiny_mouse):
    artifact = load_artifact(baseline.path)
    assert (
        artifact.meta.kind == "linear"
        and artifact.config.penalty == artifact.meta.provenance["baseline"]["penalty"]
    )
    assert artifact.meta.provenance["train_trials"] == tiny_mouse.trials("train")
    activity = np.random.default_rng(1).gamma(0.5, 1.0, (20, tiny_mouse.n_neurons)).astype(np.float32)
    behavior = np.array([0.3, 1.5, 2.0, -1.0], np.float32)
    torch_backend, ort_backend = (
        open_backend(baseline.path, "torch"),
        open_backend(baseline.path, "onnxruntime"),
    )
    for row in activity:
        np.testing.assert_allclose(
            ort_backend.step(row, behavior), torch_backend.step(row, behavior), atol=1e-2
        )


def test_evaluate_scores_the_baseline_beside_the_decoder_on_the_same_clips(baseline, tiny_root):
    result = evaluate(baseline.path, tiny_root, baseline=baseline.path, tiers=("oracle",), missing=(0.0,))
    oracle = result["groups"]["oracle"]
    assert result["kind"] == "linear" and result["baseline"]["model"] == baseline.model_id
    assert oracle["student"] == pytest.approx(oracle["baseline"]) and oracle["student"] > 0.2
    assert oracle["missing"]["0.0"] == pytest.approx(oracle["student"])


def test_the_baseline_streamed_through_the_daemon_decodes_the_offline_frames(
    baseline, tiny_mouse, stream_endpoints, one_torch_thread
):
    """A real clip, one activity message per tick: the frames out equal decoding the clip offline."""
    from stream_decoder.display.loopback import Loopback
    from stream_decoder.stream.config import DaemonConfig, EndpointsConfig, LogConfig, ModelConfig

    cfg = DaemonConfig(
        model=ModelConfig(baseline.path, "onnxruntime"),
        endpoints=EndpointsConfig(**stream_endpoints),
        log=LogConfig(interval_s=60.0),
    )
    trial = tiny_mouse.trials("oracle")[0]
    activity, behavior, pupil, _ = student_inputs(tiny_mouse, trial, input_timing(tiny_mouse, False))
    d = Loopback(cfg, open_backend(baseline.path, "onnxruntime"), timeout_s=HANG_GUARD_S)
    try:
        d.attach(d.display)
        d.rig.restart("baseline-clip")
        for k, row in enumerate(activity):
            d.rig.send(row, 100.0 + k / 30.0, behavior=behavior[k], pupil_center=pupil[k])
        streamed = []
        for _ in range(len(activity)):
            item = d.display.receive(timeout_s=HANG_GUARD_S)
            assert item is not None, f"only {len(streamed)} of {len(activity)} frames arrived"
            streamed.append(item[0].copy())
    finally:
        d.stop()
    lookahead = baseline.meta.lookahead
    offline = decode_clip(load_artifact(baseline.path).model(), activity, behavior, pupil)
    np.testing.assert_allclose(
        np.stack(streamed)[lookahead:], offline[: len(activity) - lookahead], atol=1e-2
    )


def test_a_recording_without_simulator_truth_is_fitted_multi_plane_from_the_planes_it_is_given(
    tiny_mouse, tmp_path, capsys
):
    """Real data stores no plane timing: --planes and --volume-rate give it, planes by cell depth."""
    from stream_decoder.cli import main
    from stream_decoder.data import PlaneTiming, open_mouse
    from stream_decoder.decoder.artifact import load_artifact

    recording = tmp_path / "root" / tiny_mouse.name  # the tiny mouse without its truth beside it
    recording.mkdir(parents=True)
    for child in tiny_mouse.path.iterdir():
        (recording / child.name).symlink_to(child)
    argv = ["baseline", "--data", str(recording.parent), "--multi-plane", "--components", "16"]
    assert main([*argv, "--out", str(tmp_path / "none")]) == 2
    assert "give the number of planes and the volume rate" in capsys.readouterr().err.splitlines()[-1]
    assert main([*argv, "--planes", "3", "--out", str(tmp_path / "none")]) == 2  # both or neither
    assert main([*argv, "--planes", "3", "--volume-rate", "7.5", "--out", str(tmp_path / "fitted")]) == 0
    artifact = load_artifact(tmp_path / "fitted")
    assert artifact.meta.provenance["input_timing"] == {"n_planes": 3, "volume_rate_hz": 7.5}
    timing = artifact.timing(open_mouse(recording.parent))  # what evaluate reads it in
    depth = open_mouse(recording.parent).cell_motor_coordinates[:, 2]
    expected = PlaneTiming.from_depths(depth, 3, 7.5)
    assert timing.n_planes == 3 and np.array_equal(timing.plane, expected.plane)
    assert len(np.unique(timing.plane)) == 3
