"""Suppressing repeats of the same sighting, on the injectable clock.

A card reader sends the same frame again and again while a card lies on it; the agent
must see one presentation, not ten. Kept apart from any one driver because every reader
(RDM6300, PN532, a keypad sending the same code twice) has the same need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable


@dataclass
class RepeatFilter:
    """`new(key, now)` is True for a key not seen within `window_s` before `now`.

    The window runs from the *last* sighting, not the first: a card held on the reader for
    a minute is one presentation, and it counts again only once it has been away for
    `window_s`. Times are the clock's `monotonic()` seconds.
    """

    window_s: float
    _last: dict[Hashable, float] = field(default_factory=dict)

    def new(self, key: Hashable, now: float) -> bool:
        # Forget what is out of the window first, so the dict stays as small as the
        # number of cards seen in the last window_s seconds.
        for old in [k for k, t in self._last.items() if now - t >= self.window_s]:
            del self._last[old]
        fresh = key not in self._last
        self._last[key] = now
        return fresh

    def clear(self) -> None:
        self._last.clear()
