"""The simulator's ground truth, kept beside a synthetic mouse folder in `<mouse>.truth/`.

Never inside the mouse folder: that folder must stay exactly what a real release holds. The
truth folder holds `simulation.json` (preset, seed, configuration, imaging settings, which
photographs were held out of training), `neurons.npz` (one array per parameter, in the mouse's
neuron order: receptive field centre `rf_row`/`rf_col` and size `sigma` in screen px,
`orientation` and `phase` in radians, `cycles_per_px`, `is_complex`, `latency_s`, `threshold`,
`gain`, `run_gain`, `plane`, `depth_um`, `indicator_*`, ...), `trials.json` (per trial: tier,
stimulus kind and its parts, e.g. the photograph of each scene, `video_id` shared by repeats,
scan phase) and `rates/<trial>.npy`: the noise-free firing rates (T, N) in Hz on the 30 Hz
grid, time first, with the trial's running already applied, for evaluation.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .planes import PlaneTiming
from .sensorium import load_npy
from .writer import partial_path, replace_folder


def truth_dir(mouse_path: str | Path) -> Path:
    mouse_path = Path(mouse_path)
    return mouse_path.with_name(mouse_path.name + ".truth")


class TruthWriter:
    def __init__(self, mouse_path: Path, overwrite: bool = False):
        self.path = truth_dir(mouse_path)
        self.work = replace_folder(self.path, overwrite)
        (self.work / "rates").mkdir()

    def write_rates(self, trial: int, rates: np.ndarray) -> None:
        np.save(self.work / "rates" / f"{trial}.npy", np.asarray(rates, dtype=np.float32))

    def finish(self, simulation: dict, neurons: dict[str, np.ndarray], trials: list[dict]) -> Path:
        (self.work / "simulation.json").write_text(json.dumps(simulation, indent=1))
        np.savez(self.work / "neurons.npz", **neurons)
        (self.work / "trials.json").write_text(json.dumps(trials, indent=1))
        self.work.rename(self.path)
        return self.path


@dataclass(frozen=True, eq=False)
class Truth:
    path: Path
    simulation: dict
    neurons: dict[str, np.ndarray]
    trials: dict[str, dict]  # trial id -> its record

    @property
    def n_neurons(self) -> int:
        return len(self.neurons["plane"])

    @property
    def plane_timing(self) -> PlaneTiming:
        imaging = self.simulation["imaging"]
        return PlaneTiming(
            imaging["n_planes"], imaging["volume_rate_hz"], self.neurons["plane"], imaging["plane_offsets_s"]
        )

    @property
    def held_out_photographs(self) -> list[str]:
        return list(self.simulation["photographs"]["held_out"])

    def rates(self, trial: str | int) -> np.ndarray:
        """(T, N) noise-free rates (Hz) of one trial, memory-mapped."""
        trial = str(trial)
        if trial not in self.trials:
            raise ValueError(f"{self.path}: no trial {trial!r}")
        frames = self.trials[trial]["n_frames"]
        return load_npy(self.path / "rates" / f"{trial}.npy", (frames, self.n_neurons), "noise-free rates")


def load_truth(mouse_path: str | Path) -> Truth:
    path = truth_dir(mouse_path)
    if not path.is_dir():
        hint = " (still being written)" if partial_path(path).is_dir() else ""
        raise FileNotFoundError(
            f"{path}: no simulator truth beside this mouse folder{hint}; only synthetic data have one"
        )
    try:
        simulation = json.loads((path / "simulation.json").read_text())
        trials = json.loads((path / "trials.json").read_text())
        with np.load(path / "neurons.npz", allow_pickle=False) as archive:
            neurons = {name: archive[name] for name in archive.files}
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: incomplete truth folder ({exc.filename} missing)") from exc
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: unreadable truth folder ({exc})") from exc
    return Truth(path, simulation, neurons, {str(t["trial"]): t for t in trials})
