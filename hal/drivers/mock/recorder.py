"""A log of every hardware transition, for a safety monitor in another process.

When the environment variable STATION_AGENT_TRANSITION_LOG names a file, every mock
station (and, in `agent.hardware`, every supervisor over real drivers) appends each
`hal.api.Transition` of its EVSEs to it as one JSON line. The test suite sets it for every
test, so a test that runs `station-agent run` in a child process is watched like one that
runs the agent in its own event loop (tests/safety_monitor.py checks the lines). Nothing
else reads or sets it: a station in service never has it.

One write() of one line per transition on a file opened with O_APPEND: lines from several
processes (a restart, a re-exec) never interleave, and a line is in the kernel's hands
before the next change, so `kill -9` loses nothing that happened before it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

from hal.api import EvseOutputs, Transition

ENV_VAR = "STATION_AGENT_TRANSITION_LOG"


class TransitionLog:
    """Appends transitions to `path`; `source` tells this recorder's lines from others'
    (a process, a station object)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.source = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._fd: int | None = None

    def __call__(self, transition: Transition) -> None:
        record = dataclasses.asdict(transition)
        record["source"] = self.source
        line = json.dumps(record, separators=(",", ":")) + "\n"
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.write(self._fd, line.encode())
        except OSError:
            pass  # a monitor's log must never break the hardware it watches

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


def from_env() -> TransitionLog | None:
    """The log the environment asks for, or None (the normal case)."""
    path = os.environ.get(ENV_VAR)
    return TransitionLog(path) if path else None


def read(path: Path | str) -> Iterator[Transition]:
    """The transitions in a log, in the order they were written; none if it does not exist."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return
    for line in text.splitlines():
        if line.strip():
            yield decode(json.loads(line))


def decode(record: dict[str, Any]) -> Transition:
    record = dict(record)
    for key in ("before", "after"):
        record[key] = EvseOutputs(**record[key])
    return Transition(**record)

