"""The encoding model on random tensors: shapes, rates, sizes, causality, the two inference paths."""

import dataclasses

import pytest
import torch

from stream_decoder.encoder.config import PRESETS, EncoderConfig, preset
from stream_decoder.encoder.model import Encoder, Readout, Shifter, shifted

# The published shape, shrunk so a CPU test can run it (same blocks, same code paths).
SMALL_DWISENEURO = preset(
    "dwiseneuro",
    features=(8, 8, 16),
    strides=(2, 1, 2),
    expansion=2,
    se_reduce=4,
    cortex_features=(32, 64),
    stack_frames=4,
)
SMALL_CPU = preset("cpu", features=(8, 8, 16), strides=(1, 2, 1), cortex_features=(32, 64))


def clip(batch=2, frames=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.rand(batch, frames, 36, 64, generator=g) * 255,
        torch.randn(batch, frames, 2, generator=g),
        torch.randn(batch, frames, 2, generator=g),
    )


@pytest.mark.parametrize("cfg", [SMALL_DWISENEURO, SMALL_CPU], ids=["dwiseneuro", "cpu"])
def test_rates_have_one_value_per_frame_and_neuron_and_are_positive(cfg):
    torch.manual_seed(0)
    model = Encoder(cfg, {"mouse_a": 37, "mouse_b": 11})
    video, behavior, pupil = clip(frames=12)
    for train in (True, False):
        model.train(train)
        for mouse, n in (("mouse_a", 37), ("mouse_b", 11)):
            rates = model(video, behavior, pupil, mouse)
            assert rates.shape == (2, 12, n)
            assert (rates >= 0).all() and torch.isfinite(rates).all()


def test_published_preset_has_about_170_million_parameters_95_percent_in_readouts():
    neurons = [7863, 7908, 8202, 7939, 8122, 7440, 7928, 8285, 7671, 7495]  # the ten Sensorium 2023 mice
    with torch.device("meta"):
        model = Encoder(PRESETS["dwiseneuro"], {f"mouse{i}": n for i, n in enumerate(neurons)})
    total = sum(p.numel() for p in model.parameters())
    readouts = sum(p.numel() for p in model.readouts.parameters())
    assert 160e6 < total < 180e6
    assert 0.93 < readouts / total < 0.96
    assert 3e6 < total - readouts - sum(p.numel() for p in model.cortex.parameters()) < 5e6  # the core


def test_cpu_preset_is_about_half_a_million_parameters_without_readouts():
    model = Encoder(PRESETS["cpu"], {"m": 8000})
    shared = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in model.readouts.parameters())
    assert 0.3e6 < shared < 0.8e6


def test_sliding_average_is_the_mean_of_every_stack_prediction():
    torch.manual_seed(0)
    model = Encoder(SMALL_DWISENEURO, {"m": 5}).eval()
    model.windows_per_pass = 7  # several chunks, the last one partial
    video, behavior, pupil = clip(frames=20)
    x = model.inputs(video, behavior, pupil, "m")
    size, step = SMALL_DWISENEURO.stack_frames, SMALL_DWISENEURO.stack_step
    total, count = torch.zeros(2, 20, 5), torch.zeros(20)
    for end in range(20):
        index = [max(end - step * (size - 1 - k), 0) for k in range(size)]
        rates = model.predict_frames(x[:, :, index], "m")
        for k, t in enumerate(index):
            total[:, t] += rates[:, k]
            count[t] += 1
    with torch.no_grad():
        torch.testing.assert_close(model(video, behavior, pupil, "m"), total / count[:, None])


def test_causal_encoder_sees_its_receptive_field_and_nothing_later():
    torch.manual_seed(0)
    model = Encoder(SMALL_CPU, {"m": 6}).eval()
    video, behavior, pupil = clip(batch=1, frames=40)
    video.requires_grad_(True)
    t = 35
    model(video, behavior, pupil, "m")[0, t].sum().backward()
    influence = video.grad[0].abs().sum(dim=(1, 2))
    reach = SMALL_CPU.receptive_frames
    assert reach == 1 + 3 * 4
    assert (influence[t + 1 :] == 0).all()
    assert (influence[t - reach + 1 : t + 1] > 0).all()
    assert (influence[: t - reach + 1] == 0).all()


def test_causal_whole_clip_pass_equals_windows_once_the_receptive_field_is_filled():
    torch.manual_seed(0)
    model = Encoder(SMALL_CPU, {"m": 6}).eval()
    video, behavior, pupil = clip(frames=60)
    reach = SMALL_CPU.receptive_frames
    with torch.no_grad():
        whole = model(video, behavior, pupil, "m")
        for start in (0, 17, 60 - 2 * reach):
            end = start + 2 * reach
            window = model(video[:, start:end], behavior[:, start:end], pupil[:, start:end], "m")
            torch.testing.assert_close(window[:, reach - 1 :], whole[:, start + reach - 1 : end])
        assert not torch.allclose(window[:, 0], whole[:, start])  # before that, history is missing


def test_symmetric_encoder_looks_ahead():
    torch.manual_seed(0)
    model = Encoder(dataclasses.replace(SMALL_DWISENEURO, stack_step=1), {"m": 6}).eval()
    video, behavior, pupil = clip(batch=1, frames=12)
    video.requires_grad_(True)
    model(video, behavior, pupil, "m")[0, 5].sum().backward()
    assert video.grad[0, 6:].abs().sum() > 0


def test_readout_baseline_starts_each_neuron_at_its_mean_rate():
    readout = Readout(16, 7, PRESETS["cpu"]).eval()
    rates = torch.tensor([0.01, 0.1, 0.5, 1.0, 3.0, 10.0, 40.0])
    readout.set_baseline(rates)
    with torch.no_grad():
        readout.conv.weight.zero_()
        torch.testing.assert_close(
            readout(torch.randn(1, 16, 3))[0].T, rates.expand(3, 7), rtol=1e-4, atol=1e-5
        )


def test_bad_inputs_are_clear_errors():
    model = Encoder(SMALL_CPU, {"m": 6})
    video, behavior, pupil = clip()
    with pytest.raises(ValueError, match="unknown mouse 'x'"):
        model(video, behavior, pupil, "x")
    with pytest.raises(ValueError, match=r"video must be \(B, T, 36, 64\)"):
        model(video[:, :, :32], behavior, pupil, "m")
    with pytest.raises(ValueError, match="behavior must be"):
        model(video, behavior[:, :5], pupil, "m")
    with pytest.raises(ValueError, match="pupil_center must be"):
        model(video, behavior, pupil[..., :1], "m")
    with pytest.raises(ValueError, match="at least one mouse"):
        Encoder(SMALL_CPU, {})


def test_config_round_trips_through_json_and_rejects_unknown_fields():
    import json

    for cfg in PRESETS.values():
        assert EncoderConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match=r"unknown encoder config field.*colour"):
        EncoderConfig.from_dict({"colour": 1})
    with pytest.raises(ValueError, match="unknown encoder preset 'gpu'"):
        preset("gpu")
    with pytest.raises(ValueError, match="differ in length"):
        preset("cpu", strides=(1,))
    with pytest.raises(ValueError, match="sliding must be False"):
        preset("cpu", sliding=True)


def test_shifted_moves_frames_by_whole_pixels_with_zero_off_the_frame():
    frames = torch.rand(1, 2, 36, 64)
    shift = torch.tensor([[[3.0, 0.0], [0.0, -2.0]]])  # (dx, dy) per frame
    out = shifted(frames, shift)
    torch.testing.assert_close(out[0, 0, :, :-3], frames[0, 0, :, 3:])
    assert out[0, 0, :, -3:].abs().max() < 1e-6
    torch.testing.assert_close(out[0, 1, 2:], frames[0, 1, :-2])
    assert out[0, 1, :2].abs().max() < 1e-6


def test_shifter_starts_still_and_learns_how_the_pupil_moves_the_image():
    torch.manual_seed(0)
    pupil = torch.tensor([160.0, 120.0]) + 3.0 * torch.randn(1, 64, 2)
    true_shift = 0.5 * (pupil - torch.tensor([160.0, 120.0]))  # the simulator's eye (BehaviorConfig)
    frames = torch.nn.functional.avg_pool2d(torch.randn(64, 1, 40, 68), 5, 1)[:, 0][
        None
    ]  # smooth, (1, 64, 36, 64)
    target = shifted(frames, true_shift)
    shifter = Shifter()
    shifter.set_centre(pupil[0])
    assert torch.all(shifter(pupil) == 0)
    optimizer = torch.optim.Adam(shifter.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        loss = ((shifted(frames, shifter(pupil)) - target)[..., 4:-4, 4:-4] ** 2).mean()
        loss.backward()
        optimizer.step()
    assert (shifter(pupil) - true_shift).abs().mean() < 0.2
