"""Replay -> serve -> view: the rig simulator's schedule, the viewer's outputs, and offline == online."""

import json
import threading
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import HANG_GUARD_S, until

from stream_decoder.data import PlaneTiming, held_responses
from stream_decoder.data.planes import frame_of
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.config import GAZE_GAINS
from stream_decoder.display.viewer import MovieSink
from stream_decoder.rig.replay import ReplayOptions, ReplayPlan, Rig, plane_timing, replay
from stream_decoder.runtime import open_backend
from stream_decoder.stream.config import EndpointsConfig

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
        assert rig.wait_for_subscriber(HANG_GUARD_S)
        options = ReplayOptions(speed=0, drop=0.1, restart_after=200, t0=7.0, dtype="float16")
        report = replay(plan, rig, options, progress=False)
        received = []
        for _ in range(report.sent):  # every message sent arrives, however slowly: a hang guard
            assert sub.poll(HANG_GUARD_S * 1000), f"{len(received)} of {report.sent} sent messages arrived"
            received.append(decode_activity(sub.recv_multipart(), tiny_mouse.n_neurons))
        assert not sub.poll(100)  # and nothing more
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
    sink = stream_through(d, plan, 20, tmp_path / "view")
    written = sink.close()
    assert [p.name for p in written] == ["view.gif", "view.mp4", "view_strip.png"]
    gif, mp4 = iio.imread(written[0], index=None), iio.imread(written[1], index=None)
    assert gif.shape[0] == mp4.shape[0] == 20 and mp4.shape[1:3] == (36 * 4, (2 * 64 + 4) * 4)
    assert gif.shape[1:3] == (36 * 2, (2 * 64 + 4) * 2)  # the GIF at half the movie's size
    frame = np.asarray(gif[5], np.float32)[..., 0] if gif.ndim == 4 else gif[5]
    recon = np.clip(np.rint(sink.frames[5][0]), 0, 255)
    np.testing.assert_allclose(frame[::2, : 64 * 2 : 2], recon, atol=1)  # every frame pixel, whole
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
                    "--wait-s",  # no first frame within this long: the test fails instead of hanging
                    "30",
                    "--out",
                    str(tmp_path / "out"),
                    "--no-window",
                    "--keep",  # the movies of the last 20 frames: what is written is not the point here
                    "20",
                ]
            ),
        )
    )
    viewer.start()
    # The CLI viewer has connected to the recon socket (the display is the first connection); its
    # subscription follows on the same connection, before the warm-up round trips of `attach`.
    until(lambda: d.stats()["peers"].get("recon.handshake_ok", 0) >= 2, "the CLI viewer's connection")
    d.attach(d.display)
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
    viewer.join(HANG_GUARD_S)
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


@pytest.fixture(scope="module")
def other_tiny_mouse(tmp_path_factory):
    """Another simulated mouse with the same neuron count (seed 1): the wrong mouse for the model."""
    from stream_decoder.data import open_mouse, simulate

    root = tmp_path_factory.mktemp("other-mouse")
    simulate("tiny", seed=1, out=root)
    return open_mouse(root)


def replay_argv(data, endpoints, *options) -> list[str]:
    plan = ["--data", str(data), "--clips", "1", "--speed", "0"]
    return ["replay", *plan, "--endpoint", endpoints["activity"], *options]


def error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    return [line for line in err.splitlines() if line.startswith("stream-decoder replay:")]


def test_two_replays_in_a_row_into_one_daemon_are_both_decoded(
    start_daemon, tiny_root, stream_endpoints, capsys
):
    # docs/protocol.md §6.4: each run of replay is a session of its own, so the second is not refused
    from stream_decoder.cli import main

    d = start_daemon(endpoints=EndpointsConfig(**stream_endpoints, activity_bind=True))
    d.attach(d.display)
    before = d.stats()
    argv = replay_argv(tiny_root, stream_endpoints, "--connect", "--control", stream_endpoints["control"])
    assert main(argv) == 0 and main(argv) == 0
    # Every message of both runs decoded (the daemon's count; a display that falls behind may drop
    # frames by design, so the display only has to see both sessions).
    after = until(lambda: (s := d.stats())["emitted"] >= before["emitted"] + 600 and s, "600 frames")
    assert after["emitted"] == before["emitted"] + 600 and after["sessions"] == before["sessions"] + 2
    assert after["rejected"] == {} and after["lost"] == 0
    sessions = set()
    while len(sessions) < 2 and (item := d.display.receive(timeout_s=HANG_GUARD_S)) is not None:
        sessions.add(item[1].session)
    assert len(sessions) == 2 and all(s.startswith("replay-") for s in sessions), sessions
    assert capsys.readouterr().err.count("fits the data (neuron_set checked)") == 2  # §5.3, against info


def test_neuron_sets_tell_two_simulated_mice_apart_where_unit_ids_cannot(tiny_mouse, other_tiny_mouse):
    from stream_decoder.data.sensorium import neuron_set_id

    assert other_tiny_mouse.n_neurons == tiny_mouse.n_neurons
    np.testing.assert_array_equal(other_tiny_mouse.unit_ids, tiny_mouse.unit_ids)  # 1..N, both
    assert other_tiny_mouse.neuron_set() != tiny_mouse.neuron_set()
    shuffled = np.roll(np.arange(tiny_mouse.n_neurons), 1)  # the same neurons in another order
    ids, xyz = tiny_mouse.unit_ids[shuffled], tiny_mouse.cell_motor_coordinates[shuffled]
    assert neuron_set_id(ids, xyz) != tiny_mouse.neuron_set()


def test_replay_refuses_another_mouse_with_the_same_neuron_count(
    start_daemon, other_tiny_mouse, stream_endpoints, tmp_path, capsys
):
    # docs/protocol.md §5.3: the served model's neuron set against the data's
    from stream_decoder.cli import main

    start_daemon()
    elsewhere = {"activity": f"ipc://{tmp_path}/nobody"}  # no daemon subscribes there
    argv = replay_argv(
        other_tiny_mouse.path, elsewhere, "--control", stream_endpoints["control"], "--wait-s", "0"
    )
    assert main(argv) == 2
    (error,) = error_lines(capsys)
    assert f"neuron_set {other_tiny_mouse.neuron_set()}" in error and "--ignore-neuron-set" in error
    assert main([*argv, "--ignore-neuron-set"]) == 2  # past the check, on to waiting for a daemon
    (error,) = error_lines(capsys)
    assert "no daemon subscribed" in error


def test_replay_checks_the_data_fingerprint_of_a_model_without_a_neuron_set(tiny_mouse, other_tiny_mouse):
    # docs/protocol.md §5.3: artifacts from before identities
    from stream_decoder.rig.replay import check_neuron_set

    info = {"model": "old", "neurons": tiny_mouse.n_neurons, "neuron_set": None}
    assert (
        check_neuron_set({**info, "data_fingerprint": tiny_mouse.fingerprint()}, tiny_mouse)
        == "data_fingerprint"
    )
    with pytest.raises(ValueError, match="data_fingerprint"):
        check_neuron_set({**info, "data_fingerprint": tiny_mouse.fingerprint()}, other_tiny_mouse)
    assert check_neuron_set(info, other_tiny_mouse) == "neurons"  # a daemon that names neither
    assert check_neuron_set({**info, "neuron_set": "f" * 16}, tiny_mouse, identity=False) == "neurons"


@pytest.mark.parametrize("flag", ["--endpoint", "--control"])
def test_replay_given_a_malformed_endpoint_says_so_in_one_line(tiny_root, capsys, flag):
    from stream_decoder.cli import main

    endpoints = {"activity": "tcp://127.0.0.1:5555"}
    options = ("--control", "127.0.0.1:5557") if flag == "--control" else ("--control", "")
    if flag == "--endpoint":
        endpoints["activity"] = "127.0.0.1:5555"
    assert main(replay_argv(tiny_root, endpoints, *options)) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith(f"stream-decoder replay: error: {flag} '127.0.0.1:") and "tcp://" in error


def test_replay_on_a_taken_port_says_so_in_one_line(tiny_root, capsys):
    import zmq

    from stream_decoder.cli import main

    holder = zmq.Context.instance().socket(zmq.PUB)
    port = holder.bind_to_random_port("tcp://127.0.0.1")
    try:
        code = main(replay_argv(tiny_root, {"activity": f"tcp://127.0.0.1:{port}"}, "--control", ""))
    finally:
        holder.close(linger=0)
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "cannot bind" in error and f":{port}" in error and "in use" in error


@pytest.mark.parametrize("when", ["waiting for a subscriber", "mid-stream"])
def test_ctrl_c_on_replay_closes_its_socket_and_exits_130_in_one_line(
    when, tiny_root, stream_endpoints, monkeypatch, capsys
):
    from stream_decoder.cli import main

    rigs, real_init, real_send = [], Rig.__init__, Rig.send

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        rigs.append(self)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    def send(self, *args, **kwargs):  # Ctrl-C after ten messages
        return interrupt() if self.seq == 10 else real_send(self, *args, **kwargs)

    monkeypatch.setattr(Rig, "__init__", init)
    if when == "mid-stream":
        monkeypatch.setattr(Rig, "wait_for_subscriber", lambda self, timeout_s: True)
        monkeypatch.setattr(Rig, "send", send)
    else:
        monkeypatch.setattr(Rig, "wait_for_subscriber", interrupt)
    assert main(replay_argv(tiny_root, stream_endpoints, "--control", "")) == 130
    (rig,) = rigs
    assert rig.sock.closed and rig.seq == (10 if when == "mid-stream" else 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "stream-decoder replay: interrupted"


def test_demo_streams_clips_end_to_end_and_writes_its_summary(
    untrained_artifact, tiny_root, tiny_mouse, tmp_path
):
    from stream_decoder.display.demo import DemoConfig, run_demo

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
    beside = summary["beside_the_baseline"]  # every oracle clip, offline, the gaze baseline beside
    assert beside["clips"] == len(tiny_mouse.trials("oracle")) and beside["baseline"] > 0.2
    fitted = load_artifact(Path(beside["artifact"])).meta.provenance["baseline"]
    assert fitted["ridge"]["gaze_gains"] == list(GAZE_GAINS)  # the strongest simple baseline, not plain ridge
    assert beside["student_over_baseline"] == pytest.approx(beside["student"] / beside["baseline"])
    assert sorted(p.name for p in (tmp_path / "demo" / "view").iterdir()) == [
        "view.gif",
        "view.mp4",
        "view_strip.png",
    ]
    saved = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert saved["trials"] == summary["trials"]
    assert saved["demo"]["clips"] == 1 and saved["demo"]["speed"] == 0 and saved["demo"]["simulate"] is False
    assert saved["demo"]["data"] == str(tiny_root) and saved["demo"]["backend"] == "torch"  # JSON types


def test_demo_refuses_data_its_student_was_not_distilled_on(untrained_artifact, other_tiny_mouse, tmp_path):
    from stream_decoder.display.demo import DemoConfig, run_demo

    with pytest.raises(ValueError, match="not the data the demo student was distilled on"):
        run_demo(DemoConfig(artifact=untrained_artifact, data=other_tiny_mouse.path, out=tmp_path / "demo"))


def test_bundled_demo_student_loads_with_its_graph():
    from stream_decoder.decoder.artifact import load_artifact
    from stream_decoder.display.demo import DEMO_ARTIFACT

    artifact = load_artifact(DEMO_ARTIFACT)  # checks weights and model.onnx against the model id
    assert artifact.config.n_neurons == 2000
    assert artifact.meta.provenance["mouse"].startswith("synthetic-demo")
    assert (DEMO_ARTIFACT / "model.onnx").is_file()


def test_bundled_demo_student_names_the_neuron_set_of_the_mouse_the_demo_simulates():
    # docs/protocol.md §5.3: what `info` reports for the demo student is what replaying the demo data checks
    from stream_decoder.data.presets import preset_config
    from stream_decoder.data.rig import SyntheticMouse
    from stream_decoder.data.sensorium import neuron_set_id
    from stream_decoder.decoder.artifact import load_artifact
    from stream_decoder.display.demo import DEMO_ARTIFACT, DEMO_DATA

    preset, seed = DEMO_DATA
    mouse = SyntheticMouse.create(preset_config(preset), seed)  # its neurons, without simulating trials
    expected = neuron_set_id(mouse.unit_ids(), mouse.cell_motor_coordinates())
    assert load_artifact(DEMO_ARTIFACT).meta.neuron_set == expected
