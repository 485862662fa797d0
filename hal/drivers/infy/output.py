"""How the modules on one DC output add up, sans-I/O: the current split, the capabilities,
the read-back, and when a lost module is a degradation or a fault of the whole output.

The rule: a module that does not answer or reports a fault of its own is left out of the
split (the others take its part); the output is faulted only when its DC side itself is
bad (short circuit, over-voltage), when no module is left, or when those left cannot
carry the current that is set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from hal.api import PowerCapabilities, PowerReadback
from hal.drivers.infy.protocol import Capabilities, Output, Severity, Status


@dataclass
class ModuleState:
    """What the driver knows of one module."""

    address: int
    comm_problem: str | None = None       # "no answer", a refusal; cleared by an answer
    capabilities: Capabilities | None = None
    output: Output | None = None
    status: Status | None = None

    @property
    def problem(self) -> str | None:
        if self.comm_problem is not None:
            return self.comm_problem
        texts = self.status.texts(Severity.MODULE) if self.status else []
        return ", ".join(texts) or None

    @property
    def working(self) -> bool:
        return self.problem is None

    def limit_a(self, voltage_v: float) -> float | None:
        """Most current this module delivers at this voltage; None while unknown."""
        if self.capabilities is None:
            return None
        limit = self.capabilities.max_current_a
        if voltage_v > 0:
            limit = min(limit, self.capabilities.rated_power_w / voltage_v)
        return limit


@dataclass(frozen=True)
class Target:
    voltage_v: float
    current_a: float     # for the whole output
    on: bool


@dataclass(frozen=True)
class Verdict:
    fault: str | None      # the output cannot work (PowerModule.fault)
    degraded: str | None   # it works with fewer modules than it has


def split_current(total_a: float, limits: Sequence[float | None]) -> list[float]:
    """Equal shares of `total_a`; a module that cannot carry its share (limit; None:
    unknown) gives the rest to the others, so equal modules get exactly total / n."""
    shares = [0.0] * len(limits)
    order = sorted(range(len(limits)), key=lambda i: _or_infinite(limits[i]))
    remaining = total_a
    for placed, i in enumerate(order):
        fair = remaining / (len(order) - placed)
        limit = limits[i]
        shares[i] = fair if limit is None else min(fair, limit)
        remaining -= shares[i]
    return shares


def _or_infinite(limit: float | None) -> float:
    return math.inf if limit is None else limit


def judge(modules: Sequence[ModuleState], target: Target | None, *,
          bus_problem: str | None = None, group: int | None = None) -> Verdict:
    working = [m for m in modules if m.working]
    problems = module_problems(modules)
    output = output_faults(modules)
    fault: str | None = None
    if bus_problem is not None:
        fault = bus_problem
    elif output:
        fault = "DC output: " + ", ".join(output)
    elif not modules:
        fault = f"no power module answers in group {group}"
    elif not working:
        fault = "; ".join(problems)
    elif (short := shortfall(working, target)) is not None:
        fault = "; ".join([short, *problems])
    if fault is None and problems:
        return Verdict(None, f"{len(working)} of {len(modules)} power modules share the "
                             f"output; " + "; ".join(problems))
    return Verdict(fault, None)


def module_problems(modules: Sequence[ModuleState]) -> list[str]:
    return [f"power module {m.address}: {m.problem}" for m in modules if m.problem]


def output_faults(modules: Sequence[ModuleState]) -> list[str]:
    """Faults of the shared DC side, each with the modules that report it."""
    found: dict[str, list[int]] = {}
    for m in modules:
        if m.status is not None and m.comm_problem is None:
            for text in m.status.texts(Severity.OUTPUT):
                found.setdefault(text, []).append(m.address)
    return [f"{text} (module {', '.join(map(str, addrs))})" for text, addrs in found.items()]


def shortfall(working: Sequence[ModuleState], target: Target | None) -> str | None:
    """Why the modules left cannot carry the set current, or None when they can (or it
    is not known: a module whose limits were never read)."""
    if target is None or not target.on or target.current_a <= 0:
        return None
    limits = [m.limit_a(target.voltage_v) for m in working]
    if any(limit is None for limit in limits):
        return None
    available = sum(limit for limit in limits if limit is not None)
    if available >= target.current_a - 1e-6:
        return None
    names = ", ".join(str(m.address) for m in working)
    return (f"power modules left ({names}) deliver at most {available:g} A at "
            f"{target.voltage_v:g} V, {target.current_a:g} A is set")


def available(modules: Sequence[ModuleState]) -> PowerCapabilities:
    """What the working modules can do together (all zero when none is known)."""
    caps = [m.capabilities for m in modules if m.working and m.capabilities is not None]
    if not caps:
        return PowerCapabilities(0, 0, 0, 0)
    return PowerCapabilities(
        min_voltage_v=max(c.min_voltage_v for c in caps),
        max_voltage_v=min(c.max_voltage_v for c in caps),
        max_current_a=sum(c.max_current_a for c in caps),
        max_power_w=sum(c.rated_power_w for c in caps))


def readback(modules: Sequence[ModuleState], commanded_on: bool) -> PowerReadback | None:
    """The output as the answering modules measure it (in parallel: one voltage, the
    currents add up); None when no module answers."""
    outputs = [(m, m.output) for m in modules if m.comm_problem is None and m.output is not None]
    if not outputs:
        return None
    return PowerReadback(
        voltage_v=max(o.voltage_v for _, o in outputs),
        current_a=sum(o.current_a for _, o in outputs),
        on=any(commanded_on if m.status is None else "module_off" not in m.status.names
               for m, _ in outputs),
        faults=frozenset(module_problems(modules) + output_faults(modules)))
