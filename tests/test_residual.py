"""The residual student: it starts as its baseline exactly, streams like it, and learns a correction."""

import shutil
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from conftest import stepped_frames

from stream_decoder.data import input_timing, student_inputs
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.distill import (
    DistillConfig,
    distill,
    residual_student,
    training_data,
    validation_scores,
)
from stream_decoder.decoder.evaluate import decode_clip
from stream_decoder.decoder.residual import ResidualConfig, ResidualStudent
from stream_decoder.runtime import open_backend
from stream_decoder.runtime.export import (
    INT8_FRAME_TOLERANCE,
    check_onnx,
    export_artifact,
    max_frame_difference,
    stream_inputs,
)

TRUTH = DistillConfig(epochs=30, batch_size=4, lookahead=4)  # the tiny baseline's lookahead


def oracle_inputs(mouse):
    trial = mouse.trials("oracle")[0]
    return student_inputs(mouse, trial, input_timing(mouse, False))[:3]


def test_an_untrained_residual_student_decodes_exactly_as_its_baseline(tiny_root, tiny_mouse, baseline):
    found = training_data(tiny_root, None, TRUTH, mask=None, mouse_name=None)
    student = residual_student(TRUTH, baseline, found.mouse).eval()
    inputs = oracle_inputs(tiny_mouse)
    ridge = decode_clip(baseline.model(), *inputs)
    np.testing.assert_allclose(decode_clip(student, *inputs), ridge, atol=1e-3)
    with torch.no_grad():
        student.to_frame.bias.fill_(0.1)  # a correction of 0.1 * 255 / 4 pixels, clipped to the frame
    shift = (decode_clip(student, *inputs) - ridge)[: -TRUTH.lookahead]  # the last L frames stay gray
    assert np.median(shift) == pytest.approx(255 / 40, abs=1e-3)
    assert shift.min() >= -1e-3 and shift.max() <= 255 / 40 + 1e-3


def test_streaming_steps_equal_the_whole_clip_decoding():
    torch.manual_seed(0)
    for lags in (1, 3):  # lag 0 only (no linear state), and three taps
        cfg = ResidualConfig(n_neurons=30, latent=8, kernel=3, dilations=(1, 2), lookahead=3, lags=lags)
        model = ResidualStudent(cfg).eval()
        for p in model.parameters():
            p.data.normal_(0.0, 0.3)
        with torch.no_grad():
            model.linear.bias.fill_(127.5)
            model.linear.weight.mul_(100.0)
        activity, behavior, pupil = torch.randn(1, 20, 30), torch.randn(1, 20, 2), torch.randn(1, 20, 2)
        with torch.no_grad():
            clip = model(activity, behavior, pupil)[0]
        assert len(model.initial_state(1)) == len(cfg.dilations) + (lags > 1)
        torch.testing.assert_close(stepped_frames(model, activity, behavior, pupil), clip, atol=1e-3, rtol=0)
        assert clip.std() > 0 and clip.min() >= 0 and clip.max() <= 255


def test_training_improves_on_the_baseline_and_keeps_it_frozen(tiny_root, tiny_mouse, baseline, tmp_path):
    out = tmp_path / "residual"
    artifact = distill(tiny_root, None, out, TRUTH, progress=False, residual_of=baseline.path)
    student, ridge = artifact.model(), baseline.model()
    assert artifact.meta.kind == "residual"
    assert artifact.meta.provenance["residual_of"] == str(baseline.path.resolve())
    assert torch.equal(student.linear.weight, ridge.readout.weight)
    assert torch.equal(student.read_in.weight, ridge.read_in.weight)
    assert torch.equal(student.behavior_in.weight, ridge.behavior_in.weight)
    assert student.to_frame.weight.abs().max() > 0  # the correction was trained
    found = training_data(tiny_root, None, TRUTH, mask=None, mouse_name=None)
    ridge_score = validation_scores(ridge, found.validation, None)["student_vs_truth"]
    assert artifact.meta.provenance["validation"]["student_vs_truth"] > ridge_score + 0.005  # 0.267, 0.258

    export_artifact(artifact.path, int8_read_in=True)  # serves through ONNX Runtime as torch decodes it
    assert_int8_ridge_readout(artifact.path)
    inputs = oracle_inputs(tiny_mouse)
    offline = decode_clip(load_artifact(artifact.path).model(), *inputs)
    backend = open_backend(artifact.path, "onnxruntime")
    activity, behavior, pupil = inputs
    lookahead = artifact.meta.lookahead
    for k in range(len(activity)):
        frame = backend.step(activity[k], np.concatenate([behavior[k], pupil[k]]))
        if k >= lookahead:  # tick k shows stimulus frame k - L
            np.testing.assert_allclose(frame, offline[k - lookahead], atol=0.05)


def test_a_baseline_that_does_not_fit_is_refused_clearly(tiny_root, tiny_mouse, baseline, untrained_artifact):
    mouse = tiny_mouse
    with pytest.raises(ValueError, match="is a student model"):
        residual_student(TRUTH, load_artifact(untrained_artifact), mouse)
    other = replace(baseline, meta=replace(baseline.meta, data_fingerprint="another mouse"))
    with pytest.raises(ValueError, match="fitted on other data"):
        residual_student(TRUTH, other, mouse)
    with pytest.raises(ValueError, match="--lookahead 4"):
        residual_student(replace(TRUTH, lookahead=6), baseline, mouse)
    with pytest.raises(ValueError, match="lags and lag_step must be >= 1"):
        ResidualConfig(n_neurons=30, latent=8, lags=0)
    with pytest.raises(ValueError, match="not both"):
        distill(tiny_root, None, tiny_root / "x", TRUTH, read_in=baseline.path, residual_of=baseline.path)


def assert_int8_ridge_readout(folder):
    """model.int8.onnx holds the ridge readout's weights in int8, as the read-in's, and no float32
    copy of either; its frames stay within the int8 tolerance of torch's over a stream of ticks."""
    artifact = load_artifact(folder)
    model = artifact.model()
    readout = getattr(model, model.ridge_readout).weight.numel()
    graph = onnx.load(str(folder / "model.int8.onnx")).graph
    sizes = [(t.data_type, int(np.prod(t.dims))) for t in graph.initializer]
    for weights in (model.read_in.weight.numel(), readout):
        assert (onnx.TensorProto.INT8, weights) in sizes and (onnx.TensorProto.FLOAT, weights) not in sizes
    assert check_onnx(folder / "model.int8.onnx", tensorrt=False)["MatMulInteger"] == 2
    activity, behavior = stream_inputs(artifact, 40, seed=7)
    int8 = open_backend(folder, "onnxruntime", int8_read_in=True)
    assert (
        max_frame_difference(open_backend(folder, "torch"), int8, activity, behavior) <= INT8_FRAME_TOLERANCE
    )


def test_the_baselines_int8_graph_quantizes_its_ridge_readout_too(baseline, tmp_path):
    folder = shutil.copytree(baseline.path, tmp_path / "baseline")
    export_artifact(folder, steps=16, int8_read_in=True)
    assert_int8_ridge_readout(folder)
