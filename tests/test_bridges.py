"""Rig bridges against writers that mimic their sources: Scanbox's memory-mapped file and the TIFF
files ScanImage writes. A SUB socket on the rig receives what each bridge publishes."""

import io
import threading

import numpy as np
import pytest
import tifffile
import zmq
from conftest import HANG_GUARD_S

from stream_decoder.rig.replay import Rig
from stream_decoder.rig.scanbox import ScanboxBridge
from stream_decoder.rig.tiff_watch import TiffFolderBridge
from stream_decoder.stream.protocol import FRAME, decode_frame


@pytest.fixture
def rig_sub(stream_endpoints):
    """A rig (session "s") and a SUB socket subscribed to its frames."""
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.subscribe(FRAME)
    with Rig(stream_endpoints["activity"], session="s") as rig:
        sub.connect(stream_endpoints["activity"])
        assert rig.wait_for_subscriber(HANG_GUARD_S, topic=FRAME)
        yield rig, sub
    sub.close(linger=0)


def receive(sub, count: int, shape: tuple[int, int], n_planes: int = 1) -> list:
    """`count` frame messages, each already sent: the poll is a hang guard only."""
    frames = []
    for _ in range(count):
        assert sub.poll(HANG_GUARD_S * 1000), f"{len(frames)} of {count} published frames arrived"
        frames.append(decode_frame(sub.recv_multipart(), shape, n_planes))
    return frames


# ---- Scanbox ----


class ScanboxWriter:
    """Scanbox's side of its memory-mapped file (header, then channels A and B as MATLAB stores
    them: column-major, 65535 minus the PMT value). A frame goes only into a free buffer, its
    number last; into a full one it is lost, as Scanbox loses it."""

    def __init__(self, path, rows: int, cols: int, capacity: int = 16 * 16):
        np.zeros(16 + 2 * capacity, np.int16).tofile(path)
        self.mm = np.memmap(path, dtype=np.uint8, mode="r+")
        self.header = self.mm[:32].view("<i2")
        self.start(rows, cols)

    def start(self, rows: int, cols: int) -> None:
        self.header[1:4] = rows, cols, 0
        self.header[0] = -1

    def put(self, number: int, image: np.ndarray, channel_b: np.ndarray | None = None) -> bool:
        if self.header[0] >= 0:
            return False
        rows, cols = image.shape
        for k, pmt in enumerate((image, image if channel_b is None else channel_b)):
            start = 32 + k * rows * cols * 2
            self.mm[start : start + rows * cols * 2].view("<u2")[:] = (65535 - pmt).ravel(order="F")
        self.header[0] = number
        return True

    def stop(self) -> None:
        self.header[0] = -2


def images(rng, count: int, rows: int, cols: int) -> list[np.ndarray]:
    return [rng.integers(0, 65536, (rows, cols), dtype=np.uint16) for _ in range(count)]


def test_scanbox_frames_are_published_with_their_time_and_plane_and_the_buffer_handed_back(rig_sub, tmp_path):
    rig, sub = rig_sub
    rng = np.random.default_rng(0)
    writer = ScanboxWriter(tmp_path / "scanbox.mmap", 5, 7)
    bridge = ScanboxBridge(tmp_path / "scanbox.mmap", rig, rate_hz=15.0, n_planes=2, t0=100.0)
    assert bridge.poll_once() == "idle"
    shown = images(rng, 6, 5, 7)
    for number in range(3):
        assert writer.put(number, shown[number])
        assert bridge.poll_once() == "frame"
        assert writer.header[0] == -1  # handed back: Scanbox may write the next one
    assert bridge.poll_once() == "idle"
    assert writer.put(3, shown[3]) and not writer.put(4, shown[4])  # 4 is lost: the buffer was full
    assert bridge.poll_once() == "frame"
    assert writer.put(5, shown[5]) and bridge.poll_once() == "frame"
    got = receive(sub, 5, (5, 7), n_planes=2)
    assert [f.seq for f in got] == [0, 1, 2, 3, 5]  # the daemon sees frame 4 as lost
    for frame, number in zip(got, [0, 1, 2, 3, 5], strict=True):
        np.testing.assert_array_equal(frame.image, shown[number])  # row-major, bright where it glows
        assert frame.session == "s" and frame.plane == number % 2 and frame.n_planes == 2
        assert frame.t == pytest.approx(100.0 + number / 15.0)
    assert bridge.published == 5 and bridge.missed == 1

    writer.stop()
    assert bridge.poll_once() == "stopped"
    writer.start(4, 6)  # the next acquisition, at another frame size: a session of its own
    assert writer.put(0, shown[0][:4, :6]) and bridge.poll_once() == "frame"
    (frame,) = receive(sub, 1, (4, 6), n_planes=2)
    assert frame.session == "s-2" and frame.seq == 0 and frame.t == pytest.approx(100.0)
    np.testing.assert_array_equal(frame.image, shown[0][:4, :6])
    assert bridge.acquisitions == 2


def test_scanbox_counts_on_past_the_saturated_frame_number_and_restarts_where_numbers_go_back(
    rig_sub, tmp_path
):
    rig, sub = rig_sub
    rng = np.random.default_rng(1)
    writer = ScanboxWriter(tmp_path / "scanbox.mmap", 3, 4)
    clock = iter([500.0, 900.0])
    bridge = ScanboxBridge(
        tmp_path / "scanbox.mmap", rig, rate_hz=10.0, n_planes=3, clock=lambda: next(clock)
    )
    for number, image in zip([32766, 32767, 32767, 7], images(rng, 4, 3, 4), strict=True):
        assert writer.put(number, image) and bridge.poll_once() == "frame"
    got = receive(sub, 4, (3, 4), n_planes=3)
    # Joined mid-acquisition: the host's clock at the first frame is its time.
    assert [f.t for f in got[:3]] == pytest.approx([500.0, 500.1, 500.2])
    assert [f.plane for f in got[:3]] == [32766 % 3, 32767 % 3, 32768 % 3]
    assert [(f.session, f.seq) for f in got] == [("s", 0), ("s", 1), ("s", 2), ("s-2", 0)]
    assert got[3].t == pytest.approx(900.0) and got[3].plane == 7 % 3  # -2 missed: numbers went back


def test_scanbox_channel_b_and_stored_values(rig_sub, tmp_path):
    rig, sub = rig_sub
    rng = np.random.default_rng(2)
    writer = ScanboxWriter(tmp_path / "scanbox.mmap", 4, 6)
    a, b = images(rng, 2, 4, 6)
    bridge = ScanboxBridge(tmp_path / "scanbox.mmap", rig, rate_hz=30.0, t0=0.0, channel="B", invert=False)
    assert writer.put(0, a, channel_b=b) and bridge.poll_once() == "frame"
    (frame,) = receive(sub, 1, (4, 6))
    np.testing.assert_array_equal(frame.image, 65535 - b)


def test_scanbox_run_returns_once_the_acquisition_stops(tmp_path):
    writer = ScanboxWriter(tmp_path / "scanbox.mmap", 2, 2)
    writer.stop()  # left from an earlier acquisition: not this one's end

    class StoppingRig:  # Scanbox stops imaging right after the second frame is published
        session, sent = "s", []

        def send_frame(self, image, t, **fields):
            self.sent.append(t)
            if len(self.sent) == 1:
                writer.put(1, np.ones((2, 2), np.uint16))
            else:
                writer.stop()

    bridge = ScanboxBridge(tmp_path / "scanbox.mmap", StoppingRig(), rate_hz=2.0, t0=0.0)
    assert bridge.poll_once() == "stopped"
    writer.start(2, 2)
    writer.put(0, np.zeros((2, 2), np.uint16))
    bridge.run(threading.Event(), idle_sleep_s=0.0, once=True)
    assert StoppingRig.sent == [0.0, 0.5] and bridge.acquisitions == 1


def test_scanbox_refuses_what_scanbox_does_not_write(tmp_path):
    rig = Rig("inproc://scanbox-errors", session="s")
    with pytest.raises(FileNotFoundError, match=r"scanbox\.mmap does not exist"):
        ScanboxBridge(tmp_path / "scanbox.mmap", rig, rate_hz=30.0)
    writer = ScanboxWriter(tmp_path / "scanbox.mmap", 8, 8, capacity=8 * 8)
    with pytest.raises(ValueError, match="frame rate > 0"):
        ScanboxBridge(tmp_path / "scanbox.mmap", rig, rate_hz=0.0)
    bridge = ScanboxBridge(tmp_path / "scanbox.mmap", rig, rate_hz=30.0)
    writer.header[1:3] = 100, 100  # more than the file holds
    writer.header[0] = 0
    with pytest.raises(ValueError, match=r"declares 100 x 100 frames, channel A needing 20032"):
        bridge.poll_once()
    writer.start(8, 8)
    assert writer.put(0, np.zeros((8, 8), np.uint16)) and bridge.poll_once() == "frame"
    writer.header[1:3] = 4, 4
    writer.header[0] = 1
    with pytest.raises(ValueError, match=r"changed from 8 x 8 to 4 x 4 at frame 1, within an acquisition"):
        bridge.poll_once()
    rig.close(linger_ms=0)


# ---- TIFF folder ----


def stack(rng, count: int, rows: int = 5, cols: int = 7, dtype=np.uint16) -> np.ndarray:
    return rng.integers(0, np.iinfo(dtype).max, (count, rows, cols), dtype=dtype, endpoint=True)


def tiff_bytes(pages: np.ndarray) -> tuple[bytes, list[int]]:
    """A TIFF written page by page, as an acquisition writes it, and its length after each page."""
    buf, ends = io.BytesIO(), []
    with tifffile.TiffWriter(buf) as tif:
        for page in pages:
            tif.write(page, photometric="minisblack", contiguous=False)
            ends.append(len(buf.getvalue()))
    return buf.getvalue(), ends


def test_tiff_pages_of_new_files_are_published_in_name_order_across_files(rig_sub, tmp_path):
    rig, sub = rig_sub
    rng = np.random.default_rng(3)
    tifffile.imwrite(tmp_path / "old_00001.tif", stack(rng, 2), photometric="minisblack")
    bridge = TiffFolderBridge(tmp_path, rig, rate_hz=30.0, n_planes=2, t0=10.0)
    assert bridge.poll_once() == 0  # an earlier acquisition's file
    first, second = stack(rng, 3), stack(rng, 2, dtype=np.uint8)
    tifffile.imwrite(tmp_path / "acq_00002.tif", second, photometric="minisblack")
    tifffile.imwrite(tmp_path / "acq_00001.tif", first, photometric="minisblack")
    (tmp_path / "notes.txt").write_text("not a TIFF")
    assert bridge.poll_once() == 5 and bridge.poll_once() == 0
    got = receive(sub, 5, (5, 7), n_planes=2)
    for k, (frame, page) in enumerate(zip(got, [*first, *second], strict=True)):
        assert frame.seq == k and frame.plane == k % 2 and frame.t == pytest.approx(10.0 + k / 30.0)
        np.testing.assert_array_equal(frame.image, page)
    assert got[3].image.dtype == np.uint16  # uint8 pages: converted, every value kept
    assert bridge.report() == "published 5 pages of 2 file(s)"


def test_tiff_file_still_being_written_is_read_as_its_pages_complete(rig_sub, tmp_path):
    rig, sub = rig_sub
    rng = np.random.default_rng(4)
    pages = stack(rng, 5)
    data, ends = tiff_bytes(pages)
    later = stack(rng, 1)
    bridge = TiffFolderBridge(tmp_path, rig, rate_hz=5.0, t0=0.0)
    growing = tmp_path / "acq_00001.tif"
    growing.write_bytes(data[:3])  # not even its header yet
    assert bridge.poll_once() == 0
    growing.write_bytes(data[: (ends[1] + ends[2]) // 2])  # pages 0, 1 and half of page 2
    tifffile.imwrite(tmp_path / "acq_00002.tif", later, photometric="minisblack")
    assert bridge.poll_once() == 2  # the later file waits: pages go out in acquisition order
    growing.write_bytes(data[: ends[3]])
    assert bridge.poll_once() == 2  # pages 2 and 3; page 3 points to page 4, not written yet
    growing.write_bytes(data)
    assert bridge.poll_once() == 2  # page 4, then the later file
    assert bridge.poll_once() == 0
    got = receive(sub, 6, (5, 7))
    assert [f.seq for f in got] == [0, 1, 2, 3, 4, 5] and got[5].t == pytest.approx(5 / 5.0)
    for frame, page in zip(got, [*pages, later[0]], strict=True):
        np.testing.assert_array_equal(frame.image, page)


def test_tiff_appended_pages_are_picked_up_on_the_next_poll(rig_sub, tmp_path):
    rig, sub = rig_sub
    rng = np.random.default_rng(5)
    pages = stack(rng, 5, dtype=np.int16)
    bridge = TiffFolderBridge(tmp_path, rig, rate_hz=30.0, n_planes=3, t0=0.0)
    tifffile.imwrite(tmp_path / "acq.tif", pages[:3], photometric="minisblack")
    assert bridge.poll_once() == 3 and bridge.poll_once() == 0
    with tifffile.TiffWriter(tmp_path / "acq.tif", append=True) as tif:
        for page in pages[3:]:
            tif.write(page, photometric="minisblack", contiguous=False)
    assert bridge.poll_once() == 2
    got = receive(sub, 5, (5, 7), n_planes=3)
    assert [f.plane for f in got] == [0, 1, 2, 0, 1] and [f.seq for f in got] == [0, 1, 2, 3, 4]
    for frame, page in zip(got, pages, strict=True):
        assert frame.image.dtype == np.int16
        np.testing.assert_array_equal(frame.image, page)


def test_tiff_existing_files_on_request_and_lossy_pages_refused(rig_sub, tmp_path):
    rig, sub = rig_sub
    rng = np.random.default_rng(6)
    existing = stack(rng, 1)
    tifffile.imwrite(tmp_path / "a.tif", existing, photometric="minisblack")
    bridge = TiffFolderBridge(tmp_path, rig, rate_hz=30.0, t0=0.0, include_existing=True)
    assert bridge.poll_once() == 1
    (frame,) = receive(sub, 1, (5, 7))
    np.testing.assert_array_equal(frame.image, existing[0])
    tifffile.imwrite(tmp_path / "b.tif", rng.random((2, 5, 7), dtype=np.float32), photometric="minisblack")
    with pytest.raises(ValueError, match=r"b\.tif page 0 is float32, which does not fit uint16 or int16"):
        bridge.poll_once()
    with pytest.raises(FileNotFoundError, match="does not exist or is not a folder"):
        TiffFolderBridge(tmp_path / "missing", rig, rate_hz=30.0)


# ---- the CLI ----


def test_cli_bridge_scanbox_publishes_until_the_acquisition_stops(stream_endpoints, tmp_path, capsys):
    from conftest import until

    from stream_decoder.cli import main

    writer = ScanboxWriter(tmp_path / "scanbox.mmap", 3, 5)
    endpoint = stream_endpoints["activity"]
    argv = ["bridge", "scanbox", str(tmp_path / "scanbox.mmap"), "--rate-hz", "10", "--t0", "0"]
    argv += ["--once", "--endpoint", endpoint, "--session", "rig-1", "--wait-s", str(HANG_GUARD_S)]
    codes = []
    bridge = threading.Thread(target=lambda: codes.append(main(argv)))
    bridge.start()
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.subscribe(FRAME)
    sub.connect(endpoint)
    shown = images(np.random.default_rng(7), 2, 3, 5)
    for number, image in enumerate(shown):
        until(lambda: writer.put(number, image), f"a free buffer for frame {number}")  # noqa: B023
        (frame,) = receive(sub, 1, (3, 5))
        assert (frame.session, frame.seq, frame.t) == ("rig-1", number, number / 10)
        np.testing.assert_array_equal(frame.image, image)
    until(lambda: writer.header[0] == -1, "frame 1 handed back")
    writer.stop()
    bridge.join(HANG_GUARD_S)
    sub.close(linger=0)
    assert codes == [0]
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "bridge: published 2 frames of 1 acquisition(s); 0 missed (Scanbox's buffer was still full)"
    )


def test_cli_bridge_errors_are_one_line(tmp_path, capsys):
    from stream_decoder.cli import main

    argv = ["bridge", "tiff", str(tmp_path / "missing"), "--rate-hz", "30", "--endpoint", "inproc://cli-err"]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    missing = tmp_path / "missing"
    assert line == f"stream-decoder bridge: error: TIFF folder {missing} does not exist or is not a folder"
    assert (
        main(["bridge", "scanbox", str(tmp_path / "x.mmap"), "--rate-hz", "30", "--endpoint", "tcp://x"]) == 2
    )
    assert "needs a port" in capsys.readouterr().err


def test_ctrl_c_stops_the_bridge_between_polls_and_exits_130_in_one_line(
    stream_endpoints, tmp_path, monkeypatch, capsys
):
    import signal

    from stream_decoder.cli import main

    rigs, real_init = [], Rig.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        rigs.append(self)

    def ctrl_c(self):
        signal.raise_signal(signal.SIGINT)  # the handler sets the stop event; the poll finishes
        return 0

    monkeypatch.setattr(Rig, "__init__", init)
    monkeypatch.setattr(Rig, "wait_for_subscriber", lambda self, timeout_s, topic: True)
    monkeypatch.setattr(TiffFolderBridge, "poll_once", ctrl_c)
    before = signal.getsignal(signal.SIGINT)
    argv = ["bridge", "tiff", str(tmp_path), "--rate-hz", "30", "--endpoint", stream_endpoints["activity"]]
    assert main(argv) == 130
    (rig,) = rigs
    assert rig.sock.closed and signal.getsignal(signal.SIGINT) is before
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert err[-2:] == ["bridge: published 0 pages of 0 file(s)", "stream-decoder bridge: interrupted"]
