"""bench/common.py: the options, held-out setup and result writing every bench script shares."""

import importlib.util
import json
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
