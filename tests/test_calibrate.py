"""Same-session calibration (rig/calibrate.py): pairing, the block's checks, and a fit on a
rehearsed block of the tiny mouse that the daemon takes for this stream."""

import numpy as np
import pytest

from stream_decoder.data import FRAME_RATE_HZ, FRAME_SHAPE
from stream_decoder.rig.calibrate import (
    CLIP_TICKS,
    MIN_CLIPS,
    CalibrationError,
    Calibrator,
    fit_block,
    rehearse,
)
from stream_decoder.stream.protocol import encode_activity, encode_stimulus

N = 5
T0 = 50.0


def single_plane_block(ticks: int, stimulus_shift_s: float = 0.0, stimuli: bool = True) -> Calibrator:
    """Tick k: activity k / 1000 in every neuron at T0 + k / 30; the screen shows a frame of value
    k % 200 from T0 + k / 30 + `stimulus_shift_s` on."""
    cal = Calibrator(N)
    for k in range(ticks):
        t = T0 + k / FRAME_RATE_HZ
        if stimuli:
            image = np.full(FRAME_SHAPE, float(k % 200), np.float32)
            cal.handle(encode_stimulus("screen", k, t + stimulus_shift_s, image))
        cal.handle(encode_activity("rig", k, t, np.full(N, k / 1000, np.float32), behavior=(1.0, 2.0)))
    return cal


def test_each_tick_is_paired_with_the_frame_on_the_screen_at_its_time():
    ticks = MIN_CLIPS * CLIP_TICKS + 10
    block = single_plane_block(ticks).block()
    assert len(block.clips) == MIN_CLIPS and block.paired == ticks and block.unpaired == 0
    activity, behavior, video = block.clips[1]
    k = np.arange(CLIP_TICKS, 2 * CLIP_TICKS)
    np.testing.assert_allclose(activity[:, 0], k / 1000, rtol=1e-6)
    np.testing.assert_array_equal(video[:, 0, 0], k % 200)
    np.testing.assert_array_equal(behavior[0], [1.0, 2.0, 0.0, 0.0])  # no pupil centre sent: 0
    # shown half a tick late: tick 0 has nothing on the screen yet and is left out, so the clips
    # start at tick 1, each tick holding the frame shown the tick before
    late = single_plane_block(ticks, stimulus_shift_s=0.5 / FRAME_RATE_HZ).block()
    assert late.unpaired == 1
    np.testing.assert_allclose(late.clips[1][0][:, 0], (k + 1) / 1000, rtol=1e-6)
    np.testing.assert_array_equal(late.clips[1][2][:, 0, 0], k % 200)


def test_a_block_too_short_without_stimuli_or_on_another_clock_is_refused_with_the_fix():
    with pytest.raises(CalibrationError, match=r"in 4 clips of 300; record at least 50 s"):
        single_plane_block((MIN_CLIPS - 1) * CLIP_TICKS).block()
    with pytest.raises(CalibrationError, match="no stimulus frame arrived"):
        single_plane_block(MIN_CLIPS * CLIP_TICKS, stimuli=False).block()
    with pytest.raises(
        CalibrationError, match=r"only 0% of the activity ticks .* stamp the stimulus with the rig's clock"
    ):
        single_plane_block(MIN_CLIPS * CLIP_TICKS, stimulus_shift_s=1000.0).block()
    with pytest.raises(CalibrationError, match="no activity arrived"):
        Calibrator(N).block()


def test_bad_messages_are_counted_and_left_out():
    cal = single_plane_block(10)
    cal.handle(encode_activity("rig", 3, T0, np.zeros(N, np.float32)))  # an old seq
    cal.handle(encode_activity("rig", 11, T0 + 1, np.zeros(N + 1, np.float32)))  # other neurons
    cal.handle(encode_stimulus("screen", 99, T0, np.zeros(FRAME_SHAPE, np.float32)))  # shown before the last
    assert cal.stats.rejected["out_of_order"] == 1 and cal.stats.rejected["stimulus_out_of_order"] == 1
    assert sum(cal.stats.rejected.values()) == 3 and cal.stats.ticks == 10 and cal.stats.stimuli == 10


def test_a_rehearsed_block_of_the_day_s_mouse_fits_a_baseline_in_the_stream_s_timing(tiny_mouse, tmp_path):
    from stream_decoder.data.stimuli import TRAINING_PHOTOGRAPHS, natural_movie
    from stream_decoder.decoder.config import RidgeConfig

    movie, _ = natural_movie(np.random.default_rng(3), (MIN_CLIPS + 1) * CLIP_TICKS, TRAINING_PHOTOGRAPHS)
    cal = rehearse(tiny_mouse, movie)
    block = cal.block()
    assert len(block.clips) == MIN_CLIPS + 1 and block.unpaired == 0 and not cal.stats.rejected
    assert block.clips[0][0].shape == (CLIP_TICKS, tiny_mouse.n_neurons)
    artifact = fit_block(block, tiny_mouse, tmp_path / "calibrated", RidgeConfig(components=32, lookahead=2))
    meta = artifact.meta
    assert meta.neuron_set == tiny_mouse.neuron_set() and np.array_equal(meta.unit_ids, tiny_mouse.unit_ids)
    planes = meta.provenance["input_timing"]["n_planes"]
    assert planes == block.n_planes > 1 and artifact.multi_plane
    assert meta.provenance["calibration"]["clips"] == MIN_CLIPS + 1
    assert max(meta.provenance["baseline"]["validation_correlation"].values()) > 0.1  # decodes held-back
