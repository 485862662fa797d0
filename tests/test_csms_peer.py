"""The test CSMS peer (agent/demo/csms.py), driven by a bare websockets client.

The agent is not involved: these tests pin down the peer that the agent's integration
tests rely on, on both websockets APIs (run the suite in .venv and .venv-ws10).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import types
from decimal import Decimal

import pytest
import websockets

from agent.demo import csms as peer
from agent.demo.csms import CallErrorReceived, Csms, LinkClosed, RawReply

try:  # websockets >= 13
    from websockets.asyncio.client import connect as _new_connect
except ImportError:  # 10.4
    _new_connect = None
    from websockets.legacy.client import connect as _legacy_connect

BOOT = {"reason": "PowerUp", "chargingStation": {"model": "AC-22", "vendorName": "Example"}}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 8))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def connect(url: str, *, auth: str | None = None, subprotocols=("ocpp2.0.1",)):
    """A raw client on whichever websockets API is installed."""
    headers = [("Authorization", auth)] if auth else []
    protocols = list(subprotocols) if subprotocols else None
    if _new_connect is not None:
        return _new_connect(url, subprotocols=protocols, additional_headers=headers,
                            open_timeout=3, close_timeout=0.5)
    return _legacy_connect(url, subprotocols=protocols, extra_headers=headers,
                           open_timeout=3, close_timeout=0.5)


def http_status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)  # legacy InvalidStatusCode
    if status is None and getattr(exc, "response", None) is not None:
        status = exc.response.status_code  # new InvalidStatus
    return status


async def rpc(ws, action: str, payload: dict, message_id: str = "m1") -> list:
    await ws.send(json.dumps([2, message_id, action, payload]))
    return json.loads(await asyncio.wait_for(ws.recv(), 3))


# --------------------------------------------------------------------------- pure oracle


def test_date_time_checker():
    good = ["2024-02-29T23:59:60Z", "2024-01-01T00:00:00.123Z", "2024-01-01t00:00:00+05:30"]
    bad = ["yesterday", "2023-02-29T00:00:00Z", "2024-01-01T00:00:00", "2024-01-01 00:00:00Z",
           "2024-13-01T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T00:00:00+25:00"]
    assert all(peer.is_rfc3339_date_time(v) for v in good)
    assert not any(peer.is_rfc3339_date_time(v) for v in bad)


def test_validate_frame_shapes():
    assert peer.validate_frame('[2,"a","Heartbeat",{}]') == []
    assert peer.validate_frame("{nope") == ["not valid JSON"]
    assert peer.validate_frame('[5,"a"]') == ["unknown or missing MessageTypeId"]
    assert peer.validate_frame('[2,"a","GetVariables",{"getVariableData":[]}]')  # CSMS-only action
    assert peer.validate_frame('[4,"a","NoSuchCode","x",{}]')
    assert peer.validate_frame('[4,"a","GenericError","' + "x" * 256 + '",{}]')
    assert peer.validate_frame('[4,"a","GenericError","x"]')
    assert peer.validate_frame('[3,"a",{"status":"Maybe"}]', answered_action="Reset")
    assert peer.validate_frame('[3,"a",{"status":"Accepted"}]', answered_action="Reset") == []


def test_default_answers_satisfy_response_schemas():
    csms = Csms(boot_status="Pending", heartbeat_interval=7)
    fake_link = types.SimpleNamespace(station_id="CS-X", _csms=csms)
    cp = peer._CsmsChargePoint(fake_link, None)
    for action in sorted(peer.STATION_ACTIONS):
        answer = cp.route_map[action]["_on_action"](id_token={"idToken": "1", "type": "Local"})
        assert peer._schema_error(action, "Response", answer) is None, action
    boot = cp.route_map["BootNotification"]["_on_action"]()
    assert boot["status"] == "Pending" and boot["interval"] == 7


# --------------------------------------------------------------------------- over the wire


def test_boot_accepted_and_everything_recorded():
    seen = []

    async def main():
        async with Csms(passwords={"CS-1": "s3cret"}, heartbeat_interval=42,
                        on_frame=lambda *f: seen.append(f)) as csms:
            assert csms.url == f"ws://127.0.0.1:{csms.port}/ocpp"
            async with connect(csms.url + "/CS-1", auth=basic("CS-1", "s3cret")) as ws:
                reply = await rpc(ws, "BootNotification", BOOT)
                assert reply[:2] == [3, "m1"]
                assert reply[2]["status"] == "Accepted" and reply[2]["interval"] == 42
                assert peer.is_rfc3339_date_time(reply[2]["currentTime"])
                assert reply[2]["currentTime"].endswith("Z")

                link = await csms.wait_station("CS-1", timeout=2)
                hs = link.handshake
                assert hs.path == "/ocpp/CS-1" and hs.station_id == "CS-1"
                assert hs.authorization == basic("CS-1", "s3cret")
                assert hs.offered_subprotocols == ["ocpp2.0.1"] and hs.subprotocol == "ocpp2.0.1"
                assert any(e.startswith("permessage-deflate") for e in hs.offered_extensions)
                assert hs.compression, hs.extensions

                # found although it arrived before anyone looked; consumed once
                assert (await link.expect_call("BootNotification", timeout=1)) == BOOT
                with pytest.raises(asyncio.TimeoutError):
                    await link.expect_call("BootNotification", timeout=0.05)
                assert link.calls("BootNotification") == [BOOT]

                assert [f.direction for f in link.frames] == ["in", "out"]
                assert json.loads(link.frames[1].text) == reply
                assert link.frames[0].at <= link.frames[1].at <= time.time()
                assert [(s, d) for s, d, _ in seen] == [("CS-1", "in"), ("CS-1", "out")]

                # runtime change of the boot answer
                csms.boot_status = "Rejected"
                reply = await rpc(ws, "BootNotification", BOOT, "m2")
                assert reply[2]["status"] == "Rejected"
            await asyncio.wait_for(link.closed.wait(), 2)
            assert csms.schema_errors == []

    run(main())


def test_invalid_station_frames_are_recorded_and_answered():
    async def main():
        async with Csms() as csms:
            async with connect(csms.url + "/CS-2") as ws:
                reply = await rpc(ws, "BootNotification", {"reason": "PowerUp"})
                assert reply[0] == 4 and reply[2] == "OccurrenceConstraintViolation"
                status = {"timestamp": "yesterday", "connectorStatus": "Available",
                          "evseId": 1, "connectorId": 1}
                reply = await rpc(ws, "StatusNotification", status, "m2")
                assert reply[0] == 4 and reply[2] == "PropertyConstraintViolation"
                reply = await rpc(ws, "Heartbeat", {"extra": 1}, "m3")
                assert reply[0] == 4 and reply[2] == "FormatViolation"
                reply = await rpc(ws, "GetVariables", {"getVariableData": []}, "m4")
                assert reply[0] == 4 and reply[2] == "NotImplemented"
                await ws.send("not json")
                link = await csms.wait_station("CS-2")
                # every CALL is in the history, valid or not
                assert link.calls("StatusNotification") == [status]
            errors = csms.schema_errors
            assert len(errors) == 6, errors
            assert "BootNotification request" in errors[0] and "chargingStation" in errors[0]
            assert "date-time" in errors[1] and '"yesterday"' in errors[1]
            assert "Additional properties" in errors[2]
            assert "not an action a Charging Station sends" in errors[3]
            assert "GetVariables request" in errors[4] and "minItems" in errors[4]
            assert "not valid JSON" in errors[5]

    run(main())


@pytest.mark.parametrize(
    "path,auth,subprotocols,status",
    [
        ("/ocpp/CS-3", basic("CS-3", "wrong"), ("ocpp2.0.1",), 401),
        ("/ocpp/CS-3", basic("CS-4", "pw3"), ("ocpp2.0.1",), 401),  # user is not the station
        ("/ocpp/CS-3", None, ("ocpp2.0.1",), 401),
        ("/ocpp/CS-3", basic("CS-3", "pw3"), ("ocpp1.6",), 400),
        ("/ocpp/CS-3", basic("CS-3", "pw3"), (), 400),
        ("/other/CS-3", basic("CS-3", "pw3"), ("ocpp2.0.1",), 404),
    ],
)
def test_handshake_refusals(path, auth, subprotocols, status):
    async def main():
        async with Csms(passwords={"CS-3": "pw3"}) as csms:
            url = f"ws://127.0.0.1:{csms.port}{path}"
            with pytest.raises(websockets.exceptions.InvalidHandshake) as caught:
                async with connect(url, auth=auth, subprotocols=subprotocols):
                    pass
            assert http_status(caught.value) == status
            assert csms.links == {}

    run(main())


async def answer_calls(ws, answer):
    """A client loop answering each CSMS CALL with answer(message) (a frame text or None)."""
    try:
        async for text in ws:
            reply = answer(text)
            if reply is not None:
                await ws.send(reply)
    except websockets.ConnectionClosed:
        pass


def test_csms_call_results_errors_and_timeouts():
    received = []

    def answer(text):
        received.append(text)
        message = json.loads(text)
        if message[2] == "GetVariables":
            return json.dumps([3, message[1], {"getVariableResult": [
                {"attributeStatus": "Accepted", "attributeValue": "60",
                 "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}])
        if message[2] == "Reset":
            return json.dumps([4, message[1], "NotSupported", "no resets here", {"why": "test"}])
        if message[2] == "DataTransfer":
            return json.dumps([3, message[1], {"status": "Accepted"}])
        if message[2] == "ClearCache":
            return json.dumps([3, message[1], {"status": "Maybe"}])  # invalid response
        return None  # TriggerMessage: never answered

    async def main():
        async with Csms() as csms:
            async with connect(csms.url + "/CS-5") as ws:
                client = asyncio.create_task(answer_calls(ws, answer))
                link = await csms.wait_station("CS-5")
                request = {"getVariableData": [{"component": {"name": "OCPPCommCtrlr"},
                                                "variable": {"name": "HeartbeatInterval"}}]}
                result = await link.call("GetVariables", request, timeout=2)
                assert result["getVariableResult"][0]["attributeValue"] == "60"
                assert json.loads(received[-1])[3] == request  # as given, camelCase

                with pytest.raises(CallErrorReceived) as caught:
                    await link.call("Reset", {"type": "Immediate"}, timeout=2)
                assert (caught.value.code, caught.value.description, caught.value.details) == (
                    "NotSupported", "no resets here", {"why": "test"})

                await link.call("DataTransfer", {"vendorId": "x", "data": {"v": Decimal("0.125"),
                                                                          "n": Decimal("7")}})
                assert '"data":{"v":0.125,"n":7}' in received[-1]

                with pytest.raises(asyncio.TimeoutError):
                    await link.call("TriggerMessage", {"requestedMessage": "Heartbeat"}, timeout=0.2)
                # a late answer is dropped, and is no violation
                await ws.send(json.dumps([3, json.loads(received[-1])[1], {"status": "Accepted"}]))
                await link.call("DataTransfer", {"vendorId": "x"})

                assert csms.schema_errors == []
                assert (await link.call("ClearCache", {}))["status"] == "Maybe"
                assert len(csms.schema_errors) == 1 and "ClearCache response" in csms.schema_errors[0]
                client.cancel()

    run(main())


def test_send_raw_replies_do_not_disturb_calls():
    def answer(text):
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not isinstance(message, list):
            return json.dumps([4, "-1", "RpcFrameworkError", "unreadable", {}])
        if message[0] != 2:
            return None
        if message[1] == "raw-1":
            return json.dumps([4, "raw-1", "FormatViolation", "bad", {}])
        if message[1] == "raw-2":  # answers with a wrong id
            return json.dumps([4, "wrong-id", "RpcFrameworkError", "confused", {}])
        return json.dumps([3, message[1], {"status": "Accepted"}])

    async def main():
        async with Csms() as csms:
            async with connect(csms.url + "/CS-6") as ws:
                client = asyncio.create_task(answer_calls(ws, answer))
                link = await csms.wait_station("CS-6")
                reply = await link.send_raw('[2,"raw-1","Reset",{"type":7}]')
                assert json.loads(reply)[:3] == [4, "raw-1", "FormatViolation"]
                reply = await link.send_raw("[2,'raw'")
                assert json.loads(reply)[1] == "-1"
                reply = await link.send_raw('[2,"raw-2","Reset",{}]')
                assert json.loads(reply)[1] == "wrong-id"
                # a raw frame and a real call in flight together: each gets its own answer
                raw = asyncio.create_task(link.send_raw("{}", timeout=2))
                result = await link.call("Reset", {"type": "OnIdle"}, timeout=2)
                assert result == {"status": "Accepted"}
                assert json.loads(await raw)[1] == "-1"
                # no reply at all (a CALLRESULT is never answered)
                assert await link.send_raw('[3,"zzz",{}]', timeout=0.2) is None
                assert await link.send_raw('[3,"zzz",{}]', expect_reply=False) is None
                # the ocpp package's own call() still works next to all that
                from ocpp.v201 import call as ocpp_call
                result = await link.cp.call(ocpp_call.Reset(type="Immediate"))
                assert result.status == "Accepted"
                assert csms.schema_errors == []
                client.cancel()

    run(main())


def test_responders_override_and_raw_answers():
    async def main():
        async with Csms() as csms:
            csms.responders["Authorize"] = lambda p: {"idTokenInfo": {"status": "Blocked"}}
            async with connect(csms.url + "/CS-7") as ws:
                link = await csms.wait_station("CS-7")
                token = {"idToken": {"idToken": "ABC", "type": "ISO14443"}}
                reply = await rpc(ws, "Authorize", token)
                assert reply[2] == {"idTokenInfo": {"status": "Blocked"}}
                link.responders["Heartbeat"] = lambda p: RawReply('[3,"m2",{"currentTime":1}]')
                assert (await rpc(ws, "Heartbeat", {}, "m2"))[2] == {"currentTime": 1}

                async def slow_nothing(payload):
                    return None
                link.responders["Heartbeat"] = slow_nothing
                await ws.send(json.dumps([2, "m3", "Heartbeat", {}]))
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.2)
                del link.responders["Heartbeat"]
                reply = await rpc(ws, "Heartbeat", {}, "m4")
                assert reply[1] == "m4" and "currentTime" in reply[2]

                def broken(payload):
                    raise ValueError("boom")
                csms.responders["MeterValues"] = broken
                reply = await rpc(ws, "MeterValues", {"evseId": 1, "meterValue": [
                    {"timestamp": "2024-01-01T00:00:00Z", "sampledValue": [{"value": 1.5}]}]}, "m5")
                assert reply[0] == 4 and reply[2] == "InternalError"
                event = {"eventType": "Started", "timestamp": "2024-01-01T00:00:00Z",
                         "triggerReason": "Authorized", "seqNo": 0,
                         "transactionInfo": {"transactionId": "t1"}, **token}
                reply = await rpc(ws, "TransactionEvent", event, "m6")
                assert reply[2] == {"idTokenInfo": {"status": "Accepted"}}
                assert await link.expect_call("TransactionEvent", where=lambda p: p["seqNo"] == 0)
            assert csms.schema_errors == []

    run(main())


def test_close_reconnect_and_quick_stop():
    async def main():
        csms = await Csms().start()
        ws = await connect(csms.url + "/CS-8")
        first = await csms.wait_station("CS-8")
        waiter = asyncio.create_task(first.expect_call("Heartbeat", timeout=5))
        await first.close()
        assert first.closed.is_set()
        with pytest.raises(LinkClosed):
            await waiter
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 1)
        with pytest.raises(LinkClosed):
            await first.call("Heartbeat", {})

        ws = await connect(csms.url + "/CS-8")
        second = await csms.wait_station("CS-8", after=first)
        assert second is not first and csms.links["CS-8"] == [first, second]
        # an abort is a cut link: the client sees no close frame
        second.abort()
        await asyncio.wait_for(second.closed.wait(), 1)
        with pytest.raises(websockets.ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 1)
        assert caught.value.rcvd is None

        ws = await connect(csms.url + "/CS-8")
        third = await csms.wait_station("CS-8", after=second)
        started = time.monotonic()
        await csms.stop()
        assert time.monotonic() - started < 1
        assert third.closed.is_set()
        with pytest.raises(asyncio.TimeoutError):
            await csms.wait_station("CS-9", timeout=0.05)

    run(main())


def test_call_while_previous_unanswered_is_flagged():
    async def main():
        async with Csms() as csms:
            async def slow(payload):
                await asyncio.sleep(0.2)
                return {"currentTime": csms.now_text()}
            csms.responders["Heartbeat"] = slow
            async with connect(csms.url + "/CS-10") as ws:
                await ws.send(json.dumps([2, "h1", "Heartbeat", {}]))
                await ws.send(json.dumps([2, "h2", "Heartbeat", {}]))
                answers = [json.loads(await ws.recv()) for _ in range(2)]
                assert [a[1] for a in answers] == ["h1", "h2"]
            assert len(csms.schema_errors) == 1
            assert "'h1' was unanswered" in csms.schema_errors[0]

    run(main())
