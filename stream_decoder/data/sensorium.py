"""Read one mouse folder of the Sensorium 2023 release (or one we wrote) lazily and defensively.

Only this module knows the on-disk layout: `data/videos/<trial>.npy` (36, 64, T),
`data/responses/<trial>.npy` (N, T), `data/behavior/<trial>.npy` (2, T),
`data/pupil_center/<trial>.npy` (2, T), NaN-padded to the mouse's fixed T; `meta/neurons/`,
`meta/trials/tiers.npy`, `meta/statistics/<var>/<kind>/<stat>.npy`. Everything it hands out is
time first. A bad file is an error naming the file and what was expected, raised where it is met.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

FRAME_SHAPE = (36, 64)
FRAME_RATE_HZ = 30.0  # stimulus frames, resampled responses and behaviour share this grid
CLIP_FRAMES = 300
GRAY = 127.5  # the middle of the 0-255 video range: a blank frame, and what nothing decoded shows
BEHAVIOR_CHANNELS = 4  # behaviour then pupil centre, side by side: dilation, running speed, x, y
DATA_KEYS = ("videos", "responses", "behavior", "pupil_center")
RESPONSE_STD_FILE = "meta/statistics/responses/all/std.npy"
STATISTICS = ("min", "max", "mean", "median", "std")
STATISTICS_KINDS = ("all", "stimulus_frame")
TIERS = (
    "train",
    "oracle",
    "live_test_main",
    "live_test_bonus",
    "final_test_main",
    "final_test_bonus",
    "none",
)


def _describe(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("T" if n is None else str(n) for n in shape) + ")"


def load_npy(path: Path, shape: Sequence[int | None], what: str, *, floating: bool = False) -> np.ndarray:
    """Memory-map one .npy file and check it is what the format promises (None: any length)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; expected {what} of shape {_describe(shape)}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(
            f"{path}: not a readable .npy file ({exc}); expected {what} of shape {_describe(shape)}"
        ) from exc
    if array.ndim != len(shape) or any(
        n is not None and n != m for n, m in zip(shape, array.shape, strict=True)
    ):
        raise ValueError(f"{path}: shape {array.shape}, expected {what} of shape {_describe(shape)}")
    if floating and not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{path}: dtype {array.dtype}, expected {what} as floating point")
    return array


def first_nan(trace: np.ndarray) -> int:
    """Length of a NaN-padded trace: the index of its first NaN."""
    nans = np.flatnonzero(np.isnan(trace))
    return int(nans[0]) if nans.size else len(trace)


@dataclass(frozen=True, eq=False)
class Clip:
    """One trial, time first, trimmed at its first NaN frame.

    The whole valid trial is kept: real trials can run past CLIP_FRAMES (only the first 300
    frames count), so consumers crop. `responses` can be NaN where a release withholds them
    (the competition's test tiers).
    """

    trial: str
    video: np.ndarray  # (T, 36, 64) float32, 0-255
    responses: np.ndarray  # (T, N) float32, deconvolved activity
    behavior: np.ndarray  # (T, 2) float32: pupil dilation, running speed
    pupil_center: np.ndarray  # (T, 2) float32: x, y

    @property
    def n_frames(self) -> int:
        return len(self.video)


class MouseDataset:
    """One Sensorium mouse folder: the trial list and metadata up front, trial arrays on demand."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: not a folder; expected a Sensorium mouse folder")
        if not is_mouse_folder(self.path) and (inside := self._mice_inside()):
            raise FileNotFoundError(
                f"{self.path}: a dataset root, not a mouse folder; it holds {', '.join(inside)}: "
                "pass one of those (or open the root with open_mouse)"
            )
        self.unit_ids = self._meta("neurons/unit_ids.npy", (None,), "one id per neuron")
        self.n_neurons = len(self.unit_ids)
        self.cell_motor_coordinates = self._meta(
            "neurons/cell_motor_coordinates.npy", (self.n_neurons, 3), "(x, y, z) microns"
        )
        tiers = self._meta("trials/tiers.npy", (None,), "one tier name per trial")
        self.trial_ids = self._list_trials()
        if len(tiers) != len(self.trial_ids):
            raise ValueError(
                f"{self.path / 'meta/trials/tiers.npy'}: {len(tiers)} tiers, expected one per trial "
                f"({len(self.trial_ids)} trials in {self.path / 'data/videos'})"
            )
        self.tiers = tiers.astype(str)
        self._index = {trial: i for i, trial in enumerate(self.trial_ids)}

    @property
    def name(self) -> str:
        return self.path.name

    def __repr__(self) -> str:
        return f"MouseDataset({self.name!r}, neurons={self.n_neurons}, trials={len(self.trial_ids)})"

    def _mice_inside(self) -> list[str]:
        try:
            return [str(mouse.relative_to(self.path)) for mouse in find_mice(self.path)]
        except FileNotFoundError:
            return []

    def _meta(self, relative: str, shape: Sequence[int | None], what: str) -> np.ndarray:
        return np.array(load_npy(self.path / "meta" / relative, shape, what))  # small: read, not mapped

    def _list_trials(self) -> list[str]:
        """Trials are files 0.npy .. n-1.npy in every data folder: tiers.npy indexes them by number."""
        found = {}
        for key in DATA_KEYS:
            folder = self.path / "data" / key
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: missing folder; expected one <trial>.npy per trial")
            found[key] = {p.stem for p in folder.glob("*.npy")}
        videos = found["videos"]
        if not videos:
            raise FileNotFoundError(f"{self.path / 'data/videos'}: no <trial>.npy files")
        for key in DATA_KEYS[1:]:
            unmatched = sorted(videos ^ found[key])
            if unmatched:
                trial = unmatched[0]
                missing = "videos" if trial in found[key] else key
                raise FileNotFoundError(
                    f"{self.path / 'data' / missing / (trial + '.npy')}: missing; trial {trial} has files "
                    f"in the other data folders"
                )
        if videos != {str(i) for i in range(len(videos))}:
            raise ValueError(
                f"{self.path / 'data/videos'}: trial files must be numbered 0..{len(videos) - 1} "
                f"(tiers.npy indexes them), found {sorted(videos)[:5]}..."
            )
        return [str(i) for i in range(len(videos))]

    def trials(self, tier: str | Sequence[str] | None = None) -> list[str]:
        """Trial ids in numeric order, optionally only those of one or several tiers."""
        if tier is None:
            return list(self.trial_ids)
        wanted = [tier] if isinstance(tier, str) else list(tier)
        present = set(self.tiers.tolist())
        unknown = [t for t in wanted if t not in present and t not in TIERS]
        if unknown:
            raise ValueError(f"{self.path}: no tier {unknown[0]!r}; tiers present: {sorted(present)}")
        keep = np.isin(self.tiers, wanted)
        return [trial for trial, k in zip(self.trial_ids, keep, strict=True) if k]

    def _trial_file(self, key: str, trial: str | int) -> Path:
        trial = str(trial)
        if trial not in self._index:
            raise ValueError(f"{self.path}: no trial {trial!r} (trials 0..{len(self.trial_ids) - 1})")
        return self.path / "data" / key / f"{trial}.npy"

    def _raw(self, trial: str | int) -> dict[str, np.ndarray]:
        """The trial's four arrays, memory-mapped in the on-disk layout, checked against each other."""
        video = load_npy(self._trial_file("videos", trial), (*FRAME_SHAPE, None), "video", floating=True)
        padded = video.shape[-1]
        return {
            "videos": video,
            "responses": load_npy(
                self._trial_file("responses", trial), (self.n_neurons, padded), "responses", floating=True
            ),
            "behavior": load_npy(self._trial_file("behavior", trial), (2, padded), "behavior", floating=True),
            "pupil_center": load_npy(
                self._trial_file("pupil_center", trial), (2, padded), "pupil centre", floating=True
            ),
        }

    @staticmethod
    def _valid_frames(raw: dict[str, np.ndarray]) -> int:
        # Responses do not count: a release may withhold them (all NaN) for its test tiers.
        return min(
            first_nan(raw["videos"][0, 0]),
            first_nan(raw["behavior"][0]),
            first_nan(raw["pupil_center"][0]),
        )

    def length(self, trial: str | int) -> int:
        """Number of valid frames: the first NaN of the stimulus or behaviour ends the trial."""
        return self._valid_frames(self._raw(trial))

    def clip(self, trial: str | int) -> Clip:
        raw = self._raw(trial)
        n = self._valid_frames(raw)

        def time_first(array: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
            return np.ascontiguousarray(np.transpose(array[..., :n], order), dtype=np.float32)

        return Clip(
            trial=str(trial),
            video=time_first(raw["videos"], (2, 0, 1)),
            responses=time_first(raw["responses"], (1, 0)),
            behavior=time_first(raw["behavior"], (1, 0)),
            pupil_center=time_first(raw["pupil_center"], (1, 0)),
        )

    def statistics(self, var: str, kind: str = "all") -> dict[str, np.ndarray]:
        """min, max, mean, median, std of one variable: (N,) for responses, (2,) for behaviour and
        pupil centre, a 0-d array for videos (one number over all pixels)."""
        if var not in DATA_KEYS:
            raise ValueError(f"unknown statistics variable {var!r}; expected one of {DATA_KEYS}")
        if kind not in STATISTICS_KINDS:
            raise ValueError(f"unknown statistics kind {kind!r}; expected one of {STATISTICS_KINDS}")
        features = {"videos": 1, "responses": self.n_neurons, "behavior": 2, "pupil_center": 2}[var]
        stats = {}
        for name in STATISTICS:
            path = self.path / "meta/statistics" / var / kind / f"{name}.npy"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; expected the {name} of {var} ({features} values)")
            try:
                values = np.load(path, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise ValueError(f"{path}: not a readable .npy file ({exc})") from exc
            if values.size != features or not np.issubdtype(values.dtype, np.number):
                raise ValueError(
                    f"{path}: shape {values.shape} dtype {values.dtype}, expected {features} numbers "
                    f"(the {name} of {var})"
                )
            values = values.astype(np.float32).reshape(-1)
            stats[name] = values.reshape(()) if var == "videos" else values
        return stats

    def repeats(self, tier: str | Sequence[str] | None = None) -> list[list[str]]:
        """Groups of two or more trials that show the same video (repeats), found by content."""
        groups: dict[str, list[str]] = {}
        for trial in self.trials(tier):
            raw = self._raw(trial)
            frames = np.ascontiguousarray(raw["videos"][..., : self._valid_frames(raw)], dtype=np.float32)
            groups.setdefault(hashlib.sha1(frames.tobytes()).hexdigest(), []).append(trial)
        return [group for group in groups.values() if len(group) > 1]

    @cached_property
    def _fingerprint(self) -> str:
        first = self._raw(self.trial_ids[0])
        std = self.path / RESPONSE_STD_FILE
        return data_fingerprint(
            self.unit_ids,
            self.cell_motor_coordinates,
            self.trial_ids,
            self.tiers,
            [first[key].shape for key in DATA_KEYS],
            std.read_bytes() if std.is_file() else None,
        )

    def fingerprint(self) -> str:
        """Short stable id of this data (neurons, trials and tiers, shapes, response scale), not of
        where it lives: models record it so a mismatch with the data in use is caught."""
        return self._fingerprint

    def neuron_set(self) -> str:
        """The identity of the recorded neurons in model order (`neuron_set_id`): what a served
        model and the data streamed into it must share, whatever the trials."""
        return neuron_set_id(self.unit_ids, self.cell_motor_coordinates)


def data_fingerprint(unit_ids, cell_motor_coordinates, trial_ids, tiers, shapes, response_std: bytes | None):
    """16 hex digits of SHA-256 over what identifies a dataset: its neurons, its trials and their
    tiers, the first trial's array shapes (on disk, `DATA_KEYS` order) and the bytes of its
    `RESPONSE_STD_FILE` (the response scale), where it has one."""
    digest = hashlib.sha256(b"sensorium-mouse-v1")
    digest.update(np.ascontiguousarray(unit_ids).tobytes())
    digest.update(np.ascontiguousarray(cell_motor_coordinates, dtype=np.float64).tobytes())
    digest.update("\n".join(f"{t}:{tier}" for t, tier in zip(trial_ids, tiers, strict=True)).encode())
    digest.update(str([tuple(shape) for shape in shapes]).encode())
    if response_std is not None:
        digest.update(response_std)
    return digest.hexdigest()[:16]


def neuron_set_id(unit_ids, cell_motor_coordinates) -> str:
    """16 hex digits of SHA-256 over b"neuron-set-v1", the unit ids (little-endian int64) and the
    cell coordinates ((N, 3) microns, little-endian float32, C order): which neurons, in which
    order, where. Unit ids alone repeat across scans (1..N); positions do not. A rig computes
    the same from its own cell table (docs/protocol.md §5.3)."""
    ids = np.asarray(unit_ids).reshape(-1).astype("<i8")
    xyz = np.asarray(cell_motor_coordinates).astype("<f4")
    if xyz.shape != (len(ids), 3):
        raise ValueError(f"cell coordinates of shape {xyz.shape} for {len(ids)} unit ids, expected (N, 3)")
    digest = hashlib.sha256(b"neuron-set-v1")
    digest.update(np.ascontiguousarray(ids).tobytes())
    digest.update(np.ascontiguousarray(xyz).tobytes())
    return digest.hexdigest()[:16]


def is_mouse_folder(path: Path) -> bool:
    return (path / "data" / "videos").is_dir() and (path / "meta" / "trials").is_dir()


def find_mice(root: str | Path) -> list[Path]:
    """Mouse folders under a dataset root, sorted by name; a mouse folder itself is its own root."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder")
    if is_mouse_folder(root):
        return [root]
    mice = sorted(p.parent.parent for p in root.rglob("data/videos") if is_mouse_folder(p.parent.parent))
    if not mice:
        archives = sorted(p.name for p in root.glob("*.zip"))
        hint = f"; unzip these archives first: {', '.join(archives)}" if archives else ""
        raise FileNotFoundError(f"{root}: no Sensorium mouse folder (with data/videos and meta/trials){hint}")
    return mice


def open_mouse(root: str | Path, name: str | int | None = None) -> MouseDataset:
    """One mouse of a dataset root (or a mouse folder itself): by folder name, by index in `find_mice`'s
    order, or the first when `name` is None. An unknown name or index is an error listing the mice there."""
    folders = find_mice(root)
    names = [folder.name for folder in folders]
    if name is None:
        return MouseDataset(folders[0])
    if isinstance(name, int):
        if not 0 <= name < len(folders):
            raise ValueError(f"{root}: no mouse number {name}; it holds {len(folders)}: {', '.join(names)}")
        return MouseDataset(folders[name])
    if name not in names:
        raise ValueError(f"{root}: no mouse {name!r}; it holds {', '.join(names)}")
    return MouseDataset(folders[names.index(name)])


def open_mice(root: str | Path) -> dict[str, MouseDataset]:
    """Every mouse of a dataset root, by name (the name its readout is stored under)."""
    return {folder.name: MouseDataset(folder) for folder in find_mice(root)}
