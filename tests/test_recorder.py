"""The recorder writes every record in whole chunks and reads them back in order."""

import json
import threading

import numpy as np
import pytest

from stream_decoder.stream.protocol import Activity, ReconHeader
from stream_decoder.stream.recorder import Recorder, read_recording

N, SHAPE = 12, (4, 6)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def activity(seq, session="a", first=0, n=N):
    values = np.arange(n, dtype=np.float16) + seq
    return Activity(
        session,
        seq,
        seq / 30,
        values,
        first=first,
        plane=first // 6,
        n_planes=2,
        behavior=(1.0, float(seq)) if seq % 2 else None,
        pupil_center=(3.0, 4.0),
    )


def recon(seq, session="a"):
    return ReconHeader(session, seq, seq / 30, seq, seq / 30 - 0.1, "m", 0.5), np.full(SHAPE, seq, np.uint8)


def test_records_read_back_exactly_across_chunks(tmp_path):
    clock = FakeClock()
    rec = Recorder(tmp_path, N, SHAPE, np.uint8, rate_hz=30, chunk_seconds=1.0, clock=clock)
    for seq in range(70):
        clock.now = seq / 30
        session = "a" if seq < 40 else "b"
        rec.activity(activity(seq, session, first=6 * (seq % 2), n=6), received=1000.0 + seq)
        rec.recon(*recon(seq, session), sent=2000.0 + seq)
    rec.close()
    files = sorted(p.name for p in tmp_path.glob("*.npz"))
    assert files == [f"{kind}-{i:06d}.npz" for kind in ("activity", "recon") for i in range(3)]  # 1 s each
    got = read_recording(tmp_path)
    np.testing.assert_array_equal(got.activity["seq"], np.arange(70))
    assert list(got.activity["session"]) == ["a"] * 40 + ["b"] * 30
    np.testing.assert_array_equal(got.activity["first"], 6 * (np.arange(70) % 2))
    np.testing.assert_array_equal(got.activity["received"], 1000.0 + np.arange(70))
    for i in (0, 31, 69):
        np.testing.assert_array_equal(got.activity_values(i), np.arange(6, dtype=np.float32) + i)
    assert np.isnan(got.activity["behavior"][0, :2]).all() and got.activity["behavior"][1, 1] == 1.0
    np.testing.assert_array_equal(got.activity["behavior"][:, 2:], np.tile([3.0, 4.0], (70, 1)))
    np.testing.assert_array_equal(got.recon["frames"][:, 0, 0], np.arange(70))
    assert got.recon["frames"].dtype == np.uint8
    np.testing.assert_allclose(got.recon["t_stim"], np.arange(70) / 30 - 0.1)
    index = [json.loads(line) for line in (tmp_path / "index.jsonl").read_text().splitlines()]
    assert sum(e["records"] for e in index if e["kind"] == "activity") == 70


def test_idle_tick_flushes_an_open_chunk(tmp_path):
    clock = FakeClock()
    rec = Recorder(tmp_path, N, SHAPE, np.float32, chunk_seconds=1.0, clock=clock)
    rec.activity(activity(0), received=0.0)
    rec.tick()
    clock.now = 1.5
    rec.tick()
    rec._todo.put(None)  # let the writer finish what it was handed, then look at the disk
    rec._writer.join()
    assert [p.name for p in tmp_path.glob("*.npz")] == ["activity-000000.npz"]


def test_a_ten_fold_burst_rolls_chunks_early_and_loses_nothing(tmp_path):
    clock = FakeClock()
    rec = Recorder(tmp_path, N, SHAPE, np.float32, rate_hz=30, chunk_seconds=1.0, clock=clock)
    for seq in range(900):  # 3 s at 300 messages/s, ten times the nominal rate
        clock.now = seq / 300
        rec.activity(activity(seq), received=0.0)
    rec.close()
    assert rec.dropped == 0
    np.testing.assert_array_equal(read_recording(tmp_path).activity["seq"], np.arange(900))


def test_a_stalled_disk_drops_records_instead_of_blocking(tmp_path, monkeypatch):
    import stream_decoder.stream.recorder as recorder

    release = threading.Event()
    write = recorder._write_chunk
    monkeypatch.setattr(recorder, "_write_chunk", lambda path, chunk: (release.wait(), write(path, chunk)))
    clock = FakeClock()
    rec = Recorder(tmp_path, N, SHAPE, np.float32, chunk_seconds=1.0, clock=clock)
    try:  # the disk stays stalled until the test says so, however long the loop takes
        for seq in range(10):  # one record per chunk period: ten chunks for a pool of four buffers
            clock.now = seq * 1.0
            rec.activity(activity(seq), received=0.0)
        assert rec.dropped > 0
    finally:
        release.set()
    rec.close()
    kept = read_recording(tmp_path).activity["seq"]
    assert len(kept) + rec.dropped == 10 and list(kept) == sorted(kept)


def test_a_restarted_recorder_appends(tmp_path):
    for start in (0, 5):
        rec = Recorder(tmp_path, N, SHAPE, np.float32)
        for seq in range(start, start + 5):
            rec.activity(activity(seq), received=0.0)
        rec.close()
    np.testing.assert_array_equal(read_recording(tmp_path).activity["seq"], np.arange(10))


def test_a_half_written_chunk_is_ignored(tmp_path):
    rec = Recorder(tmp_path, N, SHAPE, np.float32)
    rec.activity(activity(0), received=0.0)
    rec.close()
    (tmp_path / "activity-000001.tmp").write_bytes(b"PK\x03\x04 truncated")
    assert len(read_recording(tmp_path).activity["seq"]) == 1


def test_missing_recording_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_recording(tmp_path / "nowhere")
