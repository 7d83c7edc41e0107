"""ROIs from what labs have: the project's own .npz, a suite2p output folder, or an NWB file.

Every loader returns a `RoiSet` whose ROI order is the model's neuron order unless the file says
otherwise (only the .npz can), and turns any problem with a file into one line naming the file.
"""

from __future__ import annotations

import pathlib
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np

from stream_decoder.atomic import write_atomic_with
from stream_decoder.errors import UserError
from stream_decoder.frontend.rois import RoiSet

NPZ_LAYOUT = (
    "frame_shape (2,) int (H, W), n_planes () int, plane (R,) int, offsets (R+1,) int, "
    "pixel (nnz,) int y*W+x, weight (nnz,) float, optional neuron (R,) int (default: ROI r feeds neuron r)"
)
SOURCES = (
    "an ROI .npz file, an NWB file (.nwb), or a suite2p output folder (stat.npy, or plane0/, plane1/, ...)"
)
# Where a suite2p plane folder keeps its image size Ly, Lx: ops.npy before 1.0, db.npy from 1.0 on
# (settings.npy holds the pipeline's settings; the outputs files are tried last).
SUITE2P_SIZE_FILES = ("ops.npy", "db.npy", "settings.npy", "reg_outputs.npy", "detect_outputs.npy")
PLANE_FOLDER = re.compile(r"plane(\d+)")
NWB_MISSING = "reading NWB ROIs needs pynwb: pip install 'stream-decoder[nwb]'"


class MissingDependency(ImportError, UserError):
    """An optional dependency is not installed (a UserError too, so the CLI reports it in one line)."""


def save_npz(rois: RoiSet, path: str | Path) -> None:
    """Write `rois` in the documented .npz layout (`NPZ_LAYOUT`), atomically."""
    arrays = {
        "frame_shape": np.asarray(rois.frame_shape, np.int64),
        "n_planes": np.int64(rois.n_planes),
        "plane": rois.plane,
        "offsets": rois.offsets,
        "pixel": rois.pixel,
        "weight": rois.weight,
        "neuron": rois.neuron,
    }
    write_atomic_with(path, lambda file: np.savez(file, **arrays))


def load_npz(path: str | Path) -> RoiSet:
    """Read an ROI .npz (`NPZ_LAYOUT`); plain arrays only, nothing pickled is loaded."""
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("one array, not an archive of them")
        with archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz of plain arrays ({_one_line(exc)})") from None

    def take(key: str, shape: tuple[int, ...] | None, integer: bool = True) -> np.ndarray:
        if key not in arrays:
            raise ValueError(f"{path}: key '{key}' is missing; an ROI .npz holds {NPZ_LAYOUT}")
        value = arrays[key]
        kind = np.integer if integer else np.number
        if (value.ndim != 1 if shape is None else value.shape != shape) or not _is(value, kind):
            raise ValueError(
                f"{path}: key '{key}' has shape {value.shape} and dtype {value.dtype}; "
                f"an ROI .npz holds {NPZ_LAYOUT}"
            )
        return value

    frame_shape = take("frame_shape", (2,))
    n_planes = take("n_planes", ())
    plane = take("plane", None)
    offsets = take("offsets", (plane.size + 1,))
    pixel = take("pixel", None)
    weight = take("weight", pixel.shape, integer=False)
    neuron = take("neuron", plane.shape) if "neuron" in arrays else np.arange(plane.size)
    return _roi_set(path, RoiSet, tuple(frame_shape), int(n_planes), plane, offsets, pixel, weight, neuron)


def load_suite2p(folder: str | Path) -> RoiSet:
    """ROIs from a suite2p output folder: one plane folder (stat.npy, iscell.npy, ops.npy or db.npy and
    settings.npy), or the folder holding plane0/, plane1/, ..., each its plane (the number in its name).

    Only cells are kept (iscell.npy's first column 1; every ROI when a folder has no iscell.npy), and
    the k-th kept cell, plane 0 first then in stat.npy's order, feeds model neuron k. An ROI's pixels
    are stat's ypix * Lx + xpix with weights lam; in a lone plane folder its plane is stat's iplane
    (0 when absent). A 'combined' folder is refused: its ROIs sit on a mosaic of the planes.

    stat.npy and the size files are pickled Python objects, and unpickling can run any code the file
    holds, so they are read only here, from the folder the user names; never point this at a folder
    from a source you do not trust.
    """
    folder = Path(folder)
    if folder.name == "combined":
        raise ValueError(
            f"{folder}: suite2p's combined folder tiles the planes; give the folder holding plane0/, ..."
        )
    planes = [(None, folder)] if (folder / "stat.npy").is_file() else _plane_folders(folder)
    if not planes:
        raise ValueError(
            f"{folder}: no suite2p output here (neither stat.npy nor plane0/, plane1/, ... folders)"
        )
    pixels, weights, plane_of, shapes = [], [], [], {}
    for index, plane_folder in planes:
        height, width = shapes[plane_folder.name] = _suite2p_frame_shape(plane_folder)
        stat_path = plane_folder / "stat.npy"
        stat = _unpickle_npy(stat_path)
        if not isinstance(stat, np.ndarray) or stat.ndim != 1:
            raise ValueError(f"{stat_path}: not suite2p's stat.npy (a list of one dict per ROI)")
        for roi, kept in zip(stat, _suite2p_cells(plane_folder, stat.size), strict=True):
            if not kept:
                continue
            if not isinstance(roi, dict) or not {"ypix", "xpix", "lam"} <= roi.keys():
                raise ValueError(f"{stat_path}: an ROI without ypix, xpix and lam; not suite2p's stat.npy")
            y, x, lam = (np.asarray(roi[key]).ravel() for key in ("ypix", "xpix", "lam"))
            if not y.size == x.size == lam.size:
                raise ValueError(f"{stat_path}: an ROI's ypix, xpix and lam differ in length")
            if y.size and (y.min() < 0 or y.max() >= height or x.min() < 0 or x.max() >= width):
                raise ValueError(
                    f"{stat_path}: an ROI reaches outside the {height} x {width} image (Ly x Lx)"
                )
            pixels.append(y.astype(np.int64) * width + x)
            weights.append(lam)
            plane_of.append(int(roi.get("iplane", 0)) if index is None else index)
    if len(set(shapes.values())) > 1:
        sizes = ", ".join(f"{name} {h} x {w}" for name, (h, w) in shapes.items())
        raise ValueError(f"{folder}: the planes differ in image size ({sizes}); frames have one size")
    frame_shape = next(iter(shapes.values()))
    return _roi_set(folder, RoiSet.from_lists, frame_shape, pixels, weights, np.array(plane_of, np.int64))


def load_nwb(
    path: str | Path, plane_segmentation: str | None = None, frame_shape: tuple[int, int] | None = None
) -> RoiSet:
    """ROIs from the PlaneSegmentations of an NWB file's ImageSegmentation (in any processing module,
    usually 'ophys'): each a plane, in name order, or only `plane_segmentation`, as plane 0.

    Masks are `pixel_mask` (x, y, weight), else `image_mask` (nonzero pixels, their values the
    weights). NWB names an image's first axis x (`image_mask[x, y]`, TwoPhotonSeries data (t, x, y),
    suite2p writes x = ypix), so x is a frame's row: the flat pixel is x * W + y. The image size comes
    from the image masks, else from the plane's TwoPhotonSeries, else `frame_shape` (H, W); given
    too, it must agree. A suite2p 'iscell' column keeps only cells, as `load_suite2p` does; the k-th
    ROI kept feeds model neuron k.
    """
    try:
        from pynwb import NWBHDF5IO
        from pynwb.ophys import ImageSegmentation
    except ImportError:
        raise MissingDependency(NWB_MISSING) from None
    path = Path(path)
    try:
        io = NWBHDF5IO(str(path), "r")
    except Exception as exc:  # h5py and hdmf raise many kinds on a file that is not NWB
        raise ValueError(f"{path}: not a readable NWB file ({_one_line(exc)})") from None
    with io:
        try:
            nwbfile = io.read()
        except Exception as exc:
            raise ValueError(f"{path}: not a readable NWB file ({_one_line(exc)})") from None
        found = {}
        for module in nwbfile.processing.values():
            for interface in module.data_interfaces.values():
                if isinstance(interface, ImageSegmentation):
                    for segmentation in interface.plane_segmentations.values():
                        if found.setdefault(segmentation.name, segmentation) is not segmentation:
                            raise ValueError(
                                f"{path}: two PlaneSegmentations are named '{segmentation.name}'"
                            )
        if plane_segmentation is not None and plane_segmentation not in found:
            names = ", ".join(sorted(found)) or "none"
            raise ValueError(f"{path}: no PlaneSegmentation '{plane_segmentation}' (there are: {names})")
        if not found:
            raise ValueError(
                f"{path}: no PlaneSegmentation in any ImageSegmentation of its processing modules"
            )
        chosen = [plane_segmentation] if plane_segmentation is not None else sorted(found)
        pixels, weights, plane_of, shapes = [], [], [], set()
        for plane, name in enumerate(chosen):
            shape = _nwb_frame_shape(path, found[name], nwbfile, frame_shape)
            shapes.add(shape)
            for pixel, weight in _nwb_masks(path, found[name], shape):
                pixels.append(pixel)
                weights.append(weight)
                plane_of.append(plane)
    if len(shapes) > 1:
        raise ValueError(
            f"{path}: the PlaneSegmentations differ in image size ({sorted(shapes)}); frames have one"
        )
    return _roi_set(
        path, RoiSet.from_lists, shapes.pop(), pixels, weights, np.array(plane_of), n_planes=len(chosen)
    )


def load_rois(path: str | Path, frame_shape: tuple[int, int] | None = None) -> RoiSet:
    """ROIs from `path`, whichever of the three sources it is. `frame_shape` (H, W), the rig's image
    size, is where an NWB file does not say its own; given, every source must agree with it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".nwb":
        return load_nwb(path, frame_shape=frame_shape)
    if path.is_file() and suffix == ".npz":
        rois = load_npz(path)
    elif path.is_dir() and ((path / "stat.npy").is_file() or _plane_folders(path)):
        rois = load_suite2p(path)
    else:
        what = "does not exist" if not path.exists() else "is no ROI source"
        raise ValueError(f"{path} {what}; ROIs come from {SOURCES}")
    if frame_shape is not None and tuple(frame_shape) != rois.frame_shape:
        raise ValueError(
            f"{path}: ROIs drawn on {rois.frame_shape} images, but the frames are {tuple(frame_shape)}"
        )
    return rois


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _is(value: np.ndarray, kind: type) -> bool:
    return np.issubdtype(value.dtype, kind) and not np.issubdtype(value.dtype, np.complexfloating)


def _roi_set(source: Path, build, *args, **kwargs) -> RoiSet:
    """`build(*args, **kwargs)`, with RoiSet's complaints naming the file they came from."""
    try:
        return build(*args, **kwargs)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def _plane_folders(folder: Path) -> list[tuple[int, Path]]:
    """(plane index, folder) of suite2p's plane<N> folders in `folder`, in plane order."""
    if not folder.is_dir():
        return []
    found = ((PLANE_FOLDER.fullmatch(entry.name), entry) for entry in folder.iterdir() if entry.is_dir())
    return sorted((int(match[1]), entry) for match, entry in found if match)


class _PortableUnpickler(pickle.Unpickler):
    """Reads the pathlib paths suite2p pickles (db.npy) on any system, as pure paths: a WindowsPath
    cannot be made on Linux, nor a PosixPath on Windows."""

    def find_class(self, module: str, name: str):
        if module.startswith("pathlib") and name in ("PosixPath", "WindowsPath"):
            return getattr(pathlib, "Pure" + name)
        return super().find_class(module, name)


def _unpickle_npy(path: Path):
    """A .npy that may hold pickled objects (suite2p's); see `load_suite2p` for why only from there."""
    try:
        with path.open("rb") as file:
            version = np.lib.format.read_magic(file)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else None
            _, _, dtype = (read_header or np.lib.format.read_array_header_2_0)(file)
            if dtype.hasobject:  # np.save pickles an object array whole
                return _PortableUnpickler(file).load()
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # unpickling can raise anything
        raise ValueError(f"{path}: cannot read it ({type(exc).__name__}: {_one_line(exc)})") from None


def _suite2p_frame_shape(folder: Path) -> tuple[int, int]:
    """(Ly, Lx) from the first of `SUITE2P_SIZE_FILES` in `folder` that holds both."""
    for name in SUITE2P_SIZE_FILES:
        if (folder / name).is_file():
            value = _unpickle_npy(folder / name)
            value = value.item() if isinstance(value, np.ndarray) and value.shape == () else value
            if isinstance(value, dict) and "Ly" in value and "Lx" in value:
                return int(value["Ly"]), int(value["Lx"])
    raise ValueError(f"{folder}: no image size (Ly, Lx) in any of {', '.join(SUITE2P_SIZE_FILES)}")


def _suite2p_cells(folder: Path, n_rois: int) -> np.ndarray:
    """Which ROIs of stat.npy are cells: iscell.npy's first column is 1; all when there is none."""
    path = folder / "iscell.npy"
    if not path.is_file():
        return np.ones(n_rois, bool)
    iscell = _unpickle_npy(path)
    column = iscell[:, 0] if iscell.ndim == 2 else iscell
    if column.shape != (n_rois,):
        raise ValueError(
            f"{path}: {iscell.shape[0] if iscell.ndim else 0} rows for the {n_rois} ROIs of stat.npy"
        )
    return column == 1


def _nwb_frame_shape(path: Path, segmentation, nwbfile, frame_shape) -> tuple[int, int]:
    """The image size of a PlaneSegmentation: its image masks', else its TwoPhotonSeries', else
    `frame_shape`; `frame_shape` must agree with what the file says."""
    if "image_mask" in segmentation.colnames:
        masks = segmentation["image_mask"].data
        if len(masks.shape) != 3:
            raise ValueError(
                f"{path}: '{segmentation.name}' has {len(masks.shape) - 1}-D image masks; 2-D only"
            )
        said = tuple(int(v) for v in masks.shape[1:])
    else:
        said = _series_shape(segmentation, nwbfile)
    if said is None and frame_shape is None:
        raise ValueError(
            f"{path}: '{segmentation.name}' says no image size (no image_mask, no TwoPhotonSeries of its "
            "plane with a dimension or data); give the frame shape (H, W)"
        )
    if said is not None and frame_shape is not None and tuple(frame_shape) != said:
        raise ValueError(
            f"{path}: '{segmentation.name}' is drawn on {said} images, but the frames are {frame_shape}"
        )
    return said or (int(frame_shape[0]), int(frame_shape[1]))


def _series_shape(segmentation, nwbfile) -> tuple[int, int] | None:
    """(x, y) size of the TwoPhotonSeries the segmentation refers to, or of one on its imaging plane."""
    from pynwb.ophys import TwoPhotonSeries

    candidates = [*(segmentation.reference_images or ()), *nwbfile.acquisition.values()]
    for series in candidates:
        if not isinstance(series, TwoPhotonSeries) or series.imaging_plane is not segmentation.imaging_plane:
            continue
        if series.dimension is not None and len(series.dimension) >= 2:
            return int(series.dimension[0]), int(series.dimension[1])
        if series.data is not None and len(np.shape(series.data)) >= 3:
            return tuple(int(v) for v in np.shape(series.data)[1:3])
    return None


def _nwb_masks(path: Path, segmentation, shape: tuple[int, int]):
    """(flat pixels, weights) of each ROI of a PlaneSegmentation that is a cell."""
    height, width = shape
    columns = segmentation.colnames
    if "iscell" in columns:
        iscell = np.asarray(segmentation["iscell"].data[:])
        keep = (iscell[:, 0] if iscell.ndim == 2 else iscell) == 1
        if keep.shape != (len(segmentation),):
            raise ValueError(f"{path}: '{segmentation.name}' has an iscell column of shape {iscell.shape}")
    else:
        keep = np.ones(len(segmentation), bool)
    if "pixel_mask" in columns:
        column = segmentation["pixel_mask"]
        ends = np.asarray(column.data[:], np.int64)
        table = np.asarray(column.target.data[:])
        x, y, weight = (table[name] for name in table.dtype.names[:3]) if table.dtype.names else table.T[:3]
        x, y = x.astype(np.int64), y.astype(np.int64)
        if x.size and (x.min() < 0 or x.max() >= height or y.min() < 0 or y.max() >= width):
            raise ValueError(
                f"{path}: a pixel mask of '{segmentation.name}' reaches outside {height} x {width}"
            )
        for r, (start, end) in enumerate(zip(np.concatenate([[0], ends[:-1]]), ends, strict=True)):
            if keep[r]:
                yield x[start:end] * width + y[start:end], weight[start:end]
    elif "image_mask" in columns:
        masks = segmentation["image_mask"].data
        for r in np.flatnonzero(keep):
            mask = np.asarray(masks[r]).ravel()
            pixel = np.flatnonzero(mask)
            yield pixel, mask[pixel]
    else:
        raise ValueError(
            f"{path}: '{segmentation.name}' has neither pixel_mask nor image_mask ROIs (2-D only)"
        )
