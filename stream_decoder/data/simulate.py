"""`simulate`: write a synthetic mouse in the Sensorium 2023 format, with its truth beside it.

Deterministic for a (preset, seed): every random draw comes from a generator seeded by the seed
and what it is for (the population, a clip's video, a trial's behaviour and noise), so a trial
does not depend on the order trials are generated in. Trials are written one at a time, so
memory stays bounded whatever the preset.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from .presets import SimulationConfig, TrialPlan, preset_config
from .rig import Recording, SyntheticMouse
from .sensorium import CLIP_FRAMES, FRAME_RATE_HZ, FRAME_SHAPE, data_fingerprint
from .statistics import StreamingStats
from .stimuli import HELD_OUT_PHOTOGRAPHS, TRAINING_PHOTOGRAPHS, render
from .truth import Truth, TruthWriter, load_truth
from .writer import MouseWriter

if TYPE_CHECKING:
    from .microscope import Microscope, RawFrame


@dataclass(frozen=True)
class TrialSpec:
    trial: int  # file name: trial ids are shuffled relative to the order of presentation
    presentation: int
    tier: str
    kind: str
    video_id: int  # repeats share it, and so share the identical video
    n_frames: int
    held_out: bool  # natural movie of photographs kept out of the training tiers

    @property
    def photographs(self) -> tuple[str, ...]:
        if self.kind != "natural":
            return ()
        return HELD_OUT_PHOTOGRAPHS if self.held_out else TRAINING_PHOTOGRAPHS


def plan_trials(plan: TrialPlan, seed: int) -> list[TrialSpec]:
    """Every trial of the session, ordered by trial id; presentation order is interleaved."""
    rng = np.random.default_rng([seed, 0])
    blocks = [
        ("train", "natural", plan.train, 1, False),
        ("oracle", "natural", plan.oracle_clips, plan.oracle_repeats, False),
        ("final_test_main", "natural", plan.test_clips, plan.test_repeats, True),
        ("live_test_bonus", "drifting_gratings", plan.gratings, plan.ood_repeats, False),
        ("final_test_bonus", "pink_noise", plan.pink_noise, plan.ood_repeats, False),
        ("final_test_bonus", "gaussian_dots", plan.gaussian_dots, plan.ood_repeats, False),
    ]
    rows, video_id = [], 0
    for tier, kind, clips, repeats, held_out in blocks:
        for _ in range(clips):
            n_frames = (
                CLIP_FRAMES if kind == "natural" else int(rng.integers(*plan.ood_frames, endpoint=True))
            )
            rows += [(tier, kind, video_id, n_frames, held_out)] * repeats
            video_id += 1
    presentation = rng.permutation(len(rows))
    trial_of_row = rng.permutation(len(rows))
    specs = [TrialSpec(int(trial_of_row[i]), int(presentation[i]), *row) for i, row in enumerate(rows)]
    return sorted(specs, key=lambda spec: spec.trial)


def mouse_name(cfg: SimulationConfig, seed: int) -> str:
    return f"synthetic-{cfg.preset}-n{cfg.population.n_neurons}-seed{seed}"


def trial_video(spec: TrialSpec, seed: int) -> tuple[np.ndarray, list[dict]]:
    """A trial's movie and its parts; a repeat renders its clip again from the clip's own seed."""
    return render(spec.kind, np.random.default_rng([seed, 3, spec.video_id]), spec.n_frames, spec.photographs)


def trial_generator(seed: int, trial: int) -> np.random.Generator:
    """The generator of a trial's behaviour, spikes and imaging noise."""
    return np.random.default_rng([seed, 4, trial])


def recorded_trials(
    mouse: SyntheticMouse, specs: list[TrialSpec], seed: int
) -> Iterator[tuple[TrialSpec, np.ndarray, list[dict], Recording]]:
    """Render and record each planned trial in turn: (spec, video, its parts, recording)."""
    for spec in specs:
        video, parts = trial_video(spec, seed)
        yield spec, video, parts, mouse.record(video, trial_generator(seed, spec.trial))


def rebuild_mouse(mouse_path: str | Path) -> tuple[SyntheticMouse, Truth]:
    """The simulated mouse behind a synthetic dataset folder, from the truth beside it."""
    truth = load_truth(mouse_path)
    sim = truth.simulation
    imaging = sim["imaging"]
    cfg = preset_config(
        sim["preset"],
        n_neurons=sim["n_neurons"],
        n_planes=imaging["n_planes"],
        volume_rate_hz=imaging["volume_rate_hz"],
        noise_dff=sim["config"]["imaging"]["noise_dff"][0],
    )
    if json.loads(json.dumps(asdict(cfg))) != sim["config"]:
        raise ValueError(
            f"{truth.path}: simulated with a configuration this version's preset {sim['preset']!r} "
            "does not reproduce; simulate the dataset again"
        )
    return SyntheticMouse.create(cfg, sim["seed"]), truth


def replayed_trial(truth: Truth, trial: str | int) -> tuple[TrialSpec, np.ndarray, np.random.Generator]:
    """A recorded trial again, from the truth beside the dataset: its plan, its video and a fresh
    generator of its behaviour and noise (the draws it was recorded with)."""
    record = truth.trials[str(trial)]
    spec = TrialSpec(**{f.name: record[f.name] for f in fields(TrialSpec)})
    seed = truth.simulation["seed"]
    return spec, trial_video(spec, seed)[0], trial_generator(seed, spec.trial)


def raw_trial(microscope: Microscope, truth: Truth, trial: str | int) -> Iterator[RawFrame]:
    """The raw frames of one recorded trial: the same calcium and scan phase as its responses."""
    from .microscope import trial_frames  # scipy.ndimage: only for raw frames

    spec, video, rng = replayed_trial(truth, trial)
    _, _, frames = trial_frames(microscope, video, rng, spec.trial)
    return frames


def trial_filter_outputs(mouse: SyntheticMouse, truth: Truth, trial: str | int) -> np.ndarray:
    """(T, N + complex cells): the linear filter outputs behind one recorded trial's responses
    (`SyntheticMouse.filter_outputs`, the same video and eye positions)."""
    _, video, rng = replayed_trial(truth, trial)
    return mouse.filter_outputs(video, rng)


def simulate(
    preset: str,
    seed: int,
    out: str | Path,
    *,
    n_neurons: int | None = None,
    n_planes: int | None = None,
    volume_rate_hz: float | None = None,
    noise_dff: float | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> list[Path]:
    """Write one synthetic mouse into the dataset root `out` and return its folder (in a list:
    call again with other seeds or neuron counts to put several mice into one root)."""
    cfg = preset_config(preset, n_neurons, n_planes, volume_rate_hz, noise_dff)
    folder = Path(out) / mouse_name(cfg, seed)
    specs = plan_trials(cfg.trials, seed)
    mouse = SyntheticMouse.create(cfg, seed)
    writer = MouseWriter(folder, mouse.n_neurons, CLIP_FRAMES, overwrite=overwrite)
    truth = TruthWriter(folder, overwrite=overwrite)
    records = []
    trials = recorded_trials(mouse, specs, seed)
    for spec, video, parts, recording in tqdm(
        trials, desc=folder.name, total=len(specs), disable=not progress
    ):
        writer.write_trial(
            spec.trial,
            video,
            recording.responses,
            recording.behavior.behavior,
            recording.behavior.pupil_center,
            in_statistics=spec.tier == "train",
        )
        truth.write_rates(spec.trial, recording.rates)
        records.append({**asdict(spec), "parts": parts, "scan_phase_s": recording.scan_phase_s})
    writer.finish(
        [spec.tier for spec in specs],
        mouse.unit_ids(),
        mouse.cell_motor_coordinates(),
        np.array([spec.presentation for spec in specs]),
    )
    truth.finish(_simulation_record(cfg, seed, mouse), mouse.neuron_truth(), records)
    return [folder]


def expected_fingerprint(preset: str, seed: int, n_neurons: int | None = None, progress: bool = False) -> str:
    """The data fingerprint `simulate` gives this (preset, seed), computed from only what it reads:
    the neurons, the trial plan, the shapes on disk and the training tier's response scale (those
    trials simulated in memory, nothing written). What a bundled model's fingerprint is checked
    against, so a simulator change cannot ship a model that refuses a fresh simulation."""
    cfg = preset_config(preset, n_neurons)
    specs = plan_trials(cfg.trials, seed)
    mouse = SyntheticMouse.create(cfg, seed)
    train = [spec for spec in specs if spec.tier == "train"]
    stats = StreamingStats(mouse.n_neurons)
    for *_, recording in tqdm(recorded_trials(mouse, train, seed), total=len(train), disable=not progress):
        stats.update(recording.responses)
    std = io.BytesIO()
    np.save(std, stats.result()["std"][:, None])  # as MouseWriter.finish writes it
    shapes = [(*FRAME_SHAPE, CLIP_FRAMES), (mouse.n_neurons, CLIP_FRAMES), (2, CLIP_FRAMES), (2, CLIP_FRAMES)]
    return data_fingerprint(
        mouse.unit_ids(),
        mouse.cell_motor_coordinates(),
        [spec.trial for spec in specs],
        [spec.tier for spec in specs],
        shapes,
        std.getvalue(),
    )


def _simulation_record(cfg: SimulationConfig, seed: int, mouse: SyntheticMouse) -> dict:
    imaging = cfg.imaging
    return {
        "format_version": 1,
        "preset": cfg.preset,
        "seed": seed,
        "config": asdict(cfg),
        "frame_rate_hz": FRAME_RATE_HZ,
        "photographs": {"training": list(TRAINING_PHOTOGRAPHS), "held_out": list(HELD_OUT_PHOTOGRAPHS)},
        "imaging": {
            "n_planes": imaging.n_planes,
            "volume_rate_hz": imaging.volume_rate_hz,
            "flyback_frames": imaging.flyback_frames,
            "plane_offsets_s": imaging.plane_offsets_s.tolist(),
            "plane_depths_um": imaging.plane_depths_um.tolist(),
        },
        "eye": {
            "center_px": list(cfg.behavior.eye_center),
            "screen_px_per_eye_px": cfg.behavior.screen_px_per_eye_px,
        },
        "n_neurons": mouse.n_neurons,
    }
