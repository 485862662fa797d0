"""The safety monitor: the invariants every test's hardware must keep, checked on the
transitions the mock station (or a supervisor over real drivers) recorded.

tests/conftest.py turns it on for every test: it points STATION_AGENT_TRANSITION_LOG at a
file of the test's own, so every mock station the test builds, in this process or in an
agent process it starts, writes its transitions there (hal/drivers/mock/recorder.py), and
after the test `check` reads them. A test that breaks an invariant on purpose (a welded
contactor, a module that ignores its off command) names it with
`@pytest.mark.breaks_safety("<invariant>", reason=...)`; the monitor then demands that it
did break it, and nothing else.

The station's own commands are checked at once; what the world did (an unplug, a fault)
may leave an unsafe state that only the station's reaction ends, which it must do within
LINGER_S of the injected clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from hal.api import EvseOutputs, Transition
from hal.drivers.mock.recorder import read
from hal.evse import SWITCH_CURRENT_A

# What a station's reaction to an unplug or a fault may take (clock seconds): the DC
# ramp-down bound plus margin.
LINGER_S = 5.0
# Inputs the station drives; the rest (plug, suspend, ev-max, fault, lock-jam, meter,
# device) are the world's.
STATION_CAUSES = frozenset({"offer", "contactor", "module", "setpoint", "lock", "stop"})

INVARIANTS = {
    "switch-under-load":
        f"a contactor never opens while more than {SWITCH_CURRENT_A:g} A flows through it "
        "(AC: the EV's draw; DC: the power module's output), nor closes onto a DC power "
        "module that is on",
    "module-on-while-open":
        "a DC power module is never switched on while its contactor is open",
    "offer-over-rating":
        "no PWM offer (DC: no current set-point) above the EVSE's rating",
    "offer-without-ev":
        "no PWM offer while the EVSE is faulted or no EV is plugged in: never made then, "
        f"and one made before is withdrawn within {LINGER_S:g} s of the fault or unplug",
    "energised-unlocked":
        "on an EVSE with a socket lock, the contactor is never closed while the lock is open",
    "energised-on-fault":
        "the contactor never closes during a fault or without an EV, and opens within "
        f"{LINGER_S:g} s of either",
    "unsafe-at-stop":
        "when the hardware is stopped, every output is already safe: contactor open, "
        "power module off, no offer",
}


@dataclass(frozen=True)
class Violation:
    invariant: str
    transition: Transition
    text: str

    def __str__(self) -> str:
        t = self.transition
        return (f"[{self.invariant}] EVSE {t.evse_id} at {t.at:.3f} s, {t.cause}: {self.text}"
                f"\n    before: {_outputs(t.before)}\n    after:  {_outputs(t.after)}")


def check(transitions: Iterable[Transition]) -> list[Violation]:
    """Every invariant broken in these transitions (each recorder's own, in order)."""
    found: list[Violation] = []
    # (source, evse, invariant) -> when a condition the world caused began
    lingering: dict[tuple[str, int, str], float] = {}
    for t in transitions:
        found += _instant(t)
        found += _lingering(t, lingering)
    return found


def check_file(path: Path | str) -> list[Violation]:
    return check(read(path))


def _instant(t: Transition) -> list[Violation]:
    b, a = t.before, t.after
    out: list[Violation] = []

    def broken(invariant: str, text: str) -> None:
        out.append(Violation(invariant, t, text))

    if t.cause == "contactor" and b.contactor_closed and not a.contactor_closed and \
            b.current_a is not None and b.current_a > SWITCH_CURRENT_A:
        broken("switch-under-load", f"opened at {b.current_a:g} A")
    if t.cause == "contactor" and not b.contactor_closed and a.contactor_closed and b.module_on:
        broken("switch-under-load", "closed onto a power module that is on")
    if _module_on_open(a) and not _module_on_open(b):
        broken("module-on-while-open", "the power module is on behind an open contactor")
    if a.rating_a is not None and t.cause in ("offer", "setpoint") and t.requested is not None \
            and t.requested > a.rating_a + 1e-9:
        broken("offer-over-rating", f"{t.requested:g} A asked of an EVSE rated {a.rating_a:g} A")
    if t.cause == "offer" and a.offered_a is not None and _no_ev_or_fault(a):
        broken("offer-without-ev", f"{a.offered_a:g} A offered " + _why(a))
    if _energised_unlocked(a) and not _energised_unlocked(b):
        broken("energised-unlocked", "contactor closed with the socket's lock open")
    if t.cause == "contactor" and a.contactor_closed and not b.contactor_closed and \
            _no_ev_or_fault(a):
        broken("energised-on-fault", "contactor closed " + _why(a))
    if t.cause == "stop" and (b.contactor_closed or b.module_on or b.offered_a is not None):
        broken("unsafe-at-stop", "a device was stopped before the energy was off")
    return out


def _lingering(t: Transition, since: dict[tuple[str, int, str], float]) -> list[Violation]:
    """Conditions the world may cause but the station must end soon."""
    out = []
    conditions = {
        "offer-without-ev": t.after.offered_a is not None and _no_ev_or_fault(t.after),
        "energised-on-fault": t.after.contactor_closed and _no_ev_or_fault(t.after),
    }
    for invariant, holds in conditions.items():
        key = (t.source, t.evse_id, invariant)
        if not holds:
            since.pop(key, None)
            continue
        began = since.setdefault(key, t.at)
        if began != -1.0 and t.at - began > LINGER_S:
            out.append(Violation(invariant, t, f"still so {t.at - began:g} s after "
                                 f"{_why(t.after)}"))
            since[key] = -1.0   # reported once until it ends
    return out


def _module_on_open(o: EvseOutputs) -> bool:
    return bool(o.module_on) and not o.contactor_closed


def _energised_unlocked(o: EvseOutputs) -> bool:
    return o.locked is False and o.contactor_closed


def _no_ev_or_fault(o: EvseOutputs) -> bool:
    return o.faulted or o.plugged is False


def _why(o: EvseOutputs) -> str:
    return "during a fault" if o.faulted else "with no EV plugged in"


def _outputs(o: EvseOutputs) -> str:
    parts = [f"contactor {'closed' if o.contactor_closed else 'open'}"]
    if o.current_a is not None:
        parts.append(f"{o.current_a:g} A")
    if o.module_on is not None:
        parts.append(f"module {'on' if o.module_on else 'off'} at {o.module_set_a} A")
    parts.append(f"offer {o.offered_a}")
    parts.append(f"plugged {o.plugged}")
    if o.faulted:
        parts.append("FAULT")
    if o.locked is not None:
        parts.append("locked" if o.locked else "unlocked")
    return ", ".join(parts)
