"""The Sensorium 2023 folder format: what we write is what the release holds, it reads back
exactly, and every broken file is an error that names it."""

import json
import shutil

import numpy as np
import pytest

from stream_decoder.data import CLIP_FRAMES, FRAME_SHAPE, MouseDataset, find_mice, open_mice, open_mouse
from stream_decoder.data.writer import MouseWriter

N_NEURONS = 7
PADDED = 40
TIERS = ["train", "train", "oracle", "oracle", "final_test_bonus"]
LENGTHS = [40, 40, 33, 33, 25]


def make_trials(seed=0):
    rng = np.random.default_rng(seed)
    repeated = rng.uniform(0, 255, (33, *FRAME_SHAPE)).astype(np.float32)
    trials = []
    for i, n in enumerate(LENGTHS):
        video = (
            repeated if TIERS[i] == "oracle" else rng.uniform(0, 255, (n, *FRAME_SHAPE)).astype(np.float32)
        )
        trials.append(
            {
                "video": video,
                "responses": rng.gamma(0.5, 2.0, (n, N_NEURONS)).astype(np.float32),
                "behavior": rng.normal(10, 3, (n, 2)).astype(np.float32),
                "pupil_center": rng.normal(150, 5, (n, 2)).astype(np.float32),
            }
        )
    return trials


def write_mouse(path, trials=None):
    trials = trials or make_trials()
    writer = MouseWriter(path, N_NEURONS, PADDED)
    for i, trial in enumerate(trials):
        writer.write_trial(i, **trial, in_statistics=TIERS[i] == "train")
    coordinates = np.column_stack([np.zeros((N_NEURONS, 2)), np.repeat([200.0, 240.0], [4, 3])])
    return writer.finish(TIERS, np.arange(100, 100 + N_NEURONS), coordinates, np.arange(len(trials)))


@pytest.fixture
def small(tmp_path):
    trials = make_trials()
    return write_mouse(tmp_path / "mouse", trials), trials


def test_round_trip_time_first_and_trimmed(small):
    path, trials = small
    mouse = MouseDataset(path)
    assert mouse.n_neurons == N_NEURONS and mouse.name == "mouse"
    assert mouse.trial_ids == ["0", "1", "2", "3", "4"]
    assert list(mouse.tiers) == TIERS
    assert mouse.trials("oracle") == ["2", "3"]
    assert mouse.trials(["train", "final_test_bonus"]) == ["0", "1", "4"]
    assert mouse.trials("live_test_main") == []  # a standard tier this mouse happens not to have
    for i, trial in enumerate(trials):
        assert mouse.length(i) == LENGTHS[i]
        clip = mouse.clip(str(i))
        assert clip.video.dtype == np.float32 and clip.video.shape == (LENGTHS[i], *FRAME_SHAPE)
        for key in ("video", "responses", "behavior", "pupil_center"):
            np.testing.assert_array_equal(getattr(clip, key), trial[key])
    np.testing.assert_array_equal(mouse.unit_ids, np.arange(100, 100 + N_NEURONS))
    assert mouse.repeats() == [["2", "3"]]


def test_disk_layout_is_the_releases(small):
    path, _ = small
    assert sorted(p.name for p in path.iterdir()) == ["data", "meta"]
    expected = {"videos": (*FRAME_SHAPE, PADDED), "responses": (N_NEURONS, PADDED), "behavior": (2, PADDED),
                "pupil_center": (2, PADDED)}  # fmt: skip
    for key, shape in expected.items():
        files = sorted((path / "data" / key).iterdir())
        assert [f.name for f in files] == [f"{i}.npy" for i in range(len(TIERS))]
        short = np.load(files[4])
        assert short.shape == shape and short.dtype == np.float32
        assert np.isnan(short[..., 25:]).all() and not np.isnan(short[..., :25]).any()
    assert np.load(path / "meta/trials/tiers.npy").dtype.kind == "U"
    assert np.load(path / "meta/neurons/cell_motor_coordinates.npy").shape == (N_NEURONS, 3)
    for kind in ("all", "stimulus_frame"):
        for name in ("min", "max", "mean", "median", "std"):
            assert np.load(path / f"meta/statistics/responses/{kind}/{name}.npy").shape == (N_NEURONS, 1)
            assert np.load(path / f"meta/statistics/behavior/{kind}/{name}.npy").shape == (2, 1)
            assert np.load(path / f"meta/statistics/videos/{kind}/{name}.npy").shape == (1,)


def test_statistics_cover_exactly_the_training_trials(small):
    path, trials = small
    mouse = MouseDataset(path)
    train = [t for t, tier in zip(trials, TIERS, strict=True) if tier == "train"]
    for var, key in [("responses", "responses"), ("behavior", "behavior"), ("pupil_center", "pupil_center")]:
        values = np.concatenate([t[key] for t in train])
        stats = mouse.statistics(var)
        np.testing.assert_allclose(stats["mean"], values.mean(0), rtol=1e-5)
        np.testing.assert_allclose(stats["std"], values.std(0), rtol=1e-4)
        np.testing.assert_allclose(stats["median"], np.median(values, 0), rtol=1e-6)
        np.testing.assert_array_equal(stats["min"], values.min(0))
        np.testing.assert_array_equal(stats["max"], values.max(0))
    pixels = np.concatenate([t["video"].ravel() for t in train])
    videos = mouse.statistics("videos", "stimulus_frame")
    assert videos["mean"].shape == () and videos["mean"] == pytest.approx(pixels.mean(), rel=1e-5)
    assert videos["median"] == pytest.approx(np.median(pixels), rel=1e-6)


def test_community_loader_access_patterns(small):
    """What neuralpredictors' MovieFileTreeDataset + NeuroNormalizer and DwiseNeuro's data code
    do with a folder, replayed with numpy: equal file counts, files named by index, statistics
    that broadcast against the on-disk (features, time) arrays, length from behavior[0]."""
    path, _ = small
    counts = {
        key: len(list((path / "data" / key).glob("*")))
        for key in ("videos", "responses", "behavior", "pupil_center")
    }
    assert len(set(counts.values())) == 1
    tiers = np.load(path / "meta/trials/tiers.npy")
    stats = {
        var: {name: np.load(path / f"meta/statistics/{var}/all/{name}.npy") for name in ("mean", "std")}
        for var in ("videos", "responses", "behavior", "pupil_center")
    }
    for item in np.flatnonzero(tiers == "train"):
        video = np.load(path / f"data/videos/{item}.npy")
        responses = np.load(path / f"data/responses/{item}.npy")
        behavior = np.load(path / f"data/behavior/{item}.npy")
        pupil = np.load(path / f"data/pupil_center/{item}.npy")
        assert ((video - stats["videos"]["mean"]) / stats["videos"]["std"]).shape == video.shape
        assert (responses * (1 / stats["responses"]["std"])).shape == responses.shape
        assert (behavior * (1 / stats["behavior"]["std"])).shape == behavior.shape
        assert ((pupil - stats["pupil_center"]["mean"]) / stats["pupil_center"]["std"]).shape == pupil.shape
        nan = np.flatnonzero(np.isnan(behavior[0]))
        assert (nan[0] if nan.size else behavior.shape[1]) == LENGTHS[item]


def test_fingerprint_is_stable_and_tracks_content(small, tmp_path):
    path, _ = small
    first = MouseDataset(path).fingerprint()
    assert len(first) == 16 and MouseDataset(path).fingerprint() == first
    copy = shutil.copytree(path, tmp_path / "elsewhere" / "renamed")
    assert MouseDataset(copy).fingerprint() == first
    np.save(copy / "meta/trials/tiers.npy", np.array(["train"] * 5))
    assert MouseDataset(copy).fingerprint() != first


def test_find_mice(small, tmp_path):
    path, trials = small
    second = write_mouse(tmp_path / "nested" / "another", trials)
    (tmp_path / "mouse.truth").mkdir()
    (tmp_path / "half.partial" / "data" / "videos").mkdir(parents=True)  # an interrupted write
    assert find_mice(tmp_path) == [path, second]
    assert find_mice(path) == [path]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "dynamic1-Video-x.zip").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"unzip these archives first: dynamic1-Video-x\.zip"):
        find_mice(empty)
    with pytest.raises(FileNotFoundError, match="no such dataset folder"):
        find_mice(tmp_path / "absent")


def test_open_mouse_by_name_index_or_first_from_a_root_or_the_folder(small, tmp_path):
    path, trials = small
    second = write_mouse(tmp_path / "nested" / "another", trials)
    assert open_mouse(tmp_path).path == path and open_mouse(path).path == path
    assert open_mouse(tmp_path, "another").path == second and open_mouse(tmp_path, 1).path == second
    assert {name: m.path for name, m in open_mice(tmp_path).items()} == {"mouse": path, "another": second}
    with pytest.raises(ValueError, match=r"no mouse 'other'; it holds mouse, another"):
        open_mouse(tmp_path, "other")
    with pytest.raises(ValueError, match=r"no mouse number 2; it holds 2: mouse, another"):
        open_mouse(tmp_path, 2)
    with pytest.raises(FileNotFoundError, match="no such dataset folder"):
        open_mouse(tmp_path / "absent")


@pytest.mark.parametrize(
    ("damage", "error", "match"),
    [
        ("delete data/responses/3.npy", FileNotFoundError, r"data/responses/3\.npy: missing; trial 3"),
        ("delete data/videos/3.npy", FileNotFoundError, r"data/videos/3\.npy: missing"),
        ("delete meta/trials/tiers.npy", FileNotFoundError, r"tiers\.npy: missing; expected one tier name"),
        ("delete meta/neurons/unit_ids.npy", FileNotFoundError, r"unit_ids\.npy: missing"),
        (
            "delete meta/statistics/responses/all/std.npy",
            FileNotFoundError,
            r"all/std\.npy: missing; expected the std",
        ),
        (
            "truncate data/videos/2.npy",
            ValueError,
            r"videos/2\.npy: not a readable \.npy file .*expected video",
        ),
        ("truncate meta/neurons/unit_ids.npy", ValueError, r"unit_ids\.npy: not a readable"),
        ("garbage data/behavior/2.npy", ValueError, r"behavior/2\.npy: not a readable"),
        (
            "reshape data/responses/2.npy",
            ValueError,
            r"responses/2\.npy: shape \(6, 40\), expected responses of shape \(7, 40\)",
        ),
        (
            "reshape data/pupil_center/2.npy",
            ValueError,
            r"pupil_center/2\.npy: shape \(6, 40\), expected pupil centre of shape \(2, 40\)",
        ),
        (
            "shorten data/behavior/2.npy",
            ValueError,
            r"behavior/2\.npy: shape \(2, 39\), expected behavior of shape \(2, 40\)",
        ),
        (
            "integers data/videos/2.npy",
            ValueError,
            r"videos/2\.npy: dtype int64, expected video as floating point",
        ),
        (
            "reshape meta/neurons/cell_motor_coordinates.npy",
            ValueError,
            r"cell_motor_coordinates\.npy: shape \(6, 40\)",
        ),
        (
            "reshape meta/statistics/responses/all/std.npy",
            ValueError,
            r"all/std\.npy: shape \(6, 40\).*expected 7 numbers",
        ),
        ("renumber data", ValueError, r"trial files must be numbered 0\.\.4"),
        ("extra tier", ValueError, r"tiers\.npy: 6 tiers, expected one per trial \(5 trials"),
    ],
)
def test_broken_files_are_named_errors(small, damage, error, match):
    path, _ = small
    verb, _, target = damage.partition(" ")
    file = path / target
    if verb == "delete":
        file.unlink()
    elif verb == "truncate":
        file.write_bytes(file.read_bytes()[:-17])
    elif verb == "garbage":
        file.write_bytes(b"not numpy at all")
    elif verb == "reshape":
        np.save(file, np.zeros((6, 40), np.float32))
    elif verb == "shorten":
        np.save(file, np.zeros((2, 39), np.float32))
    elif verb == "integers":
        np.save(file, np.zeros((*FRAME_SHAPE, 40), np.int64))
    elif verb == "renumber":
        for key in ("videos", "responses", "behavior", "pupil_center"):
            (file / key / "4.npy").rename(file / key / "7.npy")
    elif verb == "extra":
        np.save(path / "meta/trials/tiers.npy", np.array([*TIERS, "train"]))
    with pytest.raises(error, match=match):  # raised where the damage is met: opening, a clip, statistics
        mouse = MouseDataset(path)
        mouse.clip("2")
        mouse.statistics("responses")


def test_unknown_names_are_errors(small):
    path, _ = small
    mouse = MouseDataset(path)
    with pytest.raises(
        ValueError, match=r"no tier 'test'; tiers present: \['final_test_bonus', 'oracle', 'train'\]"
    ):
        mouse.trials("test")
    with pytest.raises(ValueError, match="no trial '9'"):
        mouse.clip(9)
    with pytest.raises(ValueError, match="unknown statistics variable 'images'"):
        mouse.statistics("images")
    with pytest.raises(ValueError, match="unknown statistics kind 'train'"):
        mouse.statistics("responses", "train")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        MouseDataset(path / "nope")


def test_writer_refuses_bad_input(tmp_path):
    writer = MouseWriter(tmp_path / "m", N_NEURONS, PADDED)
    trial = make_trials()[0]
    with pytest.raises(ValueError, match=r"trial 0 responses: shape \(40, 8\), expected \(40, 7\)"):
        writer.write_trial(0, **{**trial, "responses": np.zeros((40, 8))}, in_statistics=True)
    long = {key: np.concatenate([value, value]) for key, value in trial.items()}
    with pytest.raises(ValueError, match=r"trial 0: 80 frames, expected 1\.\.40"):
        writer.write_trial(0, **long, in_statistics=True)
    writer.write_trial(0, **trial, in_statistics=True)
    with pytest.raises(ValueError, match=r"trials written \[0\]\.\.\., expected 0\.\.1"):
        writer.finish(["train", "train"], np.arange(N_NEURONS), np.zeros((N_NEURONS, 3)))
    assert not (tmp_path / "m").exists() and (tmp_path / "m.partial").exists()
    write_mouse(tmp_path / "done")
    with pytest.raises(ValueError, match="already exists"):
        MouseWriter(tmp_path / "done", N_NEURONS, PADDED)


def test_tiny_mouse_reads_as_a_sensorium_mouse(tiny_mouse):
    assert tiny_mouse.n_neurons == 320  # not 300: (T, N) and (N, T) must not be confusable
    assert {"train", "oracle", "final_test_main", "live_test_bonus", "final_test_bonus"} <= set(
        tiny_mouse.tiers
    )
    lengths = [tiny_mouse.length(t) for t in tiny_mouse.trial_ids]
    assert max(lengths) == CLIP_FRAMES and min(lengths) < CLIP_FRAMES  # NaN-padded shorter trials
    clip = tiny_mouse.clip(tiny_mouse.trials("train")[0])
    assert clip.video.shape == (CLIP_FRAMES, *FRAME_SHAPE) and clip.responses.shape == (CLIP_FRAMES, 320)
    assert clip.video.min() >= 0 and clip.video.max() <= 255 and (clip.responses >= 0).all()
    assert sorted(p.name for p in tiny_mouse.path.iterdir()) == ["data", "meta"]  # truth lives beside it
    simulation = json.loads(
        (tiny_mouse.path.with_name(tiny_mouse.name + ".truth") / "simulation.json").read_text()
    )
    assert simulation["preset"] == "tiny"


def test_a_dataset_root_given_for_a_mouse_folder_says_so_and_names_its_mice(tiny_root, tiny_mouse):
    expected = f"{tiny_root}: a dataset root, not a mouse folder; it holds {tiny_mouse.name}: pass one"
    with pytest.raises(FileNotFoundError, match=expected):
        MouseDataset(tiny_root)
