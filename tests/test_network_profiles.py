"""Network connection profiles (B09/B10/A05): storing, choosing, falling back, and never
going below the security profile the station has run."""

import asyncio
import json
from dataclasses import dataclass

import pytest

from agent.blocks.network_profiles import NetworkProfiles, connection_data
from agent.model.definitions import standard_definitions
from agent.model.device_model import DeviceModel
from agent.model.types import Component, EvseSpec, StationSpec, Variable
from agent.ocpp.session import Router
from agent.ocpp.validation import validate
from agent.store import Store

COMM = Component("OCPPCommCtrlr")
PASSWORD = "a-password-of-16-chars"


@dataclass
class Trust:
    root: bool = True
    station_cert: bool = True

    def has_csms_root(self):
        return self.root

    def has_station_certificate(self):
        return self.station_cert


class Rig:
    def __init__(self, directory, security_profile=1, trust=None):
        self.directory = directory
        self.security_profile = security_profile
        self.trust = trust or Trust()
        self.events: list[tuple[str, str | None]] = []
        self.open()

    def open(self):
        self.store = Store.in_dir(self.directory)
        spec = StationSpec("Example", "AC", None, "1.0", (EvseSpec(1, 32, 3, 230),),
                           self.security_profile, identity="CS-1")
        self.model = DeviceModel(self.store, standard_definitions(spec))
        if not self.store.get_meta("seeded"):
            self.model.set(Component("SecurityCtrlr"), Variable("BasicAuthPassword"), PASSWORD)
            self.store.set_meta("network.profile.1", '{"url": "ws://old.example/ocpp", '
                                f'"securityProfile": {self.security_profile}}}')
            self.store.set_meta("seeded", "1")
        self.router = Router()
        self.profiles = NetworkProfiles(store=self.store, model=self.model, router=self.router,
                                        trust=self.trust,
                                        security_event=lambda t, i: self.events.append((t, i)))

    def reboot(self):
        self.store.close()
        self.open()

    def set_profile(self, slot, url, security_profile, **extra):
        data = {**connection_data(url, security_profile, 20), **extra}
        request = {"configurationSlot": slot, "connectionData": data}
        validate("SetNetworkProfile", "request", request)
        handler = self.router.routes["SetNetworkProfile"].handler
        answer = asyncio.run(handler(request))
        validate("SetNetworkProfile", "response", answer)
        return answer

    def priority(self, text):
        assert self.model.set(COMM, Variable("NetworkConfigurationPriority"), text).status in (
            "Accepted", "RebootRequired")


@pytest.fixture
def rig(tmp_path):
    rig = Rig(tmp_path)
    yield rig
    rig.store.close()


def reason(answer):
    return answer.get("statusInfo", {}).get("reasonCode")


def test_the_first_profile_from_the_config_is_used(rig):
    current = rig.profiles.current()
    assert (current.slot, current.url, current.security_profile) == (1, "ws://old.example/ocpp", 1)


def test_a_stored_profile_survives_a_reboot_and_a_new_priority_takes_it_first(rig):
    assert rig.set_profile(2, "ws://new.example/ocpp", 1)["status"] == "Accepted"
    assert rig.profiles.current().slot == 1, "nothing changes before the reboot"
    rig.priority("2,1")
    rig.reboot()
    assert rig.profiles.current().url == "ws://new.example/ocpp"
    rig.profiles.connected()
    assert rig.model.get_int("OCPPCommCtrlr", "ActiveNetworkProfile") == 2
    assert rig.model.get_int("OCPPCommCtrlr", "MessageTimeout", instance="Default") == 20


def test_falls_back_after_the_configured_attempts_and_keeps_the_last_working(rig):
    rig.profiles.connected()                      # slot 1 worked
    rig.set_profile(2, "ws://broken.example/ocpp", 1)
    rig.priority("2")                             # slot 1 left out of the list
    rig.reboot()
    attempts = rig.model.get_int("OCPPCommCtrlr", "NetworkProfileConnectionAttempts")
    assert rig.profiles.current().slot == 2
    for _ in range(attempts - 1):
        rig.profiles.attempt_failed()
        assert rig.profiles.current().slot == 2
    rig.profiles.attempt_failed()
    assert rig.profiles.current().slot == 1, "back to the last profile that worked"
    for _ in range(attempts):
        rig.profiles.attempt_failed()
    assert rig.profiles.current().slot == 2, "and round again"


@pytest.mark.parametrize("slot, data, code", [
    (3, {}, "InvalidSlot"),
    (2, {"ocppVersion": "OCPP16"}, "UnsupportedVersion"),
    (2, {"ocppTransport": "SOAP"}, "UnsupportedTransport"),
    (2, {"ocppCsmsUrl": "wss://new.example/ocpp"}, "InvalidURL"),   # profile 1 needs ws://
    (2, {"ocppCsmsUrl": "http://new.example/"}, "InvalidURL"),
    (2, {"vpn": {"server": "v", "user": "u", "key": "k", "password": "p", "type": "IPSec"}},
     "VpnNotSupported"),
    (1, {}, "InUse"),
    # Issue 14: accepted, then every connection on it failed its hook (or never opened).
    (2, {"messageTimeout": 0}, "ValueOutOfRange"),
    (2, {"messageTimeout": -1}, "ValueOutOfRange"),
    (2, {"messageTimeout": 2 ** 31 - 1}, "ValueOutOfRange"),
])
def test_bad_profiles_are_rejected_with_a_reason_and_nothing_is_stored(rig, slot, data, code):
    rig.profiles.connected()
    before = rig.store.get_meta(f"network.profile.{slot}")
    answer = rig.set_profile(slot, data.pop("ocppCsmsUrl", "ws://new.example/ocpp"), 1, **data)
    assert (answer["status"], reason(answer)) == ("Rejected", code)
    assert rig.store.get_meta(f"network.profile.{slot}") == before


def test_tls_profiles_are_stored_at_once_and_refused_in_the_priority_until_usable(tmp_path):
    # A05.FR.02/03 (TC_A_20/21): SetNetworkProfile is Accepted; the refusal comes when the
    # slot is put into NetworkConfigurationPriority without the certificates it needs.
    rig = Rig(tmp_path, trust=Trust(root=False, station_cert=False))
    assert rig.set_profile(2, "wss://new.example/ocpp", 2)["status"] == "Accepted"
    assert rig.profiles.priority_refusal("2,1")[0] == "NoCertificate"
    rig.trust.root = True
    assert rig.profiles.priority_refusal("2,1") is None
    assert rig.set_profile(2, "wss://new.example/ocpp", 3)["status"] == "Accepted"
    assert rig.profiles.priority_refusal("2,1")[0] == "NoCertificate"
    rig.trust.station_cert = True
    assert rig.profiles.priority_refusal("1,2") is None
    assert [t for t, _ in rig.events] == ["ReconfigurationOfSecurityParameters"] * 2


def test_a_slot_already_in_the_priority_needs_its_certificates_when_it_is_set(tmp_path):
    rig = Rig(tmp_path, trust=Trust(root=False))
    rig.priority("1,2")
    answer = rig.set_profile(2, "wss://new.example/ocpp", 2)
    assert (answer["status"], reason(answer)) == ("Rejected", "NoCertificate")
    assert rig.store.get_meta("network.profile.2") is None
    rig.trust.root = True
    assert rig.set_profile(2, "wss://new.example/ocpp", 2)["status"] == "Accepted"


def test_set_variables_of_the_priority_is_refused_item_by_item(tmp_path):
    rig = Rig(tmp_path, trust=Trust(root=False))
    calls = []

    async def variables(request):
        calls.append(request)
        return {"setVariableResult": [
            {"attributeType": "Actual", "attributeStatus": "Accepted",
             "component": item["component"], "variable": item["variable"]}
            for item in request["setVariableData"]]}

    rig.router.register("SetVariables", variables)
    rig.profiles.guard_priority(rig.router)
    rig.set_profile(2, "wss://new.example/ocpp", 2)
    other = {"component": {"name": "OCPPCommCtrlr"},
             "variable": {"name": "HeartbeatInterval"}, "attributeValue": "60"}
    priority = {"component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "NetworkConfigurationPriority"}, "attributeValue": "2,1"}
    request = {"setVariableData": [other, priority, other]}
    validate("SetVariables", "request", request)
    answer = asyncio.run(rig.router.routes["SetVariables"].handler(request))
    validate("SetVariables", "response", answer)
    statuses = [r["attributeStatus"] for r in answer["setVariableResult"]]
    assert statuses == ["Accepted", "Rejected", "Accepted"]
    assert answer["setVariableResult"][1]["attributeStatusInfo"]["reasonCode"] == "NoCertificate"
    assert calls == [{"setVariableData": [other, other]}], "only the others reach Variables"
    rig.trust.root = True
    answer = asyncio.run(rig.router.routes["SetVariables"].handler(
        {"setVariableData": [priority]}))
    assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"


def test_upgrade_raises_the_floor_and_a_downgrade_is_refused_for_good(rig):
    assert rig.set_profile(2, "wss://new.example/ocpp", 2)["status"] == "Accepted"
    rig.priority("2,1")
    rig.reboot()
    rig.profiles.connected()
    assert rig.model.get_int("SecurityCtrlr", "SecurityProfile") == 2
    assert ("ReconfigurationOfSecurityParameters" in [t for t, _ in rig.events])
    # TC_A_19 step 13: the profile-1 slot has left the priority list.
    assert rig.model.get_str("OCPPCommCtrlr", "NetworkConfigurationPriority") == "2"
    assert rig.profiles.priority_refusal("2,1")[0] == "InvalidProfile"
    rig.reboot()
    assert rig.model.get_int("SecurityCtrlr", "SecurityProfile") == 2, "persisted"
    assert [p.slot for p in rig.profiles.candidates()] == [2], "profile 1 is never used again"
    answer = rig.set_profile(1, "ws://old.example/ocpp", 1)
    assert (answer["status"], reason(answer)) == ("Rejected", "Downgrade")
    for _ in range(10):
        rig.profiles.attempt_failed()
        assert rig.profiles.current().slot == 2, "no fall-back below profile 2"


def test_a_damaged_stored_profile_is_skipped(rig):
    rig.set_profile(2, "ws://new.example/ocpp", 1)
    rig.store.set_meta("network.profile.2", "{not json")
    rig.priority("2,1")
    rig.reboot()
    assert rig.profiles.current().slot == 1


def test_message_timeout_bounds_are_those_of_the_variable_it_becomes(rig):
    for timeout in (1, 3600):
        assert rig.set_profile(2, "ws://new.example/ocpp", 1, messageTimeout=timeout)[
            "status"] == "Accepted"


def test_a_stored_profile_with_an_unusable_timeout_is_used_within_bounds(rig):
    # Stored by an earlier version that took any messageTimeout: connecting on it used to
    # fail the connection hook (MessageTimeout refuses 2147483647) every time.
    data = {**connection_data("ws://new.example/ocpp", 1), "messageTimeout": 2 ** 31 - 1}
    rig.store.set_meta("network.profile.2", json.dumps(data))
    rig.priority("2,1")
    rig.reboot()
    assert (rig.profiles.current().slot, rig.profiles.current().message_timeout) == (2, 3600)
    rig.profiles.connected()
    assert rig.model.get_int("OCPPCommCtrlr", "MessageTimeout", instance="Default") == 3600
