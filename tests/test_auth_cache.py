"""The Authorization Cache (C10-C12): persistence, expiry, Storage limit, policies, ClearCache."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import pytest

from agent.blocks.auth_cache import ENTRY_OVERHEAD, AuthCache, entry_size
from agent.clock import ManualClock, format_datetime
from agent.model.definitions import standard_definitions
from agent.model.device_model import DeviceModel
from agent.model.types import FEATURE_AUTH_CACHE, Component, EvseSpec, StationSpec, Variable
from agent.ocpp.session import Router
from agent.ocpp.validation import validate
from agent.store import Store
from tests.harness import close_stores

DAY = 86400


def station(features=frozenset({FEATURE_AUTH_CACHE})) -> StationSpec:
    return StationSpec(vendor="Example", model="AC-22", serial_number="0001",
                       firmware_version="1.0.0", evses=(EvseSpec(1, 32, 3, 230),),
                       security_profile=1, features=features)


def definitions(features=frozenset({FEATURE_AUTH_CACHE}), policies=("LRU", "LFU", "FIFO")):
    """The standard definitions; Policy offers FIFO too, so the FIFO code can be reached."""
    items = standard_definitions(station(features))
    for i, d in enumerate(items):
        if d.component.name == "AuthCacheCtrlr" and d.variable.name == "Policy":
            items[i] = dataclasses.replace(d, characteristics=dataclasses.replace(
                d.characteristics, values_list=tuple(policies)))
    return items


class Env:
    """A store, device model, clock and cache; `reopen()` is a restart on the same file."""

    def __init__(self, path: Path, *, capacity: int | None = None,
                 features=frozenset({FEATURE_AUTH_CACHE})) -> None:
        self.path = path
        self.capacity = capacity
        self.features = features
        self.clock = ManualClock()
        self.stores: list[Store] = []
        self._open()

    def _open(self) -> None:
        self.store = Store(self.path)
        self.stores.append(self.store)
        self.model = DeviceModel(self.store, definitions(self.features))
        self.router = Router()
        self.cache = AuthCache(self.router, self.model, self.clock, self.store,
                               capacity_bytes=self.capacity)

    def reopen(self) -> None:
        self.store.close()
        self._open()

    def set(self, component: str, variable: str, value: str) -> None:
        result = self.model.set(Component(component), Variable(variable), value)
        assert result.status == "Accepted", result

    def close(self) -> None:
        close_stores(self.stores)


@pytest.fixture
def env(tmp_path: Path):
    e = Env(tmp_path / "station-agent.db")
    yield e
    e.close()


@pytest.fixture
def make_env(tmp_path: Path):
    made: list[Env] = []

    def make(**kwargs) -> Env:
        e = Env(tmp_path / f"db{len(made)}.db", **kwargs)
        made.append(e)
        return e
    yield make
    for e in made:
        e.close()


def tok(value: str, type_: str = "ISO14443") -> dict:
    return {"idToken": value, "type": type_}


def accepted(**extra) -> dict:
    return {"status": "Accepted", **extra}


def keys(cache: AuthCache) -> set[str]:
    return {e.id_token["idToken"] for e in cache.entries()}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


# -- storing and reading -----------------------------------------------------------------------

def test_update_then_lookup_returns_what_the_csms_said(env):
    info = accepted(groupIdToken=tok("G1", "Central"), language1="de",
                    personalMessage={"format": "UTF8", "content": "Hallo"})
    assert env.cache.update(tok("AA11"), info)
    entry = env.cache.lookup(tok("AA11"))
    assert entry is not None and entry.valid and entry.status == "Accepted"
    assert entry.info == info and entry.effective_info() == info
    assert entry.effective_info() is not entry.info
    assert env.cache.lookup(tok("BB22")) is None


def test_idtoken_is_case_insensitive_and_type_matters(env):
    env.cache.update(tok("abCD"), accepted())
    assert env.cache.lookup(tok("ABcd")) is not None
    assert env.cache.lookup(tok("abcd", "ISO15693")) is None
    env.cache.update(tok("ABCD"), {"status": "Blocked"})
    assert len(env.cache.entries()) == 1
    entry = env.cache.lookup(tok("abcd"))
    assert entry.status == "Blocked" and entry.id_token["idToken"] == "ABCD"


def test_central_noauthorization_and_concurrent_tx_are_not_cached(env):
    assert not env.cache.update(tok("remote-1", "Central"), accepted())
    assert not env.cache.update(tok("", "NoAuthorization"), accepted())
    env.cache.update(tok("AA11"), accepted())
    assert not env.cache.update(tok("AA11"), {"status": "ConcurrentTx"})
    assert env.cache.lookup(tok("AA11")).status == "Accepted", "the previous entry is kept"
    assert keys(env.cache) == {"AA11"}


def test_entries_survive_reopening_the_store(env):
    expiry = format_datetime(env.clock.now() + timedelta(days=3))
    env.cache.update(tok("AA11"), accepted(cacheExpiryDateTime=expiry))
    env.cache.update(tok("BB22"), {"status": "Blocked"})
    used = env.cache.used_bytes()
    env.reopen()
    assert env.cache.lookup(tok("AA11")).info == accepted(cacheExpiryDateTime=expiry)
    assert env.cache.lookup(tok("BB22")).status == "Blocked"
    assert env.cache.used_bytes() == used
    assert env.model.get_int("AuthCacheCtrlr", "Storage") == used


def test_disabled_cache_is_neither_read_nor_written(env):
    env.cache.update(tok("AA11"), accepted())
    env.set("AuthCacheCtrlr", "Enabled", "false")
    assert env.cache.lookup(tok("AA11")) is None
    assert not env.cache.update(tok("BB22"), accepted())
    env.set("AuthCacheCtrlr", "Enabled", "true")
    assert keys(env.cache) == {"AA11"}, "disabling does not delete"


def test_without_the_feature_the_cache_is_off_and_clear_cache_is_rejected(make_env):
    e = make_env(features=frozenset())
    assert not e.cache.enabled and e.cache.capacity == 0
    assert not e.cache.update(tok("AA11"), accepted())
    answer = run(e.router.routes["ClearCache"].handler({}))
    assert answer["status"] == "Rejected"


# -- expiry ----------------------------------------------------------------------------------

def test_lifetime_counts_from_last_use_and_removes_the_entry(env):
    env.set("AuthCacheCtrlr", "LifeTime", str(30 * DAY))

    async def main():
        env.cache.update(tok("AA11"), accepted())
        await env.clock.advance(20 * DAY)
        assert env.cache.lookup(tok("AA11")) is not None
        env.cache.touch(tok("AA11"))
        await env.clock.advance(25 * DAY)          # 45 days after storing, 25 after use
        assert env.cache.lookup(tok("AA11")) is not None
        await env.clock.advance(5 * DAY + 1)
        assert env.cache.lookup(tok("AA11")) is None
        assert env.cache.entries() == [] and env.cache.used_bytes() == 0
        assert env.model.get_int("AuthCacheCtrlr", "Storage") == 0
    run(main())


def test_lifetime_change_applies_at_once(env):
    async def main():
        env.cache.update(tok("AA11"), accepted())
        await env.clock.advance(100)
        env.set("AuthCacheCtrlr", "LifeTime", "60")
        assert env.cache.lookup(tok("AA11")) is None
    run(main())


def test_entries_past_their_lifetime_are_purged_at_start(env):
    env.set("AuthCacheCtrlr", "LifeTime", "3600")

    async def main():
        env.cache.update(tok("AA11"), accepted())
        await env.clock.advance(7200)
        env.reopen()
        assert env.cache.entries() == []
    run(main())


def test_cache_expiry_date_time_makes_the_entry_expired_and_overrides_lifetime(env):
    env.set("AuthCacheCtrlr", "LifeTime", str(DAY))

    async def main():
        expiry = env.clock.now() + timedelta(days=10)
        env.cache.update(tok("AA11"), accepted(cacheExpiryDateTime=format_datetime(expiry)))
        await env.clock.advance(5 * DAY)            # past LifeTime, before the expiry
        entry = env.cache.lookup(tok("AA11"))
        assert entry is not None and entry.valid    # C10.FR.13: the expiry governs
        await env.clock.advance(5 * DAY + 1)
        entry = env.cache.lookup(tok("AA11"))
        assert entry is not None and not entry.valid and entry.status == "Expired"
        assert entry.effective_info()["status"] == "Expired"
        assert entry.info["status"] == "Accepted", "what the CSMS said is kept as said"
    run(main())


def test_an_expiry_already_past_is_stored_as_expired(env):
    past = format_datetime(env.clock.now() - timedelta(minutes=1))
    env.cache.update(tok("AA11"), accepted(cacheExpiryDateTime=past))
    assert env.cache.lookup(tok("AA11")).status == "Expired"


def test_expiries_beyond_the_datetime_range_mean_never_and_long_ago(env):
    # Valid RFC 3339 from the CSMS that raised OverflowError (issue 14), where only a
    # ValueError was expected.
    env.cache.update(tok("AA11"), accepted(cacheExpiryDateTime="9999-12-31T23:59:59.999-12:00"))
    env.cache.update(tok("BB22"), accepted(cacheExpiryDateTime="0001-01-01T00:00:00+14:00"))
    assert env.cache.lookup(tok("AA11")).valid
    assert env.cache.lookup(tok("BB22")).status == "Expired"


# -- Storage limit and replacement policy -------------------------------------------------------

def one_size(value: str = "T0") -> int:
    info = json.dumps(accepted(), separators=(",", ":"), sort_keys=True)
    return entry_size(value, "ISO14443", "Accepted", info)


def test_entry_size_estimate_counts_the_stored_bytes(env):
    info = accepted(groupIdToken=tok("G1", "Central"))
    env.cache.update(tok("AA11"), info)
    text = json.dumps(info, separators=(",", ":"), sort_keys=True)
    expected = ENTRY_OVERHEAD + len("AA11") + len("ISO14443") + len("Accepted") + len(text)
    assert env.cache.used_bytes() == expected
    assert env.model.get_int("AuthCacheCtrlr", "Storage") == expected


def test_capacity_is_the_storage_max_limit(env):
    assert env.cache.capacity == 1_048_576


def test_lru_evicts_the_least_recently_used(make_env):
    e = make_env(capacity=3 * one_size())
    for name in ("T1", "T2", "T3"):
        e.cache.update(tok(name), accepted())
    e.cache.touch(tok("T1"))
    e.cache.update(tok("T4"), accepted())
    assert keys(e.cache) == {"T1", "T3", "T4"}
    assert e.cache.used_bytes() <= e.cache.capacity
    e.cache.update(tok("T3"), accepted())           # a CSMS answer is a use too
    e.cache.update(tok("T5"), accepted())
    assert keys(e.cache) == {"T3", "T4", "T5"}


def test_fifo_evicts_the_first_stored_whatever_its_use(make_env):
    e = make_env(capacity=3 * one_size())
    e.set("AuthCacheCtrlr", "Policy", "FIFO")
    for name in ("T1", "T2", "T3"):
        e.cache.update(tok(name), accepted())
    e.cache.touch(tok("T1"))
    e.cache.update(tok("T1"), accepted())           # updating does not make it new
    e.cache.update(tok("T4"), accepted())
    assert keys(e.cache) == {"T2", "T3", "T4"}


def test_lfu_evicts_the_least_used(make_env):
    e = make_env(capacity=3 * one_size())
    e.set("AuthCacheCtrlr", "Policy", "LFU")
    for name in ("T1", "T2", "T3"):
        e.cache.update(tok(name), accepted())
    for _ in range(3):
        e.cache.touch(tok("T1"))
    e.cache.touch(tok("T2"))
    e.cache.touch(tok("T3"))
    e.cache.touch(tok("T3"))
    e.cache.update(tok("T4"), accepted())
    assert keys(e.cache) == {"T1", "T3", "T4"}


def size_of(value: str, info: dict) -> int:
    text = json.dumps(info, separators=(",", ":"), sort_keys=True)
    return entry_size(value, "ISO14443", info["status"], text)


def test_expired_then_not_accepted_entries_go_first(make_env):
    clock = ManualClock()
    soon = format_datetime(clock.now() + timedelta(seconds=10))
    infos = {"T1": accepted(), "T2": {"status": "Blocked"},
             "T3": accepted(cacheExpiryDateTime=soon)}
    e = make_env(capacity=sum(size_of(k, v) for k, v in infos.items()))

    async def main():
        for name, info in infos.items():
            e.cache.update(tok(name), info)
        assert e.cache.used_bytes() == e.cache.capacity
        await e.clock.advance(11)
        e.cache.touch(tok("T1"))
        e.cache.update(tok("T4"), accepted())
        assert keys(e.cache) == {"T1", "T2", "T4"}, "the expired entry goes first"
        e.cache.update(tok("T5"), accepted())
        assert keys(e.cache) == {"T1", "T4", "T5"}, "then the one not Accepted"
    run(main())


def test_an_entry_larger_than_the_cache_is_not_stored(make_env):
    e = make_env(capacity=one_size() + 10)
    e.cache.update(tok("T1"), accepted())
    big = accepted(personalMessage={"format": "UTF8", "content": "x" * 300})
    assert not e.cache.update(tok("T1"), big)
    assert e.cache.lookup(tok("T1")) is None, "the stale entry is dropped"
    assert e.cache.used_bytes() == 0


def test_eviction_survives_a_restart_in_order(make_env):
    e = make_env(capacity=3 * one_size())
    for name in ("T1", "T2", "T3"):
        e.cache.update(tok(name), accepted())
    e.cache.touch(tok("T1"))
    e.reopen()
    e.cache.update(tok("T4"), accepted())
    assert keys(e.cache) == {"T1", "T3", "T4"}


# -- ClearCache --------------------------------------------------------------------------------

def test_clear_cache_empties_the_cache(env):
    env.cache.update(tok("AA11"), accepted())
    env.cache.update(tok("BB22"), {"status": "Invalid"})
    answer = run(env.router.routes["ClearCache"].handler({}))
    validate("ClearCache", "response", answer)
    assert answer == {"status": "Accepted"}
    assert env.cache.entries() == [] and env.model.get_int("AuthCacheCtrlr", "Storage") == 0
    env.reopen()
    assert env.cache.entries() == []


def test_clear_cache_is_rejected_while_disabled_and_keeps_entries(env):
    env.cache.update(tok("AA11"), accepted())
    env.set("AuthCacheCtrlr", "Enabled", "false")
    answer = run(env.router.routes["ClearCache"].handler({}))
    validate("ClearCache", "response", answer)
    assert answer["status"] == "Rejected"
    assert answer["statusInfo"]["reasonCode"] == "NotEnabled"   # Appendix 5's code
    env.set("AuthCacheCtrlr", "Enabled", "true")
    assert keys(env.cache) == {"AA11"}
