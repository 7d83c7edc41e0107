"""bench/common.py: the options, held-out setup and result writing every bench script shares."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from stream_decoder.decoder.config import RidgeConfig
from stream_decoder.paths import cache_dir
from stream_decoder.provenance import source_version

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def common():
    spec = importlib.util.spec_from_file_location("bench_common", BENCH / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_results_record_the_source_and_relative_paths(common, tmp_path):
    out = common.write_result("x", {"store": str(cache_dir() / "teacher" / "t"), "n": 3}, tmp_path / "x.json")
    report = json.loads(out.read_text())
    assert report["store"] == "<cache>/teacher/t" and report["n"] == 3
    assert report["source"] == source_version()


def test_the_shared_options_are_required_or_defaulted_as_asked(common, tmp_path):
    parser = common.arguments("doc", "bench_x", data=common.REQUIRED, mask_from=Path("m"))
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --data is required
    args = parser.parse_args(["--data", "d"])
    assert (args.data, args.mask_from, args.out) == (Path("d"), Path("m"), common.RESULTS / "bench_x.json")
    assert common.picture_path(tmp_path / "r.json") == tmp_path / "r.png"
    bare = common.arguments("doc").parse_args([])
    assert not {"data", "mask_from", "out"} & set(vars(bare))  # only what a script asks for


def test_a_fit_on_some_neurons_reads_only_those_and_scores_every_group(common, tiny_root, baseline):
    mask, mouse, clips, groups, held_out = common.held_out_setup(tiny_root, baseline.path)
    half = np.arange(0, mouse.n_neurons, 2)
    assert common.Subset(clips, half)[0][0].shape[1] == len(half)
    cfg = RidgeConfig(components=16, lags=2, lag_step=2, lookahead=2, validation_clips=4)
    point = common.fit_and_score(clips, held_out, half, cfg, mask, groups)
    assert point["neurons"] == len(half) and point["components"] == 16
    scored = [g for g in common.GROUPS if groups.get(g)]
    assert scored and all(np.isfinite(point["groups"][g]) for g in scored)
    assert point["groups"]["oracle"] > 0.1  # a fit that decodes, not noise


def test_the_lab_movie_packs_overlapping_cells_whose_truth_the_front_end_recovers(monkeypatch):
    spec = importlib.util.spec_from_file_location("lab_movie", BENCH / "lab_movie.py")
    lab = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "lab_movie", lab)  # its dataclasses look their module up
    spec.loader.exec_module(lab)
    from stream_decoder.frontend import FrontEnd, FrontEndConfig, RoiSet
    from stream_decoder.frontend.extraction import ExtractionConfig
    from stream_decoder.frontend.motion import MotionConfig  # a 96 px field has a weaker peak
    from stream_decoder.metrics import pearson

    cfg = lab.LabMovieConfig(frame_shape=(96, 96), cells=40, frames=240, z_episode_s=(4.0, 5.0))
    movie = lab.lab_movie(cfg, seed=1)
    assert movie.frames.shape == (240, 96, 96) and movie.frames.dtype == np.uint16
    covered = np.asarray((movie.footprints > 0).sum(axis=0)).ravel()
    assert (covered > 1).any()  # dense: footprints overlap
    assert not movie.in_focus[135] and movie.in_focus[:120].all()  # the z episode, 4-5 s
    one = np.zeros((60, 1), np.float32)
    one[0] = 1
    single = lab.calcium(one, np.random.default_rng(0), lab.LabMovieConfig(cells=1, frames=60))
    assert 0.15 <= single.max() <= 0.35 and single[0] < single.max()  # one spike: a rise, its size
    rois = RoiSet.from_matrix(movie.footprints, np.zeros(cfg.cells, np.int64), cfg.frame_shape)
    front = FrontEnd(
        rois,
        1 / cfg.rate_hz,
        FrontEndConfig(MotionConfig(min_peak_sd=3.0), ExtractionConfig(dark_level=cfg.offset_adu)),
    )
    shifts = np.array([(o.dy, o.dx) for o in (front.step(0, image) for image in movie.frames[:100])])
    offset = np.median(shifts - movie.shift_px[:100], axis=0)  # its reference: the first frames' mean
    error = shifts - offset - movie.shift_px[:100]
    assert np.sqrt(np.mean(np.sum(error**2, axis=1))) < 0.3  # px rms, on a small dim field
    assert pearson(shifts[:, 0], movie.shift_px[:100, 0]) > 0.9


def test_the_spectrum_exponent_reads_a_power_law_and_the_participation_ratio_its_spread(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # bench_realism imports common as the scripts do
    spec = importlib.util.spec_from_file_location("bench_realism", BENCH / "bench_realism.py")
    realism = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_realism", realism)  # its dataclasses look their module up
    spec.loader.exec_module(realism)

    rng = np.random.default_rng(0)
    rank = np.arange(1, 1001)
    for alpha in (1.0, 2.0):  # independent columns of variance n^-alpha: eigenvalues fall as that
        x = rng.standard_normal((3000, 1000)) * rank ** (-alpha / 2)
        assert abs(realism.power_law_exponent(x) - alpha) < 0.1
        assert abs(realism.power_law_exponent(x[:, ::-1]) - alpha) < 0.1  # column order is moot
    wide = rng.standard_normal((600, 2000)) * np.arange(1, 2001) ** -0.5  # fewer frames than neurons
    assert abs(realism.power_law_exponent(wide) - 1.0) < 0.15
    assert abs(realism.participation_ratio(rng.standard_normal((3000, 20))) - 20) < 2  # 20 equal dims
    assert realism.participation_ratio(rng.standard_normal((3000, 20)) * rank[:20] ** -2.0) < 3
