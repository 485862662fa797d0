"""An in-memory Connection for session tests: the test plays the CSMS."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agent.ocpp.session import ConnectionClosed


class PipeConnection:
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.sent: asyncio.Queue[str] = asyncio.Queue()
        self.closed = False
        self.pings = 0
        self.answer_pings = True

    # the station's side
    async def send(self, text: str) -> None:
        if self.closed:
            raise ConnectionClosed("closed")
        self.sent.put_nowait(text)

    async def recv(self) -> str:
        item = await self.inbox.get()
        if item is None:
            raise ConnectionClosed("closed")
        return item

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.inbox.put_nowait(None)

    async def ping(self) -> asyncio.Future[Any]:
        if self.closed:
            raise ConnectionClosed("closed")
        self.pings += 1
        fut = asyncio.get_running_loop().create_future()
        if self.answer_pings:
            fut.set_result(0.0)
        return fut

    # the CSMS's side
    def feed(self, frame: Any) -> None:
        self.inbox.put_nowait(frame if isinstance(frame, str) else json.dumps(frame))

    async def next_sent(self, timeout: float = 2) -> list[Any]:
        return json.loads(await asyncio.wait_for(self.sent.get(), timeout))

    def nothing_sent(self) -> bool:
        return self.sent.empty()
