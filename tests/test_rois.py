"""ROIs: the RoiSet's checks, and each source a lab has (.npz, suite2p folders, NWB) read from files
the tests write the way those tools do."""

import datetime
import pathlib
import pickle
import sys

import numpy as np
import pytest

from stream_decoder.cli import USER_ERRORS
from stream_decoder.frontend.roi_sources import (
    NWB_MISSING,
    MissingDependency,
    load_npz,
    load_nwb,
    load_rois,
    load_suite2p,
    save_npz,
)
from stream_decoder.frontend.rois import RoiSet

LY, LX = 20, 30  # not square, so a transposed image would show

# Three ROIs as suite2p's stat has them: (ypix, xpix, lam).
CELLS = [
    (np.array([1, 1, 2]), np.array([4, 5, 4]), np.array([0.5, 1.0, 0.25], np.float32)),
    (np.array([10, 11]), np.array([25, 29]), np.array([2.0, 3.0], np.float32)),
    (np.array([19]), np.array([0]), np.array([0.75], np.float32)),
]


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def flat(ypix, xpix, width=LX):
    return ypix * width + xpix


def roi_list(rois: RoiSet):
    """[(plane, neuron, pixels, weights)] of every ROI, for comparing whole sets."""
    return [
        (int(rois.plane[r]), int(rois.neuron[r]), *(a.tolist() for a in rois.roi_pixels(r)))
        for r in range(rois.n_rois)
    ]


# RoiSet


def test_a_pixel_outside_the_image_is_refused():
    with pytest.raises(ValueError, match=r"pixel indices must lie in 0\.\.599"):
        RoiSet.from_lists((LY, LX), [np.array([0, LY * LX])], [np.ones(2, np.float32)])


def test_two_rois_on_one_neuron_are_refused():
    with pytest.raises(ValueError, match="two ROIs feed the same model neuron"):
        RoiSet.from_lists((LY, LX), [np.array([0]), np.array([1])], [np.ones(1)] * 2, neuron=np.array([3, 3]))


# .npz


def two_plane_set() -> RoiSet:
    return RoiSet.from_lists(
        (LY, LX),
        [np.array([0, 1, 599]), np.array([], np.int64), np.array([31])],
        [np.array([0.5, 1.0, 2.0]), np.array([]), np.array([4.0])],
        plane=np.array([1, 0, 1]),
        neuron=np.array([2, -1, 0]),
        n_planes=3,
    )


def test_npz_round_trip_keeps_every_field(tmp_path):
    rois = two_plane_set()
    save_npz(rois, tmp_path / "rois.npz")
    for back in (load_npz(tmp_path / "rois.npz"), load_rois(tmp_path / "rois.npz")):
        assert back.frame_shape == (LY, LX) and back.n_planes == 3
        for name in ("plane", "offsets", "pixel", "weight", "neuron"):
            np.testing.assert_array_equal(getattr(back, name), getattr(rois, name))


def npz_arrays(rois: RoiSet) -> dict:
    return {
        "frame_shape": np.array(rois.frame_shape),
        "n_planes": np.array(rois.n_planes),
        **{name: getattr(rois, name) for name in ("plane", "offsets", "pixel", "weight")},
    }


def test_npz_without_neuron_feeds_roi_r_to_neuron_r(tmp_path):
    np.savez(tmp_path / "rois.npz", **npz_arrays(two_plane_set()))
    np.testing.assert_array_equal(load_npz(tmp_path / "rois.npz").neuron, [0, 1, 2])


@pytest.mark.parametrize("key", ["frame_shape", "n_planes", "plane", "offsets", "pixel", "weight"])
def test_npz_missing_key_is_one_line_naming_the_file_the_key_and_the_layout(tmp_path, key):
    arrays = npz_arrays(two_plane_set())
    del arrays[key]
    np.savez(tmp_path / "rois.npz", **arrays)
    with pytest.raises(ValueError) as exc:
        load_npz(tmp_path / "rois.npz")
    message = one_line(exc)
    assert str(tmp_path / "rois.npz") in message and f"key '{key}' is missing" in message
    assert "offsets (R+1,) int" in message and "pixel (nnz,) int y*W+x" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("offsets", np.array([0, 3, 3])),  # R + 1 = 4 expected
        ("pixel", np.array([0.0, 1.0, 599.0, 31.0])),  # float indices would be truncated silently
        ("weight", np.ones(3, np.float32)),  # one weight short
        ("frame_shape", np.array([LY, LX, 1])),
        ("neuron", np.array([0, 1])),
    ],
)
def test_npz_wrong_shape_or_dtype_is_one_line_naming_the_key(tmp_path, key, value):
    np.savez(tmp_path / "rois.npz", **{**npz_arrays(two_plane_set()), key: value})
    with pytest.raises(ValueError) as exc:
        load_npz(tmp_path / "rois.npz")
    message = one_line(exc)
    assert str(tmp_path / "rois.npz") in message and f"key '{key}' has shape {value.shape}" in message


def test_npz_with_pickled_objects_is_refused_not_unpickled(tmp_path):
    np.savez(tmp_path / "rois.npz", **{**npz_arrays(two_plane_set()), "plane": np.array([{}, {}, {}])})
    with pytest.raises(ValueError, match=r"not a readable \.npz of plain arrays") as exc:
        load_npz(tmp_path / "rois.npz")
    assert str(tmp_path / "rois.npz") in one_line(exc)


def test_npz_with_bad_rois_names_the_file(tmp_path):
    np.savez(tmp_path / "rois.npz", **{**npz_arrays(two_plane_set()), "neuron": np.array([1, 1, 0])})
    with pytest.raises(ValueError, match=r"rois\.npz: ROIs: two ROIs feed the same model neuron"):
        load_npz(tmp_path / "rois.npz")


# suite2p


def write_plane(folder, cells=CELLS, iscell=None, iplane=None, size=None):
    """A suite2p plane folder: stat.npy (object array of dicts), iscell.npy, and the size files
    `size` maps to their dicts (default: ops.npy with Ly, Lx, as suite2p before 1.0 writes)."""
    folder.mkdir(parents=True)
    stat = [
        {"ypix": y, "xpix": x, "lam": lam, "med": [int(np.median(y)), int(np.median(x))], "npix": y.size}
        | ({} if iplane is None else {"iplane": iplane})
        for y, x, lam in cells
    ]
    np.save(folder / "stat.npy", np.array(stat, dtype=object), allow_pickle=True)
    if iscell is not None:
        np.save(folder / "iscell.npy", np.column_stack([iscell, np.linspace(0.1, 0.9, len(iscell))]))
    for name, value in ({"ops.npy": {"Ly": LY, "Lx": LX}} if size is None else size).items():
        np.save(folder / name, value, allow_pickle=True)
    return folder


def test_suite2p_plane_folder_keeps_cells_and_numbers_them_in_order(tmp_path):
    folder = write_plane(tmp_path / "suite2p" / "plane0", iscell=[1.0, 0.0, 1.0], iplane=0)
    for rois in (load_suite2p(folder), load_rois(folder)):
        assert rois.frame_shape == (LY, LX) and rois.n_planes == 1
        (y0, x0, lam0), _, (y2, x2, lam2) = CELLS
        assert roi_list(rois) == [
            (0, 0, flat(y0, x0).tolist(), lam0.tolist()),
            (0, 1, flat(y2, x2).tolist(), lam2.tolist()),
        ]


def test_suite2p_without_iscell_keeps_every_roi(tmp_path):
    rois = load_suite2p(write_plane(tmp_path / "plane0"))
    assert rois.n_rois == 3
    np.testing.assert_array_equal(rois.neuron, [0, 1, 2])


def test_suite2p_lone_plane_folder_takes_its_plane_from_iplane(tmp_path):
    rois = load_suite2p(write_plane(tmp_path / "plane2", iplane=2))
    assert rois.n_planes == 3
    np.testing.assert_array_equal(rois.plane, [2, 2, 2])


def test_suite2p_parent_folder_gives_one_plane_per_plane_folder(tmp_path):
    write_plane(tmp_path / "plane0", cells=CELLS[:2], iscell=[0.0, 1.0], iplane=0)
    write_plane(tmp_path / "plane1", cells=CELLS[1:], iscell=[1.0, 1.0], iplane=0)
    (tmp_path / "combined").mkdir()  # suite2p's mosaic of the planes is not a plane
    for rois in (load_suite2p(tmp_path), load_rois(tmp_path)):
        assert rois.n_planes == 2
        (_, _, _), (y1, x1, lam1), (y2, x2, lam2) = CELLS
        assert roi_list(rois) == [
            (0, 0, flat(y1, x1).tolist(), lam1.tolist()),
            (1, 1, flat(y1, x1).tolist(), lam1.tolist()),
            (1, 2, flat(y2, x2).tolist(), lam2.tolist()),
        ]


@pytest.mark.parametrize(
    "size",
    [
        # suite2p 1.x: pipeline settings in settings.npy, the image size in the plane's db.npy
        {"settings.npy": {"registration": {"nimg_init": 300}}, "db.npy": {"Ly": LY, "Lx": LX, "nplanes": 1}},
        {"settings.npy": {"Ly": LY, "Lx": LX}},
        {"settings.npy": {"registration": {}}, "reg_outputs.npy": {"Ly": LY, "Lx": LX, "yoff": [0]}},
    ],
    ids=["db", "settings", "reg_outputs"],
)
def test_suite2p_newer_folders_give_the_image_size(tmp_path, size):
    rois = load_suite2p(write_plane(tmp_path / "plane0", size=size))
    assert rois.frame_shape == (LY, LX)
    np.testing.assert_array_equal(rois.roi_pixels(1)[0], flat(*CELLS[1][:2]))


def save_npy_pickled_with_protocol_0(path, value):
    """np.save of an object array, but its pickle in text form, so a test can rename a class in it."""
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, {"descr": "|O", "fortran_order": False, "shape": ()})
        data = pickle.dumps(np.array(value, dtype=object), protocol=0)
        file.write(data.replace(b"pathlib\nPureWindowsPath\n", b"pathlib\nWindowsPath\n"))


def test_suite2p_db_written_on_windows_reads_elsewhere(tmp_path):
    folder = write_plane(tmp_path / "plane0", size={})
    db = {"Ly": LY, "Lx": LX, "data_path": [pathlib.PureWindowsPath("D:/mouse1/tiffs")]}
    save_npy_pickled_with_protocol_0(folder / "db.npy", db)
    if sys.platform != "win32":  # what a plain np.load does with it here
        with pytest.raises(Exception, match="WindowsPath"):
            np.load(folder / "db.npy", allow_pickle=True)
    assert load_suite2p(folder).frame_shape == (LY, LX)


def test_suite2p_without_an_image_size_is_one_line(tmp_path):
    folder = write_plane(tmp_path / "plane0", size={"settings.npy": {"registration": {}}})
    with pytest.raises(ValueError) as exc:
        load_suite2p(folder)
    message = one_line(exc)
    assert str(folder) in message and "no image size (Ly, Lx)" in message and "db.npy" in message


def test_suite2p_roi_outside_the_image_is_refused_not_wrapped_to_the_next_row(tmp_path):
    cells = [
        (np.array([1]), np.array([LX]), np.array([1.0], np.float32))
    ]  # x == Lx: flat index still < Ly*Lx
    folder = write_plane(tmp_path / "plane0", cells=cells)
    with pytest.raises(ValueError, match=r"stat\.npy: an ROI reaches outside the 20 x 30 image"):
        load_suite2p(folder)


def test_suite2p_iscell_of_another_length_is_refused(tmp_path):
    folder = write_plane(tmp_path / "plane0", iscell=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"iscell\.npy: 2 rows for the 3 ROIs of stat\.npy"):
        load_suite2p(folder)


def test_suite2p_combined_folder_is_refused(tmp_path):
    folder = write_plane(tmp_path / "combined", iplane=1)
    with pytest.raises(ValueError, match="combined folder tiles the planes"):
        load_suite2p(folder)


def test_suite2p_planes_of_different_sizes_are_refused(tmp_path):
    write_plane(tmp_path / "plane0")
    write_plane(tmp_path / "plane1", size={"ops.npy": {"Ly": LY, "Lx": LX + 2}})
    with pytest.raises(ValueError, match="the planes differ in image size"):
        load_suite2p(tmp_path)


# NWB


def new_nwb():
    """An NWB file with one imaging plane and an 'ophys' module holding an ImageSegmentation."""
    from pynwb import NWBFile
    from pynwb.ophys import ImageSegmentation, OpticalChannel

    nwbfile = NWBFile(
        session_description="rois", identifier="test", session_start_time=datetime.datetime.now().astimezone()
    )
    channel = OpticalChannel(name="green", description="GCaMP", emission_lambda=510.0)
    plane = nwbfile.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=channel,
        imaging_rate=30.0,
        description="L2/3",
        device=nwbfile.create_device(name="scope"),
        excitation_lambda=920.0,
        indicator="GCaMP6s",
        location="V1",
    )
    segmentation = ImageSegmentation()
    nwbfile.create_processing_module(name="ophys", description="ophys").add(segmentation)
    return nwbfile, plane, segmentation


def add_series(nwbfile, plane, name="TwoPhotonSeries"):
    from pynwb.ophys import TwoPhotonSeries

    series = TwoPhotonSeries(
        name=name, data=np.zeros((2, LY, LX), np.uint16), unit="a.u.", imaging_plane=plane, rate=30.0
    )
    nwbfile.add_acquisition(series)
    return series


def write_nwb(nwbfile, path):
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def add_pixel_masks(segmentation, name, plane, cells=CELLS, iscell=None, reference=None):
    """A PlaneSegmentation as suite2p writes one: pixel_mask rows (x, y, weight) with x = ypix."""
    table = segmentation.create_plane_segmentation(
        name=name, description="masks", imaging_plane=plane, reference_images=reference
    )
    for y, x, lam in cells:
        table.add_roi(pixel_mask=[(int(a), int(b), float(w)) for a, b, w in zip(y, x, lam, strict=True)])
    if iscell is not None:
        table.add_column("iscell", "two columns - iscell & probcell", np.column_stack([iscell, iscell]))
    return table


def test_nwb_pixel_masks_land_at_their_flat_indices(tmp_path):
    nwbfile, plane, segmentation = new_nwb()
    add_pixel_masks(segmentation, "PlaneSegmentation", plane, reference=add_series(nwbfile, plane))
    path = write_nwb(nwbfile, tmp_path / "ophys.nwb")
    for rois in (load_nwb(path), load_rois(path)):
        assert rois.frame_shape == (LY, LX) and rois.n_planes == 1
        assert roi_list(rois) == [
            (0, k, flat(y, x).tolist(), lam.tolist()) for k, (y, x, lam) in enumerate(CELLS)
        ]


def test_nwb_image_masks_and_pixel_masks_of_the_same_rois_agree(tmp_path):
    nwbfile, plane, segmentation = new_nwb()
    add_pixel_masks(segmentation, "pixels", plane)
    images = segmentation.create_plane_segmentation(name="images", description="masks", imaging_plane=plane)
    for y, x, lam in CELLS:
        mask = np.zeros((LY, LX), np.float32)
        mask[y, x] = lam  # NWB's image_mask[x, y], x being the first axis
        images.add_roi(image_mask=mask)
    path = write_nwb(nwbfile, tmp_path / "ophys.nwb")
    from_images = load_nwb(path, plane_segmentation="images")
    assert from_images.frame_shape == (LY, LX)  # from the image masks; the file has no TwoPhotonSeries
    assert roi_list(from_images) == roi_list(
        load_nwb(path, plane_segmentation="pixels", frame_shape=(LY, LX))
    )


def test_nwb_from_suite2p_reads_as_its_folder_does(tmp_path):
    """As suite2p exports NWB: pixel masks (ypix, xpix, lam), an iscell column, dimension [Ly, Lx]."""
    from pynwb.ophys import TwoPhotonSeries

    iscell = [1.0, 0.0, 1.0]
    nwbfile, plane, segmentation = new_nwb()
    series = TwoPhotonSeries(
        name="TwoPhotonSeries",
        dimension=[LY, LX],
        external_file=["scan.tif"],
        imaging_plane=plane,
        starting_frame=[0],
        format="external",
        timestamps=[
            0.0,
            1 / 30,
        ],  # not rate, which pynwb 4 takes only with num_samples, older pynwb not at all
    )
    nwbfile.add_acquisition(series)
    add_pixel_masks(segmentation, "PlaneSegmentation", plane, iscell=iscell, reference=series)
    from_nwb = load_nwb(write_nwb(nwbfile, tmp_path / "ophys.nwb"))
    from_folder = load_suite2p(write_plane(tmp_path / "plane0", iscell=iscell))
    assert from_nwb.frame_shape == from_folder.frame_shape == (LY, LX)
    assert roi_list(from_nwb) == roi_list(from_folder) and from_nwb.n_rois == 2


def test_nwb_plane_segmentations_are_planes_in_name_order_unless_one_is_named(tmp_path):
    nwbfile, plane, segmentation = new_nwb()
    add_series(nwbfile, plane)
    add_pixel_masks(segmentation, "plane_b", plane, cells=CELLS[2:])
    add_pixel_masks(segmentation, "plane_a", plane, cells=CELLS[:2])
    path = write_nwb(nwbfile, tmp_path / "ophys.nwb")
    rois = load_nwb(path)
    assert rois.n_planes == 2
    np.testing.assert_array_equal(rois.plane, [0, 0, 1])
    np.testing.assert_array_equal(rois.neuron, [0, 1, 2])
    np.testing.assert_array_equal(rois.roi_pixels(2)[0], flat(*CELLS[2][:2]))
    only_b = load_nwb(path, plane_segmentation="plane_b")
    assert only_b.n_planes == 1 and only_b.n_rois == 1
    np.testing.assert_array_equal(only_b.roi_pixels(0)[0], flat(*CELLS[2][:2]))
    with pytest.raises(ValueError, match=r"no PlaneSegmentation 'plane_c' \(there are: plane_a, plane_b\)"):
        load_nwb(path, plane_segmentation="plane_c")


def test_nwb_without_an_image_size_needs_the_frame_shape(tmp_path):
    nwbfile, plane, segmentation = new_nwb()
    add_pixel_masks(segmentation, "PlaneSegmentation", plane)
    path = write_nwb(nwbfile, tmp_path / "ophys.nwb")
    with pytest.raises(ValueError) as exc:
        load_rois(path)
    assert "says no image size" in one_line(exc) and "give the frame shape (H, W)" in one_line(exc)
    assert load_rois(path, frame_shape=(LY, LX)).frame_shape == (LY, LX)


def test_nwb_frame_shape_must_agree_with_the_file(tmp_path):
    nwbfile, plane, segmentation = new_nwb()
    add_pixel_masks(segmentation, "PlaneSegmentation", plane, reference=add_series(nwbfile, plane))
    with pytest.raises(ValueError, match=r"drawn on \(20, 30\) images, but the frames are \(30, 20\)"):
        load_rois(write_nwb(nwbfile, tmp_path / "ophys.nwb"), frame_shape=(LX, LY))


def test_nwb_pixel_outside_the_image_is_refused(tmp_path):
    nwbfile, plane, segmentation = new_nwb()
    cells = [(np.array([0]), np.array([LX]), np.array([1.0]))]
    add_pixel_masks(
        segmentation, "PlaneSegmentation", plane, cells=cells, reference=add_series(nwbfile, plane)
    )
    with pytest.raises(ValueError, match="a pixel mask of 'PlaneSegmentation' reaches outside 20 x 30"):
        load_nwb(write_nwb(nwbfile, tmp_path / "ophys.nwb"))


def test_nwb_without_pynwb_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynwb", None)  # `import pynwb` now fails as if it were not installed
    with pytest.raises(MissingDependency) as exc:
        load_nwb(tmp_path / "ophys.nwb")
    assert one_line(exc) == NWB_MISSING == "reading NWB ROIs needs pynwb: pip install 'stream-decoder[nwb]'"
    assert isinstance(exc.value, ImportError) and isinstance(exc.value, USER_ERRORS)


def test_a_file_that_is_not_nwb_is_one_line(tmp_path):
    (tmp_path / "ophys.nwb").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable NWB file") as exc:
        load_rois(tmp_path / "ophys.nwb")
    assert str(tmp_path / "ophys.nwb") in one_line(exc)


# dispatch


@pytest.mark.parametrize("make", ["missing", "text file", "empty folder"])
def test_anything_else_is_one_line_listing_the_three_sources(tmp_path, make):
    path = tmp_path / ("rois.txt" if make != "empty folder" else "outputs")
    if make == "text file":
        path.write_text("1 2 3")
    elif make == "empty folder":
        path.mkdir()
    with pytest.raises(ValueError) as exc:
        load_rois(path)
    message = one_line(exc)
    assert message.startswith(str(path)) and ("does not exist" in message) == (make == "missing")
    assert all(source in message for source in (".npz", "NWB file (.nwb)", "suite2p output folder"))


def test_frame_shape_must_agree_with_an_npz_or_suite2p_source(tmp_path):
    save_npz(two_plane_set(), tmp_path / "rois.npz")
    write_plane(tmp_path / "plane0")
    for path in (tmp_path / "rois.npz", tmp_path / "plane0"):
        assert load_rois(path, frame_shape=(LY, LX)).frame_shape == (LY, LX)
        with pytest.raises(
            ValueError, match=r"ROIs drawn on \(20, 30\) images, but the frames are \(512, 512\)"
        ):
            load_rois(path, frame_shape=(512, 512))
