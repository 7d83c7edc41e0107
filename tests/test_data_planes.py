"""Multi-plane timing: holding what the rig publishes gives exactly `held_responses`, the input
the distillation trains on; one plane at 30 Hz changes nothing."""

import numpy as np
import pytest

from stream_decoder.data import FRAME_RATE_HZ, PlaneTiming, held_responses, load_truth, plane_samples


def daemon_view(responses30, timing, initial=0.0):
    """What a daemon keeping each neuron's latest value sees at each 30 Hz tick, built message
    by message from the published plane samples."""
    latest = np.full(responses30.shape[1], initial, dtype=np.float32)
    samples = list(plane_samples(responses30, timing))
    seen = []
    for tick in range(len(responses30)):
        while samples and samples[0].t_acq <= tick / FRAME_RATE_HZ + 1e-6:
            sample = samples.pop(0)
            latest[sample.neurons] = sample.values
        seen.append(latest.copy())
    return np.stack(seen)


@pytest.fixture
def responses():
    return np.random.default_rng(0).gamma(0.5, 2.0, (95, 12)).astype(np.float32)


def test_single_plane_at_30_hz_is_the_identity(responses):
    timing = PlaneTiming.single_plane(12)
    np.testing.assert_array_equal(held_responses(responses, timing), responses)
    samples = list(plane_samples(responses, timing))
    assert len(samples) == 95
    np.testing.assert_array_equal(np.stack([s.values for s in samples]), responses)
    np.testing.assert_allclose([s.t_acq for s in samples], np.arange(95) / 30)


@pytest.mark.parametrize(
    "timing",
    [
        PlaneTiming(3, 7.5, np.repeat([0, 1, 2], 4), np.arange(3) / 30),  # 3 planes + flyback at 30 Hz
        PlaneTiming.evenly_spaced(np.tile([0, 1, 2, 3], 3), 4, 8.0),  # off the 30 Hz grid, interleaved
        PlaneTiming.evenly_spaced(np.zeros(12, int), 1, 11.0),
    ],
)
def test_holding_the_plane_samples_gives_held_responses(responses, timing):
    held = held_responses(responses, timing, initial=-1.0)
    np.testing.assert_array_equal(held, daemon_view(responses, timing, initial=-1.0))
    samples = list(plane_samples(responses, timing))
    times = [s.t_acq for s in samples]
    assert times == sorted(times) and times[-1] < 95 / 30
    for plane in range(timing.n_planes):
        own = [s for s in samples if s.plane == plane]
        np.testing.assert_allclose(np.diff([s.t_acq for s in own]), 1 / timing.volume_rate_hz)
        for sample in own:
            np.testing.assert_array_equal(sample.neurons, np.flatnonzero(timing.plane == plane))
            np.testing.assert_array_equal(
                sample.values, responses[int(np.floor(sample.t_acq * 30 + 1e-6)), sample.neurons]
            )
    assert (held[0] == -1.0).any() or timing.n_planes == 1  # later planes have nothing yet at t = 0


def test_slow_volumes_hold_values_between_samples(responses):
    timing = PlaneTiming(3, 7.5, np.repeat([0, 1, 2], 4), np.arange(3) / 30)
    held = held_responses(responses, timing)
    np.testing.assert_array_equal(held[0:4, :4], np.repeat(responses[[0]], 4, 0)[:, :4])  # plane 0 at frame 0
    np.testing.assert_array_equal(held[4:8, :4], np.repeat(responses[[4]], 4, 0)[:, :4])
    np.testing.assert_array_equal(held[1, 4:8], responses[1, 4:8])  # plane 1 acquired one frame later
    assert (held[0, 4:] == 0).all()


def test_planes_from_depths():
    depths = np.array([301.0, 199.0, 202.0, 250.0, 248.0, 305.0, 200.5])
    timing = PlaneTiming.from_depths(depths, 3, 7.5)
    np.testing.assert_array_equal(timing.plane, [2, 0, 0, 1, 1, 2, 0])
    np.testing.assert_allclose(timing.plane_offsets_s, np.arange(3) / 22.5)
    with pytest.raises(ValueError, match="5 distinct depths, too few for 6 planes"):
        PlaneTiming.from_depths(depths[:5], 6, 5.0)


def test_timing_of_a_mouse(tiny_mouse, tmp_path):
    truth = load_truth(tiny_mouse.path).plane_timing
    from_truth = PlaneTiming.for_mouse(tiny_mouse.path)
    np.testing.assert_array_equal(from_truth.plane, truth.plane)
    assert from_truth.n_planes == 3 and len(from_truth.plane) == tiny_mouse.n_neurons
    real = tmp_path / "real"  # a mouse folder with no truth beside it: a real recording
    real.symlink_to(tiny_mouse.path, target_is_directory=True)
    with pytest.raises(ValueError, match="give the number of planes and the volume rate"):
        PlaneTiming.for_mouse(real)
    guessed = PlaneTiming.for_mouse(real, n_planes=3, volume_rate_hz=7.5)
    np.testing.assert_array_equal(guessed.plane, truth.plane)


def test_bad_timings_are_errors(responses):
    with pytest.raises(ValueError, match=r"plane_offsets_s must hold 2 offsets in \[0, 0\.1000\)"):
        PlaneTiming(2, 10.0, np.zeros(12, int), [0.0, 0.1])
    with pytest.raises(ValueError, match=r"plane must give each neuron a plane in 0\.\.1"):
        PlaneTiming(2, 10.0, np.full(12, 2), [0.0, 0.05])
    with pytest.raises(
        ValueError, match=r"responses of shape \(95, 12\) do not match the timing's 5 neurons"
    ):
        held_responses(responses, PlaneTiming.single_plane(5))
