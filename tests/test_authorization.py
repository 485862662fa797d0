"""Authorization (block C): the decision for an idToken online, offline, from the cache."""

from __future__ import annotations

import asyncio
import copy
from datetime import timedelta
from pathlib import Path

import pytest

from agent.blocks.authorization import Authorization, Decision, same_id_token
from agent.clock import format_datetime
from agent.model.types import FEATURE_AUTH_CACHE, FEATURE_LOCAL_AUTH_LIST
from agent.ocpp import rpc
from agent.ocpp.connection import ConnectionManager
from agent.ocpp.session import CallErrorReceived, CallFailed, CallTimeout, NotConnected, Router
from agent.ocpp.transport import Endpoint
from agent.ocpp.validation import validate
from tests.pipes import PipeConnection
from tests.test_auth_cache import DAY, Env, accepted, tok

CARD = tok("04A2B3C4D5E6F7")


class FakeLink:
    """The Messenger as blocks see it; plays the CSMS with `answer(payload)`, which may
    return an AuthorizeResponse or an exception to raise (CALLERROR, timeout, ...)."""

    def __init__(self) -> None:
        self.connected = True
        self.calls: list[tuple[str, dict, bool]] = []
        self.answer = lambda payload: {"idTokenInfo": {"status": "Accepted"}}

    async def call(self, action, payload, *, before_accepted=False, wait=True, timeout=None):
        validate(action, "request", payload)        # the wire dict is schema-valid
        self.calls.append((action, copy.deepcopy(payload), wait))
        if not self.connected:
            raise NotConnected(f"{action}: not connected")
        result = self.answer(payload)
        if isinstance(result, BaseException):
            raise result
        return result


class LocalList:
    def __init__(self) -> None:
        self.items: dict[str, dict] = {}

    def lookup(self, id_token):
        return self.items.get(id_token["idToken"].lower())


class Rig(Env):
    def __init__(self, path: Path, *, local_list: LocalList | None = None, **kwargs) -> None:
        self.link = FakeLink()
        self.local_list = local_list
        super().__init__(path, **kwargs)

    def _open(self) -> None:
        super()._open()
        self.auth = Authorization(self.link, self.router, self.model, self.clock, self.store,
                                  self.cache, local_list=self.local_list)

    def auth_set(self, variable: str, value: bool | str) -> None:
        self.set("AuthCtrlr", variable,
                 ("true" if value else "false") if isinstance(value, bool) else value)

    def decide(self, token=CARD, **kwargs) -> Decision:
        return asyncio.run(asyncio.wait_for(self.auth.authorize(token, **kwargs), 10))

    def sent(self) -> list[dict]:
        return [payload for action, payload, _ in self.link.calls if action == "Authorize"]


@pytest.fixture
def rig(tmp_path: Path):
    r = Rig(tmp_path / "station-agent.db")
    yield r
    r.close()


@pytest.fixture
def make_rig(tmp_path: Path):
    made: list[Rig] = []

    def make(**kwargs) -> Rig:
        r = Rig(tmp_path / f"db{len(made)}.db", **kwargs)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


def cache_csms(rig: Rig, info: dict, token=CARD) -> None:
    """The CSMS said `info` of `token` earlier (an earlier Authorize or TransactionEvent)."""
    assert rig.cache.update(token, info)


def answers(info: dict):
    return lambda payload: {"idTokenInfo": copy.deepcopy(info)}


# -- no authorization needed ---------------------------------------------------------------------

def test_auth_disabled_accepts_everything_without_asking(rig):
    rig.auth_set("Enabled", False)
    rig.link.answer = answers({"status": "Blocked"})
    d = rig.decide()
    assert d == Decision({"status": "Accepted"}) and rig.link.calls == []
    rig.link.connected = False
    assert rig.decide().accepted and not rig.decide().offline


def test_auth_disabled_gives_the_token_of_a_session_without_one(rig):
    """AuthCtrlr.Enabled false: a session may start with no idToken presented; its
    TransactionEvents carry idToken "" of type NoAuthorization (appendix 3, errata 6.1.1)."""
    assert rig.auth.without_token() is None
    rig.auth_set("Enabled", False)
    token = rig.auth.without_token()
    assert token == {"idToken": "", "type": "NoAuthorization"}
    validate("Authorize", "request", {"idToken": token})   # a valid IdTokenType
    rig.auth_set("Enabled", True)
    assert rig.auth.without_token() is None


def test_no_authorization_and_central_tokens_are_accepted_without_asking(rig):
    rig.link.answer = answers({"status": "Invalid"})
    assert rig.decide(tok("", "NoAuthorization")).accepted
    assert rig.decide(tok("remote-session-7", "Central")).accepted
    assert rig.link.calls == [] and rig.cache.entries() == []


def test_authorize_remote_start_setting(rig):
    assert rig.auth.needs_authorize_for_remote_start() is False
    rig.auth_set("AuthorizeRemoteStart", True)
    assert rig.auth.needs_authorize_for_remote_start() is True


# -- online -----------------------------------------------------------------------------------

def test_online_asks_the_csms_and_caches_the_answer(rig):
    info = {"status": "Accepted", "groupIdToken": tok("FLEET-1", "Central"), "language1": "nl"}
    rig.link.answer = answers(info)
    token = dict(CARD, additionalInfo=[{"additionalIdToken": "x1", "type": "contract"}])
    d = rig.decide(token)
    assert d == Decision(info, offline=False, from_cache=False) and d.accepted
    assert rig.sent() == [{"idToken": token}]
    assert rig.link.calls[0][2] is False, "never waits for a connection: offline is decided now"
    assert rig.cache.lookup(CARD).info == info


def test_the_wire_dicts_are_clean_and_decisions_are_copies(rig):
    info = accepted(groupIdToken=tok("G", "Central"))
    rig.link.answer = answers(info)
    token = dict(CARD, private_note="not for the wire")
    d = rig.decide(token)
    payload = rig.sent()[0]
    validate("Authorize", "request", payload)
    assert payload == {"idToken": CARD}
    d.info["groupIdToken"]["idToken"] = "changed"
    assert rig.cache.lookup(CARD).info == info


def test_online_rejections_are_returned_and_cached(rig):
    for status in ("Blocked", "Expired", "Invalid", "Unknown", "NoCredit"):
        rig.link.answer = answers({"status": status})
        d = rig.decide()
        assert d.status == status and not d.accepted and not d.offline
        assert rig.cache.lookup(CARD).status == status


def test_without_local_pre_authorize_a_cached_token_is_still_asked_about(rig):
    cache_csms(rig, accepted())
    rig.link.answer = answers({"status": "Blocked"})
    assert rig.decide().status == "Blocked" and len(rig.sent()) == 1
    assert rig.cache.lookup(CARD).status == "Blocked", "the cache follows the CSMS"


def test_local_pre_authorize_accepts_a_valid_cached_token_at_once(rig):
    rig.auth_set("LocalPreAuthorize", True)
    cache_csms(rig, accepted(groupIdToken=tok("G", "Central")))
    d = rig.decide()
    assert d == Decision(accepted(groupIdToken=tok("G", "Central")), False, True)
    assert rig.link.calls == []


def test_local_pre_authorize_asks_about_a_token_not_in_the_cache(rig):
    rig.auth_set("LocalPreAuthorize", True)
    d = rig.decide()
    assert d.accepted and not d.from_cache and len(rig.sent()) == 1
    assert rig.decide().from_cache, "the second time the cache answers"
    assert len(rig.sent()) == 1


def test_post_authorize_a_cached_rejection_unless_disabled(rig):
    rig.auth_set("LocalPreAuthorize", True)
    cache_csms(rig, {"status": "Blocked"})
    rig.link.answer = answers(accepted())
    d = rig.decide()                             # C10.FR.03 / C12.FR.05: ask again
    assert d.accepted and not d.from_cache and len(rig.sent()) == 1
    cache_csms(rig, {"status": "Blocked"})
    rig.set("AuthCacheCtrlr", "DisablePostAuthorize", "true")
    d = rig.decide()
    assert d == Decision({"status": "Blocked"}, False, True) and len(rig.sent()) == 1


def test_local_pre_authorize_asks_again_once_cache_expiry_has_passed(rig):
    rig.auth_set("LocalPreAuthorize", True)
    cache_csms(rig, accepted(cacheExpiryDateTime=format_datetime(
        rig.clock.now() + timedelta(hours=1))))

    async def main():
        assert (await rig.auth.authorize(CARD)).from_cache
        await rig.clock.advance(3601)
        d = await rig.auth.authorize(CARD)
        assert d.accepted and not d.from_cache and len(rig.sent()) == 1
    asyncio.run(main())


def test_a_past_cache_expiry_in_the_answer_counts_as_expired_locally(rig):
    past = format_datetime(rig.clock.now() - timedelta(seconds=1))
    rig.link.answer = answers(accepted(cacheExpiryDateTime=past))
    rig.auth_set("LocalPreAuthorize", True)
    rig.auth_set("OfflineTxForUnknownIdEnabled", True)
    d = rig.decide()
    assert d.accepted and not d.from_cache, "the CSMS's answer of now is honoured"
    assert rig.decide().from_cache is False and len(rig.sent()) == 2, "not reused online"
    rig.link.connected = False
    d = rig.decide()
    assert d.status == "Expired" and d.offline and d.from_cache, "nor offline"


def test_disable_remote_authorization_decides_from_local_data_only(rig):
    rig.auth_set("DisableRemoteAuthorization", True)
    assert rig.decide().status == "Invalid"
    cache_csms(rig, accepted())
    d = rig.decide()
    assert d.accepted and d.from_cache and not d.offline
    assert rig.link.calls == []


def test_evse_restriction_of_the_answer(rig):
    rig.link.answer = answers(accepted(evseId=[2]))
    assert rig.decide(evse_id=2).accepted
    d = rig.decide(evse_id=1)
    assert d.status == "NotAllowedTypeEVSE" and d.info["evseId"] == [2]
    assert rig.decide().accepted, "no EVSE named: the token itself is accepted"
    assert rig.cache.lookup(CARD).status == "Accepted"


# -- offline ----------------------------------------------------------------------------------

def test_offline_uses_a_valid_cache_entry(rig):
    cache_csms(rig, accepted(groupIdToken=tok("G", "Central")))
    rig.link.connected = False
    d = rig.decide()
    assert d == Decision(accepted(groupIdToken=tok("G", "Central")), True, True)
    assert not d.unknown_offline
    assert len(rig.link.calls) == 0, "a lost link is known without trying"


def test_offline_unknown_token_is_invalid_by_default(rig):
    rig.link.connected = False
    d = rig.decide()
    assert d == Decision({"status": "Invalid"}, offline=True, from_cache=False)


def test_offline_unknown_token_accepted_when_allowed(rig):
    rig.auth_set("OfflineTxForUnknownIdEnabled", True)
    rig.link.connected = False
    d = rig.decide()
    assert d.info == {"status": "Accepted"}, "nothing private in the wire dict"
    assert d.offline and not d.from_cache and d.unknown_offline


def test_offline_a_cached_rejection_is_never_accepted(rig):
    rig.auth_set("OfflineTxForUnknownIdEnabled", True)
    rig.link.connected = False
    for status in ("Blocked", "Expired", "Invalid", "NoCredit"):
        cache_csms(rig, {"status": status})
        d = rig.decide()
        assert d.status == status and d.from_cache and not d.accepted
    rig.auth_set("LocalAuthorizeOffline", False)
    assert rig.decide().status == "NoCredit"


def test_offline_cache_expiry_passed_is_expired_even_for_unknown_allowed(rig):
    rig.auth_set("OfflineTxForUnknownIdEnabled", True)
    cache_csms(rig, accepted(cacheExpiryDateTime=format_datetime(
        rig.clock.now() + timedelta(minutes=5))))
    rig.link.connected = False

    async def main():
        assert (await rig.auth.authorize(CARD)).accepted
        await rig.clock.advance(301)
        d = await rig.auth.authorize(CARD)
        assert d.status == "Expired" and d.from_cache
    asyncio.run(main())


def test_without_local_authorize_offline_the_cache_does_not_accept(rig):
    cache_csms(rig, accepted())
    rig.auth_set("LocalAuthorizeOffline", False)
    rig.link.connected = False
    assert rig.decide() == Decision({"status": "Invalid"}, True, False)
    rig.auth_set("OfflineTxForUnknownIdEnabled", True)
    d = rig.decide()
    assert d.accepted and d.unknown_offline, "no worse off than an unknown card"


def test_not_connected_and_timeout_from_the_call_are_offline(rig):
    cache_csms(rig, accepted(), tok("KNOWN"))
    rig.auth_set("OfflineTxForUnknownIdEnabled", True)
    for error in (NotConnected("not registered yet"), CallTimeout("no answer within 30 s")):
        rig.link.answer = lambda payload, error=error: error
        known, unknown = rig.decide(tok("KNOWN")), rig.decide(tok("STRANGER"))
        assert known == Decision(accepted(), True, True)
        assert unknown.unknown_offline


def test_a_callerror_decides_from_local_data_but_never_accepts_unknown(rig):
    rig.auth_set("OfflineTxForUnknownIdEnabled", True)
    cache_csms(rig, accepted(), tok("KNOWN"))
    error = CallErrorReceived(rpc.CallError("1", "InternalError", "db down"))
    rig.link.answer = lambda payload: error
    assert rig.decide(tok("KNOWN")) == Decision(accepted(), True, True)
    assert rig.decide(tok("STRANGER")) == Decision({"status": "Invalid"}, True, False)
    rig.link.answer = lambda payload: CallFailed("Authorize: invalid response")
    assert rig.decide(tok("STRANGER")).status == "Invalid"
    rig.link.answer = lambda payload: {"unexpected": True}
    assert rig.decide(tok("KNOWN")).from_cache
    assert rig.cache.lookup(tok("STRANGER")) is None


# -- cache life across decisions ---------------------------------------------------------------

def test_lifetime_expiry_on_the_clock(rig):
    rig.set("AuthCacheCtrlr", "LifeTime", str(7 * DAY))
    rig.auth_set("LocalPreAuthorize", True)

    async def main():
        await rig.auth.authorize(CARD)           # asked, cached
        await rig.clock.advance(6 * DAY)
        assert (await rig.auth.authorize(CARD)).from_cache   # a use renews the LifeTime
        await rig.clock.advance(6 * DAY)
        assert (await rig.auth.authorize(CARD)).from_cache
        await rig.clock.advance(7 * DAY + 1)
        rig.link.connected = False
        d = await rig.auth.authorize(CARD)
        assert d == Decision({"status": "Invalid"}, True, False), "gone: unknown again"
        assert rig.cache.entries() == []
        assert len(rig.sent()) == 1
    asyncio.run(main())


def test_decisions_survive_a_restart(rig):
    rig.link.answer = answers(accepted(groupIdToken=tok("G", "Central")))
    rig.decide()
    rig.reopen()
    rig.link.connected = False
    d = rig.decide()
    assert d.accepted and d.from_cache and d.info["groupIdToken"] == tok("G", "Central")


def test_cache_disabled_is_not_used_offline_nor_filled(rig):
    cache_csms(rig, accepted())
    rig.set("AuthCacheCtrlr", "Enabled", "false")
    rig.decide(tok("OTHER"))
    rig.link.connected = False
    assert rig.decide().status == "Invalid"
    rig.set("AuthCacheCtrlr", "Enabled", "true")
    assert rig.cache.lookup(tok("OTHER")) is None


def test_no_cache_at_all(tmp_path):
    r = Rig(tmp_path / "db.db")
    try:
        auth = Authorization(r.link, Router(), r.model, r.clock, r.store, None)
        r.link.connected = False
        assert asyncio.run(auth.authorize(CARD)).status == "Invalid"
        r.link.connected = True
        assert asyncio.run(auth.authorize(CARD)).accepted
    finally:
        r.close()


# -- local authorization list (optional hook) ----------------------------------------------------

def test_local_list_comes_before_the_cache(make_rig):
    local = LocalList()
    r = make_rig(local_list=local, features=frozenset({FEATURE_AUTH_CACHE,
                                                       FEATURE_LOCAL_AUTH_LIST}))
    cache_csms(r, accepted())
    local.items[CARD["idToken"].lower()] = {"status": "Blocked"}
    r.link.connected = False
    r.auth_set("OfflineTxForUnknownIdEnabled", True)
    assert r.decide() == Decision({"status": "Blocked"}, True, True)
    local.items[CARD["idToken"].lower()] = accepted(cacheExpiryDateTime=format_datetime(
        r.clock.now() - timedelta(seconds=1)))
    assert r.decide().status == "Expired"
    r.link.connected = True
    r.auth_set("LocalPreAuthorize", True)
    local.items[CARD["idToken"].lower()] = accepted()
    assert r.decide().from_cache and r.link.calls == []
    local.items[CARD["idToken"].lower()] = {"status": "Invalid"}
    r.set("LocalAuthListCtrlr", "DisablePostAuthorize", "true")
    assert r.decide() == Decision({"status": "Invalid"}, False, True)
    r.set("LocalAuthListCtrlr", "DisablePostAuthorize", "false")
    assert r.decide().accepted and len(r.sent()) == 1


# -- groups and master pass --------------------------------------------------------------------

def test_same_group(rig):
    a = accepted(groupIdToken=tok("Fleet-7", "Central"))
    b = {"status": "Accepted", "groupIdToken": tok("FLEET-7", "Central")}
    c = accepted(groupIdToken=tok("Fleet-8", "Central"))
    assert rig.auth.same_group(a, b)
    assert not rig.auth.same_group(a, c)
    assert not rig.auth.same_group(a, accepted())
    assert not rig.auth.same_group(accepted(), accepted()), "no group is no shared group"
    assert not rig.auth.same_group(a, None) and not rig.auth.same_group(None, None)
    assert rig.auth.same_group(a, tok("fleet-7", "Central")), "a groupIdToken itself"
    assert not rig.auth.same_group(a, accepted(groupIdToken=tok("Fleet-7", "ISO14443")))


def test_same_id_token_ignores_case_and_additional_info():
    assert same_id_token(tok("abc"), dict(tok("ABC"), additionalInfo=[
        {"additionalIdToken": "x", "type": "y"}]))
    assert not same_id_token(tok("abc"), tok("abc", "ISO15693"))
    assert not same_id_token(None, tok("abc"))


def test_master_pass(rig):
    master = accepted(groupIdToken=tok("MASTER", "Central"))
    assert not rig.auth.is_master_pass(master), "no MasterPassGroupId configured"
    rig.auth_set("MasterPassGroupId", "master")
    assert rig.auth.is_master_pass(master)
    assert not rig.auth.is_master_pass(accepted(groupIdToken=tok("FLEET", "Central")))
    assert not rig.auth.is_master_pass(accepted())
    rig.link.answer = answers(master)
    assert rig.auth.is_master_pass(rig.decide().info)


# -- over a real connection ----------------------------------------------------------------------

class Settings:
    def message_timeout(self):
        return 30

    def ping_interval(self):
        return 0

    def backoff(self):
        return 10, 0, 1


def test_over_a_real_session_answer_callerror_and_timeout(tmp_path):
    r = Rig(tmp_path / "db.db")
    conns: list[PipeConnection] = []

    async def opener(endpoint):
        conns.append(PipeConnection())
        return conns[-1]

    async def main():
        link = ConnectionManager(endpoint=lambda: Endpoint("ws://127.0.0.1:1/ocpp", "CS1"),
                                 router=r.router, clock=r.clock, settings=Settings(),
                                 opener=opener)
        auth = Authorization(link, r.router, r.model, r.clock, r.store, r.cache)
        r.auth_set("OfflineTxForUnknownIdEnabled", True)
        runner = asyncio.ensure_future(link.run())
        for _ in range(20):
            await asyncio.sleep(0)
        conn = conns[0]
        # Connected but not registered: no waiting, decided offline.
        assert (await auth.authorize(CARD)).unknown_offline
        link.accepted.set()

        task = asyncio.ensure_future(auth.authorize(CARD))
        frame = await conn.next_sent()
        assert frame[2] == "Authorize" and frame[3] == {"idToken": CARD}
        conn.feed([3, frame[1], {"idTokenInfo": {"status": "Accepted",
                                                 "groupIdToken": tok("G", "Central")}}])
        d = await task
        assert d.accepted and not d.offline and r.cache.lookup(CARD) is not None

        task = asyncio.ensure_future(auth.authorize(tok("STRANGER")))
        frame = await conn.next_sent()
        conn.feed([4, frame[1], "InternalError", "boom", {}])
        assert await task == Decision({"status": "Invalid"}, True, False)

        task = asyncio.ensure_future(auth.authorize(tok("STRANGER")))
        await conn.next_sent()
        await r.clock.advance(30)
        d = await task
        assert d.unknown_offline, "MessageTimeout: decided offline"

        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    try:
        asyncio.run(asyncio.wait_for(main(), 10))
    finally:
        r.close()
