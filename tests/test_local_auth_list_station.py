"""The Local Authorization List in the whole station, in-process on the ManualClock (the
conformance rig): what the device model reports, a group from the list ending a session
offline, post-authorization of a list entry online, and the list across a power cycle."""

from __future__ import annotations

import json

import pytest

from agent.demo.csms.link import CallErrorReceived
from tests.conformance.offline import cache_token
from tests.conformance.rig import EVSE, STATION, VALID_TOKEN, Rig, run, station
from tests.conformance.test_b_provisioning import base_report, inventory_key
from tests.harness import PASSWORD

GROUP = {"idToken": "FLEET-7", "type": "Central"}
DRIVER2 = {"idToken": "04A1B2C4", "type": "ISO14443"}
BLOCKED = {"idToken": "0BB10C4D", "type": "ISO14443"}


def entry(token: dict, status: str = "Accepted", **info) -> dict:
    return {"idToken": token, "idTokenInfo": {"status": status, **info}}


async def send_full(rig: Rig, version: int, items: list[dict]) -> None:
    answer = await rig.call("SendLocalList", {"versionNumber": version, "updateType": "Full",
                                              "localAuthorizationList": items})
    assert answer == {"status": "Accepted"}


async def go_offline(rig: Rig) -> None:
    """The CSMS goes away: the link drops and reconnections are refused."""
    rig.csms.passwords = {STATION: "not-the-station-password"}
    assert rig.link is not None
    await rig.link.close()
    await rig.settle()


async def come_back(rig: Rig) -> None:
    rig.csms.passwords = {STATION: PASSWORD}
    previous = rig.link
    for _ in range(60):
        links = rig.csms.links.get(STATION, [])
        if links and links[-1] is not previous and not links[-1].closed.is_set():
            break
        await rig.advance(5)
    await rig.new_link()


def test_device_model_reports_the_list_available_with_its_limits(tmp_path):
    """LocalAuthListCtrlr as Part 6's required variables want it: Available true,
    Entries with a maxLimit above 0 (100,000 cards fit), ItemsPerMessage and
    BytesPerMessage read-only; Enabled and DisablePostAuthorize writable."""
    async def case():
        async with station(tmp_path) as rig:
            items = {inventory_key(i): i for i in await base_report(rig, "FullInventory", 1800)
                     if i["component"]["name"] == "LocalAuthListCtrlr"}
            value = {k: v["variableAttribute"][0] for k, v in items.items()}
            assert value["LocalAuthListCtrlr.Available"]["value"] == "true"
            assert value["LocalAuthListCtrlr.Enabled"] == {
                "type": "Actual", "value": "true", "mutability": "ReadWrite",
                "persistent": True, "constant": False}
            assert value["LocalAuthListCtrlr.DisablePostAuthorize"]["mutability"] == "ReadWrite"
            for name in ("Entries", "ItemsPerMessage", "BytesPerMessage", "Storage"):
                assert value[f"LocalAuthListCtrlr.{name}"]["mutability"] == "ReadOnly", name
            limit = items["LocalAuthListCtrlr.Entries"]["variableCharacteristics"]["maxLimit"]
            assert limit >= 100_000
            assert await rig.set_variable("LocalAuthListCtrlr", "Entries", "5") == "Rejected"
    run(case())


def test_a_card_of_the_same_group_in_the_list_ends_an_offline_session(tmp_path):
    """groupIdToken from the list (C09 with C13): offline, driver 1 starts, driver 2 of
    the same group ends the session; a Blocked card of the list cannot."""
    async def case():
        async with station(tmp_path) as rig:
            await send_full(rig, 1, [entry(VALID_TOKEN, groupIdToken=GROUP),
                                     entry(DRIVER2, groupIdToken=GROUP),
                                     entry(BLOCKED, "Blocked", groupIdToken=GROUP)])
            await go_offline(rig)
            await rig.present(VALID_TOKEN)
            await rig.plug()
            await rig.advance(1)
            assert rig.snapshot()["contactor_closed"] is True
            await rig.present(BLOCKED)
            await rig.advance(1)
            assert rig.snapshot()["contactor_closed"] is True
            await rig.present(DRIVER2)
            await rig.advance(1)
            assert rig.snapshot()["contactor_closed"] is False
            await come_back(rig)
            ended = await rig.expect("TransactionEvent", where=lambda p: p["eventType"] == "Ended")
            assert ended["offline"] is True and ended["idToken"] == DRIVER2
            assert ended["triggerReason"] == "StopAuthorized"
            assert rig.sent_on_all_links("Authorize") == []
    run(case())


def test_a_list_rejection_is_post_authorized_unless_disabled(tmp_path):
    """C14.FR.03 in the station: LocalPreAuthorize, a Blocked list entry is asked about
    and the CSMS's Accepted starts the session; with LocalAuthListCtrlr.DisablePostAuthorize
    the list's Blocked is final and nothing is asked."""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("AuthCtrlr", "LocalPreAuthorize"): "true"})
            await send_full(rig, 1, [entry(VALID_TOKEN, "Blocked")])
            rig.answer("Authorize", {"idTokenInfo": {"status": "Accepted"}})
            await rig.present(VALID_TOKEN)
            assert (await rig.expect("Authorize"))["idToken"] == VALID_TOKEN
            await rig.plug()
            await rig.advance(1)
            assert rig.snapshot()["contactor_closed"] is True
            await rig.present(VALID_TOKEN)
            await rig.unplug()
            await rig.advance(1)
            await rig.configure({("LocalAuthListCtrlr", "DisablePostAuthorize"): "true"})
            asked = len(rig.sent("Authorize"))
            await rig.present(VALID_TOKEN)
            await rig.plug()
            await rig.advance(1)
            assert len(rig.sent("Authorize")) == asked
            assert rig.snapshot()["contactor_closed"] is False
    run(case())


def test_the_list_survives_a_power_cycle_and_decides_offline(tmp_path):
    """Persisted: after a power cycle the version and entries are those sent, and the
    list decides for a card while the CSMS is away."""
    async def case():
        async with station(tmp_path) as rig:
            await send_full(rig, 42, [entry(VALID_TOKEN)])
            await rig.power_cycle()
            assert await rig.call("GetLocalListVersion", {}) == {"versionNumber": 42}
            assert await rig.get_variable("LocalAuthListCtrlr", "Entries") == "1"
            await go_offline(rig)
            await rig.present(VALID_TOKEN, EVSE)
            await rig.plug()
            await rig.advance(1)
            assert rig.snapshot()["contactor_closed"] is True
    run(case())


def test_a_frame_over_bytes_per_message_is_refused(tmp_path):
    """LocalAuthListCtrlr.BytesPerMessage: a SendLocalList frame larger than it, though
    within ItemsPerMessage, gets FormatViolation (as DeviceDataCtrlr's BytesPerMessage)
    and changes nothing; the same entries in two frames are taken."""
    async def case():
        async with station(tmp_path) as rig:
            most = int(await rig.get_variable("LocalAuthListCtrlr", "BytesPerMessage"))
            items = int(await rig.get_variable("LocalAuthListCtrlr", "ItemsPerMessage"))
            message = {"format": "UTF8", "content": "x" * 512}
            big = [entry({"idToken": f"C{i:07d}", "type": "ISO14443"}, personalMessage=message)
                   for i in range(items)]
            request = {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": big}
            assert len(json.dumps(request)) > most
            with pytest.raises(CallErrorReceived) as refused:
                await rig.call("SendLocalList", request)
            assert refused.value.code == "FormatViolation"
            assert await rig.call("GetLocalListVersion", {}) == {"versionNumber": 0}
            half = len(big) // 2
            await send_full(rig, 1, big[:half])
            answer = await rig.call("SendLocalList", {
                "versionNumber": 2, "updateType": "Differential",
                "localAuthorizationList": big[half:]})
            assert answer == {"status": "Accepted"}
            assert await rig.get_variable("LocalAuthListCtrlr", "Entries") == str(items)
    run(case())


def test_an_idtoken_that_is_no_unicode_text_is_refused_not_an_internal_error(tmp_path):
    """A hostile CSMS escapes a lone surrogate into an idToken ("A\\ud800": valid JSON,
    no Unicode text). The frame is refused as a FormatViolation (agent/ocpp/rpc.py refuses
    lone surrogates in every frame), not an InternalError, and the list is the one it had."""
    async def case():
        async with station(tmp_path) as rig:
            await send_full(rig, 3, [entry(VALID_TOKEN)])
            assert rig.link is not None
            frame = ('[2,"lone-1","SendLocalList",{"versionNumber":4,"updateType":"Full",'
                     '"localAuthorizationList":[{"idToken":{"idToken":"A\\ud800",'
                     '"type":"ISO14443"},"idTokenInfo":{"status":"Accepted"}}]}]')
            reply = json.loads(await rig.link.send_raw(frame))
            assert reply[:3] == [4, "lone-1", "FormatViolation"], reply
            assert await rig.call("GetLocalListVersion", {}) == {"versionNumber": 3}
            assert await rig.get_variable("LocalAuthListCtrlr", "Entries") == "1"
    run(case())


def test_a_card_removed_from_the_list_is_not_let_in_by_an_old_cache_entry(tmp_path):
    """A card the cache learned before the CSMS listed it (IdTokenCached, then the list),
    then revoked by removing it from the list (a Differential without idTokenInfo): its
    old cached Accepted is gone (AuthCacheCtrlr.Storage back to 0), and offline, with
    LocalAuthorizeOffline, it does not start a session."""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("AuthCtrlr", "LocalAuthorizeOffline"): "true",
                                 ("AuthCtrlr", "OfflineTxForUnknownIdEnabled"): "false"})
            await cache_token(rig, VALID_TOKEN)
            assert int(await rig.get_variable("AuthCacheCtrlr", "Storage")) > 0
            await send_full(rig, 1, [entry(VALID_TOKEN)])
            answer = await rig.call("SendLocalList", {
                "versionNumber": 2, "updateType": "Differential",
                "localAuthorizationList": [{"idToken": VALID_TOKEN}]})
            assert answer == {"status": "Accepted"}
            assert await rig.get_variable("LocalAuthListCtrlr", "Entries") == "0"
            assert await rig.get_variable("AuthCacheCtrlr", "Storage") == "0"
            await go_offline(rig)
            await rig.present(VALID_TOKEN, EVSE)
            await rig.plug()
            await rig.advance(1)
            assert rig.snapshot()["contactor_closed"] is False
    run(case())


def test_a_poisoned_group_cannot_later_break_the_link(tmp_path):
    """A lone surrogate in an entry's groupIdToken: the frame is refused (FormatViolation,
    agent/ocpp/rpc.py). Kept, it would break the link later: a CustomerInformation report
    quotes the entry, and a frame carrying a lone surrogate cannot be sent as UTF-8 (the
    websocket client fails and the connection drops)."""
    async def case():
        async with station(tmp_path) as rig:
            assert rig.link is not None
            frame = ('[2,"lone-2","SendLocalList",{"versionNumber":1,"updateType":"Full",'
                     '"localAuthorizationList":[{"idToken":{"idToken":"04A1B2C3",'
                     '"type":"ISO14443"},"idTokenInfo":{"status":"Accepted","groupIdToken":'
                     '{"idToken":"G\\udfff","type":"Central"}}}]}]')
            reply = json.loads(await rig.link.send_raw(frame))
            assert reply[:3] == [4, "lone-2", "FormatViolation"], reply
            answer = await rig.call("CustomerInformation", {
                "requestId": 5, "report": True, "clear": False, "idToken": VALID_TOKEN})
            assert answer["status"] == "Accepted"
            report = await rig.expect("NotifyCustomerInformation")
            assert report["requestId"] == 5
            assert await rig.call("GetLocalListVersion", {}) == {"versionNumber": 0}
    run(case())
