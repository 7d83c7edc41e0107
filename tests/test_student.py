"""The student: whole-clip and streaming paths agree, causality and lookahead hold, inputs are raw."""

import pytest
import torch

from stream_decoder.decoder.streaming import StepGraph
from stream_decoder.decoder.student import Student, StudentConfig

N, T = 40, 36


def make_student(seed: int = 0, **overrides) -> Student:
    torch.manual_seed(seed)
    cfg = StudentConfig(
        **{"n_neurons": N, "latent": 16, "kernel": 3, "dilations": (1, 2, 4), "lookahead": 3, **overrides}
    )
    student = Student(cfg).eval()
    student.set_normalisation(torch.rand(N) * 4, torch.rand(N) + 0.5, torch.randn(4), torch.rand(4) + 0.5)
    return student


def clip(batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    activity = torch.rand(batch, T, N, generator=g) * 8
    return activity, torch.randn(batch, T, 2, generator=g), torch.randn(batch, T, 2, generator=g)


def stream(student: Student, activity, behavior, pupil) -> torch.Tensor:
    state = student.initial_state(activity.shape[0])
    frames = []
    for t in range(activity.shape[1]):
        frame, state = student.step(activity[:, t], torch.cat([behavior[:, t], pupil[:, t]], -1), state)
        frames.append(frame)
    return torch.stack(frames, 1)


@torch.no_grad()
def test_streaming_from_zero_state_equals_the_whole_clip():
    student = make_student()
    inputs = clip()
    offline = student(*inputs)
    assert offline.shape == (2, T, 36, 64)
    assert offline.min() >= 0 and offline.max() <= 255
    torch.testing.assert_close(stream(student, *inputs), offline, atol=1e-3, rtol=0)


@torch.no_grad()
def test_step_graph_with_folded_normalisation_equals_the_whole_clip():
    student = make_student(upsample=1)
    activity, behavior, pupil = clip(batch=1)
    graph = StepGraph(student)
    state = student.initial_state(1)
    frames = []
    for t in range(T):
        frame, *state = graph(activity[:, t], torch.cat([behavior[:, t], pupil[:, t]], -1), *state)
        frames.append(frame)
    torch.testing.assert_close(torch.stack(frames, 1), student(activity, behavior, pupil), atol=1e-3, rtol=0)


@torch.no_grad()
def test_output_is_causal_and_limited_to_the_window():
    student = make_student()
    activity, behavior, pupil = clip(batch=1)
    base = student(activity, behavior, pupil)
    t0 = 10
    changed = activity.clone()
    changed[:, t0] += 50.0
    diff = (student(changed, behavior, pupil) - base).abs().amax(dim=(0, 2, 3))
    window = student.cfg.window
    assert torch.all(diff[:t0] == 0), "a frame depends on activity that arrives later"
    assert diff[t0] > 0 and diff[t0 + window - 1] > 0
    assert torch.all(diff[t0 + window :] == 0), "a frame depends on activity older than its window"


def test_stimulus_frames_are_aligned_by_the_lookahead():
    student = make_student(lookahead=5)
    inputs = clip(batch=1)
    with torch.no_grad():
        aligned = student.stimulus_frames(*inputs)
        torch.testing.assert_close(aligned, student(*inputs)[:, 5:])
    assert aligned.shape == (1, T - 5, 36, 64)


def test_config_checks_lookahead_and_roundtrips_through_json():
    cfg = StudentConfig(n_neurons=N, kernel=3, dilations=(1, 2), lookahead=6)
    assert cfg.window == 7
    assert StudentConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="lookahead 7"):
        StudentConfig(n_neurons=N, kernel=3, dilations=(1, 2), lookahead=7)
    with pytest.raises(ValueError, match="upsample"):
        StudentConfig(n_neurons=N, upsample=5)


@torch.no_grad()
def test_normalisation_is_inside_the_model():
    """Raw responses into a model holding the statistics == normalised responses into one without."""
    student = make_student()
    plain = make_student()
    plain.set_normalisation(torch.zeros(N), torch.ones(N), torch.zeros(4), torch.ones(4))
    activity, behavior, pupil = clip(batch=1)
    behavior4 = torch.cat([behavior, pupil], -1)
    normalised = (activity - student.activity_mean) / student.activity_std
    b_normalised = (behavior4 - student.behavior_mean) / student.behavior_std
    torch.testing.assert_close(
        student(activity, behavior, pupil),
        plain(normalised, b_normalised[..., :2], b_normalised[..., 2:]),
        atol=1e-3,
        rtol=0,
    )
    with pytest.raises(ValueError, match="activity_std has shape"):
        student.set_normalisation(torch.zeros(N), torch.ones(N + 1), torch.zeros(4), torch.ones(4))


def test_neuron_dropout_drops_whole_neurons_for_the_whole_clip():
    student = make_student(neuron_dropout=0.5).train()
    seen = []
    student.read_in.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    activity, behavior, pupil = clip(batch=4)
    student(activity, behavior, pupil)
    x = seen[0]  # (B, T, N) normalised input to the read-in
    expected = (activity - student.activity_mean) / student.activity_std / 0.5
    dropped = (x == 0).all(dim=1)
    kept = torch.isclose(x, expected, atol=1e-5).all(dim=1)
    assert torch.all(dropped ^ kept), "a neuron was dropped for part of a clip only"
    assert 0.3 < dropped.float().mean() < 0.7
    student.eval()
    with torch.no_grad():
        torch.testing.assert_close(student(activity, behavior, pupil), student(activity, behavior, pupil))


def test_whole_clips_train():
    """A few optimiser steps on whole clips move towards another student's frames: gradients work."""
    student = make_student().train()
    activity, behavior, pupil = clip(batch=2)
    with torch.no_grad():
        target = make_student(seed=5).stimulus_frames(activity, behavior, pupil)
    optimiser = torch.optim.Adam(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.mse_loss(student.stimulus_frames(activity, behavior, pupil), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_wrong_neuron_count_is_a_clear_error():
    student = make_student()
    activity, behavior, pupil = clip(batch=1)
    with pytest.raises(ValueError, match=f"model expects {N}"):
        student(activity[..., :-1], behavior, pupil)
