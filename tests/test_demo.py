"""The demo and the loopback it runs on: ground truth beside the frames across a rig restart, and
no surprise 700 MB simulation into a folder the user named."""

import numpy as np
import pytest

from stream_decoder.data import FRAME_RATE_HZ
from stream_decoder.display.viewer import MovieSink
from stream_decoder.rig.replay import ReplayOptions, ReplayPlan, plane_timing

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_truth_beside_the_frames_stays_right_after_a_rig_restart(start_daemon, tiny_mouse, tmp_path):
    trial = tiny_mouse.trials("oracle")[0]
    clip = tiny_mouse.clip(trial)
    plan = ReplayPlan(tiny_mouse, [trial], plane_timing(tiny_mouse, 1, None, False))
    t0, restart_after = 1000.0, 100
    sink = MovieSink(tmp_path, keep=clip.n_frames)
    d = start_daemon()
    figures = d.play(plan, ReplayOptions(speed=0, t0=t0, restart_after=restart_after), sink, clip.n_frames)
    assert figures.received == clip.n_frames
    after_restart = 0
    for _, truth, t_stim in sink.frames:
        frame = round((t_stim - t0) * FRAME_RATE_HZ)  # the clip frame this reconstruction shows
        if 0 <= frame < clip.n_frames:
            np.testing.assert_array_equal(truth, clip.video[frame])
            after_restart += frame >= restart_after
        else:
            assert truth is None
    assert after_restart > 100  # the frames after the restart were checked, not skipped


def test_demo_does_not_simulate_into_a_folder_it_was_given_unless_asked(
    untrained_artifact, tmp_path, monkeypatch
):
    from stream_decoder.display import demo

    def simulate(*args, **kwargs):
        raise AssertionError("simulated without being asked")

    monkeypatch.setattr(demo, "simulate", simulate)
    missing = tmp_path / "nothing-here"
    config = demo.DemoConfig(artifact=untrained_artifact, data=missing, out=tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="pass --simulate to simulate the demo dataset into it"):
        demo.run_demo(config)
    assert not missing.exists()
