"""Replay -> serve -> view: the rig simulator's schedule, the viewer's outputs, and offline == online."""

import json
import threading

import imageio.v3 as iio
import numpy as np
import pytest

from stream_decoder.data import PlaneTiming, held_responses
from stream_decoder.data.planes import frame_of
from stream_decoder.runtime import open_backend
from stream_decoder.stream.config import EndpointsConfig
from stream_decoder.stream.replay import ReplayOptions, ReplayPlan, Rig, plane_timing, replay
from stream_decoder.stream.viewer import MovieSink

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_plan_sends_each_plane_at_its_acquisition_times(tiny_mouse):
    n = tiny_mouse.n_neurons
    trials = tiny_mouse.trials("oracle")[:2]
    plane = (np.arange(n) % 3 == 0).astype(int)  # plane 1 holds every third neuron: runs of one
    timing = PlaneTiming(2, 10.0, plane, np.array([0.0, 0.05]))
    plan = ReplayPlan(tiny_mouse, trials, timing, gap_s=1.0)
    messages = list(plan.messages())
    clip = tiny_mouse.clip(trials[0])
    assert plan.starts[1] == pytest.approx(clip.n_frames / 30 + 1.0)
    first_volume = [m for m in messages if m.clip == 0 and m.time < 0.1]
    assert [(m.plane, m.time) for m in first_volume[:2]] == [(0, 0.0), (0, 0.0)]  # plane 0: runs of two
    plane1 = [m for m in first_volume if m.plane == 1]
    assert len(plane1) == len(range(0, n, 3)) and {m.time for m in plane1} == {0.05}
    assert sorted(m.first for m in plane1) == list(range(0, n, 3))
    for m in plane1[:5]:
        np.testing.assert_array_equal(m.values, clip.responses[frame_of(0.05), m.first : m.first + 1])
    covered = np.zeros(n, int)
    for m in first_volume:
        covered[m.first : m.first + m.values.size] += 1
    assert (covered == 1).all()  # every neuron exactly once per volume
    assert plan.locate(plan.starts[1] + 2 / 30) == (1, 2) and plan.locate(-1.0) is None
    assert plan.locate(clip.n_frames / 30 + 0.5) is None  # in the gap between clips


def test_replay_drops_and_restarts_like_a_rig(tiny_mouse, stream_endpoints):
    import zmq

    from stream_decoder.stream.protocol import decode_activity

    plan = ReplayPlan(tiny_mouse, tiny_mouse.trials("oracle")[:1], plane_timing(tiny_mouse, 1, None, False))
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.subscribe(b"activity")
    with Rig(stream_endpoints["activity"], session="s") as rig:
        sub.connect(stream_endpoints["activity"])
        assert rig.wait_for_subscriber(5.0)
        options = ReplayOptions(speed=0, drop=0.1, restart_after=200, t0=7.0, dtype="float16")
        report = replay(plan, rig, options, progress=False)
        received = []
        while sub.poll(1000):
            received.append(decode_activity(sub.recv_multipart(), tiny_mouse.n_neurons))
    sub.close(linger=0)
    assert report.sent + report.dropped == 300 and 10 < report.dropped < 60 and report.restarts == 1
    assert len(received) == report.sent
    before = [m for m in received if m.session == "s"]
    after = [m for m in received if m.session == "s-restart"]
    assert len(before) + len(after) == len(received) and max(m.seq for m in before) < 200
    assert min(m.seq for m in after) < 10
    assert all(m.t == pytest.approx(7.0 + (m.seq + 200) / 30) for m in after)
    assert {m.values.dtype.name for m in received} == {"float16"} and all(m.behavior for m in received)


def stream_through(d, plan, n_expected, out_dir):
    """replay -> the running daemon -> watch (the viewer's loop), returning the frames it showed."""
    sink = MovieSink(out_dir, keep=n_expected)
    figures = d.play(plan, ReplayOptions(speed=0, t0=1000.0), sink, n_expected)
    assert figures.received == n_expected and d.display.lost == 0 and figures.seq_newest_gaps == 0
    return sink


@pytest.mark.parametrize("timing_kind", ["single-plane", "rig-timing"])
def test_offline_and_streamed_decoding_give_the_same_frames(
    timing_kind, start_daemon, untrained_artifact, tiny_mouse, tmp_path
):
    trial = tiny_mouse.trials("oracle")[0]
    clip = tiny_mouse.clip(trial)
    timing = plane_timing(tiny_mouse, 1, None, rig_timing=timing_kind == "rig-timing")
    plan = ReplayPlan(tiny_mouse, [trial], timing)
    held = held_responses(clip.responses, timing)
    behavior = np.concatenate([clip.behavior, clip.pupil_center], axis=1)
    n_streamed = clip.n_frames
    if timing.n_planes > 1:
        # Behaviour comes with each message: at tick k it is that of the newest message at or before k.
        times = np.sort(np.concatenate([timing.acquisition_times(p, clip.n_frames) for p in range(3)]))
        newest = np.searchsorted(times, np.arange(clip.n_frames) / 30 + 1e-6, side="right") - 1
        behavior = behavior[frame_of(times[newest])]
        n_streamed = int(frame_of(times[-1]))  # a tick goes out when a later one's message arrives
    backend = open_backend(untrained_artifact, "torch")
    offline = np.stack([backend.step(a, b).copy() for a, b in zip(held, behavior, strict=True)])

    d = start_daemon()
    sink = stream_through(d, plan, n_streamed, tmp_path / "view")
    streamed = np.stack([recon for recon, _, _ in sink.frames])
    np.testing.assert_allclose(streamed, offline[:n_streamed], atol=1e-4)  # torch backend, same numbers

    lookahead = d.control.request("info")["lookahead"]
    truths = [truth for _, truth, _ in sink.frames]
    assert all(t is None for t in truths[:lookahead])  # the stimulus before the clip started
    np.testing.assert_array_equal(np.stack(truths[lookahead:]), clip.video[: n_streamed - lookahead])


def test_viewer_writes_movies_and_a_strip(start_daemon, tiny_mouse, tmp_path):
    trials = tiny_mouse.trials("oracle")[:1]
    plan = ReplayPlan(tiny_mouse, trials, plane_timing(tiny_mouse, 1, None, False))
    d = start_daemon()
    sink = stream_through(d, plan, 60, tmp_path / "view")
    written = sink.close()
    assert [p.name for p in written] == ["view.gif", "view.mp4", "view_strip.png"]
    gif = iio.imread(written[0], index=None)
    assert gif.shape[0] == 60 and gif.shape[1:3] == (36 * 4, (2 * 64 + 4) * 4)
    assert iio.imread(written[1], index=None).shape[:3] == gif.shape[:3]
    assert iio.imread(written[2]).ndim == 3


def test_cli_replay_serve_view(start_daemon, tiny_root, stream_endpoints, tmp_path):
    from stream_decoder.cli import main

    d = start_daemon(endpoints=EndpointsConfig(**stream_endpoints, activity_bind=True))
    results = {}
    viewer = threading.Thread(
        target=lambda: results.setdefault(
            "view",
            main(
                [
                    "view",
                    "--endpoint",
                    stream_endpoints["recon"],
                    "--data",
                    str(tiny_root),
                    "--clips",
                    "1",
                    "--frames",
                    "300",
                    "--timeout-s",
                    "10",
                    "--out",
                    str(tmp_path / "out"),
                    "--no-window",
                ]
            ),
        )
    )
    viewer.start()
    d.attach(d.display)  # warm-up frames until the CLI's subscriber is surely attached too
    threading.Event().wait(0.5)
    assert (
        main(
            [
                "replay",
                "--data",
                str(tiny_root),
                "--clips",
                "1",
                "--speed",
                "0",
                "--connect",
                "--endpoint",
                stream_endpoints["activity"],
                "--control",
                stream_endpoints["control"],
                "--wait-s",
                "10",
            ]
        )
        == 0
    )
    viewer.join(30)
    assert results["view"] == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["view.gif", "view.mp4", "view_strip.png"]


def test_replay_refuses_data_the_served_model_does_not_fit(tiny_root, tiny_mouse, stream_endpoints, capsys):
    import msgpack
    import zmq

    from stream_decoder.cli import main

    daemon = zmq.Context.instance().socket(zmq.REP)  # a daemon serving a 5-neuron model
    daemon.bind(stream_endpoints["control"])
    answer = threading.Thread(
        target=lambda: (daemon.recv(), daemon.send(msgpack.packb({"ok": True, "model": "m5", "neurons": 5})))
    )
    answer.start()
    code = main(
        [
            "replay",
            "--data",
            str(tiny_root),
            "--clips",
            "1",
            "--endpoint",
            stream_endpoints["activity"],
            "--control",
            stream_endpoints["control"],
        ]
    )
    answer.join(5)
    daemon.close(linger=0)
    error = capsys.readouterr().err
    assert code == 2 and f"model m5 for 5 neurons, the data has {tiny_mouse.n_neurons}" in error


def test_demo_streams_clips_end_to_end_and_writes_its_summary(untrained_artifact, tiny_root, tmp_path):
    from stream_decoder.stream.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        artifact=untrained_artifact,
        data=tiny_root,
        tier="oracle",
        clips=1,
        speed=0,
        backend="torch",
        out=tmp_path / "demo",
    )
    summary = run_demo(cfg)
    assert summary["frames_received"] == 300 and summary["frames_lost"] == 0
    assert summary["daemon"]["rejected"] == {} and summary["daemon"]["lost"] == 0
    assert np.isfinite(summary["correlation_with_stimulus_all_pixels"])
    assert summary["correlation_with_stimulus_in_mask"] == summary["correlation_with_stimulus_all_pixels"]
    assert sorted(p.name for p in (tmp_path / "demo" / "view").iterdir()) == [
        "view.gif",
        "view.mp4",
        "view_strip.png",
    ]
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["trials"] == summary["trials"]


def test_demo_refuses_data_its_student_was_not_distilled_on(untrained_artifact, tmp_path):
    from stream_decoder.data import simulate
    from stream_decoder.stream.demo import DemoConfig, run_demo

    other = tmp_path / "other"
    simulate("tiny", seed=1, out=other)
    with pytest.raises(ValueError, match="not the data the demo student was distilled on"):
        run_demo(DemoConfig(artifact=untrained_artifact, data=other, out=tmp_path / "demo"))


def test_bundled_demo_student_loads_with_its_graph():
    from stream_decoder.decoder.artifact import load_artifact
    from stream_decoder.stream.demo import DEMO_ARTIFACT

    artifact = load_artifact(DEMO_ARTIFACT)  # checks weights and model.onnx against the model id
    assert artifact.config.n_neurons == 2000
    assert artifact.meta.provenance["mouse"].startswith("synthetic-demo")
    assert (DEMO_ARTIFACT / "model.onnx").is_file()
