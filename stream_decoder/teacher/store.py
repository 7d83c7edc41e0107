"""On-disk store of teacher reconstructions: what the distillation reads.

    STORE/manifest.json        settings, models, data fingerprints; a resumed run must match it
    STORE/<mouse>/alpha.npy    the mouse's population receptive-field mask (alpha values)
    STORE/<mouse>/<trial>.npz  `video` (T, H, W) float16 in 0-255, and the clip's metrics

Every file is written to a temporary name and renamed, so an interrupted run leaves only whole
files, and a resumed run skips the clips already there.
"""

import json
import os
from pathlib import Path

import numpy as np

from stream_decoder.atomic import write_atomic, write_atomic_with

MANIFEST = "manifest.json"


class TeacherStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def manifest(self) -> dict:
        if not self.manifest_path.exists():
            raise FileNotFoundError(f"{self.manifest_path}: not a teacher store (no {MANIFEST})")
        return json.loads(self.manifest_path.read_text())

    def begin(self, manifest: dict) -> None:
        """Start or resume a run: the settings of a resumed run must be those it was started with
        (paths compared as the places they name, so a store written with absolute ones resumes)."""
        if self.manifest_path.exists():
            old, new = self._places(self.manifest()), self._places(manifest)
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if changed:
                raise ValueError(
                    f"{self.manifest_path}: this store was made with other {', '.join(changed)}; "
                    "use a new --out folder (or delete this one) to reconstruct with these settings"
                )
            return
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.manifest_path, json.dumps(manifest, indent=2))

    def _places(self, manifest: dict) -> dict:
        """`manifest` with its paths (relative to the store, or absolute) made absolute."""

        def place(path: str) -> str:
            return str((self.root / path).resolve())  # an absolute path stays itself

        warm = manifest.get("warm_start")
        models = [place(p) for p in manifest.get("models", [])]
        return {**manifest, "models": models, "warm_start": place(warm) if warm else None}

    def clip_path(self, mouse: str, trial: str) -> Path:
        return self.root / mouse / f"{trial}.npz"

    def has(self, mouse: str, trial: str) -> bool:
        return self.clip_path(mouse, trial).exists()

    def trials(self, mouse: str) -> list[str]:
        return sorted((p.stem for p in (self.root / mouse).glob("*.npz")), key=_trial_key)

    def save(self, mouse: str, trial: str, video: np.ndarray, metrics: dict[str, float]) -> None:
        arrays = {"video": video.astype(np.float16)}
        arrays |= {f"metric_{k}": np.float64(v) for k, v in metrics.items()}
        write_atomic_with(self.clip_path(mouse, trial), lambda f: np.savez_compressed(f, **arrays))

    def load(self, mouse: str, trial: str) -> np.ndarray:
        """The reconstruction, (T, H, W) float32 in 0-255."""
        with np.load(self._existing(mouse, trial)) as npz:
            return npz["video"].astype(np.float32)

    def metrics(self, mouse: str, trial: str) -> dict[str, float]:
        with np.load(self._existing(mouse, trial)) as npz:
            return {k.removeprefix("metric_"): float(npz[k]) for k in npz.files if k.startswith("metric_")}

    def summary(self) -> dict[str, dict[str, float]]:
        """Per mouse: the number of clips and the mean of each metric over them."""
        result = {}
        for mouse in self.manifest()["fingerprints"]:
            rows = [self.metrics(mouse, trial) for trial in self.trials(mouse)]
            means = {k: float(np.nanmean([r[k] for r in rows])) for k in (rows[0] if rows else {})}
            result[mouse] = {"clips": len(rows), **means}
        return result

    def save_alpha(self, mouse: str, alpha: np.ndarray) -> None:
        write_atomic_with(self.root / mouse / "alpha.npy", lambda f: np.save(f, alpha.astype(np.float32)))

    def alpha(self, mouse: str) -> np.ndarray | None:
        path = self.root / mouse / "alpha.npy"
        return np.load(path) if path.exists() else None

    def _existing(self, mouse: str, trial: str) -> Path:
        path = self.clip_path(mouse, trial)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no teacher reconstruction of trial {trial} of {mouse}")
        return path


def _trial_key(trial: str):
    return (0, int(trial), "") if trial.isdigit() else (1, 0, trial)


def relative_to_store(path: str | Path, root: Path) -> str:
    """`path` as the store at `root` records it: relative to the store."""
    return os.path.relpath(Path(path).resolve(), Path(root).resolve())
