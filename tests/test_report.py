"""The report of a demo run: real numbers from the run folder, images embedded, a GIF a README can hold."""

import json
import re

import numpy as np
import pytest
from conftest import TINY_RIDGE

from stream_decoder.stream.report import GIF_LIMIT_BYTES, MOVIE_FILE, TEACHER_NOT_RUN, write_report
from stream_decoder.stream.run_record import RunRecord

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
    from stream_decoder.stream import demo

    out = tmp_path_factory.mktemp("demo-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo, "ensure_baseline", lambda *args, **kwargs: masked_baseline)
        demo.run_demo(demo.DemoConfig(artifact=masked_baseline, data=tiny_root, clips=1, out=out))
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
    assert clip["student, live"] == pytest.approx(clip["linear baseline, offline"], abs=0.01)
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


def test_a_folder_without_a_run_is_one_line(tmp_path, capsys):
    from stream_decoder.cli import main

    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no summary.json there" in err
