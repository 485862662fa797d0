"""The OCPP-J session: one CALL in flight, answers in any order, errors that keep it alive."""

import asyncio

import pytest

from agent.clock import ManualClock
from agent.ocpp.session import (CallErrorReceived, CallFailed, CallTimeout, NotConnected,
                                OcppError, Reply, Router, Session)
from tests.pipes import PipeConnection

TIMEOUT = 30


def make(router=None):
    conn = PipeConnection()
    clock = ManualClock()
    session = Session(conn, router or Router(), clock, lambda: TIMEOUT)
    return conn, clock, session


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_call_returns_the_answer_and_ids_are_unique():
    async def main():
        conn, clock, session = make()
        runner = asyncio.ensure_future(session.run())
        ids = []
        for _ in range(3):
            call = asyncio.ensure_future(session.call("Heartbeat", {}))
            frame = await conn.next_sent()
            assert frame[0] == 2 and frame[2] == "Heartbeat" and frame[3] == {}
            ids.append(frame[1])
            conn.feed([3, frame[1], {"currentTime": "2026-01-01T00:00:00Z"}])
            assert await call == {"currentTime": "2026-01-01T00:00:00Z"}
        assert len(set(ids)) == 3 and all(len(i) <= 36 for i in ids)
        await session.close()
        await runner
    run(main())


def test_only_one_call_in_flight():
    async def main():
        conn, clock, session = make()
        runner = asyncio.ensure_future(session.run())
        first = asyncio.ensure_future(session.call("Heartbeat", {}))
        second = asyncio.ensure_future(session.call("Heartbeat", {}))
        frame1 = await conn.next_sent()
        await asyncio.sleep(0.05)
        assert conn.nothing_sent(), "second CALL sent before the first was answered"
        conn.feed([3, frame1[1], {"currentTime": "2026-01-01T00:00:00Z"}])
        await first
        frame2 = await conn.next_sent()
        assert frame2[1] != frame1[1]
        conn.feed([3, frame2[1], {"currentTime": "2026-01-01T00:00:01Z"}])
        await second
        await session.close()
        await runner
    run(main())


def test_timeout_frees_the_line_and_late_answer_is_dropped():
    async def main():
        conn, clock, session = make()
        runner = asyncio.ensure_future(session.run())
        first = asyncio.ensure_future(session.call("Heartbeat", {}))
        frame1 = await conn.next_sent()
        await clock.advance(TIMEOUT - 1)
        assert not first.done()
        await clock.advance(1)
        with pytest.raises(CallTimeout):
            await first
        second = asyncio.ensure_future(session.call("Heartbeat", {}))
        frame2 = await conn.next_sent()
        conn.feed([3, frame1[1], {"currentTime": "2026-01-01T00:00:00Z"}])  # late, ignored
        conn.feed([3, frame2[1], {"currentTime": "2026-01-01T00:00:02Z"}])
        assert (await second)["currentTime"].endswith("02Z")
        await session.close()
        await runner
    run(main())


def test_callerror_and_invalid_response_fail_the_call():
    async def main():
        conn, clock, session = make()
        runner = asyncio.ensure_future(session.run())
        call = asyncio.ensure_future(session.call("Heartbeat", {}))
        frame = await conn.next_sent()
        conn.feed([4, frame[1], "InternalError", "boom", {}])
        with pytest.raises(CallErrorReceived) as err:
            await call
        assert err.value.error.code == "InternalError"
        call = asyncio.ensure_future(session.call("Heartbeat", {}))
        frame = await conn.next_sent()
        conn.feed([3, frame[1], {"currentTime": 5}])
        with pytest.raises(CallFailed, match="invalid response"):
            await call
        await session.close()
        await runner
    run(main())


def test_connection_loss_fails_the_pending_call():
    async def main():
        conn, clock, session = make()
        runner = asyncio.ensure_future(session.run())
        call = asyncio.ensure_future(session.call("Heartbeat", {}))
        await conn.next_sent()
        await conn.close()
        with pytest.raises(NotConnected):
            await call
        await runner
        with pytest.raises(NotConnected):
            await session.call("Heartbeat", {})
    run(main())


def _router():
    router = Router()
    release = asyncio.Event()

    async def slow(request):
        await release.wait()
        return {"status": "Accepted"}

    async def fast(request):
        return {"status": "Unlocked"}

    async def broken(request):
        raise RuntimeError("bug")

    async def picky(request):
        raise OcppError("OccurrenceConstraintViolation", "too many")

    router.register("ClearCache", slow)
    router.register("UnlockConnector", lambda r: fast(r))
    router.register("ChangeAvailability", broken)
    router.register("SetVariables", picky)
    return router, release


def test_answers_to_csms_calls_in_any_order():
    async def main():
        router, release = _router()
        conn, clock, session = make(router)
        runner = asyncio.ensure_future(session.run())
        conn.feed([2, "slow", "ClearCache", {}])
        conn.feed([2, "fast", "UnlockConnector", {"evseId": 1, "connectorId": 1}])
        assert (await conn.next_sent())[1] == "fast"
        release.set()
        assert await conn.next_sent() == [3, "slow", {"status": "Accepted"}]
        await session.close()
        await runner
    run(main())


@pytest.mark.parametrize("frame, code", [
    ([2, "1", "NoSuchAction", {}], "NotImplemented"),
    ([2, "1", "GetLog", {"logType": "DiagnosticsLog", "requestId": 1,
                         "log": {"remoteLocation": "ftp://x"}}], "NotSupported"),
    ([2, "1", "UnlockConnector", {"evseId": "1", "connectorId": 1}], "TypeConstraintViolation"),
    ([2, "1", "UnlockConnector", {"evseId": 1}], "OccurrenceConstraintViolation"),
    # Beyond OCPP's 32-bit integer: refused before the handler (issue 14).
    ([2, "1", "UnlockConnector", {"evseId": 2 ** 63, "connectorId": 1}],
     "TypeConstraintViolation"),
    ([2, "1", "UnlockConnector", {"evseId": 1, "connectorId": -(2 ** 31) - 1}],
     "TypeConstraintViolation"),
    ([2, "1", "ChangeAvailability", {"operationalStatus": "Broken"}], "PropertyConstraintViolation"),
    ([2, "1", "UnlockConnector", {"evseId": 1, "connectorId": 1, "x": 1}], "FormatViolation"),
    ([2, "1", "ChangeAvailability", {"operationalStatus": "Operative"}], "InternalError"),
    ([2, "1", "SetVariables", {"setVariableData": [{"attributeValue": "1", "component": {"name": "A"},
                                                    "variable": {"name": "B"}}]}],
     "OccurrenceConstraintViolation"),
])
def test_bad_calls_get_the_right_callerror_and_the_session_lives_on(frame, code):
    async def main():
        router, release = _router()
        conn, clock, session = make(router)
        runner = asyncio.ensure_future(session.run())
        conn.feed(frame)
        reply = await conn.next_sent()
        assert reply[:3] == [4, "1", code]
        conn.feed([2, "2", "UnlockConnector", {"evseId": 1, "connectorId": 1}])
        assert await conn.next_sent() == [3, "2", {"status": "Unlocked"}]
        await session.close()
        await runner
    run(main())


def test_malformed_and_oversize_frames():
    async def main():
        router, _ = _router()
        conn, clock, session = make(router)
        runner = asyncio.ensure_future(session.run())
        conn.feed("{nope")
        assert (await conn.next_sent())[:3] == [4, "-1", "RpcFrameworkError"]
        conn.feed('[2, "big", "DataTransfer", {"vendorId": "v", "data": "' + "x" * (2 << 20) + '"}]')
        assert (await conn.next_sent())[:3] == [4, "big", "FormatViolation"]
        # An integer of 5001 digits is valid JSON: answered by its id, not as unreadable.
        conn.feed('[2, "long", "UnlockConnector", {"evseId": 1' + "0" * 5000
                  + ', "connectorId": 1}]')
        assert (await conn.next_sent())[:3] == [4, "long", "TypeConstraintViolation"]
        conn.feed([3, "nobody-asked", {}])  # an answer to nothing: ignored
        conn.feed([2, "2", "UnlockConnector", {"evseId": 1, "connectorId": 1}])
        assert await conn.next_sent() == [3, "2", {"status": "Unlocked"}]
        await session.close()
        await runner
    run(main())


def test_duplicate_message_id_while_handling():
    async def main():
        router, release = _router()
        conn, clock, session = make(router)
        runner = asyncio.ensure_future(session.run())
        conn.feed([2, "same", "ClearCache", {}])
        conn.feed([2, "same", "ClearCache", {}])
        assert (await conn.next_sent())[:3] == [4, "same", "RpcFrameworkError"]
        release.set()
        assert await conn.next_sent() == [3, "same", {"status": "Accepted"}]
        await session.close()
        await runner
    run(main())


def test_gate_refuses_everything_and_reply_then_runs_after_the_answer():
    async def main():
        router = Router()
        seen_when_following_up = []

        async def follow_up():
            seen_when_following_up.append(conn.sent.qsize())

        async def handler(request):
            return Reply({"status": "Accepted"}, follow_up)

        router.register("ClearCache", handler)
        conn, clock, session = make(router)
        runner = asyncio.ensure_future(session.run())
        router.gate = lambda action: "SecurityError"
        conn.feed([2, "1", "ClearCache", {}])
        assert (await conn.next_sent())[:3] == [4, "1", "SecurityError"]
        router.gate = lambda action: None
        conn.feed([2, "2", "ClearCache", {}])
        await asyncio.sleep(0.01)
        # The answer was on the wire before the follow-up started.
        assert seen_when_following_up == [1]
        assert await conn.next_sent() == [3, "2", {"status": "Accepted"}]
        await session.close()
        await runner
    run(main())


def test_an_invalid_call_of_ours_is_never_sent():
    async def main():
        conn, clock, session = make()
        runner = asyncio.ensure_future(session.run())
        with pytest.raises(CallFailed, match="invalid request"):
            await session.call("StatusNotification", {"connectorStatus": "Sleeping"})
        assert conn.nothing_sent()
        await session.close()
        await runner
    run(main())


def test_a_send_on_a_link_that_just_closed_is_not_connected_not_a_crash():
    async def main():
        conn, _, session = make()
        conn.closed = True   # the socket went away; the session has not noticed yet
        with pytest.raises(NotConnected):
            await session.call("Heartbeat", {})
    run(main())
