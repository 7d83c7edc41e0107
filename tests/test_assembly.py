"""The Assembler without sockets: sessions and sequence numbers, per-neuron latest values and their
age, and the 30 Hz grid multi-plane input is emitted on (catch-up limit included)."""

import numpy as np
import pytest

from stream_decoder.stream.assembly import RECENT_SESSIONS, Assembler
from stream_decoder.stream.protocol import Activity, Rejected

N = 6
RATE = 30.0
RESTING = np.array([1.0, 2.0, 3.0, 4.0], np.float32)


def message(seq, t=0.0, session="s", values=None, first=0, plane=0, n_planes=1, **behaviour):
    values = np.arange(1, N + 1, dtype=np.float32) if values is None else values
    return Activity(session, seq, t, values, first, plane, n_planes, **behaviour)


def take(a: Assembler, msg: Activity) -> tuple[bool, int]:
    result = a.admit(msg)
    a.apply(msg)
    return result


def test_a_session_starts_from_silence_and_resting_behaviour():
    a = Assembler(N, RESTING, RATE)
    assert a.session is None and a.newest is None
    np.testing.assert_array_equal(a.activity, np.zeros(N))
    np.testing.assert_array_equal(a.behavior, RESTING)
    assert a.admit(message(7, session="one")) == (True, 0)  # any seq may open a session
    assert a.session == "one" and a.last_seq == 7
    a.apply(message(7, t=5.0, session="one", behavior=(0.5, 0.75)))
    np.testing.assert_array_equal(a.behavior, [0.5, 0.75, 3.0, 4.0])  # pupil centre still resting
    a.apply(message(8, t=5.1, session="one", pupil_center=(7.0, 8.0)))
    np.testing.assert_array_equal(a.behavior, [0.5, 0.75, 7.0, 8.0])  # the sent behaviour is held
    assert a.newest.seq == 8 and a.newest.t == 5.1

    assert a.admit(message(0, session="two")) == (True, 0)  # a new session forgets the old one
    assert a.session == "two" and a.newest is None and a.next_tick is None
    np.testing.assert_array_equal(a.activity, np.zeros(N))
    np.testing.assert_array_equal(a.behavior, RESTING)
    assert np.isneginf(a.acquired).all()


def test_gaps_are_counted_and_duplicates_and_late_messages_rejected():
    a = Assembler(N, RESTING, RATE)
    assert take(a, message(0)) == (True, 0)
    assert take(a, message(1)) == (False, 0)
    assert take(a, message(4)) == (False, 2)  # seq 2 and 3 never came
    with pytest.raises(Rejected) as duplicate:
        a.admit(message(4))
    with pytest.raises(Rejected) as late:
        a.admit(message(3))
    assert (duplicate.value.reason, late.value.reason) == ("duplicate", "out_of_order")
    assert a.last_seq == 4 and a.admit(message(5)) == (False, 0)  # a rejection moves nothing


def test_a_replaced_session_stays_replaced():
    a = Assembler(N, RESTING, RATE)
    take(a, message(0, session="before"))
    take(a, message(0, session="after"))
    with pytest.raises(Rejected) as old:
        a.admit(message(1, session="before"))  # a late message cannot flip the state back
    assert old.value.reason == "old_session" and a.session == "after"
    with pytest.raises(Rejected) as first:
        a.admit(message(0, session="before"))  # nor can its late first message
    assert first.value.reason == "old_session" and a.session == "after"
    assert a.admit(message(1, session="after")) == (False, 0)  # the live session loses nothing
    for k in range(RECENT_SESSIONS - 1):
        take(a, message(0, session=f"later-{k}"))
    with pytest.raises(Rejected):
        a.admit(message(1, session="before"))  # still one of the last RECENT_SESSIONS replaced
    take(a, message(0, session="last"))
    assert a.admit(message(1, session="before")) == (True, 0)  # remembered only so long


def test_each_neuron_holds_its_latest_value_and_when_it_was_acquired():
    a = Assembler(N, RESTING, RATE)
    before = a.activity
    take(a, message(0, t=0.0, values=np.array([1, 2, 3], np.int16), first=0, plane=0, n_planes=2))
    take(a, message(1, t=0.5 / RATE, values=np.array([4, 5, 6], np.float16), first=3, plane=1, n_planes=2))
    take(a, message(2, t=1 / RATE, values=np.array([-7, 8, 9], np.int16), first=0, plane=0, n_planes=2))
    assert a.activity is before and a.activity.dtype == np.float32  # converted in place, no allocation
    np.testing.assert_array_equal(a.activity, [-7, 8, 9, 4, 5, 6])
    np.testing.assert_array_equal(a.acquired, [1 / RATE] * 3 + [0.5 / RATE] * 3)
    assert a.stale_fraction(1 / RATE) == 0.0
    assert a.stale_fraction(1.5 / RATE + 1e-4) == 0.5  # plane 1 is now more than one tick old
    assert a.stale_fraction(2 / RATE) == 0.5  # plane 0 is exactly one tick old: not stale
    assert a.stale_fraction(3 / RATE) == 1.0


def test_neurons_never_sent_are_stale():
    a = Assembler(N, RESTING, RATE)
    take(a, message(0, t=10.0, values=np.ones(2, np.float32), first=4))
    assert a.stale_fraction(10.0) == pytest.approx(4 / 6)
    np.testing.assert_array_equal(a.activity, [0, 0, 0, 0, 1, 1])


def test_multi_plane_ticks_complete_when_a_sample_after_them_arrives():
    a = Assembler(N, RESTING, RATE)
    assert a.tick_of(1 / RATE + 1e-7) == 1 and a.tick_of(1 / RATE + 1e-5) == 2  # on the grid within 1 us
    assert a.tick_of(1 / RATE - 1e-5) == 1  # tick k holds the samples acquired at or before it
    assert a.tick_time(45) == 1.5
    t0 = 100.0  # tick 3000
    assert a.due_ticks(t0) == (range(0), 0)  # the first message opens the grid, completes nothing
    assert a.due_ticks(t0 + 0.5 / RATE) == (range(3000, 3001), 0)  # acquired after tick 3000: complete
    assert a.due_ticks(t0 + 1 / RATE) == (range(0), 0)  # each tick once; this sample is tick 3001's
    assert a.due_ticks(t0 + 3.2 / RATE) == (range(3001, 3004), 0)  # a short pause: every tick
    assert a.due_ticks(t0 + 2 / RATE) == (range(0), 0)  # a plane acquired earlier emits nothing


def test_after_a_jump_in_rig_time_only_the_last_ticks_are_emitted():
    a = Assembler(N, RESTING, RATE, max_catchup_ticks=3)
    a.due_ticks(0.0)
    assert a.due_ticks(2 / RATE) == (range(0, 2), 0)  # within the limit: all
    assert a.due_ticks(12 / RATE) == (range(9, 12), 7)  # ticks 2..8 skipped, 9..11 emitted
    assert a.due_ticks(13 / RATE) == (range(12, 13), 0)


def volume_step(a: Assembler, seq: int, t: float, plane: int, first: int, size: int) -> list[int]:
    """One plane's message through the daemon's order (due ticks, apply, complete ticks): the
    ticks emitted."""
    msg = message(
        seq, t=t, values=np.full(size, float(seq), np.float32), first=first, plane=plane, n_planes=2
    )
    a.admit(msg)
    due, _ = a.due_ticks(t)
    a.apply(msg)
    return [*due, *a.complete_ticks()]


def test_multi_plane_ticks_are_emitted_once_every_plane_s_next_sample_falls_in_a_later_tick():
    # 2 planes of 3 neurons, a volume every 4 ticks: plane 0 at tick 4v, plane 1 at 4v + 1.
    a = Assembler(N, RESTING, RATE)
    period = 4 / RATE
    emitted, seq = [], 0
    for v in range(3):
        for plane in (0, 1):
            ticks = volume_step(a, seq, v * period + plane / RATE, plane, 3 * plane, 3)
            emitted.append(ticks)
            seq += 1
    # First volume: periods unknown, so only the old rule: a message from a later tick completes earlier ones.
    assert emitted[:3] == [[], [0], [1, 2, 3]]
    # From the second plane 1 sample on every period is known: after it, the ticks before plane 0's
    # next sample (tick 8) are out at once (4 by the old rule, 5-7 early), not when tick 8's comes.
    assert emitted[3] == [4, 5, 6, 7]
    assert emitted[4] == [8]  # plane 1's next sample is in tick 9
    assert emitted[5] == [9, 10, 11]


def test_a_plane_split_over_messages_completes_ticks_only_once_whole():
    a = Assembler(N, RESTING, RATE)
    period = 4 / RATE
    emitted = []
    for v in range(2):  # plane 0 whole; plane 1 in two messages of 2 and 1 neurons
        for plane, first, size in ((0, 0, 3), (1, 3, 2), (1, 5, 1)):
            emitted.append(volume_step(a, len(emitted), v * period + plane / RATE, plane, first, size))
    assert emitted[3:] == [[1, 2, 3], [4], [5, 6, 7]]  # 5-7 only once plane 1's second part came
    plane_1 = a.planes[1]
    assert plane_1.size == 3 and plane_1.values == 3 and plane_1.period == pytest.approx(period)


def test_a_dropped_volume_keeps_the_shortest_period():
    from stream_decoder.stream.assembly import PlaneClock

    clock = PlaneClock()
    for t in (0.0, 0.1, 0.3, 0.4):  # the sample at 0.2 never came
        clock.take(t, 5)
    assert clock.period == pytest.approx(0.1) and clock.next_sample() == pytest.approx(0.5)
    clock.take(0.5, 2)  # part of a sample: not whole yet
    assert clock.next_sample() is None
