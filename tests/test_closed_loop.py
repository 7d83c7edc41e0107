"""The closed-loop example (examples/closed_loop.py): its decisions, stepped; and a real run."""

import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "closed_loop.py"


@pytest.fixture(scope="module")
def closed_loop():
    spec = importlib.util.spec_from_file_location("closed_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def experiment(closed_loop, n_clips=3, max_frames=120):
    rng = np.random.default_rng(0)
    clips = [rng.uniform(0, 255, (40, 36, 64)).astype(np.float32) for _ in range(n_clips)]
    return closed_loop.Experiment(clips, None, threshold=0.5, window=5, max_frames=max_frames, t0=100.0)


def step(closed_loop, exp, tick, decode, lag=3):
    """Show tick's frame; the decoder returns the frame shown `lag` ticks back (through `decode`)."""
    exp.frame(tick)
    if tick >= lag and (tick - lag) in exp.shown:
        t_stim = exp.t0 + (tick - lag) / closed_loop.FRAME_RATE_HZ
        exp.decoded(decode(exp.shown[tick - lag][1]), t_stim, t_stim + lag / 30)
    return exp.decide(tick)


def test_a_clip_decoded_well_is_left_once_the_window_matches(closed_loop):
    exp = experiment(closed_loop)
    decisions = [d for t in range(200) if (d := step(closed_loop, exp, t, lambda f: f + 5.0)) is not None]
    first = decisions[0]
    assert first.reason == "matched" and first.clip == 0 and first.next_clip == 1
    assert first.score > 0.99 and first.frames_scored == 5
    # scored only after the settle frames, on frames of this clip, and before the decision
    settle = closed_loop.SETTLE_FRAMES
    assert exp.t0 + settle / 30 - 1e-9 <= first.t_stim_first <= first.t_stim_last <= first.t_decided
    assert [d.clip for d in decisions[:3]] == [0, 1, 2]


def test_a_clip_decoded_badly_times_out_and_the_weakest_clip_comes_back(closed_loop):
    exp = experiment(closed_loop, max_frames=60)
    rng = np.random.default_rng(1)

    def decoder(frame):  # clip 1 is decoded badly, the others well
        good = exp.clip != 1
        return frame if good else rng.uniform(0, 255, frame.shape)

    decisions = [d for t in range(400) if (d := step(closed_loop, exp, t, decoder)) is not None]
    assert [d.reason for d in decisions[:3]] == ["matched", "timeout", "matched"]
    assert decisions[1].t_decided - decisions[0].t_decided == pytest.approx(61 / 30)
    assert decisions[2].next_clip == 1  # every clip seen: back to the one decoded worst


def test_the_example_runs_against_the_virtual_rig_and_decides_on_decoded_frames(closed_loop, tiny_root):
    log = io.StringIO()
    argv = ["--data", str(tiny_root), "--tier", "oracle"]  # no model named: one in the rig's timing
    exp = closed_loop.main([*argv, "--threshold", "0.1", "--decisions", "1", "--total-s", "30"], log=log)
    assert exp.warnings.get("input_timing", 0) == 0
    logged = [json.loads(line) for line in log.getvalue().splitlines()]
    assert logged and logged == [vars(d) for d in exp.decisions]
    decision = logged[0]
    assert decision["reason"] == "matched" and decision["frames_scored"] == 15
    assert decision["t_stim_first"] <= decision["t_stim_last"] < decision["t_newest_last"]


def test_the_calibration_example_fits_the_day_s_mouse_and_closes_the_loop_without_a_timing_warning(
    tiny_root, tiny_mouse, tmp_path
):
    spec = importlib.util.spec_from_file_location(
        "calibrate_closed_loop", EXAMPLE.with_name("calibrate_closed_loop.py")
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = ["--data", str(tiny_root), "--calibration-s", "55", "--unpaced", "--out", str(tmp_path / "day")]
    loop_argv = ["--tier", "oracle", "--threshold", "0.05", "--decisions", "1", "--total-s", "30"]
    artifact, exp = example.main([*argv, *loop_argv], log=io.StringIO())
    timing = artifact.meta.provenance["input_timing"]
    assert timing["n_planes"] > 1 and artifact.meta.neuron_set == tiny_mouse.neuron_set()
    assert artifact.meta.provenance["calibration"]["clips"] == 5  # 55 s: five 10 s clips
    assert (tmp_path / "day" / "model.onnx").is_file()
    assert exp.decisions and exp.warnings.get("input_timing", 0) == 0  # fitted on the rig's own planes
