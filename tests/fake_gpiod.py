"""Fake `gpiod` modules for the GPIO driver tests: the gpiod 2.x API shape and the
libgpiod 1.6 shape (Debian 12's python3-libgpiod), both over one simulated set of chips.

The simulation works in *physical* levels, as a scope on the pin would show them, and
applies active-low itself the way the kernel does; a test sets input pins and reads
output pins, so an inverted relay board is tested for real. Edge events come through a
real pipe fd, so the driver's event-loop reader is exercised too. Only what the driver
uses is modelled, with the real modules' names, signatures and errors (ENOENT for a
missing chip, EBUSY for a line in use, ENXIO for edge detection a chip cannot do).
"""

from __future__ import annotations

import enum
import errno
import os
import types
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterable


# -- the simulated hardware -------------------------------------------------------------------

@dataclass
class Claim:
    """One line held by one request."""

    offset: int
    output: bool
    active_low: bool
    edges: bool
    bias: str
    consumer: str


class SimRequest:
    def __init__(self, chip: SimChip, claims: list[Claim], initial: dict[int, bool]) -> None:
        for c in claims:
            if not 0 <= c.offset < chip.num_lines:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            if c.offset in chip.claims:
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
            if c.edges and not chip.edges:
                raise OSError(errno.ENXIO, os.strerror(errno.ENXIO))
        self.chip = chip
        self.claims = {c.offset: c for c in claims}
        self.rfd = self.wfd = -1
        if any(c.edges for c in claims):
            self.rfd, self.wfd = os.pipe()
            os.set_blocking(self.rfd, False)
        for c in claims:
            chip.claims[c.offset] = (c, self)
            if c.output:
                chip.levels[c.offset] = initial.get(c.offset, False) != c.active_low
        self.released = False

    def get(self, offset: int) -> bool:
        self._check(offset)
        claim = self.claims[offset]
        return self.chip.levels.get(offset, False) != claim.active_low

    def set(self, offset: int, active: bool) -> None:
        self._check(offset)
        claim = self.claims[offset]
        if not claim.output:
            raise OSError(errno.EPERM, "line is an input")
        self.chip.levels[offset] = bool(active) != claim.active_low

    def _check(self, offset: int) -> None:
        if self.released:
            raise RuntimeError("request released")
        if self.chip.fail is not None:
            raise self.chip.fail
        if offset not in self.claims:
            raise OSError(errno.EINVAL, "line not in this request")

    def edge(self) -> None:
        os.write(self.wfd, b"e")

    def drain(self) -> int:
        try:
            return len(os.read(self.rfd, 4096))
        except BlockingIOError:
            return 0

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        for offset in self.claims:
            self.chip.claims.pop(offset, None)
        for fd in (self.rfd, self.wfd):
            if fd >= 0:
                os.close(fd)


@dataclass
class SimChip:
    path: str
    num_lines: int = 32
    edges: bool = True                    # False: an expander that cannot interrupt
    levels: dict[int, bool] = field(default_factory=dict)   # physical
    claims: dict[int, tuple[Claim, SimRequest]] = field(default_factory=dict)
    fail: OSError | None = None           # set: every read and write raises it

    def set_input(self, offset: int, high: bool) -> None:
        """The outside world drives an input pin high or low."""
        changed = self.levels.get(offset, False) != high
        self.levels[offset] = high
        held = self.claims.get(offset)
        if changed and held is not None and held[0].edges:
            held[1].edge()

    def output(self, offset: int) -> bool:
        """The physical level an output pin is driven to."""
        return self.levels.get(offset, False)

    def claim(self, offset: int) -> Claim | None:
        held = self.claims.get(offset)
        return held[0] if held else None


class Sim:
    def __init__(self) -> None:
        self.chips: dict[str, SimChip] = {}
        self.requests: list[SimRequest] = []

    def add_chip(self, path: str, **kwargs: Any) -> SimChip:
        self.chips[path] = SimChip(path, **kwargs)
        return self.chips[path]

    def chip(self, path: str) -> SimChip:
        if path not in self.chips:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
        return self.chips[path]

    def request(self, path: str, claims: list[Claim], initial: dict[int, bool]) -> SimRequest:
        req = SimRequest(self.chip(path), claims, initial)
        self.requests.append(req)
        return req

    def close(self) -> None:
        for req in self.requests:
            req.release()


# -- gpiod 2.x ----------------------------------------------------------------------------

class Direction(enum.Enum):
    AS_IS = 1
    INPUT = 2
    OUTPUT = 3


class Value(enum.Enum):
    INACTIVE = 0
    ACTIVE = 1

    def __bool__(self) -> bool:
        return self is Value.ACTIVE


class Edge(enum.Enum):
    NONE = 1
    RISING = 2
    FALLING = 3
    BOTH = 4


class Bias(enum.Enum):
    AS_IS = 1
    UNKNOWN = 2
    DISABLED = 3
    PULL_UP = 4
    PULL_DOWN = 5


@dataclass(repr=False)
class LineSettings:
    direction: Direction = Direction.AS_IS
    edge_detection: Edge = Edge.NONE
    bias: Bias = Bias.AS_IS
    drive: Any = None
    active_low: bool = False
    debounce_period: timedelta = timedelta(0)
    event_clock: Any = None
    output_value: Value = Value.INACTIVE


_BIAS_NAMES = {Bias.AS_IS: "as_is", Bias.PULL_UP: "pull_up", Bias.PULL_DOWN: "pull_down",
               Bias.DISABLED: "disabled"}


class LineRequest:
    def __init__(self, req: SimRequest) -> None:
        self._req = req

    @property
    def fd(self) -> int:
        return self._req.rfd

    def get_value(self, line: int) -> Value:
        return Value.ACTIVE if self._req.get(line) else Value.INACTIVE

    def set_value(self, line: int, value: Value) -> None:
        if not isinstance(value, Value):
            raise TypeError("value must be a gpiod.line.Value")
        self._req.set(line, value is Value.ACTIVE)

    def read_edge_events(self, max_events: int | None = None) -> list[object]:
        return [object()] * self._req.drain()

    def release(self) -> None:
        self._req.release()


def make_v2(sim: Sim) -> types.ModuleType:
    def request_lines(path: str, config: dict[Any, LineSettings | None],
                      consumer: str | None = None, event_buffer_size: int | None = None,
                      output_values: dict[Any, Value] | None = None) -> LineRequest:
        claims, initial = [], {}
        for key, ls in config.items():
            ls = ls or LineSettings()
            for offset in (key if isinstance(key, tuple) else (key,)):
                if not isinstance(offset, int):
                    raise ValueError("the fake knows offsets, not line names")
                out = ls.direction is Direction.OUTPUT
                claims.append(Claim(offset, out, ls.active_low, ls.edge_detection is not Edge.NONE,
                                    _BIAS_NAMES[ls.bias], consumer or "?"))
                initial[offset] = ls.output_value is Value.ACTIVE
        return LineRequest(sim.request(path, claims, initial))

    line = types.ModuleType("gpiod.line")
    line.Direction, line.Value, line.Edge, line.Bias = Direction, Value, Edge, Bias  # type: ignore[attr-defined]
    mod = types.ModuleType("gpiod")
    mod.__file__ = "<fake gpiod 2.x>"
    mod.line = line  # type: ignore[attr-defined]
    mod.LineSettings = LineSettings  # type: ignore[attr-defined]
    mod.LineRequest = LineRequest  # type: ignore[attr-defined]
    mod.request_lines = request_lines  # type: ignore[attr-defined]
    mod.api_version = "2.fake"  # type: ignore[attr-defined]
    return mod


# -- libgpiod 1.6 -------------------------------------------------------------------------------

V1_CONSTANTS = dict(
    LINE_REQ_DIR_AS_IS=1, LINE_REQ_DIR_IN=2, LINE_REQ_DIR_OUT=3, LINE_REQ_EV_FALLING_EDGE=4,
    LINE_REQ_EV_RISING_EDGE=5, LINE_REQ_EV_BOTH_EDGES=6,
    LINE_REQ_FLAG_OPEN_DRAIN=1, LINE_REQ_FLAG_OPEN_SOURCE=2, LINE_REQ_FLAG_ACTIVE_LOW=4,
    LINE_REQ_FLAG_BIAS_DISABLE=8, LINE_REQ_FLAG_BIAS_PULL_DOWN=16, LINE_REQ_FLAG_BIAS_PULL_UP=32)
_C = types.SimpleNamespace(**V1_CONSTANTS)


def make_v1(sim: Sim) -> types.ModuleType:
    class Line:
        def __init__(self, chip: "Chip", offset: int) -> None:
            self._chip, self._offset = chip, offset
            self._req: SimRequest | None = None

        def request(self, consumer: str, type: int = _C.LINE_REQ_DIR_AS_IS, flags: int = 0,
                    default_vals: Iterable[int] | None = None,
                    default_val: int | None = None) -> None:
            if default_vals is not None and default_val is not None:
                raise TypeError("Cannot pass both default_val and default_vals")
            value = default_val if default_val is not None else (list(default_vals or [0]) or [0])[0]
            bias = ("pull_up" if flags & _C.LINE_REQ_FLAG_BIAS_PULL_UP else
                    "pull_down" if flags & _C.LINE_REQ_FLAG_BIAS_PULL_DOWN else
                    "disabled" if flags & _C.LINE_REQ_FLAG_BIAS_DISABLE else "as_is")
            edges = type in (_C.LINE_REQ_EV_FALLING_EDGE, _C.LINE_REQ_EV_RISING_EDGE,
                             _C.LINE_REQ_EV_BOTH_EDGES)
            claim = Claim(self._offset, type == _C.LINE_REQ_DIR_OUT,
                          bool(flags & _C.LINE_REQ_FLAG_ACTIVE_LOW), edges, bias, consumer)
            self._req = sim.request(self._chip.path, [claim], {self._offset: bool(value)})

        def _held(self) -> SimRequest:
            if self._req is None or self._req.released:
                raise OSError(errno.EPERM, "line not requested")
            return self._req

        def get_value(self) -> int:
            return int(self._held().get(self._offset))

        def set_value(self, value: int) -> None:
            self._held().set(self._offset, bool(value))

        def event_get_fd(self) -> int:
            req = self._held()
            if req.rfd < 0:
                raise OSError(errno.EPERM, "line not requested for events")
            return req.rfd

        def event_read(self) -> object:
            if self._held().drain() == 0:
                raise OSError(errno.EAGAIN, "no event")
            return object()

        def release(self) -> None:
            if self._req is not None:
                self._req.release()

    class Chip:
        def __init__(self, path: str, how: int = 0) -> None:
            sim.chip(path)  # FileNotFoundError, as gpiod_chip_open() reports it
            self.path = path
            self.closed = False

        def get_line(self, offset: int) -> Line:
            if not 0 <= offset < sim.chip(self.path).num_lines:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            return Line(self, offset)

        def close(self) -> None:
            self.closed = True

    mod = types.ModuleType("gpiod")
    mod.__file__ = "<fake python3-libgpiod 1.6>"
    mod.Chip, mod.Line = Chip, Line  # type: ignore[attr-defined]
    for name, value in V1_CONSTANTS.items():
        setattr(mod, name, value)
    return mod
