"""The daemon over real sockets: frames out per message, control, every fault, security, recording."""

import math
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
import zmq.auth
from conftest import HANG_GUARD_S, until

from stream_decoder.runtime import open_backend
from stream_decoder.stream.client import ControlClient, CurveKeys, ReconClient
from stream_decoder.stream.config import SecurityConfig, StreamConfig
from stream_decoder.stream.daemon import POLL_MS
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
        item = client.receive(timeout_s=HANG_GUARD_S)
        assert item is not None, f"only {len(frames)} of {n} frames arrived"
        frames.append(item[0].copy())
        headers.append(item[1])
    return np.stack(frames), headers


def random_activity(n_frames: int, n_neurons: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(0.5, 1.0, (n_frames, n_neurons)).astype(np.float32)


def stats_once(d, done) -> dict:
    """The daemon's stats once `done(stats)` holds (counts that must get there)."""

    def ready():
        stats = d.stats()
        return stats if done(stats) else None

    return until(ready, "the daemon's counts")


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


def test_a_paced_stream_is_prefetched_a_lead_before_each_message_and_decoded_the_same(
    step_daemon, untrained_artifact, tiny_mouse
):
    s = step_daemon(stream=StreamConfig(prefetch_ms=2.0))
    s.attach(s.display)
    prefetched = []
    real_prefetch = s.daemon.backend.prefetch
    s.daemon.backend.prefetch = lambda: (prefetched.append(s.now), real_prefetch())
    activity = random_activity(20, tiny_mouse.n_neurons, seed=3)
    s.rig.restart("paced")
    start = s.now + 2.0  # a pause after the warm-up: its arrivals are no rate
    lead, interval = 0.002, 1 / RATE
    for k, a in enumerate(activity):
        s.now = start + k * interval
        s.rig.send(a, 100.0 + k * interval, behavior=BEHAVIOR, pupil_center=PUPIL)
        s.deliver()
        if k == 0:  # one arrival is no rate yet: the loop sleeps its longest, nothing to prefetch
            assert s.daemon.forecast.wait_ms(s.now, POLL_MS) == POLL_MS
            continue
        assert s.daemon.forecast.wait_ms(s.now, POLL_MS) == 31  # the loop sleeps until 33.3 - 2 ms
        due = s.now + interval - lead
        s.now = due - 0.0015
        s.daemon.run_once({})
        assert len(prefetched) == k - 1  # not yet
        s.now = due
        s.daemon.run_once({})
        s.daemon.run_once({})
        assert prefetched[-1] == due and len(prefetched) == k  # exactly once, at the forecast
    assert s.daemon.stats.prefetches == len(activity) - 1
    frames, _ = receive(s.display, len(activity))
    np.testing.assert_allclose(frames, offline_frames(untrained_artifact, activity), atol=1e-4)


def test_control_socket(start_daemon, tiny_mouse, stream_endpoints):
    d = start_daemon()
    assert d.control.request("ping") == {"ok": True, "version": 1}
    info = d.control.request("info")
    assert info["ok"] and info["neurons"] == tiny_mouse.n_neurons and info["frame_shape"] == [36, 64]
    assert info["lookahead"] == 2 and info["rate_hz"] == 30.0
    assert info["input_dtypes"] == ["float32", "float16", "int16", "uint16"]
    assert info["backend"] == "torch" and info["backend_options"] == {"device": "cpu"}
    assert info.items() >= d.daemon.backend.info.items()  # everything the backend says of its model
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
    for k in range(3):
        d.rig.send(activity[k], k / RATE)
    d.rig.seq = 2
    d.rig.send(activity[2], 2 / RATE)  # duplicate
    d.rig.seq = 1
    d.rig.send(activity[1], 1 / RATE)  # out of order (seq 0 would be a restart: docs/protocol.md §6.4)
    d.rig.seq = 6
    d.rig.send(activity[6], 6 / RATE)  # gap of three
    d.rig.restart("seq-after-restart")
    d.rig.send(activity[0], 0.0)
    d.rig.restart("seq")
    d.rig.seq = 7
    d.rig.send(activity[7], 7 / RATE)  # a late message from the replaced session
    receive(d.display, 5)
    stats = stats_once(d, lambda s: s["received"] - before["received"] >= 3 * 11 + 8)  # the last is refused
    assert stats["rejected"] == {
        **dict.fromkeys(bad_messages(n), 3),
        "duplicate": 1,
        "out_of_order": 1,
        "old_session": 1,
    }
    assert stats["received"] - before["received"] == 3 * 11 + 8
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
    assert d.rig.wait_for_subscriber(HANG_GUARD_S)  # the daemon's SUB reconnects and subscribes again
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
    for k, a in enumerate(activity):  # 10 s of input as fast as the rig can send: [stream] recv_hwm holds it
        d.rig.send(a, k / RATE)
    _, headers = receive(d.display, 300)
    assert [h.seq_newest for h in headers] == list(range(300))
    stats = d.stats()
    assert stats["lost"] == 0 and d.display.lost == 0


def headers_until(client, session: str, last_seq: int, into: list | None = None) -> list:
    """Headers a display reads until the frame `last_seq` of `session` (the wait is a hang guard)."""
    into = [] if into is None else into
    while not into or (into[-1].session, into[-1].seq) != (session, last_seq):
        item = client.receive(timeout_s=HANG_GUARD_S)
        assert item is not None, f"{session} frame {last_seq} never arrived ({len(into)} read)"
        into.append(item[1])
    return into


def test_slow_absent_and_late_subscribers_never_hold_the_daemon_back(
    start_daemon, tiny_mouse, stream_endpoints
):
    # Queues decide who loses frames, not speed: a subscriber that reads holds send_hwm + its own
    # 1000 frames, more than the session's `total`; one that never reads holds 5 + send_hwm + what
    # the socket buffers take, far fewer.
    d = start_daemon(stream=StreamConfig(send_hwm=100))
    n, total = tiny_mouse.n_neurons, 400
    d.rig.restart("nobody-listening")
    for k in range(50):
        d.rig.send(np.ones(n, np.float32), k / RATE)
    assert stats_once(d, lambda s: s["emitted"] >= 50)["emitted"] == 50  # decoded with no subscriber

    slow = ReconClient(stream_endpoints["recon"], hwm=5)  # subscribed, never reads
    d.attach(slow)
    d.attach(d.display)
    shown = []
    display = threading.Thread(target=headers_until, args=(d.display, "busy", total - 1, shown), daemon=True)
    display.start()
    d.rig.restart("busy")
    for k in range(total // 2):  # as fast as the rig can send: no subscriber holds the daemon back
        d.rig.send(np.ones(n, np.float32), k / RATE)
    late = ReconClient(stream_endpoints["recon"])  # a display joining mid-session gets the rest of it
    sent = total // 2
    while (first := late.receive(timeout_s=0.05)) is None:  # sending on until its first frame comes
        assert sent < total, "the late subscriber got no frame"
        d.rig.send(np.ones(n, np.float32), sent / RATE)
        sent += 1
    for k in range(sent, total):
        d.rig.send(np.ones(n, np.float32), k / RATE)
    late_seqs = [h.seq for h in headers_until(late, "busy", total - 1, [first[1]])]
    assert late_seqs == list(range(late_seqs[0], total)) and late.lost == 0  # none lost since it joined
    display.join(HANG_GUARD_S)
    assert [h.seq_newest for h in shown] == list(range(total)) and d.display.lost == 0
    stray = 0
    while slow.receive(timeout_s=0.2) is not None:
        stray += 1
    assert stray < total // 2  # the slow subscriber lost frames; nobody waited for it
    assert d.stats()["emitted"] >= 50 + total
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


def test_a_jump_in_rig_time_emits_only_the_last_ticks_and_counts_the_skipped(
    step_daemon, untrained_artifact, tiny_mouse
):
    s = step_daemon(stream=StreamConfig(max_catchup_ticks=4))
    s.attach(s.display)
    n = tiny_mouse.n_neurons
    half = n // 2
    volumes = random_activity(4, n, seed=8)
    s.rig.restart("jump")
    t0 = 50.0  # tick 1500 of the grid
    for volume, tick in zip(volumes, [0, 1, 2, 20], strict=True):  # ticks 3..19 never acquired
        for plane, (first, stop) in enumerate([(0, half), (half, n)]):
            t = t0 + (tick + plane / 2) / RATE
            s.rig.send(
                volume[first:stop],
                t,
                first=first,
                plane=plane,
                n_planes=2,
                behavior=BEHAVIOR,
                pupil_center=PUPIL,
            )
    s.rig.send(
        volumes[0][:half], t0 + 21 / RATE, first=0, plane=0, n_planes=2, behavior=BEHAVIOR, pupil_center=PUPIL
    )
    s.deliver(9)
    # A tick goes out once a sample acquired after it arrives, or once every plane's next sample is
    # due after it (tick 2: plane 0's tick-2 sample, plane 1's next at 2.5); tick 20's message
    # completes 3..19, of which only the last 4 go out; tick 21's plane 0 completes tick 21.
    ticks = [0, 1, 2, 16, 17, 18, 19, 20, 21]
    frames, headers = receive(s.display, len(ticks))
    assert s.daemon.stats.dropped == {"catchup_ticks": 13}  # ticks 3..15
    rest = np.zeros(n, np.float32)
    planes = [(0, None), (1, 0), (2, 1), (2, 2), (2, 2), (2, 2), (2, 2), (3, 2), (0, 3)]  # volume per plane
    held = np.stack(
        [
            np.concatenate([volumes[p0][:half], (rest if p1 is None else volumes[p1])[half:]])
            for p0, p1 in planes
        ]
    )
    np.testing.assert_allclose(frames, offline_frames(untrained_artifact, held), atol=1e-4)
    lookahead = s.daemon.backend.artifact.meta.lookahead
    np.testing.assert_allclose([h.t_stim for h in headers], t0 + (np.array(ticks) - lookahead) / RATE)
    assert [h.seq for h in headers] == list(range(len(ticks))) and s.display.lost == 0  # no frame lost
    # stale: plane 1 not yet acquired at tick 0, both planes' tick-2 values old by tick 16, plane 1's
    # tick-2.5 value old by tick 20
    plane_1 = (n - half) / n
    expected_stale = [plane_1, 0, 0, 1, 1, 1, 1, plane_1, 0]
    assert [h.stale for h in headers] == pytest.approx(expected_stale, abs=1 / n)


def test_uint8_output_is_each_frame_rounded_and_clipped(step_daemon, untrained_artifact, tiny_mouse):
    backend = open_backend(untrained_artifact, "torch")
    real_step, decoded = backend.step, []

    def wide_step(activity, behavior):  # frames beyond 0..255 on both sides, with fractions
        decoded.append(real_step(activity, behavior) * 3.0 - 250.0)
        return decoded[-1]

    backend.step = wide_step
    s = step_daemon(backend=backend, stream=StreamConfig(output_dtype="uint8"))
    s.attach(s.display)
    activity = random_activity(8, tiny_mouse.n_neurons, seed=6)
    send_clip(s, activity, "bytes")
    s.deliver(len(activity))
    frames, _ = receive(s.display, len(activity))
    assert frames.dtype == np.uint8 and s.display.rejected == 0  # the header says uint8, 1 byte a pixel
    floats = np.stack(decoded[-len(activity) :])
    assert (floats < 0).any() and (floats > 255).any() and (np.rint(floats) != np.floor(floats)).any()
    np.testing.assert_array_equal(frames, np.clip(np.rint(floats), 0, 255))


def test_integer_and_half_precision_input_is_decoded_as_its_values(
    step_daemon, untrained_artifact, tiny_mouse
):
    s = step_daemon()
    s.attach(s.display)
    rng = np.random.default_rng(7)
    counts = rng.integers(-3, 12, (10, tiny_mouse.n_neurons))  # a rig's raw integer activity
    inputs = {"int16": counts.astype(np.int16), "uint16": np.abs(counts).astype(np.uint16)}
    inputs["float16"] = random_activity(10, tiny_mouse.n_neurons, seed=9).astype(np.float16)
    for name, values in inputs.items():
        send_clip(s, values, name)
        s.deliver(len(values))
        frames, headers = receive(s.display, len(values))
        assert {h.session for h in headers} == {name}
        expected = offline_frames(untrained_artifact, values.astype(np.float32))
        np.testing.assert_allclose(frames, expected, atol=1e-4, err_msg=name)


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
    stats = stats_once(d, lambda s: s["received"] >= 5)
    assert stats["dropped"] == {"internal_error": 1} and stats["emitted"] == 4


def null_peer(endpoint: str) -> None:
    """A peer without CurveZMQ that sends its whole ZMTP 3.0 greeting (mechanism NULL) before it
    reads, then waits for the daemon to hang up: the daemon always reads the mechanism it names.

    A libzmq client without CurveZMQ does not wait: it hangs up as soon as it reads the daemon's
    greeting, often before its own mechanism has left (a third of its tries on the 2-core box), and
    the daemon, having seen only the hang-up, counts `handshake_failed`, not `refused_protocol`.
    That client saw the mismatch itself, so it never tries again: its last refusal is always that one.
    """
    with socket.socket(socket.AF_UNIX) as peer:
        peer.settimeout(HANG_GUARD_S)
        peer.connect(endpoint.removeprefix("ipc://"))
        peer.sendall(b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\0") + bytes(32))
        while peer.recv(4096):  # the daemon's greeting, then end of file
            pass


def control_refusals(peers: dict) -> int:
    return peers.get("control.refused_protocol", 0) + peers.get("control.handshake_failed", 0)


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
        plain.request("ping")  # then it holds a fresh socket, refused in turn while we wait
    null_peer(stream_endpoints["control"])
    peers = stats_once(
        d,
        lambda s: (
            s["peers"].get("recon.refused_auth")
            and s["peers"].get("control.refused_protocol")
            and control_refusals(s["peers"]) >= 2
        ),
    )["peers"]
    assert peers.get("recon.refused_auth", 0) >= 1  # the stranger's key is not listed
    assert peers.get("control.refused_protocol", 0) >= 1  # the null peer's greeting names no CurveZMQ
    assert control_refusals(peers) >= 2  # the plain client was refused too, counted as either
    assert peers.get("recon.handshake_ok", 0) >= 1 and peers.get("activity.handshake_ok", 0) >= 1
    assert stranger.receive(timeout_s=0.2) is None
    stranger.close()
    plain.close()


def records_on_disk(record: Path) -> tuple[int, int]:
    """(activity, recon) records in the complete chunks written so far."""
    if not record.is_dir():
        return 0, 0
    got = read_recording(record)
    return len(got.activity.get("seq", ())), len(got.recon.get("seq", ()))


def write_config(tmp_path, endpoints, artifact, record_dir) -> str:
    path = tmp_path / "rig.toml"
    path.write_text(
        f'[model]\nartifact = "{artifact}"\nbackend = "torch"\n'
        f'[endpoints]\nactivity = "{endpoints["activity"]}"\nrecon = "{endpoints["recon"]}"\n'
        f'control = "{endpoints["control"]}"\n'
        f'[recorder]\ndir = "{record_dir}"\nchunk_seconds = 0.5\n'
    )
    return str(path)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_recording_survives_the_daemon_being_stopped(
    how, tmp_path, stream_endpoints, untrained_artifact, tiny_mouse
):
    from stream_decoder.rig.replay import Rig

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
        with ControlClient(stream_endpoints["control"], timeout_s=HANG_GUARD_S) as control:
            for k in range(30):
                rig.send(np.full(n, k, np.float32), k / RATE)
            until(lambda: records_on_disk(record) == (30, 30))  # handed over, then written, whenever
            rig.send(np.full(n, 30, np.float32), 30 / RATE)  # opens a chunk that stays open for 0.5 s
            until(lambda: control.request("stats")["emitted"] >= 31)
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
    else:  # at most the open chunk (the last message and its frame) is gone, the rest reads back
        for kept in (got.activity["seq"], got.recon["seq_newest"]):  # 31 only if the kill came a chunk
            assert len(kept) in (30, 31)  # period or more after the send: a slow machine keeps it
            np.testing.assert_array_equal(kept, np.arange(len(kept)))
    np.testing.assert_array_equal(got.activity_values(7), np.full(n, 7, np.float32))
    assert set(got.activity["session"]) == {"recorded"}


def test_serve_refuses_a_bad_config_clearly(tmp_path, untrained_artifact, capsys):
    """The artifact exists: exit code 2 and the one-line message are the config's fault alone. (Were
    the key let through, serve would stop at the artifact's missing model.onnx, not serve forever.)"""
    from stream_decoder.cli import main

    assert not (untrained_artifact / "model.onnx").exists()
    path = tmp_path / "rig.toml"
    path.write_text(f'[model]\nartifact = "{untrained_artifact}"\n[stream]\nrate = 30\n')
    assert main(["serve", "--config", str(path)]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith(f"stream-decoder serve: error: {path}: unknown key(s) ['rate'] in [stream]; ")
    assert "'rate_hz'" in error


def test_endpoints_open_to_the_network_without_curve_are_warned_about_at_start_up(
    untrained_artifact, stream_endpoints, caplog
):
    from stream_decoder.stream.config import DaemonConfig, EndpointsConfig, ModelConfig
    from stream_decoder.stream.daemon import Daemon

    endpoints = EndpointsConfig(**{**stream_endpoints, "recon": "tcp://*:*"}, allow_remote=True)
    cfg = DaemonConfig(ModelConfig(untrained_artifact, "torch"), endpoints)
    Daemon(cfg, open_backend(untrained_artifact, "torch")).close()
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "recon" in warning.getMessage() and "[security] curve = true" in warning.getMessage()


# ---- restarts that keep their session id, and input that is probably the wrong one ----


def logged(caplog, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"event={event} " in r.getMessage()]


def test_info_names_the_neuron_set_and_input_timing_of_the_model(step_daemon, tiny_mouse):
    # docs/protocol.md §5.2, §5.3
    from test_protocol import documented_keys

    info = step_daemon().daemon.reply("info")
    assert (
        info["neuron_set"] == tiny_mouse.neuron_set() and info["data_fingerprint"] == tiny_mouse.fingerprint()
    )
    assert info["input_timing"] is None  # the untrained artifact records none
    assert list(info) == documented_keys("5.2")


def test_a_sender_restarting_at_seq_0_under_its_session_id_is_a_new_session(
    step_daemon, untrained_artifact, tiny_mouse, caplog
):
    # docs/protocol.md §6.4: seq back to 0
    s = step_daemon()
    s.attach(s.display)
    first, second = random_activity(20, tiny_mouse.n_neurons, 4), random_activity(20, tiny_mouse.n_neurons, 5)
    send_clip(s, first, "rig")
    send_clip(s, second, "rig")  # the rig software restarted: the same id, seq from 0 again
    s.deliver(40)
    frames, headers = receive(s.display, 40)
    np.testing.assert_allclose(frames[20:], offline_frames(untrained_artifact, second), atol=1e-4)  # reset
    assert [h.seq for h in headers[20:]] == list(range(20)) and {h.session for h in headers} == {"rig"}
    assert s.daemon.stats.rejected == {} and s.daemon.stats.warnings == {"session_restarted": 1}
    (warning,) = logged(caplog, "session_restarted")
    assert "session=rig" in warning and "seq went back to 0" in warning and "own session id" in warning


def test_a_restart_that_lost_its_first_messages_is_taken_after_30_refused_in_a_row(
    step_daemon, untrained_artifact, tiny_mouse, caplog
):
    # docs/protocol.md §6.4: seq 0 lost on the way, so the run of refusals tells
    from stream_decoder.stream.assembly import RESTART_AFTER_REFUSED

    s = step_daemon()
    s.attach(s.display)
    activity = random_activity(100, tiny_mouse.n_neurons, seed=6)
    send_clip(s, activity[:60], "rig")
    s.rig.restart("rig")
    s.rig.seq = 3  # seq 0..2 of the restarted run never arrived
    for k, a in enumerate(activity[60:]):
        s.rig.send(a, 200.0 + k / RATE, behavior=BEHAVIOR, pupil_center=PUPIL)
    s.deliver(100)
    refused = RESTART_AFTER_REFUSED - 1
    frames, headers = receive(s.display, 100 - refused)
    assert s.daemon.stats.rejected == {"out_of_order": refused}
    assert s.daemon.stats.warnings == {"session_restarted": 1}
    assert [h.seq_newest for h in headers[60:]] == list(range(3 + refused, 43)) and headers[60].seq == 0
    expected = offline_frames(untrained_artifact, activity[60 + refused :])
    np.testing.assert_allclose(frames[60:], expected, atol=1e-4)  # decoded from a fresh state
    (warning,) = logged(caplog, "session_restarted")
    assert f"{RESTART_AFTER_REFUSED} messages in a row were refused as out_of_order" in warning


def test_a_single_late_message_never_restarts_a_session(step_daemon, tiny_mouse):
    # docs/protocol.md §6.3: refusals interleaved with accepted messages are no run
    s = step_daemon()
    s.rig.restart("rig")
    ones = np.ones(tiny_mouse.n_neurons, np.float32)
    s.rig.send(ones, 0.0)
    for k in range(1, 80):
        s.rig.seq = k
        s.rig.send(ones, k / RATE)
        s.rig.seq = k if k % 2 else k - 1  # then that one again, or the one before it
        s.rig.send(ones, k / RATE)
    s.deliver(1 + 2 * 79)
    assert s.daemon.stats.rejected == {"duplicate": 40, "out_of_order": 39}
    assert s.daemon.stats.warnings == {} and s.daemon.stats.sessions == 1 and s.daemon.stats.emitted == 80


def test_most_neurons_never_arriving_is_counted_and_warned_about(step_daemon, tiny_mouse, caplog):
    # docs/protocol.md §6.5 neurons_missing: data for a tenth of the model's neurons
    from stream_decoder.stream.watch import MISSING_RUN

    s = step_daemon()
    n = tiny_mouse.n_neurons
    s.rig.restart("partial")
    for k, a in enumerate(random_activity(45, n // 10, seed=7)):
        s.rig.send(a, k / RATE)
    s.rig.restart("whole")  # all neurons: no warning
    for k, a in enumerate(random_activity(45, n, seed=8)):
        s.rig.send(a, k / RATE)
    s.deliver(90)
    assert s.daemon.stats.emitted == 90
    assert s.daemon.stats.warnings == {"neurons_missing": 45 - MISSING_RUN + 1}
    (warning,) = logged(caplog, "neurons_missing")
    assert "session=partial" in warning and f"missing={1 - (n // 10) / n:.6g}" in warning
    assert f"neurons={n}" in warning and "info.neuron_set" in warning


def test_multi_plane_input_into_a_single_plane_model_is_counted_and_warned_about(
    step_daemon, tiny_mouse, tmp_path, caplog
):
    # docs/protocol.md §6.5 input_timing, against §5.2's input_timing
    import torch

    from stream_decoder.decoder.artifact import save_artifact
    from stream_decoder.decoder.student import Student, StudentConfig

    torch.manual_seed(0)
    student = Student(StudentConfig(n_neurons=tiny_mouse.n_neurons, latent=32, lookahead=2))
    timing = {"n_planes": 1, "volume_rate_hz": 30.0}
    folder = tmp_path / "single-plane"
    save_artifact(folder, student, tiny_mouse.unit_ids, tiny_mouse.fingerprint(), {"input_timing": timing})
    s = step_daemon(backend=open_backend(folder, "torch"))
    assert s.daemon.reply("info")["input_timing"] == timing
    n = tiny_mouse.n_neurons
    half = n // 2
    s.rig.restart("volumes")
    for k in range(10):
        for plane, (first, stop) in enumerate([(0, half), (half, n)]):
            s.rig.send(
                np.ones(stop - first, np.float32),
                50 + (2 * k + plane) / RATE,
                first=first,
                plane=plane,
                n_planes=2,
            )
    s.rig.restart("single")
    s.rig.send(np.ones(n, np.float32), 60.0)  # what the model was made for
    s.deliver(21)
    assert s.daemon.stats.warnings == {"input_timing": 20} and s.daemon.stats.rejected == {}
    (warning,) = logged(caplog, "input_timing_mismatch")
    assert "n_planes=2" in warning and "model_n_planes=1" in warning and "session=volumes" in warning
