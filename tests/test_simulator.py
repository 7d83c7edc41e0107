"""The synthetic rig behaves like a mouse V1 recording: stimulus information is decodable,
repeats are reliable but noisy, running raises activity, eye position moves receptive fields,
and everything is deterministic for a seed."""

from pathlib import Path

import numpy as np
import pytest

import stream_decoder
from stream_decoder.cli import main
from stream_decoder.data import CLIP_FRAMES, MouseDataset, PlaneTiming, find_mice, load_truth, simulate
from stream_decoder.data.behavior import screen_shift
from stream_decoder.data.presets import preset_config
from stream_decoder.data.reliability import repeat_reliability
from stream_decoder.data.rig import SyntheticMouse
from stream_decoder.data.simulate import (
    expected_fingerprint,
    plan_trials,
    rebuild_mouse,
    trial_filter_outputs,
)
from stream_decoder.data.stimuli import HELD_OUT_PHOTOGRAPHS, pink_noise
from stream_decoder.decoder.artifact import load_artifact

LAGS = (2, 4, 6)  # responses trail the stimulus by kernel, calcium and deconvolution delays


def lagged_design(mouse, trials, skip=30):
    """Responses at several lags after each frame -> that frame's pixels, pooled 2 x 2."""
    inputs, targets = [], []
    for trial in trials:
        clip = mouse.clip(trial)
        n = min(clip.n_frames, CLIP_FRAMES) - max(LAGS)
        inputs.append(np.concatenate([clip.responses[lag : lag + n] for lag in LAGS], axis=1)[skip:])
        pooled = clip.video[:n].reshape(n, 18, 2, 32, 2).mean((2, 4))
        targets.append(pooled.reshape(n, -1)[skip:])
    return np.concatenate(inputs), np.concatenate(targets)


def ridge_decoding(mouse, shuffle):
    """Correlation over held-out pixels and frames of a ridge decoder fit on the train tier."""
    x, y = lagged_design(mouse, mouse.trials("train"))
    if shuffle:  # control: responses no longer belong to their frames
        x = x[np.random.default_rng(0).permutation(len(x))]
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / std
    gram = x.T @ x
    weights = np.linalg.solve(gram + np.trace(gram) / len(gram) * np.eye(len(gram)), x.T @ (y - y.mean(0)))
    x_test, y_test = lagged_design(mouse, mouse.trials(["oracle", "final_test_main"]))
    prediction = (x_test - mean) / std @ weights + y.mean(0)
    return np.corrcoef(prediction.ravel(), y_test.ravel())[0, 1]


def test_responses_carry_stimulus_information(tiny_mouse):
    decoded = ridge_decoding(tiny_mouse, shuffle=False)
    control = ridge_decoding(tiny_mouse, shuffle=True)
    assert decoded > 0.15, decoded
    assert decoded > control + 0.12, (decoded, control)


def test_repeats_are_correlated_but_not_identical(tiny_mouse):
    groups = tiny_mouse.repeats(["oracle", "final_test_main"])
    assert len(groups) == 4 and all(len(g) >= 3 for g in groups)
    first = [tiny_mouse.clip(t).responses for t in groups[0]]
    assert not np.allclose(first[0], first[1])
    reliability = np.nanmean(repeat_reliability(tiny_mouse))
    assert 0.2 <= reliability <= 0.5, reliability  # tiny is the easy preset; demo's is 0.15 (bench_realism)


def test_running_raises_activity(tiny_mouse):
    responses, behavior = [], []
    for trial in tiny_mouse.trials("train"):
        clip = tiny_mouse.clip(trial)
        responses.append(clip.responses.mean(1))
        behavior.append(clip.behavior)
    activity, behavior = np.concatenate(responses), np.concatenate(behavior)
    running, still = behavior[:, 1] > 5.0, behavior[:, 1] < 1.0
    assert running.mean() > 0.05 and still.mean() > 0.2  # both states occur
    assert activity[running].mean() > 1.3 * activity[still].mean()
    assert np.corrcoef(behavior[:, 0], behavior[:, 1])[0, 1] > 0.3  # pupil dilates with running


def test_pupil_centre_shifts_estimated_receptive_fields():
    cfg = preset_config("tiny", n_neurons=120)
    mouse = SyntheticMouse.create(cfg, seed=0)
    stimulus, _ = pink_noise(np.random.default_rng(0), 3000)
    contrast_energy = np.square((stimulus - stimulus.mean()) / stimulus.std()).reshape(len(stimulus), -1)
    rows, cols = np.mgrid[: stimulus.shape[1], : stimulus.shape[2]]

    def centres(eye_offset):
        pupil = np.tile(np.asarray(cfg.behavior.eye_center) + eye_offset, (len(stimulus), 1))
        rates = mouse.population.rates(stimulus, screen_shift(pupil, cfg.behavior))
        lag = 2  # the temporal kernels peak 1-3 frames after the stimulus
        maps = (contrast_energy[:-lag] - contrast_energy.mean(0)).T @ (rates[lag:] - rates[lag:].mean(0))
        maps = np.maximum(maps - 0.5 * maps.max(0), 0)
        maps /= maps.sum(0)
        return rows.ravel() @ maps, cols.ravel() @ maps

    still_rows, still_cols = centres(np.zeros(2))
    truth = mouse.population
    assert np.median(np.abs(still_cols - truth.rf_col)) < 1.5  # the estimate finds the true fields
    assert np.median(np.abs(still_rows - truth.rf_row)) < 1.5
    moved_rows, moved_cols = centres(np.array([6.0, 0.0]))  # pupil 6 eye px to the right
    expected = 6.0 * cfg.behavior.screen_px_per_eye_px
    assert np.median(moved_cols - still_cols) == pytest.approx(expected, abs=0.75)
    assert abs(np.median(moved_rows - still_rows)) < 0.5


def test_stimuli_look_like_sensorium_and_hold_photographs_out(tiny_mouse):
    truth = load_truth(tiny_mouse.path)
    videos = np.stack([tiny_mouse.clip(t).video for t in tiny_mouse.trials("train")])
    assert 70 < videos.mean() < 90 and 47 < videos.std() < 67
    for trial in tiny_mouse.trial_ids:
        record = truth.trials[trial]
        photographs = {part["photograph"] for part in record["parts"] if "photograph" in part}
        assert record["tier"] == tiny_mouse.tiers[int(trial)]
        if record["tier"] in ("train", "oracle"):
            assert record["kind"] == "natural" and not photographs & set(HELD_OUT_PHOTOGRAPHS)
        elif record["tier"] == "final_test_main":
            assert photographs and photographs <= set(HELD_OUT_PHOTOGRAPHS)
        else:
            assert record["kind"] in ("drifting_gratings", "pink_noise", "gaussian_dots") and not photographs
    scene_lengths = [
        p["frames"] for t in truth.trials.values() if t["kind"] == "natural" for p in t["parts"][:-1]
    ]
    assert min(scene_lengths) >= 30 and max(scene_lengths) <= 120  # cuts every 1-4 s


def test_truth_beside_the_mouse(tiny_mouse):
    truth = load_truth(tiny_mouse.path)
    assert truth.path == tiny_mouse.path.with_name(tiny_mouse.name + ".truth")
    assert truth.held_out_photographs == list(HELD_OUT_PHOTOGRAPHS)
    trial = tiny_mouse.trials("oracle")[0]
    rates, responses = truth.rates(trial), tiny_mouse.clip(trial).responses
    assert rates.shape == responses.shape and (rates > 0).all()
    active = [
        n for n in range(tiny_mouse.n_neurons) if responses[4:, n].std() > 1e-3 and rates[:-4, n].std() > 1e-3
    ]
    lagged = [np.corrcoef(rates[:-4, n], responses[4:, n])[0, 1] for n in active]
    assert np.nanmean(lagged) > 0.2  # recorded activity follows the clean rates, late and noisy
    timing = truth.plane_timing
    assert (timing.n_planes, timing.volume_rate_hz) == (3, 7.5)
    np.testing.assert_allclose(timing.plane_offsets_s, [0, 1 / 30, 2 / 30])
    assert (np.diff(timing.plane) >= 0).all()  # each plane is one contiguous range of neurons
    depths = PlaneTiming.from_depths(tiny_mouse.cell_motor_coordinates[:, 2], 3, 7.5)
    np.testing.assert_array_equal(depths.plane, timing.plane)
    assert truth.neurons["rf_col"].shape == truth.neurons["indicator_tau_decay_s"].shape == (320,)


def test_filter_outputs_are_the_stage_before_a_trials_rates(tiny_mouse):
    """A simple cell fires above its spontaneous rate only where its filter output is positive
    (rectification), frame by frame: the outputs share the trial's video, frames and eye shifts."""
    mouse, truth = rebuild_mouse(tiny_mouse.path)
    trial = tiny_mouse.trials("train")[0]
    outputs, rates = trial_filter_outputs(mouse, truth, trial), truth.rates(trial)
    population = mouse.population
    assert outputs.shape == (len(rates), mouse.n_neurons + population.is_complex.sum())
    simple = np.flatnonzero(~population.is_complex)
    evoked = rates[:, simple] > population.spontaneous_hz[simple] + 1e-4
    assert evoked.mean() > 0.05 and (outputs[:, simple][evoked] > 0).all()
    shifted = np.roll(outputs[:, simple], 3, axis=0)  # three frames off: the alignment breaks
    assert (shifted[evoked] <= 0).mean() > 0.01


def test_deterministic_for_a_seed(tiny_root, tiny_mouse, tmp_path):
    (again,) = simulate("tiny", seed=0, out=tmp_path)
    assert MouseDataset(again).fingerprint() == tiny_mouse.fingerprint()
    for relative in ["data/videos/5.npy", "data/responses/5.npy", "data/pupil_center/17.npy",
                     "meta/statistics/responses/all/median.npy"]:  # fmt: skip
        assert (again / relative).read_bytes() == (tiny_mouse.path / relative).read_bytes()
    np.testing.assert_array_equal(load_truth(again).rates("3"), load_truth(tiny_mouse.path).rates("3"))
    other = plan_trials(preset_config("tiny").trials, seed=1)
    assert [s.tier for s in other] != [s.tier for s in plan_trials(preset_config("tiny").trials, seed=0)]


def test_noisier_imaging_records_the_same_rates_less_reliably(tiny_mouse, tmp_path):
    (noisy,) = simulate("tiny", seed=0, out=tmp_path, noise_dff=0.3)
    np.testing.assert_array_equal(load_truth(noisy).rates("3"), load_truth(tiny_mouse.path).rates("3"))
    noisier = np.nanmean(repeat_reliability(MouseDataset(noisy)))
    assert noisier < 0.8 * np.nanmean(repeat_reliability(tiny_mouse))
    rebuilt, _ = rebuild_mouse(noisy)
    assert rebuilt.cfg.imaging.noise_dff == (0.3, preset_config("tiny").imaging.noise_dff[1])
    with pytest.raises(ValueError, match="imaging noise"):
        preset_config("tiny", noise_dff=0.0)


def test_cli_puts_several_mice_in_one_root(tmp_path, capsys):
    root = tmp_path / "root"
    assert (
        main(["simulate", "--preset", "tiny", "--neurons", "24", "--seed", "1", "2", "--out", str(root)]) == 0
    )
    mice = [MouseDataset(p) for p in find_mice(root)]
    assert [m.name for m in mice] == ["synthetic-tiny-n24-seed1", "synthetic-tiny-n24-seed2"]
    assert mice[0].fingerprint() != mice[1].fingerprint()
    assert "fingerprint" in capsys.readouterr().out
    assert main(["simulate", "--preset", "tiny", "--neurons", "24", "--out", str(root), "--seed", "1"]) == 0
    assert "reusing it" in capsys.readouterr().out  # the same settings: the same mouse, kept
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        simulate("huge", 0, root)


def test_expected_fingerprint_is_the_simulated_datasets(tiny_mouse):
    """Computed from the training tier in memory, it is what the written dataset reports."""
    assert expected_fingerprint("tiny", 0) == tiny_mouse.fingerprint()
    assert expected_fingerprint("tiny", 1) != tiny_mouse.fingerprint()


def test_the_bundled_demo_student_matches_a_fresh_demo_simulation():
    """`stream-decoder demo` simulates the demo dataset and serves the bundled student on it: a
    simulator change that alters the data must ship a student trained on the new data."""
    bundled = load_artifact(Path(stream_decoder.__file__).parent / "assets" / "demo")
    assert bundled.meta.data_fingerprint == expected_fingerprint("demo", 0), (
        "the bundled demo student was trained on other data than `simulate --preset demo` writes now: "
        "retrain it as the README's pipeline section says"
    )
