"""Recording playback: what one daemon recorded, played back into another, gives the same frames."""

import threading

import msgpack
import numpy as np
import pytest
import zmq
from conftest import HANG_GUARD_S, until

from stream_decoder.cli import main
from stream_decoder.display.loopback import private_endpoints
from stream_decoder.rig.playback import PlaybackPlan
from stream_decoder.stream.config import RecorderConfig
from stream_decoder.stream.protocol import Activity
from stream_decoder.stream.recorder import Recorder, Recording, read_recording

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def counts(folder) -> tuple[int, int]:
    """(activity, recon) records in the complete chunks on disk."""
    got = read_recording(folder) if folder.is_dir() else Recording({}, {})
    return len(got.activity.get("seq", ())), len(got.recon.get("seq", ()))


def record(step_daemon, folder, sessions: dict[str, list]) -> Recording:
    """Send `sessions` (id -> [(values, t, fields)]) through a stepped daemon that records into
    `folder`; the recording read back once all of it is on disk."""
    s = step_daemon(recorder=RecorderConfig(dir=folder))
    for name, messages in sessions.items():
        s.rig.restart(name)
        for values, t, fields in messages:
            s.rig.send(values, t, **fields)
    sent = sum(len(messages) for messages in sessions.values())
    s.deliver(sent)
    s.now += 10.0  # past the chunk period: this pass hands the open chunks to the writer
    s.daemon.run_once({})
    until(lambda: counts(folder) == (sent, s.daemon.stats.emitted), "the recording on disk")
    return read_recording(folder)


def play_back(start_daemon, folder, recording, runs: list[int | None]) -> Recording:
    """`replay --recording` once per entry of `runs` (a `--session-index`, or None: every session)
    into a fresh daemon that records into `folder`; that recording, once the daemon has handled
    every message sent."""
    with private_endpoints(activity_bind=True) as endpoints:
        d = start_daemon(endpoints=endpoints, recorder=RecorderConfig(dir=folder))
        sent = 0
        for index in runs:
            argv = ["replay", "--recording", str(recording), "--speed", "0", "--connect"]
            argv += ["--endpoint", endpoints.activity, "--control", endpoints.control]
            argv += [
                "--wait-s",
                str(HANG_GUARD_S),
                *(() if index is None else ("--session-index", str(index))),
            ]
            assert main(argv) == 0
            sent += PlaybackPlan.open(recording, index).n_messages
        until(lambda: d.stats()["received"] == sent, "every played-back message handled")
        d.stop()  # the daemon's thread closes the recorder: everything on disk
    return read_recording(folder)


def sessions_of(columns: dict[str, np.ndarray], name: str) -> list[np.ndarray]:
    """Column `name` split where the session changes, in order."""
    session = columns["session"]
    breaks = np.flatnonzero(session[1:] != session[:-1]) + 1
    return np.split(columns[name], breaks)


def single_plane(n: int) -> dict[str, list]:
    """Two sessions on two rig clocks; behaviour and pupil sent on some messages only."""
    rng = np.random.default_rng(1)
    a = [
        (
            rng.gamma(0.5, 1.0, n).astype(np.float32),
            100.0 + k / 30,
            {"behavior": (0.2 * k, 1.0)} if k % 3 else {"pupil_center": (1.0, -k)},
        )
        for k in range(12)
    ]
    b = [(rng.gamma(0.5, 1.0, n).astype(np.float32), 7.5 + k / 30, {"behavior": (1.0, k)}) for k in range(10)]
    return {"a": a, "b": b}


def two_planes(n: int) -> dict[str, list]:
    """Planes of neurons 0..h-1 and h..n-1 at 60 Hz, three quarters of a frame into the 30 Hz grid:
    shifted by anything but whole frames, the messages would fall into other ticks."""
    rng = np.random.default_rng(2)
    h = n // 2
    messages = []
    for k in range(24):
        first, size = (0, h) if k % 2 == 0 else (h, n - h)
        fields = {"first": first, "plane": k % 2, "n_planes": 2}
        if k % 4 == 0:
            fields["behavior"], fields["pupil_center"] = (0.1 * k, 2.0), (0.5, k)
        messages.append((rng.gamma(0.5, 1.0, size).astype(np.float32), 100.025 + k / 60, fields))
    return {"volume": messages}


@pytest.mark.parametrize("kind", ["single-plane", "two-planes"])
def test_a_played_back_recording_gives_the_recorded_frames(
    kind, step_daemon, start_daemon, tiny_mouse, tmp_path
):
    sessions = (single_plane if kind == "single-plane" else two_planes)(tiny_mouse.n_neurons)
    first = record(step_daemon, tmp_path / "first", sessions)
    assert len(first.recon["seq"]) > 0
    runs = [None, 1] if kind == "single-plane" else [None]
    second = play_back(start_daemon, tmp_path / "second", tmp_path / "first", runs)

    recorded, played = sessions_of(first.recon, "frames"), sessions_of(second.recon, "frames")
    if kind == "single-plane":
        recorded.append(recorded[1])  # the second run played recorded session 1 alone
    assert [len(f) for f in played] == [len(f) for f in recorded]
    for got, want in zip(played, recorded, strict=True):
        np.testing.assert_allclose(got, want)
    # The messages of the first run: values, neurons and behaviour (NaN: not sent) as recorded, each
    # session under a new id; the times shifted by whole 30 Hz frames, each session by its own amount.
    assert len(set(second.activity["session"])) == len(sessions) + len(runs) - 1
    m, n_values = len(first.activity["seq"]), int(first.activity["n"].sum())
    for key in ("first", "n", "plane", "n_planes", "behavior"):
        np.testing.assert_array_equal(second.activity[key][:m], first.activity[key])
    np.testing.assert_array_equal(second.activity["values"][:n_values], first.activity["values"])
    played_t = sessions_of(second.activity, "t")[: len(sessions)]
    for got, want in zip(played_t, sessions_of(first.activity, "t"), strict=True):
        shift = (got - want) * 30
        np.testing.assert_allclose(shift, np.round(shift[0]), rtol=0, atol=1e-4)


def write_frame_recording(folder) -> None:
    """What the daemon records of raw frames: one record per contiguous run of the plane's
    neurons, all with the frame's seq; then a session whose rig restarted keeping its id."""
    rec = Recorder(folder, 10, (2, 2), np.float32)

    def part(session, seq, t, first, n, behavior=None):
        values = np.arange(first, first + n, dtype=np.float32) + 100 * seq
        rec.activity(Activity(session, seq, t, values, first, 0, 1, behavior), received=0.0)

    part("f", 0, 5.0, 0, 4, behavior=(0.5, 1.0))
    part("f", 0, 5.0, 4, 6, behavior=(0.5, 1.0))  # follows on: one message with the one before
    part("f", 1, 5.0 + 1 / 30, 0, 3)
    part("f", 1, 5.0 + 1 / 30, 6, 4)  # a gap in the neurons: a message of its own, the same t
    part("f", 2, 5.0 + 2 / 30, 0, 0)  # a frame the front end could not use: no values to send
    part("f", 3, 5.0 + 3 / 30, 0, 10)
    part("f", 0, 9.0, 0, 10)  # seq back to 0: the daemon started the session over
    part("g", 0, 2.0, 0, 10)
    rec.close()


def test_raw_frame_records_of_one_seq_are_one_message_again(tmp_path):
    write_frame_recording(tmp_path)
    messages = list(PlaybackPlan.open(tmp_path).messages())
    assert [(m.session, m.first, m.values.size) for m in messages] == [
        (0, 0, 10),
        (0, 0, 3),
        (0, 6, 4),
        (0, 0, 10),
        (1, 0, 10),
        (2, 0, 10),
    ]
    np.testing.assert_array_equal(messages[0].values, np.arange(10))
    np.testing.assert_array_equal(messages[2].values, np.arange(6, 10) + 100)
    np.testing.assert_array_equal(messages[0].behavior, [0.5, 1.0])
    assert messages[0].pupil_center is None and messages[1].behavior is None
    times = [m.time for m in messages]
    assert times[1] == times[2] == pytest.approx(1 / 30)
    assert times[3] == pytest.approx(3 / 30)
    assert times[4] == pytest.approx(4 / 30) and times[5] == pytest.approx(5 / 30)  # back to back
    named = PlaybackPlan.open(tmp_path, name="g", gap_s=0.5)
    assert [m.time for m in named.messages()] == [0.0]
    assert PlaybackPlan.open(tmp_path, index=1, gap_s=0.5).n_messages == 1
    gapped = [m.time for m in PlaybackPlan.open(tmp_path, gap_s=0.5).messages()]
    assert gapped[5] - gapped[4] == pytest.approx(16 / 30)  # a frame, then 0.5 s


def error_line(capsys) -> str:
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--recording", "{tmp}/nowhere"], "recording {tmp}/nowhere does not exist"),
        (["--recording", "{tmp}/empty"], "recording {tmp}/empty holds no activity records"),
        ([], "give one thing to play: --data DIR"),
        (["--data", "{tmp}", "--recording", "{tmp}/empty"], "give one thing to play"),
        (["--recording", "{tmp}/empty", "--tier", "train", "--raw"], "--tier, --raw: options of --data"),
        (["--recording", "{tmp}/frames", "--session-index", "3"], "holds sessions 0..2"),
        (["--recording", "{tmp}/frames", "--session-name", "h"], "holds sessions f, g"),
        (["--data", "{tmp}", "--session-index", "0"], "pick a session of --recording, not of --data"),
    ],
)
def test_a_bad_recording_or_option_is_a_one_line_error(options, expected, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    write_frame_recording(tmp_path / "frames")
    argv = ["replay", *(o.format(tmp=tmp_path) for o in options), "--control", "", "--wait-s", "0"]
    assert main(argv) == 2
    line = error_line(capsys)
    assert line.startswith("stream-decoder replay: error: ") and expected.format(tmp=tmp_path) in line


def test_playback_checks_the_neuron_count_of_the_served_model(tmp_path, stream_endpoints, capsys):
    write_frame_recording(tmp_path)
    daemon = zmq.Context.instance().socket(zmq.REP)  # a daemon serving a 5-neuron model
    daemon.bind(stream_endpoints["control"])
    answer = threading.Thread(
        target=lambda: (daemon.recv(), daemon.send(msgpack.packb({"ok": True, "model": "m5", "neurons": 5})))
    )
    answer.start()
    argv = ["replay", "--recording", str(tmp_path), "--control", stream_endpoints["control"]]
    code = main([*argv, "--endpoint", stream_endpoints["activity"]])
    answer.join(HANG_GUARD_S)
    daemon.close(linger=0)
    assert code == 2
    assert f"model m5 for 5 neurons, recording {tmp_path} has values for 10" in error_line(capsys)
