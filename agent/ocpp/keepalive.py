"""How long the station lets its link sit idle before a keep-alive ping (sans-I/O).

Keep-alive is most of what an idle charger costs on a cellular plan, and the right
interval depends on a NAT the station cannot see: IoT SIM cores keep idle TCP mappings
for hours (Twilio/KORE: 6 h), RFC 5382 asks for at least 2 h 4 min, carriers ask devices
not to send keep-alives more often than every 5 minutes, yet some consumer carrier-grade
NATs forget a mapping after 4.5 minutes. So the station starts at the configured
WebSocketPingInterval and learns a shorter one only from evidence:

- an *idle drop* is a link found dead by a keep-alive ping (no pong, or closed while
  pinging) that is re-established at the very first reconnect attempt: the network is
  fine, only the idle mapping was lost;
- after ``STRIKES`` idle drops in a row at the same interval, the interval becomes
  ``SHRINK`` times the idle time that failed (never below ``FLOOR``); one answered ping
  at that interval clears the strikes, so a single unlucky outage changes nothing;
- the learned interval is persisted and applies while WebSocketPingInterval keeps the
  value it was learned under; a new WebSocketPingInterval starts over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

STRIKES = 2
SHRINK = 0.45     # from 600 s to 270 s
CEILING = 270.0   # a learned interval is under the shortest NAT timeouts reported (~300 s)
FLOOR = 30.0


class Memory(Protocol):
    """Where the learned interval survives restarts (the store's meta table)."""

    def load(self) -> tuple[float, float] | None: ...  # (configured, learned)
    def save(self, value: tuple[float, float] | None) -> None: ...


@dataclass
class KeepAlivePolicy:
    memory: Memory
    strikes: int = 0
    _suspect: float | None = None   # idle time of a drop awaiting the reconnect verdict

    def interval(self, configured: float) -> float:
        """Seconds of idle link before a ping; 0 or less disables the station's pings."""
        if configured <= 0:
            return configured
        learned = self.memory.load()
        if learned is None or learned[0] != configured:
            return configured
        return min(configured, learned[1])

    def pong(self) -> None:
        """A ping was answered: the current interval holds."""
        self.strikes = 0

    def dropped_while_pinging(self, idle: float) -> None:
        """The link died at a keep-alive ping sent after `idle` seconds of silence."""
        self._suspect = idle

    def reconnected(self, configured: float, first_attempt: bool) -> float | None:
        """A new connection is up; returns a newly learned interval, if any."""
        idle, self._suspect = self._suspect, None
        if idle is None or configured <= 0:
            return None
        if not first_attempt:
            # The network itself was down: says nothing about idle mappings.
            self.strikes = 0
            return None
        self.strikes += 1
        if self.strikes < STRIKES:
            return None
        self.strikes = 0
        learned = max(FLOOR, min(CEILING, round(idle * SHRINK)))
        if learned >= self.interval(configured):
            return None
        self.memory.save((configured, learned))
        return learned


class InMemory:
    """A Memory that forgets on restart (tests, tools)."""

    def __init__(self) -> None:
        self.value: tuple[float, float] | None = None

    def load(self) -> tuple[float, float] | None:
        return self.value

    def save(self, value: tuple[float, float] | None) -> None:
        self.value = value


class MetaMemory:
    """A Memory in a key/value table such as Store's meta (``"configured learned"``)."""

    KEY = "keepalive.learned"

    def __init__(self, meta: "MetaTable") -> None:
        self._meta = meta
        self._cache: tuple[float, float] | None | bool = False  # False: not read yet

    def load(self) -> tuple[float, float] | None:
        if self._cache is False:
            self._cache = _parse(self._meta.get_meta(self.KEY))
        return self._cache  # type: ignore[return-value]

    def save(self, value: tuple[float, float] | None) -> None:
        self._meta.set_meta(self.KEY, None if value is None else f"{value[0]} {value[1]}")
        self._cache = value


class MetaTable(Protocol):
    def get_meta(self, key: str, default: str | None = None) -> str | None: ...
    def set_meta(self, key: str, value: str | None) -> None: ...


def _parse(text: str | None) -> tuple[float, float] | None:
    try:
        configured, learned = (float(part) for part in (text or "").split())
    except ValueError:
        return None  # absent or damaged: fall back to the configured interval
    return configured, learned
