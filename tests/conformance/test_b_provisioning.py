"""Part 6, B Provisioning: the Charging Station cases of Core (Part 5, 4.2).

The network-profile cases (TC_B_43..TC_B_50) and the offline-status cases (TC_B_51,
TC_B_52) have their own modules. A station Reset restarts the agent's work in-process:
the connection closes and the station connects again with a new BootNotification (a
new link at the CSMS). Cases that say "all connectors" or "other connectors" run on a
station with two EVSEs, so a change that reaches one EVSE only shows.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from agent.clock import parse_datetime
from agent.demo.csms import CallErrorReceived, Csms
from tests.conformance.rig import (CONNECTOR, EVSE, STATION, VALID_TOKEN, Rig, run,
                                   station)

OTHER_EVSE = 2
SECOND_TOKEN = {"idToken": "04A1B2C4", "type": "ISO14443"}


# ---- helpers -----------------------------------------------------------------------------

def status_is(evse: int, status: str, connector: int = CONNECTOR) -> Callable[[dict], bool]:
    return lambda p: (p["evseId"], p["connectorId"], p["connectorStatus"]) == (
        evse, connector, status)


def ended(transaction_id: str) -> Callable[[dict], bool]:
    return lambda p: (p["eventType"] == "Ended"
                      and p["transactionInfo"]["transactionId"] == transaction_id)


async def rebooted(rig: Rig) -> tuple[dict, dict[int, str]]:
    """The station's next connection after a Reset: its BootNotification and the status
    it reported for every connector (Part 6: "a message to report the state of a
    connector has been received for all connectors")."""
    await rig.new_link()
    boot = await rig.expect("BootNotification")
    reported = {}
    for evse in range(1, rig.evses + 1):
        status = await rig.expect("StatusNotification", where=lambda p, e=evse: (
            p["evseId"] == e))
        assert status["connectorId"] == CONNECTOR
        reported[evse] = status["connectorStatus"]
    await rig.settle()
    return boot, reported


async def reset(rig: Rig, kind: str, evse: int | None = None) -> dict:
    request: dict[str, Any] = {"type": kind}
    if evse is not None:
        request["evseId"] = evse
    return await rig.call("Reset", request)


async def energy_transfer_started(rig: Rig, token: dict = VALID_TOKEN,
                                  evse: int = EVSE) -> dict:
    """Reusable States Authorized (A, local) and EnergyTransferStarted, with their tool
    validations (tables 237, 239) for the station's TxStartPoint PowerPathClosed: the
    AuthorizeRequest names the card; the plug-in is StatusNotification Occupied; the
    transaction starts at the closed power path (ChargingStateChanged, SuspendedEVSE,
    with the idToken: the first event after authorization) and then charges
    (ChargingStateChanged, Charging). Returns the Started event."""
    assert await rig.get_variable("TxCtrlr", "TxStartPoint") == "PowerPathClosed"
    asked = len(rig.sent("Authorize"))
    started = await rig.energy_transfer_started(token, evse)
    assert [a["idToken"] for a in rig.sent("Authorize")[asked:]] == [token]
    occupied = [p for p in rig.sent("StatusNotification") if p["evseId"] == evse]
    assert (occupied[-1]["connectorId"], occupied[-1]["connectorStatus"]) == (
        CONNECTOR, "Occupied")
    tx_id = started["transactionInfo"]["transactionId"]
    assert started["triggerReason"] == "ChargingStateChanged"
    assert started["transactionInfo"]["chargingState"] == "SuspendedEVSE"
    assert (started["idToken"]["idToken"], started["idToken"]["type"]) == (
        token["idToken"], token["type"])
    assert started["evse"] == {"id": evse, "connectorId": CONNECTOR}
    [charging] = [e for e in rig.transaction_events(tx_id)
                  if e["transactionInfo"].get("chargingState") == "Charging"]
    assert (charging["eventType"], charging["triggerReason"]) == (
        "Updated", "ChargingStateChanged")
    return started


async def stop_authorized(rig: Rig, started: dict, token: dict = VALID_TOKEN) -> dict:
    """Reusable State StopAuthorized (A, local): the same idToken again ends the
    transaction (TxStopPoint has Authorized: the EV stays plugged in), checked as table
    241 does. Its optional step 1 (Updated, StopAuthorized) and step 3 (Ended) are one
    event here: with TxStopPoint Authorized the stop authorization is what ends it (E07
    as the errata have it, and as TC_E_15 checks: Ended, StopAuthorized, Local)."""
    await rig.present(token, started["evse"]["id"])
    end = await rig.expect("TransactionEvent", where=ended(
        started["transactionInfo"]["transactionId"]))
    assert end["triggerReason"] == "StopAuthorized"
    assert end["transactionInfo"]["chargingState"] == "EVConnected"
    assert end["transactionInfo"].get("stoppedReason", "Local") == "Local"
    if "idToken" in end:       # "idToken omit OR the configured one"
        assert (end["idToken"]["idToken"], end["idToken"]["type"]) == (
            token["idToken"], token["type"])
    return end


# Every CALL a Charging Station may send (Part 2, CS -> CSMS).
STATION_ACTIONS = (
    "Authorize", "BootNotification", "ClearedChargingLimit", "DataTransfer",
    "FirmwareStatusNotification", "Get15118EVCertificate", "GetCertificateStatus",
    "Heartbeat", "LogStatusNotification", "MeterValues", "NotifyChargingLimit",
    "NotifyCustomerInformation", "NotifyDisplayMessages", "NotifyEVChargingNeeds",
    "NotifyEVChargingSchedule", "NotifyEvent", "NotifyMonitoringReport", "NotifyReport",
    "PublishFirmwareStatusNotification", "ReportChargingProfiles",
    "ReservationStatusUpdate", "SecurityEventNotification", "SignCertificate",
    "StatusNotification", "TransactionEvent")


def sent_actions(rig: Rig) -> set[str]:
    """The actions the station has sent on the current link."""
    return {action for action in STATION_ACTIONS if rig.sent(action)}


def links(rig: Rig) -> int:
    return len(rig.csms.links.get(STATION, []))


async def report_pages(rig: Rig, request_id: int) -> list[dict]:
    """Every NotifyReport of `request_id`, checked as Part 6 does: seqNo from 0 up by one
    while tbc is true, generatedAt the station's time; returns the reportData items."""
    items: list[dict] = []
    seq = 0
    while True:
        page = await rig.expect("NotifyReport", where=lambda p, n=seq: (
            p["requestId"] == request_id and p["seqNo"] == n))
        generated = parse_datetime(page["generatedAt"])
        assert abs((generated - rig.clock.now()).total_seconds()) < 60
        items += page["reportData"]
        if not page.get("tbc", False):
            break
        seq += 1
    await rig.settle()
    assert len([p for p in rig.sent("NotifyReport") if p["requestId"] == request_id]) \
        == seq + 1
    return items


# ---- B01-B03 registration -----------------------------------------------------------------

def test_TC_B_01(tmp_path):
    """Cold Boot Charging Station - Accepted: Booted by a power cycle; a message reports
    the state of every connector."""
    async def case():
        async with station(tmp_path, evses=2, booted=False) as rig:
            link = await rig.new_link()
            boot = await rig.expect("BootNotification")
            # Part 6 validates no reason; a first power-on is PowerUp (BootReasonEnumType).
            assert boot["reason"] == "PowerUp"
            for evse in (1, 2):
                status = await rig.expect("StatusNotification",
                                          where=lambda p, e=evse: p["evseId"] == e)
                assert status["connectorStatus"] == "Available"
                assert status["connectorId"] != 0
            event = await rig.expect("SecurityEventNotification")
            assert event["type"] in ("StartupOfTheDevice", "ResetOrReboot")
            assert link is rig.link
    run(case())


def test_TC_B_02(tmp_path):
    """Cold Boot Charging Station - Pending."""
    async def case():
        async with station(tmp_path, evses=2, boot_status="Pending") as rig:
            # Steps 3-6: the CSMS configures and reads the Pending station.
            assert await rig.set_variable("OCPPCommCtrlr", "OfflineThreshold", "300") \
                == "Accepted"
            got = await rig.call("GetVariables", {"getVariableData": [{
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "OfflineThreshold"}}]})
            assert got["getVariableResult"][0]["attributeStatus"] == "Accepted"
            # Steps 7-10: a FullInventory report, every page.
            assert (await rig.call("GetBaseReport", {
                "requestId": 7, "reportBase": "FullInventory"}))["status"] == "Accepted"
            assert await report_pages(rig, 7)
            # Steps 11-12: no transaction before Accepted.
            answer = await rig.call("RequestStartTransaction", {
                "idToken": VALID_TOKEN, "evseId": EVSE, "remoteStartId": 12})
            assert answer["status"] == "Rejected"
            await rig.advance(10)
            assert rig.snapshot()["offered_current_a"] in (None, 0)   # no session waits
            # Nothing but what the CSMS asked for while Pending (B02.FR.02).
            assert sent_actions(rig) == {"BootNotification", "NotifyReport"}
            # Steps 13-18: TriggerMessage BootNotification, Accepted this time.
            rig.csms.boot_status = "Accepted"
            trigger = await rig.call("TriggerMessage", {"requestedMessage": "BootNotification"})
            assert trigger["status"] in ("Accepted", "NotImplemented")
            boot = await rig.expect("BootNotification")
            if trigger["status"] == "Accepted":
                assert boot["reason"] == "Triggered"
            for evse in (EVSE, OTHER_EVSE):
                await rig.expect("StatusNotification", where=status_is(evse, "Available"))
            # The rejected start stays undone: an EV plugged in now is not charged.
            await rig.plug(EVSE)
            await rig.advance(10)
            assert rig.sent("TransactionEvent") == []
            assert not rig.snapshot()["contactor_closed"]
    run(case())


def test_TC_B_03(tmp_path):
    """Cold Boot Charging Station - Rejected."""
    async def case():
        async with station(tmp_path, evses=2, boot_status="Rejected",
                           heartbeat_interval=120) as rig:
            first = rig.link
            rig.csms.boot_status = "Accepted"
            await rig.advance(119, step=30)
            # Nothing sent in the meantime, on this or any connection.
            assert len(rig.csms.links[STATION]) == 1 and sent_actions(rig) == {
                "BootNotification"}
            assert len(rig.sent("BootNotification")) == 1
            await rig.advance(1)
            # The same connection: the station keeps it open while it waits.
            assert rig.csms.links[STATION] == [first] and not first.closed.is_set()
            boot = await rig.expect("BootNotification")
            assert boot["reason"] == first.calls("BootNotification")[0]["reason"]
            for evse in (EVSE, OTHER_EVSE):
                await rig.expect("StatusNotification", where=status_is(evse, "Available"))
    run(case())


def test_TC_B_30(tmp_path):
    """Cold Boot Charging Station - Pending/Rejected - SecurityError."""
    async def case():
        async with station(tmp_path, boot_status="Rejected") as rig:
            with pytest.raises(CallErrorReceived) as refused:
                await rig.call("GetBaseReport", {"requestId": 1,
                                                 "reportBase": "FullInventory"})
            assert refused.value.code == "SecurityError"
            # Errata B03.FR.08: anything that is not a BootNotification answer, a
            # TriggerMessage for one included.
            with pytest.raises(CallErrorReceived) as refused:
                await rig.call("TriggerMessage", {"requestedMessage": "BootNotification"})
            assert refused.value.code == "SecurityError"
            await rig.settle()
            assert rig.sent("NotifyReport") == [] and len(rig.sent("BootNotification")) == 1
    run(case())


# ---- B05 / B06 Set and Get Variables -------------------------------------------------------

def get_item(component: str, variable: str, attribute: str | None = None, *,
             instance: str | None = None) -> dict:
    item: dict[str, Any] = {"component": {"name": component},
                            "variable": {"name": variable}}
    if instance is not None:
        item["variable"]["instance"] = instance
    if attribute is not None:
        item["attributeType"] = attribute
    return item


def set_item(component: str, variable: str, value: str, attribute: str | None = None, *,
             instance: str | None = None) -> dict:
    return get_item(component, variable, attribute, instance=instance) | {
        "attributeValue": value}


def no_error(result: dict) -> bool:
    return result.get("attributeStatusInfo", {"reasonCode": "NoError"})["reasonCode"] \
        == "NoError"


def named(result: dict) -> tuple[str, str]:
    return result["component"]["name"], result["variable"]["name"]


def test_TC_B_06(tmp_path):
    """Get Variables - single value."""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("OCPPCommCtrlr", "OfflineThreshold"): "300"})
            answer = await rig.call("GetVariables", {"getVariableData": [
                get_item("OCPPCommCtrlr", "OfflineThreshold", "Actual")]})
            [result] = answer["getVariableResult"]
            assert result["attributeStatus"] == "Accepted"
            assert result["attributeType"] == "Actual"
            assert result["attributeValue"] == "300"
            assert named(result) == ("OCPPCommCtrlr", "OfflineThreshold")
            assert no_error(result)
    run(case())


def test_TC_B_07(tmp_path):
    """Get Variables - multiple values."""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("OCPPCommCtrlr", "OfflineThreshold"): "300",
                                 ("AuthCtrlr", "LocalAuthorizeOffline"): "true"})
            answer = await rig.call("GetVariables", {"getVariableData": [
                get_item("OCPPCommCtrlr", "OfflineThreshold", "Actual"),
                get_item("AuthCtrlr", "LocalAuthorizeOffline", "Actual")]})
            results = {named(r): r for r in answer["getVariableResult"]}
            assert set(results) == {("OCPPCommCtrlr", "OfflineThreshold"),
                                    ("AuthCtrlr", "LocalAuthorizeOffline")}
            for result, value in ((results["OCPPCommCtrlr", "OfflineThreshold"], "300"),
                                  (results["AuthCtrlr", "LocalAuthorizeOffline"], "true")):
                assert result["attributeStatus"] == "Accepted"
                assert result["attributeType"] == "Actual"
                assert result["attributeValue"] == value
                assert no_error(result)
    run(case())


def test_TC_B_09(tmp_path):
    """Set Variables - single value."""
    async def case():
        async with station(tmp_path) as rig:
            answer = await rig.call("SetVariables", {"setVariableData": [
                set_item("OCPPCommCtrlr", "OfflineThreshold", "300", "Actual")]})
            [result] = answer["setVariableResult"]
            assert result["attributeStatus"] == "Accepted"
            assert result["attributeType"] == "Actual"
            assert named(result) == ("OCPPCommCtrlr", "OfflineThreshold")
            assert no_error(result)
            assert await rig.get_variable("OCPPCommCtrlr", "OfflineThreshold") == "300"
    run(case())


def test_TC_B_10(tmp_path):
    """Set Variables - multiple values."""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("AuthCtrlr", "LocalAuthorizeOffline"): "false"})
            answer = await rig.call("SetVariables", {"setVariableData": [
                set_item("OCPPCommCtrlr", "OfflineThreshold", "300", "Actual"),
                set_item("AuthCtrlr", "LocalAuthorizeOffline", "true", "Actual")]})
            results = {named(r): r for r in answer["setVariableResult"]}
            assert set(results) == {("OCPPCommCtrlr", "OfflineThreshold"),
                                    ("AuthCtrlr", "LocalAuthorizeOffline")}
            for result in results.values():
                assert result["attributeStatus"] == "Accepted"
                assert result["attributeType"] == "Actual"
                assert no_error(result)
            assert await rig.get_variable("OCPPCommCtrlr", "OfflineThreshold") == "300"
            assert await rig.get_variable("AuthCtrlr", "LocalAuthorizeOffline") == "true"
    run(case())


def test_TC_B_11(tmp_path):
    """Set Variables - invalidly formatted values."""
    async def case():
        async with station(tmp_path) as rig:
            now = rig.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
            # Errata 6.1.4: <configured offlineThreshold>, that + 0.1, true, a time, "abc".
            values = ["300", "300.1", "true", now, "abc"]
            expected = {
                ("OCPPCommCtrlr", "OfflineThreshold"): {"300"},
                # 0-100 %: none of the five is a valid percentage.
                ("SmartChargingCtrlr", "LimitChangeSignificance"): set(),
                ("AuthCtrlr", "AuthorizeRemoteStart"): {"true"},
            }
            for value in values:
                for (component, variable), valid in expected.items():
                    answer = await rig.call("SetVariables", {"setVariableData": [
                        set_item(component, variable, value)]})
                    [result] = answer["setVariableResult"]
                    assert named(result) == (component, variable)
                    assert result["attributeType"] == "Actual"
                    want = "Accepted" if value in valid else "Rejected"
                    assert result["attributeStatus"] == want, (component, variable, value)
                    if want == "Rejected" and "attributeStatusInfo" in result:
                        # Part 6: "absent or reasonCode InvalidValue (not required)": a
                        # lab does not fail the code; ValueOutOfRange is the truer one
                        # for a well-formed number outside 0-100 (Part 2, reasonCode).
                        info = result["attributeStatusInfo"]["reasonCode"]
                        assert info in ("InvalidValue", "ValueOutOfRange"), info
                        if value in ("true", now, "abc"):    # not a number at all
                            assert info == "InvalidValue", (variable, value, info)
            # Steps 7-8 only where the station has ClockCtrlr.NextTimeOffsetTransitionDateTime.
            answer = await rig.call("GetVariables", {"getVariableData": [
                get_item("ClockCtrlr", "NextTimeOffsetTransitionDateTime")]})
            assert answer["getVariableResult"][0]["attributeStatus"] == "UnknownVariable"
            assert await rig.get_variable("OCPPCommCtrlr", "OfflineThreshold") == "300"
    run(case())


async def refused(tmp_path, action: str, item: dict, status: str) -> None:
    """The one-item GetVariables/SetVariables of TC_B_32-39: its one result has `status`
    and names the component and variable (instance included) it was asked about."""
    async with station(tmp_path) as rig:
        key = "getVariableData" if action == "GetVariables" else "setVariableData"
        answer = await rig.call(action, {key: [item]})
        [result] = answer["getVariableResult" if action == "GetVariables"
                          else "setVariableResult"]
        assert result["attributeStatus"] == status
        assert result["component"]["name"] == item["component"]["name"]
        assert result["variable"] == item["variable"]
        assert result["attributeType"] == item.get("attributeType", "Actual")
        if action == "SetVariables" and status != "Accepted":
            # Nothing changed: the variable, where it exists, keeps its value.
            got = await rig.call("GetVariables", {"getVariableData": [
                {"component": item["component"], "variable": item["variable"]}]})
            value = got["getVariableResult"][0].get("attributeValue")
            assert value != item["attributeValue"]


def test_TC_B_32(tmp_path):
    """Get Variables - Unknown component."""
    run(refused(tmp_path, "GetVariables", get_item("UnknownComponent", "OfflineThreshold"),
                "UnknownComponent"))


def test_TC_B_33(tmp_path):
    """Get Variables - Unknown variable."""
    run(refused(tmp_path, "GetVariables", get_item("OCPPCommCtrlr", "UnknownVariable"),
                "UnknownVariable"))


def test_TC_B_34(tmp_path):
    """Get Variables - Not supported attribute type."""
    run(refused(tmp_path, "GetVariables",
                get_item("OCPPCommCtrlr", "OfflineThreshold", "Target"),
                "NotSupportedAttributeType"))


def test_TC_B_35(tmp_path):
    """Set Variables - Unknown component."""
    run(refused(tmp_path, "SetVariables",
                set_item("UnknownComponent", "OfflineThreshold", "300"), "UnknownComponent"))


def test_TC_B_36(tmp_path):
    """Set Variables - Unknown variable."""
    run(refused(tmp_path, "SetVariables",
                set_item("OCPPCommCtrlr", "UnknownVariable", "300"), "UnknownVariable"))


def test_TC_B_37(tmp_path):
    """Set Variables - Not supported attribute type."""
    run(refused(tmp_path, "SetVariables",
                set_item("OCPPCommCtrlr", "OfflineThreshold", "300", "Target"),
                "NotSupportedAttributeType"))


def test_TC_B_39(tmp_path):
    """Set Variables - Read-only."""
    # MessageTimeout[Default] is 30: asking for 45 shows the value did not move.
    run(refused(tmp_path, "SetVariables",
                set_item("OCPPCommCtrlr", "MessageTimeout", "45", instance="Default"),
                "Rejected"))


# ---- B07 base reports, and the variables the specification requires ----------------------

RO, RW = {"ReadOnly"}, {"ReadWrite"}
AVAILABILITY = {"Available", "Occupied", "Reserved", "Unavailable", "Faulted"}
TX_POINTS = {"ParkingBayOccupancy", "EVConnected", "Authorized", "PowerPathClosed",
             "EnergyTransfer", "DataSigned"}


@dataclass(frozen=True)
class Required:
    """One required component/variable of Part 6 TC_B_53 (Part 2's "Referenced Components
    and Variables" of the functional blocks the station implements): the mutabilities
    allowed, the dataType (None: not checked), and what else the case checks."""
    component: str
    variable: str
    instance: str | None = None
    mutability: frozenset[str] = frozenset({"ReadWrite"})
    data_type: str | None = None
    unit: set[str] | None = None
    max_limit: bool = False            # maxLimit > 0
    values: set[str] | None = None     # valuesList a subset of these (empty set: any)


def req(component: str, variable: str, mutability: set[str], data_type: str | None, *,
        instance: str | None = None, unit: set[str] | None = None, max_limit: bool = False,
        values: set[str] | None = None) -> Required:
    return Required(component, variable, instance, frozenset(mutability), data_type, unit,
                    max_limit, values)


# Core, plus SmartChargingCtrlr and LocalAuthListCtrlr (the station implements smart
# charging and the local authorization list); it has no display messages, ISO 15118,
# monitoring or tariff and cost.
REQUIRED = [
    req("AlignedDataCtrlr", "Interval", RW, "integer", unit={"s"}),
    req("AlignedDataCtrlr", "Measurands", RW, "MemberList", max_limit=True, values=set()),
    req("AlignedDataCtrlr", "TxEndedInterval", RW, "integer", unit={"s"}),
    req("AlignedDataCtrlr", "TxEndedMeasurands", RW, "MemberList", max_limit=True,
        values=set()),
    req("AuthCtrlr", "AuthorizeRemoteStart", RO | RW, "boolean"),
    req("AuthCtrlr", "LocalAuthorizeOffline", RW, "boolean"),
    req("AuthCtrlr", "LocalPreAuthorize", RW, "boolean"),
    req("ChargingStation", "AvailabilityState", RO, "OptionList", values=AVAILABILITY),
    req("ChargingStation", "Available", RO, "boolean"),
    req("ChargingStation", "SupplyPhases", RO, "integer"),
    req("ClockCtrlr", "DateTime", RO, "dateTime"),
    req("ClockCtrlr", "TimeSource", RW, "SequenceList", values={
        "Heartbeat", "NTP", "GPS", "RealTimeClock", "MobileNetwork", "RadioTimeTransmitter"}),
    req("Connector", "AvailabilityState", RO, "OptionList", values=AVAILABILITY),
    req("Connector", "Available", RO, "boolean"),
    # Part 6 says string; appendix 4 makes it an OptionList of ConnectorEnumType.
    req("Connector", "ConnectorType", RO, None),
    req("Connector", "SupplyPhases", RO, "integer"),
    *(req("DeviceDataCtrlr", name, RO, "integer", instance=message)
      for name in ("BytesPerMessage", "ItemsPerMessage")
      for message in ("GetReport", "GetVariables", "SetVariables")),
    req("EVSE", "AvailabilityState", RO, "OptionList", values=AVAILABILITY),
    req("LocalAuthListCtrlr", "BytesPerMessage", RO, "integer"),
    req("LocalAuthListCtrlr", "Entries", RO, "integer", max_limit=True),
    req("LocalAuthListCtrlr", "ItemsPerMessage", RO, "integer"),
    req("EVSE", "Available", RO, "boolean"),
    req("EVSE", "Power", RO, "decimal", unit={"W", "kW"}, max_limit=True),
    req("EVSE", "SupplyPhases", RO, "integer"),
    req("OCPPCommCtrlr", "FileTransferProtocols", RO, "MemberList",
        values={"FTP", "FTPS", "HTTP", "HTTPS", "SFTP"}),
    req("OCPPCommCtrlr", "MessageTimeout", RO, "integer", instance="Default", unit={"s"}),
    req("OCPPCommCtrlr", "MessageAttemptInterval", RW, "integer", instance="TransactionEvent",
        unit={"s"}),
    req("OCPPCommCtrlr", "MessageAttempts", RW, "integer", instance="TransactionEvent"),
    req("OCPPCommCtrlr", "NetworkConfigurationPriority", RW, "SequenceList",
        values={"1", "2", "3", "4", "5"}),
    req("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", RW, "integer"),
    req("OCPPCommCtrlr", "OfflineThreshold", RW, "integer", unit={"s"}),
    req("OCPPCommCtrlr", "ResetRetries", RW, "integer"),
    req("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", RW | RO, "boolean"),
    req("SampledDataCtrlr", "TxEndedInterval", RW, "integer", unit={"s"}),
    req("SampledDataCtrlr", "TxEndedMeasurands", RW, "MemberList", max_limit=True,
        values=set()),
    req("SampledDataCtrlr", "TxStartedMeasurands", RW, "MemberList", max_limit=True,
        values=set()),
    req("SampledDataCtrlr", "TxUpdatedInterval", RW, "integer", unit={"s"}),
    req("SampledDataCtrlr", "TxUpdatedMeasurands", RW, "MemberList", max_limit=True,
        values=set()),
    req("SecurityCtrlr", "CertificateEntries", RO, "integer", max_limit=True),
    req("SecurityCtrlr", "OrganizationName", RW, "string"),
    req("SecurityCtrlr", "SecurityProfile", RO, "integer"),
    req("TxCtrlr", "EVConnectionTimeOut", RW, "integer", unit={"s"}),
    req("TxCtrlr", "StopTxOnEVSideDisconnect", RW | RO, "boolean"),
    req("TxCtrlr", "StopTxOnInvalidId", RW, "boolean"),
    req("TxCtrlr", "TxStartPoint", RW | RO, "MemberList", values=TX_POINTS),
    req("TxCtrlr", "TxStopPoint", RW | RO, "MemberList", values=TX_POINTS),
    req("SmartChargingCtrlr", "Entries", RO, "integer", instance="ChargingProfiles",
        max_limit=True),
    req("SmartChargingCtrlr", "LimitChangeSignificance", RW, "decimal", unit={"Percent"}),
    req("SmartChargingCtrlr", "PeriodsPerSchedule", RO, "integer"),
    req("SmartChargingCtrlr", "ProfileStackLevel", RO, "integer"),
    req("SmartChargingCtrlr", "RateUnit", RO, "MemberList", values={"A", "W"}),
]


def key_of(item: dict) -> tuple[str, str, str | None]:
    return (item["component"]["name"], item["variable"]["name"],
            item["variable"].get("instance"))


def check_item(item: dict) -> None:
    """What TC_B_12/13/53 check of every reported variable: characteristics present,
    valuesList for the list types, and an Actual value that is one of them."""
    chars = item.get("variableCharacteristics")
    assert chars is not None, key_of(item)
    assert chars["dataType"] and "supportsMonitoring" in chars
    if chars["dataType"] in ("OptionList", "SequenceList", "MemberList"):
        assert chars.get("valuesList"), key_of(item)
        allowed = chars["valuesList"].split(",")
        for attribute in item["variableAttribute"]:
            value = attribute.get("value")
            if value:
                members = value.split(",") if chars["dataType"] != "OptionList" else [value]
                assert set(members) <= set(allowed), (key_of(item), value)


def check_required(items: list[dict], required: list[Required], evses: int) -> None:
    by_key: dict[tuple, list[dict]] = {}
    for item in items:
        by_key.setdefault(key_of(item), []).append(item)
    for need in required:
        found = by_key.get((need.component, need.variable, need.instance), [])
        tiers = {"EVSE": evses, "Connector": evses}.get(need.component, 1)
        assert len(found) >= tiers, (need.component, need.variable, need.instance)
        for item in found:
            actual = [a for a in item["variableAttribute"] if a.get("type", "Actual") ==
                      "Actual"]
            assert actual, key_of(item)
            assert actual[0].get("mutability", "ReadWrite") in need.mutability, key_of(item)
            chars = item["variableCharacteristics"]
            if need.data_type is not None:
                assert chars["dataType"] == need.data_type, key_of(item)
            if need.unit is not None:
                assert chars.get("unit") in need.unit, key_of(item)
            if need.max_limit:
                assert chars.get("maxLimit", 0) > 0, key_of(item)
            if need.values is not None:
                listed = set(chars["valuesList"].split(","))
                assert listed and (not need.values or listed <= need.values), key_of(item)
    # C-23: TimeSource offers at least Heartbeat.
    [time_source] = by_key[("ClockCtrlr", "TimeSource", None)]
    assert "Heartbeat" in time_source["variableCharacteristics"]["valuesList"].split(",")


async def base_report(rig: Rig, base: str, request_id: int) -> list[dict]:
    answer = await rig.call("GetBaseReport", {"requestId": request_id, "reportBase": base})
    assert answer["status"] == "Accepted"
    assert answer.get("statusInfo", {"reasonCode": "NoError"})["reasonCode"] == "NoError"
    items = await report_pages(rig, request_id)
    for item in items:
        check_item(item)
    return items


def test_TC_B_12(tmp_path):
    """Get Base Report - ConfigurationInventory."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            items = await base_report(rig, "ConfigurationInventory", 1012)
            # Post scenario: every variable reported is writable (each attribute of it).
            for item in items:
                mutabilities = {a.get("mutability", "ReadWrite")
                                for a in item["variableAttribute"]}
                assert mutabilities <= {"ReadWrite", "WriteOnly"}, key_of(item)
            writable = [r for r in REQUIRED if r.mutability == RW]
            check_required(items, writable, rig.evses)
            # Everything the CSMS can set, and nothing else: the FullInventory's writable.
            full = await base_report(rig, "FullInventory", 1013)
            assert sorted(map(repr, items)) == sorted(repr(i) for i in full if {
                a.get("mutability", "ReadWrite") for a in i["variableAttribute"]}
                & {"ReadWrite", "WriteOnly"})
    run(case())


def test_TC_B_13(tmp_path):
    """Get Base Report - FullInventory."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            items = await base_report(rig, "FullInventory", 1013)
            check_required(items, REQUIRED, rig.evses)
            # A WriteOnly value is never reported (BasicAuthPassword).
            for item in items:
                for attribute in item["variableAttribute"]:
                    if attribute.get("mutability") == "WriteOnly":
                        assert "value" not in attribute
    run(case())


def test_TC_B_15(tmp_path):
    """Get Base Report - Not Supported base report."""
    async def case():
        async with station(tmp_path) as rig:
            answer = await rig.call("GetBaseReport", {"requestId": 15,
                                                      "reportBase": "SummaryInventory"})
            if answer["status"] != "NotSupported":
                # The prerequisite does not hold: the report is there, and it works.
                assert answer["status"] == "Accepted"
                assert await report_pages(rig, 15)
                pytest.skip("not applicable: the station supports the optional "
                            "SummaryInventory report")
            assert answer.get("statusInfo", {"reasonCode": "UnsupportedParam"})[
                "reasonCode"] == "UnsupportedParam"
            await rig.advance(10)
            assert rig.sent("NotifyReport") == []
    run(case())


def test_TC_B_53(tmp_path):
    """Get Base Report - Test mandatory DM variables via FullInventory."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            items = await base_report(rig, "FullInventory", 1053)
            check_required(items, REQUIRED, rig.evses)
    run(case())


# ---- Part 4 §5.3 reconnection ------------------------------------------------------------

async def reconnection_scheduled(caplog: pytest.LogCaptureFixture, seen: int) -> int:
    """Until the station has seen the connection go and armed its back-off timer (the
    closing handshake takes real time, more on websockets 10.4); returns the count."""
    def count() -> int:
        return sum(1 for r in caplog.records if r.getMessage().startswith("reconnecting in"))
    for _ in range(1000):
        if count() > seen:
            return count()
        await asyncio.sleep(0.01)
    raise AssertionError("the station did not schedule a reconnection")


def test_TC_B_57(tmp_path, monkeypatch, caplog):
    """Network Reconnection - After connection loss."""
    caplog.set_level(logging.INFO, logger="agent.ocpp.connection")
    attempts: list[tuple[float, bool]] = []   # (station's clock, admitted) per attempt
    clocks: list[Any] = []
    admit = Csms._admit

    def recording(self: Csms, path: str, headers: Any) -> Any:
        refusal = admit(self, path, headers)
        if clocks:
            attempts.append((clocks[0].monotonic(), refusal is None))
        return refusal
    monkeypatch.setattr(Csms, "_admit", recording)
    wait_minimum = 20

    async def case():
        async with station(tmp_path) as rig:
            clocks.append(rig.clock)
            await rig.configure({("OCPPCommCtrlr", "RetryBackOffRepeatTimes"): "2",
                                 ("OCPPCommCtrlr", "RetryBackOffRandomRange"): "0",
                                 ("OCPPCommCtrlr", "RetryBackOffWaitMinimum"):
                                     str(wait_minimum)})
            # Step 1-3: the OCTT closes the connection; the station is back after the wait.
            closed_at = rig.clock.monotonic()
            await rig.link.close()
            scheduled = await reconnection_scheduled(caplog, 0)
            await rig.advance(wait_minimum - 1)
            assert attempts == []
            await rig.advance(1)
            await rig.new_link()
            first_wait = attempts[-1][0] - closed_at
            assert attempts[-1][1] and first_wait >= wait_minimum
            # Steps 4-8: closed again; the first attempt is refused, the next one waits
            # twice as long.
            password = rig.csms.passwords[STATION]
            rig.csms.passwords[STATION] = "not-the-password-0000"
            closed_at = rig.clock.monotonic()
            attempts.clear()
            await rig.link.close()
            scheduled = await reconnection_scheduled(caplog, scheduled)
            await rig.advance(wait_minimum)
            assert [ok for _, ok in attempts] == [False]
            assert attempts[0][0] - closed_at >= wait_minimum
            await reconnection_scheduled(caplog, scheduled)
            rig.csms.passwords[STATION] = password
            await rig.advance(2 * wait_minimum - 1)
            assert len(attempts) == 1
            await rig.advance(1)
            await rig.new_link()
            assert [ok for _, ok in attempts] == [False, True]
            assert attempts[-1][0] - closed_at >= 3 * first_wait
            # A reconnection, not a reboot: no new BootNotification (Part 4 §5.3).
            await rig.settle()
            assert rig.sent("BootNotification") == []
    run(case())


# ---- B11 / B12 Reset ---------------------------------------------------------------------

def test_TC_B_20(tmp_path):
    """Reset Charging Station - Without ongoing transaction - OnIdle."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            assert (await reset(rig, "OnIdle"))["status"] == "Accepted"
            boot, reported = await rebooted(rig)
            assert boot["reason"] == "RemoteReset"
            assert reported == {EVSE: "Available", OTHER_EVSE: "Available"}
            event = await rig.expect("SecurityEventNotification")
            assert event["type"] in ("StartupOfTheDevice", "ResetOrReboot")
    run(case())


def test_TC_B_21(tmp_path):
    """Reset Charging Station - With Ongoing Transaction - OnIdle."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            started = await energy_transfer_started(rig)
            tx_id = started["transactionInfo"]["transactionId"]
            first = rig.link
            assert (await reset(rig, "OnIdle"))["status"] == "Scheduled"
            # Scheduled: the session goes on, charging, on the same connection.
            await rig.advance(120, step=30)
            assert rig.link is first and links(rig) == 1
            assert rig.snapshot()["contactor_closed"]
            assert not [e for e in rig.transaction_events(tx_id) if e["eventType"] == "Ended"]
            # Step 3: StopAuthorized ends it (TxStopPoint has Authorized); then the reset.
            end = await stop_authorized(rig, started)
            assert end["transactionInfo"]["stoppedReason"] == "Local"
            assert end in first.calls("TransactionEvent")   # delivered before the reset
            boot, reported = await rebooted(rig)
            assert boot["reason"] == "ScheduledReset"
            # The transaction was stopped at step 3 with the EV still plugged in.
            assert reported == {EVSE: "Occupied", OTHER_EVSE: "Available"}
            event = await rig.expect("SecurityEventNotification")
            assert event["type"] in ("StartupOfTheDevice", "ResetOrReboot")
            assert not rig.snapshot()["contactor_closed"]
            assert rig.sent("TransactionEvent") == []   # no new transaction after boot
    run(case())


def test_TC_B_22(tmp_path):
    """Reset Charging Station - With Ongoing Transaction - Immediate."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            started = await energy_transfer_started(rig)
            tx_id = started["transactionInfo"]["transactionId"]
            first = rig.link
            assert (await reset(rig, "Immediate"))["status"] == "Accepted"
            end = await first.expect_call("TransactionEvent", where=ended(tx_id))
            assert end["triggerReason"] == "ResetCommand"
            assert end["transactionInfo"]["chargingState"] == "EVConnected"
            assert end["transactionInfo"]["stoppedReason"] == "ImmediateReset"
            assert "idToken" not in end
            boot, reported = await rebooted(rig)
            assert boot["reason"] == "RemoteReset"
            assert reported == {EVSE: "Occupied", OTHER_EVSE: "Available"}
            # Ended once, not again as PowerLoss after the restart.
            assert [e["eventType"] for e in rig.transaction_events(tx_id)].count("Ended") == 1
            assert not rig.snapshot()["contactor_closed"]
            assert rig.snapshot()["offered_current_a"] in (None, 0)
    run(case())


def test_immediate_reset_takes_over_a_scheduled_one(tmp_path):
    """Beyond TC_B_21/22: an Immediate Reset while an OnIdle one waits for the same
    transaction is one reset, RemoteReset (B11/B12), not a second ScheduledReset set off
    by the transaction the Immediate one ended."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            started = await energy_transfer_started(rig)
            tx_id = started["transactionInfo"]["transactionId"]
            first = rig.link
            assert (await reset(rig, "OnIdle"))["status"] == "Scheduled"
            assert (await reset(rig, "Immediate"))["status"] == "Accepted"
            end = await first.expect_call("TransactionEvent", where=ended(tx_id))
            assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == (
                "ResetCommand", "ImmediateReset")
            boot, reported = await rebooted(rig)
            assert boot["reason"] == "RemoteReset"
            assert reported == {EVSE: "Occupied", OTHER_EVSE: "Available"}
            await rig.advance(60, step=30)
            assert links(rig) == 2   # one reset, not two
    run(case())


def test_TC_B_23(tmp_path):
    """Reset Charging Station - Unavailable persists reset."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            answer = await rig.call("ChangeAvailability", {
                "operationalStatus": "Inoperative",
                "evse": {"id": EVSE, "connectorId": CONNECTOR}})
            assert answer["status"] == "Accepted"
            await rig.expect("StatusNotification", where=status_is(EVSE, "Unavailable"))
            assert (await reset(rig, "OnIdle"))["status"] == "Accepted"
            boot, reported = await rebooted(rig)
            assert boot["reason"] == "RemoteReset"
            assert reported == {EVSE: "Unavailable", OTHER_EVSE: "Available"}
    run(case())


def test_TC_B_25(tmp_path):
    """Reset EVSE - Without ongoing transaction."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            first = rig.link
            assert (await reset(rig, "OnIdle", EVSE))["status"] == "Accepted"
            # The EVSE goes out of service and comes back; the station does not reboot.
            await rig.expect("StatusNotification", where=status_is(EVSE, "Unavailable"))
            await rig.expect("StatusNotification", where=status_is(EVSE, "Available"))
            await rig.settle()
            assert rig.link is first and links(rig) == 1
            assert not [p for p in rig.sent("StatusNotification") if p["evseId"] == OTHER_EVSE
                        and p["connectorStatus"] != "Available"]
    run(case())


def test_TC_B_26(tmp_path):
    """Reset EVSE - With Ongoing Transaction - OnIdle."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            started = await energy_transfer_started(rig)
            tx_id = started["transactionInfo"]["transactionId"]
            assert (await reset(rig, "OnIdle", EVSE))["status"] == "Scheduled"
            await rig.advance(120, step=30)
            assert rig.snapshot()["contactor_closed"]
            assert not rig.sent("StatusNotification") or all(
                p["connectorStatus"] != "Unavailable" for p in rig.sent("StatusNotification"))
            await stop_authorized(rig, started)
            # Now the EVSE resets: out of service and back, the EV still plugged in.
            await rig.expect("StatusNotification", where=status_is(EVSE, "Unavailable"))
            await rig.expect("StatusNotification", where=status_is(EVSE, "Occupied"))
            await rig.settle()
            assert links(rig) == 1   # errata 6.1.7: the station does not reboot
            assert [e["eventType"] for e in rig.transaction_events(tx_id)].count("Ended") == 1
            assert not rig.snapshot()["contactor_closed"]
            # Steps 4-5: EVConnectedPostSession (the transaction ended already: nothing)
            # and EVDisconnected: the connector Available, no TransactionEvent (ended).
            events = len(rig.transaction_events())
            await rig.unplug(EVSE)
            await rig.expect("StatusNotification", where=status_is(EVSE, "Available"))
            await rig.settle()
            assert len(rig.transaction_events()) == events
            # The other EVSE was never touched by this EVSE's reset.
            assert {p["connectorStatus"] for p in rig.sent("StatusNotification")
                    if p["evseId"] == OTHER_EVSE} <= {"Available"}
    run(case())


def test_TC_B_27(tmp_path):
    """Reset EVSE - With Ongoing Transaction - Immediate."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            started = await energy_transfer_started(rig)
            tx_id = started["transactionInfo"]["transactionId"]
            assert (await reset(rig, "Immediate", EVSE))["status"] == "Accepted"
            end = await rig.expect("TransactionEvent", where=ended(tx_id))
            assert end["triggerReason"] == "ResetCommand"
            assert end["transactionInfo"]["chargingState"] == "EVConnected"
            assert end["transactionInfo"]["stoppedReason"] == "ImmediateReset"
            await rig.expect("StatusNotification", where=status_is(EVSE, "Unavailable"))
            await rig.expect("StatusNotification", where=status_is(EVSE, "Occupied"))
            await rig.settle()
            assert links(rig) == 1
            assert not rig.snapshot()["contactor_closed"]
            # The EVSE is back in service: a new session can start there.
            await rig.present(VALID_TOKEN, EVSE)
            await rig.advance(1)
            again = await rig.expect("TransactionEvent", where=lambda p: (
                p["eventType"] == "Started" and p["transactionInfo"]["transactionId"] != tx_id))
            assert again["evse"]["id"] == EVSE
    run(case())


def test_TC_B_28():
    """Reset EVSE - Not Supported."""
    pytest.skip("not applicable: the station supports Reset per EVSE (C-13)")


def test_TC_B_29():
    """Reset EVSE - With ongoing transaction - Not Supported."""
    pytest.skip("not applicable: the station supports Reset per EVSE (C-13)")


def test_TC_B_41(tmp_path):
    """Reset Charging Station - With multiple ongoing transactions - OnIdle."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            first_tx = await energy_transfer_started(rig, VALID_TOKEN, EVSE)
            second_tx = await energy_transfer_started(rig, SECOND_TOKEN, OTHER_EVSE)
            first = rig.link
            assert (await reset(rig, "OnIdle"))["status"] == "Scheduled"
            # Steps 3-6: EVSE 1's session ends and its EV leaves; EVSE 2 still charges.
            await stop_authorized(rig, first_tx)
            await rig.unplug(EVSE)
            await rig.expect("StatusNotification", where=status_is(EVSE, "Available"))
            await rig.advance(60, step=30)
            assert rig.link is first and links(rig) == 1
            assert rig.snapshot(OTHER_EVSE)["contactor_closed"]
            # Steps 7-8: EVSE 2's ends too (TxStopPoint has Authorized): now the reset.
            await stop_authorized(rig, second_tx, SECOND_TOKEN)
            boot, reported = await rebooted(rig)
            assert boot["reason"] == "ScheduledReset"
            assert reported == {EVSE: "Available", OTHER_EVSE: "Occupied"}
    run(case())


# ---- no variable in a FullInventory report is inert ---------------------------------------
#
# A lab reads the device model as a claim. Every variable a FullInventory report holds is
# listed here with the test that shows it taking effect (a setting changes behaviour, a
# read-only value is the station's truth, a "false"/"not available" is a refusal). A new
# variable without an entry, or an entry for a variable no longer reported, fails below.
# Keys: Component.Variable[instance] (the EVSE/connector tiers share one entry); values:
# test node ids under tests/.

WHERE_IT_WORKS: dict[str, str] = {
    "ChargingStation.AvailabilityState":
        "test_availability_agent.py::test_change_availability_faults_and_restart",
    "ChargingStation.Available": "test_availability.py::test_station_inoperative_and_back",
    "ChargingStation.Model":
        "conformance/test_b_provisioning.py::test_read_only_identity_values_are_true",
    "ChargingStation.VendorName":
        "conformance/test_b_provisioning.py::test_read_only_identity_values_are_true",
    "ChargingStation.SerialNumber":
        "conformance/test_b_provisioning.py::test_read_only_identity_values_are_true",
    "ChargingStation.SupplyPhases":
        "conformance/test_b_provisioning.py::test_read_only_identity_values_are_true",
    "ChargingStation.Problem": "test_availability.py::test_a_fault_and_its_end_as_notify_event",
    "ChargingStation.FirmwareVersion":
        "test_firmware.py::test_signed_update_installs_restarts_and_reports_installed",
    "ChargingStation.AllowNewSessionsPendingFirmwareUpdate":
        "conformance/test_l_firmware.py::test_TC_L_14",
    "EVSE.AvailabilityState":
        "test_availability_agent.py::test_change_availability_faults_and_restart",
    "EVSE.Available":
        "test_availability.py::test_evse_and_connector_settings_nest_under_the_station",
    "EVSE.Power": "test_metering.py::test_evse_power_is_provided_from_the_meter",
    "EVSE.SupplyPhases":
        "conformance/test_b_provisioning.py::test_read_only_identity_values_are_true",
    "EVSE.Problem": "test_availability.py::test_several_faults_of_one_evse",
    "FiscalMetering.Problem":
        "test_energy_register_agent.py::test_power_loss_with_a_meter_that_lost_its_register",
    "Connector.AvailabilityState": "conformance/test_g_availability.py::test_TC_G_01",
    "Connector.Available":
        "test_availability.py::test_evse_and_connector_settings_nest_under_the_station",
    "Connector.ConnectorType":
        "test_connector_lock.py::test_sockets_have_a_lock_in_the_device_model_fixed_cables_none",
    "Connector.SupplyPhases":
        "conformance/test_b_provisioning.py::test_read_only_identity_values_are_true",
    "Connector.Problem":
        "test_connector_lock.py::test_a_lock_that_fails_means_no_energy_and_a_reported_problem",
    "ConnectorPlugRetentionLock.Enabled":
        "test_connector_lock.py::test_sockets_have_a_lock_in_the_device_model_fixed_cables_none",
    "ConnectorPlugRetentionLock.Problem":
        "test_connector_lock.py::test_a_lock_that_fails_means_no_energy_and_a_reported_problem",
    "OCPPCommCtrlr.ActiveNetworkProfile":
        "test_network_profiles.py::"
        "test_a_stored_profile_survives_a_reboot_and_a_new_priority_takes_it_first",
    "OCPPCommCtrlr.FileTransferProtocols":
        "test_transfer.py::test_check_url_accepts_supported_urls",
    "OCPPCommCtrlr.HeartbeatInterval":
        "test_registration.py::test_heartbeat_at_the_interval_only_when_nothing_else_was_sent",
    "OCPPCommCtrlr.MessageTimeout[Default]":
        "test_registration.py::test_unanswered_call_times_out_and_the_line_frees",
    "OCPPCommCtrlr.MessageAttempts[TransactionEvent]":
        "test_outbox.py::test_failed_attempts_are_spaced_then_given_up_and_the_queue_moves_on",
    "OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]":
        "test_outbox.py::test_failed_attempts_are_spaced_then_given_up_and_the_queue_moves_on",
    "OCPPCommCtrlr.NetworkConfigurationPriority":
        "test_network_profiles.py::"
        "test_a_stored_profile_survives_a_reboot_and_a_new_priority_takes_it_first",
    "OCPPCommCtrlr.NetworkProfileConnectionAttempts":
        "test_network_profiles.py::"
        "test_falls_back_after_the_configured_attempts_and_keeps_the_last_working",
    # B04: StatusNotification of every connector after an outage longer than it.
    "OCPPCommCtrlr.OfflineThreshold": "conformance/test_b_offline_status.py::test_TC_B_51",
    "OCPPCommCtrlr.ResetRetries":
        "test_registration.py::test_reset_retries_tries_a_failed_reset_again",
    "OCPPCommCtrlr.RetryBackOffRandomRange":
        "test_registration.py::test_reconnects_with_back_off_and_no_new_boot",
    "OCPPCommCtrlr.RetryBackOffRepeatTimes": "conformance/test_b_provisioning.py::test_TC_B_57",
    "OCPPCommCtrlr.RetryBackOffWaitMinimum": "conformance/test_b_provisioning.py::test_TC_B_57",
    # Also TC_E_25 and the E09/E10 cases.
    "OCPPCommCtrlr.UnlockOnEVSideDisconnect":
        "test_connector_lock.py::"
        "test_unlock_on_ev_side_disconnect_false_keeps_the_cable_for_its_card",
    "OCPPCommCtrlr.WebSocketPingInterval":
        "test_keepalive.py::test_the_learned_interval_survives_a_restart_until_the_setting_changes",
    "SecurityCtrlr.SecurityProfile":
        "test_security_profiles.py::test_upgrade_from_profile_1_to_2_to_3_and_no_way_back",
    "SecurityCtrlr.OrganizationName": "test_certificates.py::test_sign_and_accept",
    "SecurityCtrlr.CertificateEntries":
        "test_certificates.py::test_install_accepted_counted_and_reported_as_a_security_event",
    "SecurityCtrlr.BasicAuthPassword":
        "test_security_profiles.py::test_a_new_basic_auth_password_is_used_at_once",
    "SecurityCtrlr.Identity":
        "conformance/test_b_provisioning.py::test_read_only_identity_values_are_true",
    # False: a second CSMS root is kept beside the first (no AS-2 replacement).
    "SecurityCtrlr.AdditionalRootCertificateCheck":
        "test_certstore.py::test_a_full_store_fails_with_out_of_storage",
    "SecurityCtrlr.CertSigningWaitMinimum": "test_certificates.py::test_three_repeats_at_w_2w_4w",
    "SecurityCtrlr.CertSigningRepeatTimes":
        "test_certificates.py::test_repeats_double_the_wait_then_give_up",
    **{f"DeviceDataCtrlr.{name}[{message}]":
       "conformance/test_b_provisioning.py::test_device_data_limits_are_enforced"
       for name in ("ItemsPerMessage", "BytesPerMessage")
       for message in ("GetReport", "GetVariables", "SetVariables")},
    "DeviceDataCtrlr.ConfigurationValueSize":
        "test_device_model.py::test_values_are_cut_to_the_reporting_value_size",
    "DeviceDataCtrlr.ReportingValueSize":
        "test_model_report.py::test_reported_values_are_cut_to_reporting_value_size",
    "DeviceDataCtrlr.ValueSize":
        "test_device_model.py::test_values_are_cut_to_the_reporting_value_size",
    "ClockCtrlr.DateTime": "test_device_model.py::test_live_values_come_from_their_source",
    "ClockCtrlr.TimeSource":
        "test_registration.py::test_time_source_prefers_a_synchronized_host_clock_to_the_csms",
    "ClockCtrlr.TimeAdjustmentReportingThreshold":
        "test_registration.py::test_time_adjustments_above_the_threshold_are_security_events",
    "AuthCtrlr.Enabled":
        "test_no_authorization.py::test_plug_in_charges_without_a_token_once_per_plug_in",
    "AuthCtrlr.AuthorizeRemoteStart":
        "test_transactions_agent.py::test_remote_start_with_authorize_remote_start",
    "AuthCtrlr.LocalAuthorizeOffline":
        "test_authorization.py::test_without_local_authorize_offline_the_cache_does_not_accept",
    "AuthCtrlr.LocalPreAuthorize":
        "test_authorization.py::test_local_pre_authorize_accepts_a_valid_cached_token_at_once",
    "AuthCtrlr.OfflineTxForUnknownIdEnabled":
        "test_authorization.py::test_offline_unknown_token_accepted_when_allowed",
    "AuthCtrlr.MasterPassGroupId": "test_authorization.py::test_master_pass",
    "AuthCtrlr.DisableRemoteAuthorization":
        "test_authorization.py::test_disable_remote_authorization_decides_from_local_data_only",
    # Also TC_E_39 (a transaction started without a cable ends).
    "TxCtrlr.EVConnectionTimeOut":
        "test_offline_session.py::test_authorization_expires_after_ev_connection_timeout",
    "TxCtrlr.StopTxOnEVSideDisconnect":
        "test_transactions_agent.py::test_card_then_plug_then_unplug",
    "TxCtrlr.StopTxOnInvalidId": "conformance/test_c_authorization.py::test_TC_C_26",
    # Also E05: TC_C_17 and the deauthorization cases.
    "TxCtrlr.MaxEnergyOnInvalidId": "conformance/test_c_authorization.py::test_TC_C_26",
    "TxCtrlr.TxBeforeAcceptedEnabled":
        "test_registration.py::"
        "test_tx_before_accepted_enabled_decides_a_local_session_while_pending",
    "TxCtrlr.TxStartPoint":
        "test_transactions_agent.py::"
        "test_transaction_from_plug_in_when_tx_start_point_is_ev_connected",
    "TxCtrlr.TxStopPoint":
        "test_connector_lock.py::test_a_power_path_lost_to_a_fault_ends_as_abnormal",
    "SampledDataCtrlr.Enabled":
        "test_metering.py::test_sampler_merges_equal_timestamps_and_honours_enabled",
    "SampledDataCtrlr.Available": "test_metering.py::test_sampler_begin_and_periodic_updates",
    "SampledDataCtrlr.TxStartedMeasurands":
        "test_metering.py::test_sampler_begin_and_periodic_updates",
    "SampledDataCtrlr.TxUpdatedMeasurands":
        "test_metering.py::test_sampler_begin_and_periodic_updates",
    "SampledDataCtrlr.TxUpdatedInterval":
        "test_metering.py::test_sampler_begin_and_periodic_updates",
    "SampledDataCtrlr.TxEndedMeasurands":
        "test_metering.py::test_sampler_merges_equal_timestamps_and_honours_enabled",
    "SampledDataCtrlr.TxEndedInterval":
        "test_metering.py::test_sampler_ended_periodic_is_thinned_evenly",
    "AlignedDataCtrlr.Enabled": "test_metering.py::test_interval_and_enabled_changes_apply_at_once",
    "AlignedDataCtrlr.Available": "test_metering.py::test_aligned_sends_idle_evses_at_each_instant",
    "AlignedDataCtrlr.Measurands":
        "test_metering.py::test_aligned_sends_idle_evses_at_each_instant",
    "AlignedDataCtrlr.Interval":
        "test_metering.py::test_interval_and_enabled_changes_apply_at_once",
    "AlignedDataCtrlr.SendDuringIdle":
        "test_metering.py::test_send_during_idle_stops_everything_while_a_transaction_runs",
    "AlignedDataCtrlr.TxEndedMeasurands":
        "test_metering.py::test_sampler_merges_equal_timestamps_and_honours_enabled",
    "AlignedDataCtrlr.TxEndedInterval":
        "test_metering.py::test_sampler_ended_periodic_is_thinned_evenly",
    "AuthCacheCtrlr.Enabled": "test_auth_cache.py::test_disabled_cache_is_neither_read_nor_written",
    "AuthCacheCtrlr.Available": "test_authorization.py::test_offline_uses_a_valid_cache_entry",
    "AuthCacheCtrlr.LifeTime": "test_auth_cache.py::test_lifetime_change_applies_at_once",
    "AuthCacheCtrlr.Storage":
        "test_auth_cache.py::test_entry_size_estimate_counts_the_stored_bytes",
    "AuthCacheCtrlr.Policy": "test_auth_cache.py::test_lfu_evicts_the_least_used",
    "AuthCacheCtrlr.DisablePostAuthorize":
        "test_authorization.py::test_post_authorize_a_cached_rejection_unless_disabled",
    "LocalAuthListCtrlr.Enabled":
        "test_local_auth_list.py::test_disabled_list_is_not_used_and_refuses_updates",
    "LocalAuthListCtrlr.Available": "test_local_auth_list_station.py::"
        "test_device_model_reports_the_list_available_with_its_limits",
    "LocalAuthListCtrlr.Entries":
        "test_local_auth_list.py::test_entries_and_storage_max_limits_refuse_growth",
    "LocalAuthListCtrlr.ItemsPerMessage":
        "test_local_auth_list.py::test_items_per_message_is_enforced",
    "LocalAuthListCtrlr.BytesPerMessage":
        "test_local_auth_list_station.py::test_a_frame_over_bytes_per_message_is_refused",
    "LocalAuthListCtrlr.Storage":
        "test_local_auth_list.py::test_entries_and_storage_max_limits_refuse_growth",
    "LocalAuthListCtrlr.DisablePostAuthorize":
        "test_local_auth_list.py::test_post_authorize_a_list_rejection_unless_disabled",
    "ReservationCtrlr.Enabled": "test_reservation.py::test_reservation_ctrlr_variables_work",
    "ReservationCtrlr.Available": "test_reservation.py::test_reservation_ctrlr_variables_work",
    "ReservationCtrlr.NonEvseSpecific":
        "test_reservation.py::test_reservation_ctrlr_variables_work",
    "SmartChargingCtrlr.Enabled":
        "test_charging_profiles.py::"
        "test_disabled_smart_charging_rejects_but_clear_and_get_still_work",
    "SmartChargingCtrlr.Available":
        "test_charging_profiles.py::test_a_valid_profile_is_installed_and_announced",
    "SmartChargingCtrlr.ACPhaseSwitchingSupported": "test_charging_profiles.py::test_rejections",
    "SmartChargingCtrlr.Entries[ChargingProfiles]": "test_charging_profiles.py::test_entries_limit",
    "SmartChargingCtrlr.ProfileStackLevel": "test_charging_profiles.py::test_rejections",
    "SmartChargingCtrlr.RateUnit":
        "test_charging_profiles.py::test_a_valid_profile_is_installed_and_announced",
    "SmartChargingCtrlr.PeriodsPerSchedule": "test_charging_profiles.py::test_rejections",
    "SmartChargingCtrlr.LimitChangeSignificance":
        "test_external_limits.py::test_significance_is_measured_from_the_limit_last_notified",
    "SmartChargingCtrlr.ExternalControlSignalsEnabled":
        "test_external_limits.py::test_disabled_input_is_ignored_and_disabling_releases",
    "SmartChargingCtrlr.NotifyChargingLimitWithSchedules":
        "test_smart_charging_agent.py::test_external_limit_is_shared_reported_and_released",
}


# Entries whose test shows the claim without naming the variable: a default value at
# work, or a read-only capability seen as behaviour.
BY_BEHAVIOUR = {
    "OCPPCommCtrlr.FileTransferProtocols": "ftp, http, https URLs taken; ftps, sftp refused",
    "SecurityCtrlr.OrganizationName": "the CSR's subject O is the organization name",
    "SecurityCtrlr.AdditionalRootCertificateCheck": "two CSMS roots installed side by side",
    "TxCtrlr.StopTxOnEVSideDisconnect": "unplugging on the EV side ends the transaction",
    "SampledDataCtrlr.Available": "sampled values are produced",
    "SampledDataCtrlr.TxUpdatedMeasurands": "the default (energy, power) is what is sampled",
    "AlignedDataCtrlr.Available": "clock-aligned values are produced",
    "AuthCacheCtrlr.Available": "the cache decides offline",
    "SmartChargingCtrlr.Available": "a charging profile is installed",
    "SmartChargingCtrlr.ACPhaseSwitchingSupported": "phaseToUse is refused (false)",
    "SmartChargingCtrlr.LimitChangeSignificance": "the default 10 % decides what is notified",
}


def inventory_key(item: dict) -> str:
    instance = item["variable"].get("instance")
    return (f"{item['component']['name']}.{item['variable']['name']}"
            + (f"[{instance}]" if instance else ""))


def source_of(node_id: str) -> str | None:
    """The source of the test function `path::name` (None: no such test)."""
    path, name = node_id.split("::")
    file = Path(__file__).resolve().parents[1] / path
    if not file.exists():
        return None
    text = file.read_text()
    tree = ast.parse(text)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return ast.get_source_segment(text, node)
    return None


def test_no_reported_variable_is_inert(tmp_path):
    """Every variable of a FullInventory report has a test that shows it working (issue
    16: "a lab reads the device model as a claim"), and the table lists nothing else."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            items = await base_report(rig, "FullInventory", 1616)
            reported = {inventory_key(item) for item in items}
            assert sorted(reported - set(WHERE_IT_WORKS)) == [], "reported, shown nowhere"
            assert sorted(set(WHERE_IT_WORKS) - reported) == [], "listed, not reported"
    run(case())
    missing = sorted(f"{key}: {node}" for key, node in WHERE_IT_WORKS.items()
                     if source_of(node) is None)
    assert missing == [], "the test named does not exist"
    # The test's module deals with the variable by name, or the table says why not.
    root = Path(__file__).resolve().parents[1]
    unnamed = sorted(key for key, node in WHERE_IT_WORKS.items()
                     if key.split(".")[1].split("[")[0] not in
                     (root / node.split("::")[0]).read_text())
    assert unnamed == sorted(BY_BEHAVIOUR)


# ---- read-only values, limits and absent features the table points at ---------------------

def test_read_only_identity_values_are_true(tmp_path):
    """Model, VendorName, SerialNumber, SupplyPhases (station, EVSE, connector) and
    Identity are what the station is: its config and its BootNotification."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            boot = rig.link.calls("BootNotification")[0]["chargingStation"]
            values = {inventory_key(i) + str(i["component"].get("evse", {}).get("id", "")):
                      i["variableAttribute"][0].get("value")
                      for i in await base_report(rig, "FullInventory", 1001)}
            assert values["ChargingStation.Model"] == boot["model"] == "AC-22"
            assert values["ChargingStation.VendorName"] == boot["vendorName"] == "Example"
            assert values["ChargingStation.SerialNumber"] == boot["serialNumber"] == "0001"
            assert values["ChargingStation.FirmwareVersion"] == boot["firmwareVersion"]
            assert values["SecurityCtrlr.Identity"] == STATION   # the URL's last segment
            assert rig.link.handshake.path.endswith("/" + STATION)
            assert values["ChargingStation.SupplyPhases"] == "3"   # phases = 3 in the config
            for evse in (EVSE, OTHER_EVSE):
                assert values[f"EVSE.SupplyPhases{evse}"] == "3"
                assert values[f"Connector.SupplyPhases{evse}"] == "3"
    run(case())


def test_device_data_limits_are_enforced(tmp_path):
    """DeviceDataCtrlr ItemsPerMessage and BytesPerMessage of GetVariables, SetVariables
    and GetReport: a request over either is refused as Part 4 says (B06.FR.05 / B08)."""
    async def case():
        async with station(tmp_path) as rig:
            limits = {inventory_key(i): int(i["variableAttribute"][0]["value"])
                      for i in await base_report(rig, "FullInventory", 1002)
                      if i["component"]["name"] == "DeviceDataCtrlr"}
            long_value = "x" * 1000
            requests = {
                "GetVariables": ("getVariableData", lambda n: get_item(
                    "OCPPCommCtrlr", f"V{n}")),
                "SetVariables": ("setVariableData", lambda n: set_item(
                    "OCPPCommCtrlr", f"V{n}", long_value)),
                "GetReport": ("componentVariable", lambda n: {
                    "component": {"name": "OCPPCommCtrlr" + "x" * 36},
                    "variable": {"name": f"V{n}" + "y" * 40}}),
            }
            for action, (key, make) in requests.items():
                items = limits[f"DeviceDataCtrlr.ItemsPerMessage[{action}]"]
                most = limits[f"DeviceDataCtrlr.BytesPerMessage[{action}]"]
                extra = {"requestId": 5} if action == "GetReport" else {}
                # One item more than ItemsPerMessage, small: OccurrenceConstraintViolation.
                small = [get_item("OCPPCommCtrlr", "HeartbeatInterval") if action == "GetVariables"
                         else set_item("OCPPCommCtrlr", "HeartbeatInterval", "3600")
                         if action == "SetVariables" else {"component": {"name": "EVSE"}}
                         for _ in range(items + 1)]
                with pytest.raises(CallErrorReceived) as too_many:
                    await rig.call(action, {key: small} | extra)
                assert too_many.value.code == "OccurrenceConstraintViolation", action
                # Bigger than BytesPerMessage in fewer items: FormatViolation.
                size, count, big = 0, 0, []
                while size <= most:
                    big.append(make(count))
                    size += len(json.dumps(big[-1], separators=(",", ":"))) + 1
                    count += 1
                with pytest.raises(CallErrorReceived) as too_big:
                    await rig.call(action, {key: big} | extra)
                assert too_big.value.code == "FormatViolation", (action, count)
                # Within both: answered.
                assert await rig.call(action, {key: small[:items]} | extra)
    run(case())
