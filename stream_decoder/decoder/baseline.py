"""`fit_baseline`: the linear baseline of one mouse, fitted on its training trials' true stimuli and
written as an artifact the daemon serves like a student (so it can run on the rig beside one)."""

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stream_decoder.data import MouseDataset, input_timing, open_mouse, student_inputs
from stream_decoder.decoder.artifact import Artifact, load_artifact, save_artifact
from stream_decoder.decoder.config import RidgeConfig
from stream_decoder.decoder.ridge import ClipArrays, fit_ridge, settings
from stream_decoder.paths import cache_dir

log = logging.getLogger(__name__)


class TrialClips(Sequence):
    """A mouse's trials as the daemon feeds them, read on demand (the fit passes over them thrice)."""

    def __init__(
        self,
        mouse: MouseDataset,
        trials: list[str],
        multi_plane: bool,
        planes: tuple[int, float] | None = None,
    ):
        self.mouse, self.trials = mouse, trials
        self.timing = input_timing(mouse, multi_plane, *(planes or (None, None)))

    def __len__(self) -> int:
        return len(self.trials)

    def __getitem__(self, index: int) -> ClipArrays:
        activity, behavior, pupil, video = student_inputs(self.mouse, self.trials[index], self.timing)
        return activity, np.concatenate([behavior, pupil], axis=1), video


def fit_baseline(
    data: Path,
    out: Path,
    cfg: RidgeConfig,
    mask: np.ndarray | None = None,
    mouse_name: str | None = None,
    tier: str = "train",
    multi_plane: bool = False,
    progress: bool = True,
    planes: tuple[int, float] | None = None,
) -> Artifact:
    """Fit on `tier` (its last cfg.validation_clips trials choose the penalty) and save the artifact.

    `mask` (H, W) bool, where the penalty is scored and the artifact records as its evaluation mask.
    `multi_plane`: in the rig's plane timing, the simulator truth's or, for a recording, `planes`
    (plane count, volume rate in Hz), its planes by cell depth.
    """
    mouse = open_mouse(data, mouse_name)
    trials = mouse.trials(tier)
    if not trials:
        raise ValueError(f"{mouse.path}: no trials in tier {tier!r} to fit the baseline on")
    clips = TrialClips(mouse, trials, multi_plane, planes)
    model, report = fit_ridge(clips, cfg, mask, progress=progress)
    provenance = {
        "baseline": report,
        "mouse": mouse.name,
        "train_trials": trials,
        "input_timing": {"n_planes": clips.timing.n_planes, "volume_rate_hz": clips.timing.volume_rate_hz},
        "evaluation_mask": None if mask is None else np.flatnonzero(mask).tolist(),
    }
    return save_artifact(
        out, model, mouse.unit_ids, mouse.fingerprint(), provenance, neuron_set=mouse.neuron_set()
    )


def ensure_baseline(
    data: Path,
    mask: np.ndarray | None,
    mouse_name: str | None = None,
    cfg: RidgeConfig | None = None,
    multi_plane: bool = False,
) -> Path:
    """The mouse's baseline in the cache (plain ridge by default, the gaze baseline with gaze gains;
    `multi_plane`: in the rig's own plane timing), fitted now unless one of the same data, settings,
    timing and mask is there already (a fit is 10-60 s for the demo mouse: worth keeping, not worth
    committing)."""
    cfg = cfg or RidgeConfig()
    mouse = open_mouse(data, mouse_name)
    timing = input_timing(mouse, multi_plane)
    kind = (
        f"{'gaze-' if any(cfg.gaze_gains) else ''}baseline{f'-{timing.n_planes}plane' if multi_plane else ''}"
    )
    out = cache_dir() / "artifacts" / f"{mouse.name}-{kind}"
    wanted = {
        "ridge": settings(cfg),
        "mask": None if mask is None else np.flatnonzero(mask).tolist(),
        "planes": timing.n_planes,
    }
    try:
        found = load_artifact(out)
        have = {
            "ridge": found.meta.provenance["baseline"]["ridge"],
            "mask": found.meta.provenance["evaluation_mask"],
            "planes": found.meta.provenance["input_timing"]["n_planes"],
        }
        if found.meta.data_fingerprint == mouse.fingerprint() and have == wanted:
            return out
    except (OSError, ValueError, KeyError):
        pass  # absent or not this fit: fit it
    log.info("fitting the linear baseline of %s into %s", mouse.name, out)
    return fit_baseline(data, out, cfg, mask, mouse.name, multi_plane=multi_plane).path
