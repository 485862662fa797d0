"""What an EVSE's hardware says and what it is told: the charging rules of block E.

Kept apart from the transaction bookkeeping so the safety-relevant rules read in one
place and are the same on every board:
- offer current (pilot PWM) only while plugged in, authorized, operative and fault-free,
  never more than the EVSE's rating nor the smart-charging limit of the moment;
- a limit below IEC 61851-1's lowest offer (6 A) pauses charging: no PWM, SuspendedEVSE;
- close the contactor only while offering and the EV asks for power (state C/D);
- open it otherwise.
"""

from __future__ import annotations

from hal.api import ContactorState
from hal.evse import EvseHardware

from agent.station import Evse

MIN_OFFER_A = 6.0   # IEC 61851-1: the lowest current a PWM pilot can offer


def _closed(hw: EvseHardware) -> bool:
    contactor = hw.devices.contactor
    return contactor is not None and contactor.state is ContactorState.CLOSED


def _power_flows(hw: EvseHardware, unknown: bool) -> bool:
    meter = hw.devices.meter
    if meter is None or meter.latest is None or meter.latest.power_w is None:
        return unknown
    return meter.latest.power_w > 0


def reached_points(hw: EvseHardware, evse: Evse, authorized: bool) -> set[str]:
    """The TxStartPoint/TxStopPoint points this EVSE is at now."""
    points = set()
    if evse.connectors[1].plugged:
        points.add("EVConnected")
    if authorized:
        points.add("Authorized")
    if _closed(hw):
        points.add("PowerPathClosed")
        if _power_flows(hw, unknown=False):
            points.add("EnergyTransfer")
    return points


def charging_state(hw: EvseHardware, evse: Evse, authorized: bool) -> str:
    """ChargingStateEnumType of the EVSE."""
    if not evse.connectors[1].plugged:
        return "Idle"
    pilot = hw.devices.pilot
    if _closed(hw) and pilot is not None and pilot.state.wants_power:
        return "Charging" if _power_flows(hw, unknown=True) else "SuspendedEV"
    if authorized:
        # Offered but the EV does not draw: the EV suspends; not offered: we do.
        return "SuspendedEV" if pilot is not None and pilot.offered_a else "SuspendedEVSE"
    return "EVConnected"


def offer_for(evse: Evse, limit_a: float | None) -> float | None:
    """The current to offer when charging is allowed: None for a pause."""
    offer = evse.max_current_a if limit_a is None else min(evse.max_current_a, limit_a)
    return offer if offer >= MIN_OFFER_A else None


async def apply(hw: EvseHardware, evse: Evse, authorized: bool,
                limit_a: float | None = None) -> None:
    """Drive pilot and contactor by the rules above; `limit_a` is the smart-charging
    limit per phase now (None: none below the rating)."""
    connector = evse.connectors[1]
    allowed = (authorized and connector.plugged and connector.operative
               and not connector.faulted and not hw.faults)
    offer = offer_for(evse, limit_a) if allowed else None
    pilot, contactor = hw.devices.pilot, hw.devices.contactor
    if pilot is not None:
        if pilot.offered_a != offer:
            await pilot.offer(offer)
    if contactor is not None:
        wants = offer is not None and (pilot is None or pilot.state.wants_power)
        if wants and not _closed(hw):
            await contactor.close()
        elif not wants and _closed(hw):
            await contactor.open()
