"""Reconnection back-off of OCPP-J (Part 4, 5.3), as a pure function."""

from __future__ import annotations

from typing import Callable


def reconnect_delay(attempt: int, wait_minimum: float, random_range: float, repeat_times: int,
                    rand: Callable[[], float]) -> float:
    """Seconds to wait before reconnection attempt number `attempt` (0 = the first).

    The first waits RetryBackOffWaitMinimum plus a random part of at most
    RetryBackOffRandomRange; every failed attempt doubles the previous back-off, at most
    RetryBackOffRepeatTimes times, after which it stays the same. `rand()` returns [0, 1).
    """
    doublings = min(max(attempt, 0), max(repeat_times, 0))
    return max(0.0, wait_minimum) * (2 ** doublings) + rand() * max(0.0, random_range)
