"""Write one mouse folder in the layout of the Sensorium 2023 release, trial by trial.

File names, layouts and NaN padding are the release's, so the community's loaders read what we
write. Statistics are stored with a trailing axis of one ((N, 1) for responses, (2, 1) for
behaviour and pupil centre) because loaders such as neuralpredictors' NeuroNormalizer apply them
to the on-disk (features, time) arrays; our own reader accepts either form. They cover the
training tier only (normalisation must not see test data); every frame of a movie is a stimulus
frame, so `all` and `stimulus_frame` hold the same numbers.

The folder is built under `<name>.partial` and renamed when complete: an interrupted run never
leaves a folder that looks finished.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .sensorium import DATA_KEYS, FRAME_SHAPE, STATISTICS_KINDS
from .statistics import StreamingStats


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def replace_folder(path: Path, overwrite: bool) -> Path:
    """Make way for a folder to be built under its .partial name and return that name."""
    if path.exists():
        if not overwrite:
            raise ValueError(f"{path}: already exists; pass --force (overwrite=True) to replace it")
        shutil.rmtree(path)
    work = partial_path(path)
    if work.exists():
        shutil.rmtree(work)  # left over from an interrupted run
    work.mkdir(parents=True)
    return work


class MouseWriter:
    def __init__(self, path: str | Path, n_neurons: int, padded_frames: int, overwrite: bool = False):
        self.path = Path(path)
        self.n_neurons = n_neurons
        self.padded_frames = padded_frames
        self.work = replace_folder(self.path, overwrite)
        for key in DATA_KEYS:
            (self.work / "data" / key).mkdir(parents=True)
        self.stats = {
            "videos": StreamingStats(FRAME_SHAPE[0] * FRAME_SHAPE[1]),  # pooled over pixels at the end
            "responses": StreamingStats(n_neurons),
            "behavior": StreamingStats(2),
            "pupil_center": StreamingStats(2),
        }
        self.trials: set[int] = set()

    def write_trial(
        self,
        trial: int,
        video: np.ndarray,
        responses: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
        in_statistics: bool,
    ) -> None:
        """Save one trial given time first; NaN-pad it to the mouse's fixed length."""
        n = len(video)
        expected = {
            "videos": (n, *FRAME_SHAPE),
            "responses": (n, self.n_neurons),
            "behavior": (n, 2),
            "pupil_center": (n, 2),
        }
        arrays = dict(zip(DATA_KEYS, (video, responses, behavior, pupil_center), strict=True))
        for key, array in arrays.items():
            if np.shape(array) != expected[key]:
                raise ValueError(f"trial {trial} {key}: shape {np.shape(array)}, expected {expected[key]}")
        if not 0 < n <= self.padded_frames:
            raise ValueError(f"trial {trial}: {n} frames, expected 1..{self.padded_frames}")
        for key, array in arrays.items():
            padded = np.full((self.padded_frames, *array.shape[1:]), np.nan, dtype=np.float32)
            padded[:n] = array
            on_disk = np.moveaxis(padded, 0, -1)  # time last: (36, 64, T), (N, T), (2, T)
            np.save(self.work / "data" / key / f"{trial}.npy", np.ascontiguousarray(on_disk))
            if in_statistics:
                self.stats[key].update(array.reshape(n, -1))
        self.trials.add(trial)

    def finish(
        self,
        tiers: Sequence[str],
        unit_ids: np.ndarray,
        cell_motor_coordinates: np.ndarray,
        trial_idx: np.ndarray | None = None,
    ) -> Path:
        """Write meta/ (neurons, trials, statistics) and move the folder into place."""
        if not self.stats["videos"].count:
            raise ValueError(f"{self.path}: no trial was written for the statistics (empty training tier)")
        if self.trials != set(range(len(tiers))):
            raise ValueError(
                f"{self.path}: trials written {sorted(self.trials)[:5]}..., expected 0..{len(tiers) - 1}"
            )
        neurons = self.work / "meta" / "neurons"
        trials = self.work / "meta" / "trials"
        neurons.mkdir(parents=True)
        trials.mkdir(parents=True)
        np.save(neurons / "unit_ids.npy", np.asarray(unit_ids))
        np.save(neurons / "cell_motor_coordinates.npy", np.asarray(cell_motor_coordinates, dtype=np.float32))
        np.save(trials / "tiers.npy", np.asarray(tiers, dtype=str))
        if trial_idx is not None:
            np.save(trials / "trial_idx.npy", np.asarray(trial_idx))
        for key, accumulator in self.stats.items():
            pooled = key == "videos"  # one luminance statistic, shape (1,)
            values = accumulator.result(pooled=pooled)
            for kind in STATISTICS_KINDS:
                folder = self.work / "meta" / "statistics" / key / kind
                folder.mkdir(parents=True)
                for name, value in values.items():
                    np.save(folder / f"{name}.npy", value if pooled else value[:, None])
        self.work.rename(self.path)
        return self.path
