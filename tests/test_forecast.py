"""The daemon prefetches once per message interval, a lead before the next message is due."""

import pytest

from stream_decoder.stream.forecast import ArrivalForecast


def test_a_steady_30hz_stream_is_forecast_a_lead_ahead():
    forecast = ArrivalForecast(lead_s=0.002)
    for k in range(10):
        forecast.arrived(k / 30)
    now = 9 / 30
    assert forecast.interval_s == pytest.approx(1 / 30)
    assert forecast.wait_ms(now, 50) == 31  # 33.3 - 2 ms, rounded down
    assert not forecast.take(now + 0.025)
    assert forecast.take(now + 0.0305)  # within a millisecond of due: run it now
    assert not forecast.take(now + 0.032)  # once per forecast
    assert forecast.wait_ms(now + 0.032, 50) == 50  # nothing pending: sleep the longest


def test_no_forecast_without_a_rate_or_when_messages_come_too_fast_or_it_is_off():
    forecast = ArrivalForecast(lead_s=0.002)
    forecast.arrived(0.0)
    assert forecast.wait_ms(0.0, 50) == 50 and not forecast.take(1.0)  # one message: no rate yet
    for k in range(1, 20):
        forecast.arrived(k * 0.001)  # 1 kHz: the cache stays warm by itself
    assert not forecast.take(1.0)
    forecast.arrived(5.0)  # a pause is not a rate
    assert forecast.interval_s is None and not forecast.take(10.0)
    off = ArrivalForecast(lead_s=0.0)
    for k in range(5):
        off.arrived(k / 30)
    assert not off.take(1.0)


def test_the_estimate_follows_a_new_rate_within_three_messages_and_ignores_one_odd_gap():
    forecast = ArrivalForecast(lead_s=0.002)
    t = 0.0
    for gap in [0.5, *[1 / 30] * 6, 0.2, 1 / 30]:  # a pause before the session, one late message
        t += gap
        forecast.arrived(t)
    assert forecast.interval_s == pytest.approx(1 / 30)
    for _ in range(3):
        t += 1 / 10
        forecast.arrived(t)
    assert forecast.interval_s == pytest.approx(0.1)
