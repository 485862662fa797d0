"""Part 6, P DataTransfer and CustomData: the Charging Station cases of Core (Part 5)."""

from __future__ import annotations

from tests.conformance.rig import run, station


def test_TC_P_01(tmp_path):
    """Data Transfer to the Charging Station - Rejected / Unknown VendorId / Unknown
    MessageId: a vendorId the station does not implement gets a DataTransferResponse."""
    async def case():
        async with station(tmp_path) as rig:
            answer = await rig.call("DataTransfer", {
                "vendorId": "org.openchargealliance.octt", "messageId": "TestMessage",
                "data": "test"})
            assert answer["status"] in ("UnknownVendorId", "UnknownMessageId", "Rejected")
            # This station has no vendor extension installed: the precise answer.
            assert answer["status"] == "UnknownVendorId"
    run(case())


def test_TC_P_03(tmp_path):
    """CustomData - Receive custom data: SetVariables and GetVariables carrying customData
    (as the OCTT sends them) are processed as without it."""
    custom = {"vendorId": "org.openchargealliance.octt", "note": "custom field"}

    async def case():
        async with station(tmp_path) as rig:
            answer = await rig.call("SetVariables", {"customData": custom, "setVariableData": [{
                "customData": custom, "attributeType": "Actual", "attributeValue": "200",
                "component": {"name": "OCPPCommCtrlr", "customData": custom},
                "variable": {"name": "OfflineThreshold", "customData": custom}}]})
            assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
            answer = await rig.call("GetVariables", {"customData": custom, "getVariableData": [{
                "customData": custom, "attributeType": "Actual",
                "component": {"name": "OCPPCommCtrlr", "customData": custom},
                "variable": {"name": "OfflineThreshold", "customData": custom}}]})
            result = answer["getVariableResult"][0]
            assert result["attributeStatus"] == "Accepted"
            assert result.get("attributeType", "Actual") == "Actual"
            assert result["attributeValue"] == "200"
    run(case())
