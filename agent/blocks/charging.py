"""What an EVSE's hardware says and what it is told: the charging rules of block E.

Kept apart from the transaction bookkeeping so the safety-relevant rules read in one
place and are the same on every board:
- offer current (pilot PWM) only while plugged in, authorized, operative and fault-free,
  never more than the EVSE's rating nor the smart-charging limit of the moment;
- a socket's lock is locked before anything is offered; a lock that does not lock means
  no energy (the supervisor reports the problem: ConnectorPlugRetentionLock, G05);
- a limit below IEC 61851-1's lowest offer (6 A) pauses charging: no PWM, SuspendedEVSE;
- close the contactor only while offering and the EV asks for power (state C/D);
- otherwise switch off, which the EVSE supervisor (hal/evse.py) does in the safe order:
  offer and DC module off, the current down (read back, bounded), then the contactor;
- the lock is released only with the contactor open and no session holding the cable:
  the session ended with the EV still plugged in, or the EV side was unplugged and
  OCPPCommCtrlr.UnlockOnEVSideDisconnect is true (else the cable stays locked until the
  token that started the session is presented again, or UnlockConnector: the caller
  says so with `hold_lock`).
A DC EVSE (one with a power module) follows the same rules with the module's current
set-point as the offer: contactor closed before the module is switched on, module off
and its current down before the contactor opens (no switching under load).

A fault is not an unplug: the pilot's state F is the station's own signal, not the car's,
so the EV counts as plugged in while it lasts (agent/hardware.py keeps the plug state) and
its session is held (SuspendedEVSE), not ended as if the EV had left.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime

from hal.api import ContactorState, PowerModule
from hal.evse import EvseHardware

from agent.station import Evse

log = logging.getLogger(__name__)

MIN_OFFER_A = 6.0   # IEC 61851-1: the lowest current a PWM pilot can offer
MIN_DC_A = 1.0      # below this a DC set-point is a pause, not a charge


@dataclass
class DcCommand:
    """What the agent last told an EVSE's power module (so an unchanged set-point is not
    sent again at every meter reading); reset with the agent's runtime, which then
    simply sends it once more."""

    voltage_v: float | None = None   # the output's voltage ceiling
    current_a: float | None = None
    on: bool = False


def _closed(hw: EvseHardware) -> bool:
    contactor = hw.devices.contactor
    return contactor is not None and contactor.state is ContactorState.CLOSED


def power_path_closed(hw: EvseHardware) -> bool:
    """The contactor is closed."""
    return _closed(hw)


def _power_flows(hw: EvseHardware, unknown: bool, fresh_after: datetime | None = None) -> bool:
    meter = hw.devices.meter
    if meter is None or meter.latest is None or meter.latest.power_w is None:
        return unknown
    if fresh_after is not None and meter.latest.timestamp <= fresh_after:
        return unknown   # read before the contactor closed: says nothing of the EV now
    return meter.latest.power_w > 0


def reached_points(hw: EvseHardware, evse: Evse, authorized: bool) -> set[str]:
    """The TxStartPoint/TxStopPoint points this EVSE is at now.

    PowerPathClosed is E01's "all preconditions for charging are met": the EV plugged in
    and authorized on a working EVSE. It is not the contactor itself: an EV that pauses
    in state B (SuspendedEV) opens the contactor but keeps its session (TC_E_37, TC_E_38
    expect the transaction to go on), while a fault or a deauthorization loses it.
    EnergyTransfer is energy actually flowing, to an EV that asks for it: an EV that
    suspends (pilot back to state B) has stopped the transfer at that moment, before the
    meter's next reading shows it, so TxStopPoint EnergyTransfer ends the transaction in
    one event (Ended, StoppedByEV, TC_E_22)."""
    connector = evse.connectors[1]
    points = set()
    if connector.plugged:
        points.add("EVConnected")
    if authorized:
        points.add("Authorized")
    lock = hw.devices.lock
    if _may_charge(hw, evse, authorized) and (lock is None or lock.locked is True):
        points.add("PowerPathClosed")
    pilot = hw.devices.pilot
    if _closed(hw) and _power_flows(hw, unknown=False) and \
            (pilot is None or pilot.state.wants_power):
        points.add("EnergyTransfer")
    return points


def _may_charge(hw: EvseHardware, evse: Evse, authorized: bool) -> bool:
    connector = evse.connectors[1]
    return (authorized and connector.plugged and connector.operative
            and not connector.faulted and not hw.faults)


async def lock_for_session(hw: EvseHardware, evse: Evse, authorized: bool) -> None:
    """Lock a socket's cable as soon as the session may charge, before the points are
    read: a cable that will not lock means the power path cannot close (no
    transaction starts on PowerPathClosed, and no energy: apply())."""
    if _may_charge(hw, evse, authorized):
        await hw.engage_lock()


def charging_state(hw: EvseHardware, evse: Evse, authorized: bool,
                   closed_since: datetime | None = None) -> str:
    """ChargingStateEnumType of the EVSE. `closed_since`: when the contactor was last
    seen closing; a meter reading from before then is no sign of a suspended EV (else
    every start would report SuspendedEV until the next reading)."""
    if not evse.connectors[1].plugged:
        return "Idle"
    pilot = hw.devices.pilot
    if _closed(hw) and pilot is not None and pilot.state.wants_power:
        return "Charging" if _power_flows(hw, unknown=True, fresh_after=closed_since) \
            else "SuspendedEV"
    if authorized:
        if hw.faults or evse.connectors[1].faulted:
            return "SuspendedEVSE"   # held by the station: a fault, not the EV's choice
        if hw.devices.power is not None:
            # DC: a ready EV (C) with the module off is held by us; one in B holds itself.
            ready = pilot is None or pilot.state.wants_power
            return "SuspendedEVSE" if ready else "SuspendedEV"
        # Offered but the EV does not draw: the EV suspends; not offered: we do.
        return "SuspendedEV" if pilot is not None and pilot.offered_a else "SuspendedEVSE"
    return "EVConnected"


def offer_for(evse: Evse, limit_a: float | None) -> float | None:
    """The current to offer when charging is allowed: None for a pause."""
    offer = evse.max_current_a if limit_a is None else min(evse.max_current_a, limit_a)
    return offer if offer >= MIN_OFFER_A else None


async def apply(hw: EvseHardware, evse: Evse, authorized: bool,
                limit_a: float | None = None, *, limit_w: float | None = None,
                dc: DcCommand | None = None, hold_lock: bool = False) -> None:
    """Drive pilot, lock and contactor (or power module) by the rules above; `limit_a` is
    the smart-charging limit per phase now, `limit_w` the power limit (None: none below
    the rating); `dc` remembers what a power module was told; `hold_lock`: keep a locked
    cable locked although no session holds it (UnlockOnEVSideDisconnect false)."""
    connector = evse.connectors[1]
    allowed = _may_charge(hw, evse, authorized)
    if hw.devices.power is not None:
        await _apply_dc(hw, hw.devices.power, evse, allowed, limit_w, dc or DcCommand())
    else:
        await _apply_ac(hw, evse, allowed, limit_a)
    if not ((authorized and connector.plugged) or hold_lock):
        await hw.release_lock()


async def _apply_ac(hw: EvseHardware, evse: Evse, allowed: bool,
                    limit_a: float | None) -> None:
    offer = offer_for(evse, limit_a) if allowed else None
    if offer is not None and not await hw.engage_lock():
        offer = None       # no lock, no energy: the supervisor reports the lock's problem
    pilot = hw.devices.pilot
    if offer is None:
        await hw.switch_off()
        return
    if pilot is not None and pilot.offered_a != offer:
        await hw.offer(offer)
    wants = pilot is None or (pilot.offered_a is not None and pilot.state.wants_power)
    if wants and not _closed(hw):
        await hw.close_contactor()
    elif not wants and _closed(hw):
        # The EV stopped asking (back in B): it draws nothing; its offer stays for later.
        await hw.switch_off(withdraw_offer=False)


def dc_current_for(evse: Evse, ceiling_v: float, limit_w: float | None) -> float:
    """The DC current set-point: the EVSE's rating, less when a power limit applies.

    Worked out at the voltage ceiling, so the limit holds at whatever voltage the battery
    sits (P = V x I, V never above the ceiling); floored to 0.1 A."""
    current = evse.max_current_a
    if limit_w is not None:
        current = min(current, limit_w / ceiling_v)
    return math.floor(current * 10 + 1e-9) / 10


async def _apply_dc(hw: EvseHardware, power: PowerModule, evse: Evse, allowed: bool,
                    limit_w: float | None, dc: DcCommand) -> None:
    pilot = hw.devices.pilot
    wants = allowed and (pilot is None or pilot.state.wants_power)
    current = 0.0
    if wants:
        if dc.voltage_v is None:
            # The EV's own voltage limit comes from ISO 15118 / DIN 70121, which this
            # agent does not speak: the module's maximum is the ceiling (see README).
            caps = await power.capabilities()
            dc.voltage_v = caps.max_voltage_v if caps.max_voltage_v > 0 else None
        if dc.voltage_v is None:
            log.warning("EVSE %d: the power module reports no output range; not charging",
                        evse.id)
        else:
            current = dc_current_for(evse, dc.voltage_v, limit_w)
    if current >= MIN_DC_A and not await hw.engage_lock():
        current = 0.0
    if current < MIN_DC_A:
        # Also when this runtime never switched the module on (a Reset's new runtime):
        # the supervisor knows what the module was told.
        await hw.switch_off()
        dc.on = hw.module_on
        return
    assert dc.voltage_v is not None
    if not _closed(hw) and not await hw.close_contactor():
        return
    if dc.current_a != current:
        await hw.set_module_output(dc.voltage_v, current)
        dc.current_a = current
    if not hw.module_on:
        await hw.switch_module_on()
    dc.on = hw.module_on
