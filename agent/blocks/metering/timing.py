"""When samples are due: clock-aligned instants and intervals from a start. Pure.

Clock-aligned data (AlignedDataCtrlr.Interval, AlignedDataCtrlr.TxEndedInterval) divides
each day into evenly spaced intervals starting at midnight (00:00:00 UTC: OCPP times are
UTC): 900 s gives :00, :15, :30 and :45 of every hour. An interval that does not divide
a day starts over at the next midnight (7 s: ..., 23:59:54, 00:00:00), so the instants
stay the same on every day and every station. An interval longer than a day counts
from 1970-01-01T00:00:00Z (whole days then land on midnights).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

DAY_S = 86400
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# A clock-aligned sample taken later than this after its instant (the event loop was
# blocked, the wall clock jumped) is skipped rather than stamped with an instant it
# does not belong to; for intervals shorter than this, the interval is the limit.
LATE_LIMIT_S = 60


def next_aligned(now: datetime, interval_s: int) -> datetime:
    """The first clock-aligned instant strictly after `now` (an aware datetime).

    Raises ValueError for an interval below 1 s: 0 means "no clock-aligned data" and
    the caller must not ask.
    """
    if interval_s < 1:
        raise ValueError(f"clock-aligned interval must be at least 1 s, not {interval_s}")
    now = now.astimezone(timezone.utc)
    if interval_s > DAY_S:
        return _EPOCH + timedelta(seconds=interval_s) * _steps_after(now - _EPOCH, interval_s)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    candidate = midnight + timedelta(seconds=interval_s) * _steps_after(now - midnight,
                                                                        interval_s)
    return min(candidate, midnight + timedelta(days=1))


def latest_aligned(now: datetime, interval_s: int) -> datetime:
    """The last clock-aligned instant at or before `now`."""
    candidate = next_aligned(now, interval_s)
    if interval_s > DAY_S:
        return candidate - timedelta(seconds=interval_s)
    # Step back one interval, but not past a midnight (where the day's series restarts).
    midnight = candidate.replace(hour=0, minute=0, second=0, microsecond=0)
    if candidate == midnight:
        midnight -= timedelta(days=1)
    elapsed = (candidate - midnight).total_seconds()
    back = elapsed % interval_s or interval_s
    return candidate - timedelta(seconds=back)


def next_from_start(start: datetime, interval_s: int, after: datetime) -> datetime:
    """The first of start + k * interval (k >= 1) strictly after `after`."""
    if interval_s < 1:
        raise ValueError(f"interval must be at least 1 s, not {interval_s}")
    if after < start:
        return start + timedelta(seconds=interval_s)
    return start + timedelta(seconds=interval_s) * _steps_after(after - start, interval_s)


def _steps_after(elapsed: timedelta, interval_s: int) -> int:
    # Integer microseconds: float seconds would misplace instants far from the origin.
    micros = elapsed // timedelta(microseconds=1)
    return micros // (interval_s * 1_000_000) + 1
