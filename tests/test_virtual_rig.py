"""The live virtual rig: the dataset's mouse simulated tick by tick, over the stimulus topic."""

import threading

import numpy as np
import pytest
import zmq

from stream_decoder.data import FRAME_RATE_HZ
from stream_decoder.data.live import Drive, LiveMouse
from stream_decoder.data.microscope import Microscope
from stream_decoder.data.simulate import rebuild_mouse
from stream_decoder.display.loopback import private_endpoints
from stream_decoder.rig.replay import Rig
from stream_decoder.rig.virtual_rig import MAX_HELD_S, Screen, VirtualRig
from stream_decoder.stream.protocol import (
    ACTIVITY,
    FRAME,
    STIMULUS,
    decode_activity,
    decode_frame,
    encode_stimulus,
)


@pytest.fixture(scope="module")
def rebuilt(tiny_mouse):
    return rebuild_mouse(tiny_mouse.path)


@pytest.fixture(scope="module")
def mouse(rebuilt):
    return rebuilt[0]


def clip_video(tiny_mouse, tier="oracle"):
    return tiny_mouse.clip(tiny_mouse.trials(tier)[0]).video


def test_the_live_drive_is_the_datasets_drive_frame_by_frame(tiny_mouse, mouse):
    video = clip_video(tiny_mouse)[:120]
    shift = np.random.default_rng(1).normal(0, 2, (len(video), 2))
    batch = mouse.population.drive(video, shift)
    drive = Drive(mouse)
    stepped = np.stack([drive.step(frame, s) for frame, s in zip(video, shift, strict=True)])
    np.testing.assert_allclose(stepped, batch, rtol=1e-4, atol=1e-4 * np.abs(batch).max())


def test_live_responses_are_the_recorded_mouses(tiny_mouse, rebuilt):
    """A live session of a clip looks like the dataset's recordings of it: per neuron, the mean
    response over the clip follows the recorded one, and far better than another mouse's does."""
    mouse, truth = rebuilt
    oracle = tiny_mouse.trials("oracle")
    video_id = truth.trials[oracle[0]]["video_id"]
    trials = [t for t in oracle if truth.trials[t]["video_id"] == video_id]  # the repeats of one clip
    video = tiny_mouse.clip(trials[0]).video
    recorded = np.mean([tiny_mouse.clip(t).responses.mean(0) for t in trials], axis=0)

    def live_means(m, seed):
        ticks = LiveMouse(m, seed).watch(video)
        sums, counts = np.zeros(m.n_neurons), np.zeros(m.n_neurons)
        for sample in (s for tick in ticks for s in tick.samples):
            sums[sample.neurons] += sample.values
            counts[sample.neurons] += 1
        return sums / counts

    ours = np.mean([live_means(mouse, seed) for seed in range(2)], axis=0)
    other = live_means(type(mouse).create(mouse.cfg, seed=mouse.seed + 1), 0)
    same, different = np.corrcoef(ours, recorded)[0, 1], np.corrcoef(other, recorded)[0, 1]
    assert same > 0.8 and same > different + 0.3, (same, different)
    assert 0.5 < ours.mean() / recorded.mean() < 2.0


class Published:
    """A stand-in activity publisher that keeps what it was given."""

    def __init__(self):
        self.session, self.seq, self.messages, self.ctx = "x", 0, [], zmq.Context.instance()

    def restart(self, session):
        self.session, self.seq = session, 0

    def send(self, values, t, **fields):
        self.messages.append((self.session, t, fields["first"], np.array(values)))
        self.seq += 1


def stimulus(seq, t, image, session="s"):
    return [bytes(f) if isinstance(f, memoryview) else f for f in encode_stimulus(session, seq, t, image)]


def test_skipped_late_and_bad_stimuli_are_held_dropped_and_counted(mouse):
    rig = VirtualRig(LiveMouse(mouse, 0), Published())
    grey = np.full((36, 64), 128, np.uint8)
    rig.handle(stimulus(0, 100.0, grey))
    rig.handle(stimulus(1, 100.0 + 3 / FRAME_RATE_HZ, grey))  # ticks 1 and 2 were not sent
    rig.handle(stimulus(2, 100.0 + 2 / FRAME_RATE_HZ, grey))  # late: tick 2 is already simulated
    rig.handle(stimulus(3, 100.0, np.full((36, 63), 128, np.uint8)))  # not the screen's size
    rig.handle(stimulus(4, float("nan"), grey))
    assert (rig.stats.shown, rig.stats.held, rig.stats.late, rig.stats.rejected) == (2, 2, 1, 2)
    assert rig.next_tick == 4 and rig.stats.sessions == 1
    rig.handle(stimulus(5, 100.0 + MAX_HELD_S + 1.0, grey))  # a long pause: a new session
    rig.handle(stimulus(0, 200.0, grey, session="another program"))
    assert rig.stats.sessions == 3 and rig.t0 == 200.0 and rig.next_tick == 1


@pytest.mark.parametrize("raw", [False, True], ids=["activity", "raw frames"])
def test_online_equals_offline_for_the_same_seed(tiny_mouse, mouse, raw):
    """A movie shown frame by frame over the stimulus topic (one tick skipped: the screen holds)
    gives bit for bit the messages (activity, or the microscope's raw frames) of the same session
    simulated in one call."""
    video = clip_video(tiny_mouse)[:90]
    shown = [k for k in range(len(video)) if k != 40]
    t0 = 1000.0
    topic = FRAME if raw else ACTIVITY
    scope = Microscope(mouse) if raw else None
    held = np.array(video)
    held[40] = held[39]
    ticks = LiveMouse(mouse, seed=3, microscope=Microscope(mouse) if raw else None).watch(held)
    offline = [
        (t0 + s.t_acq, s.plane, s.image) if raw else (t0 + s.t_acq, s.neurons[0], s.values)
        for tick in ticks
        for s in tick.samples
    ]
    with private_endpoints() as ep:
        stimulus_endpoint = ep.activity.replace("activity", "stimulus")
        with Rig(ep.activity, session="virtual") as rig, Screen(stimulus_endpoint, bind=False) as screen:
            virtual = VirtualRig(LiveMouse(mouse, seed=3, microscope=scope), rig)
            stop = threading.Event()
            thread = threading.Thread(target=virtual.run, args=(stimulus_endpoint, stop), daemon=True)
            thread.start()
            sub = zmq.Context.instance().socket(zmq.SUB)
            sub.setsockopt(zmq.SUBSCRIBE, topic)
            sub.connect(ep.activity)
            try:
                assert rig.wait_for_subscriber(10.0, topic=topic)
                assert screen.wait_for_subscriber(10.0, topic=STIMULUS)
                for k in shown:
                    screen.show(video[k], t0 + k / FRAME_RATE_HZ)
                online = []
                while len(online) < len(offline) and sub.poll(10_000):
                    frames = sub.recv_multipart()
                    if raw:
                        msg = decode_frame(frames, scope.cfg.frame_shape, mouse.timing.n_planes)
                        online.append((msg.t, msg.plane, np.array(msg.image)))
                    else:
                        msg = decode_activity(frames, mouse.n_neurons)
                        online.append((msg.t, msg.first, np.array(msg.values)))
            finally:
                stop.set()
                thread.join(5)
                sub.close(linger=0)
    assert virtual.stats.held == 1 and virtual.stats.published == len(online) == len(offline) > 50
    for (t_on, key_on, v_on), (t_off, key_off, v_off) in zip(online, offline, strict=True):
        assert (t_on, key_on) == (t_off, key_off)
        np.testing.assert_array_equal(v_on, v_off)


def test_the_verb_refuses_real_data_and_names_the_topic_it_waits_for(tiny_mouse, tmp_path, capsys):
    from stream_decoder.cli import main

    real = tmp_path / "real" / tiny_mouse.path.name  # the mouse without its truth beside it
    real.mkdir(parents=True)
    for part in tiny_mouse.path.iterdir():
        (real / part.name).symlink_to(part)
    assert main(["virtual-rig", "--data", str(real.parent), "--control", ""]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("stream-decoder virtual-rig: error: ") and "not a synthetic mouse" in line
    endpoint = f"ipc://{tmp_path}/activity"
    argv = ["virtual-rig", "--data", str(tiny_mouse.path), "--raw", "--endpoint", endpoint]
    assert main([*argv, "--control", "", "--wait-s", "0"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"stream-decoder virtual-rig: error: no daemon subscribed to frames on {endpoint} within 0 s; "
        "is serve running (with --frontend for --raw)?"
    )
