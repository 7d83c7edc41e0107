"""The daemon over real sockets: frames out per message, control, every fault, security, recording."""

import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
import zmq.auth

from stream_decoder.runtime import open_backend
from stream_decoder.stream.client import ControlClient, CurveKeys, ReconClient
from stream_decoder.stream.config import SecurityConfig, StreamConfig
from stream_decoder.stream.recorder import read_recording

RATE = 30.0
BEHAVIOR = (0.3, 1.5)
PUPIL = (2.0, -1.0)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def offline_frames(artifact, activity: np.ndarray, behavior4=BEHAVIOR + PUPIL) -> np.ndarray:
    """What the backend gives stepping through (T, N) activity from a fresh state."""
    backend = open_backend(artifact, "torch")
    behavior4 = np.tile(np.asarray(behavior4, np.float32), (len(activity), 1))
    return np.stack([backend.step(a, b).copy() for a, b in zip(activity, behavior4, strict=True)])


def send_clip(d, activity: np.ndarray, session: str, t0: float = 100.0) -> list[float]:
    d.rig.restart(session)
    times = [t0 + k / RATE for k in range(len(activity))]
    for a, t in zip(activity, times, strict=True):
        d.rig.send(a, t, behavior=BEHAVIOR, pupil_center=PUPIL)
    return times


def receive(client, n: int) -> tuple[np.ndarray, list]:
    frames, headers = [], []
    for _ in range(n):
        item = client.receive(timeout_s=5.0)
        assert item is not None, f"only {len(frames)} of {n} frames arrived"
        frames.append(item[0].copy())
        headers.append(item[1])
    return np.stack(frames), headers


def random_activity(n_frames: int, n_neurons: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(0.5, 1.0, (n_frames, n_neurons)).astype(np.float32)


def test_one_frame_per_message_equal_to_offline(start_daemon, untrained_artifact, tiny_mouse):
    d = start_daemon()
    d.attach(d.display)
    activity = random_activity(40, tiny_mouse.n_neurons)
    times = send_clip(d, activity, "clip")
    frames, headers = receive(d.display, len(activity))
    np.testing.assert_allclose(frames, offline_frames(untrained_artifact, activity), atol=1e-4)
    info = d.control.request("info")
    assert [h.seq for h in headers] == list(range(40)) and [h.seq_newest for h in headers] == list(range(40))
    assert [h.t_newest for h in headers] == times  # echoed exactly
    lag = info["lookahead"] / RATE
    assert all(math.isclose(h.t_stim, t - lag) for h, t in zip(headers, times, strict=True))
    assert {h.session for h in headers} == {"clip"} and {h.model for h in headers} == {info["model"]}
    assert {h.stale for h in headers} == {0.0}
    assert d.display.lost == 0


def test_a_paced_stream_is_prefetched_between_messages_and_decoded_the_same(
    start_daemon, untrained_artifact, tiny_mouse
):
    d = start_daemon()
    d.attach(d.display)
    activity = random_activity(20, tiny_mouse.n_neurons, seed=3)
    d.rig.restart("paced")
    start = time.monotonic()
    for k, a in enumerate(activity):
        time.sleep(max(0.0, start + k / RATE - time.monotonic()))
        d.rig.send(a, 100.0 + k / RATE, behavior=BEHAVIOR, pupil_center=PUPIL)
    frames, _ = receive(d.display, len(activity))
    np.testing.assert_allclose(frames, offline_frames(untrained_artifact, activity), atol=1e-4)
    assert d.control.request("stats")["prefetches"] >= 10  # one before (nearly) every message


def test_control_socket(start_daemon, tiny_mouse, stream_endpoints):
    d = start_daemon()
    assert d.control.request("ping") == {"ok": True, "version": 1}
    info = d.control.request("info")
    assert info["ok"] and info["neurons"] == tiny_mouse.n_neurons and info["frame_shape"] == [36, 64]
    assert info["lookahead"] == 2 and info["rate_hz"] == 30.0
    assert info["input_dtypes"] == ["float32", "float16", "int16", "uint16"]
    reply = d.control.request("reboot")
    assert reply["ok"] is False and "unknown command" in reply["error"]
    raw = zmq.Context.instance().socket(zmq.REQ)
    raw.connect(stream_endpoints["control"])
    raw.send(b"\xc1 garbage")
    assert raw.poll(5000)
    assert msgpack.unpackb(raw.recv())["ok"] is False
    raw.close(linger=0)
    stats = d.stats()
    assert stats["ok"] and stats["control_errors"] == {"unknown_cmd": 1, "header": 1}
    assert {"received", "emitted", "rejected", "dropped", "latency_ms", "uptime_s", "model"} <= set(stats)


def bad_messages(n: int) -> dict[str, list[bytes]]:
    def head(**changes):
        fields = {"v": 1, "session": "faults", "seq": 0, "t": 0.0, "dtype": "float32", "shape": [n]}
        fields.update(changes)
        return msgpack.packb({k: v for k, v in fields.items() if v is not ...})

    good = np.ones(n, "<f4").tobytes()
    return {
        "frame_count": [b"activity", head()],
        "topic": [b"activityX", head(), good],
        "oversized": [b"activity", head(), np.ones(n + 1, "<f4").tobytes()],
        "header": [b"activity", b"\x93\x01\x02", good],
        "version": [b"activity", head(v=2), good],
        "missing_key": [b"activity", head(seq=...), good],
        "bad_type": [b"activity", head(seq="seven"), good],
        "dtype": [b"activity", head(dtype="complex64"), good],
        "payload_length": [b"activity", head(), good[:-4]],
        "neuron_range": [b"activity", head(first=1), good],
        "non_finite": [b"activity", head(), np.full(n, np.inf, "<f4").tobytes()],
    }


def test_every_fault_is_counted_and_decoding_stays_right(
    start_daemon, untrained_artifact, tiny_mouse, caplog
):
    d = start_daemon()
    d.attach(d.display)
    n = tiny_mouse.n_neurons
    before = d.stats()
    for frames in bad_messages(n).values():
        for _ in range(3):
            d.rig.sock.send_multipart(frames)
    activity = random_activity(12, n, seed=1)
    d.rig.restart("seq")
    d.rig.send(activity[0], 0.0)
    d.rig.send(activity[1], 1 / RATE)
    d.rig.seq = 1
    d.rig.send(activity[1], 1 / RATE)  # duplicate
    d.rig.seq = 0
    d.rig.send(activity[0], 0.0)  # out of order
    d.rig.seq = 5
    d.rig.send(activity[5], 5 / RATE)  # gap of three
    d.rig.restart("seq-after-restart")
    d.rig.send(activity[0], 0.0)
    d.rig.restart("seq")
    d.rig.seq = 6
    d.rig.send(activity[6], 6 / RATE)  # a late message from the replaced session
    receive(d.display, 4)
    stats = d.stats()
    assert stats["rejected"] == {
        **dict.fromkeys(bad_messages(n), 3),
        "duplicate": 1,
        "out_of_order": 1,
        "old_session": 1,
    }
    assert stats["received"] - before["received"] == 3 * 11 + 7
    assert (stats["gaps"], stats["lost"]) == (1, 3)
    assert stats["sessions"] - before["sessions"] == 2
    # Each reason is logged once per interval however often it happens.
    rejected_logs = [r.getMessage() for r in caplog.records if "event=rejected" in r.getMessage()]
    assert len(rejected_logs) == len(stats["rejected"])
    # Still decoding correctly: a fresh session gives exactly the offline frames.
    send_clip(d, activity, "after-faults")
    frames, _ = receive(d.display, len(activity))
    np.testing.assert_allclose(frames, offline_frames(untrained_artifact, activity), atol=1e-4)


def test_oversized_beyond_the_socket_limit_costs_the_sender_its_connection(start_daemon, tiny_mouse):
    d = start_daemon(stream=StreamConfig(max_message_bytes=64 * 1024))
    d.attach(d.display)
    d.rig.sock.send_multipart([b"activity", b"\x80", bytes(1024 * 1024)])
    assert d.rig.wait_for_subscriber(5.0)  # the daemon's SUB reconnects and subscribes again
    d.rig.restart("after")
    d.rig.send(np.ones(tiny_mouse.n_neurons, np.float32), 0.0)
    receive(d.display, 1)
    peers = d.stats()["peers"]
    assert peers["activity.disconnected"] == 1 and peers["activity.reconnected"] == 1


def test_burst_at_ten_times_the_rate_loses_nothing(start_daemon, tiny_mouse):
    d = start_daemon()
    d.attach(d.display)
    activity = random_activity(300, tiny_mouse.n_neurons, seed=2)
    d.rig.restart("burst")
    for k, a in enumerate(activity):  # 10 s of input at 300 messages/s
        d.rig.send(a, k / RATE)
        time.sleep(1 / 300)
    _, headers = receive(d.display, 300)
    assert [h.seq_newest for h in headers] == list(range(300))
    stats = d.stats()
    assert stats["lost"] == 0 and d.display.lost == 0


def collect(client, into: list) -> threading.Thread:
    """Read frames in the background, as a display does, until 2 s pass without one."""

    def run():
        for _, header in client:
            into.append(header)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_slow_absent_and_late_subscribers_never_hold_the_daemon_back(
    start_daemon, tiny_mouse, stream_endpoints
):
    d = start_daemon(stream=StreamConfig(send_hwm=20))
    n = tiny_mouse.n_neurons
    d.rig.restart("nobody-listening")
    for k in range(50):
        d.rig.send(np.ones(n, np.float32), k / RATE)
    deadline = time.monotonic() + 5
    while d.stats()["emitted"] < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.stats()["emitted"] == 50  # decoded with no subscriber at all

    slow = ReconClient(stream_endpoints["recon"], hwm=5)  # subscribed, never reads
    d.attach(slow)
    d.attach(d.display)
    shown, shown_late = [], []
    display_thread = collect(d.display, shown)
    d.rig.restart("busy")
    for k in range(600):  # two seconds at ten times the frame rate
        if k == 300:  # a display joining mid-session gets the rest of it
            late = ReconClient(stream_endpoints["recon"], timeout_s=2.0)
            late_thread = collect(late, shown_late)
            time.sleep(0.3)
        d.rig.send(np.ones(n, np.float32), k / RATE)
        time.sleep(1 / 300)
    display_thread.join(10)
    late_thread.join(10)
    assert [h.seq_newest for h in shown] == list(range(600)) and d.display.lost == 0
    late_seqs = [h.seq for h in shown_late]  # everything from (about) when it joined, none lost
    assert late_seqs and late_seqs[0] <= 300 and late_seqs == list(range(late_seqs[0], 600))
    stray = 0
    while slow.receive(timeout_s=0.2) is not None:
        stray += 1
    assert stray < 300  # the slow subscriber lost frames; nobody waited for it
    assert d.stats()["emitted"] >= 650
    slow.close()
    late.close()


def test_multi_plane_input_is_decoded_on_the_30hz_grid(start_daemon, untrained_artifact, tiny_mouse):
    from stream_decoder.data import PlaneTiming, held_responses, plane_samples

    d = start_daemon()
    d.attach(d.display)
    n, n_frames = tiny_mouse.n_neurons, 60
    responses = random_activity(n_frames, n, seed=3)
    timing = PlaneTiming(3, 7.5, np.arange(n) * 3 // n, np.array([0.0, 1, 2]) / 30)  # 3 planes + flyback
    d.rig.restart("volumes")
    for sample in plane_samples(responses, timing):
        first = int(sample.neurons[0])
        assert np.array_equal(sample.neurons, np.arange(first, first + sample.neurons.size))
        d.rig.send(
            sample.values,
            50.0 + sample.t_acq,
            first=first,
            plane=sample.plane,
            n_planes=3,
            behavior=BEHAVIOR,
            pupil_center=PUPIL,
        )
    last_tick = round(float(max(timing.acquisition_times(p, n_frames)[-1] for p in range(3)) * RATE))
    frames, headers = receive(d.display, last_tick)  # every tick before the newest message's
    expected = offline_frames(untrained_artifact, held_responses(responses, timing)[:last_tick])
    np.testing.assert_allclose(frames, expected, atol=1e-4)
    lookahead = d.control.request("info")["lookahead"]
    ticks = np.arange(last_tick)
    np.testing.assert_allclose([h.t_stim for h in headers], 50.0 + (ticks - lookahead) / RATE, atol=1e-9)
    # Stale: the planes last acquired more than one tick before the frame's tick (or never).
    for h, tick in zip(headers, ticks, strict=True):
        last = [
            max((t for t in timing.acquisition_times(p, n_frames) if t * RATE <= tick + 1e-6), default=-1)
            for p in range(3)
        ]
        stale_planes = sum(1 for t in last if t < 0 or tick - t * RATE > 1 + 1e-6)
        assert h.stale == pytest.approx(stale_planes / 3, abs=1 / n)


def test_a_new_session_resets_the_decoder(start_daemon, untrained_artifact, tiny_mouse):
    d = start_daemon()
    d.attach(d.display)
    first, second = random_activity(20, tiny_mouse.n_neurons, 4), random_activity(20, tiny_mouse.n_neurons, 5)
    send_clip(d, first, "session-a")
    send_clip(d, second, "session-b")
    frames, headers = receive(d.display, 40)
    np.testing.assert_allclose(frames[20:], offline_frames(untrained_artifact, second), atol=1e-4)
    assert [h.seq for h in headers[20:]] == list(range(20)) and headers[20].session == "session-b"


def test_an_error_inside_one_tick_is_counted_and_the_next_is_served(
    start_daemon, untrained_artifact, tiny_mouse
):
    backend = open_backend(untrained_artifact, "torch")
    real_step = backend.step
    calls = []

    def flaky_step(activity, behavior):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated backend fault")
        return real_step(activity, behavior)

    backend.step = flaky_step
    d = start_daemon(backend=backend)
    d.rig.restart("flaky")
    for k in range(5):
        d.rig.send(np.ones(tiny_mouse.n_neurons, np.float32), k / RATE)
    deadline = time.monotonic() + 5
    while d.stats()["emitted"] < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = d.stats()
    assert stats["dropped"] == {"internal_error": 1} and stats["emitted"] == 4


def test_curve_lets_listed_keys_in_and_refuses_and_counts_the_rest(start_daemon, tmp_path, stream_endpoints):
    keys, allowed = tmp_path / "keys", tmp_path / "keys" / "allowed"
    allowed.mkdir(parents=True)
    server_public, server_secret = zmq.auth.create_certificates(keys, "server")
    client_public, client_secret = zmq.auth.create_certificates(keys, "client")
    _, stranger_secret = zmq.auth.create_certificates(keys, "stranger")
    os.replace(client_public, allowed / "client.key")
    d = start_daemon(
        curve=CurveKeys(client_secret, server_public),
        security=SecurityConfig(curve=True, server_secret_key=Path(server_secret), client_keys_dir=allowed),
    )
    d.attach(d.display)  # the listed key gets frames (and the rig got its messages in)
    stranger = ReconClient(stream_endpoints["recon"], curve=CurveKeys(stranger_secret, server_public))
    plain = ControlClient(stream_endpoints["control"], timeout_s=0.5)
    with pytest.raises(TimeoutError):
        plain.request("ping")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        peers = d.stats()["peers"]
        if peers.get("recon.refused_auth") and peers.get("control.refused_protocol"):
            break
        time.sleep(0.1)
    assert peers.get("recon.refused_auth", 0) >= 1  # the stranger's key is not listed
    assert peers.get("control.refused_protocol", 0) >= 1  # the plain client speaks no CurveZMQ
    assert peers.get("recon.handshake_ok", 0) >= 1 and peers.get("activity.handshake_ok", 0) >= 1
    assert stranger.receive(timeout_s=0.2) is None
    stranger.close()
    plain.close()


def write_config(tmp_path, endpoints, artifact, record_dir) -> str:
    path = tmp_path / "rig.toml"
    path.write_text(
        f'[model]\nartifact = "{artifact}"\nbackend = "torch"\n'
        f'[endpoints]\nactivity = "{endpoints["activity"]}"\nrecon = "{endpoints["recon"]}"\n'
        f'control = "{endpoints["control"]}"\n'
        f'[recorder]\ndir = "{record_dir}"\nchunk_seconds = 1.0\n'
    )
    return str(path)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_recording_survives_the_daemon_being_stopped(
    how, tmp_path, stream_endpoints, untrained_artifact, tiny_mouse
):
    from stream_decoder.stream.replay import Rig

    record = tmp_path / "recording"
    config = write_config(tmp_path, stream_endpoints, untrained_artifact, record)
    rig = Rig(stream_endpoints["activity"], session="recorded")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_decoder.cli", "serve", "--config", config],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # as deploy/stream-decoder.service
    try:
        assert rig.wait_for_subscriber(60.0), proc.stdout.read1().decode() if proc.poll() is not None else ""
        n = tiny_mouse.n_neurons
        with ControlClient(stream_endpoints["control"], timeout_s=10.0) as control:
            for k in range(30):
                rig.send(np.full(n, k, np.float32), k / RATE)
                time.sleep(1 / RATE)
            deadline = time.monotonic() + 10
            while control.request("stats")["emitted"] < 30 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(2.2)  # > 2 chunk periods: everything so far has been handed to the disk
            rig.send(np.full(n, 30, np.float32), 30 / RATE)  # opens a chunk that stays open for 1 s
            deadline = time.monotonic() + 10
            while control.request("stats")["emitted"] < 31 and time.monotonic() < deadline:
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        rig.close(linger_ms=0)
    got = read_recording(record)
    if how == "SIGTERM":
        assert proc.returncode == 0
        np.testing.assert_array_equal(got.activity["seq"], np.arange(31))
        np.testing.assert_array_equal(got.recon["seq_newest"], np.arange(31))
    else:  # the open chunk (the last message and its frame) is gone, the rest reads back
        np.testing.assert_array_equal(got.activity["seq"], np.arange(30))
        np.testing.assert_array_equal(got.recon["seq_newest"], np.arange(30))
    np.testing.assert_array_equal(got.activity_values(7), np.full(n, 7, np.float32))
    assert set(got.activity["session"]) == {"recorded"}


def test_serve_refuses_a_bad_config_clearly(tmp_path):
    from stream_decoder.cli import main

    path = tmp_path / "rig.toml"
    path.write_text('[model]\nartifact = "nowhere"\n[stream]\nrate = 30\n')
    assert main(["serve", "--config", str(path)]) == 2
