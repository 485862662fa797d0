"""The one adapter over the libgpiod Python bindings, both shapes of them.

Debian 12 ships python3-libgpiod 1.6 (`gpiod.Chip(path).get_line(n).request(...)`);
newer systems and PyPI have gpiod 2.x (`gpiod.request_lines(path, config={n:
gpiod.LineSettings(...)})`). The drivers see neither: they ask for a `LineGroup` (all of
one device's lines, requested together) and read or drive *logical* levels, True meaning
active. Active-low is the kernel's business in both APIs, so an inverted relay board is a
setting, not code.

gpiod is imported here only, when a device starts (or its config is checked): a board
without GPIO never needs it installed.
"""

from __future__ import annotations

import importlib
import types
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from hal.api import HalConfigError

MISSING = ("python3-libgpiod (gpiod) is not installed; install the Debian package "
           "python3-libgpiod, or `pip install gpiod` in a virtualenv")
BIASES = ("as_is", "pull_up", "pull_down", "disabled")


@dataclass(frozen=True)
class LineSpec:
    offset: int
    output: bool
    active_low: bool = False
    initial: bool = False       # outputs: the level they take when requested
    edges: bool = False         # inputs: report both edges through an event fd
    bias: str = "as_is"         # inputs: one of BIASES (a dry contact needs a pull)


class LineGroup(Protocol):
    def get(self, offset: int) -> bool: ...
    def set(self, offset: int, active: bool) -> None: ...
    def event_fds(self) -> list[int]:
        """File descriptors that turn readable when an edge was seen (none if not asked)."""
    def read_events(self, fd: int) -> None:
        """Consume the events pending on `fd` (only call when it is readable)."""
    def release(self) -> None: ...


def load_gpiod() -> types.ModuleType:
    """The bindings module; HalConfigError naming the missing package if it is absent."""
    try:
        module = importlib.import_module("gpiod")
    except ImportError:
        raise HalConfigError("driver", MISSING) from None
    if api_of(module) is None:
        raise HalConfigError("driver", f"the installed gpiod module ({getattr(module, '__file__', '?')}) "
                                       "is neither libgpiod 1.6 nor 2.x; install python3-libgpiod")
    return module


def api_of(gpiod: Any) -> int | None:
    """2 for gpiod 2.x, 1 for libgpiod 1.x bindings, told apart by what they offer."""
    if hasattr(gpiod, "request_lines") and hasattr(gpiod, "LineSettings"):
        return 2
    if hasattr(gpiod, "Chip") and hasattr(gpiod, "LINE_REQ_DIR_OUT"):
        return 1
    return None


def request(gpiod: Any, chip: str, consumer: str, specs: Sequence[LineSpec]) -> LineGroup:
    """Request `specs` on `chip` for this process; OSError as the kernel reports it."""
    api = api_of(gpiod)
    if api == 2:
        return _V2Group(gpiod, chip, consumer, specs)
    if api == 1:
        return _V1Group(gpiod, chip, consumer, specs)
    raise HalConfigError("driver", "unsupported gpiod module")


class _V2Group:
    def __init__(self, gpiod: Any, chip: str, consumer: str, specs: Sequence[LineSpec]) -> None:
        line = gpiod.line
        self._active, self._inactive = line.Value.ACTIVE, line.Value.INACTIVE
        bias = {"as_is": line.Bias.AS_IS, "pull_up": line.Bias.PULL_UP,
                "pull_down": line.Bias.PULL_DOWN, "disabled": line.Bias.DISABLED}
        config = {}
        for s in specs:
            if s.output:
                config[s.offset] = gpiod.LineSettings(
                    direction=line.Direction.OUTPUT, active_low=s.active_low,
                    output_value=self._active if s.initial else self._inactive)
            else:
                config[s.offset] = gpiod.LineSettings(
                    direction=line.Direction.INPUT, active_low=s.active_low,
                    bias=bias[s.bias], edge_detection=line.Edge.BOTH if s.edges else line.Edge.NONE)
        self._edges = any(s.edges and not s.output for s in specs)
        self._request = gpiod.request_lines(chip, consumer=consumer, config=config)

    def get(self, offset: int) -> bool:
        return self._request.get_value(offset) == self._active

    def set(self, offset: int, active: bool) -> None:
        self._request.set_value(offset, self._active if active else self._inactive)

    def event_fds(self) -> list[int]:
        return [self._request.fd] if self._edges else []

    def read_events(self, fd: int) -> None:
        self._request.read_edge_events()

    def release(self) -> None:
        self._request.release()


class _V1Group:
    """libgpiod 1.x: one request per line, each input with its own event fd."""

    def __init__(self, gpiod: Any, chip: str, consumer: str, specs: Sequence[LineSpec]) -> None:
        bias = {"as_is": 0, "pull_up": gpiod.LINE_REQ_FLAG_BIAS_PULL_UP,
                "pull_down": gpiod.LINE_REQ_FLAG_BIAS_PULL_DOWN,
                "disabled": gpiod.LINE_REQ_FLAG_BIAS_DISABLE}
        self._chip = gpiod.Chip(chip)
        self._lines: dict[int, Any] = {}
        self._by_fd: dict[int, Any] = {}
        try:
            for s in specs:
                line = self._chip.get_line(s.offset)
                flags = gpiod.LINE_REQ_FLAG_ACTIVE_LOW if s.active_low else 0
                if s.output:
                    # default_vals (a sequence) works in every 1.x; default_val only in later.
                    line.request(consumer=consumer, type=gpiod.LINE_REQ_DIR_OUT, flags=flags,
                                 default_vals=[int(s.initial)])
                else:
                    kind = gpiod.LINE_REQ_EV_BOTH_EDGES if s.edges else gpiod.LINE_REQ_DIR_IN
                    line.request(consumer=consumer, type=kind, flags=flags | bias[s.bias])
                    if s.edges:
                        self._by_fd[line.event_get_fd()] = line
                self._lines[s.offset] = line
        except BaseException:
            self.release()
            raise

    def get(self, offset: int) -> bool:
        return bool(self._lines[offset].get_value())

    def set(self, offset: int, active: bool) -> None:
        self._lines[offset].set_value(int(active))

    def event_fds(self) -> list[int]:
        return list(self._by_fd)

    def read_events(self, fd: int) -> None:
        self._by_fd[fd].event_read()

    def release(self) -> None:
        for line in self._lines.values():
            line.release()
        self._lines.clear()
        self._by_fd.clear()
        self._chip.close()
