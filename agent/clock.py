"""The one injectable clock.

Everything in the agent that waits or reads the time goes through a Clock, so tests can
drive time with ManualClock instead of sleeping. Wall time is UTC and can be corrected by
the CSMS (BootNotification / Heartbeat currentTime) without touching the system clock:
the agent usually runs without the privilege to set it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> datetime:
        """Current UTC time, corrected by the CSMS's clock where one was received."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps; for intervals and deadlines."""

    async def sleep(self, seconds: float) -> None:
        """Wait this many seconds of this clock's time."""

    def set_time(self, utc: datetime) -> None:
        """Take the CSMS's time as the truth from now on."""


class SystemClock:
    """Real time; wall time offset by the last time the CSMS told us."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self._offset, timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def set_time(self, utc: datetime) -> None:
        self._offset = utc.timestamp() - time.time()


class ManualClock:
    """Time that moves only when a test says so (`await clock.advance(s)`)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._wall = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
        self._mono = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def set_time(self, utc: datetime) -> None:
        self._wall = utc

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        """How many tasks wait on this clock (lets a test know a timer is armed)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper due on the way, in order."""
        target = self._mono + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            if fut.done():
                continue
            step = deadline - self._mono
            self._mono = deadline
            self._wall += timedelta(seconds=step)
            fut.set_result(None)
            await _settle()
        step = target - self._mono
        self._mono = target
        self._wall += timedelta(seconds=step)
        await _settle()


async def _settle() -> None:
    # Let woken tasks run until they block again (a few loop turns).
    for _ in range(20):
        await asyncio.sleep(0)


async def wait_for(clock: Clock, aw: Awaitable[T], timeout: float) -> T:
    """asyncio.wait_for on the injectable clock: raises TimeoutError when it runs out."""
    task = asyncio.ensure_future(aw)
    timer = asyncio.ensure_future(clock.sleep(timeout))
    try:
        done, _ = await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        timer.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise TimeoutError(f"no answer within {timeout:g} s")


# A date-time whose seconds are 60; group 1 is all before the seconds, group 2 the zone.
_LEAP_SECOND = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:)60"
                          r"(?:\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})")

# The first and last instants a datetime holds, in UTC.
EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
LATEST = datetime.max.replace(tzinfo=timezone.utc)


def parse_datetime(text: str, *, clamp: bool = False) -> datetime:
    """An OCPP date-time (RFC 3339) as an aware UTC datetime; ValueError if it is not one.

    RFC 3339 writes instants that fall outside datetime's years 1..9999 once in UTC:
    0001-01-01T00:00:00+14:00 is in year 0, 9999-12-31T23:59:59-12:00 in year 10000.
    They are ValueError too, unless `clamp`: then EARLIEST or LATEST stands for them.
    Callers reading what a CSMS sent clamp, as the CSMS may well mean "since ever" or
    "valid for ever" and every comparison with another instant comes out as it would
    with the real one (nothing a station meets lies that far out); arithmetic on the
    result must expect OverflowError, as near any datetime bound.
    """
    if not isinstance(text, str) or "T" not in text.upper():
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    leap = _LEAP_SECOND.fullmatch(text)
    if leap:
        # 23:59:60 (RFC 3339 allows it, datetime cannot hold it): the last microsecond
        # of second 59, which keeps it after every instant before it and before the next.
        text = f"{leap.group(1)}59.999999{leap.group(2)}"
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"date-time without a time zone: {text!r}")
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        if not clamp:
            raise ValueError(f"{text[:40]!r} lies outside the years 1 to 9999 in UTC") from None
        return EARLIEST if value.year == 1 else LATEST


def format_datetime(value: datetime) -> str:
    """UTC, millisecond precision, 'Z' suffix: short and accepted by every CSMS."""
    # isoformat, not strftime: glibc's %Y writes year 1 as "1", which is no RFC 3339.
    value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"
