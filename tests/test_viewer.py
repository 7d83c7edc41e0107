"""The display's loop without a display or a daemon: newest frame only, stale frames counted,
losses counted once, and when it stops (clocks injected: nothing here depends on the scheduler)."""

import threading
from itertools import count

import numpy as np
import zmq

from stream_decoder.display.viewer import LiveFigures, MovieSink, paint, watch
from stream_decoder.stream.client import ReconClient
from stream_decoder.stream.protocol import ReconHeader, encode_recon


def header(seq: int, seq_newest: int | None = None, session: str = "s") -> ReconHeader:
    newest = seq if seq_newest is None else seq_newest
    return ReconHeader(session, seq, 100.0 + newest / 30, newest, 100.0 + newest / 30, "m", 0.0)


def frames(*seqs: int) -> list[tuple[np.ndarray, ReconHeader]]:
    return [(np.full((36, 64), seq, np.float32), header(seq)) for seq in seqs]


class LiveSink:
    """A window's stand-in: records what it was asked to draw."""

    live = True
    open = True

    def __init__(self):
        self.shown: list[int] = []
        self.captions: list[str] = []

    def caption(self, text: str) -> None:
        self.captions.append(text)

    def show(self, recon, truth, header) -> None:
        self.shown.append(header.seq)

    def idle(self) -> None:
        pass


class ScriptedClient:
    """A ReconClient's stand-in: each drain returns the next batch of the script, then nothing."""

    lost = 0

    def __init__(self, *batches):
        self.batches = list(batches)

    def drain(self, wait_s, limit=None):
        batch = self.batches.pop(0) if self.batches else []
        return batch if limit is None else batch[:limit]


def test_a_live_sink_shows_only_the_newest_of_what_arrived_and_counts_the_rest_stale():
    sink, figures = LiveSink(), LiveFigures()
    paint(frames(0, 1, 2), sink, None, figures, now_wall=100.5, now=0.0)
    assert sink.shown == [2] and figures.received == 3 and figures.shown == 1 and figures.stale_dropped == 2
    assert "stale dropped 2" in sink.captions[-1] and "latency p50" in sink.captions[-1]
    paint(frames(3), sink, None, figures, now_wall=101.0, now=1 / 30)
    assert sink.shown == [2, 3] and figures.stale_dropped == 2
    assert figures.fps() == 30.0  # the rate frames were shown, with the clock given


def test_a_movie_keeps_every_frame(tmp_path):
    sink, figures = MovieSink(tmp_path), LiveFigures()
    paint(frames(0, 1, 2), sink, None, figures, now_wall=100.5, now=0.0)
    assert [frame[0, 0] for frame, _, _ in sink.frames] == [0, 1, 2] and figures.stale_dropped == 0


def test_watch_paints_the_newest_of_each_drain_until_max_frames():
    sink = LiveSink()
    figures = watch(
        ScriptedClient(frames(0, 1, 2), [], frames(3, 4)), sink, max_frames=4, clock=count().__next__
    )
    assert sink.shown == [2, 3] and figures.received == 4 and figures.stale_dropped == 2


def test_the_timeout_counts_only_after_the_first_frame():
    # 10 silent seconds before the first frame, then silence: a 3 s timeout ends it 3 s after that frame.
    clock = count().__next__
    client = ScriptedClient(*[[]] * 10, frames(0))
    figures = watch(client, LiveSink(), timeout_s=3.0, clock=clock)
    assert figures.received == 1 and clock() == 15  # started at 0; frame at 11; stopped at 14
    figures = watch(
        ScriptedClient(), LiveSink(), timeout_s=3.0, wait_s=5.0, clock=(clock := count().__next__)
    )
    assert figures.received == 0 and clock() == 6  # gave up on the first frame at 5


def test_a_set_stop_event_ends_watch():
    stop = threading.Event()
    stop.set()
    assert watch(ScriptedClient(frames(0)), LiveSink(), stop=stop).received == 0


def test_a_frame_lost_on_its_way_to_the_display_is_not_also_a_gap_before_the_daemon():
    figures = LiveFigures()
    for h in (header(0), header(1), header(3)):  # frame seq 2 (of message 2) lost after the daemon
        figures.arrived(h)
    assert figures.seq_newest_gaps == 0
    figures = LiveFigures()
    for h in (header(0), header(1), header(2, seq_newest=3)):  # message 2 never became a frame
        figures.arrived(h)
    assert figures.seq_newest_gaps == 1


def test_drain_takes_everything_that_has_arrived_up_to_a_limit():
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)
    pub.bind("inproc://drain-test")
    with ReconClient("inproc://drain-test", ctx=ctx) as client:
        assert pub.poll(5000) and pub.recv()[0] == 1  # the subscription has reached the publisher
        for k in range(3):
            pub.send_multipart(encode_recon(header(k), np.zeros((36, 64), np.float32)))
        assert [h.seq for _, h in client.drain(5.0, limit=2)] == [0, 1]
        assert [h.seq for _, h in client.drain(5.0)] == [2]
        assert client.drain(0.0) == [] and client.received == 3
    pub.close(linger=0)
