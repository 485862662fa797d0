"""Part 6's offline moments, shared by the conformance cases that need them.

"The OCTT closes the WebSocket connection AND does not accept a reconnect" is played by
closing the link from the CSMS side and letting the station's clock run no further than
its reconnection back-off (RetryBackOffWaitMinimum, RetryBackOffRandomRange 0): it cannot
come back before then, and comes back at exactly that moment. Where Part 6 sends a
request "the moment the WebSocket connection is restored", the OCTT may hold its answers
to the queued TransactionEvents until that exchange is over (a CSMS may answer late), so
the queue is still there whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable

from tests.conformance.rig import Rig

BACKOFF_S = 60          # <Configured RetryBackOffWaitMinimum_duration>
OFFLINE_SETTINGS = {
    ("OCPPCommCtrlr", "RetryBackOffWaitMinimum"): str(BACKOFF_S),
    ("OCPPCommCtrlr", "RetryBackOffRandomRange"): "0",
    ("OCPPCommCtrlr", "OfflineThreshold"): str(BACKOFF_S + 60),
}


@dataclass
class HeldAnswers:
    """The OCTT's TransactionEvent answers, held back until `release()`."""

    answer: Callable[[dict], dict | None] = lambda p: (
        {"idTokenInfo": {"status": "Accepted"}} if "idToken" in p else {})
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def respond(self, payload: dict) -> dict | None:
        await self.released.wait()
        return self.answer(payload)

    def release(self) -> None:
        self.released.set()


class Offline:
    """The link closed by the OCTT at a moment of the station's clock; it reconnects
    BACKOFF_S later (and not before)."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.closed_at = 0.0

    async def start(self) -> None:
        rig = self.rig
        assert rig.link is not None
        await rig.link.close()
        await rig.settle()
        self.closed_at = rig.clock.monotonic()
        assert rig.csms.links[rig.link.station_id][-1].closed.is_set()

    async def wait(self, seconds: float) -> None:
        """Let time pass offline (in meter-value steps), never up to the reconnection."""
        assert self.rig.clock.monotonic() + seconds < self.closed_at + BACKOFF_S
        await self.rig.advance(seconds, step=1)

    async def reconnect(self) -> None:
        """Until the station's reconnection attempt, which the OCTT accepts."""
        rig = self.rig
        old = rig.link
        left = self.closed_at + BACKOFF_S - rig.clock.monotonic()
        assert left > 0
        await rig.advance(left - 0.5, step=1)
        assert rig.csms.links[old.station_id][-1] is old, "reconnected before the back-off"
        await rig.advance(0.5)
        await rig.new_link()


async def prepare(rig: Rig, *settings: dict[tuple[str, str], str]) -> None:
    merged: dict[tuple[str, str], str] = {}
    for s in settings:
        merged.update(s)
    await rig.configure(merged)


async def cache_token(rig: Rig, token: dict, info: dict | None = None) -> None:
    """Memory State IdTokenCached: a session authorized by the CSMS (its Authorize
    answer goes into the cache), then stopped and unplugged."""
    if info is not None:
        # The OCTT says the same of the token wherever it answers with idTokenInfo.
        rig.answer("Authorize", {"idTokenInfo": info})
        rig.answer("TransactionEvent", lambda p: {"idTokenInfo": info} if "idToken" in p else {})
    await rig.plug()
    await rig.present(token)
    await rig.advance(1)
    await rig.present(token)
    await rig.unplug()
    rig.csms.responders.pop("Authorize", None)
    rig.csms.responders.pop("TransactionEvent", None)
    # Its events are this memory state's, not the case's.
    started = await rig.expect("TransactionEvent", where=lambda p: p["eventType"] == "Started")
    tx_id = started["transactionInfo"]["transactionId"]
    await rig.expect("TransactionEvent", where=lambda p: p["eventType"] == "Ended"
                     and p["transactionInfo"]["transactionId"] == tx_id)
