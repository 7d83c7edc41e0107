"""The report of a demo run: real numbers from the run folder, images embedded, a GIF a README can hold."""

import json
import re

import numpy as np
import pytest
from conftest import TINY_RIDGE

from stream_decoder.display.report import (
    GIF_LIMIT_BYTES,
    MOVIE_FILE,
    TEACHER_LACKS,
    TEACHER_NOT_MEASURED,
    TEACHER_NOT_RUN,
    swap_rows,
    write_report,
)
from stream_decoder.display.run_record import RunRecord, load_summary

pytestmark = pytest.mark.usefixtures("one_torch_thread")


MASK = np.zeros((36, 64), bool)
MASK[6:30, 12:52] = True  # an evaluation mask as a distilled student records one


@pytest.fixture(scope="module")
def masked_baseline(tmp_path_factory, tiny_root):
    """The tiny mouse's baseline, fitted with an evaluation mask: a decoder whose frames mean something."""
    from stream_decoder.decoder.baseline import fit_baseline
    from stream_decoder.runtime.export import export_artifact

    out = tmp_path_factory.mktemp("masked-baseline")
    artifact = fit_baseline(tiny_root, out, TINY_RIDGE, MASK, progress=False)
    export_artifact(out)
    return artifact.path


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, tiny_root, masked_baseline):
    """A demo run on the tiny mouse, one clip at the rig's pace, with the masked baseline as the student
    and as the baseline (the demo would otherwise fit its own)."""
    from stream_decoder.display import demo

    out = tmp_path_factory.mktemp("demo-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo, "ensure_baseline", lambda *args, **kwargs: masked_baseline)
        demo.run_demo(demo.DemoConfig(artifact=masked_baseline, data=tiny_root, clips=1, out=out))
    return out


@pytest.fixture(scope="module")
def two_clip_run(tmp_path_factory, tiny_root, masked_baseline):
    """Like `demo_run`, two clips, replayed as fast as the daemon goes (a store can then lack one)."""
    from stream_decoder.display import demo

    out = tmp_path_factory.mktemp("two-clip-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo, "ensure_baseline", lambda *args, **kwargs: masked_baseline)
        demo.run_demo(demo.DemoConfig(artifact=masked_baseline, data=tiny_root, clips=2, speed=0, out=out))
    return out


def page_figures(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="figures">(.*?)</script>', page, re.S)
    return json.loads(found.group(1).replace("<\\/", "</"))


def test_the_demo_records_every_frame_where_it_belongs(demo_run, tiny_mouse):
    record = RunRecord.load(demo_run)
    trial = record.trials[0]
    video = tiny_mouse.clip(trial).video
    at = np.flatnonzero(record.located())
    assert len(at) > 200
    np.testing.assert_array_equal(record.truth[at], np.rint(video[record.frame[at]]).astype(np.uint8))
    np.testing.assert_array_equal(record.mask, MASK)
    assert record.recon.dtype == np.uint8 and (demo_run / "run.npz").stat().st_size < 1_000_000


def test_report_has_real_numbers_embedded_images_and_a_small_gif(demo_run):
    page = write_report(demo_run).read_text()
    assert page.count("data:image/png;base64,") == 3 and page.count("data:image/gif;base64,") == 1
    assert TEACHER_NOT_RUN in page
    figures = page_figures(page)
    (clip,) = figures["clips"]
    assert clip["frames"] > 200
    # The student streamed live is the baseline decoded offline here: the frames line up exactly.
    assert clip["student, live"] == pytest.approx(clip["baseline, offline"], abs=0.01)
    assert clip["student, live"] > 0.2 > clip["shuffled control, p95"]
    latency = figures["timing"]["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"]
    assert f"p50 {latency['p50']:.2f} ms, p99 {latency['p99']:.2f} ms" in page
    assert figures["frames_lost"] == 0 and figures["mask_pixels"] == MASK.sum()
    assert (demo_run / MOVIE_FILE).stat().st_size < GIF_LIMIT_BYTES


def test_a_teacher_store_given_is_a_row_of_the_movie_and_scored_on_the_same_frames(
    demo_run, tiny_mouse, tmp_path
):
    from stream_decoder.teacher.store import TeacherStore

    trial = RunRecord.load(demo_run).trials[0]
    store = TeacherStore(tmp_path / "teacher")
    store.begin({"made_by": "test"})
    (store.root / tiny_mouse.name).mkdir()
    store.save(tiny_mouse.name, trial, tiny_mouse.clip(trial).video, {})  # a perfect teacher
    page = write_report(demo_run, teacher=store.root).read_text()
    (clip,) = page_figures(page)["clips"]
    assert clip["teacher"] > 0.99  # only if its frames are those of the stimulus they stand beside
    assert TEACHER_NOT_RUN not in page
    assert (demo_run / MOVIE_FILE).stat().st_size < GIF_LIMIT_BYTES


def test_a_partial_teacher_store_shows_the_teacher_on_its_clips_and_names_the_others(
    two_clip_run, tiny_mouse, tmp_path
):
    from stream_decoder.teacher.store import TeacherStore

    lacking, held = RunRecord.load(two_clip_run).trials
    store = TeacherStore(tmp_path / "teacher")
    store.begin({"made_by": "test"})
    (store.root / tiny_mouse.name).mkdir()
    store.save(tiny_mouse.name, held, tiny_mouse.clip(held).video, {"seconds": 1234.5})  # a perfect teacher
    page = write_report(two_clip_run, teacher=store.root).read_text()
    figures = page_figures(page)
    first, second = figures["clips"]
    assert "teacher" not in first and second["teacher"] > 0.99
    assert figures["mean_over_clips"]["teacher"] == second["teacher"]  # over its own clip only
    same = figures["teacher_clips"]
    assert same["trials"] == [held]
    assert same["student, live"] == second["student, live"] != figures["mean_over_clips"]["student, live"]
    assert same["baseline, offline"] == second["baseline, offline"]
    assert f"{TEACHER_LACKS} {lacking}" in page and f"teacher (on clip(s) {held}" in page
    assert TEACHER_NOT_RUN not in page
    # The cost: the teacher's seconds as the store holds them, the student's from the daemon's latency.
    cost = figures["cost"]
    assert cost["teacher_s_per_clip"] == 1234.5 and "1234.5 s per clip" in page
    p50 = load_summary(two_clip_run)["daemon_latency_ms"]["p50"]
    assert cost["student_s_per_clip"] == pytest.approx(p50 / 1e3 * tiny_mouse.length(held))
    assert cost["teacher_over_student"] == pytest.approx(1234.5 / cost["student_s_per_clip"])
    assert (two_clip_run / MOVIE_FILE).stat().st_size < GIF_LIMIT_BYTES


def test_without_a_teacher_store_its_cost_is_not_measured(two_clip_run):
    page = write_report(two_clip_run).read_text()
    cost = page_figures(page)["cost"]
    assert cost["teacher_s_per_clip"] is None and cost["teacher_over_student"] is None
    assert cost["student_s_per_clip"] > 0 and TEACHER_NOT_MEASURED in page


def test_a_folder_without_a_run_is_one_line(tmp_path, capsys):
    from stream_decoder.cli import main

    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no summary.json there" in err


def test_a_run_with_a_live_swap_names_each_model_and_the_frame_it_took_over(tmp_path):
    frames = 5
    record = RunRecord(
        recon=np.zeros((frames, 2, 2), np.uint8),
        truth=np.zeros((frames, 2, 2), np.uint8),
        t_stim=np.arange(frames, dtype=np.float64),
        clip=np.zeros(frames, np.int32),
        frame=np.arange(frames, dtype=np.int32),
        latency_s=np.zeros(frames),
        arrival_s=np.zeros(frames),
        model=np.array(["aaa", "aaa", "bbb", "bbb", "bbb"]),
        trials=["1"],
        mask=None,
        daemon_stats={},
    )
    record.save(tmp_path)
    spans = RunRecord.load(tmp_path).model_spans()
    assert spans == [
        {"model": "aaa", "first_frame": 0, "frames": 2},
        {"model": "bbb", "first_frame": 2, "frames": 3},
    ]
    ((_, made, _),) = swap_rows(spans)
    assert made == "aaa from frame 0 (2 frames); bbb from frame 2 (3 frames)"
    assert swap_rows(spans[:1]) == []
