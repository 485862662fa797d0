"""Reconnection back-off (Part 4, 5.3)."""

from agent.ocpp.backoff import reconnect_delay


def test_doubles_up_to_repeat_times_then_stays():
    delays = [reconnect_delay(n, 10, 0, 3, lambda: 0.5) for n in range(7)]
    assert delays == [10, 20, 40, 80, 80, 80, 80]


def test_random_part_is_added_to_every_attempt_within_range():
    assert reconnect_delay(0, 10, 20, 3, lambda: 0.0) == 10
    assert reconnect_delay(0, 10, 20, 3, lambda: 0.999) < 30
    assert reconnect_delay(5, 10, 20, 3, lambda: 0.5) == 80 + 10
